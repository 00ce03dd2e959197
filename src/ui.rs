//! What every command shows people, in one place: the status marks of summaries and messages,
//! the formats of sizes, durations, percentages and latencies, and the progress line of long
//! work (backup, verification, restore, rollout) on stderr.
//!
//! Progress is plain lines (one every few seconds) unless stderr is a terminal outside GitHub
//! Actions whose `TERM` is not `dumb`: then one line is redrawn in place, with a bar and percent
//! when the total is known, coloured unless `NO_COLOR` is set. A live line is ended with a
//! newline before any other line reaches stderr or stdout, so logs are never garbled.

use std::time::Duration;

/// The status marks, one per meaning. Named constants so format strings read
/// `"### {PASS} Checks passed"`.
pub(crate) mod mark {
    pub(crate) const PASS: &str = "✅";
    pub(crate) const FAIL: &str = "❌";
    pub(crate) const WARN: &str = "⚠️";
    pub(crate) const TIMEOUT: &str = "⏱️";
    pub(crate) const PENDING: &str = "⏳";
    pub(crate) const SKIPPED: &str = "⏭️";
    pub(crate) const REFUSED: &str = "⛔";
    /// A failure that needs a person now (a rollback that failed too).
    pub(crate) const ALARM: &str = "🚨";
    pub(crate) const ROLLED_BACK: &str = "↩️";
    pub(crate) const STOPPED: &str = "⏹️";
    /// Does not apply, or not required.
    pub(crate) const NOT_APPLICABLE: &str = "➖";

    /// [`PASS`] when `passed`, else [`FAIL`].
    pub(crate) const fn of(passed: bool) -> &'static str {
        if passed { PASS } else { FAIL }
    }
}

/// Shown where a measured value is missing (no samples yet).
pub(crate) const NONE: &str = "—";

/// A size in bytes as people read it: `512 B`, `12.3 KiB`, `1.5 GiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A duration as people write it: `250ms`, `42s`, `5m`, `1h30m`, `7d2h`.
pub(crate) fn format_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = duration.as_secs();
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if d > 0 {
        out.push_str(&format!("{d}d"));
    }
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// A duration in whole seconds, as progress lines count it down (`0s`, `1m20s`).
pub(crate) fn whole_seconds(duration: Duration) -> String {
    match duration.as_secs() {
        0 => "0s".to_string(),
        secs => format_duration(Duration::from_secs(secs)),
    }
}

/// A percentage (0 to 100) with at most two decimals, trailing zeros dropped: `99.5%`, `100%`.
pub(crate) fn percent(value: f64) -> String {
    let text = format!("{value:.2}");
    format!("{}%", text.trim_end_matches('0').trim_end_matches('.'))
}

/// [`percent`], or [`NONE`] when there is no value yet.
pub(crate) fn percent_or_none(value: Option<f64>) -> String {
    value.map_or_else(|| NONE.to_string(), percent)
}

/// A latency: `4.5ms` under 10 ms, `45ms` under a second, `1.23s` above.
pub(crate) fn latency(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        let ms = duration.as_secs_f64() * 1000.0;
        if ms < 10.0 {
            format!("{ms:.1}ms")
        } else {
            format!("{ms:.0}ms")
        }
    } else {
        format!("{:.2}s", duration.as_secs_f64())
    }
}

/// [`latency`] of a value in milliseconds, or [`NONE`] when there is no value yet.
pub(crate) fn latency_or_none(ms: Option<f64>) -> String {
    ms.filter(|ms| ms.is_finite() && *ms >= 0.0).map_or_else(
        || NONE.to_string(),
        |ms| latency(Duration::from_secs_f64(ms / 1000.0)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn durations_print_as_people_write_them() {
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(whole_seconds(Duration::from_millis(250)), "0s");
        assert_eq!(whole_seconds(Duration::from_millis(80_900)), "1m20s");
    }

    #[test]
    fn percentages_and_latencies_have_one_format() {
        assert_eq!(percent(99.5), "99.5%");
        assert_eq!(percent(100.0), "100%");
        assert_eq!(percent(12.345), "12.35%");
        assert_eq!(percent_or_none(None), "—");
        assert_eq!(latency(Duration::from_micros(4_500)), "4.5ms");
        assert_eq!(latency(Duration::from_millis(45)), "45ms");
        assert_eq!(latency(Duration::from_millis(1_234)), "1.23s");
        assert_eq!(latency_or_none(Some(45.0)), "45ms");
        assert_eq!(latency_or_none(None), "—");
    }

    #[test]
    fn marks_are_the_ones_summaries_always_showed() {
        assert_eq!(mark::of(true), "✅");
        assert_eq!(mark::of(false), "❌");
        assert_eq!(format!("{} {}", mark::WARN, mark::PENDING), "⚠️ ⏳");
    }
}
