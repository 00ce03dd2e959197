//! The rollout plan: stages (weight, duration, probe interval, thresholds, pause), what is
//! probed, the hooks, and the timeline `--dry-run` prints. Resolved once from flags, inputs,
//! `shipgate.yml` and the defaults of seed 004 (canary 5% for 5 min, progressive 50% for 10 min,
//! full 100% for 15 min, a probe every 10 s) and seed 002 (99% over 5 min, p95 < 250 ms).

use std::collections::HashSet;
use std::time::Duration;

use serde::{Serialize, Serializer};

use super::config::{
    AlertsConfig, BackendConfig, JudgeConfig, MetricConfig, Percent, ProbeConfig, StageConfig,
};
use super::gates::{DegradedPolicy, Thresholds};
use super::judge::JudgeSpec;
use super::metric::{MetricSpec, NoDataPolicy};
use super::probe::{Probe, Target};
use crate::error::{Error, Result};
use crate::health::Rule;
use crate::hooks::{Hook, Hooks};
use crate::metrics::template::Vars;
use crate::state::rollout::Endpoints;
use crate::ui::format_duration;
use crate::util::HumanDuration;

const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(3600);
const DEFAULT_VERIFY_TIMEOUT: Duration = Duration::from_secs(120);
const DEFAULT_VERIFY_SUCCESSES: u32 = 3;
/// The most `min-samples`, `consecutive-failures` and `verify-successes` may ask for: a million
/// probes is 116 days at the default interval, far past any plan that can finish.
pub(crate) const MAX_COUNT: u64 = 1_000_000;

/// One stage of the plan.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Stage {
    pub(crate) name: String,
    /// Percent of traffic on the new version during the stage.
    pub(crate) weight: u8,
    #[serde(rename = "duration_ms", serialize_with = "as_millis")]
    pub(crate) duration: Duration,
    #[serde(rename = "interval_ms", serialize_with = "as_millis")]
    pub(crate) interval: Duration,
    pub(crate) thresholds: Thresholds,
    /// Wait for an approval (`shipgate rollout --resume`) before shifting traffic to this stage.
    pub(crate) pause: bool,
    #[serde(rename = "approval_timeout_ms", serialize_with = "as_millis")]
    pub(crate) approval_timeout: Duration,
}

fn as_millis<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(duration.as_millis() as u64)
}

impl Stage {
    /// The metric queries' template values in this stage: `base`'s (version, deployment) with
    /// the stage's name, weight and window.
    pub(crate) fn vars(&self, base: &Vars) -> Vars {
        Vars {
            stage: self.name.clone(),
            weight: self.weight,
            window: crate::metrics::template::promql_duration(self.thresholds.window),
            ..base.clone()
        }
    }
}

/// The resolved plan.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) stages: Vec<Stage>,
    /// Canary targets: HTTP endpoints first, then command probes.
    pub(crate) canary: Vec<Target>,
    pub(crate) baseline: Vec<Target>,
    /// Probed after a rollback until each is healthy.
    pub(crate) verify: Vec<Target>,
    pub(crate) probe_timeout: Duration,
    pub(crate) rule: Rule,
    pub(crate) expect_version: Option<String>,
    pub(crate) stage_hook: Hook,
    /// The rollback hook; the stage hook at weight 0 when none is configured.
    pub(crate) rollback_hook: Hook,
    pub(crate) rollback_is_stage_hook: bool,
    pub(crate) verify_timeout: Duration,
    pub(crate) verify_successes: u32,
    pub(crate) verify_interval: Duration,
    /// Metric gates (Prometheus queries, alerts), measured beside the probes.
    pub(crate) metrics: Vec<MetricSpec>,
    /// The statistical canary judge (`rollout.judge`), at the end of each stage's window.
    pub(crate) judge: Option<JudgeSpec>,
}

/// What a plan is made of: each value as the command read it (flag > input > `shipgate.yml`);
/// `None` or empty when not given, so the defaults apply.
#[derive(Debug)]
pub(crate) struct Inputs {
    /// `--stage` / input `stages`, each `name:weight:duration[:interval]`.
    pub(crate) stage_flags: Vec<String>,
    /// `rollout.stages` in `shipgate.yml`, used when no stage flag is given.
    pub(crate) stages: Option<Vec<StageConfig>>,
    pub(crate) success_rate: Option<Percent>,
    pub(crate) max_p95: Option<HumanDuration>,
    pub(crate) consecutive_failures: Option<u32>,
    pub(crate) min_samples: Option<u64>,
    pub(crate) window: Option<HumanDuration>,
    pub(crate) baseline_ratio: Option<f64>,
    pub(crate) degraded: Option<DegradedPolicy>,
    pub(crate) interval: Option<HumanDuration>,
    pub(crate) approval_timeout: Option<HumanDuration>,
    pub(crate) pause_before: Vec<String>,
    pub(crate) endpoints: Vec<String>,
    pub(crate) baseline: Vec<String>,
    pub(crate) verify_endpoints: Vec<String>,
    pub(crate) probe_commands: Vec<String>,
    /// `rollout.probes` in `shipgate.yml`.
    pub(crate) probes: Vec<ProbeConfig>,
    pub(crate) probe_timeout: Option<HumanDuration>,
    /// `rollout.health` in `shipgate.yml`, then `health_pointer` and `health_accept` over it.
    pub(crate) health: Option<Rule>,
    pub(crate) health_pointer: Option<String>,
    pub(crate) health_accept: Vec<String>,
    pub(crate) expect_version: Option<String>,
    /// The stage and rollback hooks as configured (not checked yet).
    pub(crate) hooks: Hooks,
    pub(crate) verify_timeout: Option<HumanDuration>,
    pub(crate) verify_successes: Option<u32>,
    /// `rollout.prometheus`, `rollout.metrics` and `rollout.alerts` in `shipgate.yml`.
    pub(crate) prometheus: Option<BackendConfig>,
    pub(crate) metrics: Vec<MetricConfig>,
    pub(crate) alerts: Option<AlertsConfig>,
    /// `rollout.judge` in `shipgate.yml`.
    pub(crate) judge: Option<JudgeConfig>,
}

impl Plan {
    pub(crate) fn resolve(inputs: Inputs) -> Result<Plan> {
        let duration = |value: Option<HumanDuration>| value.map(|d| d.0);

        let defaults = Thresholds::default();
        let base = Thresholds {
            success_rate: inputs.success_rate.map_or(defaults.success_rate, |p| p.0),
            max_p95: duration(inputs.max_p95).unwrap_or(defaults.max_p95),
            consecutive_failures: inputs
                .consecutive_failures
                .unwrap_or(defaults.consecutive_failures),
            min_samples: inputs.min_samples.unwrap_or(defaults.min_samples),
            window: duration(inputs.window).unwrap_or(defaults.window),
            baseline_ratio: inputs.baseline_ratio.unwrap_or(defaults.baseline_ratio),
            degraded: inputs.degraded.unwrap_or(defaults.degraded),
        };
        check_thresholds("the rollout", &base)?;
        let interval = duration(inputs.interval).unwrap_or(DEFAULT_INTERVAL);
        check_interval("the rollout", interval)?;
        let approval_timeout =
            duration(inputs.approval_timeout).unwrap_or(DEFAULT_APPROVAL_TIMEOUT);
        let pause_before = &inputs.pause_before;

        let stages = stages(
            &inputs.stage_flags,
            inputs.stages.as_ref(),
            &base,
            interval,
            approval_timeout,
            pause_before,
        )?;

        let endpoints = &inputs.endpoints;
        let baseline = &inputs.baseline;
        let verify = &inputs.verify_endpoints;
        let mut canary = Vec::new();
        for url in endpoints {
            canary.push(Target::http(&check_url("endpoint", url)?));
        }
        let probe_commands = &inputs.probe_commands;
        for (i, line) in probe_commands.iter().enumerate() {
            let argv = crate::process::split_command(line)
                .map_err(|e| Error::usage(format!("probe command {}: {e}", i + 1)))?;
            canary.push(Target {
                label: format!("probe `{}`", crate::secret::redact(&argv.join(" "))),
                probe: Probe::Command { argv },
            });
        }
        for probe in &inputs.probes {
            crate::inputs::check_name("probe name", &probe.name)?;
            let argv = probe.command.argv(false).map_err(|e| {
                Error::usage(format!("probe `{}` in the config file: {e}", probe.name))
            })?;
            canary.push(Target {
                label: format!("probe `{}`", probe.name),
                probe: Probe::Command { argv },
            });
        }
        if canary.is_empty() {
            return Err(Error::usage(
                "nothing to monitor: give the canary's health endpoint with `--endpoint URL` (input `endpoints`, or `rollout.endpoints` in shipgate.yml), or a probe command",
            ));
        }
        let baseline = baseline
            .iter()
            .map(|url| check_url("baseline endpoint", url).map(|u| Target::http(&u)))
            .collect::<Result<Vec<_>>>()?;
        let verify = if verify.is_empty() {
            if baseline.is_empty() {
                canary.iter().filter(|t| t.is_http()).cloned().collect()
            } else {
                baseline.clone()
            }
        } else {
            verify
                .iter()
                .map(|url| check_url("verify endpoint", url).map(|u| Target::http(&u)))
                .collect::<Result<Vec<_>>>()?
        };

        // Every stage must be able to collect its minimum of samples.
        let timed = canary.iter().filter(|t| t.is_http()).count() as u64;
        let targets = canary.len() as u64;
        for stage in &stages {
            // The gates look at the window (the stage so far, when the stage is shorter).
            let span = stage.thresholds.window.min(stage.duration);
            let per_target = (span.as_nanos() / stage.interval.as_nanos()) as u64 + 1;
            let possible = per_target * if timed > 0 { timed } else { targets };
            if possible < stage.thresholds.min_samples {
                return Err(Error::usage(format!(
                    "stage `{}` can collect at most {possible} samples in its window ({} every {} for {}) but its gates need {}: it could only end with no data; lengthen the stage or the window, probe more often or lower `min-samples`",
                    stage.name,
                    if timed > 0 { timed } else { targets },
                    format_duration(stage.interval),
                    format_duration(span),
                    stage.thresholds.min_samples
                )));
            }
        }

        let probe_timeout = duration(inputs.probe_timeout).unwrap_or(DEFAULT_PROBE_TIMEOUT);
        if probe_timeout.is_zero() {
            return Err(Error::usage("`probe-timeout` must be more than 0"));
        }
        let mut rule = inputs.health.unwrap_or_default();
        if let Some(pointer) = inputs.health_pointer {
            rule.pointer = Some(pointer);
        }
        let accepted = inputs.health_accept;
        if !accepted.is_empty() {
            rule.accepted = accepted;
        }
        if let Some(pointer) = &rule.pointer {
            if !pointer.is_empty() && !pointer.starts_with('/') {
                return Err(Error::usage(format!(
                    "health pointer {} is not a JSON pointer; write it like `/data/status`",
                    crate::actions::quote(pointer)
                )));
            }
            if rule.accepted.is_empty() {
                return Err(Error::usage(format!(
                    "health pointer `{pointer}` needs the values that mean healthy (`--health-accept`, input `health-accept`, or `health.accepted`)"
                )));
            }
        }
        let expect_version = inputs.expect_version.filter(|v| !v.trim().is_empty());

        let hooks = inputs.hooks;
        let stage_hook = hooks.stage.ok_or_else(|| {
            Error::usage(
                "no stage hook: set `--hook COMMAND` (input `hook`, or `rollout.hook` in shipgate.yml) or the `hook-url` input (env SHIPGATE_HOOK_URL) for a webhook; it is what shifts traffic to each stage's weight",
            )
        })?;
        let rollback_is_stage_hook = hooks.rollback.is_none();
        let rollback_hook = hooks.rollback.unwrap_or_else(|| stage_hook.as_rollback());
        stage_hook.check().map_err(Error::usage)?;
        rollback_hook.check().map_err(Error::usage)?;

        let verify_timeout = duration(inputs.verify_timeout).unwrap_or(DEFAULT_VERIFY_TIMEOUT);
        let verify_successes = inputs
            .verify_successes
            .unwrap_or(DEFAULT_VERIFY_SUCCESSES)
            .max(1);
        check_count(
            "verify-successes",
            "the rollout",
            u64::from(verify_successes),
        )?;
        check_verification(
            !verify.is_empty(),
            verify_successes,
            interval,
            verify_timeout,
        )?;

        let metrics = super::metric::resolve(
            inputs.prometheus.as_ref(),
            &inputs.metrics,
            inputs.alerts.as_ref(),
        )?;
        for spec in &metrics {
            if let Some(names) = &spec.stages
                && let Some(unknown) = names.iter().find(|n| !stages.iter().any(|s| &s.name == *n))
            {
                return Err(Error::usage(format!(
                    "{} names stage `{unknown}`, which is not in the plan ({})",
                    spec.gate,
                    stages
                        .iter()
                        .map(|s| format!("`{}`", s.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            for stage in stages.iter().filter(|s| spec.applies(&s.name)) {
                if spec.no_data != NoDataPolicy::Ignore && spec.initial_delay >= stage.duration {
                    return Err(Error::usage(format!(
                        "{}: its `initial-delay` ({}) is not shorter than stage `{}` ({}): it could only end with no data; shorten the delay or lengthen the stage",
                        spec.gate,
                        format_duration(spec.initial_delay),
                        stage.name,
                        format_duration(stage.duration)
                    )));
                }
            }
        }

        let judge = super::judge::resolve(
            inputs.judge.as_ref(),
            inputs.prometheus.as_ref(),
            !baseline.is_empty(),
        )?;
        if let Some(judge) = &judge {
            check_judge(judge, &stages, timed.min(baseline.len() as u64))?;
        }

        Ok(Plan {
            judge,
            metrics,
            stages,
            canary,
            baseline,
            verify,
            probe_timeout,
            rule,
            expect_version,
            stage_hook,
            rollback_hook,
            rollback_is_stage_hook,
            verify_timeout,
            verify_successes,
            verify_interval: interval,
        })
    }

    /// Whether any canary target has a latency to measure.
    pub(crate) fn timed(&self) -> bool {
        self.canary.iter().any(Target::is_http)
    }

    /// The timeline `--dry-run` prints: when each stage starts and ends if every gate passes,
    /// and the worst case — how long a bad version can serve the stage's weight before the
    /// rollback has run.
    pub(crate) fn timeline(&self) -> Vec<TimelineStage> {
        let hook = self.stage_hook.worst_case();
        let rollback = self.rollback_hook.worst_case();
        let mut at = Duration::ZERO;
        let mut unbounded = false;
        self.stages
            .iter()
            .map(|stage| {
                if stage.pause {
                    unbounded = true;
                }
                let starts = at;
                at = at.saturating_add(stage.duration);
                let t = &stage.thresholds;
                // Counts are bounded (`MAX_COUNT`) and durations too, yet nothing here may panic.
                let min_samples_u32 = u32::try_from(t.min_samples).unwrap_or(u32::MAX);
                let dead_after = if t.consecutive_failures > 0 {
                    stage.interval.saturating_mul(t.consecutive_failures)
                } else {
                    stage.interval.saturating_mul(min_samples_u32)
                };
                let min_samples = {
                    let per_tick = u32::try_from(self.canary.len().max(1)).unwrap_or(u32::MAX);
                    let ticks = min_samples_u32.div_ceil(per_tick);
                    stage.interval.saturating_mul(ticks.saturating_sub(1))
                };
                TimelineStage {
                    name: stage.name.clone(),
                    weight: stage.weight,
                    starts_after_ms: starts.as_millis() as u64,
                    ends_after_ms: at.as_millis() as u64,
                    after_approval: unbounded,
                    duration_ms: stage.duration.as_millis() as u64,
                    dead_canary_detected_within_ms: dead_after.as_millis() as u64,
                    rate_gates_from_ms: min_samples.as_millis() as u64,
                    worst_case_exposure_ms: hook
                        .saturating_add(stage.duration)
                        .saturating_add(rollback)
                        .as_millis() as u64,
                }
            })
            .collect()
    }

    /// The stage and rollback hooks as the plan and the log describe them.
    pub(crate) fn hook_lines(&self) -> Vec<String> {
        let hook = &self.stage_hook;
        let mut lines = vec![format!(
            "stage hook: {} `{}` (timeout {} per attempt, {} retries)",
            hook.kind(),
            hook.display(),
            format_duration(hook.timeout),
            hook.retries
        )];
        lines.push(if self.rollback_is_stage_hook {
            "rollback hook: the stage hook with SHIPGATE_STAGE=rollback and SHIPGATE_WEIGHT=0"
                .to_string()
        } else {
            format!(
                "rollback hook: {} `{}`",
                self.rollback_hook.kind(),
                self.rollback_hook.display()
            )
        });
        lines
    }

    /// What is probed, by label (canary, baseline, verification after a rollback).
    pub(crate) fn endpoints(&self) -> Endpoints {
        let labels = |targets: &[crate::rollout::probe::Target]| {
            targets.iter().map(|t| t.label.clone()).collect::<Vec<_>>()
        };
        Endpoints {
            canary: labels(&self.canary),
            baseline: labels(&self.baseline),
            verify: labels(&self.verify),
        }
    }

    /// The plan as the human-readable lines `--dry-run` prints.
    pub(crate) fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let timeline = self.timeline();
        lines.push(format!(
            "{:<14} {:>6}  {:>8}  {:>7}  {:>9}  {:>9}  {:>8}  {:>7}  {:>7}  {:>8}  exposure if it goes wrong",
            "stage", "weight", "duration", "probe", "starts", "ends", "success", "p95 <", "in a row", "min"
        ));
        for (stage, when) in self.stages.iter().zip(&timeline) {
            let t = &stage.thresholds;
            let at = |ms: u64| {
                let text = if ms == 0 {
                    "0s".to_string()
                } else {
                    format_duration(Duration::from_millis(ms))
                };
                if when.after_approval {
                    format!("T+{text}+a")
                } else {
                    format!("T+{text}")
                }
            };
            lines.push(format!(
                "{:<14} {:>5}%  {:>8}  {:>7}  {:>9}  {:>9}  {:>7}%  {:>7}  {:>8}  {:>8}  {}% of traffic for up to {} (dead canary caught in ~{})",
                stage.name,
                stage.weight,
                format_duration(stage.duration),
                format_duration(stage.interval),
                at(when.starts_after_ms),
                at(when.ends_after_ms),
                t.success_rate,
                format_duration(t.max_p95),
                if t.consecutive_failures == 0 {
                    "off".to_string()
                } else {
                    t.consecutive_failures.to_string()
                },
                t.min_samples,
                stage.weight,
                format_duration(Duration::from_millis(when.worst_case_exposure_ms)),
                format_duration(Duration::from_millis(when.dead_canary_detected_within_ms)),
            ));
            if stage.pause {
                lines.push(format!(
                    "{:<14} waits for `shipgate rollout --resume` (deadline {}) before shifting traffic",
                    "",
                    format_duration(stage.approval_timeout)
                ));
            }
        }
        if self.stages.iter().any(|s| s.pause) {
            lines.push("(+a: plus the time waiting for approval)".to_string());
        }
        for spec in &self.metrics {
            lines.push(format!("metric gate {}", spec.describe()));
        }
        if let Some(judge) = &self.judge {
            lines.extend(judge.describe());
        }
        lines
    }
}

/// One stage of the `--dry-run` timeline.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TimelineStage {
    pub(crate) name: String,
    pub(crate) weight: u8,
    /// From the start of the rollout, if every earlier stage passes (approval waits excluded).
    pub(crate) starts_after_ms: u64,
    pub(crate) ends_after_ms: u64,
    /// Starts only after an approval (of this or an earlier stage).
    pub(crate) after_approval: bool,
    pub(crate) duration_ms: u64,
    /// A dead canary (every probe failing) is caught within this long.
    pub(crate) dead_canary_detected_within_ms: u64,
    /// The rate gates start counting after this long (minimum samples).
    pub(crate) rate_gates_from_ms: u64,
    /// The longest the stage's weight can be on a bad version: the stage hook at its slowest,
    /// the whole stage (a breach in its last moment), and the rollback hook at its slowest.
    pub(crate) worst_case_exposure_ms: u64,
}

/// The check after a rollback probes each verify endpoint every `interval` (the first at once)
/// until `successes` healthy answers in a row: the last one comes `(successes - 1) × interval`
/// after the start at the earliest, so a `timeout` not longer than that can only fail — and
/// would report a healthy service as a failed rollback (exit 5).
fn check_verification(
    any: bool,
    successes: u32,
    interval: Duration,
    timeout: Duration,
) -> Result<()> {
    let needed = interval.saturating_mul(successes.saturating_sub(1));
    if any && needed >= timeout {
        return Err(Error::usage(format!(
            "the health check after a rollback can never pass: `verify-successes` `{successes}` healthy probes in a row, one every `{}` (`interval`), take at least `{}`, but `verify-timeout` is `{}`; set `verify-timeout` above `{}`, lower `verify-successes` or probe more often",
            format_duration(interval),
            format_duration(needed),
            format_duration(timeout),
            format_duration(needed)
        )));
    }
    Ok(())
}

/// The judge's stages exist, and each can collect its minimum of samples a side: the probes
/// (`probed` HTTP targets a side, every interval) and each range query's points (every step),
/// over the stage's window.
fn check_judge(judge: &JudgeSpec, stages: &[Stage], probed: u64) -> Result<()> {
    if let Some(names) = &judge.stages
        && let Some(unknown) = names.iter().find(|n| !stages.iter().any(|s| &s.name == *n))
    {
        return Err(Error::usage(format!(
            "`rollout.judge` names stage `{unknown}`, which is not in the plan ({})",
            stages
                .iter()
                .map(|s| format!("`{}`", s.name))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let needed = judge.rules.min_samples;
    check_count("min-samples", "`rollout.judge`", needed)?;
    for stage in stages.iter().filter(|s| judge.applies(&s.name)) {
        let span = stage.thresholds.window.min(stage.duration);
        let mut sources = Vec::new();
        if judge.probes {
            sources.push((
                "its probes".to_string(),
                stage.interval,
                probed,
                super::judge::possible_samples(span, stage.interval, probed),
            ));
        }
        for metric in &judge.metrics {
            let step = JudgeSpec::step(metric, stage.interval);
            sources.push((
                format!("judge metric `{}`", metric.name),
                step,
                1,
                super::judge::possible_samples(span, step, 1),
            ));
        }
        if let Some((what, every, per_tick, possible)) = sources.into_iter().find(|s| s.3 < needed)
        {
            return Err(Error::usage(format!(
                "stage `{}`: the canary judge needs {needed} samples a side (`rollout.judge.min-samples`) but {what} give at most {possible} ({per_tick} every {} for {}): it could only be inconclusive; lengthen the stage or the window, sample more often or lower `min-samples`",
                stage.name,
                format_duration(every),
                format_duration(span)
            )));
        }
    }
    Ok(())
}

/// A count the user gave, at most [`MAX_COUNT`].
fn check_count(name: &str, whose: &str, value: u64) -> Result<()> {
    if value > MAX_COUNT {
        return Err(Error::usage(format!(
            "`{name}` for {whose} is `{value}`, more than the maximum `{MAX_COUNT}`; use a smaller number"
        )));
    }
    Ok(())
}

fn check_thresholds(whose: &str, t: &Thresholds) -> Result<()> {
    check_count("min-samples", whose, t.min_samples)?;
    check_count(
        "consecutive-failures",
        whose,
        u64::from(t.consecutive_failures),
    )?;
    if t.min_samples == 0 {
        return Err(Error::usage(format!(
            "`min-samples` for {whose} is 0; at least 1 sample is needed (no data is never a pass)"
        )));
    }
    if !(t.baseline_ratio.is_finite() && t.baseline_ratio > 0.0) {
        return Err(Error::usage(format!(
            "`baseline-ratio` for {whose} is `{}`; use a number above 0 such as `2`",
            t.baseline_ratio
        )));
    }
    if t.window.is_zero() {
        return Err(Error::usage(format!(
            "`window` for {whose} must be more than 0"
        )));
    }
    if t.max_p95.is_zero() {
        return Err(Error::usage(format!(
            "`max-p95` for {whose} must be more than 0"
        )));
    }
    Ok(())
}

fn check_interval(whose: &str, interval: Duration) -> Result<()> {
    if interval < Duration::from_millis(1) {
        return Err(Error::usage(format!(
            "the probe interval for {whose} is too short; use at least `1ms`"
        )));
    }
    Ok(())
}

fn check_url(what: &str, raw: &str) -> Result<String> {
    let url = url::Url::parse(raw.trim()).map_err(|e| {
        Error::usage(format!(
            "{what} {} is not a URL ({e}); write it like `https://app.example/health`",
            crate::actions::quote(&crate::secret::redact_url(raw))
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::usage(format!(
            "{what} {} is not http or https",
            crate::actions::quote(&crate::secret::redact_url(raw))
        )));
    }
    if url.password().is_some() {
        // Credentials in a URL are secrets: mask and redact them from here on.
        crate::secret::register(url.as_str());
    }
    Ok(url.to_string())
}

/// `name:weight:duration[:interval]`, e.g. `canary:5:5m` or `canary:5%:2m:5s`.
fn parse_stage_flag(text: &str) -> Result<StageConfig> {
    let parts: Vec<&str> = text.split(':').map(str::trim).collect();
    if !(3..=4).contains(&parts.len()) {
        return Err(Error::usage(format!(
            "stage {} is not `name:weight:duration[:interval]`; write it like `canary:5:5m` or `canary:5:5m:10s`",
            crate::actions::quote(text)
        )));
    }
    let bad = |what: &str, e: String| {
        Error::usage(format!(
            "stage {}: the {what} is not valid: {e}",
            crate::actions::quote(text)
        ))
    };
    Ok(StageConfig {
        name: parts[0].to_string(),
        weight: parts[1].parse().map_err(|e| bad("weight", e))?,
        duration: parts[2].parse().map_err(|e| bad("duration", e))?,
        interval: parts
            .get(3)
            .map(|p| p.parse::<HumanDuration>())
            .transpose()
            .map_err(|e| bad("interval", e))?,
        ..StageConfig::default()
    })
}

fn default_stages() -> Vec<StageConfig> {
    [
        ("canary", 5, 300),
        ("progressive", 50, 600),
        ("full", 100, 900),
    ]
    .into_iter()
    .map(|(name, weight, secs)| StageConfig {
        name: name.to_string(),
        weight: Percent(f64::from(weight)),
        duration: HumanDuration(Duration::from_secs(secs)),
        ..StageConfig::default()
    })
    .collect()
}

fn stages(
    from_flags: &[String],
    from_file: Option<&Vec<StageConfig>>,
    base: &Thresholds,
    interval: Duration,
    approval_timeout: Duration,
    pause_before: &[String],
) -> Result<Vec<Stage>> {
    let configs: Vec<StageConfig> = if !from_flags.is_empty() {
        from_flags
            .iter()
            .map(|s| parse_stage_flag(s))
            .collect::<Result<_>>()?
    } else if let Some(stages) = from_file {
        stages.clone()
    } else {
        default_stages()
    };
    if configs.is_empty() {
        return Err(Error::usage(
            "the rollout has no stages; give at least one (`--stage canary:5:5m`)",
        ));
    }
    let mut names = HashSet::new();
    let mut stages = Vec::new();
    let mut last_weight = 0u8;
    for config in configs {
        crate::inputs::check_name("stage name", &config.name)?;
        if config.name == "rollback" {
            return Err(Error::usage(
                "`rollback` is reserved for the rollback hook's SHIPGATE_STAGE; name the stage differently",
            ));
        }
        if !names.insert(config.name.clone()) {
            return Err(Error::usage(format!(
                "stage `{}` appears twice; stage names must be unique",
                config.name
            )));
        }
        let weight = config.weight.0;
        if weight.fract() != 0.0 {
            return Err(Error::usage(format!(
                "stage `{}` has the weight `{weight}`; use a whole percentage from 0 to 100",
                config.name
            )));
        }
        let weight = weight as u8;
        if weight < last_weight {
            return Err(Error::usage(format!(
                "stage `{}` has the weight {weight}%, less than the stage before it ({last_weight}%); weights must not go down",
                config.name
            )));
        }
        last_weight = weight;
        if config.duration.0.is_zero() {
            return Err(Error::usage(format!(
                "stage `{}` has no duration; give it one such as `5m`",
                config.name
            )));
        }
        let thresholds = Thresholds {
            success_rate: config.success_rate.map_or(base.success_rate, |p| p.0),
            max_p95: config.max_p95.map_or(base.max_p95, |d| d.0),
            consecutive_failures: config
                .consecutive_failures
                .unwrap_or(base.consecutive_failures),
            min_samples: config.min_samples.unwrap_or(base.min_samples),
            window: config.window.map_or(base.window, |d| d.0),
            baseline_ratio: config.baseline_ratio.unwrap_or(base.baseline_ratio),
            degraded: config.degraded.unwrap_or(base.degraded),
        };
        let whose = format!("stage `{}`", config.name);
        check_thresholds(&whose, &thresholds)?;
        let stage_interval = config.interval.map_or(interval, |d| d.0);
        check_interval(&whose, stage_interval)?;
        stages.push(Stage {
            pause: config.pause.is_some() || pause_before.contains(&config.name),
            approval_timeout: config.approval_timeout.map_or(approval_timeout, |d| d.0),
            name: config.name,
            weight,
            duration: config.duration.0,
            interval: stage_interval,
            thresholds,
        });
    }
    for name in pause_before {
        if !names.contains(name) {
            return Err(Error::usage(format!(
                "`pause-before` names the stage `{name}`, which is not in the plan ({})",
                stages
                    .iter()
                    .map(|s| format!("`{}`", s.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    if last_weight < 100 {
        tracing::warn!(
            "the plan ends at {last_weight}% of traffic: the last stage does not shift all traffic to the new version"
        );
    }
    Ok(stages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_flags_parse_with_their_errors() {
        let stage = parse_stage_flag("canary:5%:2m:5s").expect("valid");
        assert_eq!(stage.name, "canary");
        assert_eq!(stage.weight, Percent(5.0));
        assert_eq!(stage.duration.0, Duration::from_secs(120));
        assert_eq!(stage.interval.map(|d| d.0), Some(Duration::from_secs(5)));
        let error = parse_stage_flag("canary:5").expect_err("too short");
        assert!(error.to_string().contains("name:weight:duration"));
        let error = parse_stage_flag("canary:150:5m").expect_err("weight");
        assert!(error.to_string().contains("`150`"), "{error}");
        let error = parse_stage_flag("canary:5:5 minutes").expect_err("duration");
        assert!(error.to_string().contains("duration"), "{error}");
    }

    #[test]
    fn a_verification_that_cannot_fit_its_timeout_is_refused() {
        let secs = Duration::from_secs;
        let error = check_verification(true, 3, secs(10), secs(10)).expect_err("20s > 10s");
        let text = error.to_string();
        assert!(
            text.contains("`3`") && text.contains("`10s`") && text.contains("at least `20s`"),
            "{text}"
        );
        assert!(
            check_verification(true, 2, secs(10), secs(10)).is_err(),
            "10s is not < 10s"
        );
        assert!(check_verification(true, 3, secs(10), secs(21)).is_ok());
        assert!(check_verification(true, 1, secs(10), secs(1)).is_ok());
        assert!(
            check_verification(false, 3, secs(10), secs(1)).is_ok(),
            "nothing to verify"
        );
        assert!(check_verification(true, 1, secs(10), Duration::ZERO).is_err());
    }
}
