//! One post-deploy watch: the rollout's canary probes and metric gates (alerts included), watched
//! through the rollout's own [`Monitor`] as one more stage — `watch`, at the last stage's weight
//! and thresholds — for the window, never past the record's rollback deadline. A breach rolls
//! back through [`rollback::run`] (the path of `shipgate rollback`), marks the record, and
//! announces it through a child `shipgate notify`; a clean window marks the record watched; a
//! signal ends the watch without rolling back. `watch.json` is written before watching starts
//! and at the end, so a re-run continues an interrupted watch until the same end.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::actions::{self, Level};
use crate::error::{Error, Result, ResultExt};
use crate::hooks;
use crate::metrics::template::{self, Vars};
use crate::process::{self, LogFile, Shutdown, Spec};
use crate::rollback::run::{self as rolling, Finished};
use crate::rollout::monitor::{Monitor, StageWatch, Stop, Until};
use crate::rollout::plan::{Plan, Stage};
use crate::rollout::probe::Prober;
use crate::state::deployment_record::{Record, RecordWatch, record_file};
use crate::state::watch::{Breach, WatchFile};
use crate::state::{Header, StateDir};
use crate::ui::format_duration;

/// The gates' name for the watch's stage (and `{{stage}}` in metric queries).
pub(crate) const STAGE: &str = "watch";

/// How long and how often.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) duration: Duration,
    pub(crate) interval: Duration,
    /// `{{version}}` and `{{previous_version}}` as the rollout's metric gates were templated
    /// (`rollout.json`: the release's SemVer, not its tag); `None`: the record's.
    pub(crate) versions: Option<(String, Option<String>)>,
}

/// This executable's argv running `command` for deployment `id` (`settings::shipgate_argv`).
pub(crate) type ChildArgv<'a> = &'a dyn Fn(&str, &[&str]) -> Result<Vec<String>>;

/// What the watch takes from outside its domain: the rollback's (see [`rolling::Outside`]) and
/// the argv of a child `shipgate notify`.
pub(crate) struct Outside<'a> {
    pub(crate) rollback: rolling::Outside<'a>,
    pub(crate) notify_argv: ChildArgv<'a>,
}

/// How the watch ended: `watch.json` (saved) and, after a rollback, its outcome (the command
/// saves `rollback.json` and exits with the rollback's error, if any).
pub(crate) struct Watched {
    pub(crate) file: WatchFile,
    pub(crate) rollback: Option<Finished>,
}

/// The stage the monitor watches: the last stage's weight and thresholds, probed every
/// `interval`, for `duration`. `min-samples` is capped at what the window can hold at this
/// interval (one probe per target every 5 minutes puts one sample per target in a 5-minute
/// window), so a quiet, healthy watch is never "no data".
pub(crate) fn stage(plan: &Plan, options: &Options, duration: Duration) -> Stage {
    let last = plan.stages.last();
    let mut thresholds = last.map(|s| s.thresholds.clone()).unwrap_or_default();
    let span = thresholds.window.min(options.duration);
    let per_target = (span.as_millis() / options.interval.as_millis().max(1)).max(1) as u64;
    let fits = per_target.saturating_mul(plan.canary.len().max(1) as u64);
    thresholds.min_samples = thresholds.min_samples.clamp(1, fits);
    Stage {
        name: STAGE.to_string(),
        weight: last.map_or(100, |s| s.weight),
        duration,
        interval: options.interval,
        thresholds,
        pause: false,
        approval_timeout: Duration::ZERO,
    }
}

/// The plan as the watch uses it: the canary targets only (after a full rollout there is no
/// stable version beside it), and the metric gates that apply to the last stage, measured every
/// `interval` from the start.
pub(crate) fn watched_plan(plan: &Plan, options: &Options) -> Plan {
    let mut plan = plan.clone();
    let last = plan
        .stages
        .last()
        .map(|s| s.name.clone())
        .unwrap_or_default();
    plan.baseline.clear();
    plan.metrics.retain(|m| m.applies(&last));
    for metric in &mut plan.metrics {
        metric.stages = None;
        metric.interval = options.interval;
        metric.initial_delay = Duration::ZERO;
    }
    plan
}

fn timestamp(text: &str, what: &str) -> Result<jiff::Timestamp> {
    text.parse::<jiff::Timestamp>().map_err(|_| {
        Error::usage(format!(
            "{what} {} is not a timestamp; fix it or start a new deployment",
            actions::quote(text)
        ))
    })
}

/// Watches deployment `record` (read from `record_path`); `previous` is the `watch.json` of an
/// earlier run, which this one continues.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(
    state: &StateDir,
    plan: &Plan,
    options: &Options,
    record: &mut Record,
    record_path: &Path,
    previous: Option<WatchFile>,
    rollback_options: &rolling::Options,
    outside: &Outside<'_>,
) -> Result<Watched> {
    let started = Instant::now();
    let id = record.deployment_id.clone();
    let now = jiff::Timestamp::now();
    let deadline = timestamp(
        &record.rollback_deadline,
        "the record's `rollback_deadline`",
    )?;
    if now >= deadline {
        return Err(Error::usage(format!(
            "the rollback window of deployment `{id}` closed at {}: a breach could no longer be rolled back, so there is nothing to watch; nothing was changed",
            record.rollback_deadline
        )));
    }
    // The window: the one an earlier run started, else `--for` from now; never past the deadline.
    let (started_at, wanted_end) = match &previous {
        Some(earlier) => (
            earlier.started_at.clone(),
            timestamp(&earlier.ends_at, "`watch.json`'s `ends_at`")?,
        ),
        None => {
            let span = jiff::SignedDuration::try_from(options.duration)
                .map_err(|_| Error::usage("`--for` is too long"))?;
            (
                crate::util::now_rfc3339(),
                now.checked_add(span)
                    .map_err(|_| Error::usage("`--for` is too long"))?,
            )
        }
    };
    // A continued watch keeps the window it was started with.
    let window = previous
        .as_ref()
        .map_or(options.duration, |p| Duration::from_millis(p.for_ms));
    let capped = deadline < wanted_end;
    let ends_at = wanted_end.min(deadline);
    let left = Duration::try_from(now.duration_until(ends_at)).unwrap_or(Duration::ZERO);

    let log_path = state.path(&format!("watch-logs-{id}.log"));
    let mut log = LogFile::append(&log_path).context("cannot open the watch log")?;
    let mut file = WatchFile {
        header: Header::now::<WatchFile>("in_progress"),
        deployment_id: id.clone(),
        version: record.version.clone(),
        started_at: started_at.clone(),
        ends_at: ends_at.to_string(),
        capped_by_deadline: capped,
        for_ms: window.as_millis() as u64,
        interval_ms: options.interval.as_millis() as u64,
        samples: 0,
        measurements: 0,
        verdicts: Vec::new(),
        breach: None,
        cancelled_by: None,
        rollback: None,
        notified: None,
        log_file: log_path.display().to_string(),
    };
    state.save(&file)?;

    let plan = watched_plan(plan, options);
    let stage = stage(&plan, options, left);
    let shutdown = Shutdown::listen();
    let prober = Prober::new(plan.probe_timeout, plan.rule.clone()).map_err(|e| {
        Error::dependency(format!(
            "cannot set up the HTTP client for health probes: {}",
            hooks::describe_http_error(e)
        ))
    })?;
    let (version, previous_version) = options
        .versions
        .clone()
        .unwrap_or_else(|| (record.version.clone(), record.previous_version.clone()));
    let vars = Vars {
        version,
        previous_version,
        deployment_id: id.clone(),
        stage: STAGE.to_string(),
        weight: stage.weight,
        window: template::promql_duration(stage.thresholds.window),
    };
    let monitor = Monitor::new(&plan, prober, shutdown.clone(), vars);
    let line = format!(
        "watching deployment `{id}` ({}) until {}{} — {} probe target(s) and {} metric gate(s) every {}{}",
        actions::one_line(&record.version),
        ends_at,
        if capped {
            " (the rollback deadline)"
        } else {
            ""
        },
        plan.canary.len(),
        plan.metrics.len(),
        format_duration(options.interval),
        if previous.is_some() {
            format!(", continuing the watch started at {started_at}")
        } else {
            String::new()
        }
    );
    tracing::info!("{line}");
    log.line(&format!("[{}] {line}", crate::util::now_rfc3339()));
    for metric in &plan.metrics {
        log.line(&format!("[plan] {}", metric.describe()));
    }

    let mut watch = StageWatch::new(&stage, false, plan.metrics.len());
    let stop = monitor
        .watch(&stage, &mut watch, Until::End, &mut log)
        .await;
    file.samples = watch.canary.stage_summary().samples;
    file.measurements = watch.metrics.iter().map(|m| u64::from(m.taken)).sum();
    file.verdicts = watch.verdicts.iter().map(Into::into).collect();
    let mut rollback = None;
    let ended_at = crate::util::now_rfc3339();
    let mut marker = RecordWatch {
        result: String::new(),
        started_at,
        ended_at,
        window_seconds: window.as_secs(),
        interval_seconds: options.interval.as_secs(),
        capped_by_deadline: capped,
        gate: None,
        breach: None,
    };
    match stop {
        Stop::Completed | Stop::Approved(_) | Stop::Deadline => {
            let line = format!(
                "deployment `{id}` watched until {ends_at}: every gate held ({} probes, {} metric measurements)",
                file.samples, file.measurements
            );
            tracing::info!("{line}");
            log.line(&format!("[{}] {line}", crate::util::now_rfc3339()));
            file.header.result = "pass".to_string();
            marker.result = "watched".to_string();
            record.watch = Some(marker);
            state.write_json(&record_file(&id), &record)?;
        }
        Stop::Signal(signal) => {
            let line = format!(
                "the watch of deployment `{id}` was cancelled by {signal} with {} left; nothing was rolled back (run `shipgate watch` again to continue until {ends_at})",
                format_duration(
                    Duration::try_from(jiff::Timestamp::now().duration_until(ends_at))
                        .unwrap_or(Duration::ZERO)
                )
            );
            actions::annotate(Level::Warning, Some("shipgate watch"), &line);
            log.line(&format!("[{}] {line}", crate::util::now_rfc3339()));
            file.header.result = "cancelled".to_string();
            file.cancelled_by = Some(signal.to_string());
            marker.result = "cancelled".to_string();
            record.watch = Some(marker);
            state.write_json(&record_file(&id), &record)?;
        }
        Stop::Breach { verdict, reason } => {
            let reason = format!("post-deploy watch: {reason}");
            actions::annotate(Level::Error, Some("shipgate watch"), &reason);
            log.line(&format!(
                "[{}] BREACH: {reason}; rolling back",
                crate::util::now_rfc3339()
            ));
            file.breach = Some(Breach {
                gate: verdict.gate.clone(),
                reason: reason.clone(),
                at: crate::util::now_rfc3339(),
            });
            // The rollback file and the record keep the breach as the reason.
            state.save(&file)?;
            let options = rolling::Options {
                reason: reason.clone(),
                ..rollback_options.clone()
            };
            let finished = {
                let _group = actions::group("Rollback after a breach");
                rolling::run(state, record, record_path, &options, &outside.rollback).await?
            };
            let ok = finished.error.is_none();
            file.rollback = Some(finished.result.header.result.clone());
            file.header.result = if ok { "rolled_back" } else { "rollback_failed" }.to_string();
            log.line(&format!(
                "[{}] rollback {}",
                crate::util::now_rfc3339(),
                if ok { "done" } else { "FAILED" }
            ));
            marker.result = "breached".to_string();
            marker.gate = Some(verdict.gate);
            marker.breach = Some(reason);
            record.watch = Some(marker);
            state.write_json(&record_file(&id), &record)?;
            file.notified = Some(notify(outside, &id, &record.status).await);
            rollback = Some(finished);
        }
    }
    file.header.duration_ms = Some(started.elapsed().as_millis() as u64);
    file.header.timestamp = crate::util::now_rfc3339();
    log.line(&format!(
        "[{}] result: {}",
        crate::util::now_rfc3339(),
        file.header.result
    ));
    state.save(&file)?;
    Ok(Watched { file, rollback })
}

/// Announces the rollback through `shipgate notify` (a child sharing the state dir, inputs and
/// runner files); a notification that cannot be sent is a warning, never the watch's failure.
async fn notify(outside: &Outside<'_>, id: &str, status: &str) -> bool {
    let status = if status == "rolled_back" {
        "rolled_back"
    } else {
        "failure"
    };
    let argv = match (outside.notify_argv)(id, &["notify", "--status", status]) {
        Ok(argv) => argv,
        Err(e) => {
            tracing::warn!("cannot run `shipgate notify`: {e}");
            return false;
        }
    };
    let spec = Spec::new("notify", argv).shipgate_child();
    match process::run_inherited(&spec, std::future::pending()).await {
        Ok(finished) if finished.success() => true,
        Ok(finished) => {
            actions::annotate(
                Level::Warning,
                Some("shipgate watch"),
                &format!(
                    "the notification of the rollback was not sent: `shipgate notify` {}",
                    finished.describe()
                ),
            );
            false
        }
        Err(e) => {
            actions::annotate(
                Level::Warning,
                Some("shipgate watch"),
                &format!("the notification of the rollback was not sent: {e}"),
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(targets: usize) -> Plan {
        let hook = hooks::Hook {
            name: "stage hook".into(),
            target: hooks::Target::Command(vec!["true".into()]),
            timeout: Duration::from_secs(1),
            retries: 0,
        };
        let full = Stage {
            name: "full".into(),
            weight: 100,
            duration: Duration::from_secs(60),
            interval: Duration::from_secs(10),
            thresholds: Default::default(),
            pause: false,
            approval_timeout: Duration::ZERO,
        };
        Plan {
            stages: vec![full],
            canary: (0..targets)
                .map(|i| crate::rollout::probe::Target::http(&format!("http://127.0.0.1:9/{i}")))
                .collect(),
            baseline: Vec::new(),
            verify: Vec::new(),
            probe_timeout: Duration::from_secs(1),
            rule: Default::default(),
            expect_version: None,
            stage_hook: hook.clone(),
            rollback_hook: hook,
            rollback_is_stage_hook: true,
            verify_timeout: Duration::from_secs(10),
            verify_successes: 1,
            verify_interval: Duration::from_secs(1),
            metrics: Vec::new(),
            judge: None,
        }
    }

    #[test]
    fn min_samples_fit_what_the_window_holds_at_the_watch_interval() {
        let minutes = |m: u64| Duration::from_secs(60 * m);
        let seed = Options {
            duration: minutes(60),
            interval: minutes(5),
            versions: None,
        };
        let plan = plan(2);
        let stage = stage(&plan, &seed, minutes(60));
        assert_eq!(stage.name, "watch");
        assert_eq!(stage.weight, 100);
        // A 5-minute window at one probe per 5 minutes: one sample per target.
        assert_eq!(stage.thresholds.min_samples, 2);
        let fast = Options {
            duration: minutes(60),
            interval: Duration::from_secs(10),
            versions: None,
        };
        assert_eq!(stage_for(&plan, &fast).thresholds.min_samples, 10);
        let short = Options {
            duration: Duration::from_secs(3),
            interval: Duration::from_secs(1),
            versions: None,
        };
        assert_eq!(stage_for(&plan, &short).thresholds.min_samples, 6);
    }

    fn stage_for(plan: &Plan, options: &Options) -> Stage {
        stage(plan, options, options.duration)
    }
}
