//! Rolling-window statistics of probe samples: success rate, latency percentiles and
//! consecutive failures, kept incrementally so a check after every sample stays cheap.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

pub(crate) use crate::state::rollout::Summary;

/// One probe's result.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    /// Index of the probed target (endpoint or command probe).
    pub(crate) target: usize,
    pub(crate) at: Instant,
    pub(crate) ok: bool,
    /// The target reported `warn`/`Degraded` (counted as `ok` or not per the `degraded` policy).
    pub(crate) degraded: bool,
    /// Time to the full answer; `None` when there was no answer to time (connection refused) or
    /// the probe is a command.
    pub(crate) latency: Option<Duration>,
    /// Why it failed, short and stable enough to count: `HTTP 500`, `connection refused`.
    pub(crate) cause: Option<String>,
    /// Which target, when the failure causes must say it (several targets, command probes).
    pub(crate) source: Option<String>,
}

/// Latencies in microseconds as a multiset, for exact nearest-rank percentiles.
#[derive(Debug, Default, Clone)]
struct Latencies {
    counts: BTreeMap<u64, u64>,
    len: u64,
}

impl Latencies {
    fn insert(&mut self, micros: u64) {
        *self.counts.entry(micros).or_insert(0) += 1;
        self.len += 1;
    }

    fn remove(&mut self, micros: u64) {
        if let Some(count) = self.counts.get_mut(&micros) {
            *count -= 1;
            self.len -= 1;
            if *count == 0 {
                self.counts.remove(&micros);
            }
        }
    }

    /// Nearest-rank percentile: the smallest value with at least `p`% of the values at or below.
    fn percentile(&self, p: f64) -> Option<Duration> {
        if self.len == 0 {
            return None;
        }
        let rank = ((p / 100.0) * self.len as f64).ceil().max(1.0) as u64;
        if p >= 50.0 {
            // Walk from the top: the values above the rank are few.
            let above = self.len - rank;
            let mut seen = 0;
            for (&micros, &count) in self.counts.iter().rev() {
                seen += count;
                if seen > above {
                    return Some(Duration::from_micros(micros));
                }
            }
        } else {
            let mut seen = 0;
            for (&micros, &count) in &self.counts {
                seen += count;
                if seen >= rank {
                    return Some(Duration::from_micros(micros));
                }
            }
        }
        None
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    target: usize,
    at: Instant,
    ok: bool,
    degraded: bool,
    latency_us: Option<u64>,
}

/// The samples of one stage: a rolling window of `span` for the gates, and totals for the stage.
#[derive(Debug)]
pub(crate) struct Window {
    span: Duration,
    entries: VecDeque<Entry>,
    failures: u64,
    degraded: u64,
    latencies: Latencies,
    stage_total: u64,
    stage_failures: u64,
    stage_degraded: u64,
    stage_latencies: Latencies,
    /// Per target: failures in a row now, and the last cause.
    consecutive: HashMap<usize, (u32, String)>,
    /// Failure causes over the stage, with counts.
    causes: BTreeMap<String, u64>,
}

impl Window {
    pub(crate) fn new(span: Duration) -> Window {
        Window {
            span,
            entries: VecDeque::new(),
            failures: 0,
            degraded: 0,
            latencies: Latencies::default(),
            stage_total: 0,
            stage_failures: 0,
            stage_degraded: 0,
            stage_latencies: Latencies::default(),
            consecutive: HashMap::new(),
            causes: BTreeMap::new(),
        }
    }

    pub(crate) fn push(&mut self, sample: &Sample) {
        self.evict(sample.at);
        let latency_us = sample.latency.map(|l| l.as_micros() as u64);
        self.entries.push_back(Entry {
            target: sample.target,
            at: sample.at,
            ok: sample.ok,
            degraded: sample.degraded,
            latency_us,
        });
        self.stage_total += 1;
        if let Some(micros) = latency_us {
            self.latencies.insert(micros);
            self.stage_latencies.insert(micros);
        }
        if sample.degraded {
            self.degraded += 1;
            self.stage_degraded += 1;
        }
        let run = self
            .consecutive
            .entry(sample.target)
            .or_insert((0, String::new()));
        if sample.ok {
            run.0 = 0;
        } else {
            let cause = sample.cause.clone().unwrap_or_else(|| "failed".to_string());
            run.0 += 1;
            run.1.clone_from(&cause);
            self.failures += 1;
            self.stage_failures += 1;
            let key = match &sample.source {
                Some(source) => format!("{source}: {cause}"),
                None => cause,
            };
            *self.causes.entry(key).or_insert(0) += 1;
        }
    }

    /// Drops the samples older than the window's span, as of `now`.
    pub(crate) fn evict(&mut self, now: Instant) {
        while let Some(front) = self.entries.front() {
            if now.saturating_duration_since(front.at) <= self.span {
                break;
            }
            let old = *front;
            self.entries.pop_front();
            if !old.ok {
                self.failures -= 1;
            }
            if old.degraded {
                self.degraded -= 1;
            }
            if let Some(micros) = old.latency_us {
                self.latencies.remove(micros);
            }
        }
    }

    pub(crate) fn span(&self) -> Duration {
        self.span
    }

    /// Samples in the window.
    pub(crate) fn len(&self) -> u64 {
        self.entries.len() as u64
    }

    /// Timed samples in the window.
    pub(crate) fn timed(&self) -> u64 {
        self.latencies.len
    }

    pub(crate) fn failures(&self) -> u64 {
        self.failures
    }

    /// Percent of the window's samples that passed.
    pub(crate) fn success_rate(&self) -> Option<f64> {
        rate(self.len(), self.failures)
    }

    /// `(failures, samples)` in the window of the targets `keep` accepts (for the canary judge,
    /// which compares like with like: the canary's HTTP endpoints with the baseline's).
    pub(crate) fn counts_where(&self, keep: impl Fn(usize) -> bool) -> (u64, u64) {
        self.entries
            .iter()
            .filter(|e| keep(e.target))
            .fold((0, 0), |(failures, total), e| {
                (failures + u64::from(!e.ok), total + 1)
            })
    }

    /// The latencies of the window's timed samples, in milliseconds (for the canary judge).
    pub(crate) fn latencies_ms(&self) -> Vec<f64> {
        self.entries
            .iter()
            .filter_map(|e| e.latency_us.map(|us| us as f64 / 1000.0))
            .collect()
    }

    pub(crate) fn p95(&self) -> Option<Duration> {
        self.latencies.percentile(95.0)
    }

    /// The longest run of failures in a row that one target is on now: its length, the target
    /// and the last cause.
    pub(crate) fn consecutive_failures(&self) -> (u32, Option<(usize, &str)>) {
        self.consecutive
            .iter()
            .filter(|(_, (run, _))| *run > 0)
            .max_by_key(|(target, (run, _))| (*run, std::cmp::Reverse(**target)))
            .map_or((0, None), |(target, (run, cause))| {
                (*run, Some((*target, cause.as_str())))
            })
    }

    /// The stage's failure causes, most frequent first.
    pub(crate) fn causes(&self) -> Vec<(String, u64)> {
        let mut causes: Vec<(String, u64)> =
            self.causes.iter().map(|(c, n)| (c.clone(), *n)).collect();
        causes.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        causes
    }

    /// The causes as one phrase: `18 × HTTP 500, 2 × timed out`.
    pub(crate) fn causes_text(&self, limit: usize) -> String {
        let causes = self.causes();
        let mut parts: Vec<String> = causes
            .iter()
            .take(limit)
            .map(|(cause, n)| format!("{n} × {cause}"))
            .collect();
        if causes.len() > limit {
            parts.push(format!("{} other causes", causes.len() - limit));
        }
        parts.join(", ")
    }

    /// The window's counts.
    pub(crate) fn window_summary(&self) -> Summary {
        summary(self.len(), self.failures, self.degraded, &self.latencies)
    }

    /// The whole stage's counts.
    pub(crate) fn stage_summary(&self) -> Summary {
        summary(
            self.stage_total,
            self.stage_failures,
            self.stage_degraded,
            &self.stage_latencies,
        )
    }
}

fn rate(samples: u64, failures: u64) -> Option<f64> {
    (samples > 0).then(|| (samples - failures) as f64 * 100.0 / samples as f64)
}

/// Milliseconds with microsecond precision.
fn millis(duration: Option<Duration>) -> Option<f64> {
    duration.map(|d| d.as_micros() as f64 / 1000.0)
}

fn summary(samples: u64, failures: u64, degraded: u64, latencies: &Latencies) -> Summary {
    Summary {
        samples,
        failures,
        success_rate: rate(samples, failures).map(|r| (r * 100.0).round() / 100.0),
        p50_ms: millis(latencies.percentile(50.0)),
        p95_ms: millis(latencies.percentile(95.0)),
        timed: latencies.len,
        degraded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: Instant, ok: bool, ms: u64) -> Sample {
        Sample {
            target: 0,
            at,
            ok,
            degraded: false,
            latency: Some(Duration::from_millis(ms)),
            cause: (!ok).then(|| "HTTP 500".to_string()),
            source: None,
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut window = Window::new(Duration::from_secs(60));
        let now = Instant::now();
        for ms in 1..=100 {
            window.push(&sample(now, true, ms));
        }
        assert_eq!(window.p95(), Some(Duration::from_millis(95)));
        assert_eq!(window.window_summary().p50_ms, Some(50.0));
        let mut small = Window::new(Duration::from_secs(60));
        for ms in [10, 20, 300] {
            small.push(&sample(now, true, ms));
        }
        // ceil(0.95 × 3) = 3: the slowest of three.
        assert_eq!(small.p95(), Some(Duration::from_millis(300)));
    }

    #[test]
    fn old_samples_leave_the_window_but_stay_in_the_stage() {
        let mut window = Window::new(Duration::from_secs(10));
        let start = Instant::now();
        window.push(&sample(start, false, 900));
        window.push(&sample(start + Duration::from_secs(5), true, 10));
        assert_eq!(window.success_rate(), Some(50.0));
        window.push(&sample(start + Duration::from_secs(12), true, 10));
        assert_eq!(window.len(), 2);
        assert_eq!(window.success_rate(), Some(100.0));
        assert_eq!(window.p95(), Some(Duration::from_millis(10)));
        let stage = window.stage_summary();
        assert_eq!((stage.samples, stage.failures), (3, 1));
        assert_eq!(stage.p95_ms, Some(900.0));
        assert_eq!(window.causes_text(3), "1 × HTTP 500");
    }

    #[test]
    fn consecutive_failures_are_per_target() {
        let mut window = Window::new(Duration::from_secs(60));
        let now = Instant::now();
        for i in 0..6 {
            let mut s = sample(now, i % 2 == 0, 1);
            s.target = 0;
            if i % 2 == 1 {
                s.target = 1;
            }
            window.push(&s);
        }
        // Target 0 always passes, target 1 always fails: three in a row for target 1.
        assert_eq!(window.consecutive_failures(), (3, Some((1, "HTTP 500"))));
        assert_eq!(window.counts_where(|t| t == 1), (3, 3));
        assert_eq!(window.counts_where(|t| t == 0), (0, 3));
        let mut ok = sample(now, true, 1);
        ok.target = 1;
        window.push(&ok);
        assert_eq!(window.consecutive_failures().0, 0);
    }
}
