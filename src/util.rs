//! Small helpers shared by every module: randomness, atomic files, durations, time.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::ui::format_duration;

/// `bytes` random bytes as lowercase hex, from the operating system's generator (`getrandom`).
/// There is no weaker fallback: these bytes end up in heredoc delimiters and ids that must not
/// be guessed.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if let Err(e) = getrandom::fill(&mut buf) {
        panic!("the operating system's random number generator failed: {e}");
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, flushed, then
/// renamed over the target, so a reader never sees half a file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", random_hex(6)));
    let result = (|| {
        // A new file, never through a link someone placed at the temporary name; the rename
        // then replaces whatever is at `path` (a link included) without following it.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The longest duration any flag, input or `shipgate.yml` key may give: 30 days. Longer than
/// any GitHub Actions job may run (6 h hosted, 5 days self-hosted) and than any soak worth
/// waiting for; short enough that no deadline computed from it can overflow a clock.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(30 * 86_400);

/// Parses a duration such as `90s`, `5m`, `1h30m`, `7d` or `250ms`; a bare number is seconds.
/// At most [`MAX_DURATION`]: a longer one is an error naming the value and the limit.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration; use a value such as `30s`, `5m` or `7d`".into());
    }
    let too_long = || {
        format!(
            "`{text}` is longer than the maximum `{}`; use at most `{}`",
            format_duration(MAX_DURATION),
            format_duration(MAX_DURATION)
        )
    };
    if let Ok(secs) = text.parse::<u64>() {
        return bounded(Duration::from_secs(secs)).ok_or_else(too_long);
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        // Digits only, yet not a u64: far too many seconds.
        return Err(too_long());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "`{text}` is not a duration; use a value such as `30s`, `5m` or `7d`"
            ));
        }
        let number: Option<u64> = rest[..digits].parse().ok();
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let (millis_per_unit, secs_per_unit) = match unit {
            "ms" => (true, 1),
            "s" => (false, 1),
            "m" => (false, 60),
            "h" => (false, 3600),
            "d" => (false, 86_400),
            _ => {
                return Err(format!(
                    "`{text}` has the unknown unit `{unit}`; use ms, s, m, h or d"
                ));
            }
        };
        // Every step is checked: an absurd value is an error, never an overflow.
        let part = number
            .and_then(|n| n.checked_mul(secs_per_unit))
            .map(|n| {
                if millis_per_unit {
                    Duration::from_millis(n)
                } else {
                    Duration::from_secs(n)
                }
            })
            .and_then(bounded)
            .ok_or_else(too_long)?;
        total = total
            .checked_add(part)
            .and_then(bounded)
            .ok_or_else(too_long)?;
    }
    Ok(total)
}

/// `duration` when it is at most [`MAX_DURATION`].
fn bounded(duration: Duration) -> Option<Duration> {
    (duration <= MAX_DURATION).then_some(duration)
}

/// `now + after`, or a moment so far ahead that it never comes when that would overflow the
/// clock: deadlines never panic.
pub(crate) fn instant_after(after: Duration) -> std::time::Instant {
    let now = std::time::Instant::now();
    now.checked_add(after)
        .or_else(|| now.checked_add(MAX_DURATION.saturating_mul(12)))
        .unwrap_or(now)
}

/// The wall-clock time `after` from now as RFC 3339 UTC; `None` when that is past the end of
/// the calendar (never a panic).
pub(crate) fn rfc3339_after(after: Duration) -> Option<String> {
    let after = jiff::SignedDuration::try_from(after).ok()?;
    jiff::Timestamp::now()
        .checked_add(after)
        .ok()?
        .round(jiff::Unit::Second)
        .ok()
        .map(|t| t.to_string())
}

/// The current time as RFC 3339 UTC with second precision, e.g. `2026-11-22T01:51:22Z`.
/// Truncated, never rounded up: a time read back is never in the future, so an age measured
/// from it is never shorter than the real one.
pub(crate) fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    now.round(
        jiff::TimestampRound::new()
            .smallest(jiff::Unit::Second)
            .mode(jiff::RoundMode::Trunc),
    )
    .map_or_else(|_| now.to_string(), |t| t.to_string())
}

/// Scales the pause between retries: `SHIPGATE_RETRY_SCALE=0.01` makes tests fast without
/// changing what is retried.
pub(crate) fn retry_delay(base: Duration) -> Duration {
    let scale = std::env::var("SHIPGATE_RETRY_SCALE")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(1.0);
    base.mul_f64(scale)
}

/// One retry schedule, the one way shipgate spaces out attempts at a network call (GitHub's REST
/// API, the Actions artifact service, deploy hooks, notifications, Prometheus): the pause after
/// the n-th failed attempt is `first × factor^(n−1)`, at most `max`; a server's `retry-after`
/// (within 1 s – 60 s) takes its place; `jitter` spreads it ±20 %; `SHIPGATE_RETRY_SCALE`
/// scales it (see [`retry_delay`]). Each caller names its numbers; the arithmetic is here.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Backoff {
    pub(crate) first: Duration,
    pub(crate) factor: f64,
    pub(crate) max: Duration,
    pub(crate) jitter: bool,
}

/// The range a server's `retry-after` is held to.
const RETRY_AFTER: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));

impl Backoff {
    /// The pause after failed attempt `attempt` (1 = the first try), before jitter and scale.
    pub(crate) fn base(&self, attempt: u32) -> Duration {
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.first.as_secs_f64() * self.factor.powi(exponent);
        if secs.is_finite() && secs < self.max.as_secs_f64() {
            Duration::from_secs_f64(secs.max(0.0))
        } else {
            self.max
        }
    }

    /// How long to wait after failed attempt `attempt`: what the server asked (`retry_after`),
    /// else [`Backoff::base`], jittered when the schedule says so; scaled.
    pub(crate) fn pause(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let base = match retry_after {
            Some(asked) => asked.clamp(RETRY_AFTER.0, RETRY_AFTER.1),
            None if self.jitter => jitter(self.base(attempt)),
            None => self.base(attempt),
        };
        retry_delay(base)
    }
}

/// ±20 % jitter, so many jobs polling or retrying against the same service spread out.
pub(crate) fn jitter(base: Duration) -> Duration {
    let random = u64::from_str_radix(&random_hex(2), 16).unwrap_or(0) as f64 / 65535.0;
    base.mul_f64(0.8 + 0.4 * random)
}

/// A duration as flags, inputs and `shipgate.yml` write it (`10s`, `5m`, `250ms`; a bare number
/// is seconds), read through [`parse_duration`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct HumanDuration(pub(crate) Duration);

impl std::str::FromStr for HumanDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_duration(text).map(HumanDuration)
    }
}

impl std::fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl<'de> serde::Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // A visitor, not an untagged enum: a list or a map is then "invalid type: sequence,
        // expected a duration …", not "did not match any variant".
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a duration such as `30s`, `5m`, `1h30m` or a number of seconds")
            }
            fn visit_u64<E: serde::de::Error>(self, secs: u64) -> Result<HumanDuration, E> {
                self.visit_str(&secs.to_string())
            }
            fn visit_i64<E: serde::de::Error>(self, secs: i64) -> Result<HumanDuration, E> {
                self.visit_str(&secs.to_string())
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<HumanDuration, E> {
                parse_duration(text).map(HumanDuration).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_backoff_spaces_every_retry() {
        let toolkit = Backoff {
            first: Duration::from_secs(3),
            factor: 1.5,
            max: Duration::from_secs(60),
            jitter: false,
        };
        assert_eq!(toolkit.base(1), Duration::from_secs(3));
        assert_eq!(toolkit.base(2), Duration::from_millis(4500));
        assert_eq!(toolkit.base(3), Duration::from_millis(6750));
        assert_eq!(toolkit.base(40), Duration::from_secs(60), "capped");
        assert_eq!(
            toolkit.base(u32::MAX),
            Duration::from_secs(60),
            "no overflow"
        );
        let jittered = Backoff {
            jitter: true,
            ..toolkit
        };
        // SHIPGATE_RETRY_SCALE is unset in unit tests.
        if std::env::var_os("SHIPGATE_RETRY_SCALE").is_none() {
            assert_eq!(toolkit.pause(2, None), Duration::from_millis(4500));
            for _ in 0..50 {
                let pause = jittered.pause(2, None);
                assert!(
                    pause >= Duration::from_millis(3600) && pause <= Duration::from_millis(5400),
                    "{pause:?}"
                );
            }
            // What the server asks wins, within 1 s – 60 s, never jittered.
            assert_eq!(
                jittered.pause(1, Some(Duration::from_secs(7))),
                Duration::from_secs(7)
            );
            assert_eq!(
                toolkit.pause(1, Some(Duration::ZERO)),
                Duration::from_secs(1)
            );
            assert_eq!(
                toolkit.pause(1, Some(Duration::from_secs(900))),
                Duration::from_secs(60)
            );
        }
    }

    #[test]
    fn now_is_never_written_in_the_future() {
        // Rounded to the nearest second, about half of these would lie ahead of the clock.
        for _ in 0..20 {
            let written: jiff::Timestamp = now_rfc3339().parse().expect("RFC 3339");
            assert!(written <= jiff::Timestamp::now(), "{written}");
            std::thread::sleep(Duration::from_millis(37));
        }
    }

    #[test]
    fn durations_parse_and_print() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(61)), "1m1s");
        assert_eq!(
            format_duration(Duration::from_secs(7 * 86_400 + 7200)),
            "7d2h"
        );
        let parsed: HumanDuration = "5m".parse().expect("duration");
        assert_eq!(parsed.0, Duration::from_secs(300));
        let from_yaml: HumanDuration = serde_yaml_ng::from_str("90").expect("seconds");
        assert_eq!(from_yaml.to_string(), "1m30s");
        assert!(serde_yaml_ng::from_str::<HumanDuration>("5 minutes").is_err());
    }

    #[test]
    fn durations_are_bounded_and_never_overflow() {
        assert_eq!(parse_duration("30d"), Ok(MAX_DURATION));
        assert_eq!(parse_duration("29d23h59m59s1000ms"), Ok(MAX_DURATION));
        for text in [
            "30d1ms",
            "31d",
            "99999999999h",
            "2592001",
            "18446744073709551616",
            "99999999999999999999s",
            "18446744073709551615d",
            "18446744073709551615ms18446744073709551615ms",
            "20d20d",
        ] {
            let error = parse_duration(text).expect_err(text);
            assert!(
                error.contains(&format!("`{text}`")) && error.contains("maximum `30d`"),
                "{text}: {error}"
            );
        }
        let error = "99999999999h"
            .parse::<HumanDuration>()
            .expect_err("too long");
        assert!(error.contains("`99999999999h`"), "{error}");
        let error = serde_yaml_ng::from_str::<HumanDuration>("99999999999").expect_err("seconds");
        assert!(error.to_string().contains("maximum `30d`"), "{error}");
        assert!(rfc3339_after(MAX_DURATION).is_some());
        assert!(rfc3339_after(Duration::MAX).is_none());
        let _never_panics = instant_after(Duration::MAX);
    }

    #[test]
    fn random_hex_is_random() {
        let a = random_hex(16);
        assert_eq!(a.len(), 32);
        assert_ne!(a, random_hex(16));
    }
}
