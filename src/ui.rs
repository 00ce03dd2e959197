//! What every command shows people, in one place: the status marks of summaries and messages,
//! the formats of sizes, durations, percentages and latencies, and the progress line of long
//! work (backup, verification, restore, rollout) on stderr.
//!
//! Progress is plain lines (one every few seconds) unless stderr is a terminal outside GitHub
//! Actions whose `TERM` is not `dumb`: then one line is redrawn in place, with a bar and percent
//! when the total is known, coloured unless `NO_COLOR` is set. A live line is ended with a
//! newline before any other line reaches stderr or stdout, so logs are never garbled.

use std::io::{IsTerminal, Write};
use std::sync::{LazyLock, Mutex};
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

/// [`latency`] of a value in milliseconds, signed (a difference can be negative: `-4.5ms`);
/// [`NONE`] when it is not a number.
pub(crate) fn latency_ms(ms: f64) -> String {
    if !ms.is_finite() {
        return NONE.to_string();
    }
    let shown = latency(Duration::from_secs_f64(ms.abs() / 1000.0));
    // No sign on a value that shows as zero (`0.0ms`).
    if ms < 0.0 && shown.bytes().any(|b| (b'1'..=b'9').contains(&b)) {
        format!("-{shown}")
    } else {
        shown
    }
}

/// [`latency`] of a value in milliseconds, or [`NONE`] when there is no value yet.
pub(crate) fn latency_or_none(ms: Option<f64>) -> String {
    ms.filter(|ms| ms.is_finite() && *ms >= 0.0)
        .map_or_else(|| NONE.to_string(), latency_ms)
}

/// A time something took, as read at a glance: `2.5s` under ten seconds, else `2m5s`.
pub(crate) fn took(duration: Duration) -> String {
    if duration < Duration::from_secs(10) {
        format!("{:.1}s", duration.as_secs_f64())
    } else {
        format_duration(Duration::from_secs(duration.as_secs()))
    }
}

/// [`took`] of a number of seconds (as records store them); [`NONE`] when it is not one.
pub(crate) fn took_seconds(seconds: f64) -> String {
    if seconds.is_finite() && seconds >= 0.0 {
        took(Duration::from_secs_f64(seconds))
    } else {
        NONE.to_string()
    }
}

/// How progress reaches stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// One line per update, through the log (Actions logs, files, pipes, `TERM=dumb`).
    Plain,
    /// One line redrawn in place; `colour` unless `NO_COLOR` is set.
    Live { colour: bool },
}

impl Style {
    /// Live when stderr is a `terminal` outside GitHub Actions whose `TERM` is set and not
    /// `dumb`; coloured unless `NO_COLOR` is set to anything but the empty string.
    pub(crate) fn detect(terminal: bool, env: impl Fn(&str) -> Option<String>) -> Style {
        let actions = env("GITHUB_ACTIONS").is_some_and(|v| v == "true");
        let term = env("TERM").unwrap_or_default();
        if !terminal || actions || term.is_empty() || term == "dumb" {
            return Style::Plain;
        }
        Style::Live {
            colour: env("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }
}

/// Cells of the bar drawn before a live line's percent.
const BAR: usize = 20;

/// Progress and whole lines written to `out`: in [`Style::Live`], a progress line is redrawn
/// in place and ended with a newline before the next whole line.
pub(crate) struct Renderer<W> {
    out: W,
    style: Style,
    /// A live line is on screen, not yet ended.
    drawn: bool,
}

impl<W: Write> Renderer<W> {
    pub(crate) fn new(out: W, style: Style) -> Renderer<W> {
        Renderer {
            out,
            style,
            drawn: false,
        }
    }

    /// Draws `text` in place of the previous progress line, with a bar and percent when
    /// `fraction` (0 to 1) is known. Returns false in [`Style::Plain`], drawing nothing: the
    /// caller logs `text` as a line.
    pub(crate) fn update(&mut self, text: &str, fraction: Option<f64>) -> bool {
        let Style::Live { colour } = self.style else {
            return false;
        };
        let _ = self
            .out
            .write_all(live_line(text, fraction, colour).as_bytes());
        let _ = self.out.flush();
        self.drawn = true;
        true
    }

    /// Writes whole lines, ending a live progress line first.
    pub(crate) fn write_lines(&mut self, text: &[u8]) {
        self.end();
        let _ = self.out.write_all(text);
        let _ = self.out.flush();
    }

    /// Ends a live progress line with a newline, so what follows starts on a line of its own.
    pub(crate) fn end(&mut self) {
        if std::mem::take(&mut self.drawn) {
            let _ = self.out.write_all(b"\n");
            let _ = self.out.flush();
        }
    }
}

/// One redraw: back to the line's start, erase it, then the line with wrapping off (a line
/// wider than the terminal is cut at its edge instead of spilling onto a line the next redraw
/// would not erase).
fn live_line(text: &str, fraction: Option<f64>, colour: bool) -> String {
    let mut out = String::from("\r\x1b[2K\x1b[?7l");
    if let Some(fraction) = fraction {
        let fraction = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let filled = (fraction * BAR as f64).round() as usize;
        let bar = format!("{}{}", "█".repeat(filled), "░".repeat(BAR - filled));
        let percent = format!("{:>3}%", (fraction * 100.0).floor() as u32);
        if colour {
            out.push_str(&format!("\x1b[36m{bar}\x1b[0m \x1b[1m{percent}\x1b[0m "));
        } else {
            out.push_str(&format!("{bar} {percent} "));
        }
    }
    out.push_str(text);
    out.push_str("\x1b[?7h");
    out
}

static STDERR: LazyLock<Mutex<Renderer<std::io::Stderr>>> = LazyLock::new(|| {
    let style = Style::detect(std::io::stderr().is_terminal(), |key| {
        std::env::var(key).ok()
    });
    Mutex::new(Renderer::new(std::io::stderr(), style))
});

/// Progress updates are drawn this often on a live terminal.
const LIVE_EVERY: Duration = Duration::from_millis(250);

/// Whether progress is redrawn in place on stderr.
pub(crate) fn live() -> bool {
    STDERR
        .lock()
        .is_ok_and(|r| matches!(r.style, Style::Live { .. }))
}

/// How often to show progress: `plain` between plain lines, more often on a live terminal.
pub(crate) fn progress_every(plain: Duration) -> Duration {
    if live() { plain.min(LIVE_EVERY) } else { plain }
}

/// Shows the progress of long work on stderr (redacted): redrawn in place on a live terminal,
/// else logged as a line. Nothing when the log hides `info`.
pub(crate) fn progress(text: &str, fraction: Option<f64>) {
    if !tracing::enabled!(tracing::Level::INFO) {
        return;
    }
    let drawn = STDERR
        .lock()
        .is_ok_and(|mut renderer| renderer.update(&crate::secret::redact(text), fraction));
    if !drawn {
        tracing::info!("{text}");
    }
}

/// Writes whole lines to stderr in one call, ending a live progress line first. Every line
/// that reaches stderr goes through here.
pub(crate) fn stderr_lines(text: &[u8]) {
    match STDERR.lock() {
        Ok(mut renderer) => renderer.write_lines(text),
        Err(_) => {
            let _ = std::io::stderr().lock().write_all(text);
        }
    }
}

/// Ends a live progress line: before writing to stdout, and at exit.
pub(crate) fn end_progress() {
    if let Ok(mut renderer) = STDERR.lock() {
        renderer.end();
    }
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
        assert_eq!(latency_ms(-4.5), "-4.5ms");
        assert_eq!(latency_ms(-0.01), "0.0ms");
        assert_eq!(latency_ms(1500.0), "1.50s");
        assert_eq!(latency_ms(f64::NAN), "—");
    }

    #[test]
    fn times_taken_read_at_a_glance() {
        assert_eq!(took(Duration::from_millis(2_540)), "2.5s");
        assert_eq!(took(Duration::from_millis(125_900)), "2m5s");
        assert_eq!(took_seconds(42.0), "42s");
        assert_eq!(took_seconds(f64::NAN), "—");
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |key| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    #[test]
    fn live_only_on_a_capable_terminal_outside_actions() {
        let term = [("TERM", "xterm-256color")];
        assert_eq!(
            Style::detect(true, env(&term)),
            Style::Live { colour: true }
        );
        assert_eq!(Style::detect(false, env(&term)), Style::Plain);
        assert_eq!(
            Style::detect(true, env(&[("TERM", "xterm"), ("GITHUB_ACTIONS", "true")])),
            Style::Plain
        );
        assert_eq!(Style::detect(true, env(&[("TERM", "dumb")])), Style::Plain);
        assert_eq!(Style::detect(true, env(&[])), Style::Plain);
        assert_eq!(
            Style::detect(true, env(&[("TERM", "xterm"), ("NO_COLOR", "1")])),
            Style::Live { colour: false }
        );
        assert_eq!(
            Style::detect(true, env(&[("TERM", "xterm"), ("NO_COLOR", "")])),
            Style::Live { colour: true }
        );
    }

    fn rendered(style: Style, steps: impl FnOnce(&mut Renderer<&mut Vec<u8>>)) -> String {
        let mut out = Vec::new();
        steps(&mut Renderer::new(&mut out, style));
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn a_live_line_redraws_in_place_and_ends_before_other_lines() {
        let out = rendered(Style::Live { colour: true }, |r| {
            assert!(r.update("1.0 MiB dumped", Some(0.25)));
            assert!(r.update("2.0 MiB dumped", Some(0.5)));
            r.write_lines(b"warning: slow\n");
            r.end();
        });
        assert_eq!(out.matches("\r\x1b[2K").count(), 2, "{out:?}");
        assert!(
            out.contains("\x1b[36m█████░░░░░░░░░░░░░░░\x1b[0m \x1b[1m 25%\x1b[0m 1.0 MiB dumped")
        );
        assert!(out.contains(" 50%"), "{out:?}");
        // The last redraw is ended before the warning, and nothing is left open after it.
        assert!(
            out.ends_with("2.0 MiB dumped\x1b[?7h\nwarning: slow\n"),
            "{out:?}"
        );
    }

    #[test]
    fn no_colour_without_it_and_no_bar_without_a_total() {
        let out = rendered(Style::Live { colour: false }, |r| {
            r.update("reading", Some(1.5));
            r.update("counting", None);
            r.end();
        });
        assert!(!out.contains("\x1b[3"), "{out:?}");
        assert!(!out.contains("\x1b[1m"), "{out:?}");
        assert!(out.contains("████████████████████ 100% reading"), "{out:?}");
        assert!(out.contains("\x1b[2K\x1b[?7lcounting\x1b[?7h\n"), "{out:?}");
    }

    #[test]
    fn plain_mode_leaves_progress_to_the_log() {
        let out = rendered(Style::Plain, |r| {
            assert!(!r.update("1.0 MiB dumped", Some(0.25)));
            r.write_lines(b"1.0 MiB dumped\n");
            r.end();
        });
        assert_eq!(out, "1.0 MiB dumped\n");
    }

    #[test]
    fn marks_are_the_ones_summaries_always_showed() {
        assert_eq!(mark::of(true), "✅");
        assert_eq!(mark::of(false), "❌");
        assert_eq!(format!("{} {}", mark::WARN, mark::PENDING), "⚠️ ⏳");
    }
}
