//! `shipgate watch` end to end against scripted loopback servers: a breach a few checks into a
//! short window rolls back (hook, health), marks the record and notifies; a clean window marks
//! the record watched and a re-run changes nothing; SIGTERM ends the watch without a rollback;
//! bad input and a closed rollback window change nothing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::record::{assert_valid, read_record};
use crate::support::health_server::{HealthServer, Reply};
use crate::support::{Shipgate, assert_no_secret, read_tree, state_files};

const ID: &str = "7272-5e4d3c2";
const VERSION: &str = "v1.4.0";
const WEBHOOK_TOKEN: &str = "whk-7Qz9-watch-s3cr3t";

struct World {
    dir: tempfile::TempDir,
}

impl World {
    /// A deployment that completed `minutes_ago` minutes ago, recorded by `shipgate record`
    /// (a 60-minute rollback window).
    fn recorded(minutes_ago: i64) -> World {
        let dir = tempfile::tempdir().expect("workdir");
        state_files::full(&dir.path().join(".shipgate"), ID, minutes_ago);
        Shipgate::new(dir.path())
            .input("deployment-id", ID)
            .env("GITHUB_REPOSITORY", "octo/app")
            .args(["record"])
            .run()
            .expect_code(0);
        World { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn state(&self) -> PathBuf {
        self.path().join(".shipgate").join(ID)
    }

    /// Created by the rollback hook: the scripted service answers healthy again once it exists.
    fn rolled_back(&self) -> PathBuf {
        self.path().join("rolled-back")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.state().join(format!("watch-logs-{ID}.log")))
            .unwrap_or_default()
    }

    fn watch_file(&self) -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(self.state().join("watch.json")).expect("watch.json"),
        )
        .expect("watch.json is JSON")
    }

    fn record(&self) -> Value {
        let record = read_record(&self.path().join(".shipgate"), ID);
        assert_valid(&record);
        record
    }

    /// `shipgate watch` for this deployment with the rollout's endpoint and hooks as inputs.
    fn watch(&self, endpoint: &str) -> Shipgate {
        let mut cmd = Shipgate::new(self.path());
        cmd.actions()
            .input("deployment-id", ID)
            .input("endpoints", endpoint)
            .input("hook", "true")
            .input(
                "rollback-hook",
                &format!("touch '{}'", self.rolled_back().display()),
            )
            .input("hook-shell", "true")
            .input("health-timeout", "1m")
            .args(["watch"]);
        cmd
    }
}

fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Seven healthy answers, then errors until the rollback hook moves traffic back.
fn turns_unhealthy(world: &World) -> HealthServer {
    let mut script = vec![Reply::healthy(VERSION); 7];
    script.extend(vec![Reply::error(); 200]);
    let server = HealthServer::start(script);
    server.switch_when_exists(world.rolled_back(), vec![Reply::healthy("v1.3.2")]);
    server
}

#[test]
fn a_breach_during_the_window_rolls_back_marks_the_record_and_notifies() {
    let world = World::recorded(5);
    let service = turns_unhealthy(&world);
    let receiver = HealthServer::start(vec![Reply::json(200, "{}")]);
    let webhook = receiver.url(&format!("/hooks/{WEBHOOK_TOKEN}"));
    let run = world
        .watch(&service.url("/health"))
        .input("webhook-url", &webhook)
        .args(["--for", "10m", "--interval", "100ms"])
        .run();
    run.expect_code(1);

    // It watched healthy checks first, then breached on the errors.
    let watched = world.watch_file();
    assert_eq!(watched["result"], "rolled_back", "{watched:#}");
    assert!(
        watched["samples"].as_u64().expect("samples") >= 8,
        "{watched:#}"
    );
    assert_eq!(
        watched["breach"]["gate"], "consecutive-failures",
        "{watched:#}"
    );
    assert_eq!(watched["rollback"], "pass");
    assert_eq!(watched["notified"], true);
    let log = world.log();
    let first_failure = log.find("FAIL").expect("a failed probe in the log");
    assert!(
        log[..first_failure].matches(": ok in").count() >= 7,
        "healthy checks before the breach:\n{log}"
    );
    assert!(log.contains("BREACH: post-deploy watch"), "{log}");

    // The rollback ran through `shipgate rollback`'s path: hook, health, record, incident.
    assert!(world.rolled_back().exists(), "the rollback hook ran");
    let rollback: Value = serde_json::from_str(
        &std::fs::read_to_string(world.state().join("rollback.json")).expect("rollback.json"),
    )
    .expect("JSON");
    assert_eq!(rollback["result"], "pass");
    assert_eq!(rollback["health"][0]["state"], "healthy", "{rollback:#}");
    assert!(world.state().join(format!("incident-{ID}.md")).exists());
    let record = world.record();
    assert_eq!(record["status"], "rolled_back");
    assert_eq!(record["rollback_available"], false);
    let reason = record["rollback"]["reason"].as_str().expect("reason");
    assert!(
        reason.starts_with("post-deploy watch: stage `watch` (100%)"),
        "{reason}"
    );
    assert_eq!(record["watch"]["result"], "breached");
    assert_eq!(record["watch"]["gate"], "consecutive-failures");

    // Announced as rolled back; the webhook's URL never shows.
    let sent = receiver.requests();
    assert_eq!(sent.len(), 1, "one notification");
    assert!(sent[0].body.contains("rolled_back"), "{}", sent[0].body);
    assert_eq!(run.outputs["result"], "rolled_back");
    assert!(
        run.summary.contains("Breach during the watch"),
        "{}",
        run.summary
    );
    let mut places = run.everything();
    places.extend(read_tree(world.path()));
    assert_no_secret(
        WEBHOOK_TOKEN,
        places.iter().map(|(n, t)| (n.clone(), t.as_str())),
    );
}

#[test]
fn a_clean_window_marks_the_record_watched_and_a_rerun_changes_nothing() {
    let world = World::recorded(5);
    let service = HealthServer::start(vec![Reply::healthy(VERSION)]);
    let run = world
        .watch(&service.url("/health"))
        .input("min-samples", "3")
        .args(["--for", "2s", "--interval", "200ms"])
        .run();
    run.expect_code(0);
    let watched = world.watch_file();
    assert_eq!(watched["result"], "pass", "{watched:#}");
    assert!(watched["breach"].is_null());
    assert!(!world.rolled_back().exists(), "no rollback");
    let record = world.record();
    assert_eq!(record["status"], "success");
    assert_eq!(record["watch"]["result"], "watched");
    assert_eq!(record["watch"]["window_seconds"], 2);
    assert_eq!(run.outputs["result"], "pass");
    assert!(run.summary.contains("✅ Watched"), "{}", run.summary);

    let probes = service.count();
    let again = world
        .watch(&service.url("/health"))
        .args(["--for", "2s", "--interval", "200ms"])
        .run();
    again.expect_code(0);
    assert!(
        again.stderr.contains("already ended `pass`"),
        "{}",
        again.stderr
    );
    assert_eq!(service.count(), probes, "a re-run probes nothing");
}

#[test]
fn sigterm_ends_the_watch_without_a_rollback() {
    let world = World::recorded(5);
    let service = HealthServer::start(vec![Reply::healthy(VERSION)]);
    let running = world
        .watch(&service.url("/health"))
        .args(["--for", "30m", "--interval", "100ms"])
        .spawn();
    eventually("the watch to probe", || world.log().contains(": ok in"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(running.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("send SIGTERM");
    let run = running.wait_at_most(Duration::from_secs(60));
    run.expect_code(4);
    assert!(!world.rolled_back().exists(), "no rollback");
    assert!(!world.state().join("rollback.json").exists());
    let watched = world.watch_file();
    assert_eq!(watched["result"], "cancelled");
    assert_eq!(watched["cancelled_by"], "SIGTERM");
    let record = world.record();
    assert_eq!(record["status"], "success");
    assert_eq!(record["watch"]["result"], "cancelled");
    assert!(
        run.stderr.contains("cancelled by SIGTERM")
            && run.stderr.contains("nothing was rolled back"),
        "{}",
        run.stderr
    );
}

#[test]
fn bad_input_or_a_closed_window_changes_nothing() {
    let world = World::recorded(5);
    let service = HealthServer::start(vec![Reply::healthy(VERSION)]);
    let before = read_tree(world.path());
    let run = world
        .watch(&service.url("/health"))
        .args(["--for", "10m", "--interval", "1ms"])
        .run();
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("`--interval` (input `watch-interval`) is too short: use at least `100ms`"),
        "{}",
        run.stderr
    );
    let run = world
        .watch(&service.url("/health"))
        .input("watch-for", "soon")
        .run();
    run.expect_code(2);
    assert!(run.stderr.contains("watch-for"), "{}", run.stderr);
    assert_eq!(read_tree(world.path()), before);

    let late = World::recorded(90);
    let before = read_tree(late.path());
    let run = late.watch(&service.url("/health")).run();
    run.expect_code(2);
    assert!(run.stderr.contains("rollback window"), "{}", run.stderr);
    assert_eq!(read_tree(late.path()), before);
    assert_eq!(service.count(), 0, "nothing was probed");
}

#[test]
fn a_metric_gate_breach_rolls_back_too() {
    use crate::support::stub_http::{Outgoing, StubServer};
    let answer = |value: f64| Outgoing::json(200, &serde_json::json!({"data": {"errors": value}}));
    let world = World::recorded(5);
    let service = HealthServer::start(vec![Reply::healthy(VERSION)]);
    // Three good measurements, then a bad value.
    let api = StubServer::start(answer(0.4));
    api.then(vec![answer(0.01), answer(0.01), answer(0.01)]);
    std::fs::write(
        world.path().join("shipgate.yml"),
        format!(
            "rollout:\n  metrics:\n    - name: errors\n      provider: web\n      url: '{}/errors?v={{{{version}}}}&stage={{{{stage}}}}'\n      path: data.errors\n      condition: '< 0.03'\n      stages: [full]\n",
            api.url()
        ),
    )
    .expect("shipgate.yml");
    let run = world
        .watch(&service.url("/health"))
        .args(["--for", "10m", "--interval", "100ms"])
        .run();
    run.expect_code(1);
    let watched = world.watch_file();
    assert_eq!(watched["breach"]["gate"], "metric:errors", "{watched:#}");
    assert!(watched["measurements"].as_u64().expect("measurements") >= 4);
    let requests = api.requests();
    // Templated as the rollout templated it: the release's SemVer (rollout.json), not the
    // record's tag `v1.4.0`, so the same query finds the same series.
    assert_eq!(requests[0].query_param("v").as_deref(), Some("1.4.0"));
    assert_eq!(requests[0].query_param("stage").as_deref(), Some("watch"));
    let record = world.record();
    assert_eq!(record["status"], "rolled_back");
    let reason = record["rollback"]["reason"].as_str().expect("reason");
    assert!(reason.contains("0.4 is not < 0.03"), "{reason}");
}

#[test]
fn a_rerun_after_a_signal_continues_the_same_window() {
    let world = World::recorded(5);
    let service = HealthServer::start(vec![Reply::healthy(VERSION)]);
    let running = world
        .watch(&service.url("/health"))
        .input("min-samples", "1")
        .args(["--for", "8s", "--interval", "100ms"])
        .spawn();
    eventually("the watch to probe", || world.log().contains(": ok in"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(running.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("send SIGTERM");
    running.wait_at_most(Duration::from_secs(60)).expect_code(4);
    let first = world.watch_file();
    assert_eq!(first["result"], "cancelled");

    // The re-run asks for a longer window, but continues the first one until its end.
    let run = world
        .watch(&service.url("/health"))
        .input("min-samples", "1")
        .args(["--for", "30m", "--interval", "100ms"])
        .run();
    run.expect_code(0);
    let second = world.watch_file();
    assert_eq!(second["result"], "pass");
    assert_eq!(second["ends_at"], first["ends_at"]);
    assert_eq!(second["started_at"], first["started_at"]);
    assert!(
        world.log().contains("continuing the watch started at"),
        "{}",
        world.log()
    );
    assert_eq!(second["for_ms"], 8000);
    assert_eq!(world.record()["watch"]["result"], "watched");
    assert_eq!(world.record()["watch"]["window_seconds"], 8);
}
