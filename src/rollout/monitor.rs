//! Watching a stage: every target is probed on its own schedule (a slow or hung endpoint never
//! delays the others), each sample lands in the stage's rolling window, and the gates are
//! evaluated after every sample, so a breach stops the stage at once. Also the health check
//! after a rollback.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use super::approval::{self, Approval};
use super::gates::{self, DegradedPolicy, Inputs, Status, Verdict};
use super::judge::{self, JudgeSpec, Judged};
use super::metric::{self, Measurement, MetricSpec, MetricState};
use super::plan::{Plan, Stage};
use super::probe::{self, Judge, Observation, Prober, Target};
use super::window::{Summary, Window};
use crate::metrics::template::Vars;
use crate::process::{LogFile, Shutdown};
pub(crate) use crate::state::rollout::{Verification, VerifiedEndpoint};
use crate::ui::format_duration;

/// How often the approval file is looked at while a stage waits.
const APPROVAL_POLL: Duration = Duration::from_millis(200);
/// Progress lines on stderr come at most this often (or once per probe interval, if longer).
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// GitHub cancels a step with SIGINT, SIGTERM 7.5 s later and SIGKILL 2.5 s after that (GitHub
/// docs, "workflow cancellation"): from the first signal shipgate has 10 s in all.
pub(crate) const CANCEL_GRACE: Duration = Duration::from_secs(10);
/// What is kept of that grace for after the verification: `rollout.json`, outputs, summary.
const EXIT_RESERVE: Duration = Duration::from_secs(2);
/// The shortest probe interval of a verification squeezed into the grace period.
const GRACE_MIN_INTERVAL: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Canary,
    Baseline,
}

/// The state of one stage's monitoring (kept across a wait for approval, which extends it).
pub(crate) struct StageWatch {
    pub(crate) canary: Window,
    pub(crate) baseline: Option<Window>,
    pub(crate) started: Instant,
    /// The last evaluation's verdicts.
    pub(crate) verdicts: Vec<Verdict>,
    /// Each metric gate's measurements (by the plan's index; untouched when it does not apply).
    pub(crate) metrics: Vec<MetricState>,
    /// The canary judge's verdicts and numbers, once the stage's window ended.
    pub(crate) judged: Judged,
    last_progress: Option<Instant>,
}

impl StageWatch {
    pub(crate) fn new(stage: &Stage, with_baseline: bool, metrics: usize) -> StageWatch {
        StageWatch {
            metrics: vec![MetricState::default(); metrics],
            canary: Window::new(stage.thresholds.window),
            baseline: with_baseline.then(|| Window::new(stage.thresholds.window)),
            started: Instant::now(),
            verdicts: Vec::new(),
            judged: Judged::default(),
            last_progress: None,
        }
    }
}

/// What to watch for besides a breach.
pub(crate) enum Until<'a> {
    /// The stage's duration: the stage passes if no gate fails and every gate has data.
    End,
    /// An approval for stage `next` (the current stage holds its weight meanwhile), or its
    /// deadline.
    Approval {
        file: &'a Path,
        next: &'a str,
        deadline: Instant,
    },
}

/// Why watching stopped.
pub(crate) enum Stop {
    Completed,
    /// A gate failed (or had no data at the end of the stage).
    Breach {
        verdict: Verdict,
        reason: String,
    },
    Signal(&'static str),
    Approved(Approval),
    Deadline,
}

impl Verification {
    /// Cut short with no endpoint seen unhealthy: health is not confirmed, but nothing says the
    /// rollback did not work either.
    pub(crate) fn unconfirmed(&self) -> bool {
        self.cut_short && !self.ok && self.endpoints.iter().all(|e| e.last_healthy != Some(false))
    }

    /// The check itself hit a bug (a panic): nothing is confirmed.
    pub(crate) fn failed_by_bug(panic: &str) -> Verification {
        Verification {
            checked: false,
            ok: false,
            cut_short: false,
            detail: format!("shipgate hit a bug checking health after the rollback: {panic}"),
            endpoints: Vec::new(),
            duration_ms: 0,
        }
    }
}

pub(crate) struct Monitor {
    prober: Arc<Prober>,
    canary: Arc<Vec<Target>>,
    baseline: Arc<Vec<Target>>,
    verify: Arc<Vec<Target>>,
    expect_version: Option<String>,
    timed: bool,
    metrics: Arc<Vec<MetricSpec>>,
    judge: Option<JudgeSpec>,
    /// The metric queries' template values common to every stage.
    vars: Vars,
    shutdown: Shutdown,
    /// When the first SIGTERM/SIGINT arrived.
    signalled_at: Arc<std::sync::OnceLock<Instant>>,
}

fn spawn_probes(
    set: &mut JoinSet<()>,
    prober: &Arc<Prober>,
    targets: &Arc<Vec<Target>>,
    role: Role,
    interval: Duration,
    tx: &mpsc::Sender<(Role, Observation)>,
) {
    for index in 0..targets.len() {
        let (prober, targets, tx) = (prober.clone(), targets.clone(), tx.clone());
        set.spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let observation = prober.probe(index, &targets[index]).await;
                if tx.send((role, observation)).await.is_err() {
                    break;
                }
            }
        });
    }
}

/// Measures each metric gate that applies to `stage` every interval, the first after its
/// initial delay from `started`.
fn spawn_metrics(
    set: &mut JoinSet<()>,
    specs: &Arc<Vec<MetricSpec>>,
    stage: &Stage,
    vars: &Vars,
    started: Instant,
    tx: &mpsc::Sender<Measurement>,
) {
    for (index, spec) in specs.iter().enumerate() {
        if !spec.applies(&stage.name) {
            continue;
        }
        let (specs, tx, vars) = (specs.clone(), tx.clone(), vars.clone());
        let first = started
            .checked_add(spec.initial_delay)
            .unwrap_or_else(Instant::now);
        let interval = spec.interval;
        set.spawn(async move {
            let spec = &specs[index];
            tokio::time::sleep_until(first.into()).await;
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let measurement = metric::measure(index, spec, &vars).await;
                if tx.send(measurement).await.is_err() {
                    break;
                }
            }
        });
    }
}

impl Monitor {
    pub(crate) fn new(plan: &Plan, prober: Prober, shutdown: Shutdown, vars: Vars) -> Monitor {
        let signalled_at = Arc::new(std::sync::OnceLock::new());
        let (at, listener) = (signalled_at.clone(), shutdown.clone());
        tokio::spawn(async move {
            listener.wait().await;
            let _ = at.set(Instant::now());
        });
        Monitor {
            signalled_at,
            prober: Arc::new(prober),
            canary: Arc::new(plan.canary.clone()),
            baseline: Arc::new(plan.baseline.clone()),
            verify: Arc::new(plan.verify.clone()),
            expect_version: plan.expect_version.clone(),
            timed: plan.timed(),
            metrics: Arc::new(plan.metrics.clone()),
            judge: plan.judge.clone(),
            vars,
            shutdown,
        }
    }

    /// The template values of `stage`'s queries.
    fn stage_vars(&self, stage: &Stage) -> Vars {
        stage.vars(&self.vars)
    }

    fn evaluate(&self, stage: &Stage, watch: &mut StageWatch) -> Vec<Verdict> {
        let now = Instant::now();
        watch.canary.evict(now);
        if let Some(baseline) = watch.baseline.as_mut() {
            baseline.evict(now);
        }
        let label = |i: usize| {
            self.canary
                .get(i)
                .map_or_else(|| format!("target {i}"), |t| format!("`{}`", t.label))
        };
        let mut verdicts = gates::evaluate(
            &Inputs {
                canary: &watch.canary,
                baseline: watch.baseline.as_ref(),
                timed_targets: self.timed,
                label: &label,
                elapsed: now - watch.started,
            },
            &stage.thresholds,
        );
        for (spec, state) in self.metrics.iter().zip(&watch.metrics) {
            if spec.applies(&stage.name) {
                verdicts.push(metric::verdict(spec, state));
            }
        }
        verdicts
    }

    /// The canary judge at the end of `stage`'s window: the probes' windows as the gates saw
    /// them last, and the range queries over the same span.
    async fn judge(&self, judge: &JudgeSpec, stage: &Stage, watch: &StageWatch) -> Judged {
        let elapsed = watch.started.elapsed();
        let is_http = |i: usize| self.canary.get(i).is_some_and(Target::is_http);
        judge::judge(
            judge,
            &watch.canary,
            &is_http,
            watch.baseline.as_ref(),
            &self.stage_vars(stage),
            stage.thresholds.window.min(elapsed),
            stage.interval,
        )
        .await
    }

    /// Why the stage failed, for people: the failed gate, and the window's rate and causes when
    /// the gate itself did not say them.
    fn reason(stage: &Stage, verdict: &Verdict, watch: &StageWatch) -> String {
        let mut reason = format!(
            "stage `{}` ({}%): {}",
            stage.name, stage.weight, verdict.message
        );
        if verdict.gate != "success-rate"
            && !verdict.gate.starts_with("judge:")
            && verdict.query.is_none()
            && watch.canary.len() > 0
        {
            let window = watch.canary.window_summary();
            reason.push_str(&format!(
                "; success rate {} over {} probes",
                crate::ui::percent_or_none(window.success_rate),
                window.samples
            ));
            if window.failures > 0 {
                reason.push_str(&format!(" ({})", watch.canary.causes_text(3)));
            }
        }
        reason
    }

    fn record(
        &self,
        stage: &Stage,
        role: Role,
        observation: &Observation,
        watch: &mut StageWatch,
        log: &mut LogFile,
    ) {
        let (targets, window, who) = match role {
            Role::Canary => (&self.canary, Some(&mut watch.canary), "canary"),
            Role::Baseline => (&self.baseline, watch.baseline.as_mut(), "baseline"),
        };
        let target = targets.get(observation.target);
        // The version is checked on the canary's health endpoints, not on command probes.
        let judge = Judge {
            degraded: stage.thresholds.degraded,
            expect_version: match role {
                Role::Canary if target.is_some_and(Target::is_http) => {
                    self.expect_version.as_deref()
                }
                _ => None,
            },
        };
        let mut sample = judge.sample(observation);
        let label = target.map_or("?", |t| t.label.as_str());
        if targets.len() > 1 || target.is_some_and(|t| !t.is_http()) {
            sample.source = Some(if target.is_some_and(Target::is_http) {
                format!("`{label}`")
            } else {
                label.to_string()
            });
        }
        log.line(&format!(
            "[{}] {} {}% {who} {}",
            crate::util::now_rfc3339(),
            stage.name,
            stage.weight,
            probe::log_line(label, observation, &sample)
        ));
        if let Some(window) = window {
            window.push(&sample);
        }
    }

    fn progress(
        &self,
        stage: &Stage,
        watch: &mut StageWatch,
        until: &Until<'_>,
        log: &mut LogFile,
        force: bool,
    ) {
        let now = Instant::now();
        let every = stage.interval.max(PROGRESS_EVERY);
        if !force && watch.last_progress.is_some_and(|at| now - at < every) {
            return;
        }
        watch.last_progress = Some(now);
        let elapsed = now - watch.started;
        let w = watch.canary.window_summary();
        let mut line = match until {
            Until::End => format!(
                "{} {}% · {} of {}, {} left · {} · success {} · p95 {}",
                stage.name,
                stage.weight,
                crate::ui::whole_seconds(elapsed),
                format_duration(stage.duration),
                crate::ui::whole_seconds(stage.duration.saturating_sub(elapsed)),
                samples(w.samples),
                crate::ui::percent_or_none(w.success_rate),
                crate::ui::latency_or_none(w.p95_ms),
            ),
            Until::Approval { next, deadline, .. } => format!(
                "holding {} at {}% until `{next}` is approved ({} left) · {} · success {} · p95 {}",
                stage.name,
                stage.weight,
                crate::ui::whole_seconds(deadline.saturating_duration_since(now)),
                samples(w.samples),
                crate::ui::percent_or_none(w.success_rate),
                crate::ui::latency_or_none(w.p95_ms),
            ),
        };
        if w.degraded > 0 {
            line.push_str(&format!(" · {} degraded", w.degraded));
        }
        if let Some(baseline) = &watch.baseline {
            let b = baseline.window_summary();
            line.push_str(&format!(
                " · baseline success {} p95 {}",
                crate::ui::percent_or_none(b.success_rate),
                crate::ui::latency_or_none(b.p95_ms)
            ));
        }
        // A live terminal counts the stage down with a bar; waiting for an approval has no end.
        let fraction = match until {
            Until::End => Some(elapsed.as_secs_f64() / stage.duration.as_secs_f64().max(0.001)),
            Until::Approval { .. } => None,
        };
        crate::ui::progress(&line, fraction);
        log.line(&format!(
            "[{}] window {} (last {}): {}",
            crate::util::now_rfc3339(),
            stage.name,
            format_duration(stage.thresholds.window),
            summary_text(&w, watch.baseline.as_ref().map(Window::window_summary))
        ));
    }

    /// Watches `stage` until it ends, a gate fails, a signal arrives, or (when waiting) an
    /// approval or its deadline.
    pub(crate) async fn watch(
        &self,
        stage: &Stage,
        watch: &mut StageWatch,
        until: Until<'_>,
        log: &mut LogFile,
    ) -> Stop {
        let (tx, mut rx) = mpsc::channel(1024);
        let mut tasks = JoinSet::new();
        spawn_probes(
            &mut tasks,
            &self.prober,
            &self.canary,
            Role::Canary,
            stage.interval,
            &tx,
        );
        if watch.baseline.is_some() {
            spawn_probes(
                &mut tasks,
                &self.prober,
                &self.baseline,
                Role::Baseline,
                stage.interval,
                &tx,
            );
        }
        drop(tx);
        let (metric_tx, mut metric_rx) = mpsc::channel(256);
        spawn_metrics(
            &mut tasks,
            &self.metrics,
            stage,
            &self.stage_vars(stage),
            watch.started,
            &metric_tx,
        );
        drop(metric_tx);
        let mut metrics_open = true;
        let (end, waiting) = match &until {
            Until::End => (
                watch
                    .started
                    .checked_add(stage.duration)
                    .unwrap_or_else(|| crate::util::instant_after(stage.duration)),
                false,
            ),
            Until::Approval { deadline, .. } => (*deadline, true),
        };
        let stage_end = tokio::time::sleep_until(end.into());
        tokio::pin!(stage_end);
        let mut approval_poll = tokio::time::interval(APPROVAL_POLL);
        let mut told_other_stage = false;
        let stop = loop {
            tokio::select! {
                biased;
                _ = self.shutdown.wait() => {
                    break Stop::Signal(self.shutdown.received().unwrap_or("a signal"));
                }
                _ = &mut stage_end, if !waiting => {
                    while let Ok((role, observation)) = rx.try_recv() {
                        self.record(stage, role, &observation, watch, log);
                    }
                    watch.verdicts = self.evaluate(stage, watch);
                    if let Some(verdict) = gates::final_failure(&watch.verdicts) {
                        break Stop::Breach {
                            reason: Self::reason(stage, verdict, watch),
                            verdict: verdict.clone(),
                        };
                    }
                    let Some(judge) = self.judge.as_ref().filter(|j| j.applies(&stage.name)) else {
                        break Stop::Completed;
                    };
                    tokio::select! {
                        biased;
                        _ = self.shutdown.wait() => {
                            break Stop::Signal(self.shutdown.received().unwrap_or("a signal"));
                        }
                        judged = self.judge(judge, stage, watch) => watch.judged = judged,
                    }
                    for judgement in &watch.judged.judgements {
                        let line = judge::log_line(judgement);
                        log.line(&format!(
                            "[{}] {} {}% judge {line}",
                            crate::util::now_rfc3339(),
                            stage.name,
                            stage.weight
                        ));
                        tracing::info!("stage `{}`: {line}", stage.name);
                    }
                    break match gates::breach(&watch.judged.verdicts) {
                        Some(verdict) => Stop::Breach {
                            reason: Self::reason(stage, verdict, watch),
                            verdict: verdict.clone(),
                        },
                        None => Stop::Completed,
                    };
                }
                _ = approval_poll.tick(), if waiting => {
                    if let Until::Approval { file, next, deadline } = &until {
                        if let Some(approval) = approval::take(file, next) {
                            watch.verdicts = self.evaluate(stage, watch);
                            break Stop::Approved(approval);
                        }
                        if !told_other_stage && let Some(other) = approval::other_stage(file, next) {
                            told_other_stage = true;
                            tracing::warn!(
                                "the approval file `{}` approves stage `{other}`, but the rollout waits for `{next}`; ignoring it",
                                file.display()
                            );
                        }
                        if Instant::now() >= *deadline {
                            watch.verdicts = self.evaluate(stage, watch);
                            break Stop::Deadline;
                        }
                    }
                }
                received = metric_rx.recv(), if metrics_open => {
                    let Some(measurement) = received else {
                        // No metric gate in this stage.
                        metrics_open = false;
                        continue;
                    };
                    let spec = &self.metrics[measurement.index];
                    let line = metric::log_line(spec, &measurement);
                    log.line(&format!(
                        "[{}] {} {}% {line}",
                        crate::util::now_rfc3339(),
                        stage.name,
                        stage.weight
                    ));
                    if !matches!(measurement.outcome, metric::Outcome::Pass { .. }) {
                        tracing::warn!("stage `{}`: {line}", stage.name);
                    }
                    watch.metrics[measurement.index].push(spec, measurement);
                    let verdicts = self.evaluate(stage, watch);
                    if let Some(verdict) = gates::breach(&verdicts) {
                        let stop = Stop::Breach {
                            reason: Self::reason(stage, verdict, watch),
                            verdict: verdict.clone(),
                        };
                        watch.verdicts = verdicts;
                        break stop;
                    }
                    watch.verdicts = verdicts;
                }
                received = rx.recv() => {
                    let Some((role, observation)) = received else {
                        // Every probe task ended: cannot happen while the stage runs.
                        watch.verdicts = self.evaluate(stage, watch);
                        break Stop::Breach {
                            reason: format!("stage `{}`: the probes stopped unexpectedly", stage.name),
                            verdict: Verdict {
                                gate: "samples".into(),
                                query: None,
                                dependency: false,
                                status: Status::NoData,
                                value: None,
                                measured: "-".into(),
                                threshold: "-".into(),
                                message: "the probes stopped unexpectedly".into(),
                            },
                        };
                    };
                    self.record(stage, role, &observation, watch, log);
                    let verdicts = self.evaluate(stage, watch);
                    if let Some(verdict) = gates::breach(&verdicts) {
                        let stop = Stop::Breach {
                            reason: Self::reason(stage, verdict, watch),
                            verdict: verdict.clone(),
                        };
                        watch.verdicts = verdicts;
                        break stop;
                    }
                    watch.verdicts = verdicts;
                    self.progress(stage, watch, &until, log, false);
                }
            }
        };
        tasks.abort_all();
        if !matches!(stop, Stop::Signal(_)) {
            self.progress(stage, watch, &until, log, true);
        }
        for verdict in &watch.verdicts {
            log.line(&format!(
                "[{}] verdict {} {}: {:?} — measured {} (needs {}): {}",
                crate::util::now_rfc3339(),
                stage.name,
                verdict.gate,
                verdict.status,
                verdict.measured,
                verdict.threshold,
                verdict.message
            ));
        }
        stop
    }

    /// When the runner will kill a cancelled step, less what is kept for writing the result:
    /// `None` while no signal arrived.
    fn grace_end(&self) -> Option<Instant> {
        self.shutdown.received()?;
        let at = self
            .signalled_at
            .get()
            .copied()
            .unwrap_or_else(Instant::now);
        Some(
            at.checked_add(CANCEL_GRACE - EXIT_RESERVE)
                .unwrap_or_else(Instant::now),
        )
    }

    /// After a rollback: probes the verify endpoints until each gave `successes` healthy
    /// answers in a row, or `timeout` passes. A signal (before or during it) does not stop it
    /// but bounds it to the runner's grace period ([`CANCEL_GRACE`] from the signal), probing
    /// more often to fit, and the result says when that cut it short.
    pub(crate) async fn verify(
        &self,
        successes: u32,
        timeout: Duration,
        interval: Duration,
        degraded: DegradedPolicy,
        log: &mut LogFile,
    ) -> Verification {
        let started = Instant::now();
        if self.verify.is_empty() {
            return Verification {
                checked: false,
                ok: true,
                cut_short: false,
                detail: "no HTTP endpoint to check after the rollback".to_string(),
                endpoints: Vec::new(),
                duration_ms: 0,
            };
        }
        let mut endpoints: Vec<VerifiedEndpoint> = self
            .verify
            .iter()
            .map(|t| VerifiedEndpoint {
                endpoint: t.label.clone(),
                ok: false,
                probes: 0,
                healthy_in_a_row: 0,
                last: None,
                last_healthy: None,
            })
            .collect();
        let judge = Judge {
            degraded,
            expect_version: None,
        };
        let own_end = crate::util::instant_after(timeout);
        // The interval that fits `successes` probes in what is left of the grace period.
        let squeezed = |grace_end: Instant| {
            let left = grace_end.saturating_duration_since(Instant::now());
            interval
                .min(left / successes.saturating_add(1))
                .max(GRACE_MIN_INTERVAL)
        };
        let mut grace_end = self.grace_end();
        let mut probe_every = grace_end.map_or(interval, squeezed);
        let (tx, mut rx) = mpsc::channel(256);
        let mut tasks = JoinSet::new();
        spawn_probes(
            &mut tasks,
            &self.prober,
            &self.verify,
            Role::Canary,
            probe_every,
            &tx,
        );
        drop(tx);
        let deadline = tokio::time::sleep_until(own_end.min(grace_end.unwrap_or(own_end)).into());
        tokio::pin!(deadline);
        let ok = loop {
            tokio::select! {
                biased;
                _ = &mut deadline => break false,
                _ = self.shutdown.wait(), if grace_end.is_none() => {
                    // Cancelled while checking: finish within the runner's grace period.
                    let end = self.grace_end().unwrap_or_else(Instant::now);
                    grace_end = Some(end);
                    deadline.as_mut().reset(own_end.min(end).into());
                    let faster = squeezed(end);
                    if faster < probe_every {
                        probe_every = faster;
                        tasks.abort_all();
                        let (tx, fresh) = mpsc::channel(256);
                        rx = fresh;
                        spawn_probes(&mut tasks, &self.prober, &self.verify, Role::Canary, probe_every, &tx);
                    }
                    log.line(&format!(
                        "[{}] verify after rollback: {} received; checking until the runner's grace period ends, a probe every {}",
                        crate::util::now_rfc3339(),
                        self.shutdown.received().unwrap_or("a signal"),
                        format_duration(probe_every)
                    ));
                }
                received = rx.recv() => {
                    let Some((_, observation)) = received else { break false };
                    let sample = judge.sample(&observation);
                    let endpoint = &mut endpoints[observation.target];
                    log.line(&format!(
                        "[{}] verify after rollback {}",
                        crate::util::now_rfc3339(),
                        probe::log_line(&endpoint.endpoint, &observation, &sample)
                    ));
                    endpoint.probes += 1;
                    endpoint.last = Some(probe::answer_text(&observation, &sample));
                    endpoint.last_healthy = Some(sample.ok);
                    if sample.ok {
                        endpoint.healthy_in_a_row += 1;
                    } else {
                        endpoint.healthy_in_a_row = 0;
                    }
                    if endpoint.healthy_in_a_row >= successes {
                        endpoint.ok = true;
                    }
                    if endpoints.iter().all(|e| e.ok) {
                        break true;
                    }
                }
            }
        };
        tasks.abort_all();
        // The grace period, not the check's own timeout, ended it.
        let cut_short = !ok && grace_end.is_some_and(|end| end < own_end);
        let failing: Vec<String> = endpoints
            .iter()
            .filter(|e| !e.ok)
            .map(|e| {
                format!(
                    "`{}` ({} probes, {} healthy in a row of {successes}, last: {})",
                    e.endpoint,
                    e.probes,
                    e.healthy_in_a_row,
                    e.last
                        .clone()
                        .unwrap_or_else(|| "no answer yet".to_string())
                )
            })
            .collect();
        let detail = if ok {
            format!(
                "{} endpoint(s) healthy after the rollback ({successes} healthy probes in a row each)",
                endpoints.len()
            )
        } else if cut_short {
            format!(
                "health after the rollback NOT confirmed: the check was cut short after {} because {} cancelled the step (the runner kills it {} after the first signal); check by hand: {}",
                format_duration(started.elapsed()),
                self.shutdown.received().unwrap_or("a signal"),
                format_duration(CANCEL_GRACE),
                failing.join(", ")
            )
        } else {
            format!(
                "still unhealthy {} after the rollback: {}",
                format_duration(timeout),
                failing.join(", ")
            )
        };
        log.line(&format!(
            "[{}] verify after rollback: {}",
            crate::util::now_rfc3339(),
            detail
        ));
        Verification {
            checked: true,
            ok,
            cut_short,
            detail,
            endpoints,
            duration_ms: started.elapsed().as_millis() as u64,
        }
    }
}

fn samples(n: u64) -> String {
    if n == 1 {
        "1 sample".to_string()
    } else {
        format!("{n} samples")
    }
}

/// A window's counts as one line for the log.
pub(crate) fn summary_text(canary: &Summary, baseline: Option<Summary>) -> String {
    let mut text = format!(
        "{} samples, {} failed, success {}, p50 {}, p95 {}",
        canary.samples,
        canary.failures,
        crate::ui::percent_or_none(canary.success_rate),
        crate::ui::latency_or_none(canary.p50_ms),
        crate::ui::latency_or_none(canary.p95_ms)
    );
    if canary.degraded > 0 {
        text.push_str(&format!(", {} degraded", canary.degraded));
    }
    if let Some(b) = baseline {
        text.push_str(&format!(
            "; baseline {} samples, success {}, p95 {}",
            b.samples,
            crate::ui::percent_or_none(b.success_rate),
            crate::ui::latency_or_none(b.p95_ms)
        ));
    }
    text
}
