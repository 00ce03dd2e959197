//! What every command shows people, in one place: the status marks of summaries and messages,
//! the formats of sizes, durations, percentages and latencies, and the progress line of long
//! work (backup, verification, restore, rollout) on stderr.
//!
//! Progress is plain lines (one every few seconds) unless stderr is a terminal outside GitHub
//! Actions whose `TERM` is not `dumb`: then one line is redrawn in place, with a bar and percent
//! when the total is known, coloured unless `NO_COLOR` is set. A live line is ended with a
//! newline before any other line reaches stderr or stdout, so logs are never garbled.

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
