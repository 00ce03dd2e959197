//! `shipgate gate`'s preflight gates end to end: the change window and its override, and the
//! backup recency against SeaweedFS, with the fake GitHub. Calendars are written around the real current date (never a faked clock),
//! so the verdicts hold whenever the test runs.

use jiff::{Timestamp, ToSpan, tz::TimeZone};
use serde_json::{Value, json};

use crate::backup::{Case, s3, seeded};
use crate::gate::{SHA, gate, gate_json, world};
use crate::support::{FakeGitHub, Shipgate, assert_no_secret, read_tree};

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

    // The record keeps the verdict, and its summary lists it (seed 004 §2, row by row).
    let record = Shipgate::new(dir.path())
        .args(["--format", "json", "record", "--status", "success"])
        .actions()
        .run();
    record.expect_code(0);
    let path = record.outputs["record-path"].clone();
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join(&path)).expect("record"))
            .expect("JSON");
    assert_eq!(
        written["gate"]["preflight"][0]["verdict"], "overridden",
        "{}",
        written["gate"]
    );
    assert!(
        record
            .summary
            .contains("| `change-window` | overridden | outside every change window"),
        "{}",
        record.summary
    );
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

/// `gate` with the backup-recency gate on, reading `destination` with the test server's keys.
fn recency_gate(gh: &FakeGitHub, dir: &std::path::Path, destination: &str) -> Shipgate {
    let mut cmd = gate(gh, dir);
    for (key, value) in s3().aws_env() {
        cmd.env(key, value);
    }
    cmd.input("destination", destination)
        .input("max-backup-age", "1d");
    cmd
}

#[test]
fn the_newest_backup_must_be_recent_and_verified() {
    let gh = world();
    gh.check(SHA, "build", "success");
    let bucket = s3().create_bucket();
    let destination = format!("s3://{bucket}/prod");
    let dir = tempfile::tempdir().expect("workdir");

    let empty = recency_gate(&gh, dir.path(), &destination).run();
    empty.expect_code(1);
    assert!(
        empty
            .stderr
            .contains(&format!("no complete backup in `{destination}`")),
        "{}",
        empty.stderr
    );

    let case = Case::new();
    case.shipgate(&seeded("recency"))
        .args(["backup", "--destination", &destination])
        .run()
        .expect_code(0);
    let fresh = recency_gate(&gh, dir.path(), &destination).run();
    fresh.expect_code(0);
    let mut places = fresh.everything();
    places.extend(read_tree(dir.path()));
    assert_no_secret(
        s3().secret_key(),
        places.iter().map(|(n, t)| (n.clone(), t.as_str())),
    );
    let row = &gate_json(dir.path())["preflight"][0];
    assert_eq!(row["gate"], "backup-recency");
    assert_eq!(row["verdict"], "pass", "{row}");
    assert!(
        row["reason"]
            .as_str()
            .is_some_and(|r| r.contains(&format!("backup-{}", case.id)) && r.contains("verified")),
        "{row}"
    );

    // The same backup, two days older: refused, naming its age.
    let sidecar_key = format!("prod/backup-{}.json", case.id);
    let mut sidecar: Value = s3().get_json(&bucket, &sidecar_key);
    let taken: Timestamp = sidecar["timestamp"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("a timestamp");
    let older = taken.checked_sub(48.hours()).expect("earlier");
    sidecar["timestamp"] = json!(older.to_string());
    s3().put(&bucket, &sidecar_key, sidecar.to_string().as_bytes());
    let stale = recency_gate(&gh, dir.path(), &destination).run();
    stale.expect_code(1);
    assert!(
        stale.stderr.contains(&format!("backup-{}", case.id))
            && stale
                .stderr
                .contains("ago), is older than `max-backup-age` 1d"),
        "{}",
        stale.stderr
    );
    assert!(
        gate_json(dir.path())["preflight"][0]["measured"]
            .as_str()
            .is_some_and(|m| m.starts_with("2d")),
        "{}",
        gate_json(dir.path())["preflight"][0]
    );

    // Recent again, but never verified: refused.
    sidecar["timestamp"] = json!(taken.to_string());
    sidecar["verified"] = json!(false);
    s3().put(&bucket, &sidecar_key, sidecar.to_string().as_bytes());
    let unverified = recency_gate(&gh, dir.path(), &destination).run();
    unverified.expect_code(1);
    assert!(
        unverified.stderr.contains("was not verified"),
        "{}",
        unverified.stderr
    );
}

#[test]
fn an_unreachable_destination_is_a_dependency_error_never_a_pass() {
    let gh = world();
    gh.check(SHA, "build", "success");
    let dir = tempfile::tempdir().expect("workdir");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let run = recency_gate(&gh, dir.path(), "s3://nowhere/prod")
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{closed}"))
        .env("SHIPGATE_RETRY_SCALE", "0.01")
        .run();
    run.expect_code(3);
    assert!(run.stderr.contains("s3://nowhere/prod"), "{}", run.stderr);
}

#[test]
fn open_alerts_above_the_allowed_severity_refuse_with_their_links() {
    let gh = world();
    gh.check(SHA, "build", "success");
    gh.code_scanning_alert("js/sql-injection", Some("critical"));
    gh.code_scanning_alert("js/unused-local-variable", None);
    gh.dependabot_alert("lodash", "high");
    gh.dependabot_alert("left-pad", "low");
    let dir = tempfile::tempdir().expect("workdir");

    // Nothing critical open (the documented default `high`): the SQL injection refuses.
    let refused = gate(&gh, dir.path())
        .input("max-severity", "high")
        .actions()
        .run();
    refused.expect_code(1);
    let row = &gate_json(dir.path())["preflight"][0];
    assert_eq!(row["gate"], "security-alerts");
    assert_eq!(row["verdict"], "fail");
    let reason = row["reason"].as_str().expect("reason");
    assert!(
        reason
            .contains("1 open security alert(s) above the allowed severity (at most `high` open)")
            && reason.contains("code scanning #1 `js/sql-injection` (critical)"),
        "{reason}"
    );
    assert_eq!(
        row["links"],
        json!(["https://github.com/octo/app/security/code-scanning/1"])
    );
    assert_eq!(check_run_requests(&gh), 0, "refused before polling");

    // At most `medium`: the Dependabot `high` refuses too, worst first.
    let stricter = gate(&gh, dir.path()).input("max-severity", "medium").run();
    stricter.expect_code(1);
    let reason = gate_json(dir.path())["preflight"][0]["reason"].to_string();
    let critical = reason.find("js/sql-injection").expect("the critical one");
    let high = reason.find("in `lodash` (high)").expect("the high one");
    assert!(critical < high, "{reason}");
    assert!(!reason.contains("left-pad"), "{reason}");

    // `critical` allows everything open: the gate goes on to the checks.
    gate(&gh, dir.path())
        .input("max-severity", "critical")
        .run()
        .expect_code(0);
    assert_eq!(gate_json(dir.path())["preflight"][0]["verdict"], "pass");
}

#[test]
fn a_source_that_is_not_enabled_refuses_unless_accepted() {
    let gh = world();
    gh.check(SHA, "build", "success");
    gh.code_scanning_off().dependabot_off();
    let dir = tempfile::tempdir().expect("workdir");
    let refused = gate(&gh, dir.path()).input("max-severity", "high").run();
    refused.expect_code(1);
    let reason = gate_json(dir.path())["preflight"][0]["reason"].to_string();
    assert!(
        reason.contains("code scanning is not enabled for this repository")
            && reason.contains("Dependabot is not enabled for this repository")
            && reason.contains("security-not-enabled: warn"),
        "{reason}"
    );

    let dependabot_reads = || {
        gh.requests()
            .iter()
            .filter(|r| r.path.contains("/dependabot/"))
            .count()
    };
    let before = dependabot_reads();
    let accepted = gate(&gh, dir.path())
        .input("max-severity", "high")
        .input("security-not-enabled", "warn")
        .input("security-sources", "code-scanning")
        .run();
    accepted.expect_code(0);
    let row = &gate_json(dir.path())["preflight"][0];
    assert_eq!(row["verdict"], "not_enabled", "{row}");
    assert_eq!(dependabot_reads(), before, "dependabot was left out");

    let bad = gate(&gh, dir.path()).input("max-severity", "severe").run();
    bad.expect_code(2);
    assert!(
        bad.stderr.contains("`severe` is not a severity"),
        "{}",
        bad.stderr
    );
}

#[test]
fn a_firing_alert_refuses_the_deploy_and_a_pending_one_does_not() {
    use crate::support::prometheus::Prometheus;
    let gh = world();
    gh.check(SHA, "build", "success");
    let rules = "groups:\n  - name: incidents\n    rules:\n      - alert: Sev1CheckoutDown\n        expr: vector(1)\n        labels:\n          severity: critical\n          service: api\n      - alert: SlowBurn\n        expr: vector(1)\n        for: 1h\n        labels:\n          severity: warning\n          service: api\n";
    let prometheus = Prometheus::start(&[], Some(rules));
    prometheus.wait_for("ALERTS{alertstate=\"firing\"}");
    let dir = tempfile::tempdir().expect("workdir");
    std::fs::write(
        dir.path().join("shipgate.yml"),
        format!(
            "rollout:\n  prometheus:\n    address: {}\n",
            prometheus.url()
        ),
    )
    .expect("write shipgate.yml");

    let refused = gate(&gh, dir.path())
        .input(
            "no-firing-alerts",
            "severity=~\"critical|warning\", service=\"api\"",
        )
        .run();
    refused.expect_code(1);
    let row = &gate_json(dir.path())["preflight"][0];
    assert_eq!(row["gate"], "no-firing-alerts");
    assert_eq!(row["verdict"], "fail", "{row}");
    let reason = row["reason"].as_str().expect("reason");
    assert!(
        reason.contains("1 alert(s) matching") && reason.contains("Sev1CheckoutDown"),
        "{reason}"
    );
    assert!(
        !reason.contains("SlowBurn"),
        "a pending alert does not count: {reason}"
    );
    assert_eq!(check_run_requests(&gh), 0, "refused before polling");

    // Only the pending one matches: the gate goes on.
    gate(&gh, dir.path())
        .input("no-firing-alerts", "severity=\"warning\"")
        .run()
        .expect_code(0);
    assert_eq!(gate_json(dir.path())["preflight"][0]["verdict"], "pass");

    // A backend that is down is a dependency error, never a pass.
    drop(prometheus);
    let down = gate(&gh, dir.path())
        .input("no-firing-alerts", "severity=\"critical\"")
        .env("SHIPGATE_RETRY_SCALE", "0.01")
        .run();
    down.expect_code(3);
}

#[test]
fn a_json_endpoint_gate_reads_a_status_page_and_an_incident_api() {
    use crate::support::stub_http::{Outgoing, serve};
    use std::sync::{Arc, Mutex};
    let token = "inc-token-9f8e7d6c5b4a";
    // What the status page and the incident tool say; changed by the test between runs.
    let indicator = Arc::new(Mutex::new("none".to_string()));
    let open = Arc::new(Mutex::new(json!([])));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = {
        let (indicator, open, seen) = (indicator.clone(), open.clone(), seen.clone());
        serve(move |request| {
            seen.lock().expect("lock").push(request.clone());
            match request.path.as_str() {
                "/api/v2/status.json" => Outgoing::json(
                    200,
                    &json!({"page": {"name": "Acme"}, "status": {"indicator": *indicator.lock().expect("lock"), "description": "x"}}),
                ),
                "/incidents"
                    if request.header("authorization") == Some(&format!("Bearer {token}")) =>
                {
                    Outgoing::json(
                        200,
                        &json!({"data": {"incidents": *open.lock().expect("lock")}}),
                    )
                }
                "/incidents" => Outgoing::json(401, &json!({"error": "no token"})),
                _ => Outgoing::json(500, &json!({"error": "down"})),
            }
        })
    };
    let gh = world();
    gh.check(SHA, "build", "success");
    let dir = tempfile::tempdir().expect("workdir");
    let write = |second: &str| {
        std::fs::write(
            dir.path().join("shipgate.yml"),
            format!(
                "gate:\n  endpoints:\n    - name: status page\n      url: {url}/api/v2/status.json\n      path: $.status.indicator\n      condition: '== \"none\"'\n    - name: open sev1/sev2 incidents\n      url: {url}{second}\n      path: $.data.incidents\n      condition: '== 0'\n      auth:\n        bearer: INCIDENT_TOKEN\n      timeout: 5s\n",
                url = server.url
            ),
        )
        .expect("write shipgate.yml");
    };
    write("/incidents?status=open&severity=sev1,sev2");
    let run = || {
        gate(&gh, dir.path())
            .env("INCIDENT_TOKEN", token)
            .env("SHIPGATE_RETRY_SCALE", "0.01")
            .run()
    };

    let calm = run();
    calm.expect_code(0);
    let rows = gate_json(dir.path())["preflight"].clone();
    assert_eq!(rows[0]["gate"], "endpoint: status page");
    assert_eq!(rows[0]["verdict"], "pass", "{rows}");
    assert_eq!(rows[1]["gate"], "endpoint: open sev1/sev2 incidents");
    assert_eq!(rows[1]["verdict"], "pass", "{rows}");
    assert_eq!(rows[1]["measured"], "0 item(s)", "{rows}");
    let asked = seen
        .lock()
        .expect("io")
        .iter()
        .find(|r| r.path == "/incidents")
        .cloned()
        .expect("the incident API was asked");
    assert_eq!(asked.query_param("severity").as_deref(), Some("sev1,sev2"));

    // A major outage on the status page and an open incident: refused, naming both values.
    *indicator.lock().expect("lock") = "major".into();
    *open.lock().expect("lock") = json!([{"id": "INC-7", "severity": "sev1"}]);
    let polled = check_run_requests(&gh);
    let refused = run();
    refused.expect_code(1);
    let rows = gate_json(dir.path())["preflight"].clone();
    assert_eq!(rows[0]["verdict"], "fail");
    assert!(
        rows[0]["reason"].as_str().is_some_and(|r| r.contains(
            "`$.status.indicator` at `status page` is \"major\", which does not meet `== \"none\"`"
        )),
        "{rows}"
    );
    assert!(
        rows[1]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("is 1 item(s), which does not meet `== 0`")),
        "{rows}"
    );
    assert_eq!(check_run_requests(&gh), polled, "refused before polling");

    // The value is not in the answer: refused, naming the path as far as it went.
    write("/incidents?status=open");
    std::fs::write(
        dir.path().join("shipgate.yml"),
        std::fs::read_to_string(dir.path().join("shipgate.yml"))
            .expect("io")
            .replace("path: $.status.indicator", "path: $.status.level"),
    )
    .expect("io");
    *indicator.lock().expect("lock") = "none".into();
    *open.lock().expect("lock") = json!([]);
    let missing = run();
    missing.expect_code(1);
    assert!(
        missing
            .stderr
            .contains("the answer has no `$.status.level`"),
        "{}",
        missing.stderr
    );

    // Down (500 on every attempt): a dependency error, never a pass; so is a refused token.
    write("/nowhere");
    let down = run();
    down.expect_code(3);
    assert!(
        down.stderr.contains("did not answer after"),
        "{}",
        down.stderr
    );
    write("/incidents");
    let unauthorised = gate(&gh, dir.path())
        .env("INCIDENT_TOKEN", "wrong-token-000")
        .run();
    unauthorised.expect_code(3);
    assert!(
        unauthorised.stderr.contains("HTTP 401"),
        "{}",
        unauthorised.stderr
    );

    // A bad path or condition is a usage error naming it; nothing is asked.
    std::fs::write(
        dir.path().join("shipgate.yml"),
        format!(
            "gate:\n  endpoints:\n    - name: status page\n      url: {}/api/v2/status.json\n      path: $.status[?@.x ==]\n      condition: '== \"none\"'\n",
            server.url
        ),
    )
    .expect("io");
    let bad = run();
    bad.expect_code(2);
    assert!(
        bad.stderr.contains(
            "`gate.endpoints` entry `status page`: `path`: JSON path `$.status[?@.x ==]` is not valid"
        ),
        "{}",
        bad.stderr
    );

    let mut places = Vec::new();
    for r in [&calm, &refused, &missing, &down, &bad] {
        places.extend(r.everything());
    }
    places.extend(read_tree(dir.path()));
    assert_no_secret(token, places.iter().map(|(n, t)| (n.clone(), t.as_str())));
}
