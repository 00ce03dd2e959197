//! `rollout.json`: how far traffic went, each stage's health and verdicts, the hooks' runs and
//! the automatic rollback. Rewritten at every transition, so a killed rollout leaves the truth.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::hook::HookRun;
use super::{Header, StateFile};

/// `rollout.json`, and `rollout`'s `--format json` object.
///
/// `result` is `pass`, `rolled_back` or `rollback_failed`; while it runs, `in_progress` (before
/// the first hook, and at each stage's start and end) and `rolling_back` (the rollback started).
/// A file still saying one of those two was left by a rollout that was killed.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct RolloutFile {
    #[serde(flatten)]
    pub(crate) header: Header,
    pub(crate) deployment_id: String,
    pub(crate) environment: String,
    pub(crate) version: String,
    pub(crate) previous_version: Option<String>,
    pub(crate) expect_version: Option<String>,
    pub(crate) failed_stage: Option<String>,
    pub(crate) reason: Option<String>,
    /// What stopped the rollout.
    pub(crate) cause: Option<Cause>,
    /// The gate that failed (`success-rate`, `p95-latency`, `consecutive-failures`, `samples`,
    /// `baseline`, `metric:<name>`, `alerts`), when a gate stopped the rollout.
    pub(crate) failed_gate: Option<String>,
    /// The stage whose hook ran last, and its weight: where traffic stood (before any rollback).
    pub(crate) current_stage: Option<String>,
    pub(crate) current_weight: Option<u8>,
    pub(crate) stages: Vec<StageRecord>,
    pub(crate) rollback: RollbackRecord,
    pub(crate) hooks: Vec<HookRun>,
    pub(crate) endpoints: Endpoints,
    pub(crate) log_file: String,
}

impl StateFile for RolloutFile {
    const FILE: &'static str = "rollout.json";
    const COMMAND: &'static str = "rollout";
}

impl RolloutFile {
    /// Killed (a cancelled workflow's SIGKILL, `kill -9`, a crash) while shifting traffic or
    /// rolling back: the file never got its end.
    pub(crate) fn interrupted(&self) -> bool {
        matches!(self.header.result.as_str(), "in_progress" | "rolling_back")
    }
}

/// What stopped the rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Cause {
    /// A health gate failed.
    Gate,
    /// The stage hook failed.
    Hook,
    /// A stage was not approved in time.
    ApprovalDeadline,
    /// SIGTERM/SIGINT (a cancelled workflow).
    Signal,
    /// A bug in shipgate.
    Panic,
    /// A metrics backend failed (down, 5xx, refused the query) after retries: the stage could
    /// not be judged, so it was rolled back.
    Dependency,
}

/// Where a stage stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StageStatus {
    Passed,
    Failed,
    NotRun,
    /// Its hook ran and it is being watched (a file left so was killed during the stage).
    Running,
}

/// One stage in `rollout.json`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct StageRecord {
    pub(crate) name: String,
    pub(crate) weight: u8,
    pub(crate) planned_duration_ms: u64,
    /// How long the stage's weight was watched (a wait for the next stage's approval included).
    pub(crate) elapsed_ms: u64,
    pub(crate) status: StageStatus,
    pub(crate) samples: u64,
    /// Percent of the stage's canary probes that passed.
    pub(crate) success_rate: Option<f64>,
    pub(crate) p95_ms: Option<f64>,
    pub(crate) p50_ms: Option<f64>,
    pub(crate) failures: u64,
    pub(crate) degraded: u64,
    pub(crate) interval_ms: u64,
    pub(crate) thresholds: StageThresholds,
    /// The last window the gates judged.
    pub(crate) window: Option<Summary>,
    /// The baseline over the stage, when one was probed.
    pub(crate) baseline: Option<Summary>,
    /// Failure causes over the stage, most frequent first.
    pub(crate) causes: Vec<CauseCount>,
    /// The last evaluation of every gate: measured value against its threshold.
    pub(crate) verdicts: Vec<StageVerdict>,
    pub(crate) reason: Option<String>,
    pub(crate) approval: Option<ApprovalRecord>,
    /// The canary judge's tests at the end of the stage's window (`rollout.judge`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) judgements: Vec<Judgement>,
}

/// The canary judge's three verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum JudgeVerdict {
    Pass,
    Fail,
    /// Too few samples, or a difference as large as the effect threshold that is not
    /// significant: not enough evidence either way.
    Inconclusive,
}

/// One test of the canary judge: canary against baseline, with the numbers behind its verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Judgement {
    /// `judge:latency`, `judge:latency-spread`, `judge:errors`, `judge:<metric>`,
    /// `judge:<metric>-spread`.
    pub(crate) gate: String,
    /// `mann-whitney` (location), `mann-whitney-spread` (absolute deviations from the median)
    /// or `fisher` (error counts).
    pub(crate) test: String,
    pub(crate) verdict: JudgeVerdict,
    pub(crate) canary_samples: u64,
    pub(crate) baseline_samples: u64,
    /// What is compared, each side: the median (`mann-whitney`), the median absolute deviation
    /// (`mann-whitney-spread`), or the error rate in percent (`fisher`), in `unit`.
    pub(crate) canary: Option<f64>,
    pub(crate) baseline: Option<f64>,
    /// `ms` for probe latencies, `%` for error rates, empty for a metric's own unit.
    pub(crate) unit: String,
    /// The canary's and the baseline's p95 (location tests only).
    pub(crate) canary_p95: Option<f64>,
    pub(crate) baseline_p95: Option<f64>,
    /// Error counts (`fisher` only).
    pub(crate) canary_errors: Option<u64>,
    pub(crate) baseline_errors: Option<u64>,
    /// Cliff's delta (for `fisher`: the difference of the error rates, as a fraction).
    pub(crate) effect: Option<f64>,
    /// One-sided p-value of the canary being worse.
    pub(crate) p_value: Option<f64>,
    pub(crate) alpha: f64,
    /// The effect (Cliff's delta) a worse canary must reach to fail; not used by `fisher`.
    pub(crate) min_effect: f64,
    /// Differences below this (in `unit`) never fail.
    pub(crate) tolerance: f64,
    pub(crate) min_samples: u64,
    /// The verdict in one sentence, numbers included.
    pub(crate) detail: String,
    /// The range queries as sent (templated, secrets redacted), for metric sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) query: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) baseline_query: Option<String>,
}

/// A stage's thresholds, as the rollout applied them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct StageThresholds {
    /// Minimum percent of passing probes over the window.
    pub(crate) success_rate: f64,
    pub(crate) max_p95_ms: u64,
    /// Failures in a row (one target) that fail the stage at once; 0 turns the rule off.
    pub(crate) consecutive_failures: u32,
    pub(crate) min_samples: u64,
    pub(crate) window_ms: u64,
    pub(crate) baseline_ratio: f64,
    pub(crate) degraded: DegradedPolicy,
}

/// What a `warn`/`Degraded` answer counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum DegradedPolicy {
    /// A failed probe.
    Fail,
    /// A passed probe, counted and reported as a warning.
    Warn,
}

/// A gate's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    Pass,
    Fail,
    NoData,
    /// A metric without data whose `no-data: ignore` leaves it out of the verdict.
    Ignored,
}

/// One gate's last evaluation: the measured value against its threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct StageVerdict {
    /// `success-rate`, `p95-latency`, `consecutive-failures`, `samples`, `baseline`, …
    pub(crate) gate: String,
    pub(crate) status: Status,
    /// The measured value (`None` when there is nothing to measure yet).
    pub(crate) value: Option<f64>,
    /// The measured value as shown: `97.5%`, `312ms`, `3 in a row`.
    pub(crate) measured: String,
    /// The condition to pass: `≥ 99%`, `< 250ms`.
    pub(crate) threshold: String,
    /// One sentence a person reads in the summary.
    pub(crate) message: String,
    /// A metric gate's query as sent (templated, secrets redacted); `None` for probe gates.
    #[serde(default)]
    pub(crate) query: Option<String>,
}

/// Counts over some set of probe samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Summary {
    pub(crate) samples: u64,
    pub(crate) failures: u64,
    /// Percent of samples that passed; `None` without samples.
    pub(crate) success_rate: Option<f64>,
    pub(crate) p50_ms: Option<f64>,
    pub(crate) p95_ms: Option<f64>,
    /// Samples timed (with a latency).
    pub(crate) timed: u64,
    pub(crate) degraded: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct CauseCount {
    pub(crate) cause: String,
    pub(crate) count: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct ApprovalRecord {
    pub(crate) approved_by: String,
    pub(crate) waited_ms: u64,
}

/// `rollback` in `rollout.json`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct RollbackRecord {
    pub(crate) ran: bool,
    pub(crate) ok: bool,
    /// Why the rollback ran.
    pub(crate) reason: Option<String>,
    pub(crate) hook: Option<String>,
    pub(crate) hook_ok: Option<bool>,
    /// Why the rollback hook could not run at all (a bug), when that happened.
    pub(crate) error: Option<String>,
    /// The stage hook ran as the rollback hook (no separate one configured).
    pub(crate) stage_hook_reused: bool,
    pub(crate) verification: Option<Verification>,
}

/// How the health check after a rollback went.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Verification {
    /// Whether there was anything to check (an HTTP endpoint).
    pub(crate) checked: bool,
    pub(crate) ok: bool,
    /// A signal (a cancelled workflow) cut the check short to fit the runner's grace period
    /// before it could confirm every endpoint.
    pub(crate) cut_short: bool,
    pub(crate) detail: String,
    pub(crate) endpoints: Vec<VerifiedEndpoint>,
    pub(crate) duration_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct VerifiedEndpoint {
    pub(crate) endpoint: String,
    pub(crate) ok: bool,
    pub(crate) probes: u64,
    pub(crate) healthy_in_a_row: u32,
    /// The last answer, healthy or not (`healthy: HTTP 200, status `UP``, `HTTP 500`, …).
    pub(crate) last: Option<String>,
    pub(crate) last_healthy: Option<bool>,
}

/// The probe targets' labels (never a secret URL).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Endpoints {
    pub(crate) canary: Vec<String>,
    pub(crate) baseline: Vec<String>,
    pub(crate) verify: Vec<String>,
}
