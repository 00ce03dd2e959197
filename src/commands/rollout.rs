//! `shipgate rollout` (seed 004 §6 "Gradual Rollout", seed 002's thresholds): shifts traffic to
//! the new version stage by stage through a hook, watches the canary's health during each
//! stage's whole window with gates evaluated after every probe, and on a breach, a hook failure,
//! an approval deadline or SIGTERM/SIGINT runs the rollback hook and checks health again. Every
//! decision — each gate's measured value against its threshold, each hook's exit code and
//! duration — goes to `rollout.json` and `rollout-logs-<deployment-id>.log`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;

use super::lease::hold;
use super::{Outcome, set_outputs};
use crate::actions::{self, Level};
use crate::error::{Error, Result};
use crate::exit;
use crate::hooks;
use crate::metrics::template::Vars;
use crate::rollout::approval::{self, APPROVAL_FILE, Approval, PAUSE_FILE, Pause};
use crate::rollout::config::{FileConfig, Percent};
use crate::rollout::engine::{self, Release};
use crate::rollout::gates::DegradedPolicy;
use crate::rollout::plan::{Inputs, Plan};
use crate::rollout::report;
use crate::rollout::{judge, metric};
use crate::settings::{self, Settings};
use crate::state::StateDir;
use crate::state::rollout::{Cause, RolloutFile};
use crate::state::validate::ValidateFile;
use crate::ui::mark::PASS;
use crate::util::HumanDuration;

#[derive(Debug, Default, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    pub(crate) lease: super::lease::hold::LeaseArgs,
    /// A stage as `name:weight:duration[:interval]`, e.g. `canary:5:5m`; repeat for each stage
    /// (input `stages`, one per line) [default: canary:5:5m, progressive:50:10m, full:100:15m]
    #[arg(long, value_name = "NAME:WEIGHT:DURATION")]
    pub(crate) stage: Vec<String>,
    /// Health endpoint of the new version, probed during every stage; repeatable (input
    /// `endpoints`, one per line)
    #[arg(long, value_name = "URL")]
    pub(crate) endpoint: Vec<String>,
    /// Health endpoint of the stable version, probed side by side for the baseline comparison;
    /// repeatable (input `baseline`)
    #[arg(long, value_name = "URL")]
    pub(crate) baseline: Vec<String>,
    /// Endpoint checked after a rollback until healthy; repeatable (input `verify-endpoints`)
    /// [default: the baseline endpoints, else the canary endpoints]
    #[arg(long, value_name = "URL")]
    pub(crate) verify_endpoint: Vec<String>,
    /// A command probed beside the endpoints (exit 0 passes); repeatable (input
    /// `probe-commands`)
    #[arg(long, value_name = "COMMAND")]
    pub(crate) probe_command: Vec<String>,
    /// The stage hook that shifts traffic: a command run without a shell, with SHIPGATE_STAGE,
    /// SHIPGATE_WEIGHT, SHIPGATE_VERSION, SHIPGATE_DEPLOYMENT_ID, SHIPGATE_PREVIOUS_VERSION
    /// (input `hook`; a webhook comes from the `hook-url` input or SHIPGATE_HOOK_URL)
    #[arg(long, value_name = "COMMAND")]
    pub(crate) hook: Option<String>,
    /// The rollback hook (input `rollback-hook`; webhook: `rollback-hook-url` input or
    /// SHIPGATE_ROLLBACK_HOOK_URL) [default: the stage hook with SHIPGATE_STAGE=rollback and
    /// SHIPGATE_WEIGHT=0]
    #[arg(long, value_name = "COMMAND")]
    pub(crate) rollback_hook: Option<String>,
    /// Run hook commands with `sh -c` (input `hook-shell`)
    #[arg(long)]
    pub(crate) hook_shell: bool,
    /// Time limit of one hook attempt (input `hook-timeout`) [default: 2m]
    #[arg(long, value_name = "DURATION")]
    pub(crate) hook_timeout: Option<HumanDuration>,
    /// Attempts after the first when a hook fails (input `hook-retries`) [default: 2]
    #[arg(long, value_name = "N")]
    pub(crate) hook_retries: Option<u32>,
    /// Time between two probes of one target (input `interval`) [default: 10s]
    #[arg(long, value_name = "DURATION")]
    pub(crate) interval: Option<HumanDuration>,
    /// Time limit of one probe (input `probe-timeout`) [default: 5s]
    #[arg(long, value_name = "DURATION")]
    pub(crate) probe_timeout: Option<HumanDuration>,
    /// The rolling window the gates look at (input `window`) [default: 5m]
    #[arg(long, value_name = "DURATION")]
    pub(crate) window: Option<HumanDuration>,
    /// Minimum percent of passing probes in the window (input `success-rate`) [default: 99]
    #[arg(long, value_name = "PERCENT")]
    pub(crate) success_rate: Option<Percent>,
    /// The p95 latency must stay below this (input `max-p95`) [default: 250ms]
    #[arg(long, value_name = "DURATION")]
    pub(crate) max_p95: Option<HumanDuration>,
    /// Failed probes in a row of one target that fail the stage at once; 0 turns the rule off
    /// (input `consecutive-failures`) [default: 3]
    #[arg(long, value_name = "N")]
    pub(crate) consecutive_failures: Option<u32>,
    /// Samples the window needs before the rate gates count; fewer at the end of a stage is
    /// "no data", a failure (input `min-samples`) [default: 10]
    #[arg(long, value_name = "N")]
    pub(crate) min_samples: Option<u64>,
    /// The canary's error rate may be at most this many times the baseline's (input
    /// `baseline-ratio`) [default: 2]
    #[arg(long, value_name = "RATIO")]
    pub(crate) baseline_ratio: Option<f64>,
    /// What a `warn`/`Degraded` answer counts as: `fail`, or `warn` (passes, reported) (input
    /// `degraded`) [default: fail]
    #[arg(long, value_name = "POLICY")]
    pub(crate) degraded: Option<DegradedPolicy>,
    /// The version the canary's health endpoints must report (input `expect-version`)
    #[arg(long, value_name = "VERSION")]
    pub(crate) expect_version: Option<String>,
    /// JSON pointer whose value decides health, e.g. `/data/state` (input `health-pointer`)
    #[arg(long, value_name = "POINTER")]
    pub(crate) health_pointer: Option<String>,
    /// A value at the health pointer that means healthy; repeatable (input `health-accept`)
    #[arg(long, value_name = "VALUE")]
    pub(crate) health_accept: Vec<String>,
    /// The version being rolled out, for the hooks (input `version`) [default: `version` in
    /// validate.json]
    #[arg(long = "version", value_name = "VERSION")]
    pub(crate) version: Option<String>,
    /// The version running before, for the hooks (input `previous-version`) [default:
    /// `previous.version` in validate.json]
    #[arg(long, value_name = "VERSION")]
    pub(crate) previous_version: Option<String>,
    /// Wait for an approval before shifting traffic to this stage; repeatable (input
    /// `pause-before`; `pause: until-approved` in shipgate.yml)
    #[arg(long, value_name = "STAGE")]
    pub(crate) pause_before: Vec<String>,
    /// How long a paused stage waits for its approval before rolling back (input
    /// `approval-timeout`) [default: 1h]
    #[arg(long, value_name = "DURATION")]
    pub(crate) approval_timeout: Option<HumanDuration>,
    /// The approval file a paused rollout waits for (input `approval-file`) [default:
    /// rollout-approval.json in the state dir]
    #[arg(long, value_name = "FILE")]
    pub(crate) approval_file: Option<PathBuf>,
    /// How long the health check after a rollback may take (input `verify-timeout`) [default: 2m]
    #[arg(long, value_name = "DURATION")]
    pub(crate) verify_timeout: Option<HumanDuration>,
    /// Healthy probes in a row each verify endpoint needs after a rollback (input
    /// `verify-successes`) [default: 3]
    #[arg(long, value_name = "N")]
    pub(crate) verify_successes: Option<u32>,
    /// Print the plan and its timeline (worst-case exposure per stage); run no hook
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Approve the stage a paused rollout of this deployment waits for, then exit
    #[arg(long, conflicts_with = "dry_run")]
    pub(crate) resume: bool,
    /// With `--resume`: the stage to approve (needed when no rollout is waiting yet)
    #[arg(long, value_name = "STAGE", requires = "resume")]
    pub(crate) approve_stage: Option<String>,
    /// With `--resume`: who approves (input `approver`) [default: GITHUB_ACTOR, else USER]
    #[arg(long, value_name = "NAME", requires = "resume")]
    pub(crate) approver: Option<String>,
}

pub(crate) async fn run(args: &Args, settings: &Settings) -> Result<Outcome> {
    if args.resume {
        return approve(args, settings);
    }
    let plan = Plan::resolve(plan_inputs(args, settings)?)?;
    if settings.switch("dry-run", args.dry_run, None, false)? {
        return dry_run(args, settings, &plan).await;
    }
    execute(args, settings, &plan).await
}

/// What the plan is made of: flag > input > the `rollout:` section of `shipgate.yml`.
pub(crate) fn plan_inputs(args: &Args, settings: &Settings) -> Result<Inputs> {
    let default_file = FileConfig::default();
    let file = settings.file.rollout.as_ref().unwrap_or(&default_file);
    Ok(Inputs {
        stage_flags: settings.list("stages", &args.stage, None),
        stages: file.stages.clone(),
        success_rate: settings.value("success-rate", args.success_rate, file.success_rate)?,
        max_p95: settings.value("max-p95", args.max_p95, file.max_p95)?,
        consecutive_failures: settings.value(
            "consecutive-failures",
            args.consecutive_failures,
            file.consecutive_failures,
        )?,
        min_samples: settings.value("min-samples", args.min_samples, file.min_samples)?,
        window: settings.value("window", args.window, file.window)?,
        baseline_ratio: settings.value(
            "baseline-ratio",
            args.baseline_ratio,
            file.baseline_ratio,
        )?,
        degraded: settings.value("degraded", args.degraded, file.degraded)?,
        interval: settings.value("interval", args.interval, file.interval)?,
        approval_timeout: settings.value(
            "approval-timeout",
            args.approval_timeout,
            file.approval_timeout,
        )?,
        pause_before: settings.list("pause-before", &args.pause_before, None),
        endpoints: settings.list("endpoints", &args.endpoint, file.endpoints.as_ref()),
        baseline: settings.list("baseline", &args.baseline, file.baseline.as_ref()),
        verify_endpoints: settings.list(
            "verify-endpoints",
            &args.verify_endpoint,
            file.verify_endpoints.as_ref(),
        ),
        probe_commands: settings.list("probe-commands", &args.probe_command, None),
        probes: file.probes.clone().unwrap_or_default(),
        probe_timeout: settings.value("probe-timeout", args.probe_timeout, file.probe_timeout)?,
        health: file.health.clone(),
        health_pointer: settings.text("health-pointer", args.health_pointer.clone(), None),
        health_accept: settings.list("health-accept", &args.health_accept, None),
        expect_version: settings.text(
            "expect-version",
            args.expect_version.clone(),
            file.expect_version.as_ref(),
        ),
        hooks: settings.hooks(
            &hooks::Flags {
                hook: args.hook.as_deref(),
                rollback_hook: args.rollback_hook.as_deref(),
                shell: args.hook_shell,
                timeout: args.hook_timeout,
                retries: args.hook_retries,
            },
            file.hook_keys(),
        )?,
        verify_timeout: settings.value(
            "verify-timeout",
            args.verify_timeout,
            file.verify_timeout,
        )?,
        verify_successes: settings.value(
            "verify-successes",
            args.verify_successes,
            file.verify_successes,
        )?,
        prometheus: file.prometheus.clone(),
        metrics: file.metrics.clone().unwrap_or_default(),
        alerts: file.alerts.clone(),
        judge: file.judge.clone(),
    })
}

/// The version for the hooks and whatever ran before: flag > input > validate.json.
fn release(
    args: &Args,
    settings: &Settings,
    validated: Option<&ValidateFile>,
) -> (Option<String>, Option<String>) {
    let version = settings
        .text("version", args.version.clone(), None)
        .or_else(|| validated.map(|v| v.version.clone()));
    let previous = settings
        .text("previous-version", args.previous_version.clone(), None)
        .or_else(|| {
            validated
                .and_then(|v| v.previous.as_ref())
                .map(|p| p.version.clone())
        });
    (version, previous)
}

fn approval_file(args: &Args, state: &StateDir) -> PathBuf {
    args.approval_file
        .clone()
        .or_else(|| settings::input("approval-file").map(PathBuf::from))
        .unwrap_or_else(|| state.path(APPROVAL_FILE))
}

/// `--resume`: approves the stage a paused rollout of this deployment waits for.
fn approve(args: &Args, settings: &Settings) -> Result<Outcome> {
    let state = StateDir::open(settings)?;
    let waiting: Option<Pause> = state.read_json(PAUSE_FILE)?;
    let stage =
        approval::stage_to_approve(&state, args.approve_stage.as_deref(), waiting.as_ref())?;
    let file = args
        .approval_file
        .clone()
        .or_else(|| settings::input("approval-file").map(PathBuf::from))
        .or_else(|| waiting.as_ref().map(|p| p.approval_file.clone()))
        .unwrap_or_else(|| state.path(APPROVAL_FILE));
    let approver = settings
        .text("approver", args.approver.clone(), None)
        .or_else(|| settings::env("GITHUB_ACTOR"))
        .or_else(|| settings::env("USER"))
        .unwrap_or_else(|| "unknown".to_string());
    let approval = Approval {
        stage: Some(stage.clone()),
        approved_by: Some(actions::one_line(&approver)),
        at: Some(crate::util::now_rfc3339()),
    };
    approval::write(&file, &approval).map_err(|e| {
        Error::usage(format!(
            "cannot write the approval file `{}`: {e}",
            file.display()
        ))
    })?;
    tracing::info!(
        "approved stage `{stage}` of deployment `{}` as {}{}",
        state.id(),
        actions::quote(&approver),
        if waiting.is_some() {
            ""
        } else {
            " (no rollout is waiting yet; it will go on when it reaches this stage)"
        }
    );
    set_outputs(&[("result", "approved".to_string())])?;
    Ok(Outcome::success(json!({
        "command": "rollout",
        "result": "approved",
        "deployment_id": state.id(),
        "stage": stage,
        "approved_by": approval.approved_by,
        "approval_file": file.display().to_string(),
    })))
}

/// `--dry-run`: the plan and its timeline, and each metric gate (and each of the canary judge's
/// range-query pairs) evaluated once against its live backend; no hook runs, no traffic moves,
/// nothing is probed or written.
async fn dry_run(args: &Args, settings: &Settings, plan: &Plan) -> Result<Outcome> {
    let peeked = StateDir::peek(settings);
    let validated = peeked
        .as_ref()
        .and_then(|state| state.load::<ValidateFile>().ok())
        .flatten();
    let (version, previous) = release(args, settings, validated.as_ref());
    let timeline = plan.timeline();
    let total: Duration = plan.stages.iter().map(|s| s.duration).sum();
    report::log_dry_run(plan, version.as_deref(), previous.as_deref(), total);
    let base = Vars {
        version: version.clone().unwrap_or_default(),
        previous_version: previous.clone(),
        deployment_id: settings
            .deployment_id
            .clone()
            .or_else(|| peeked.as_ref().map(|s| s.id().to_string()))
            .unwrap_or_default(),
        ..Vars::default()
    };
    let trials = metric_trials(plan, &base).await;
    let judged = judge_trials(plan, &base).await;
    actions::append_summary(&report::dry_run_summary(
        plan,
        &timeline,
        version.as_deref(),
        total,
        &trials,
        &judged,
    ))?;
    if trials.iter().any(|t| t.verdict == "error")
        && let Some(first) = plan.stages.first()
    {
        // The same checks a rollout makes before traffic moves, for their exit status: a
        // query the backend refuses is exit 2, a backend that is down exit 3.
        metric::preflight(&plan.metrics, &first.vars(&base)).await?;
    }
    if let Some(error) = judged.verdicts.iter().find(|v| v.dependency) {
        if let (Some(judge), Some(first)) = (&plan.judge, plan.stages.first()) {
            judge::preflight(judge, &first.vars(&base)).await?;
        }
        return Err(Error::dependency(error.message.clone()));
    }
    Ok(Outcome::success(json!({
        "command": "rollout",
        "result": "dry_run",
        "version": version,
        "previous_version": previous,
        "stages": plan.stages,
        "timeline": timeline,
        "total_duration_ms": total.as_millis() as u64,
        "endpoints": plan.endpoints(),
        "hooks": plan.hook_lines(),
        "metrics": trials,
        "judgements": judged.judgements,
    })))
}

/// Each metric gate measured once, with the template values of the first stage it applies to.
async fn metric_trials(plan: &Plan, base: &Vars) -> Vec<metric::Trial> {
    let mut trials = Vec::new();
    for (index, spec) in plan.metrics.iter().enumerate() {
        let Some(stage) = plan.stages.iter().find(|s| spec.applies(&s.name)) else {
            continue;
        };
        let trial = metric::trial(index, spec, &stage.name, &stage.vars(base)).await;
        let line = format!(
            "dry run {} (stage `{}`): {} — {} — `{}`",
            trial.gate,
            trial.stage,
            trial.verdict,
            trial.detail,
            actions::one_line(&trial.query)
        );
        if matches!(trial.verdict, "pass") {
            tracing::info!("{line}");
        } else {
            tracing::warn!("{line}");
        }
        trials.push(trial);
    }
    trials
}

/// Each of the canary judge's range-query pairs judged once over the last window of the first
/// stage the judge applies to, and each error-count source now.
async fn judge_trials(plan: &Plan, base: &Vars) -> judge::Judged {
    let mut all = judge::Judged::default();
    let Some(spec) = &plan.judge else {
        return all;
    };
    let Some(stage) = plan.stages.iter().find(|s| spec.applies(&s.name)) else {
        return all;
    };
    let vars = stage.vars(base);
    let span = stage.thresholds.window.min(stage.duration);
    let mut runs = Vec::new();
    for metric in &spec.metrics {
        runs.push(judge::dry_run(spec, metric, &vars, span, stage.interval).await);
    }
    for source in &spec.errors {
        runs.push(judge::dry_run_errors(spec, source, &vars).await);
    }
    for judged in runs {
        for judgement in &judged.judgements {
            tracing::info!(
                "dry run (stage `{}`, the last {}): {}",
                stage.name,
                crate::ui::format_duration(span),
                judge::log_line(judgement)
            );
        }
        for verdict in judged.verdicts.iter().filter(|v| v.dependency) {
            tracing::warn!("dry run: {}", verdict.message);
        }
        all.verdicts.extend(judged.verdicts);
        all.judgements.extend(judged.judgements);
    }
    all
}

async fn execute(args: &Args, settings: &Settings, plan: &Plan) -> Result<Outcome> {
    let started = Instant::now();
    // The deployment lease's settings are checked before anything is written.
    let store = super::backup::StoreArgs::default();
    let lease_place = hold::place(
        &args.lease,
        super::backup::destination(&store, settings)?,
        settings,
    )?;
    let s3 = super::backup::s3_options(&store, settings)?;
    let state = StateDir::open(settings)?;
    if let Some(previous) = state.load::<RolloutFile>()?
        && previous.header.result == "pass"
    {
        return already_done(&state, previous);
    }
    let validated = state.load::<ValidateFile>()?;
    let (version, previous_version) = release(args, settings, validated.as_ref());
    let version = version.ok_or_else(|| {
        Error::usage(format!(
            "no version to roll out: run `shipgate validate` first (deployment `{}` has no validate.json), or pass `--version` (input `version`)",
            state.id()
        ))
    })?;
    let approval_path = approval_file(args, &state);
    let release = Release {
        version,
        previous_version,
        environment: settings.environment.clone(),
    };
    // Held from `backup` (or taken here when there was no backup) until `record`.
    let holding = hold::take(lease_place, &s3, settings, &state, "rollout").await?;
    let record = engine::run(&state, plan, &release, &approval_path, started).await;
    if let Some(holding) = holding {
        holding.finish(&state).await;
    }
    let record = record?;
    set_outputs(&[
        ("result", record.header.result.clone()),
        (
            "failed-stage",
            record.failed_stage.clone().unwrap_or_default(),
        ),
        ("reason", record.reason.clone().unwrap_or_default()),
        ("log-file", record.log_file.clone()),
    ])?;
    actions::append_summary(&report::summary(&record, plan))?;
    let status = match record.header.result.as_str() {
        "pass" => {
            tracing::info!(
                "rollout of {} passed every stage; log in `{}`",
                actions::quote(&record.version),
                record.log_file
            );
            exit::Status::Success
        }
        "rolled_back" => {
            let dependency = record.cause == Some(Cause::Dependency);
            actions::annotate(
                Level::Error,
                Some("shipgate rollout"),
                &format!(
                    "rolled back `{}`: {}",
                    record.version,
                    record.reason.as_deref().unwrap_or("")
                ),
            );
            if dependency {
                exit::Status::Dependency
            } else {
                exit::Status::GateFailed
            }
        }
        _ => {
            actions::annotate(
                Level::Error,
                Some("shipgate rollout — ROLLBACK FAILED"),
                &report::rollback_failed_message(&record, plan),
            );
            exit::Status::RollbackFailed
        }
    };
    let json = serde_json::to_value(&record).unwrap_or_else(|_| json!({}));
    Ok(Outcome {
        json,
        status,
        text: None,
    })
}

/// A re-run after a successful rollout changes nothing: walking the stages again would send
/// traffic back down to the canary's weight.
fn already_done(state: &StateDir, previous: RolloutFile) -> Result<Outcome> {
    let at = previous.header.timestamp.as_str();
    let version = previous.version.as_str();
    tracing::info!(
        "deployment `{}` already rolled out `{version}` at {at}; nothing to do (start a new deployment to roll out again)",
        state.id()
    );
    set_outputs(&[
        ("result", "pass".to_string()),
        ("failed-stage", String::new()),
        ("reason", String::new()),
        ("log-file", previous.log_file.clone()),
    ])?;
    actions::append_summary(&format!(
        "### {PASS} Rollout of `{version}` already done\n\nDeployment `{}` passed every stage at {at}; this run changed nothing.\n",
        state.id()
    ))?;
    Ok(Outcome::success(
        serde_json::to_value(&previous).unwrap_or_else(|_| json!({})),
    ))
}
