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

use serde_json::json;

use super::backup::{self, StoreArgs};
use super::{Outcome, set_outputs};
use crate::actions::{self, Level};
use crate::error::{Error, Result};
use crate::gate::endpoint::EndpointGate;
use crate::gate::poll::{Decision, Options, Poll, requirements};
use crate::gate::preflight::{AlertsGate, Override, Preflight, Recency};
use crate::gate::report::Report;
use crate::gate::security::{self, SecurityGate};
use crate::gate::window::Calendar;
use crate::gate::{own_run, promotion, verdict};
use crate::github::GitHub;
use crate::process::Shutdown;
use crate::settings::{self, Settings};
use crate::state::StateDir;
use crate::ui::format_duration;
use crate::util::HumanDuration;

use own_run::OwnRun;
use verdict::{Allowed, Evaluation, Mode, Pattern};

const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
const DEFAULT_DISCOVERY: Duration = Duration::from_secs(2 * 60);

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
    pub(crate) interval: Option<HumanDuration>,
    /// Stop waiting after this long and exit 4, listing what is pending (input `timeout`)
    /// [default: 30m]
    #[arg(long, value_name = "DURATION")]
    pub(crate) timeout: Option<HumanDuration>,
    /// How long a required check may take to appear before it counts as missing; with no
    /// required list, how long to wait for checks to show up (input `discovery-timeout`)
    /// [default: 2m]
    #[arg(long, value_name = "DURATION")]
    pub(crate) discovery_timeout: Option<HumanDuration>,
    /// Promotion gate: pass only if the commit was deployed successfully to this environment
    /// and that is its latest outcome there (input `require-environment`)
    #[arg(long, value_name = "ENVIRONMENT")]
    pub(crate) require_environment: Option<String>,
    /// With `--require-environment`: and it has run there at least this long, e.g. `7d` (input
    /// `soak`)
    #[arg(long, value_name = "DURATION")]
    pub(crate) soak: Option<HumanDuration>,
    /// Pass when the commit has no checks at all and none is required (input `allow-no-checks`)
    #[arg(long)]
    pub(crate) allow_no_checks: bool,
    /// Deploy outside the change window or during a freeze (`change-window` in shipgate.yml);
    /// needs `--reason`, and the record keeps who and why (input `override-window`)
    #[arg(long)]
    pub(crate) override_window: bool,
    /// Why the change window is overridden (input `reason`)
    #[arg(long, value_name = "TEXT")]
    pub(crate) reason: Option<String>,
    /// Backup-recency gate: the newest backup at the destination (`--destination`, as `backup`
    /// takes it) must be younger than this and verified, e.g. `24h` (input `max-backup-age`)
    #[arg(long, value_name = "DURATION")]
    pub(crate) max_backup_age: Option<HumanDuration>,
    /// Security-alerts gate: refuse while open code-scanning or Dependabot alerts are above this
    /// severity: `none`, `low`, `medium`, `high` (nothing critical) or `critical` (input
    /// `max-severity`)
    #[arg(long, value_name = "SEVERITY")]
    pub(crate) max_severity: Option<String>,
    /// Alert sources the security gate reads: `code-scanning`, `dependabot`; repeat for both
    /// (input `security-sources`) [default: both]
    #[arg(long = "security-source", value_name = "SOURCE")]
    pub(crate) security_sources: Vec<String>,
    /// When a source is not enabled or not readable: `fail` or `warn` (input
    /// `security-not-enabled`) [default: fail]
    #[arg(long, value_name = "POLICY")]
    pub(crate) security_not_enabled: Option<String>,
    /// No-firing-alerts gate: refuse while an alert matching this selector fires, e.g.
    /// `severity=~"critical|warning", service="api"`; the backend is `rollout.alerts` or
    /// `rollout.prometheus` in shipgate.yml (input `no-firing-alerts`)
    #[arg(long, value_name = "SELECTOR")]
    pub(crate) no_firing_alerts: Option<String>,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
}

/// The preflight gates turned on: the change window (`gate.change-window`) and its override,
/// and the backup recency (`max-backup-age`).
async fn preflight(args: &Args, settings: &Settings) -> Result<Preflight> {
    let default = FileConfig::default();
    let file = settings.file.gate.as_ref().unwrap_or(&default);
    let window = file
        .change_window
        .as_ref()
        .map(|config| {
            Calendar::parse(config)
                .map_err(|e| Error::usage(format!("`gate.change-window` in shipgate.yml: {e}")))
        })
        .transpose()?;
    let override_window = if settings.switch(
        "override-window",
        args.override_window,
        None,
        false,
    )? {
        let reason = settings
            .text("reason", args.reason.clone(), None)
            .filter(|r| !r.trim().is_empty())
            .ok_or_else(|| {
                Error::usage(
                    "`--override-window` needs `--reason` (input `reason`): say why this deployment cannot wait for the change window",
                )
            })?;
        Some(Override {
            by: settings::actor(),
            reason: actions::one_line(&reason),
        })
    } else {
        None
    };
    let recency = match settings.optional_duration(
        "max-backup-age",
        args.max_backup_age,
        file.max_backup_age,
    )? {
        Some(max_age) => {
            let location = backup::destination(&args.store, settings)?.ok_or_else(|| {
                Error::usage(
                    "`max-backup-age` needs the backups' destination: pass `--destination s3://bucket/prefix` (input `destination`, or `backup.destination` in shipgate.yml)",
                )
            })?;
            let storage = backup::open_storage(&location, &args.store, settings).await?;
            Some(Recency {
                location,
                storage,
                max_age,
            })
        }
        None => None,
    };
    let security = match settings.text(
        "max-severity",
        args.max_severity.clone(),
        file.max_severity.as_ref(),
    ) {
        Some(text) => {
            let max = security::parse_max(text.trim())
                .map_err(|e| Error::usage(format!("`max-severity`: {e}")))?;
            let mut listed = settings.list(
                "security-sources",
                &args.security_sources,
                file.security_sources.as_ref(),
            );
            if listed.len() == 1 {
                listed = crate::text::split_list(&listed[0]);
            }
            let sources = if listed.is_empty() {
                vec![security::Source::CodeScanning, security::Source::Dependabot]
            } else {
                listed
                    .iter()
                    .map(|s| {
                        security::Source::parse(s)
                            .map_err(|e| Error::usage(format!("`security-sources`: {e}")))
                    })
                    .collect::<Result<Vec<_>>>()?
            };
            let accept_not_enabled = match settings
                .text(
                    "security-not-enabled",
                    args.security_not_enabled.clone(),
                    file.security_not_enabled.as_ref(),
                )
                .as_deref()
            {
                None | Some("fail") => false,
                Some("warn") => true,
                Some(other) => {
                    return Err(Error::usage(format!(
                        "`security-not-enabled` is {}; use `fail` or `warn`",
                        actions::quote(other)
                    )));
                }
            };
            Some(SecurityGate {
                max,
                sources,
                accept_not_enabled,
            })
        }
        None => None,
    };
    let alerts = match settings.text(
        "no-firing-alerts",
        args.no_firing_alerts.clone(),
        file.no_firing_alerts.as_ref(),
    ) {
        Some(text) => {
            let selector = text
                .parse()
                .map_err(|e| Error::usage(format!("`no-firing-alerts`: {e}")))?;
            let rollout = settings.file.rollout.as_ref();
            let backend = rollout
                .and_then(|r| r.prometheus.clone())
                .unwrap_or_default();
            let own = rollout.and_then(|r| r.alerts.as_ref());
            let api = own.and_then(|a| a.api).unwrap_or_default();
            let client = crate::rollout::metric::client(
                "`no-firing-alerts`",
                api.name(),
                own.and_then(|a| a.address.as_ref()),
                own.and_then(|a| a.auth.as_ref()),
                own.and_then(|a| a.headers.as_ref()),
                own.and_then(|a| a.timeout),
                &backend,
            )?;
            Some(AlertsGate {
                client,
                api,
                selector,
                text: actions::one_line(&text),
            })
        }
        None => None,
    };
    let endpoints = file
        .endpoints
        .iter()
        .flatten()
        .enumerate()
        .map(|(index, config)| EndpointGate::resolve(index, config))
        .collect::<Result<Vec<_>>>()?;
    Ok(Preflight {
        window,
        override_window,
        recency,
        security,
        endpoints,
        alerts,
    })
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
        let interval =
            settings.duration("interval", args.interval, file.interval, DEFAULT_INTERVAL)?;
        if interval.is_zero() {
            return Err(Error::usage(
                "`--interval` must be longer than zero; use a value such as `15s`",
            ));
        }
        let timeout = settings.duration("timeout", args.timeout, file.timeout, DEFAULT_TIMEOUT)?;
        let discovery = settings
            .duration(
                "discovery-timeout",
                args.discovery_timeout,
                file.discovery_timeout,
                DEFAULT_DISCOVERY,
            )?
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
        let soak = settings.optional_duration("soak", args.soak, file.soak)?;
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

/// Flag > input > file for the allowed conclusions, a list in one flag or input.
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
    let preflight = preflight(args, settings).await?;
    let github = settings.github("`shipgate gate` (it reads checks from the GitHub API)")?;
    let repo = github.repo().to_string();
    let (state, sha, sha_source) = locate(args, settings)?;
    let start = Instant::now();
    tracing::info!(
        "gating commit `{sha}` of `{repo}` (from {sha_source}); timeout {}",
        format_duration(options.timeout)
    );

    let mut report = Report {
        environment: &settings.environment,
        repo: &repo,
        sha_source,
        state: &state,
        preflight: Vec::new(),
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

    if !preflight.is_empty() {
        let _group = actions::group("Preflight gates");
        report.preflight = preflight
            .run(&github, jiff::Timestamp::now(), &Shutdown::listen())
            .await?;
        for row in &report.preflight {
            tracing::info!("{}: {} — {}", row.gate, row.verdict.word(), row.reason);
        }
        if report.preflight.iter().any(|r| !r.verdict.passed()) {
            return finish(&report, &github, Decision::PreflightRefused);
        }
    }

    if let Some(environment) = &options.require_environment {
        let _group = actions::group(&format!("Promotion gate: `{environment}`"));
        let promotion = promotion::check(&github, &sha, environment, options.soak).await?;
        tracing::info!("promotion: {}", promotion.reason);
        let passed = promotion.passed;
        report.poll.promotion = Some(promotion);
        if !passed {
            return finish(&report, &github, Decision::PromotionRefused);
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
    finish(&report, &github, decision)
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
/// Writes `gate.json`, the outputs, the summary and the annotations, and returns the outcome.
fn finish(report: &Report, github: &GitHub, decision: Decision) -> Result<Outcome> {
    let result = report.finish(github, decision)?;
    let list = |items: &[String]| serde_json::to_string(items).unwrap_or_else(|_| "[]".into());
    set_outputs(&[
        ("result", decision.result().to_string()),
        ("failed", list(&result.failed)),
        ("pending", list(&result.pending)),
        ("missing", list(&result.missing)),
    ])?;
    Ok(Outcome {
        json: serde_json::to_value(&result).unwrap_or_else(|_| json!({})),
        status: decision.status(),
        text: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
