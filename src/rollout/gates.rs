//! The gates a stage must pass, evaluated after every sample (a breach aborts at once) and at
//! the end of the stage, when a gate still without enough data fails as "no data": missing data
//! is never a pass.

use std::time::Duration;

use serde::{Serialize, Serializer};

use super::window::Window;
pub(crate) use crate::state::rollout::{DegradedPolicy, StageThresholds, StageVerdict, Status};
use crate::ui::format_duration;

impl std::str::FromStr for DegradedPolicy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "fail" => Ok(DegradedPolicy::Fail),
            "warn" => Ok(DegradedPolicy::Warn),
            other => Err(format!("`{other}` is not a policy; use `fail` or `warn`")),
        }
    }
}

/// A stage's thresholds (seed 002's defaults, overridable globally and per stage).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Thresholds {
    /// Minimum percent of passing probes over the window.
    pub(crate) success_rate: f64,
    /// p95 latency must stay below this.
    #[serde(rename = "max_p95_ms", serialize_with = "as_millis")]
    pub(crate) max_p95: Duration,
    /// Failures in a row (one target) that fail the stage at once; 0 turns the rule off.
    pub(crate) consecutive_failures: u32,
    /// Samples the window needs before the rate gates count.
    pub(crate) min_samples: u64,
    /// The rolling window (the stage so far, when the stage is shorter).
    #[serde(rename = "window_ms", serialize_with = "as_millis")]
    pub(crate) window: Duration,
    /// The canary's error rate may be at most this many times the baseline's.
    pub(crate) baseline_ratio: f64,
    pub(crate) degraded: DegradedPolicy,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            success_rate: 99.0,
            max_p95: Duration::from_millis(250),
            consecutive_failures: 3,
            min_samples: 10,
            window: Duration::from_secs(300),
            baseline_ratio: 2.0,
            degraded: DegradedPolicy::Fail,
        }
    }
}

impl From<&Thresholds> for StageThresholds {
    fn from(t: &Thresholds) -> StageThresholds {
        StageThresholds {
            success_rate: t.success_rate,
            max_p95_ms: t.max_p95.as_millis() as u64,
            consecutive_failures: t.consecutive_failures,
            min_samples: t.min_samples,
            window_ms: t.window.as_millis() as u64,
            baseline_ratio: t.baseline_ratio,
            degraded: t.degraded,
        }
    }
}

fn as_millis<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(duration.as_millis() as u64)
}

/// One gate's decision: the measured value against its threshold, in words and numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Verdict {
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
    /// A metric gate's query as sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) query: Option<String>,
    /// The gate could not judge: its backend failed.
    #[serde(skip)]
    pub(crate) dependency: bool,
}

impl From<&Verdict> for StageVerdict {
    fn from(v: &Verdict) -> StageVerdict {
        StageVerdict {
            gate: v.gate.clone(),
            status: v.status,
            value: v.value,
            measured: v.measured.clone(),
            threshold: v.threshold.clone(),
            message: v.message.clone(),
            query: v.query.clone(),
        }
    }
}

/// What the gates see: the canary's window, the baseline's (when one is probed), and how to
/// name a target in a message.
pub(crate) struct Inputs<'a> {
    pub(crate) canary: &'a Window,
    pub(crate) baseline: Option<&'a Window>,
    /// Whether any canary target is an HTTP endpoint (latency is measured only for those).
    pub(crate) timed_targets: bool,
    pub(crate) label: &'a dyn Fn(usize) -> String,
    /// How long the stage has run: the window covers "the stage so far" until it is longer
    /// than the window's span.
    pub(crate) elapsed: Duration,
}

/// Evaluates every gate on the current samples.
pub(crate) fn evaluate(inputs: &Inputs<'_>, t: &Thresholds) -> Vec<Verdict> {
    let canary = inputs.canary;
    let span = if inputs.elapsed < canary.span() {
        format!("the stage so far ({})", format_duration(inputs.elapsed))
    } else {
        format!("the last {}", format_duration(canary.span()))
    };
    let mut verdicts = Vec::new();

    if t.consecutive_failures > 0 {
        let (run, worst) = canary.consecutive_failures();
        let failed = run >= t.consecutive_failures;
        let message = match worst {
            Some((target, cause)) if failed => format!(
                "{} failed {run} probes in a row (limit {}), last: {cause}",
                (inputs.label)(target),
                t.consecutive_failures
            ),
            _ => format!(
                "at most {run} failed probes in a row (limit {})",
                t.consecutive_failures
            ),
        };
        verdicts.push(Verdict {
            gate: "consecutive-failures".into(),
            query: None,
            dependency: false,
            status: if failed { Status::Fail } else { Status::Pass },
            value: Some(f64::from(run)),
            measured: format!("{run} in a row"),
            threshold: format!("< {}", t.consecutive_failures),
            message,
        });
    }

    let enough = canary.len() >= t.min_samples;
    verdicts.push(Verdict {
        gate: "samples".into(),
        query: None,
        dependency: false,
        status: if enough { Status::Pass } else { Status::NoData },
        value: Some(canary.len() as f64),
        measured: format!("{} samples", canary.len()),
        threshold: format!("≥ {}", t.min_samples),
        message: if enough {
            format!(
                "{} samples in the window (at least {})",
                canary.len(),
                t.min_samples
            )
        } else {
            format!(
                "no data: {} samples in the window, at least {} needed",
                canary.len(),
                t.min_samples
            )
        },
    });

    let rate = canary.success_rate();
    verdicts.push(match rate {
        Some(rate) if enough => {
            let failed = rate < t.success_rate;
            Verdict {
                gate: "success-rate".into(),
                query: None,
                dependency: false,
                status: if failed { Status::Fail } else { Status::Pass },
                value: Some(rate),
                measured: crate::ui::percent(rate),
                threshold: format!("≥ {}", crate::ui::percent(t.success_rate)),
                message: format!(
                    "success rate {} {} {} over {span} ({} of {} probes failed{})",
                    crate::ui::percent(rate),
                    if failed { "<" } else { "≥" },
                    crate::ui::percent(t.success_rate),
                    canary.failures(),
                    canary.len(),
                    if canary.failures() > 0 {
                        format!(": {}", canary.causes_text(3))
                    } else {
                        String::new()
                    }
                ),
            }
        }
        _ => Verdict {
            gate: "success-rate".into(),
            query: None,
            dependency: false,
            status: Status::NoData,
            value: rate,
            measured: rate.map_or_else(|| "-".to_string(), crate::ui::percent),
            threshold: format!("≥ {}", crate::ui::percent(t.success_rate)),
            message: format!(
                "no data for the success rate: {} samples, at least {} needed",
                canary.len(),
                t.min_samples
            ),
        },
    });

    if inputs.timed_targets {
        let p95 = canary.p95();
        verdicts.push(match p95 {
            Some(p95) if canary.timed() >= t.min_samples => {
                let failed = p95 >= t.max_p95;
                Verdict {
                    gate: "p95-latency".into(),
                    query: None,
                    dependency: false,
                    status: if failed { Status::Fail } else { Status::Pass },
                    value: Some(p95.as_secs_f64() * 1000.0),
                    measured: crate::ui::latency(p95),
                    threshold: format!("< {}", crate::ui::latency(t.max_p95)),
                    message: format!(
                        "p95 latency {} {} {} over {span} ({} timed probes)",
                        crate::ui::latency(p95),
                        if failed { "≥" } else { "<" },
                        crate::ui::latency(t.max_p95),
                        canary.timed()
                    ),
                }
            }
            _ => Verdict {
                gate: "p95-latency".into(),
                query: None,
                dependency: false,
                status: Status::NoData,
                value: p95.map(|d| d.as_secs_f64() * 1000.0),
                measured: p95.map_or_else(|| "-".to_string(), crate::ui::latency),
                threshold: format!("< {}", crate::ui::latency(t.max_p95)),
                message: format!(
                    "no data for the p95 latency: {} timed probes, at least {} needed",
                    canary.timed(),
                    t.min_samples
                ),
            },
        });
    }

    if let Some(baseline) = inputs.baseline {
        let threshold = format!("≤ {}× baseline", t.baseline_ratio);
        verdicts.push(
            match (canary.success_rate(), baseline.success_rate()) {
                (Some(canary_rate), Some(baseline_rate))
                    if enough && baseline.len() >= t.min_samples =>
                {
                    let canary_errors = 100.0 - canary_rate;
                    let baseline_errors = 100.0 - baseline_rate;
                    let failed =
                        canary_errors > 0.0 && canary_errors > t.baseline_ratio * baseline_errors;
                    Verdict {
                        gate: "baseline".into(),
                        query: None,
                        dependency: false,
                        status: if failed { Status::Fail } else { Status::Pass },
                        value: Some(canary_errors),
                        measured: format!(
                            "{} errors vs {} baseline",
                            crate::ui::percent(canary_errors),
                            crate::ui::percent(baseline_errors)
                        ),
                        threshold,
                        message: format!(
                            "canary error rate {} {} {} × the baseline's {} over {span} ({} canary and {} baseline probes)",
                            crate::ui::percent(canary_errors),
                            if failed { ">" } else { "≤" },
                            t.baseline_ratio,
                            crate::ui::percent(baseline_errors),
                            canary.len(),
                            baseline.len()
                        ),
                    }
                }
                _ => Verdict {
                    gate: "baseline".into(),
                    query: None,
                    dependency: false,
                    status: Status::NoData,
                    value: None,
                    measured: format!("{} baseline samples", baseline.len()),
                    threshold,
                    message: format!(
                        "no data for the baseline comparison: {} canary and {} baseline samples, at least {} each needed",
                        canary.len(),
                        baseline.len(),
                        t.min_samples
                    ),
                },
            },
        );
    }
    verdicts
}

/// The first failed gate, if any.
pub(crate) fn breach(verdicts: &[Verdict]) -> Option<&Verdict> {
    verdicts.iter().find(|v| v.status == Status::Fail)
}

/// At the end of a stage: the first failed gate, else the first without data.
pub(crate) fn final_failure(verdicts: &[Verdict]) -> Option<&Verdict> {
    breach(verdicts).or_else(|| verdicts.iter().find(|v| v.status == Status::NoData))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::window::Sample;
    use super::*;

    fn window(pattern: &[bool], ms: u64) -> Window {
        let mut window = Window::new(Duration::from_secs(300));
        let now = Instant::now();
        for ok in pattern {
            window.push(&Sample {
                target: 0,
                at: now,
                ok: *ok,
                degraded: false,
                latency: Some(Duration::from_millis(ms)),
                cause: (!ok).then(|| "HTTP 500".to_string()),
                source: None,
            });
        }
        window
    }

    fn run(canary: &Window, baseline: Option<&Window>, t: &Thresholds) -> Vec<Verdict> {
        let label = |i: usize| format!("target {i}");
        evaluate(
            &Inputs {
                canary,
                baseline,
                timed_targets: true,
                label: &label,
                elapsed: Duration::from_secs(600),
            },
            t,
        )
    }

    fn status(verdicts: &[Verdict], gate: &str) -> Status {
        verdicts
            .iter()
            .find(|v| v.gate == gate)
            .map(|v| v.status)
            .expect("gate present")
    }

    #[test]
    fn too_few_samples_is_no_data_never_a_pass() {
        let t = Thresholds::default();
        let verdicts = run(&window(&[true; 3], 5), None, &t);
        assert_eq!(status(&verdicts, "success-rate"), Status::NoData);
        assert_eq!(status(&verdicts, "p95-latency"), Status::NoData);
        assert!(breach(&verdicts).is_none());
        let last = final_failure(&verdicts).expect("no data fails at the end");
        assert!(last.message.starts_with("no data"), "{}", last.message);
    }

    #[test]
    fn rate_latency_and_consecutive_gates() {
        let t = Thresholds::default();
        let mut pattern = vec![true; 99];
        pattern.push(false);
        let verdicts = run(&window(&pattern, 5), None, &t);
        assert_eq!(
            status(&verdicts, "success-rate"),
            Status::Pass,
            "99% passes"
        );
        pattern.push(false);
        let verdicts = run(&window(&pattern, 5), None, &t);
        let failed = breach(&verdicts).expect("98.02% < 99%");
        assert_eq!(failed.gate, "success-rate");
        assert!(
            failed.message.contains("2 × HTTP 500"),
            "{}",
            failed.message
        );
        let verdicts = run(&window(&[true; 20], 250), None, &t);
        assert_eq!(
            breach(&verdicts).map(|v| v.gate.as_str()),
            Some("p95-latency")
        );
        let verdicts = run(&window(&[true, false, false, false], 5), None, &t);
        let failed = breach(&verdicts).expect("three in a row");
        assert_eq!(failed.gate, "consecutive-failures");
        assert!(failed.message.contains("target 0 failed 3 probes in a row"));
    }

    #[test]
    fn canary_against_baseline() {
        let t = Thresholds {
            success_rate: 50.0,
            ..Thresholds::default()
        };
        // Failures spread out (never two in a row): one in `every`.
        let spread =
            |n: usize, every: usize| -> Vec<bool> { (1..=n).map(|i| i % every != 0).collect() };
        let canary = spread(20, 5); // 20% errors
        let same = spread(20, 7); // 10% errors
        let verdicts = run(&window(&canary, 5), Some(&window(&same, 5)), &t);
        assert_eq!(status(&verdicts, "baseline"), Status::Pass);
        let better = spread(20, 20); // 5% errors
        let verdicts = run(&window(&canary, 5), Some(&window(&better, 5)), &t);
        let failed = breach(&verdicts).expect("20% > 2 × 5%");
        assert_eq!(failed.gate, "baseline");
        assert!(
            failed.message.contains("20% > 2 × the baseline's 5%"),
            "{}",
            failed.message
        );
        let verdicts = run(&window(&canary, 5), Some(&window(&[true; 2], 5)), &t);
        assert_eq!(status(&verdicts, "baseline"), Status::NoData);
    }

    #[test]
    fn verdict_views_read_back_what_verdicts_write() {
        let verdict = Verdict {
            gate: "success-rate".into(),
            query: None,
            dependency: false,
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
