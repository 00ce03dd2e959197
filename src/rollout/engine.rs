//! The stage state machine of `shipgate rollout`: for each stage of the plan, wait for its
//! approval if it pauses, run the stage hook, watch the canary through the stage's window; on a
//! breach, a hook failure, an approval deadline, a signal or a panic, run the rollback hook and
//! check health again. `rollout.json` is rewritten at every transition, and every decision goes
//! to `rollout-logs-<deployment-id>.log`.

use std::path::Path;
use std::time::{Duration, Instant};

use super::approval::{self, PAUSE_FILE, Pause};
use super::gates::DegradedPolicy;
use super::monitor::{Monitor, StageWatch, Stop, Until, Verification};
use super::plan::{Plan, Stage};
use super::probe::Prober;
use crate::actions::{self, Level};
use crate::error::{Error, Result, ResultExt};
use crate::hooks::{self, Context, HookRun};
use crate::metrics::template::Vars;
use crate::process::{LogFile, Shutdown};
use crate::state::rollout::{
    ApprovalRecord, Cause, CauseCount, RollbackRecord, RolloutFile, StageRecord, StageStatus,
};
use crate::state::{Header, StateDir, StateFile};
use crate::ui::format_duration;

/// What a rollout ships, and where: the version the hooks roll out and the one before it.
pub(crate) struct Release {
    pub(crate) version: String,
    pub(crate) previous_version: Option<String>,
    pub(crate) environment: String,
}

/// Why the rollout stopped.
struct Failure {
    stage: String,
    reason: String,
    cause: Cause,
    /// The gate that failed, when a gate stopped the rollout.
    gate: Option<String>,
}

/// Runs `plan` for `release`: the stages, then the rollback and the health check after it when
/// one failed. Writes `rollout.json` at every transition (the last one is returned, saved) and the
/// decision log; `approval_path` is the file a paused stage waits for, `started` when the command
/// started (for `duration_ms`).
pub(crate) async fn run(
    state: &StateDir,
    plan: &Plan,
    release: &Release,
    approval_path: &Path,
    started: Instant,
) -> Result<RolloutFile> {
    let Release {
        version,
        previous_version,
        environment,
    } = release;
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
    let vars = Vars {
        version: version.clone(),
        previous_version: previous_version.clone(),
        deployment_id: state.id().to_string(),
        ..Vars::default()
    };
    if let Some(first) = plan.stages.first() {
        // Before any traffic moves: a query the backend refuses, or a backend that is down,
        // stops here with nothing changed.
        let first_vars = first.vars(&vars);
        super::metric::preflight(&plan.metrics, &first_vars).await?;
        if let Some(judge) = &plan.judge {
            super::judge::preflight(judge, &first_vars).await?;
        }
    }
    let monitor = Monitor::new(plan, prober, shutdown.clone(), vars);

    log.line(&format!(
        "[{}] rollout of `{version}` (previous `{}`) for deployment `{}` in `{}`",
        crate::util::now_rfc3339(),
        previous_version.as_deref().unwrap_or("unknown"),
        state.id(),
        environment
    ));
    for line in plan.describe().iter().chain(plan.hook_lines().iter()) {
        log.line(&format!("[plan] {line}"));
    }
    tracing::info!(
        "rolling out {} in {} stage(s) ({}); canary probes: {}",
        actions::quote(version),
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
        state,
        plan,
        started,
        environment: environment.clone(),
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
        approval_path,
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
            tracing::error!("rolling back {}: {reason}", actions::quote(version));
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
                environment: environment.clone(),
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
    Ok(record)
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
        judgements: Vec::new(),
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
    record.verdicts = watch
        .verdicts
        .iter()
        .chain(&watch.judged.verdicts)
        .map(Into::into)
        .collect();
    record.judgements.clone_from(&watch.judged.judgements);
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
            failed_gate: failure.and_then(|f| f.gate.clone()),
            current_stage: current.map(|s| s.name.clone()),
            current_weight: current.map(|s| s.weight),
            stages: progress.records.clone(),
            rollback: progress.rollback.clone(),
            hooks: progress.hook_runs.clone(),
            endpoints: self.plan.endpoints(),
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

/// An approval that let `subject` (`stage `x``, or the stage's inconclusive judgement) go on:
/// logged with who and how long it waited, and recorded in the stage.
fn approved(
    log: &mut LogFile,
    subject: &str,
    approval: approval::Approval,
    waited: Instant,
) -> ApprovalRecord {
    let by = approval
        .approved_by
        .unwrap_or_else(|| "unknown".to_string());
    log.line(&format!(
        "[{}] {subject} approved by {} after {}",
        crate::util::now_rfc3339(),
        actions::one_line(&by),
        format_duration(waited.elapsed())
    ));
    tracing::info!("{subject} approved by {}", actions::quote(&by));
    ApprovalRecord {
        approved_by: by,
        waited_ms: waited.elapsed().as_millis() as u64,
    }
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
            let deadline = announce_pause(journal, progress, stage, approval_path, "", log);
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
                    let subject = format!("stage `{}`", stage.name);
                    progress.records[index].approval =
                        Some(approved(log, &subject, approval, waited));
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
                        cause: breach_cause(&verdict),
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
        let mut watch = StageWatch::new(stage, !plan.baseline.is_empty(), plan.metrics.len());
        let stop = monitor.watch(stage, &mut watch, Until::End, log).await;
        match stop {
            Stop::Completed => {
                if plan
                    .judge
                    .as_ref()
                    .is_some_and(|judge| watch.judged.waits_for_approval(judge))
                    && let Err(failure) =
                        hold_inconclusive(walk, progress, index, &mut watch, log).await
                {
                    fill(
                        &mut progress.records[index],
                        &watch,
                        StageStatus::Failed,
                        Some(failure.reason.clone()),
                    );
                    progress.failure = Some(failure);
                    return;
                }
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
                    cause: breach_cause(&verdict),
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

/// Says that `stage` waits for an approval (`why`, when not its own `pause`): writes
/// `rollout-pause.json` (which `--resume` reads) and `rollout.json`, annotates and logs it.
/// Returns the approval deadline.
fn announce_pause(
    journal: &Journal<'_>,
    progress: &Progress,
    stage: &Stage,
    approval_path: &Path,
    why: &str,
    log: &mut LogFile,
) -> Instant {
    let state = journal.state;
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
        "stage `{}` waits for approval{why}: run `shipgate rollout --resume` (deployment `{}`) or create `{}` within {}",
        stage.name,
        state.id(),
        approval_path.display(),
        format_duration(stage.approval_timeout)
    );
    actions::annotate(Level::Notice, Some("shipgate rollout"), &message);
    log.line(&format!("[{}] {message}", crate::util::now_rfc3339()));
    deadline
}

/// The canary judge was inconclusive and its policy is `pause`: `stage` holds its weight, still
/// watched (a breach still rolls back), until it is approved like a paused stage, or its
/// approval deadline passes. On an approval the waiting verdicts pass, saying who approved.
async fn hold_inconclusive(
    walk: &Walk<'_>,
    progress: &mut Progress,
    index: usize,
    watch: &mut StageWatch,
    log: &mut LogFile,
) -> std::result::Result<(), Failure> {
    let stage = &walk.plan.stages[index];
    let waited = Instant::now();
    let why = format!(
        " because the canary judge is inconclusive ({}; `inconclusive: pause`); it holds {}% meanwhile",
        watch
            .judged
            .judgements
            .iter()
            .filter(|j| j.verdict == crate::state::rollout::JudgeVerdict::Inconclusive)
            .map(|j| format!("{}: {}", j.gate, j.detail))
            .collect::<Vec<_>>()
            .join("; "),
        stage.weight
    );
    let deadline = announce_pause(
        walk.journal,
        progress,
        stage,
        walk.approval_path,
        &actions::one_line(&why),
        log,
    );
    let until = Until::Approval {
        file: walk.approval_path,
        next: &stage.name,
        deadline,
    };
    let stop = walk.monitor.watch(stage, watch, until, log).await;
    let _ = std::fs::remove_file(walk.journal.state.path(PAUSE_FILE));
    let failure = |reason: String, cause: Cause, gate: Option<String>| Failure {
        stage: stage.name.clone(),
        reason,
        cause,
        gate,
    };
    match stop {
        Stop::Approved(approval) => {
            let subject = format!(
                "stage `{}`: the inconclusive canary judgement was",
                stage.name
            );
            let record = approved(log, &subject, approval, waited);
            watch.judged.approve(&record.approved_by);
            progress.records[index].approval = Some(record);
            Ok(())
        }
        Stop::Completed => Ok(()),
        Stop::Deadline => Err(failure(
            format!(
                "stage `{}` ({}%): the canary judge was inconclusive and nobody approved within {} (approval deadline)",
                stage.name,
                stage.weight,
                format_duration(stage.approval_timeout)
            ),
            Cause::ApprovalDeadline,
            None,
        )),
        Stop::Signal(signal) => Err(failure(
            format!(
                "cancelled by {signal} while stage `{}` waited for the approval of an inconclusive canary judgement",
                stage.name
            ),
            Cause::Signal,
            None,
        )),
        Stop::Breach { reason, verdict } => {
            Err(failure(reason, breach_cause(&verdict), Some(verdict.gate)))
        }
    }
}

/// A gate that could not judge because its backend failed is a dependency failure.
fn breach_cause(verdict: &super::gates::Verdict) -> Cause {
    if verdict.dependency {
        Cause::Dependency
    } else {
        Cause::Gate
    }
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
