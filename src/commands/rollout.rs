//! `shipgate rollout` (seed 004 §6 "Gradual Rollout", seed 002's thresholds): shifts traffic to
//! the new version stage by stage through a hook, watches the canary's health during each
//! stage's whole window with gates evaluated after every probe, and on a breach, a hook failure,
//! an approval deadline or SIGTERM/SIGINT runs the rollback hook and checks health again. Every
//! decision — each gate's measured value against its threshold, each hook's exit code and
//! duration — goes to `rollout.json` and `rollout-logs-<deployment-id>.log`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Outcome, set_outputs};
use crate::actions::{self, Level, Table};
use crate::error::{Error, Result, ResultExt};
use crate::exit;
use crate::hooks::{self, Context, HookRun};
use crate::process::{LogFile, Shutdown};
use crate::rollout::approval::{self, Approval, Pause};
use crate::rollout::config::{FileConfig, Percent};
use crate::rollout::gates::{DegradedPolicy, Status, Thresholds};
use crate::rollout::monitor::{Monitor, StageWatch, Stop, Until, Verification};
use crate::rollout::plan::{Inputs, Plan, Stage, TimelineStage};
use crate::rollout::probe::Prober;
use crate::settings::{self, Settings};
use crate::state::rollout::{
    ApprovalRecord, Cause, CauseCount, Endpoints, RollbackRecord, RolloutFile, StageRecord,
    StageStatus,
};
use crate::state::validate::ValidateFile;
use crate::state::{Header, StateDir, StateFile};
use crate::util::{HumanDuration, format_duration};

const PAUSE_FILE: &str = "rollout-pause.json";
const APPROVAL_FILE: &str = "rollout-approval.json";

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
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

/// Why the rollout stopped.
struct Failure {
    stage: String,
    reason: String,
    cause: Cause,
    /// The gate that failed, when a gate stopped the rollout.
    gate: Option<&'static str>,
}

pub(crate) async fn run(args: &Args, settings: &Settings) -> Result<Outcome> {
    if args.resume {
        return approve(args, settings);
    }
    let plan = Plan::resolve(plan_inputs(args, settings)?)?;
    if settings.switch("dry-run", args.dry_run, None, false)? {
        return dry_run(args, settings, &plan);
    }
    execute(args, settings, &plan).await
}

/// What the plan is made of: flag > input > the `rollout:` section of `shipgate.yml`.
fn plan_inputs(args: &Args, settings: &Settings) -> Result<Inputs> {
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
    let stage = match (&args.approve_stage, &waiting) {
        (Some(stage), Some(pause)) if *stage != pause.stage => {
            return Err(Error::usage(format!(
                "the rollout of deployment `{}` waits for stage `{}`, not `{stage}`; approve `{}` or leave out `--approve-stage`",
                state.id(),
                pause.stage,
                pause.stage
            )));
        }
        (Some(stage), _) => stage.clone(),
        (None, Some(pause)) => pause.stage.clone(),
        (None, None) => {
            return Err(Error::usage(format!(
                "no rollout of deployment `{}` is waiting for an approval (no `{PAUSE_FILE}` in `{}`); to approve a stage before the rollout reaches it, name it with `--approve-stage`",
                state.id(),
                state.dir().display()
            )));
        }
    };
    settings::check_name("stage name", &stage)?;
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

fn hook_line(plan: &Plan) -> Vec<String> {
    let hook = &plan.stage_hook;
    let mut lines = vec![format!(
        "stage hook: {} `{}` (timeout {} per attempt, {} retries)",
        hook.kind(),
        hook.display(),
        format_duration(hook.timeout),
        hook.retries
    )];
    lines.push(if plan.rollback_is_stage_hook {
        "rollback hook: the stage hook with SHIPGATE_STAGE=rollback and SHIPGATE_WEIGHT=0"
            .to_string()
    } else {
        format!(
            "rollback hook: {} `{}`",
            plan.rollback_hook.kind(),
            plan.rollback_hook.display()
        )
    });
    lines
}

/// `--dry-run`: the plan and its timeline; no hook runs, nothing is probed or written.
fn dry_run(args: &Args, settings: &Settings, plan: &Plan) -> Result<Outcome> {
    let validated = StateDir::peek(settings)
        .and_then(|state| state.load::<ValidateFile>().ok())
        .flatten();
    let (version, previous) = release(args, settings, validated.as_ref());
    let timeline = plan.timeline();
    tracing::info!(
        "rollout plan (dry run) for {} (previous {}); nothing is run",
        version
            .as_deref()
            .map_or_else(|| "an unknown version".to_string(), actions::quote),
        previous
            .as_deref()
            .map_or_else(|| "unknown".to_string(), actions::quote)
    );
    for line in plan.describe() {
        tracing::info!("{line}");
    }
    let labels = |targets: &[crate::rollout::probe::Target]| {
        targets.iter().map(|t| t.label.clone()).collect::<Vec<_>>()
    };
    tracing::info!("canary probes: {}", labels(&plan.canary).join(", "));
    if !plan.baseline.is_empty() {
        tracing::info!("baseline probes: {}", labels(&plan.baseline).join(", "));
    }
    for line in hook_line(plan) {
        tracing::info!("{line}");
    }
    let total: Duration = plan.stages.iter().map(|s| s.duration).sum();
    tracing::info!(
        "all stages take {} if every gate passes{}",
        format_duration(total),
        if plan.stages.iter().any(|s| s.pause) {
            ", plus the waits for approval"
        } else {
            ""
        }
    );
    actions::append_summary(&dry_run_summary(plan, &timeline, version.as_deref(), total))?;
    Ok(Outcome::success(json!({
        "command": "rollout",
        "result": "dry_run",
        "version": version,
        "previous_version": previous,
        "stages": plan.stages,
        "timeline": timeline,
        "total_duration_ms": total.as_millis() as u64,
        "endpoints": endpoints_json(plan),
        "hooks": hook_line(plan),
    })))
}

fn endpoints_json(plan: &Plan) -> Endpoints {
    let labels = |targets: &[crate::rollout::probe::Target]| {
        targets.iter().map(|t| t.label.clone()).collect::<Vec<_>>()
    };
    Endpoints {
        canary: labels(&plan.canary),
        baseline: labels(&plan.baseline),
        verify: labels(&plan.verify),
    }
}

fn dry_run_summary(
    plan: &Plan,
    timeline: &[TimelineStage],
    version: Option<&str>,
    total: Duration,
) -> String {
    let mut table = Table::new(&[
        "Stage",
        "Weight",
        "Duration",
        "Probe every",
        "Starts",
        "Gates",
        "Worst-case exposure",
    ]);
    for (stage, when) in plan.stages.iter().zip(timeline) {
        let ms = |ms: u64| format_duration(Duration::from_millis(ms));
        table.row(&[
            format!("`{}`", stage.name),
            format!("{}%", stage.weight),
            format_duration(stage.duration),
            format_duration(stage.interval),
            if when.after_approval {
                format!("after approval (+{})", ms(when.starts_after_ms))
            } else {
                format!("+{}", ms(when.starts_after_ms))
            },
            gates_text(&stage.thresholds),
            format!(
                "{}% of traffic for up to {}",
                stage.weight,
                ms(when.worst_case_exposure_ms)
            ),
        ]);
    }
    format!(
        "### 🧭 Rollout plan for {} (dry run)\n\n{}\nAll stages: {} if every gate passes. Nothing was run.\n",
        version.map_or_else(|| "the next version".to_string(), |v| format!("`{v}`")),
        table.render(),
        format_duration(total)
    )
}

fn gates_text(t: &Thresholds) -> String {
    format!(
        "≥ {}% over {}, p95 < {}, {} failures in a row, ≥ {} samples",
        t.success_rate,
        format_duration(t.window),
        format_duration(t.max_p95),
        if t.consecutive_failures == 0 {
            "no limit on".to_string()
        } else {
            format!("< {}", t.consecutive_failures)
        },
        t.min_samples
    )
}

fn not_run(stage: &Stage) -> StageRecord {
    StageRecord {
        name: stage.name.clone(),
        weight: stage.weight,
        planned_duration_ms: stage.duration.as_millis() as u64,
        elapsed_ms: 0,
        status: StageStatus::NotRun,
        samples: 0,
        success_rate: None,
        p95_ms: None,
        p50_ms: None,
        failures: 0,
        degraded: 0,
        interval_ms: stage.interval.as_millis() as u64,
        thresholds: (&stage.thresholds).into(),
        window: None,
        baseline: None,
        causes: Vec::new(),
        verdicts: Vec::new(),
        reason: None,
        approval: None,
    }
}

/// Fills a stage's record from what its watch saw.
fn fill(record: &mut StageRecord, watch: &StageWatch, status: StageStatus, reason: Option<String>) {
    let stage = watch.canary.stage_summary();
    record.elapsed_ms = watch.started.elapsed().as_millis() as u64;
    record.status = status;
    record.samples = stage.samples;
    record.success_rate = stage.success_rate;
    record.p95_ms = stage.p95_ms;
    record.p50_ms = stage.p50_ms;
    record.failures = stage.failures;
    record.degraded = stage.degraded;
    record.window = Some(watch.canary.window_summary());
    record.baseline = watch.baseline.as_ref().map(|b| b.stage_summary());
    record.causes = watch
        .canary
        .causes()
        .into_iter()
        .map(|(cause, count)| CauseCount { cause, count })
        .collect();
    record.verdicts = watch.verdicts.iter().map(Into::into).collect();
    record.reason = reason;
}

/// What the rollout did so far: the content of every `rollout.json` it writes on its way.
struct Progress {
    records: Vec<StageRecord>,
    hook_runs: Vec<HookRun>,
    failure: Option<Failure>,
    /// The stage whose hook ran last (its weight is what the new version gets), if any.
    current: Option<usize>,
    /// The `degraded` policy of the last stage that ran, for the verification after a rollback.
    degraded_policy: DegradedPolicy,
    rollback: RollbackRecord,
}

/// Writes `rollout.json` at every transition (in progress, each stage's start and end, rolling
/// back, the end), atomically, so a kill at any moment leaves the truth for `record`.
struct Journal<'a> {
    state: &'a StateDir,
    plan: &'a Plan,
    started: Instant,
    environment: String,
    version: String,
    previous_version: Option<String>,
    log_file: String,
}

impl Journal<'_> {
    fn result(&self, result: &'static str, progress: &Progress) -> RolloutFile {
        let failure = progress.failure.as_ref();
        let current = progress.current.map(|i| &self.plan.stages[i]);
        RolloutFile {
            header: Header {
                duration_ms: Some(self.started.elapsed().as_millis() as u64),
                ..Header::now::<RolloutFile>(result)
            },
            deployment_id: self.state.id().to_string(),
            environment: self.environment.clone(),
            version: self.version.clone(),
            previous_version: self.previous_version.clone(),
            expect_version: self.plan.expect_version.clone(),
            failed_stage: failure.map(|f| f.stage.clone()),
            reason: failure.map(|f| f.reason.clone()),
            cause: failure.map(|f| f.cause),
            failed_gate: failure.and_then(|f| f.gate).map(str::to_string),
            current_stage: current.map(|s| s.name.clone()),
            current_weight: current.map(|s| s.weight),
            stages: progress.records.clone(),
            rollback: progress.rollback.clone(),
            hooks: progress.hook_runs.clone(),
            endpoints: endpoints_json(self.plan),
            log_file: self.log_file.clone(),
        }
    }

    /// Rewrites `rollout.json` as `in_progress` or `rolling_back`. Failing to write it is a
    /// warning: the rollout must still reach its end or its rollback.
    fn checkpoint(&self, result: &'static str, progress: &Progress) {
        if let Err(e) = self.state.save(&self.result(result, progress)) {
            tracing::warn!("cannot update `{}` ({result}): {e}", RolloutFile::FILE);
        }
    }

    fn context(&self, stage: &Stage) -> Context {
        Context {
            event: "stage",
            stage: stage.name.clone(),
            weight: stage.weight,
            version: self.version.clone(),
            deployment_id: self.state.id().to_string(),
            previous_version: self.previous_version.clone(),
            environment: self.environment.clone(),
            failed_stage: None,
            reason: None,
        }
    }
}

/// What the stages need besides the progress they update.
struct Walk<'a> {
    plan: &'a Plan,
    journal: &'a Journal<'a>,
    monitor: &'a Monitor,
    shutdown: &'a Shutdown,
    hook_http: &'a reqwest::Client,
    approval_path: &'a std::path::Path,
}

/// Polls a future and turns a panic inside it into `Err(message)`: a bug after traffic moved
/// must still end in the rollback and a `rollout.json` that says so, never in exit 101 alone.
struct CatchPanic<F>(std::pin::Pin<Box<F>>);

impl<F: std::future::Future> CatchPanic<F> {
    fn new(future: F) -> Self {
        CatchPanic(Box::pin(future))
    }
}

impl<F: std::future::Future> std::future::Future for CatchPanic<F> {
    type Output = std::result::Result<F::Output, String>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(std::task::Poll::Ready(value)) => std::task::Poll::Ready(Ok(value)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(payload) => {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".to_string());
                std::task::Poll::Ready(Err(actions::one_line(&message)))
            }
        }
    }
}

/// Test-only (debug builds only; release builds ignore it): `SHIPGATE_TEST_PANIC_AT_STAGE=NAME`
/// panics right after stage NAME's hook shifted traffic, so a test can check that a bug at the
/// worst moment still rolls back and writes `rollout.json`.
fn test_panic_after_hook(stage: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("SHIPGATE_TEST_PANIC_AT_STAGE").as_deref() == Ok(stage) {
        panic!(
            "SHIPGATE_TEST_PANIC_AT_STAGE: a deliberate panic after the hook of stage `{stage}`"
        );
    }
    #[cfg(not(debug_assertions))]
    let _ = stage;
}

async fn execute(args: &Args, settings: &Settings, plan: &Plan) -> Result<Outcome> {
    let started = Instant::now();
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
    let log_name = format!("rollout-logs-{}.log", state.id());
    let log_path = state.path(&log_name);
    let mut log = LogFile::append(&log_path).context("cannot open the rollout log")?;
    let shutdown = Shutdown::listen();
    let prober = Prober::new(plan.probe_timeout, plan.rule.clone()).map_err(|e| {
        Error::dependency(format!(
            "cannot set up the HTTP client for health probes: {}",
            hooks::describe_http_error(e)
        ))
    })?;
    let hook_http = hooks::http_client(plan.stage_hook.timeout)?;
    let monitor = Monitor::new(plan, prober, shutdown.clone());
    let approval_path = approval_file(args, &state);

    log.line(&format!(
        "[{}] rollout of `{version}` (previous `{}`) for deployment `{}` in `{}`",
        crate::util::now_rfc3339(),
        previous_version.as_deref().unwrap_or("unknown"),
        state.id(),
        settings.environment
    ));
    for line in plan.describe().iter().chain(hook_line(plan).iter()) {
        log.line(&format!("[plan] {line}"));
    }
    tracing::info!(
        "rolling out {} in {} stage(s) ({}); canary probes: {}",
        actions::quote(&version),
        plan.stages.len(),
        plan.stages
            .iter()
            .map(|s| format!(
                "{} {}% for {}",
                s.name,
                s.weight,
                format_duration(s.duration)
            ))
            .collect::<Vec<_>>()
            .join(" → "),
        plan.canary
            .iter()
            .map(|t| t.label.clone())
            .collect::<Vec<_>>()
            .join(", ")
    );

    let journal = Journal {
        state: &state,
        plan,
        started,
        environment: settings.environment.clone(),
        version: version.clone(),
        previous_version: previous_version.clone(),
        log_file: log_path.display().to_string(),
    };
    let mut progress = Progress {
        records: plan.stages.iter().map(not_run).collect(),
        hook_runs: Vec::new(),
        failure: None,
        current: None,
        degraded_policy: plan
            .stages
            .first()
            .map_or(DegradedPolicy::Fail, |s| s.thresholds.degraded),
        rollback: RollbackRecord {
            ran: false,
            ok: false,
            reason: None,
            hook: None,
            hook_ok: None,
            error: None,
            stage_hook_reused: plan.rollback_is_stage_hook,
            verification: None,
        },
    };
    // Before any traffic moves: a kill from here on leaves `in_progress`, never nothing.
    state.save(&journal.result("in_progress", &progress))?;

    let walk = Walk {
        plan,
        journal: &journal,
        monitor: &monitor,
        shutdown: &shutdown,
        hook_http: &hook_http,
        approval_path: &approval_path,
    };
    if let Err(panic) = CatchPanic::new(walk_stages(&walk, &mut progress, &mut log)).await {
        let at = progress.current.unwrap_or(0);
        let stage = &plan.stages[at];
        let reason = format!(
            "shipgate hit a bug during stage `{}` ({}%): {panic}; rolling back as a precaution (please report this bug)",
            stage.name, stage.weight
        );
        log.line(&format!("[{}] PANIC: {reason}", crate::util::now_rfc3339()));
        actions::annotate(Level::Error, Some("shipgate rollout — bug"), &reason);
        let record = &mut progress.records[at];
        if matches!(record.status, StageStatus::Running | StageStatus::NotRun) {
            record.status = StageStatus::Failed;
            record.reason = Some(reason.clone());
        }
        progress.failure = Some(Failure {
            stage: stage.name.clone(),
            reason,
            cause: Cause::Panic,
            gate: None,
        });
    }

    let result = match progress
        .failure
        .as_ref()
        .map(|f| (f.stage.clone(), f.reason.clone()))
    {
        None => "pass",
        Some((failed_stage, reason)) => {
            let _group = actions::group("Rollback");
            tracing::error!("rolling back {}: {reason}", actions::quote(&version));
            log.line(&format!(
                "[{}] ROLLBACK: {reason}",
                crate::util::now_rfc3339()
            ));
            progress.rollback.ran = true;
            progress.rollback.reason = Some(reason.clone());
            progress.rollback.hook = Some(plan.rollback_hook.display());
            journal.checkpoint("rolling_back", &progress);
            let context = Context {
                event: "rollback",
                stage: "rollback".to_string(),
                weight: 0,
                version: version.clone(),
                deployment_id: state.id().to_string(),
                previous_version: previous_version.clone(),
                environment: settings.environment.clone(),
                failed_stage: Some(failed_stage),
                reason: Some(reason),
            };
            // A rollback is the answer to a signal: it is never itself interrupted by one.
            let never = Shutdown::never();
            let run = CatchPanic::new(hooks::run(
                &plan.rollback_hook,
                &context,
                &hook_http,
                &mut log,
                &never,
            ))
            .await;
            let hook_ok = match run {
                Ok(run) => {
                    let ok = run.ok;
                    if !ok {
                        tracing::error!("the rollback hook failed: {}", run.describe());
                    }
                    progress.hook_runs.push(run);
                    ok
                }
                Err(panic) => {
                    let error = format!("shipgate hit a bug running the rollback hook: {panic}");
                    tracing::error!("{error}");
                    log.line(&format!("[{}] PANIC: {error}", crate::util::now_rfc3339()));
                    progress.rollback.error = Some(error);
                    false
                }
            };
            progress.rollback.hook_ok = Some(hook_ok);
            if hook_ok {
                journal.checkpoint("rolling_back", &progress);
                tracing::info!("rollback hook done; checking health after the rollback");
                let verification = CatchPanic::new(monitor.verify(
                    plan.verify_successes,
                    plan.verify_timeout,
                    plan.verify_interval,
                    progress.degraded_policy,
                    &mut log,
                ))
                .await
                .unwrap_or_else(|panic| Verification::failed_by_bug(&panic));
                if verification.cut_short {
                    let level = if verification.unconfirmed() {
                        Level::Warning
                    } else {
                        Level::Error
                    };
                    actions::annotate(level, Some("shipgate rollout"), &verification.detail);
                }
                progress.rollback.ok = verification.ok || verification.unconfirmed();
                progress.rollback.verification = Some(verification);
            }
            if progress.rollback.ok {
                "rolled_back"
            } else {
                "rollback_failed"
            }
        }
    };

    let record = journal.result(result, &progress);
    log.line(&format!(
        "[{}] result: {}{}",
        crate::util::now_rfc3339(),
        record.header.result,
        record
            .reason
            .as_ref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default()
    ));
    state.save(&record)?;
    set_outputs(&[
        ("result", record.header.result.clone()),
        (
            "failed-stage",
            record.failed_stage.clone().unwrap_or_default(),
        ),
        ("reason", record.reason.clone().unwrap_or_default()),
        ("log-file", record.log_file.clone()),
    ])?;
    actions::append_summary(&summary(&record, plan))?;
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
            actions::annotate(
                Level::Error,
                Some("shipgate rollout"),
                &format!(
                    "rolled back `{}`: {}",
                    record.version,
                    record.reason.as_deref().unwrap_or("")
                ),
            );
            exit::Status::GateFailed
        }
        _ => {
            actions::annotate(
                Level::Error,
                Some("shipgate rollout — ROLLBACK FAILED"),
                &rollback_failed_message(&record, plan),
            );
            exit::Status::RollbackFailed
        }
    };
    let json = serde_json::to_value(&record).unwrap_or_else(|_| json!({}));
    Ok(Outcome { json, status })
}

/// The stages in order: pause, hook, watch. Sets `progress.failure` and returns at the first
/// failure; rewrites `rollout.json` at each transition.
async fn walk_stages(walk: &Walk<'_>, progress: &mut Progress, log: &mut LogFile) {
    let Walk {
        plan,
        journal,
        monitor,
        shutdown,
        hook_http,
        approval_path,
    } = *walk;
    let state = journal.state;
    let version = &journal.version;
    // The last stage whose window passed: it holds its weight while the next stage waits.
    let mut holding: Option<(usize, StageWatch)> = None;

    for (index, stage) in plan.stages.iter().enumerate() {
        let _group = actions::group(&format!(
            "Rollout stage `{}`: {}% for {}",
            stage.name,
            stage.weight,
            format_duration(stage.duration)
        ));
        if stage.pause {
            let waited = Instant::now();
            let deadline = crate::util::instant_after(stage.approval_timeout);
            let pause = Pause {
                stage: stage.name.clone(),
                waiting_since: crate::util::now_rfc3339(),
                deadline: crate::util::rfc3339_after(stage.approval_timeout)
                    .unwrap_or_else(|| "never".to_string()),
                approval_file: approval_path.to_path_buf(),
                pid: std::process::id(),
            };
            if let Err(e) = state.write_json(PAUSE_FILE, &pause) {
                // Traffic may have moved already: wait anyway (the approval file still works).
                tracing::warn!(
                    "{e}; approve with `shipgate rollout --resume --approve-stage {}`",
                    stage.name
                );
            }
            journal.checkpoint("in_progress", progress);
            let message = format!(
                "stage `{}` waits for approval: run `shipgate rollout --resume` (deployment `{}`) or create `{}` within {}",
                stage.name,
                state.id(),
                approval_path.display(),
                format_duration(stage.approval_timeout)
            );
            actions::annotate(Level::Notice, Some("shipgate rollout"), &message);
            log.line(&format!("[{}] {message}", crate::util::now_rfc3339()));
            let until = Until::Approval {
                file: approval_path,
                next: &stage.name,
                deadline,
            };
            let stop = match holding.as_mut() {
                Some((held, watch)) => monitor.watch(&plan.stages[*held], watch, until, log).await,
                None => wait_for_approval(approval_path, &stage.name, deadline, shutdown).await,
            };
            let _ = std::fs::remove_file(state.path(PAUSE_FILE));
            if let Some((held, watch)) = &holding {
                let status = if matches!(stop, Stop::Breach { .. }) {
                    StageStatus::Failed
                } else {
                    StageStatus::Passed
                };
                let reason = match &stop {
                    Stop::Breach { reason, .. } => Some(reason.clone()),
                    _ => None,
                };
                fill(&mut progress.records[*held], watch, status, reason);
            }
            match stop {
                Stop::Approved(approval) => {
                    let by = approval
                        .approved_by
                        .unwrap_or_else(|| "unknown".to_string());
                    log.line(&format!(
                        "[{}] stage `{}` approved by {} after {}",
                        crate::util::now_rfc3339(),
                        stage.name,
                        actions::one_line(&by),
                        format_duration(waited.elapsed())
                    ));
                    tracing::info!("stage `{}` approved by {}", stage.name, actions::quote(&by));
                    progress.records[index].approval = Some(ApprovalRecord {
                        approved_by: by,
                        waited_ms: waited.elapsed().as_millis() as u64,
                    });
                }
                Stop::Deadline => {
                    let reason = format!(
                        "stage `{}` was not approved within {} (approval deadline)",
                        stage.name,
                        format_duration(stage.approval_timeout)
                    );
                    progress.records[index].status = StageStatus::Failed;
                    progress.records[index].reason = Some(reason.clone());
                    progress.failure = Some(Failure {
                        stage: stage.name.clone(),
                        reason,
                        cause: Cause::ApprovalDeadline,
                        gate: None,
                    });
                    return;
                }
                Stop::Signal(signal) => {
                    let reason = format!(
                        "cancelled by {signal} while stage `{}` waited for approval",
                        stage.name
                    );
                    progress.records[index].status = StageStatus::Failed;
                    progress.records[index].reason = Some(reason.clone());
                    progress.failure = Some(Failure {
                        stage: stage.name.clone(),
                        reason,
                        cause: Cause::Signal,
                        gate: None,
                    });
                    return;
                }
                Stop::Breach { reason, verdict } => {
                    let held = holding.as_ref().map_or(index, |(held, _)| *held);
                    progress.failure = Some(Failure {
                        stage: plan.stages[held].name.clone(),
                        reason,
                        cause: Cause::Gate,
                        gate: Some(verdict.gate),
                    });
                    return;
                }
                Stop::Completed => {}
            }
        }

        tracing::info!(
            "stage `{}`: shifting {}% of traffic to {} ({})",
            stage.name,
            stage.weight,
            actions::quote(version),
            plan.stage_hook.display()
        );
        // The stage starts: from here its weight may be on the new version.
        progress.current = Some(index);
        progress.records[index].status = StageStatus::Running;
        journal.checkpoint("in_progress", progress);
        let run = hooks::run(
            &plan.stage_hook,
            &journal.context(stage),
            hook_http,
            log,
            shutdown,
        )
        .await;
        let hook_ok = run.ok;
        let hook_cancelled = run.cancelled;
        let described = run.describe();
        progress.hook_runs.push(run);
        if !hook_ok {
            let reason = if hook_cancelled {
                format!(
                    "cancelled by {} during the stage hook of `{}`",
                    shutdown.received().unwrap_or("a signal"),
                    stage.name
                )
            } else {
                format!(
                    "the stage hook failed for stage `{}` ({}%): {described}",
                    stage.name, stage.weight
                )
            };
            progress.records[index].status = StageStatus::Failed;
            progress.records[index].reason = Some(reason.clone());
            progress.failure = Some(Failure {
                stage: stage.name.clone(),
                reason,
                cause: if hook_cancelled {
                    Cause::Signal
                } else {
                    Cause::Hook
                },
                gate: None,
            });
            return;
        }
        test_panic_after_hook(&stage.name);

        progress.degraded_policy = stage.thresholds.degraded;
        let mut watch = StageWatch::new(stage, !plan.baseline.is_empty());
        let stop = monitor.watch(stage, &mut watch, Until::End, log).await;
        match stop {
            Stop::Completed => {
                fill(
                    &mut progress.records[index],
                    &watch,
                    StageStatus::Passed,
                    None,
                );
                tracing::info!(
                    "stage `{}` passed: {}",
                    stage.name,
                    crate::rollout::monitor::summary_text(
                        &watch.canary.stage_summary(),
                        watch.baseline.as_ref().map(|b| b.stage_summary())
                    )
                );
                if stage.thresholds.degraded == DegradedPolicy::Warn
                    && watch.canary.stage_summary().degraded > 0
                {
                    let stats = watch.canary.stage_summary();
                    actions::annotate(
                        Level::Warning,
                        Some("shipgate rollout"),
                        &format!(
                            "stage `{}`: the canary reported warn/Degraded in {} of {} probes (counted as passing: `degraded: warn`)",
                            stage.name, stats.degraded, stats.samples
                        ),
                    );
                }
                journal.checkpoint("in_progress", progress);
                holding = Some((index, watch));
            }
            Stop::Breach { reason, verdict } => {
                fill(
                    &mut progress.records[index],
                    &watch,
                    StageStatus::Failed,
                    Some(reason.clone()),
                );
                progress.failure = Some(Failure {
                    stage: stage.name.clone(),
                    reason,
                    cause: Cause::Gate,
                    gate: Some(verdict.gate),
                });
                return;
            }
            Stop::Signal(signal) => {
                let reason = format!(
                    "cancelled by {signal} during stage `{}` ({}%)",
                    stage.name, stage.weight
                );
                fill(
                    &mut progress.records[index],
                    &watch,
                    StageStatus::Failed,
                    Some(reason.clone()),
                );
                progress.failure = Some(Failure {
                    stage: stage.name.clone(),
                    reason,
                    cause: Cause::Signal,
                    gate: None,
                });
                return;
            }
            Stop::Approved(_) | Stop::Deadline => {}
        }
    }
}

fn rollback_failed_message(record: &RolloutFile, plan: &Plan) -> String {
    let weight = record
        .stages
        .iter()
        .filter(|s| s.status != StageStatus::NotRun)
        .map(|s| s.weight)
        .max()
        .unwrap_or(0);
    let what = match (&record.rollback.hook_ok, &record.rollback.verification) {
        (Some(false), _) if record.rollback.error.is_some() => {
            record.rollback.error.clone().unwrap_or_default()
        }
        (Some(false), _) => format!(
            "the rollback hook failed ({})",
            record
                .hooks
                .last()
                .map(HookRun::describe)
                .unwrap_or_default()
        ),
        (_, Some(verification)) => format!(
            "the rollback hook ran but the service is not healthy: {}",
            verification.detail
        ),
        _ => "the rollback did not complete".to_string(),
    };
    format!(
        "ACT NOW: the automatic rollback of `{}` failed: {what}. Up to {weight}% of traffic may still reach `{}`{}. Shift traffic back by hand (rollback hook: `{}`) and check the health endpoints. The rollout stopped because: {}",
        record.version,
        record.version,
        record
            .previous_version
            .as_ref()
            .map(|p| format!(" instead of `{p}`"))
            .unwrap_or_default(),
        plan.rollback_hook.display(),
        record.reason.as_deref().unwrap_or("")
    )
}

/// The first stage paused: nothing to watch yet, only the approval, its deadline or a signal.
async fn wait_for_approval(
    file: &std::path::Path,
    stage: &str,
    deadline: Instant,
    shutdown: &Shutdown,
) -> Stop {
    let mut poll = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = shutdown.wait() => return Stop::Signal(shutdown.received().unwrap_or("a signal")),
            _ = poll.tick() => {
                if let Some(approval) = approval::take(file, stage) {
                    return Stop::Approved(approval);
                }
                if Instant::now() >= deadline {
                    return Stop::Deadline;
                }
            }
        }
    }
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
        "### ✅ Rollout of `{version}` already done\n\nDeployment `{}` passed every stage at {at}; this run changed nothing.\n",
        state.id()
    ))?;
    Ok(Outcome::success(
        serde_json::to_value(&previous).unwrap_or_else(|_| json!({})),
    ))
}

fn percent_text(rate: Option<f64>) -> String {
    rate.map_or_else(
        || "—".to_string(),
        |r| {
            let text = format!("{r:.2}");
            format!("{}%", text.trim_end_matches('0').trim_end_matches('.'))
        },
    )
}

fn ms_text(ms: Option<f64>) -> String {
    ms.map_or_else(|| "—".to_string(), |ms| format!("{ms:.1} ms"))
}

fn summary(record: &RolloutFile, plan: &Plan) -> String {
    let heading = match record.header.result.as_str() {
        "pass" => format!("### ✅ Rollout of `{}` passed every stage", record.version),
        "rolled_back" => format!(
            "### ↩️ Rollout of `{}` rolled back at stage `{}`",
            record.version,
            record.failed_stage.as_deref().unwrap_or("?")
        ),
        _ => format!(
            "### 🚨 Rollout of `{}` failed at stage `{}` and the ROLLBACK FAILED",
            record.version,
            record.failed_stage.as_deref().unwrap_or("?")
        ),
    };
    let mut out = format!("{heading}\n\n");
    if let Some(reason) = &record.reason {
        out.push_str(&format!("**Why:** {reason}\n\n"));
    }
    if record.header.result == "rollback_failed" {
        out.push_str(&format!(
            "> [!CAUTION]\n> {}\n\n",
            rollback_failed_message(record, plan)
        ));
    }
    let mut table = Table::new(&[
        "Stage",
        "Weight",
        "Duration",
        "Samples",
        "Success rate",
        "p95",
        "Verdict",
    ]);
    for stage in &record.stages {
        let verdict = match stage.status {
            StageStatus::Passed => {
                let mut text = "✅ passed".to_string();
                if stage.degraded > 0 {
                    text.push_str(&format!(" ({} degraded)", stage.degraded));
                }
                text
            }
            StageStatus::Failed => {
                let stopped_here = record.failed_stage.as_deref() == Some(stage.name.as_str());
                let gate = stage
                    .verdicts
                    .iter()
                    .find(|v| matches!(v.status, Status::Fail | Status::NoData))
                    .map(|v| format!("{}: {} (needs {})", v.gate, v.measured, v.threshold));
                let text = match (record.cause, stopped_here, gate) {
                    (Some(Cause::Gate), true, Some(gate)) => gate,
                    (Some(Cause::Hook), true, _) => "the stage hook failed".to_string(),
                    (Some(Cause::Signal), true, _) => "cancelled".to_string(),
                    (Some(Cause::Panic), true, _) => "shipgate bug (panic)".to_string(),
                    (Some(Cause::ApprovalDeadline), true, _) => "not approved in time".to_string(),
                    _ => "failed".to_string(),
                };
                format!("❌ {text}")
            }
            _ => "not run".to_string(),
        };
        table.row(&[
            format!("`{}`", stage.name),
            format!("{}%", stage.weight),
            if stage.status == StageStatus::NotRun {
                format!(
                    "— / {}",
                    format_duration(Duration::from_millis(stage.planned_duration_ms))
                )
            } else {
                format!(
                    "{} / {}",
                    format_duration(Duration::from_millis(stage.elapsed_ms)),
                    format_duration(Duration::from_millis(stage.planned_duration_ms))
                )
            },
            stage.samples.to_string(),
            percent_text(stage.success_rate),
            ms_text(stage.p95_ms),
            verdict,
        ]);
    }
    out.push_str(&table.render());
    if let Some(failed) = record
        .stages
        .iter()
        .find(|s| s.status == StageStatus::Failed && !s.verdicts.is_empty())
    {
        let mut gates = Table::new(&["Gate", "Measured", "Threshold", "Verdict"]);
        for view in &failed.verdicts {
            gates.row(&[
                view.gate.clone(),
                view.measured.clone(),
                view.threshold.clone(),
                match view.status {
                    Status::Pass => "pass".to_string(),
                    Status::Fail => "**fail**".to_string(),
                    Status::NoData => "no data".to_string(),
                },
            ]);
        }
        out.push_str(&format!(
            "\nGates of `{}` when it stopped:\n\n{}",
            failed.name,
            gates.render()
        ));
        if !failed.causes.is_empty() {
            let causes: Vec<String> = failed
                .causes
                .iter()
                .take(5)
                .map(|c| format!("{} × {}", c.count, c.cause))
                .collect();
            out.push_str(&format!(
                "\nFailed probes: {}\n",
                actions::one_line(&causes.join(", "))
            ));
        }
    }
    if record.rollback.ran {
        let hook = match (record.rollback.hook_ok, &record.rollback.error) {
            (Some(true), _) => "the rollback hook succeeded".to_string(),
            (_, Some(error)) => format!("**{error}**"),
            _ => format!(
                "the rollback hook **failed** ({})",
                record
                    .hooks
                    .last()
                    .map(HookRun::describe)
                    .unwrap_or_default()
            ),
        };
        let verified = match &record.rollback.verification {
            Some(v) if v.checked && v.ok => format!("; {}", v.detail),
            Some(v) if v.checked => format!("; **{}**", v.detail),
            Some(v) => format!("; {}", v.detail),
            None => String::new(),
        };
        out.push_str(&format!("\n**Rollback:** {hook}{verified}.\n"));
    }
    if !record.hooks.is_empty() {
        let mut hooks = Table::new(&["Hook", "Stage", "Weight", "Attempts", "Result", "Time"]);
        for run in &record.hooks {
            hooks.row(&[
                run.hook.clone(),
                format!("`{}`", run.stage),
                format!("{}%", run.weight),
                run.attempts.len().to_string(),
                if run.ok {
                    "ok".to_string()
                } else {
                    run.describe()
                },
                format_duration(Duration::from_millis(run.duration_ms)),
            ]);
        }
        out.push_str(&format!(
            "\n<details><summary>Hooks ({})</summary>\n\n{}\n</details>\n",
            record.hooks.len(),
            hooks.render()
        ));
    }
    out.push_str(&format!(
        "\nDecision log: `{}` (every probe, window and verdict).\n",
        record.log_file
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::gates::{StageVerdict, Verdict};

    #[test]
    fn verdict_views_read_back_what_verdicts_write() {
        let verdict = Verdict {
            gate: "success-rate",
            status: Status::NoData,
            value: None,
            measured: "-".into(),
            threshold: "≥ 99%".into(),
            message: "no data".into(),
        };
        let view = StageVerdict::from(&verdict);
        assert_eq!(view.status, Status::NoData);
        assert_eq!(
            serde_json::to_value(&view).expect("json")["status"],
            "no_data"
        );
    }
}
