//! `gate.json`: which checks the commit needed and how each stood.

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Header, StateFile};

/// `gate.json`, and `gate`'s `--format json` object.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct GateFile {
    #[serde(flatten)]
    pub(crate) header: Header,
    /// Why, in one sentence.
    pub(crate) reason: String,
    pub(crate) deployment_id: String,
    pub(crate) environment: String,
    pub(crate) repository: String,
    /// The commit judged.
    pub(crate) sha: String,
    /// Where the commit came from: `flag`, `validate`, `GITHUB_SHA`, …
    pub(crate) sha_source: String,
    pub(crate) required: RequiredSet,
    /// `success`, plus `neutral`/`skipped` when allowed.
    pub(crate) allowed_conclusions: Vec<String>,
    pub(crate) checks: Vec<CheckRow>,
    /// Display names of the required checks that failed.
    pub(crate) failed: Vec<String>,
    pub(crate) pending: Vec<String>,
    /// Required names or patterns no check ever matched.
    pub(crate) missing: Vec<String>,
    pub(crate) ignored: Vec<Ignored>,
    pub(crate) own_run: OwnRunInfo,
    pub(crate) promotion: Option<Promotion>,
    /// The preflight gates that ran (change window, security alerts, backup recency), in order.
    #[serde(default)]
    pub(crate) preflight: Vec<PreflightRow>,
    pub(crate) polls: u32,
    pub(crate) waited_seconds: u64,
    pub(crate) requests: Requests,
}

impl StateFile for GateFile {
    const FILE: &'static str = "gate.json";
    const COMMAND: &'static str = "gate";
}

impl GateFile {
    /// The names of the commit statuses (not check runs) the gate required and saw pass: the
    /// only kind GitHub's Deployments API re-checks in `required_contexts`.
    pub(crate) fn required_passed_statuses(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| c.required && c.source == Source::Status && c.result == CheckResult::Passed)
            .map(|c| c.name.clone())
            .collect()
    }
}

/// Where a check comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Source {
    CheckRun,
    Status,
}

impl Source {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Source::CheckRun => "check run",
            Source::Status => "commit status",
        }
    }
}

/// How a check counted in the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CheckResult {
    Passed,
    Failed,
    Pending,
    NotRequired,
}

/// One row of the report: one check after deduplication.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct CheckRow {
    pub(crate) name: String,
    pub(crate) source: Source,
    /// The app that reported a check run (its slug).
    pub(crate) app: Option<String>,
    pub(crate) status: String,
    pub(crate) conclusion: Option<String>,
    pub(crate) result: CheckResult,
    pub(crate) required: bool,
    pub(crate) started_at: Option<String>,
    pub(crate) completed_at: Option<String>,
    pub(crate) duration_seconds: Option<u64>,
    pub(crate) url: Option<String>,
    pub(crate) attempts: u32,
}

/// Which checks were required, and why.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct RequiredSet {
    /// `listed`, `branch`, `listed+branch`, or `all` (every check present).
    pub(crate) mode: String,
    /// The branch whose protection and rulesets were read.
    pub(crate) branch: Option<String>,
    pub(crate) checks: Vec<RequiredCheck>,
}

/// One required check (a name or a glob).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct RequiredCheck {
    pub(crate) name: String,
    /// Only check runs of this app satisfy it.
    pub(crate) app_id: Option<u64>,
    pub(crate) origins: Vec<Origin>,
}

/// Where a requirement was declared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub(crate) enum Origin {
    /// `--require` / the `require` input / `shipgate.yml`.
    Listed,
    /// Classic branch protection of the branch.
    Protection(String),
    /// A ruleset (by id) targeting the branch.
    Ruleset(u64),
}

/// A check left out, and why.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Ignored {
    pub(crate) name: String,
    pub(crate) reason: String,
}

/// The workflow run executing the gate, as recognised.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub(crate) struct OwnRunInfo {
    pub(crate) run_id: Option<u64>,
    pub(crate) attempt: Option<u32>,
    /// How the gate's own job was recognised.
    pub(crate) method: String,
    /// Check run ids of the job running shipgate.
    pub(crate) job_check_run_ids: BTreeSet<u64>,
    /// Its display name(s).
    pub(crate) job_names: BTreeSet<String>,
}

/// The outcome of the promotion gate.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Promotion {
    pub(crate) environment: String,
    pub(crate) passed: bool,
    /// Why, in one sentence.
    pub(crate) reason: String,
    /// The deployment that proved (or failed) the commit.
    pub(crate) deployment_id: Option<u64>,
    /// When the commit first succeeded there (since its last failure).
    pub(crate) since: Option<String>,
    /// When it stopped running there (replaced), if it did.
    pub(crate) until: Option<String>,
    pub(crate) soaked_seconds: Option<u64>,
    pub(crate) required_soak_seconds: Option<u64>,
}

/// One preflight gate's verdict.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct PreflightRow {
    /// `change-window`, `security-alerts` or `backup-recency`.
    pub(crate) gate: String,
    pub(crate) verdict: PreflightVerdict,
    /// Why, in one sentence naming the measured value.
    pub(crate) reason: String,
    /// What was measured (the local time, the alerts found, the backup's age).
    pub(crate) measured: Option<String>,
    /// Links to what refused (alerts, the backup).
    #[serde(default)]
    pub(crate) links: Vec<String>,
    /// Who overrode a refusal and why (`--override-window --reason`).
    pub(crate) override_by: Option<String>,
    pub(crate) override_reason: Option<String>,
}

/// A preflight gate's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PreflightVerdict {
    Pass,
    Fail,
    /// Refused, then passed by an explicit override with a reason.
    Overridden,
    /// The feature the gate reads is not enabled, and the gate is told to accept that.
    NotEnabled,
}

impl PreflightVerdict {
    pub(crate) fn passed(self) -> bool {
        !matches!(self, PreflightVerdict::Fail)
    }

    pub(crate) fn word(self) -> &'static str {
        match self {
            PreflightVerdict::Pass => "pass",
            PreflightVerdict::Fail => "fail",
            PreflightVerdict::Overridden => "overridden",
            PreflightVerdict::NotEnabled => "not enabled",
        }
    }
}

/// GitHub API requests the gate made.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Requests {
    pub(crate) sent: u64,
    pub(crate) not_modified: u64,
    pub(crate) charged: u64,
    pub(crate) rate_limit_remaining: Option<u64>,
}
