//! The change-window gate (seeds 000–003: "release window approved", "strict change windows"):
//! a calendar of the times deployments may start and of dated freezes, in one IANA time zone.
//!
//! ```yaml
//! gate:
//!   change-window:
//!     time-zone: Europe/Berlin
//!     allow: ["mon-thu 09:00-16:00", "fri 09:00-12:00"]
//!     freeze: ["2026-12-20..2027-01-04 holiday freeze"]
//! ```
//!
//! No `allow` entries means any time outside the freezes. Freeze dates are inclusive, in the
//! calendar's time zone. Pure: [`Calendar::judge`] takes the instant to judge.

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, Zoned};
use serde::Deserialize;

/// How far ahead the next window is searched (a long freeze can hide it for weeks).
const SEARCH_DAYS: i32 = 400;

/// The `change-window:` key of the `gate:` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct WindowConfig {
    /// IANA time zone the calendar is written in [default: UTC].
    pub(crate) time_zone: Option<String>,
    /// `"<days> <HH:MM>-<HH:MM>"`: `mon-fri`, `mon,wed`, `sat`, `daily`.
    #[serde(default)]
    pub(crate) allow: Vec<String>,
    /// `"<YYYY-MM-DD>[..<YYYY-MM-DD>] <reason>"`, dates inclusive.
    #[serde(default)]
    pub(crate) freeze: Vec<String>,
}

/// One allowed weekly window.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Allow {
    days: Vec<Weekday>,
    from: Time,
    /// Exclusive; `24:00` is the end of the day.
    to: Option<Time>,
    text: String,
}

/// One dated freeze.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Freeze {
    first: Date,
    last: Date,
    reason: String,
}

/// A checked calendar.
#[derive(Debug, Clone)]
pub(crate) struct Calendar {
    tz: TimeZone,
    tz_name: String,
    allow: Vec<Allow>,
    freezes: Vec<Freeze>,
}

/// The calendar's verdict at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Judgement {
    pub(crate) open: bool,
    /// One sentence naming the local time and, when closed, why and the next window.
    pub(crate) reason: String,
    /// The judged instant in the calendar's zone (`2026-12-21 10:15 Europe/Berlin`).
    pub(crate) local_time: String,
}

impl Calendar {
    /// Checks the calendar; errors name the bad entry and show a valid one.
    pub(crate) fn parse(config: &WindowConfig) -> Result<Calendar, String> {
        let tz_name = config.time_zone.clone().unwrap_or_else(|| "UTC".into());
        let tz = TimeZone::get(&tz_name).map_err(|_| {
            format!(
                "`change-window.time-zone` is `{tz_name}`, not an IANA time zone; use a name such as `Europe/Berlin` or `America/New_York`"
            )
        })?;
        let allow = config
            .allow
            .iter()
            .map(|text| parse_allow(text))
            .collect::<Result<Vec<_>, _>>()?;
        let freezes = config
            .freeze
            .iter()
            .map(|text| parse_freeze(text))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Calendar {
            tz,
            tz_name,
            allow,
            freezes,
        })
    }

    /// Whether a deployment may start at `now`, and why.
    pub(crate) fn judge(&self, now: Timestamp) -> Judgement {
        let local = now.to_zoned(self.tz.clone());
        let local_time = format!("{} {}", local.strftime("%a %Y-%m-%d %H:%M"), self.tz_name);
        if let Some(freeze) = self.frozen(local.date()) {
            return Judgement {
                open: false,
                reason: format!(
                    "deployments are frozen: {} ({}, {}); {} (now {local_time})",
                    freeze.reason,
                    freeze.span(),
                    self.tz_name,
                    self.next_phrase(&local)
                ),
                local_time,
            };
        }
        if self.allow.is_empty() {
            return Judgement {
                open: true,
                reason: format!("no freeze at {local_time}, and no window limits the time"),
                local_time,
            };
        }
        match self.allow.iter().find(|a| a.contains(&local)) {
            Some(window) => Judgement {
                open: true,
                reason: format!("inside the change window `{}` ({local_time})", window.text),
                local_time,
            },
            None => Judgement {
                open: false,
                reason: format!(
                    "outside every change window ({}) at {local_time}; {}",
                    self.allow
                        .iter()
                        .map(|a| format!("`{}`", a.text))
                        .collect::<Vec<_>>()
                        .join(", "),
                    self.next_phrase(&local)
                ),
                local_time,
            },
        }
    }

    fn frozen(&self, date: Date) -> Option<&Freeze> {
        self.freezes
            .iter()
            .find(|f| f.first <= date && date <= f.last)
    }

    fn next_phrase(&self, local: &Zoned) -> String {
        match self.next_opening(local) {
            Some(at) => format!(
                "the next window opens {} {}",
                at.strftime("%a %Y-%m-%d %H:%M"),
                self.tz_name
            ),
            None => format!("no window opens in the next {SEARCH_DAYS} days"),
        }
    }

    /// The first instant after `local` at which the calendar is open (not frozen, inside a
    /// window), at minute precision.
    fn next_opening(&self, local: &Zoned) -> Option<Zoned> {
        let today = local.date();
        for offset in 0..SEARCH_DAYS {
            let date = today.checked_add(offset.days()).ok()?;
            if self.frozen(date).is_some() {
                continue;
            }
            let mut starts: Vec<Time> = if self.allow.is_empty() {
                vec![Time::midnight()]
            } else {
                self.allow
                    .iter()
                    .filter(|a| a.days.contains(&date.weekday()))
                    .map(|a| a.from)
                    .collect()
            };
            starts.sort();
            for start in starts {
                let Ok(at) = date.to_datetime(start).to_zoned(self.tz.clone()) else {
                    continue;
                };
                if at.timestamp() > local.timestamp() {
                    return Some(at);
                }
            }
        }
        None
    }
}

impl Allow {
    fn contains(&self, local: &Zoned) -> bool {
        let time = local.time();
        self.days.contains(&local.date().weekday())
            && self.from <= time
            && self.to.is_none_or(|to| time < to)
    }
}

impl Freeze {
    fn span(&self) -> String {
        if self.first == self.last {
            self.first.to_string()
        } else {
            format!("{}..{}", self.first, self.last)
        }
    }
}

const ALLOW_EXAMPLE: &str = "`mon-fri 09:00-16:00`";
const FREEZE_EXAMPLE: &str = "`2026-12-20..2027-01-04 holiday freeze`";

fn parse_allow(text: &str) -> Result<Allow, String> {
    let bad = |why: &str| {
        format!(
            "change window {} {why}; write days and hours like {ALLOW_EXAMPLE}",
            crate::text::one_line(text)
        )
    };
    let mut parts = text.split_whitespace();
    let (Some(days), Some(hours), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("is not `<days> <from>-<to>`"));
    };
    let days = parse_days(days).map_err(|e| bad(&e))?;
    let (from, to) = hours
        .split_once('-')
        .ok_or_else(|| bad("has no `-` between its hours"))?;
    let from = parse_time(from).map_err(|e| bad(&e))?;
    let to = if to == "24:00" {
        None
    } else {
        Some(parse_time(to).map_err(|e| bad(&e))?)
    };
    if to.is_some_and(|to| to <= from) {
        return Err(bad(
            "ends before it starts (a window across midnight is two entries, e.g. `fri 22:00-24:00` and `sat 00:00-02:00`)",
        ));
    }
    Ok(Allow {
        days,
        from,
        to,
        text: text.split_whitespace().collect::<Vec<_>>().join(" "),
    })
}

fn parse_days(text: &str) -> Result<Vec<Weekday>, String> {
    const ORDER: [Weekday; 7] = [
        Weekday::Monday,
        Weekday::Tuesday,
        Weekday::Wednesday,
        Weekday::Thursday,
        Weekday::Friday,
        Weekday::Saturday,
        Weekday::Sunday,
    ];
    if matches!(text, "daily" | "*") {
        return Ok(ORDER.to_vec());
    }
    let day = |name: &str| -> Result<usize, String> {
        let lower = name.to_ascii_lowercase();
        ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
            .iter()
            .position(|d| lower == *d)
            .ok_or_else(|| {
                format!("names the day `{name}` (use mon, tue, wed, thu, fri, sat, sun or daily)")
            })
    };
    let mut days = Vec::new();
    for item in text.split(',') {
        match item.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (day(first)?, day(last)?);
                if last < first {
                    return Err(format!(
                        "has the day range `{item}` backwards (write it Monday first, e.g. `sat-sun`)"
                    ));
                }
                days.extend(ORDER[first..=last].iter().copied());
            }
            None => days.push(ORDER[day(item)?]),
        }
    }
    Ok(days)
}

fn parse_time(text: &str) -> Result<Time, String> {
    let (h, m) = text
        .split_once(':')
        .ok_or_else(|| format!("has the time `{text}`, not HH:MM"))?;
    let (Ok(h), Ok(m)) = (h.parse::<i8>(), m.parse::<i8>()) else {
        return Err(format!("has the time `{text}`, not HH:MM"));
    };
    Time::new(h, m, 0, 0).map_err(|_| format!("has the time `{text}`, which is not a time of day"))
}

fn parse_freeze(text: &str) -> Result<Freeze, String> {
    let bad = |why: &str| {
        format!(
            "freeze {} {why}; write the dates (inclusive) and a reason like {FREEZE_EXAMPLE}",
            crate::text::one_line(text)
        )
    };
    let text = text.trim();
    let (dates, reason) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(bad("gives no reason"));
    }
    let (first, last) = dates.split_once("..").unwrap_or((dates, dates));
    let date = |d: &str| {
        d.parse::<Date>()
            .map_err(|_| bad(&format!("has the date `{d}`, not YYYY-MM-DD")))
    };
    let (first, last) = (date(first)?, date(last)?);
    if last < first {
        return Err(bad("ends before it starts"));
    }
    Ok(Freeze {
        first,
        last,
        reason: crate::text::one_line(reason),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calendar(tz: &str, allow: &[&str], freeze: &[&str]) -> Calendar {
        Calendar::parse(&WindowConfig {
            time_zone: Some(tz.into()),
            allow: allow.iter().map(|s| s.to_string()).collect(),
            freeze: freeze.iter().map(|s| s.to_string()).collect(),
        })
        .expect("a valid calendar")
    }

    fn at(text: &str) -> Timestamp {
        text.parse().expect("a timestamp")
    }

    #[test]
    fn inside_and_outside_a_weekly_window_in_its_time_zone() {
        let cal = calendar(
            "Europe/Berlin",
            &["mon-thu 09:00-16:00", "fri 09:00-12:00"],
            &[],
        );
        // Monday 2026-12-07 08:30 UTC is 09:30 in Berlin.
        let monday = cal.judge(at("2026-12-07T08:30:00Z"));
        assert!(monday.open, "{monday:?}");
        assert!(monday.reason.contains("mon-thu 09:00-16:00"));
        // Friday 2026-12-11 11:30 UTC is 12:30 in Berlin: after Friday's window.
        let friday = cal.judge(at("2026-12-11T11:30:00Z"));
        assert!(!friday.open);
        assert!(
            friday
                .reason
                .contains("the next window opens Mon 2026-12-14 09:00 Europe/Berlin"),
            "{}",
            friday.reason
        );
        assert!(friday.reason.contains("Fri 2026-12-11 12:30 Europe/Berlin"));
    }

    #[test]
    fn a_freeze_refuses_and_names_its_reason_and_the_first_window_after_it() {
        let cal = calendar(
            "UTC",
            &["mon-fri 09:00-17:00"],
            &["2026-12-20..2027-01-04 holiday freeze"],
        );
        let judged = cal.judge(at("2026-12-22T10:00:00Z"));
        assert!(!judged.open);
        assert!(
            judged
                .reason
                .contains("frozen: holiday freeze (2026-12-20..2027-01-04, UTC)"),
            "{}",
            judged.reason
        );
        // 2027-01-05 is a Tuesday.
        assert!(
            judged
                .reason
                .contains("the next window opens Tue 2027-01-05 09:00 UTC"),
            "{}",
            judged.reason
        );
        // Without weekly windows, only freezes close the calendar.
        let freezes_only = calendar("UTC", &[], &["2026-12-25 christmas"]);
        assert!(freezes_only.judge(at("2026-12-24T23:59:00Z")).open);
        let christmas = freezes_only.judge(at("2026-12-25T12:00:00Z"));
        assert!(!christmas.open);
        assert!(christmas.reason.contains("opens Sat 2026-12-26 00:00 UTC"));
    }

    #[test]
    fn a_window_to_midnight_and_every_day() {
        let cal = calendar("UTC", &["daily 20:00-24:00"], &[]);
        assert!(cal.judge(at("2026-12-06T23:59:00Z")).open);
        assert!(!cal.judge(at("2026-12-06T19:59:00Z")).open);
    }

    #[test]
    fn bad_entries_are_named_with_an_example() {
        let err = |config: WindowConfig| Calendar::parse(&config).expect_err("refused");
        let e = err(WindowConfig {
            time_zone: Some("Mars/Olympus".into()),
            ..Default::default()
        });
        assert!(e.contains("`Mars/Olympus`, not an IANA time zone"), "{e}");
        let e = err(WindowConfig {
            allow: vec!["weekdays 9-5".into()],
            ..Default::default()
        });
        assert!(
            e.contains("`weekdays`") && e.contains("mon-fri 09:00-16:00"),
            "{e}"
        );
        let e = err(WindowConfig {
            allow: vec!["fri 22:00-02:00".into()],
            ..Default::default()
        });
        assert!(e.contains("two entries"), "{e}");
        let e = err(WindowConfig {
            freeze: vec!["2026-12-20..2027-01-04".into()],
            ..Default::default()
        });
        assert!(e.contains("gives no reason"), "{e}");
        let e = err(WindowConfig {
            freeze: vec!["2026-13-01 nope".into()],
            ..Default::default()
        });
        assert!(e.contains("`2026-13-01`, not YYYY-MM-DD"), "{e}");
    }
}
