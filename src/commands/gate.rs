//! `shipgate gate` (seed 004 §2 "Pre-Deployment Validation", seed 002's promotion gate): waits
//! for the commit's check runs **and** commit statuses, then requires them to pass.
//!
//! * Which checks: `--require` names/globs, or what `--required-from BRANCH` requires (branch
//!   protection ∪ rulesets), or every check on the commit; `--ignore` leaves some out, and the
//!   workflow run executing shipgate is recognised and left out ([`own_run`]).
//! * Each check is the latest attempt of its name ([`checks`]); the verdict ([`verdict`]) fails
//!   fast on a failed check, calls a required check that never appears "missing" after
//!   `--discovery-timeout`, and reports a commit without checks instead of passing it.
//! * `--require-environment` adds the promotion gate ([`promotion`]).
//! * Polling is polite: jittered `--interval`, conditional requests (an unchanged poll is
//!   answered `304` and costs nothing against the rate limit), the adapter's `retry-after` /
//!   `x-ratelimit-*` handling and 5xx backoff, and a slower pace when the rate limit runs low.

use std::time::{Duration, Instant};

use crate::state::Header;
use crate::state::gate::{CheckResult, CheckRow, GateFile, Requests, RequiredSet};
use serde_json::json;

use super::{Outcome, set_outputs};
use crate::actions::{self, Level, Table};
use crate::error::{Error, Result};
use crate::gate::poll::{Decision, Options, Poll, names, requirements};
use crate::gate::{own_run, promotion, verdict};
use crate::github::GitHub;
use crate::settings::{self, Settings};
use crate::state::StateDir;
use crate::util::{format_duration, parse_duration};

use own_run::OwnRun;
use verdict::{Allowed, Entry, Evaluation, Mode, Pattern, Requirement, Standing};

const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
const DEFAULT_DISCOVERY: Duration = Duration::from_secs(2 * 60);
/// The runner shows at most 10 error annotations per step.
const MAX_CHECK_ANNOTATIONS: usize = 9;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Commit to gate, a full 40-character SHA (input `sha`) [default: the commit `validate`
    /// resolved for this deployment, else GITHUB_SHA]
    #[arg(long, value_name = "SHA")]
    pub(crate) sha: Option<String>,
    /// A check that must pass: a name, or a glob such as `test (*)`; repeat for more (input
    /// `require`, one per line) [default: every check on the commit]
    #[arg(long = "require", value_name = "NAME")]
    pub(crate) require: Vec<String>,
    /// Require what this branch requires to merge: the required status checks of its branch
    /// protection and of the rulesets targeting it (input `required-from`)
    #[arg(long, value_name = "BRANCH")]
    pub(crate) required_from: Option<String>,
    /// Leave out checks with this name or glob; repeat for more (input `ignore`, one per line)
    #[arg(long = "ignore", value_name = "NAME")]
    pub(crate) ignore: Vec<String>,
    /// Conclusions that pass besides `success`: `neutral`, `skipped`, both, or `none` (input
    /// `allowed-conclusions`) [default: neutral,skipped, as GitHub treats required checks]
    #[arg(long, value_name = "LIST")]
    pub(crate) allowed_conclusions: Option<String>,
    /// Time between polls, jittered by ±20% (input `interval`) [default: 15s]
    #[arg(long, value_name = "DURATION")]
    pub(crate) interval: Option<String>,
    /// Stop waiting after this long and exit 4, listing what is pending (input `timeout`)
    /// [default: 30m]
    #[arg(long, value_name = "DURATION")]
    pub(crate) timeout: Option<String>,
    /// How long a required check may take to appear before it counts as missing; with no
    /// required list, how long to wait for checks to show up (input `discovery-timeout`)
    /// [default: 2m]
    #[arg(long, value_name = "DURATION")]
    pub(crate) discovery_timeout: Option<String>,
    /// Promotion gate: pass only if the commit was deployed successfully to this environment
    /// and that is its latest outcome there (input `require-environment`)
    #[arg(long, value_name = "ENVIRONMENT")]
    pub(crate) require_environment: Option<String>,
    /// With `--require-environment`: and it has run there at least this long, e.g. `7d` (input
    /// `soak`)
    #[arg(long, value_name = "DURATION")]
    pub(crate) soak: Option<String>,
    /// Pass when the commit has no checks at all and none is required (input `allow-no-checks`)
    #[arg(long)]
    pub(crate) allow_no_checks: bool,
}

pub(crate) use crate::gate::config::FileConfig;

impl Options {
    fn resolve(args: &Args, settings: &Settings) -> Result<Options> {
        let default = FileConfig::default();
        let file = settings.file.gate.as_ref().unwrap_or(&default);
        let patterns = |name: &str, flag: &[String], file: Option<&Vec<String>>| {
            settings
                .list(name, flag, file)
                .iter()
                .map(|text| {
                    if text.chars().any(char::is_control) || text.len() > 255 {
                        Err(Error::usage(format!(
                            "{name} pattern {} is not a check name: use up to 255 printable characters",
                            actions::quote(text)
                        )))
                    } else {
                        Ok(Pattern::new(text))
                    }
                })
                .collect::<Result<Vec<_>>>()
        };
        let listed = patterns("require", &args.require, file.require.as_ref())?;
        let ignore = patterns("ignore", &args.ignore, file.ignore.as_ref())?;
        let required_from = settings.text(
            "required-from",
            args.required_from.clone(),
            file.required_from.as_ref(),
        );
        if let Some(branch) = &required_from
            && (branch.starts_with('-')
                || branch.contains("..")
                || branch.chars().any(|c| c.is_control() || c == ' '))
        {
            return Err(Error::usage(format!(
                "`--required-from` {} is not a branch name; pass the branch whose required checks apply, e.g. `main`",
                actions::quote(branch)
            )));
        }
        let allowed = allowed_conclusions(
            args.allowed_conclusions.as_deref(),
            file.allowed_conclusions.as_ref(),
        )?;
        let interval = duration("interval", args.interval.as_ref(), file.interval.as_ref())?
            .unwrap_or(DEFAULT_INTERVAL);
        if interval.is_zero() {
            return Err(Error::usage(
                "`--interval` must be longer than zero; use a value such as `15s`",
            ));
        }
        let timeout = duration("timeout", args.timeout.as_ref(), file.timeout.as_ref())?
            .unwrap_or(DEFAULT_TIMEOUT);
        let discovery = duration(
            "discovery-timeout",
            args.discovery_timeout.as_ref(),
            file.discovery_timeout.as_ref(),
        )?
        .unwrap_or(DEFAULT_DISCOVERY)
        .min(timeout);
        let require_environment = settings.text(
            "require-environment",
            args.require_environment.clone(),
            file.require_environment.as_ref(),
        );
        if let Some(env) = &require_environment
            && (env.len() > 255 || env.chars().any(char::is_control))
        {
            return Err(Error::usage(format!(
                "environment {} is not an environment name (`--require-environment`)",
                actions::quote(env)
            )));
        }
        let soak = duration("soak", args.soak.as_ref(), file.soak.as_ref())?;
        if soak.is_some() && require_environment.is_none() {
            return Err(Error::usage(
                "`--soak` needs `--require-environment`: name the environment the commit must have soaked in, e.g. `--require-environment staging --soak 7d`",
            ));
        }
        Ok(Options {
            listed,
            required_from,
            ignore,
            allowed,
            interval,
            timeout,
            discovery,
            require_environment,
            soak,
            allow_no_checks: settings.switch(
                "allow-no-checks",
                args.allow_no_checks,
                file.allow_no_checks,
                false,
            )?,
        })
    }
}

/// Flag > input > file for a duration, with an error that names where the bad value came from.
fn duration(name: &str, flag: Option<&String>, file: Option<&String>) -> Result<Option<Duration>> {
    let (raw, from) = if let Some(value) = flag {
        (value.clone(), format!("`--{name}`"))
    } else if let Some(value) = settings::input(name) {
        (value, format!("input `{name}`"))
    } else if let Some(value) = file {
        (value.clone(), format!("`gate.{name}` in the config file"))
    } else {
        return Ok(None);
    };
    parse_duration(&raw)
        .map(Some)
        .map_err(|e| Error::usage(format!("{from} has the value `{raw}`: {e}")))
}

fn allowed_conclusions(flag: Option<&str>, file: Option<&Vec<String>>) -> Result<Allowed> {
    let items: Vec<String> = match (
        flag.map(str::to_string),
        settings::input("allowed-conclusions"),
    ) {
        (Some(raw), _) | (None, Some(raw)) => crate::text::split_list(&raw),
        (None, None) => match file {
            Some(list) => list.clone(),
            None => {
                return Ok(Allowed {
                    neutral: true,
                    skipped: true,
                });
            }
        },
    };
    let mut allowed = Allowed {
        neutral: false,
        skipped: false,
    };
    for item in &items {
        match item.as_str() {
            "success" | "none" => {}
            "neutral" => allowed.neutral = true,
            "skipped" => allowed.skipped = true,
            other => {
                return Err(Error::usage(format!(
                    "{} cannot be an allowed conclusion (`allowed-conclusions`); use `neutral`, `skipped`, both, or `none`",
                    actions::quote(other)
                )));
            }
        }
    }
    Ok(allowed)
}

pub(crate) async fn run(args: &Args, settings: &Settings) -> Result<Outcome> {
    let options = Options::resolve(args, settings)?;
    let github = settings.github("`shipgate gate` (it reads checks from the GitHub API)")?;
    let repo = github.repo().to_string();
    let (state, sha, sha_source) = locate(args, settings)?;
    let start = Instant::now();
    tracing::info!(
        "gating commit `{sha}` of `{repo}` (from {sha_source}); timeout {}",
        format_duration(options.timeout)
    );

    let mut report = Report {
        settings,
        repo: &repo,
        sha_source,
        state: &state,
        poll: Poll {
            options: &options,
            sha: &sha,
            promotion: None,
            mode: Mode::All,
            required_mode: "all",
            entries: Vec::new(),
            eval: Evaluation::default(),
            ignored: Vec::new(),
            own: OwnRun::default(),
            polls: 0,
            start,
        },
    };

    if let Some(environment) = &options.require_environment {
        let _group = actions::group(&format!("Promotion gate: `{environment}`"));
        let promotion = promotion::check(&github, &sha, environment, options.soak).await?;
        tracing::info!("promotion: {}", promotion.reason);
        let passed = promotion.passed;
        report.poll.promotion = Some(promotion);
        if !passed {
            return report.finish(&github, Decision::PromotionRefused);
        }
    }

    let (mode, required_mode) = {
        let _group = actions::group("Required checks");
        requirements(&github, &options).await?
    };
    report.poll.mode = mode;
    report.poll.required_mode = required_mode;
    report.poll.own = OwnRun::discover(&github).await;
    tracing::info!("this job: {}", report.poll.own.method);
    for pattern in &options.listed {
        if let Some(name) = report
            .poll
            .own
            .job_names
            .iter()
            .find(|n| pattern.matches(n))
        {
            actions::annotate(
                Level::Warning,
                Some("shipgate gate"),
                &format!(
                    "`require` names {}, the job running shipgate: a job cannot wait for itself, so it will count as missing; remove it from `require`",
                    actions::quote(name)
                ),
            );
        }
    }

    let decision = report.poll.wait(&github).await?;
    report.finish(&github, decision)
}

/// The state directory and the commit: `--sha` > input `sha` > the commit `validate` resolved
/// for this deployment > GITHUB_SHA.
fn locate(args: &Args, settings: &Settings) -> Result<(StateDir, String, &'static str)> {
    let existing = match StateDir::open(settings) {
        Ok(state) => Some(state),
        Err(_) if settings.deployment_id.is_none() => None,
        Err(e) => return Err(e),
    };
    let validated = match &existing {
        Some(state) => state
            .load::<crate::state::validate::ValidateFile>()?
            .map(|v| v.sha),
        None => None,
    };
    let (sha, source) = if let Some(sha) = &args.sha {
        (sha.clone(), "`--sha`")
    } else if let Some(sha) = settings::input("sha") {
        (sha, "the `sha` input")
    } else if let Some(sha) = validated {
        (sha, "`validate.json`")
    } else if let Some(sha) = settings::env("GITHUB_SHA") {
        (sha, "GITHUB_SHA")
    } else {
        return Err(Error::usage(
            "no commit to gate: pass `--sha <40-hex commit>`, run `shipgate validate` first, or run in GitHub Actions (GITHUB_SHA)",
        ));
    };
    let sha = sha.trim().to_ascii_lowercase();
    if sha.len() != 40 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::usage(format!(
            "{source} is {}, not a full 40-character commit SHA; gate a commit, not a branch or tag, so what passes is what ships",
            actions::quote(&sha)
        )));
    }
    let state = match existing {
        Some(state) => state,
        None => StateDir::create(
            &settings.state_root,
            &crate::release::id::deployment_id(&sha),
        )?,
    };
    Ok((state, sha, source))
}
/// What the report needs besides the poll.
struct Report<'a> {
    settings: &'a Settings,
    repo: &'a str,
    sha_source: &'static str,
    state: &'a StateDir,
    poll: Poll<'a>,
}

impl Report<'_> {
    /// Writes `gate.json`, the outputs, the summary and the annotations, and returns the outcome.
    fn finish(&self, github: &GitHub, decision: Decision) -> Result<Outcome> {
        let eval = &self.poll.eval;
        let display = |indexes: &[usize]| -> Vec<String> {
            indexes
                .iter()
                .map(|i| self.poll.entries[*i].display_name())
                .collect()
        };
        let failed = display(&eval.failed);
        let pending = display(&eval.pending);
        let missing = match decision {
            Decision::Missing | Decision::Timeout => eval.missing.clone(),
            _ => Vec::new(),
        };
        let reason = self.reason(decision, &failed, &pending, &missing);
        let stats = github.stats();
        let now = jiff::Timestamp::now();
        let rows: Vec<CheckRow> = self
            .poll
            .entries
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                let required = !eval.not_required.contains(&i);
                let result = if !required {
                    CheckResult::NotRequired
                } else {
                    match entry.standing(&self.poll.options.allowed) {
                        Standing::Passed => CheckResult::Passed,
                        Standing::Failed => CheckResult::Failed,
                        Standing::Pending => CheckResult::Pending,
                    }
                };
                CheckRow {
                    name: entry.name.clone(),
                    source: entry.source,
                    app: entry.app.as_ref().map(|(_, slug)| slug.clone()),
                    status: entry.status.clone(),
                    conclusion: entry.conclusion.clone(),
                    result,
                    required,
                    started_at: entry.started_at.map(|t| t.to_string()),
                    completed_at: entry.completed_at.map(|t| t.to_string()),
                    duration_seconds: entry.started_at.map(|start| {
                        entry
                            .completed_at
                            .unwrap_or(now)
                            .duration_since(start)
                            .as_secs()
                            .max(0) as u64
                    }),
                    url: entry.url.clone(),
                    attempts: entry.attempts,
                }
            })
            .collect();
        let mut allowed_conclusions = vec!["success"];
        if self.poll.options.allowed.neutral {
            allowed_conclusions.push("neutral");
        }
        if self.poll.options.allowed.skipped {
            allowed_conclusions.push("skipped");
        }
        let result = GateFile {
            header: Header::now::<GateFile>(decision.result()),
            reason: reason.clone(),
            deployment_id: self.state.id().to_string(),
            environment: self.settings.environment.clone(),
            repository: self.repo.to_string(),
            sha: self.poll.sha.to_string(),
            sha_source: self.sha_source.to_string(),
            required: RequiredSet {
                mode: self.poll.required_mode.to_string(),
                branch: self.poll.options.required_from.clone(),
                checks: match &self.poll.mode {
                    Mode::Required(list) => list.iter().map(Requirement::to_state).collect(),
                    Mode::All => Vec::new(),
                },
            },
            allowed_conclusions: allowed_conclusions.into_iter().map(String::from).collect(),
            checks: rows,
            failed: failed.clone(),
            pending: pending.clone(),
            missing: missing.clone(),
            ignored: self.poll.ignored.clone(),
            own_run: self.poll.own.to_state(),
            promotion: self.poll.promotion.clone(),
            polls: self.poll.polls,
            waited_seconds: self.poll.start.elapsed().as_secs(),
            requests: Requests {
                sent: stats.sent,
                not_modified: stats.not_modified,
                charged: stats.charged(),
                rate_limit_remaining: stats.rate_limit_remaining,
            },
        };
        let path = self.state.save(&result)?;
        let list = |items: &[String]| serde_json::to_string(items).unwrap_or_else(|_| "[]".into());
        set_outputs(&[
            ("result", decision.result().to_string()),
            ("failed", list(&failed)),
            ("pending", list(&pending)),
            ("missing", list(&missing)),
        ])?;
        self.annotate(decision, &reason);
        actions::append_summary(&self.summary(&result))?;
        match decision {
            Decision::Pass | Decision::PassNoChecks => tracing::info!("{reason}"),
            _ => {}
        }
        tracing::info!(
            "GitHub API: {} request(s), {} charged against the rate limit ({} answered 304 Not Modified); state in `{}`",
            stats.sent,
            stats.charged(),
            stats.not_modified,
            path.display()
        );
        Ok(Outcome {
            json: serde_json::to_value(&result).unwrap_or_else(|_| json!({})),
            status: decision.status(),
        })
    }

    fn reason(
        &self,
        decision: Decision,
        failed: &[String],
        pending: &[String],
        missing: &[String],
    ) -> String {
        let sha = crate::text::short_sha(self.poll.sha);
        let waited = format_duration(self.poll.start.elapsed());
        match decision {
            Decision::Pass => format!(
                "{} check(s) passed on commit `{sha}`{}",
                self.poll.eval.passed.len(),
                match &self.poll.mode {
                    Mode::All => " (every check on the commit)".to_string(),
                    Mode::Required(list) => format!(" ({} required)", list.len()),
                }
            ),
            Decision::PassNoChecks => format!(
                "commit `{sha}` has no checks and none is required; passing as `allow-no-checks` says"
            ),
            Decision::Failed => {
                let links: Vec<String> = self
                    .poll
                    .eval
                    .failed
                    .iter()
                    .map(|i| describe_failure(&self.poll.entries[*i], None))
                    .collect();
                format!(
                    "{} check(s) failed on commit `{sha}`: {}; fix or re-run {}, then run the gate again",
                    failed.len(),
                    links.join("; "),
                    if failed.len() == 1 { "it" } else { "them" }
                )
            }
            Decision::Missing => format!(
                "required check(s) {} never appeared on commit `{sha}` within {} (`discovery-timeout`); make sure the workflows that report them run for this commit, or correct `require` / `required-from`",
                names(missing.iter()),
                format_duration(self.poll.options.discovery)
            ),
            Decision::NoChecks => {
                let ignored = if self.poll.ignored.is_empty() {
                    String::new()
                } else {
                    format!(
                        " ({} left out: {})",
                        self.poll.ignored.len(),
                        names(self.poll.ignored.iter().map(|i| &i.name))
                    )
                };
                format!(
                    "commit `{sha}` has no checks to judge after {waited}{ignored}; a commit nothing has tested is not a pass. Run CI on it, name the checks with `require`, or set `allow-no-checks: true` if that is intended"
                )
            }
            Decision::PromotionRefused => self
                .poll
                .promotion
                .as_ref()
                .map(|p| p.reason.clone())
                .unwrap_or_default(),
            Decision::Timeout => {
                let mut text = format!(
                    "timed out after {waited} (`timeout` {}) waiting for commit `{sha}`",
                    format_duration(self.poll.options.timeout)
                );
                if !pending.is_empty() {
                    let detail: Vec<String> = self
                        .poll
                        .eval
                        .pending
                        .iter()
                        .map(|i| {
                            let e = &self.poll.entries[*i];
                            format!(
                                "{} ({})",
                                actions::quote(&e.display_name()),
                                actions::quote(&e.status).trim_matches('`')
                            )
                        })
                        .collect();
                    text.push_str(&format!("; pending: {}", detail.join(", ")));
                }
                if !missing.is_empty() {
                    text.push_str(&format!("; never reported: {}", names(missing.iter())));
                }
                text.push_str("; raise `timeout` or find out why they are slow");
                text
            }
        }
    }

    fn annotate(&self, decision: Decision, reason: &str) {
        match decision {
            Decision::Pass | Decision::PassNoChecks => {}
            Decision::Failed => {
                for i in self.poll.eval.failed.iter().take(MAX_CHECK_ANNOTATIONS) {
                    let entry = &self.poll.entries[*i];
                    actions::annotate(
                        Level::Error,
                        Some(&format!("check failed: {}", entry.display_name())),
                        &describe_failure(entry, Some(crate::text::short_sha(self.poll.sha))),
                    );
                }
                actions::annotate(Level::Error, Some("shipgate gate"), reason);
            }
            _ => actions::annotate(Level::Error, Some("shipgate gate"), reason),
        }
    }

    fn summary(&self, result: &GateFile) -> String {
        let sha = crate::text::short_sha(self.poll.sha);
        let heading = match result.header.result.as_str() {
            "pass" => format!("### ✅ Checks passed for `{sha}`"),
            "timeout" => format!("### ⏱️ Gate timed out waiting for `{sha}`"),
            _ => format!("### ❌ Gate refused `{sha}`"),
        };
        let mut out = format!("{heading}\n\n{}\n\n", result.reason);
        let required = match (&self.poll.mode, &self.poll.options.required_from) {
            (Mode::All, _) => "every check on the commit".to_string(),
            (Mode::Required(list), Some(branch)) if self.poll.required_mode != "listed" => format!(
                "{} check(s): what `{branch}` requires (branch protection and rulesets){}",
                list.len(),
                if self.poll.options.listed.is_empty() {
                    ""
                } else {
                    " plus the `require` list"
                }
            ),
            (Mode::Required(list), _) => format!("{} check(s) from the `require` list", list.len()),
        };
        if self.poll.polls > 0 {
            out.push_str(&format!("- **Required:** {required}\n"));
        }
        if let Some(promotion) = &self.poll.promotion {
            out.push_str(&format!(
                "- **Promotion from `{}`:** {} {}\n",
                promotion.environment,
                if promotion.passed { "✅" } else { "❌" },
                promotion.reason
            ));
        }
        if !self.poll.ignored.is_empty() {
            let parts: Vec<String> = self
                .poll
                .ignored
                .iter()
                .map(|i| format!("{} ({})", code(&i.name), i.reason))
                .collect();
            out.push_str(&format!("- **Left out:** {}\n", parts.join(", ")));
        }
        if !result.missing.is_empty() {
            out.push_str(&format!(
                "- **Never reported:** {}\n",
                result
                    .missing
                    .iter()
                    .map(|m| code(m))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if !result.checks.is_empty() {
            let mut table = Table::new(&["Check", "Source", "Result", "Duration", "Link"]);
            for row in &result.checks {
                let icon = match row.result {
                    CheckResult::Passed => "✅",
                    CheckResult::Failed => "❌",
                    CheckResult::Pending => "⏳",
                    CheckResult::NotRequired => "➖",
                };
                let word = row.conclusion.as_deref().unwrap_or(&row.status);
                let result_cell = if row.required {
                    format!("{icon} {word}")
                } else {
                    format!("{icon} {word} (not required)")
                };
                let source = match (&row.source, &row.app) {
                    (verdict::Source::CheckRun, Some(app)) => format!("check run ({app})"),
                    (source, _) => source.label().to_string(),
                };
                let duration = row
                    .duration_seconds
                    .map(|s| {
                        let text = format_duration(Duration::from_secs(s));
                        if row.completed_at.is_some() {
                            text
                        } else {
                            format!("{text} so far")
                        }
                    })
                    .unwrap_or_default();
                let link = row
                    .url
                    .as_deref()
                    .and_then(markdown_link)
                    .unwrap_or_default();
                let name = if row.attempts > 1 && row.source == verdict::Source::CheckRun {
                    format!("{} (attempt {})", code(&row.name), row.attempts)
                } else {
                    code(&row.name)
                };
                table.row(&[name, source, result_cell, duration, link]);
            }
            out.push('\n');
            out.push_str(&table.render());
        }
        out.push_str(&format!(
            "\nWaited {} ({} poll(s)); GitHub API: {} request(s), {} charged against the rate limit, {} answered `304 Not Modified`.\n",
            format_duration(self.poll.start.elapsed()),
            result.polls,
            result.requests.sent,
            result.requests.charged,
            result.requests.not_modified
        ));
        out
    }
}

/// "`lint` (check run) concluded `failure` [on commit abc1234]: <link>", every untrusted part
/// quoted so it stays on one line.
fn describe_failure(entry: &Entry, commit: Option<&str>) -> String {
    format!(
        "{} ({}) concluded {}{}{}",
        actions::quote(&entry.display_name()),
        entry.source.label(),
        actions::quote(entry.result_word()),
        commit
            .map(|c| format!(" on commit {c}"))
            .unwrap_or_default(),
        entry
            .url
            .as_deref()
            .map(|u| format!(": {}", actions::quote(u).trim_matches('`')))
            .unwrap_or_default()
    )
}

/// Untrusted text as a Markdown code span that cannot be broken out of.
fn code(text: &str) -> String {
    format!("`{}`", text.replace('`', "'"))
}

/// `[details](url)` for http(s) links only, with the characters that end a link escaped.
fn markdown_link(url: &str) -> Option<String> {
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) {
        return None;
    }
    let safe = url
        .replace(' ', "%20")
        .replace('(', "%28")
        .replace(')', "%29")
        .replace('<', "%3C")
        .replace('>', "%3E");
    Some(format!("[details]({safe})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_http_only_and_escaped() {
        assert_eq!(markdown_link("javascript:alert(1)"), None);
        assert_eq!(
            markdown_link("https://ci.example/x (1)").as_deref(),
            Some("[details](https://ci.example/x%20%281%29)")
        );
    }

    #[test]
    fn allowed_conclusions_name_the_bad_value() {
        let err = allowed_conclusions(Some("neutral,failure"), None).expect_err("failure");
        assert!(
            err.message()
                .contains("`failure` cannot be an allowed conclusion")
        );
        let none = allowed_conclusions(Some("none"), None).expect("none");
        assert!(!none.neutral && !none.skipped);
    }
}
