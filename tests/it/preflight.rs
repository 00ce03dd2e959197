//! `shipgate gate`'s preflight gates end to end: the change window and its override, against
//! the fake GitHub. Calendars are written around the real current date (never a faked clock),
//! so the verdicts hold whenever the test runs.

use jiff::{Timestamp, ToSpan, tz::TimeZone};

use crate::gate::{SHA, gate, gate_json, world};
use crate::support::FakeGitHub;

/// Today and the days around it in UTC, as the calendar reads them.
fn utc_today() -> jiff::civil::Date {
    Timestamp::now().to_zoned(TimeZone::UTC).date()
}

fn weekday_name(date: jiff::civil::Date) -> &'static str {
    ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        [date.weekday().to_monday_zero_offset() as usize]
}

fn config(dir: &std::path::Path, window: &str) {
    std::fs::write(
        dir.join("shipgate.yml"),
        format!("gate:\n  change-window:\n{window}"),
    )
    .expect("write shipgate.yml");
}

fn check_run_requests(gh: &FakeGitHub) -> usize {
    gh.requests()
        .iter()
        .filter(|r| r.path.ends_with("/check-runs"))
        .count()
}

#[test]
fn inside_the_window_the_gate_goes_on_to_the_checks() {
    let gh = world();
    gh.check(SHA, "build", "success");
    let dir = tempfile::tempdir().expect("workdir");
    config(
        dir.path(),
        "    allow: [\"daily 00:00-24:00\"]\n    freeze: [\"2001-01-01..2001-01-31 long ago\"]\n",
    );
    let run = gate(&gh, dir.path()).actions().run();
    run.expect_code(0);
    let row = &gate_json(dir.path())["preflight"][0];
    assert_eq!(row["gate"], "change-window");
    assert_eq!(row["verdict"], "pass");
    assert!(
        row["reason"]
            .as_str()
            .is_some_and(|r| r.contains("inside the change window `daily 00:00-24:00`")),
        "{row}"
    );
    assert!(check_run_requests(&gh) > 0, "the checks were read");
}

#[test]
fn a_freeze_refuses_before_any_check_is_read_and_names_the_next_window() {
    let gh = world();
    gh.check(SHA, "build", "success");
    let dir = tempfile::tempdir().expect("workdir");
    let today = utc_today();
    let (first, last) = (
        today.checked_sub(1.day()).expect("yesterday"),
        today.checked_add(1.day()).expect("tomorrow"),
    );
    config(
        dir.path(),
        &format!("    time-zone: UTC\n    freeze: [\"{first}..{last} quarter close\"]\n"),
    );
    let run = gate(&gh, dir.path()).actions().run();
    run.expect_code(1);
    assert_eq!(run.outputs["result"], "fail");
    let reopens = today.checked_add(2.days()).expect("day after tomorrow");
    for text in [&run.stderr, &gate_json(dir.path())["reason"].to_string()] {
        assert!(
            text.contains(&format!(
                "deployments are frozen: quarter close ({first}..{last}, UTC)"
            )),
            "{text}"
        );
        assert!(
            text.contains("the next window opens") && text.contains(&reopens.to_string()),
            "{text}"
        );
    }
    assert_eq!(check_run_requests(&gh), 0, "refused before polling");
    assert!(
        run.summary.contains("Preflight `change-window`:** ❌"),
        "{}",
        run.summary
    );
}

#[test]
fn outside_the_window_an_override_with_a_reason_passes_and_is_recorded() {
    let gh = world();
    gh.check(SHA, "build", "success");
    let dir = tempfile::tempdir().expect("workdir");
    // Open only on the day after tomorrow: closed now, whatever the time of day.
    let open_day = utc_today().checked_add(2.days()).expect("a later day");
    config(
        dir.path(),
        &format!("    allow: [\"{} 10:00-11:00\"]\n", weekday_name(open_day)),
    );
    let refused = gate(&gh, dir.path()).run();
    refused.expect_code(1);
    assert!(
        refused.stderr.contains("outside every change window")
            && refused.stderr.contains("the next window opens")
            && refused.stderr.contains(&format!("{open_day} 10:00 UTC")),
        "{}",
        refused.stderr
    );

    let missing_reason = gate(&gh, dir.path()).args(["--override-window"]).run();
    missing_reason.expect_code(2);
    assert!(
        missing_reason
            .stderr
            .contains("`--override-window` needs `--reason`"),
        "{}",
        missing_reason.stderr
    );

    let overridden = gate(&gh, dir.path())
        .env("GITHUB_TRIGGERING_ACTOR", "on-call-alice")
        .input("override-window", "true")
        .input("reason", "hotfix for INC-42")
        .run();
    overridden.expect_code(0);
    let row = &gate_json(dir.path())["preflight"][0];
    assert_eq!(row["verdict"], "overridden", "{row}");
    assert_eq!(row["override_by"], "on-call-alice");
    assert_eq!(row["override_reason"], "hotfix for INC-42");
}

#[test]
fn a_bad_calendar_is_a_usage_error_naming_the_entry() {
    let gh = world();
    let dir = tempfile::tempdir().expect("workdir");
    config(dir.path(), "    allow: [\"weekdays 9-17\"]\n");
    let run = gate(&gh, dir.path()).run();
    run.expect_code(2);
    assert!(
        run.stderr.contains("`gate.change-window` in shipgate.yml")
            && run.stderr.contains("`weekdays`")
            && run.stderr.contains("mon-fri 09:00-16:00"),
        "{}",
        run.stderr
    );
}
