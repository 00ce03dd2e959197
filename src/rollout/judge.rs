//! The canary judge (`rollout.judge`): at the end of each stage's window, the canary is judged
//! against the baseline statistically, from the probes (latencies and error counts of the
//! canary's and the baseline's endpoints) and from Prometheus range-query pairs. Three verdicts:
//! pass, fail, and inconclusive (too few samples, or a difference as large as the effect
//! threshold that is not significant), whose policy is `fail` or `pause` (hold the weight until
//! approved, like `pause: until-approved`).
//!
//! Each sample pair gets two tests ([`super::stats`]): a shift of location (Mann-Whitney U,
//! one-sided, with Cliff's delta as the effect size) and a widening of spread (the same test on
//! absolute deviations from each side's median). A worse canary fails when the test is
//! significant (p < `alpha`), the effect reaches `effect` and the difference of medians (or of
//! median absolute deviations) reaches `tolerance`. Error counts (the probes', or Prometheus
//! counts from `errors` sources) get Fisher's exact test, one-sided: significant fails, with no
//! effect threshold (any significant rise of errors matters) beyond an optional `tolerance` in
//! percentage points.
//!
//! Why once per stage, at the end of its window, not every interval: each look at the data is
//! one more chance of a false alarm (repeated significance testing); the probe and metric
//! gates already stop a stage at once on a gross breach.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::config::{BackendConfig, InconclusivePolicy, JudgeConfig};
use super::gates::{Status, Verdict};
use super::stats::{self, Shift};
use super::window::Window;
use crate::error::{Error, Result};
use crate::metrics::condition::number_text;
use crate::metrics::prometheus::{Client, Reading};
use crate::metrics::template::{self, Vars};
pub(crate) use crate::state::rollout::{JudgeVerdict, Judgement};
use crate::text::one_line;

pub(crate) const DEFAULT_ALPHA: f64 = 0.01;
/// Romano et al.'s threshold of a "medium" Cliff's delta.
pub(crate) const DEFAULT_EFFECT: f64 = 0.33;
pub(crate) const DEFAULT_MIN_SAMPLES: u64 = 20;

/// The decision rules every test shares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rules {
    pub(crate) alpha: f64,
    pub(crate) effect: f64,
    pub(crate) min_samples: u64,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            alpha: DEFAULT_ALPHA,
            effect: DEFAULT_EFFECT,
            min_samples: DEFAULT_MIN_SAMPLES,
        }
    }
}

/// A range-query pair.
#[derive(Debug, Clone)]
pub(crate) struct JudgeMetric {
    pub(crate) name: String,
    pub(crate) query: String,
    pub(crate) baseline_query: String,
    /// `None`: the stage's probe interval.
    pub(crate) step: Option<Duration>,
    pub(crate) tolerance: f64,
    pub(crate) client: Client,
}

/// An error-count source: the canary's errors and requests, the baseline's, as instant queries.
#[derive(Debug, Clone)]
pub(crate) struct JudgeErrors {
    pub(crate) name: String,
    /// `errors`, `total`, `baseline-errors`, `baseline-total`, in that order.
    pub(crate) queries: [String; 4],
    /// Percentage points.
    pub(crate) tolerance: f64,
    pub(crate) client: Client,
}

const ERROR_KEYS: [&str; 4] = ["errors", "total", "baseline-errors", "baseline-total"];

/// The resolved `rollout.judge`.
#[derive(Debug, Clone)]
pub(crate) struct JudgeSpec {
    pub(crate) rules: Rules,
    pub(crate) inconclusive: InconclusivePolicy,
    /// Judge the probes (the plan has baseline endpoints).
    pub(crate) probes: bool,
    /// Probe latency tolerance, in milliseconds.
    pub(crate) tolerance_ms: f64,
    pub(crate) metrics: Vec<JudgeMetric>,
    pub(crate) errors: Vec<JudgeErrors>,
    pub(crate) stages: Option<Vec<String>>,
}

impl JudgeSpec {
    pub(crate) fn applies(&self, stage: &str) -> bool {
        self.stages
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == stage))
    }

    /// The step of `metric`'s range queries in a stage probed every `interval`.
    pub(crate) fn step(metric: &JudgeMetric, interval: Duration) -> Duration {
        metric.step.unwrap_or(interval)
    }

    /// The plan's lines for the judge.
    pub(crate) fn describe(&self) -> Vec<String> {
        let Rules {
            alpha,
            effect,
            min_samples,
        } = self.rules;
        let stages = self
            .stages
            .as_ref()
            .map(|s| format!(" in {}", s.join(", ")))
            .unwrap_or_default();
        let mut lines = vec![format!(
            "canary judge{stages} at the end of each stage's window: fails when the canary is worse with p < {alpha} and Cliff's delta ≥ {effect} (errors: Fisher's exact p < {alpha}); fewer than {min_samples} samples a side is inconclusive: {}",
            match self.inconclusive {
                InconclusivePolicy::Fail => "fail",
                InconclusivePolicy::Pause => "pause for approval",
            }
        )];
        if self.probes {
            lines.push(format!(
                "judge:latency, judge:latency-spread, judge:errors: canary probes against baseline probes (tolerance {}ms)",
                number_text(self.tolerance_ms)
            ));
        }
        for metric in &self.metrics {
            lines.push(format!(
                "judge:{}: `{}` against `{}` from {} (tolerance {})",
                metric.name,
                one_line(&metric.query),
                one_line(&metric.baseline_query),
                metric.client.label(),
                number_text(metric.tolerance)
            ));
        }
        for errors in &self.errors {
            lines.push(format!(
                "judge:{}: errors `{}` of `{}` against `{}` of `{}` from {} (tolerance {} points)",
                errors.name,
                one_line(&errors.queries[0]),
                one_line(&errors.queries[1]),
                one_line(&errors.queries[2]),
                one_line(&errors.queries[3]),
                errors.client.label(),
                number_text(errors.tolerance)
            ));
        }
        lines
    }
}

/// One judge source (a metric pair or an error-count source) named `name`: a plain name that
/// neither another source nor a probe test (`latency`, `latency-spread`, `errors`) has, and
/// every query present and a valid template. Returns how messages name it.
fn checked_source(
    kind: &str,
    name: &str,
    queries: &[(&str, &String)],
    seen: &mut HashSet<String>,
) -> Result<String> {
    crate::inputs::check_name(&format!("{kind} name"), name)?;
    let what = format!("{kind} `{name}`");
    if matches!(name, "latency" | "latency-spread" | "errors") || !seen.insert(name.to_string()) {
        return Err(Error::usage(format!(
            "{what}: the name is taken (by another judge metric or errors source, or by the probe tests `latency`, `latency-spread`, `errors`); give each a unique name"
        )));
    }
    for (key, text) in queries {
        if text.trim().is_empty() {
            return Err(Error::usage(format!("{what} has an empty `{key}`")));
        }
        template::check(text).map_err(|e| Error::usage(format!("{what}: {e}")))?;
    }
    Ok(what)
}

/// `rollout.judge` resolved against the plan: `has_baseline` says whether baseline endpoints
/// are probed.
pub(crate) fn resolve(
    config: Option<&JudgeConfig>,
    backend: Option<&BackendConfig>,
    has_baseline: bool,
) -> Result<Option<JudgeSpec>> {
    let Some(config) = config else {
        return Ok(None);
    };
    let what = "`rollout.judge`";
    let alpha = config.alpha.unwrap_or(DEFAULT_ALPHA);
    if !(alpha > 0.0 && alpha <= 0.5) {
        return Err(Error::usage(format!(
            "{what}: `alpha` is `{alpha}`; use a significance level above 0 and at most 0.5, such as `0.01`"
        )));
    }
    let effect = config.effect.unwrap_or(DEFAULT_EFFECT);
    if !(0.0..1.0).contains(&effect) {
        return Err(Error::usage(format!(
            "{what}: `effect` is `{effect}`; use a Cliff's delta from 0 to below 1, such as `0.33`"
        )));
    }
    let min_samples = config.min_samples.unwrap_or(DEFAULT_MIN_SAMPLES);
    if min_samples < 2 {
        return Err(Error::usage(format!(
            "{what}: `min-samples` is `{min_samples}`; at least 2 samples a side are needed"
        )));
    }
    let probes = config.probes.unwrap_or(true);
    if probes && !has_baseline {
        return Err(Error::usage(format!(
            "{what} compares the canary's probes with the baseline's, but no baseline endpoint is probed: add `baseline` endpoints (input `baseline`, `--baseline URL`), or set `probes: false` and judge `metrics`"
        )));
    }
    let mut metrics = Vec::new();
    let mut seen = HashSet::new();
    let default = BackendConfig::default();
    for metric in config.metrics.iter().flatten() {
        let what = checked_source(
            "judge metric",
            &metric.name,
            &[
                ("query", &metric.query),
                ("baseline-query", &metric.baseline_query),
            ],
            &mut seen,
        )?;
        let step = metric.step.map(|d| d.0);
        if step.is_some_and(|s| s < Duration::from_millis(100)) {
            return Err(Error::usage(format!(
                "{what}: `step` must be at least 100ms"
            )));
        }
        let tolerance = metric.tolerance.unwrap_or(0.0);
        if !(tolerance.is_finite() && tolerance >= 0.0) {
            return Err(Error::usage(format!(
                "{what}: `tolerance` is `{tolerance}`; use a number of at least 0 in the metric's unit"
            )));
        }
        let client = super::metric::client(
            &what,
            "Prometheus",
            metric.address.as_ref(),
            metric.auth.as_ref(),
            metric.headers.as_ref(),
            metric.timeout,
            backend.unwrap_or(&default),
        )?;
        metrics.push(JudgeMetric {
            name: metric.name.clone(),
            query: metric.query.clone(),
            baseline_query: metric.baseline_query.clone(),
            step,
            tolerance,
            client,
        });
    }
    let mut errors = Vec::new();
    for source in config.errors.iter().flatten() {
        let queries = [
            &source.errors,
            &source.total,
            &source.baseline_errors,
            &source.baseline_total,
        ];
        let keyed: Vec<(&str, &String)> = ERROR_KEYS.iter().copied().zip(queries).collect();
        let what = checked_source("judge errors", &source.name, &keyed, &mut seen)?;
        let tolerance = source.tolerance.unwrap_or(0.0);
        if !(0.0..=100.0).contains(&tolerance) {
            return Err(Error::usage(format!(
                "{what}: `tolerance` is `{tolerance}`; use percentage points from 0 to 100"
            )));
        }
        let client = super::metric::client(
            &what,
            "Prometheus",
            source.address.as_ref(),
            source.auth.as_ref(),
            source.headers.as_ref(),
            source.timeout,
            backend.unwrap_or(&default),
        )?;
        errors.push(JudgeErrors {
            name: source.name.clone(),
            queries: queries.map(Clone::clone),
            tolerance,
            client,
        });
    }
    if !probes && metrics.is_empty() && errors.is_empty() {
        return Err(Error::usage(format!(
            "{what} has nothing to judge: `probes: false` and no `metrics` or `errors`"
        )));
    }
    Ok(Some(JudgeSpec {
        rules: Rules {
            alpha,
            effect,
            min_samples,
        },
        inconclusive: config.inconclusive.unwrap_or_default(),
        probes,
        tolerance_ms: config.tolerance.map_or(0.0, |d| d.0.as_secs_f64() * 1000.0),
        metrics,
        errors,
        stages: config.stages.clone(),
    }))
}

/// A p-value as shown.
fn p_text(p: f64) -> String {
    if p < 0.001 {
        format!("{p:.1e}")
    } else {
        format!("{p:.3}")
    }
}

fn value_text(value: f64, unit: &str) -> String {
    match unit {
        "ms" => crate::ui::latency_ms(value),
        "%" => format!("{}%", number_text((value * 100.0).round() / 100.0)),
        _ => number_text(value),
    }
}

/// What a location or spread test is about, for the sentences.
#[derive(Clone, Copy)]
enum Aspect {
    Location,
    Spread,
}

/// The verdict on a [`Shift`] under `rules`, with its sentence.
fn shift_judgement(
    gate: &str,
    aspect: Aspect,
    shift: &Shift,
    quantiles: Option<(f64, f64)>,
    rules: &Rules,
    tolerance: f64,
    unit: &str,
) -> Judgement {
    let (test, statistic, worse_words, fine_words) = match aspect {
        Aspect::Location => ("mann-whitney", "median", "canary worse", "no shift"),
        Aspect::Spread => (
            "mann-whitney-spread",
            "spread (median absolute deviation)",
            "canary spread wider",
            "no wider spread",
        ),
    };
    let (nc, nb) = (shift.canary_n as u64, shift.baseline_n as u64);
    let samples = format!("{nc} canary and {nb} baseline samples");
    let numbers = format!(
        "{statistic} {} vs {} baseline{}, Cliff's δ {:.2}, p {}",
        value_text(shift.canary_median, unit),
        value_text(shift.baseline_median, unit),
        quantiles
            .map(|(c, b)| format!(" (p95 {} vs {})", value_text(c, unit), value_text(b, unit)))
            .unwrap_or_default(),
        shift.effect,
        p_text(shift.p_value)
    );
    let enough = nc >= rules.min_samples && nb >= rules.min_samples;
    let difference = shift.canary_median - shift.baseline_median;
    let large = shift.effect > 0.0 && shift.effect >= rules.effect;
    let worse = large && difference >= tolerance;
    let significant = shift.p_value < rules.alpha;
    let (verdict, detail) = if !enough {
        (
            JudgeVerdict::Inconclusive,
            format!(
                "too few samples: {samples}, at least {} each needed",
                rules.min_samples
            ),
        )
    } else if worse && significant {
        (
            JudgeVerdict::Fail,
            format!(
                "{worse_words}: {numbers} (δ ≥ {}, p < {}, difference {} ≥ tolerance {}; {samples})",
                rules.effect,
                rules.alpha,
                value_text(difference, unit),
                value_text(tolerance, unit)
            ),
        )
    } else if worse {
        (
            JudgeVerdict::Inconclusive,
            format!(
                "{worse_words} by δ ≥ {} but not significantly: {numbers} (p ≥ {}; {samples})",
                rules.effect, rules.alpha
            ),
        )
    } else if large {
        (
            JudgeVerdict::Pass,
            format!(
                "{worse_words} but within tolerance: {numbers} (difference {} < tolerance {}; {samples})",
                value_text(difference, unit),
                value_text(tolerance, unit)
            ),
        )
    } else {
        (
            JudgeVerdict::Pass,
            format!(
                "{fine_words}: {numbers} (fails at δ ≥ {} with p < {} and a difference ≥ {}; {samples})",
                rules.effect,
                rules.alpha,
                value_text(tolerance, unit)
            ),
        )
    };
    let finite = |v: f64| v.is_finite().then_some(v);
    Judgement {
        gate: gate.to_string(),
        test: test.to_string(),
        verdict,
        canary_samples: nc,
        baseline_samples: nb,
        canary: finite(shift.canary_median),
        baseline: finite(shift.baseline_median),
        unit: unit.to_string(),
        canary_p95: quantiles.and_then(|(c, _)| finite(c)),
        baseline_p95: quantiles.and_then(|(_, b)| finite(b)),
        canary_errors: None,
        baseline_errors: None,
        effect: Some(shift.effect),
        p_value: Some(shift.p_value),
        alpha: rules.alpha,
        min_effect: rules.effect,
        tolerance,
        min_samples: rules.min_samples,
        detail,
        query: None,
        baseline_query: None,
    }
}

/// Is the canary's sample shifted up (slower, higher) from the baseline's?
pub(crate) fn location(
    gate: &str,
    canary: &[f64],
    baseline: &[f64],
    rules: &Rules,
    tolerance: f64,
    unit: &str,
) -> Judgement {
    let quantiles = (
        stats::quantile(canary, 0.95),
        stats::quantile(baseline, 0.95),
    );
    shift_judgement(
        gate,
        Aspect::Location,
        &stats::mann_whitney(canary, baseline),
        Some(quantiles),
        rules,
        tolerance,
        unit,
    )
}

/// Is the canary's sample more spread out than the baseline's (same median or not)?
pub(crate) fn spread(
    gate: &str,
    canary: &[f64],
    baseline: &[f64],
    rules: &Rules,
    tolerance: f64,
    unit: &str,
) -> Judgement {
    shift_judgement(
        gate,
        Aspect::Spread,
        &stats::spread(canary, baseline),
        None,
        rules,
        tolerance,
        unit,
    )
}

/// Does the canary fail more often than the baseline? Fisher's exact test, one-sided: fails
/// when significant and the error rates differ by at least `tolerance` percentage points.
/// `what` names the counted things (`probes`, `requests`).
pub(crate) fn errors(
    gate: &str,
    (canary_errors, canary_total): (u64, u64),
    (baseline_errors, baseline_total): (u64, u64),
    rules: &Rules,
    tolerance: f64,
    what: &str,
) -> Judgement {
    let rate = |errors: u64, total: u64| (total > 0).then(|| errors as f64 * 100.0 / total as f64);
    let (canary_rate, baseline_rate) = (
        rate(canary_errors, canary_total),
        rate(baseline_errors, baseline_total),
    );
    let p = stats::fisher_greater(canary_errors, canary_total, baseline_errors, baseline_total);
    let samples = format!("{canary_total} canary and {baseline_total} baseline {what}");
    let numbers = format!(
        "{canary_errors} errors in {canary_total} ({}) vs {baseline_errors} in {baseline_total} ({}) baseline, Fisher's exact p {}",
        value_text(canary_rate.unwrap_or(0.0), "%"),
        value_text(baseline_rate.unwrap_or(0.0), "%"),
        p_text(p)
    );
    let enough = canary_total >= rules.min_samples && baseline_total >= rules.min_samples;
    let (verdict, detail) = if !enough {
        (
            JudgeVerdict::Inconclusive,
            format!(
                "too few samples: {samples}, at least {} each needed ({numbers})",
                rules.min_samples
            ),
        )
    } else if p < rules.alpha
        && canary_rate.unwrap_or(0.0) - baseline_rate.unwrap_or(0.0) >= tolerance
    {
        (
            JudgeVerdict::Fail,
            format!(
                "canary errs more: {numbers} < {}{}",
                rules.alpha,
                if tolerance > 0.0 {
                    format!(", rates {} points or more apart", number_text(tolerance))
                } else {
                    String::new()
                }
            ),
        )
    } else {
        (
            JudgeVerdict::Pass,
            format!(
                "no rise in errors: {numbers} (fails at p < {}{})",
                rules.alpha,
                if tolerance > 0.0 {
                    format!(
                        " with rates {} points or more apart",
                        number_text(tolerance)
                    )
                } else {
                    String::new()
                }
            ),
        )
    };
    Judgement {
        gate: gate.to_string(),
        test: "fisher".to_string(),
        verdict,
        canary_samples: canary_total,
        baseline_samples: baseline_total,
        canary: canary_rate,
        baseline: baseline_rate,
        unit: "%".to_string(),
        canary_p95: None,
        baseline_p95: None,
        canary_errors: Some(canary_errors),
        baseline_errors: Some(baseline_errors),
        effect: match (canary_rate, baseline_rate) {
            (Some(c), Some(b)) => Some((c - b) / 100.0),
            _ => None,
        },
        p_value: Some(p),
        alpha: rules.alpha,
        min_effect: rules.effect,
        tolerance,
        min_samples: rules.min_samples,
        detail,
        query: None,
        baseline_query: None,
    }
}

/// The judgement of one stage: a verdict per test, as the gates report them, and the numbers.
#[derive(Debug, Clone, Default)]
pub(crate) struct Judged {
    pub(crate) verdicts: Vec<Verdict>,
    pub(crate) judgements: Vec<Judgement>,
}

impl Judged {
    /// Some test was inconclusive and the policy is to wait for an approval (no test failed).
    pub(crate) fn waits_for_approval(&self, spec: &JudgeSpec) -> bool {
        spec.inconclusive == InconclusivePolicy::Pause
            && !self.verdicts.iter().any(|v| v.status == Status::Fail)
            && self
                .judgements
                .iter()
                .any(|j| j.verdict == JudgeVerdict::Inconclusive)
    }

    /// After an approval of the inconclusive tests: they pass, saying who approved.
    pub(crate) fn approve(&mut self, by: &str) {
        for verdict in &mut self.verdicts {
            if verdict.status == Status::NoData {
                verdict.status = Status::Pass;
                verdict.message = format!("{}; approved by {}", verdict.message, one_line(by));
            }
        }
    }

    fn push(&mut self, judgement: Judgement, policy: InconclusivePolicy) {
        self.verdicts.push(verdict(&judgement, policy));
        self.judgements.push(judgement);
    }
}

/// A judgement as a gate's verdict: an inconclusive one fails under `inconclusive: fail` and
/// has no data (waiting for an approval) under `pause`.
pub(crate) fn verdict(j: &Judgement, policy: InconclusivePolicy) -> Verdict {
    let (status, suffix) = match (j.verdict, policy) {
        (JudgeVerdict::Pass, _) => (Status::Pass, ""),
        (JudgeVerdict::Fail, _) => (Status::Fail, ""),
        (JudgeVerdict::Inconclusive, InconclusivePolicy::Fail) => (
            Status::Fail,
            " — inconclusive, a failure (`inconclusive: fail`)",
        ),
        (JudgeVerdict::Inconclusive, InconclusivePolicy::Pause) => (
            Status::NoData,
            " — inconclusive, waiting for an approval (`inconclusive: pause`)",
        ),
    };
    let threshold = if j.test == "fisher" {
        format!("p ≥ {}", j.alpha)
    } else {
        format!("δ < {} or p ≥ {}", j.min_effect, j.alpha)
    };
    let measured = match (j.canary, j.baseline) {
        (Some(c), Some(b)) if j.test == "fisher" => format!(
            "{} vs {} errors, p {}",
            value_text(c, "%"),
            value_text(b, "%"),
            p_text(j.p_value.unwrap_or(1.0))
        ),
        (Some(c), Some(b)) => format!(
            "{} vs {}, δ {:.2}, p {}",
            value_text(c, &j.unit),
            value_text(b, &j.unit),
            j.effect.unwrap_or(0.0),
            p_text(j.p_value.unwrap_or(1.0))
        ),
        _ => format!("{} vs {} samples", j.canary_samples, j.baseline_samples),
    };
    Verdict {
        gate: j.gate.clone(),
        status,
        value: if j.test == "fisher" {
            j.p_value
        } else {
            j.effect
        },
        measured,
        threshold,
        message: format!("{}: {}: {}{suffix}", j.gate, word(j.verdict), j.detail),
        query: j.query.clone(),
        dependency: false,
    }
}

/// The judge's tests of the probes: latency location and spread, and error counts — of the
/// canary's HTTP endpoints (`is_http` of a target index), as the baseline has only those.
pub(crate) fn judge_probes(
    spec: &JudgeSpec,
    canary: &Window,
    is_http: &dyn Fn(usize) -> bool,
    baseline: &Window,
) -> Vec<Judgement> {
    let (c, b) = (canary.latencies_ms(), baseline.latencies_ms());
    let tolerance = spec.tolerance_ms;
    vec![
        location("judge:latency", &c, &b, &spec.rules, tolerance, "ms"),
        spread("judge:latency-spread", &c, &b, &spec.rules, tolerance, "ms"),
        errors(
            "judge:errors",
            canary.counts_where(is_http),
            (baseline.failures(), baseline.len()),
            &spec.rules,
            0.0,
            "probes",
        ),
    ]
}

/// The finite values of every series a range query returned, pooled.
async fn range_values(
    metric: &JudgeMetric,
    query: &str,
    start: f64,
    end: f64,
    step: Duration,
) -> std::result::Result<Vec<f64>, String> {
    let series = metric
        .client
        .query_range(query, start, end, step)
        .await
        .map_err(|e| e.to_string())?;
    Ok(series
        .iter()
        .flat_map(|s| s.points.iter().map(|(_, v)| *v))
        .filter(|v| v.is_finite())
        .collect())
}

/// Judges one range-query pair over the last `span` (ending now).
async fn judge_metric(
    spec: &JudgeSpec,
    metric: &JudgeMetric,
    vars: &Vars,
    span: Duration,
    interval: Duration,
) -> std::result::Result<Vec<Judgement>, Box<Verdict>> {
    let gate = format!("judge:{}", metric.name);
    let failed = |message: String, query: Option<String>| {
        Box::new(Verdict {
            gate: gate.clone(),
            status: Status::Fail,
            value: None,
            measured: "error".to_string(),
            threshold: format!("δ < {} or p ≥ {}", spec.rules.effect, spec.rules.alpha),
            message: format!("{gate}: {message}"),
            query,
            dependency: true,
        })
    };
    let render = |text: &str| template::render(text, vars).map_err(|e| failed(e, None));
    let (query, baseline_query) = (render(&metric.query)?, render(&metric.baseline_query)?);
    let end = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let start = end - span.as_secs_f64();
    let step = JudgeSpec::step(metric, interval);
    let redacted = crate::secret::redact(&query);
    let canary = range_values(metric, &query, start, end, step)
        .await
        .map_err(|e| failed(e, Some(redacted.clone())))?;
    let baseline = range_values(metric, &baseline_query, start, end, step)
        .await
        .map_err(|e| failed(format!("baseline: {e}"), Some(redacted.clone())))?;
    let mut judgements = vec![
        location(&gate, &canary, &baseline, &spec.rules, metric.tolerance, ""),
        spread(
            &format!("{gate}-spread"),
            &canary,
            &baseline,
            &spec.rules,
            metric.tolerance,
            "",
        ),
    ];
    for j in &mut judgements {
        j.query = Some(redacted.clone());
        j.baseline_query = Some(crate::secret::redact(&baseline_query));
    }
    Ok(judgements)
}

/// Judges one error-count source now: its four queries, each one value (a count, rounded).
async fn judge_errors(
    spec: &JudgeSpec,
    source: &JudgeErrors,
    vars: &Vars,
) -> std::result::Result<Judgement, Box<Verdict>> {
    let gate = format!("judge:{}", source.name);
    let failed = |message: String, query: Option<String>| {
        Box::new(Verdict {
            gate: gate.clone(),
            status: Status::Fail,
            value: None,
            measured: "error".to_string(),
            threshold: format!("p ≥ {}", spec.rules.alpha),
            message: format!("{gate}: {message}"),
            query,
            dependency: true,
        })
    };
    let mut counts = [0u64; 4];
    let mut rendered: Vec<String> = Vec::new();
    for ((key, text), count) in ERROR_KEYS.iter().zip(&source.queries).zip(&mut counts) {
        let query = template::render(text, vars).map_err(|e| failed(e, None))?;
        let redacted = crate::secret::redact(&query);
        let value = match source.client.read(&query).await {
            Ok(Reading::Value(v)) if v.is_finite() && v >= 0.0 => v,
            Ok(Reading::Value(v)) => {
                return Err(failed(
                    format!("`{key}` is {}, not a count", number_text(v)),
                    Some(redacted),
                ));
            }
            // No series: nothing counted (e.g. no 5xx at all).
            Ok(Reading::NoData(_)) => 0.0,
            Ok(Reading::Several(series)) => {
                return Err(failed(
                    format!(
                        "`{key}` returned {} series; aggregate it (`sum(...)`) to one count",
                        series.len()
                    ),
                    Some(redacted),
                ));
            }
            Err(e) => return Err(failed(format!("`{key}`: {e}"), Some(redacted))),
        };
        *count = value.round() as u64;
        rendered.push(redacted);
    }
    let [canary_errors, canary_total, baseline_errors, baseline_total] = counts;
    if canary_errors > canary_total || baseline_errors > baseline_total {
        return Err(failed(
            format!(
                "more errors than requests ({canary_errors} of {canary_total}, baseline {baseline_errors} of {baseline_total}): do `errors` and `total` count the same requests?"
            ),
            rendered.first().cloned(),
        ));
    }
    let mut judgement = errors(
        &gate,
        (canary_errors, canary_total),
        (baseline_errors, baseline_total),
        &spec.rules,
        source.tolerance,
        "requests",
    );
    judgement.query = Some(format!("{} / {}", rendered[0], rendered[1]));
    judgement.baseline_query = Some(format!("{} / {}", rendered[2], rendered[3]));
    Ok(judgement)
}

/// Judges a stage at the end of its window: the probes' windows (the canary's HTTP endpoints,
/// `is_http`, against `baseline` when probed) and
/// each range-query pair over the same span (`span`: the window, or the stage so far when
/// shorter). `interval` is the stage's probe interval (the default step).
pub(crate) async fn judge(
    spec: &JudgeSpec,
    canary: &Window,
    is_http: &dyn Fn(usize) -> bool,
    baseline: Option<&Window>,
    vars: &Vars,
    span: Duration,
    interval: Duration,
) -> Judged {
    let mut judged = Judged::default();
    if spec.probes
        && let Some(baseline) = baseline
    {
        for judgement in judge_probes(spec, canary, is_http, baseline) {
            judged.push(judgement, spec.inconclusive);
        }
    }
    for metric in &spec.metrics {
        match judge_metric(spec, metric, vars, span, interval).await {
            Ok(judgements) => {
                for judgement in judgements {
                    judged.push(judgement, spec.inconclusive);
                }
            }
            Err(verdict) => judged.verdicts.push(*verdict),
        }
    }
    for source in &spec.errors {
        match judge_errors(spec, source, vars).await {
            Ok(judgement) => judged.push(judgement, spec.inconclusive),
            Err(verdict) => judged.verdicts.push(*verdict),
        }
    }
    judged
}

/// Runs each range-query pair's queries once as instant queries before traffic moves: a query
/// the backend refuses is a usage error and a backend that is down a dependency error, with
/// nothing changed (values are not judged).
pub(crate) async fn preflight(spec: &JudgeSpec, vars: &Vars) -> Result<()> {
    for metric in &spec.metrics {
        let what = format!("judge:{}", metric.name);
        for text in [&metric.query, &metric.baseline_query] {
            let query =
                template::render(text, vars).map_err(|e| Error::usage(format!("{what}: {e}")))?;
            metric.client.query(&query, None).await.map_err(|e| {
                Error::from(e).context(format!(
                    "{what}: the query `{}` failed before the rollout started (nothing was changed)",
                    one_line(&query)
                ))
            })?;
        }
    }
    for source in &spec.errors {
        let what = format!("judge:{}", source.name);
        for text in &source.queries {
            let query =
                template::render(text, vars).map_err(|e| Error::usage(format!("{what}: {e}")))?;
            source.client.query(&query, None).await.map_err(|e| {
                Error::from(e).context(format!(
                    "{what}: the query `{}` failed before the rollout started (nothing was changed)",
                    one_line(&query)
                ))
            })?;
        }
    }
    Ok(())
}

/// `--dry-run`: each range-query pair judged once over the last window of the first stage it
/// applies to (`vars` for that stage), as if that stage ended now. Before a rollout the canary
/// usually has no data yet: inconclusive says the queries work; an error says they do not.
pub(crate) async fn dry_run(
    spec: &JudgeSpec,
    metric: &JudgeMetric,
    vars: &Vars,
    span: Duration,
    interval: Duration,
) -> Judged {
    let mut judged = Judged::default();
    match judge_metric(spec, metric, vars, span, interval).await {
        Ok(judgements) => {
            for judgement in judgements {
                judged.push(judgement, spec.inconclusive);
            }
        }
        Err(verdict) => judged.verdicts.push(*verdict),
    }
    judged
}

/// `--dry-run`: an error-count source judged once, now.
pub(crate) async fn dry_run_errors(spec: &JudgeSpec, source: &JudgeErrors, vars: &Vars) -> Judged {
    let mut judged = Judged::default();
    match judge_errors(spec, source, vars).await {
        Ok(judgement) => judged.push(judgement, spec.inconclusive),
        Err(verdict) => judged.verdicts.push(*verdict),
    }
    judged
}

/// A verdict as the log and messages write it.
pub(crate) fn word(verdict: JudgeVerdict) -> &'static str {
    match verdict {
        JudgeVerdict::Pass => "pass",
        JudgeVerdict::Fail => "FAIL",
        JudgeVerdict::Inconclusive => "inconclusive",
    }
}

/// One judgement as a log line.
pub(crate) fn log_line(j: &Judgement) -> String {
    let queries = match (&j.query, &j.baseline_query) {
        (Some(q), Some(b)) => format!(" — `{}` vs `{}`", one_line(q), one_line(b)),
        _ => String::new(),
    };
    one_line(&format!(
        "{} {} {}: {}{queries}",
        j.gate,
        j.test,
        word(j.verdict),
        j.detail
    ))
}

/// How many samples a side a stage can collect for the judge, for the plan's check: the probes
/// (`per_tick` targets every `interval`) or a range query's points every `step`, over `span`.
pub(crate) fn possible_samples(span: Duration, every: Duration, per_tick: u64) -> u64 {
    ((span.as_nanos() / every.as_nanos().max(1)) as u64 + 1).saturating_mul(per_tick)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny deterministic PRNG (SplitMix64) so the samples are the same on every run.
    struct Rng(u64);

    impl Rng {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        /// Uniform in (0, 1).
        fn uniform(&mut self) -> f64 {
            ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }

        /// Standard normal (Box-Muller).
        fn normal(&mut self) -> f64 {
            let (u, v) = (self.uniform(), self.uniform());
            (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
        }

        /// `n` latencies in ms: log-normal around `median` with log-spread `sigma`.
        fn latencies(&mut self, n: usize, median: f64, sigma: f64) -> Vec<f64> {
            (0..n)
                .map(|_| median * (sigma * self.normal()).exp())
                .collect()
        }
    }

    fn rules() -> Rules {
        Rules::default()
    }

    #[test]
    fn a_clearly_slower_canary_fails_naming_the_numbers() {
        let mut rng = Rng(1);
        let baseline = rng.latencies(60, 40.0, 0.2);
        let canary = rng.latencies(60, 55.0, 0.2);
        let j = location("judge:latency", &canary, &baseline, &rules(), 0.0, "ms");
        assert_eq!(j.verdict, JudgeVerdict::Fail, "{}", j.detail);
        assert!(j.effect.expect("effect") > 0.33);
        assert!(j.p_value.expect("p") < 1e-6);
        assert!(
            j.detail.starts_with("canary worse: median "),
            "{}",
            j.detail
        );
        assert!(j.detail.contains("Cliff's δ"), "{}", j.detail);
        assert!(
            j.detail.contains("60 canary and 60 baseline samples"),
            "{}",
            j.detail
        );
        let v = verdict(&j, InconclusivePolicy::Fail);
        assert_eq!(v.status, Status::Fail);
        assert!(v.measured.contains("ms vs "), "{}", v.measured);
        // A tolerance larger than the slowdown lets it pass.
        let tolerant = location("judge:latency", &canary, &baseline, &rules(), 30.0, "ms");
        assert_eq!(tolerant.verdict, JudgeVerdict::Pass, "{}", tolerant.detail);
        assert!(
            tolerant
                .detail
                .starts_with("canary worse but within tolerance: "),
            "{}",
            tolerant.detail
        );
    }

    #[test]
    fn the_same_distribution_passes_on_every_seed() {
        for seed in 0..50 {
            let mut rng = Rng(seed);
            let baseline = rng.latencies(40, 40.0, 0.3);
            let canary = rng.latencies(40, 40.0, 0.3);
            for j in [
                location("judge:latency", &canary, &baseline, &rules(), 0.0, "ms"),
                spread(
                    "judge:latency-spread",
                    &canary,
                    &baseline,
                    &rules(),
                    0.0,
                    "ms",
                ),
            ] {
                assert_eq!(j.verdict, JudgeVerdict::Pass, "seed {seed}: {}", j.detail);
            }
        }
    }

    #[test]
    fn too_few_samples_is_inconclusive_never_a_pass() {
        let mut rng = Rng(7);
        let baseline = rng.latencies(40, 40.0, 0.2);
        let canary = rng.latencies(5, 40.0, 0.2);
        let j = location("judge:latency", &canary, &baseline, &rules(), 0.0, "ms");
        assert_eq!(j.verdict, JudgeVerdict::Inconclusive);
        assert!(
            j.detail
                .starts_with("too few samples: 5 canary and 40 baseline samples, at least 20"),
            "{}",
            j.detail
        );
        assert_eq!(
            verdict(&j, InconclusivePolicy::Fail).status,
            Status::Fail,
            "inconclusive: fail"
        );
        assert_eq!(
            verdict(&j, InconclusivePolicy::Pause).status,
            Status::NoData,
            "inconclusive: pause waits"
        );
        let e = errors("judge:errors", (0, 5), (0, 40), &rules(), 0.0, "probes");
        assert_eq!(e.verdict, JudgeVerdict::Inconclusive);
    }

    #[test]
    fn a_wider_spread_at_the_same_median_is_flagged() {
        let mut rng = Rng(11);
        let baseline = rng.latencies(60, 40.0, 0.1);
        let canary = rng.latencies(60, 40.0, 0.6);
        let shifted = location("judge:latency", &canary, &baseline, &rules(), 0.0, "ms");
        assert_ne!(
            shifted.verdict,
            JudgeVerdict::Fail,
            "the medians match: {}",
            shifted.detail
        );
        let j = spread(
            "judge:latency-spread",
            &canary,
            &baseline,
            &rules(),
            0.0,
            "ms",
        );
        assert_eq!(j.verdict, JudgeVerdict::Fail, "{}", j.detail);
        assert!(
            j.detail
                .starts_with("canary spread wider: spread (median absolute deviation)"),
            "{}",
            j.detail
        );
        // Narrower is never a failure.
        let narrower = spread(
            "judge:latency-spread",
            &baseline,
            &canary,
            &rules(),
            0.0,
            "ms",
        );
        assert_eq!(narrower.verdict, JudgeVerdict::Pass, "{}", narrower.detail);
    }

    #[test]
    fn sparse_errors_are_not_a_pass() {
        // 2 errors in 10 against 0 in 1000.
        let loose = Rules {
            min_samples: 10,
            ..rules()
        };
        let j = errors("judge:errors", (2, 10), (0, 1000), &loose, 0.0, "probes");
        assert_eq!(j.verdict, JudgeVerdict::Fail, "{}", j.detail);
        assert!(
            j.detail.contains(
                "2 errors in 10 (20%) vs 0 in 1000 (0%) baseline, Fisher's exact p 8.8e-5"
            ),
            "{}",
            j.detail
        );
        // With the default guard of 20 samples a side: inconclusive, still not a pass.
        let j = errors("judge:errors", (2, 10), (0, 1000), &rules(), 0.0, "probes");
        assert_eq!(j.verdict, JudgeVerdict::Inconclusive, "{}", j.detail);
        // As many errors on both sides: a pass.
        let j = errors(
            "judge:errors",
            (2, 100),
            (20, 1000),
            &rules(),
            0.0,
            "probes",
        );
        assert_eq!(j.verdict, JudgeVerdict::Pass, "{}", j.detail);
        assert_eq!(
            errors("judge:errors", (0, 50), (0, 50), &rules(), 0.0, "probes").verdict,
            JudgeVerdict::Pass
        );
        // Many requests make a small rise significant; a tolerance in points keeps it a pass.
        let many = errors(
            "judge:e",
            (300, 10_000),
            (200, 10_000),
            &rules(),
            0.0,
            "requests",
        );
        assert_eq!(many.verdict, JudgeVerdict::Fail, "{}", many.detail);
        let tolerant = errors(
            "judge:e",
            (300, 10_000),
            (200, 10_000),
            &rules(),
            2.0,
            "requests",
        );
        assert_eq!(tolerant.verdict, JudgeVerdict::Pass, "{}", tolerant.detail);
        assert!(
            tolerant.detail.contains("2 points or more apart"),
            "{}",
            tolerant.detail
        );
    }

    #[test]
    fn a_large_effect_without_significance_is_inconclusive() {
        let few = Rules {
            min_samples: 3,
            ..rules()
        };
        let j = location(
            "judge:latency",
            &[12.0, 11.0, 10.5],
            &[10.0, 11.5, 9.0],
            &few,
            0.0,
            "ms",
        );
        assert_eq!(j.verdict, JudgeVerdict::Inconclusive, "{}", j.detail);
        assert!(j.detail.contains("but not significantly"), "{}", j.detail);
    }

    #[test]
    fn approval_turns_waiting_verdicts_into_passes() {
        let spec = JudgeSpec {
            rules: rules(),
            inconclusive: InconclusivePolicy::Pause,
            probes: true,
            tolerance_ms: 0.0,
            metrics: Vec::new(),
            errors: Vec::new(),
            stages: None,
        };
        let mut judged = Judged::default();
        judged.push(
            errors("judge:errors", (0, 3), (0, 3), &rules(), 0.0, "probes"),
            spec.inconclusive,
        );
        assert!(judged.waits_for_approval(&spec));
        judged.approve("ops");
        assert_eq!(judged.verdicts[0].status, Status::Pass);
        assert!(judged.verdicts[0].message.ends_with("approved by ops"));
    }
}
