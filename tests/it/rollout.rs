//! `shipgate rollout` end to end: the real binary, real HTTP against loopback health servers
//! with scripted behaviour, and real hook processes (shell scripts that append their
//! environment to a file). Stages last about a second and probes run every 50 ms.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::health_server::{HealthServer, Reply};
use crate::support::{Shipgate, assert_no_secret, read_tree, state_files};

pub(crate) const ID: &str = "42-abcdef0";
pub(crate) const VERSION: &str = "1.4.0";
pub(crate) const PREVIOUS: &str = "1.3.2";

/// A workspace with a validated deployment (`validate.json` naming the version and the one
/// running before), a stage hook and a rollback hook that log their environment.
pub(crate) struct World {
    dir: tempfile::TempDir,
}

impl World {
    pub(crate) fn new() -> World {
        let world = World {
            dir: tempfile::tempdir().expect("workdir"),
        };
        let state = world.state_dir();
        std::fs::create_dir_all(&state).expect("state dir");
        let mut validated = state_files::validate(ID, 1);
        validated["version"] = json!(VERSION);
        validated["previous"]["version"] = json!(PREVIOUS);
        std::fs::write(state.join("validate.json"), validated.to_string()).expect("validate.json");
        std::fs::write(world.path().join(".shipgate/latest"), format!("{ID}\n")).expect("latest");
        world.hook("stage-hook.sh", "");
        world.hook(
            "rollback-hook.sh",
            &format!("touch '{}'", world.rolled_back().display()),
        );
        world
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn state_dir(&self) -> PathBuf {
        self.path().join(".shipgate").join(ID)
    }

    /// Created by the rollback hook; health servers switch behaviour when it appears.
    fn rolled_back(&self) -> PathBuf {
        self.path().join("rolled-back")
    }

    fn hook_log(&self) -> PathBuf {
        self.path().join("hooks.log")
    }

    /// An executable hook script that logs its `SHIPGATE_*` environment, then runs `body`.
    pub(crate) fn hook(&self, name: &str, body: &str) -> PathBuf {
        let path = self.path().join(name);
        let script = format!(
            "#!/bin/sh\necho \"{name} event=$SHIPGATE_EVENT stage=$SHIPGATE_STAGE weight=$SHIPGATE_WEIGHT version=$SHIPGATE_VERSION id=$SHIPGATE_DEPLOYMENT_ID previous=$SHIPGATE_PREVIOUS_VERSION failed=$SHIPGATE_FAILED_STAGE\" >> '{}'\n{body}\n",
            self.hook_log().display()
        );
        std::fs::write(&path, script).expect("hook script");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    /// `(script, stage)` of every hook call, in order.
    pub(crate) fn hook_calls(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(self.hook_log())
            .unwrap_or_default()
            .lines()
            .map(|line| {
                let script = line.split(' ').next().unwrap_or_default().to_string();
                let stage = field(line, "stage");
                (script, stage)
            })
            .collect()
    }

    fn hook_lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.hook_log())
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// `shipgate rollout` in this workspace with fast probes, loose latency and the two hooks,
    /// all given as action inputs so that a test's flags override them.
    pub(crate) fn shipgate(&self) -> Shipgate {
        let mut cmd = Shipgate::new(self.path());
        cmd.args(["rollout"]);
        for (name, value) in [
            ("interval", "50ms"),
            ("min-samples", "3"),
            ("probe-timeout", "5s"),
            ("max-p95", "10s"),
            ("hook-timeout", "20s"),
            ("hook-retries", "0"),
            ("verify-timeout", "20s"),
            ("verify-successes", "2"),
        ] {
            cmd.input(name, value);
        }
        cmd.input(
            "hook",
            &self.path().join("stage-hook.sh").display().to_string(),
        );
        cmd.input(
            "rollback-hook",
            &self.path().join("rollback-hook.sh").display().to_string(),
        );
        cmd
    }

    pub(crate) fn result(&self) -> Value {
        let text = std::fs::read_to_string(self.state_dir().join("rollout.json"))
            .expect("rollout.json written");
        serde_json::from_str(&text).expect("rollout.json is JSON")
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.state_dir().join(format!("rollout-logs-{ID}.log")))
            .unwrap_or_default()
    }
}

fn field(line: &str, key: &str) -> String {
    line.split(' ')
        .find_map(|part| part.strip_prefix(&format!("{key}=")))
        .unwrap_or_default()
        .to_string()
}

pub(crate) fn stages(specs: &[&str]) -> Vec<String> {
    specs
        .iter()
        .flat_map(|s| ["--stage".to_string(), s.to_string()])
        .collect()
}

/// A health server that serves `script` until the rollback hook ran, then healthy answers of
/// the previous version.
pub(crate) fn canary(world: &World, script: Vec<Reply>) -> HealthServer {
    let server = HealthServer::start(script);
    server.switch_when_exists(world.rolled_back(), vec![Reply::healthy(PREVIOUS)]);
    server
}

/// Polls `check` every 20 ms until it holds (at most 60 s).
pub(crate) fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_healthy_canary_passes_every_stage_with_hooks_in_order() {
    let world = World::new();
    let server = canary(&world, vec![Reply::healthy(VERSION)]);
    let run = world
        .shipgate()
        .actions()
        .args(["--endpoint", &server.url("/health")])
        .args(["--expect-version", VERSION])
        .args(stages(&["canary:5:1s", "progressive:50:1s", "full:100:1s"]))
        .env("GITHUB_SERVER_URL", "https://github.com")
        .env("GITHUB_REPOSITORY", "octo/app")
        .env("GITHUB_RUN_ID", "4242")
        .run();
    run.expect_code(0);
    assert_eq!(run.outputs["result"], "pass");
    assert_eq!(run.outputs["failed-stage"], "");
    // In a workflow run the summary points at the log's artifact, not a path in the container.
    assert!(
        run.summary.contains(&format!(
            "Decision log: artifact [`rollout-logs-{ID}`](https://github.com/octo/app/actions/runs/4242#artifacts)"
        )),
        "{}",
        run.summary
    );
    assert_eq!(run.outputs["reason"], "");

    let lines = world.hook_lines();
    assert_eq!(lines.len(), 3, "{lines:?}");
    for (line, (stage, weight)) in
        lines
            .iter()
            .zip([("canary", "5"), ("progressive", "50"), ("full", "100")])
    {
        assert!(line.starts_with("stage-hook.sh "), "{line}");
        assert_eq!(field(line, "event"), "stage");
        assert_eq!(field(line, "stage"), stage);
        assert_eq!(field(line, "weight"), weight);
        assert_eq!(field(line, "version"), VERSION);
        assert_eq!(field(line, "id"), ID);
        assert_eq!(field(line, "previous"), PREVIOUS);
    }

    let result = world.result();
    assert_eq!(result["schema_version"], 1);
    assert_eq!(result["command"], "rollout");
    assert_eq!(result["result"], "pass");
    assert_eq!(result["version"], VERSION);
    assert_eq!(result["previous_version"], PREVIOUS);
    assert_eq!(result["failed_stage"], Value::Null);
    assert_eq!(result["rollback"]["ran"], false);
    assert!(result["timestamp"].as_str().is_some());
    assert!(result["duration_ms"].as_u64().is_some());
    let recorded = result["stages"].as_array().expect("stages");
    assert_eq!(recorded.len(), 3);
    for (stage, name) in recorded.iter().zip(["canary", "progressive", "full"]) {
        assert_eq!(stage["name"], name);
        assert_eq!(stage["status"], "passed");
        assert_eq!(stage["planned_duration_ms"], 1000);
        assert!(stage["elapsed_ms"].as_u64().expect("elapsed") >= 1000);
        assert!(stage["samples"].as_u64().expect("samples") >= 3);
        assert_eq!(stage["success_rate"], 100.0);
        assert!(stage["p95_ms"].as_f64().is_some());
        let gates: Vec<&str> = stage["verdicts"]
            .as_array()
            .expect("verdicts")
            .iter()
            .map(|v| v["gate"].as_str().expect("gate"))
            .collect();
        assert_eq!(
            gates,
            [
                "consecutive-failures",
                "samples",
                "success-rate",
                "p95-latency"
            ]
        );
        assert!(
            stage["verdicts"]
                .as_array()
                .expect("verdicts")
                .iter()
                .all(|v| v["status"] == "pass")
        );
    }
    assert_eq!(result["stages"][1]["weight"], 50);
    let hooks = result["hooks"].as_array().expect("hooks");
    assert_eq!(hooks.len(), 3);
    assert!(
        hooks
            .iter()
            .all(|h| h["ok"] == true && h["attempts"][0]["exit_code"] == 0)
    );

    let log_file = PathBuf::from(result["log_file"].as_str().expect("log file"));
    assert!(world.path().join(&log_file).exists() || log_file.exists());
    let log = world.log();
    assert!(log.contains("canary 5% canary http://127.0.0.1:"), "{log}");
    assert!(log.contains("ok in "), "{log}");
    assert!(log.contains("verdict full success-rate: Pass"), "{log}");
    assert!(log.contains("window progressive"), "{log}");

    assert!(
        run.summary
            .contains("Rollout of `1.4.0` passed every stage"),
        "{}",
        run.summary
    );
    assert!(
        run.summary.contains("| `progressive` | 50% |"),
        "{}",
        run.summary
    );
    // Charts of every stage that ran, each stage's gate as the line.
    for chart in ["Success rate per stage (%)", "p95 latency per stage (ms)"] {
        assert!(
            run.summary.contains(&format!(
                "```mermaid\nxychart-beta\n    title \"{chart}, the line is the gate\"\n    x-axis [\"canary 5%\", \"progressive 50%\", \"full 100%\"]\n"
            )),
            "{}",
            run.summary
        );
    }
    assert!(
        run.visible_stderr().contains("canary 5% · "),
        "live progress on stderr:\n{}",
        run.stderr
    );

    // A re-run of the same deployment changes nothing: no traffic goes back to 5%.
    let again = world
        .shipgate()
        .actions()
        .args(["--endpoint", &server.url("/health")])
        .args(stages(&["canary:5:1s", "full:100:1s"]))
        .run();
    again.expect_code(0);
    assert_eq!(again.outputs["result"], "pass");
    assert!(
        again.stderr.contains("already rolled out"),
        "{}",
        again.stderr
    );
    assert_eq!(world.hook_lines().len(), 3, "no hook ran again");
}

#[test]
fn a_canary_answering_500s_is_rolled_back_and_the_reason_says_so() {
    let world = World::new();
    let server = canary(&world, vec![Reply::error()]);
    let run = world
        .shipgate()
        .actions()
        .args(["--endpoint", &server.url("/health")])
        .args(stages(&["canary:5:30s", "full:100:1s"]))
        .run();
    run.expect_code(1);
    assert_eq!(run.outputs["result"], "rolled_back");
    assert_eq!(run.outputs["failed-stage"], "canary");
    let reason = &run.outputs["reason"];
    assert!(reason.contains("HTTP 500"), "{reason}");
    assert!(reason.contains("success rate 0%"), "{reason}");

    let calls = world.hook_calls();
    assert_eq!(
        calls,
        [
            ("stage-hook.sh".to_string(), "canary".to_string()),
            ("rollback-hook.sh".to_string(), "rollback".to_string())
        ]
    );
    let rollback = &world.hook_lines()[1];
    assert_eq!(field(rollback, "event"), "rollback");
    assert_eq!(field(rollback, "weight"), "0");
    assert_eq!(field(rollback, "failed"), "canary");
    assert_eq!(field(rollback, "previous"), PREVIOUS);

    let result = world.result();
    assert_eq!(result["result"], "rolled_back");
    assert_eq!(result["cause"], "gate");
    assert_eq!(result["stages"][0]["status"], "failed");
    assert_eq!(result["stages"][1]["status"], "not_run");
    assert_eq!(
        result["stages"][0]["causes"][0]["cause"],
        "HTTP 500, status `error`"
    );
    assert_eq!(result["rollback"]["ran"], true);
    assert_eq!(result["rollback"]["ok"], true);
    assert_eq!(result["rollback"]["verification"]["ok"], true);
    // A breach stops the stage at once, not at the end of its 30 s.
    assert!(result["stages"][0]["elapsed_ms"].as_u64().expect("elapsed") < 30_000);

    assert!(
        run.stderr
            .contains("::error title=shipgate rollout::rolled back `1.4.0`"),
        "{}",
        run.stderr
    );
    assert!(
        run.summary.contains("rolled back at stage `canary`"),
        "{}",
        run.summary
    );
    assert!(
        run.summary.contains("| `full` | 100% | — / 1s | 0 |"),
        "{}",
        run.summary
    );
    // Only the stage that ran is charted.
    assert!(
        run.summary.contains("    x-axis [\"canary 5%\"]\n"),
        "{}",
        run.summary
    );
    assert!(world.log().contains("ROLLBACK: stage `canary`"));
}

#[test]
fn a_slow_canary_breaches_the_p95_gate() {
    let world = World::new();
    let server = canary(
        &world,
        vec![Reply::slow(
            Duration::from_millis(300),
            Reply::healthy(VERSION),
        )],
    );
    let run = world
        .shipgate()
        .args(["--format", "json", "--endpoint", &server.url("/health")])
        .args(["--max-p95", "100ms"])
        .args(stages(&["canary:5:30s"]))
        .run();
    run.expect_code(1);
    let result = run.json();
    assert_eq!(result["failed_gate"], "p95-latency");
    let reason = result["reason"].as_str().expect("reason");
    assert!(reason.contains("p95 latency"), "{reason}");
    assert!(reason.contains("≥ 100ms"), "{reason}");
    assert!(result["stages"][0]["p95_ms"].as_f64().expect("p95") >= 300.0);
}

#[test]
fn a_flapping_canary_hits_the_consecutive_failure_limit() {
    let world = World::new();
    let ok = Reply::healthy(VERSION);
    let server = canary(
        &world,
        vec![
            ok.clone(),
            ok,
            Reply::error(),
            Reply::error(),
            Reply::error(),
        ],
    );
    let run = world
        .shipgate()
        .args(["--format", "json", "--endpoint", &server.url("/health")])
        // 40% of probes pass: only the consecutive-failure rule can catch it.
        .args(["--success-rate", "30", "--min-samples", "2"])
        .args(stages(&["canary:5:30s"]))
        .run();
    run.expect_code(1);
    let result = run.json();
    assert_eq!(result["failed_gate"], "consecutive-failures");
    let reason = result["reason"].as_str().expect("reason");
    assert!(
        reason.contains("failed 3 probes in a row (limit 3)"),
        "{reason}"
    );
    assert!(reason.contains("last: HTTP 500"), "{reason}");
}

#[test]
fn refused_and_dropped_connections_fail_and_never_pass() {
    let stable = HealthServer::start(vec![Reply::healthy(PREVIOUS)]);
    let closed = crate::support::watchdog::free_port();
    let world = World::new();
    let run = world
        .shipgate()
        .args(["--format", "json"])
        .args(["--endpoint", &format!("http://127.0.0.1:{closed}/health")])
        .args(["--verify-endpoint", &stable.url("/health")])
        .args(stages(&["canary:5:30s"]))
        .run();
    run.expect_code(1);
    let reason = run.json()["reason"].as_str().expect("reason").to_string();
    assert!(reason.contains("connection refused"), "{reason}");
    assert!(
        !reason.contains("for url"),
        "errors are reported without their URL: {reason}"
    );

    let world = World::new();
    let dropping = canary(&world, vec![Reply::Drop]);
    let run = world
        .shipgate()
        .args(["--format", "json", "--endpoint", &dropping.url("/health")])
        .args(stages(&["canary:5:30s"]))
        .run();
    run.expect_code(1);
    let reason = run.json()["reason"].as_str().expect("reason").to_string();
    assert!(reason.contains("connection dropped"), "{reason}");
}

#[test]
fn a_canary_that_never_answers_is_no_data_never_a_pass() {
    let world = World::new();
    let server = canary(&world, vec![Reply::Hang]);
    let run = world
        .shipgate()
        .args(["--format", "json", "--endpoint", &server.url("/health")])
        .args(["--probe-timeout", "60s"])
        .args(stages(&["canary:5:1s"]))
        .run();
    run.expect_code(1);
    let result = run.json();
    assert_eq!(result["result"], "rolled_back");
    assert_eq!(result["failed_gate"], "samples");
    let reason = result["reason"].as_str().expect("reason");
    assert!(reason.contains("no data: 0 samples"), "{reason}");
    assert_eq!(result["stages"][0]["samples"], 0);
    assert!(
        result["stages"][0]["verdicts"]
            .as_array()
            .expect("verdicts")
            .iter()
            .all(|v| v["status"] != "pass" || v["gate"] == "consecutive-failures")
    );
}

#[test]
fn degraded_is_its_own_state_handled_per_setting() {
    let world = World::new();
    let server = canary(&world, vec![Reply::degraded(VERSION)]);
    let run = world
        .shipgate()
        .actions()
        .args(["--endpoint", &server.url("/health"), "--degraded", "warn"])
        .args(stages(&["canary:5:1s"]))
        .run();
    run.expect_code(0);
    assert!(
        run.stderr.contains(
            "::warning title=shipgate rollout::stage `canary`: the canary reported warn/Degraded in"
        ),
        "{}",
        run.stderr
    );
    let result = world.result();
    let stage = &result["stages"][0];
    assert_eq!(stage["degraded"], stage["samples"]);
    assert!(run.summary.contains("degraded)"), "{}", run.summary);

    let world = World::new();
    let server = canary(&world, vec![Reply::degraded(VERSION)]);
    let run = world
        .shipgate()
        .args(["--format", "json", "--endpoint", &server.url("/health")])
        .args(stages(&["canary:5:30s"]))
        .run();
    run.expect_code(1);
    let reason = run.json()["reason"].as_str().expect("reason").to_string();
    assert!(reason.contains("status `Degraded` (degraded)"), "{reason}");
}

#[test]
fn a_canary_reporting_another_version_is_caught() {
    let world = World::new();
    let server = canary(&world, vec![Reply::healthy(PREVIOUS)]);
    let run = world
        .shipgate()
        .args(["--format", "json", "--endpoint", &server.url("/health")])
        .args(["--expect-version", "v1.4.0"])
        .args(stages(&["canary:5:30s"]))
        .run();
    run.expect_code(1);
    let reason = run.json()["reason"].as_str().expect("reason").to_string();
    assert!(
        reason.contains("version `1.3.2` (expected `v1.4.0`)"),
        "{reason}"
    );
}

#[test]
fn a_failing_stage_hook_is_retried_then_rolled_back() {
    let world = World::new();
    world.hook(
        "stage-hook.sh",
        "if [ \"$SHIPGATE_STAGE\" = progressive ]; then echo 'cannot reach the load balancer' >&2; exit 3; fi",
    );
    let server = canary(&world, vec![Reply::healthy(VERSION)]);
    let run = world
        .shipgate()
        .actions()
        .args(["--endpoint", &server.url("/health"), "--hook-retries", "1"])
        .args(stages(&["canary:5:1s", "progressive:50:1s", "full:100:1s"]))
        .run();
    run.expect_code(1);
    assert_eq!(run.outputs["failed-stage"], "progressive");
    let reason = &run.outputs["reason"];
    assert!(
        reason.contains(
            "the stage hook failed for stage `progressive` (50%): exit code 3 (2 attempts)"
        ),
        "{reason}"
    );
    let stages_called: Vec<String> = world.hook_calls().into_iter().map(|(_, s)| s).collect();
    assert_eq!(
        stages_called,
        ["canary", "progressive", "progressive", "rollback"]
    );
    let result = world.result();
    assert_eq!(result["cause"], "hook");
    assert_eq!(result["stages"][0]["status"], "passed");
    assert_eq!(result["stages"][1]["status"], "failed");
    assert_eq!(result["hooks"][1]["attempts"][1]["exit_code"], 3);
    assert!(
        run.summary.contains("| ❌ the stage hook failed |"),
        "{}",
        run.summary
    );
    assert!(
        world
            .log()
            .contains("[stderr] cannot reach the load balancer"),
        "hook output kept in the log"
    );
}

#[test]
fn a_hanging_stage_hook_times_out_and_is_rolled_back() {
    let world = World::new();
    world.hook("stage-hook.sh", "sleep 30");
    let server = canary(&world, vec![Reply::healthy(VERSION)]);
    let run = world
        .shipgate()
        .args(["--format", "json", "--endpoint", &server.url("/health")])
        .args(["--hook-timeout", "300ms"])
        .args(stages(&["canary:5:1s"]))
        .run();
    run.expect_code(1);
    let result = run.json();
    let reason = result["reason"].as_str().expect("reason");
    assert!(
        reason.contains("the stage hook failed for stage `canary` (5%): timed out after"),
        "{reason}"
    );
    assert_eq!(result["hooks"][0]["attempts"][0]["timed_out"], true);
    assert_eq!(
        world.hook_calls().last().map(|c| c.1.as_str()),
        Some("rollback")
    );
}

#[test]
fn sigterm_mid_stage_runs_the_rollback_before_exiting() {
    let world = World::new();
    let server = canary(&world, vec![Reply::healthy(VERSION)]);
    let running = world
        .shipgate()
        .actions()
        .args(["--endpoint", &server.url("/health")])
        .args(stages(&["canary:5:120s", "full:100:1s"]))
        .spawn();
    eventually("the canary stage to be probed", || {
        world.log().contains("canary 5% canary http://")
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(running.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("send SIGTERM");
    let run = running.wait_at_most(Duration::from_secs(60));
    run.expect_code(1);
    assert_eq!(
        world.hook_calls(),
        [
            ("stage-hook.sh".to_string(), "canary".to_string()),
            ("rollback-hook.sh".to_string(), "rollback".to_string())
        ],
        "the rollback hook ran before shipgate exited"
    );
    let result = world.result();
    assert_eq!(result["result"], "rolled_back");
    assert_eq!(result["cause"], "signal");
    assert_eq!(result["failed_stage"], "canary");
    assert!(
        result["reason"]
            .as_str()
            .expect("reason")
            .contains("cancelled by SIGTERM during stage `canary`"),
        "{result}"
    );
    assert_eq!(result["rollback"]["verification"]["ok"], true);
    assert_eq!(run.outputs["result"], "rolled_back");
    assert!(run.summary.contains("| `canary` | 5% |"), "{}", run.summary);
    assert!(run.summary.contains("| ❌ cancelled |"), "{}", run.summary);
}

#[test]
fn a_failing_rollback_exits_with_its_own_code_and_a_loud_annotation() {
    let world = World::new();
    world.hook("rollback-hook.sh", "exit 1");
    let server = canary(&world, vec![Reply::error()]);
    let run = world
        .shipgate()
        .actions()
        .args(["--endpoint", &server.url("/health")])
        .args(stages(&["canary:5:30s"]))
        .run();
    run.expect_code(5);
    assert_eq!(run.outputs["result"], "rollback_failed");
    assert!(
        run.stderr
            .contains("::error title=shipgate rollout — ROLLBACK FAILED::ACT NOW"),
        "{}",
        run.stderr
    );
    assert!(run.summary.contains("ROLLBACK FAILED"), "{}", run.summary);
    let result = world.result();
    assert_eq!(result["rollback"]["ran"], true);
    assert_eq!(result["rollback"]["hook_ok"], false);
    assert_eq!(result["rollback"]["ok"], false);

    // The hook "succeeds" but the service stays unhealthy: that is a failed rollback too.
    let world = World::new();
    let server = HealthServer::start(vec![Reply::error()]);
    let run = world
        .shipgate()
        .args(["--format", "json", "--endpoint", &server.url("/health")])
        .args(["--verify-timeout", "1s"])
        .args(stages(&["canary:5:30s"]))
        .run();
    run.expect_code(5);
    let result = run.json();
    assert_eq!(result["rollback"]["hook_ok"], true);
    assert_eq!(result["rollback"]["verification"]["ok"], false);
    assert!(
        result["rollback"]["verification"]["detail"]
            .as_str()
            .expect("detail")
            .contains("still unhealthy"),
        "{result}"
    );
}

#[test]
fn webhooks_get_the_payload_with_retries_and_their_url_never_leaks() {
    let token = "T0-s3cr3t-w3bh00k-t0k3n";
    let receiver = HealthServer::start(vec![
        Reply::json(503, r#"{"error":"busy"}"#),
        Reply::json(200, r#"{"ok":true}"#),
    ]);
    let world = World::new();
    let server = canary(&world, vec![Reply::healthy(VERSION)]);
    let mut cmd = Shipgate::new(world.path());
    let run = cmd
        .actions()
        .input("hook-url", &receiver.url(&format!("/hooks/{token}")))
        .args([
            "rollout",
            "--interval",
            "50ms",
            "--min-samples",
            "3",
            "--max-p95",
            "10s",
            "--hook-retries",
            "1",
        ])
        .args(["--endpoint", &server.url("/health")])
        .args(stages(&["canary:5:1s", "full:100:1s"]))
        .run();
    run.expect_code(0);
    let posts = receiver.requests();
    assert_eq!(posts.len(), 4, "two attempts per stage (503, then 200)");
    for (post, stage) in posts.iter().zip(["canary", "canary", "full", "full"]) {
        assert_eq!(post.method, "POST");
        assert_eq!(post.header("x-shipgate-event"), Some("stage"));
        assert_eq!(post.header("content-type"), Some("application/json"));
        let body = post.json();
        assert_eq!(body["event"], "stage");
        assert_eq!(body["stage"], stage);
        assert_eq!(body["version"], VERSION);
        assert_eq!(body["previous_version"], PREVIOUS);
        assert_eq!(body["deployment_id"], ID);
        assert_eq!(body["environment"], "production");
    }
    assert_eq!(posts[2].json()["weight"], 100);
    let result = world.result();
    assert_eq!(result["hooks"][0]["kind"], "webhook");
    assert_eq!(result["hooks"][0]["attempts"][0]["http_status"], 503);
    assert_eq!(result["hooks"][0]["attempts"][1]["http_status"], 200);
    assert!(
        run.stderr.contains("::add-mask::"),
        "the webhook URL is masked"
    );
    let files = read_tree(&world.path().join(".shipgate"));
    assert_no_secret(
        token,
        run.everything()
            .iter()
            .map(|(n, t)| (n.clone(), t.as_str()))
            .chain(files.iter().map(|(n, t)| (n.clone(), t.as_str()))),
    );
}

#[test]
fn a_canary_worse_than_the_baseline_fails() {
    let world = World::new();
    let ok = Reply::healthy(VERSION);
    let server = canary(&world, vec![ok.clone(), ok.clone(), ok, Reply::error()]);
    let stable = HealthServer::start(vec![Reply::healthy(PREVIOUS)]);
    let run = world
        .shipgate()
        .args(["--format", "json", "--endpoint", &server.url("/health")])
        .args(["--baseline", &stable.url("/health")])
        // 75% of canary probes pass: only the comparison with the baseline can catch it.
        .args(["--success-rate", "50", "--min-samples", "4"])
        .args(stages(&["canary:5:30s"]))
        .run();
    run.expect_code(1);
    let result = run.json();
    assert_eq!(result["failed_gate"], "baseline");
    let reason = result["reason"].as_str().expect("reason");
    assert!(reason.contains("× the baseline's 0%"), "{reason}");
    assert!(
        result["stages"][0]["baseline"]["samples"]
            .as_u64()
            .expect("baseline samples")
            >= 4
    );
    // After the rollback, health is checked on the stable endpoint.
    assert_eq!(
        result["rollback"]["verification"]["endpoints"][0]["endpoint"],
        stable.url("/health")
    );
}

#[test]
fn a_failing_command_probe_rolls_back() {
    let world = World::new();
    let server = canary(&world, vec![Reply::healthy(VERSION)]);
    let run = world
        .shipgate()
        .args(["--format", "json", "--endpoint", &server.url("/health")])
        .args(["--probe-command", "sh -c 'exit 7'"])
        .args(stages(&["canary:5:30s"]))
        .run();
    run.expect_code(1);
    let result = run.json();
    let reason = result["reason"].as_str().expect("reason").to_string();
    assert!(
        reason.contains("probe `sh -c exit 7`: exit code 7"),
        "{reason}"
    );
    // The rollback ran: its hook was called after the canary's, and rollout.json says so.
    assert_eq!(result["result"], "rolled_back");
    assert_eq!(result["rollback"]["ran"], true);
    assert_eq!(result["rollback"]["ok"], true);
    assert_eq!(
        world.hook_calls(),
        [
            ("stage-hook.sh".to_string(), "canary".to_string()),
            ("rollback-hook.sh".to_string(), "rollback".to_string())
        ]
    );
    assert!(world.rolled_back().exists(), "the rollback hook ran");
    assert_eq!(world.result()["result"], "rolled_back");
}

#[test]
fn stages_and_per_stage_thresholds_come_from_the_config_file() {
    let world = World::new();
    let server = canary(
        &world,
        vec![Reply::slow(
            Duration::from_millis(200),
            Reply::healthy(VERSION),
        )],
    );
    std::fs::write(
        world.path().join("shipgate.yml"),
        format!(
            "rollout:\n  endpoints: [{}]\n  interval: 50ms\n  min-samples: 3\n  stages:\n    - name: canary\n      weight: 5\n      duration: 1s\n      max-p95: 5s\n    - name: full\n      weight: 100%\n      duration: 30s\n      max-p95: 100ms\n",
            server.url("/health")
        ),
    )
    .expect("config");
    let mut cmd = Shipgate::new(world.path());
    let run = cmd
        .args(["--format", "json", "rollout"])
        .args([
            "--hook",
            &world.path().join("stage-hook.sh").display().to_string(),
        ])
        .args([
            "--rollback-hook",
            &world.path().join("rollback-hook.sh").display().to_string(),
        ])
        .run();
    run.expect_code(1);
    let result = run.json();
    assert_eq!(result["stages"][0]["status"], "passed");
    assert_eq!(result["stages"][0]["thresholds"]["max_p95_ms"], 5000);
    assert_eq!(result["failed_stage"], "full");
    assert_eq!(result["failed_gate"], "p95-latency");
    assert_eq!(result["stages"][1]["weight"], 100);
}

#[test]
fn a_paused_stage_waits_for_resume_while_the_canary_is_watched() {
    let world = World::new();
    let server = canary(&world, vec![Reply::healthy(VERSION)]);
    let running = world
        .shipgate()
        .args(["--endpoint", &server.url("/health")])
        .args(["--pause-before", "full", "--approval-timeout", "2m"])
        .args(stages(&["canary:5:1s", "full:100:1s"]))
        .spawn();
    let pause_file = world.state_dir().join("rollout-pause.json");
    eventually("the rollout to wait for approval", || pause_file.exists());
    assert_eq!(world.hook_calls().len(), 1, "the full stage waits");
    let probes_before = server.count();
    eventually("the held canary to be probed", || {
        server.count() > probes_before + 2
    });

    let resume = Shipgate::new(world.path())
        .args(["rollout", "--resume", "--approver", "alice"])
        .run();
    resume.expect_code(0);
    assert!(
        resume.stderr.contains("approved stage `full`"),
        "{}",
        resume.stderr
    );

    let run = running.wait_at_most(Duration::from_secs(60));
    run.expect_code(0);
    let stages_called: Vec<String> = world.hook_calls().into_iter().map(|(_, s)| s).collect();
    assert_eq!(stages_called, ["canary", "full"]);
    let result = world.result();
    assert_eq!(result["stages"][1]["approval"]["approved_by"], "alice");
    assert!(!pause_file.exists());
    assert!(
        !world.state_dir().join("rollout-approval.json").exists(),
        "an approval is used once"
    );
}

#[test]
fn a_pause_past_its_deadline_rolls_back() {
    let world = World::new();
    let server = canary(&world, vec![Reply::healthy(VERSION)]);
    let run = world
        .shipgate()
        .args(["--format", "json", "--endpoint", &server.url("/health")])
        // Multi-line inputs, as a workflow writes them.
        .input("pause-before", "full\n")
        .input(
            "stages",
            "# name:weight:duration\ncanary:5:1s\n\nfull:100:1s\n",
        )
        .args(["--approval-timeout", "500ms"])
        .run();
    run.expect_code(1);
    let result = run.json();
    assert_eq!(result["cause"], "approval_deadline");
    assert_eq!(result["failed_stage"], "full");
    assert!(
        result["reason"]
            .as_str()
            .expect("reason")
            .contains("was not approved within 500ms"),
        "{result}"
    );
    let stages_called: Vec<String> = world.hook_calls().into_iter().map(|(_, s)| s).collect();
    assert_eq!(stages_called, ["canary", "rollback"]);
}

#[test]
fn dry_run_prints_the_plan_and_runs_nothing() {
    let world = World::new();
    let run = Shipgate::new(world.path())
        .actions()
        .args(["--format", "json", "rollout", "--dry-run"])
        .args([
            "--endpoint",
            "http://127.0.0.1:9/health",
            "--hook",
            "./stage-hook.sh",
        ])
        .args(["--hook-timeout", "1m", "--hook-retries", "0"])
        .run();
    run.expect_code(0);
    let plan = run.json();
    assert_eq!(plan["result"], "dry_run");
    assert_eq!(plan["version"], VERSION);
    let timeline = plan["timeline"].as_array().expect("timeline");
    let names: Vec<&str> = timeline
        .iter()
        .map(|s| s["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        ["canary", "progressive", "full"],
        "seed 004's default stages"
    );
    assert_eq!(timeline[1]["starts_after_ms"], 300_000);
    assert_eq!(timeline[2]["ends_after_ms"], 1_800_000);
    // Stage hook at its slowest (1m) + the 5-minute stage + the rollback hook at its slowest (1m).
    assert_eq!(timeline[0]["worst_case_exposure_ms"], 420_000);
    assert_eq!(timeline[0]["dead_canary_detected_within_ms"], 30_000);
    assert_eq!(plan["stages"][0]["thresholds"]["success_rate"], 99.0);
    assert_eq!(plan["stages"][0]["thresholds"]["max_p95_ms"], 250);
    assert!(
        run.stderr.contains("5% of traffic for up to 7m"),
        "{}",
        run.stderr
    );
    assert!(
        run.summary.contains("Rollout plan for `1.4.0` (dry run)"),
        "{}",
        run.summary
    );
    assert!(world.hook_calls().is_empty(), "no hook ran");
    assert!(!world.state_dir().join("rollout.json").exists());
}

#[test]
fn bad_inputs_are_usage_errors_naming_the_value() {
    let world = World::new();
    let run = world
        .shipgate()
        .args(["--endpoint", "http://127.0.0.1:9/health"])
        .args(stages(&["canary:150:1m"]))
        .run();
    run.expect_code(2);
    assert!(
        run.stderr.contains("`150` is not a percentage"),
        "{}",
        run.stderr
    );

    let run = world.shipgate().args(stages(&["canary:5:1m"])).run();
    run.expect_code(2);
    assert!(run.stderr.contains("nothing to monitor"), "{}", run.stderr);

    let run = world
        .shipgate()
        .args(["--endpoint", "ftp://example/health"])
        .run();
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("`ftp://example/health` is not http or https"),
        "{}",
        run.stderr
    );

    let run = world
        .shipgate()
        .args(["--endpoint", "http://127.0.0.1:9/health"])
        .args(["--rollback-hook", "./roll-back.sh"])
        .run();
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("the rollback hook command `./roll-back.sh` is not an executable file"),
        "a typo is caught before any traffic moves:\n{}",
        run.stderr
    );

    let run = Shipgate::new(world.path())
        .args(["rollout", "--resume"])
        .run();
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("no rollout of deployment `42-abcdef0` is waiting"),
        "{}",
        run.stderr
    );

    let run = world
        .shipgate()
        .args([
            "--endpoint",
            "http://127.0.0.1:9/health",
            "--min-samples",
            "100",
        ])
        .args(stages(&["canary:5:1s"]))
        .run();
    run.expect_code(2);
    assert!(
        run.stderr.contains("could only end with no data"),
        "{}",
        run.stderr
    );
    assert!(world.hook_calls().is_empty());
}

#[test]
fn a_custom_health_pointer_decides_and_url_credentials_never_leak() {
    let world = World::new();
    let server = canary(
        &world,
        vec![Reply::json(
            200,
            r#"{"data":{"state":"SERVING"},"version":"1.4.0"}"#,
        )],
    );
    let password = "s3cr3t-pr0be-pw";
    let endpoint = server
        .url("/health")
        .replace("http://", &format!("http://probe:{password}@"));
    let run = world
        .shipgate()
        .actions()
        .args(["--endpoint", &endpoint])
        .args([
            "--health-pointer",
            "/data/state",
            "--health-accept",
            "serving",
        ])
        .args(stages(&["canary:5:1s"]))
        .run();
    run.expect_code(0);
    let request = &server.requests()[0];
    assert!(
        request
            .header("authorization")
            .is_some_and(|v| v.starts_with("Basic ")),
        "the URL's credentials are used"
    );
    let files = read_tree(&world.path().join(".shipgate"));
    assert_no_secret(
        password,
        run.everything()
            .iter()
            .map(|(n, t)| (n.clone(), t.as_str()))
            .chain(files.iter().map(|(n, t)| (n.clone(), t.as_str()))),
    );

    // A value the pointer does not accept fails the probe (after the rollback, the stable
    // version answers `SERVING`).
    let world = World::new();
    let server = HealthServer::start(vec![Reply::json(200, r#"{"data":{"state":"DRAINING"}}"#)]);
    server.switch_when_exists(
        world.rolled_back(),
        vec![Reply::json(200, r#"{"data":{"state":"serving"}}"#)],
    );
    let run = world
        .shipgate()
        .args(["--format", "json", "--endpoint", &server.url("/health")])
        .args([
            "--health-pointer",
            "/data/state",
            "--health-accept",
            "serving",
        ])
        .args(stages(&["canary:5:30s"]))
        .run();
    run.expect_code(1);
    let reason = run.json()["reason"].as_str().expect("reason").to_string();
    assert!(reason.contains("`/data/state` is `DRAINING`"), "{reason}");
}

#[test]
fn a_stage_approved_ahead_of_time_does_not_wait() {
    let world = World::new();
    let approve = Shipgate::new(world.path())
        .args(["rollout", "--resume", "--approve-stage", "full"])
        .args(["--approver", "release-manager"])
        .run();
    approve.expect_code(0);
    assert!(
        approve.stderr.contains("no rollout is waiting yet"),
        "{}",
        approve.stderr
    );
    let server = canary(&world, vec![Reply::healthy(VERSION)]);
    let run = world
        .shipgate()
        .args(["--format", "json", "--endpoint", &server.url("/health")])
        // The deadline would end the rollout if the approval were not taken at once.
        .args(["--pause-before", "full", "--approval-timeout", "1ms"])
        .args(stages(&["canary:5:1s", "full:100:1s"]))
        .run();
    run.expect_code(0);
    assert_eq!(
        run.json()["stages"][1]["approval"]["approved_by"],
        "release-manager"
    );
}

#[test]
fn hooks_never_see_the_action_inputs_or_runner_tokens() {
    let world = World::new();
    let server = canary(&world, vec![Reply::healthy(VERSION)]);
    let env_file = world.path().join("hook-env.txt");
    world.hook("stage-hook.sh", &format!("env > '{}'", env_file.display()));
    let token = "ghs_hookMustNotSeeThis0123456789";
    let runtime = "runtime-token-hook-must-not-see";
    world
        .shipgate()
        .actions()
        .input("github-token", token)
        .env("ACTIONS_RUNTIME_TOKEN", runtime)
        .args(["--endpoint", &server.url("/health")])
        .args(stages(&["canary:5:1s"]))
        .run()
        .expect_code(0);
    let env = std::fs::read_to_string(&env_file).expect("the hook wrote its environment");
    assert!(env.contains("SHIPGATE_WEIGHT=5"), "{env}");
    assert!(
        !env.contains(token),
        "the hook saw the GitHub token:\n{env}"
    );
    assert!(
        !env.contains(runtime),
        "the hook saw the runtime token:\n{env}"
    );
    assert!(
        !env.lines().any(|l| l.starts_with("INPUT_")),
        "the hook saw action inputs:\n{env}"
    );
}

/// Issue 18, item 1: `--approval-timeout 99999999999h` panicked (exit 101) at the pause with the
/// canary's 5% already shifted, no rollback hook and no `rollout.json`; `--dry-run` accepted it.
/// Every duration and count is now bounded when it is read, before anything runs.
#[test]
fn absurd_durations_and_counts_are_usage_errors_before_any_traffic_moves() {
    let world = World::new();
    let server = canary(&world, vec![Reply::healthy(VERSION)]);
    let issue_command = |dry_run: bool| {
        let mut cmd = Shipgate::new(world.path());
        cmd.args(["--deployment-id", "x", "rollout"])
            .args(["--endpoint", &server.url("/health")])
            .args(["--hook", "./stage-hook.sh"])
            .args(["--version", "2.0.0", "--previous-version", "1.0.0"])
            .args(["--min-samples", "3"])
            .args(stages(&["canary:5:2s:200ms", "full:100:2s:200ms"]))
            .args(["--pause-before", "full"])
            .args(["--approval-timeout", "99999999999h"]);
        if dry_run {
            cmd.args(["--dry-run"]);
        }
        cmd.run()
    };
    for dry_run in [false, true] {
        let run = issue_command(dry_run);
        run.expect_code(2);
        assert!(
            run.stderr.contains("`99999999999h`") && run.stderr.contains("maximum `30d`"),
            "the error names the value and the limit (dry run: {dry_run}):\n{}",
            run.stderr
        );
    }
    assert!(world.hook_calls().is_empty(), "no traffic moved");
    assert!(!world.path().join(".shipgate/x/rollout.json").exists());

    // The same bound through an action input, a stage flag and shipgate.yml.
    let run = world
        .shipgate()
        .input("approval-timeout", "99999999999h")
        .args(["--endpoint", &server.url("/health")])
        .run();
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("input `approval-timeout` has the value `99999999999h`"),
        "{}",
        run.stderr
    );
    let run = world
        .shipgate()
        .args(["--endpoint", &server.url("/health")])
        .args(stages(&["canary:5:40d"]))
        .run();
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("`40d` is longer than the maximum `30d`"),
        "{}",
        run.stderr
    );
    std::fs::write(
        world.path().join("shipgate.yml"),
        "rollout:\n  verify-timeout: 18446744073709551615\n",
    )
    .expect("config");
    let run = world
        .shipgate()
        .args(["--endpoint", &server.url("/health")])
        .run();
    run.expect_code(2);
    assert!(run.stderr.contains("maximum `30d`"), "{}", run.stderr);
    std::fs::remove_file(world.path().join("shipgate.yml")).expect("config removed");

    for (flag, value) in [
        ("--consecutive-failures", "4294967295"),
        ("--min-samples", "18446744073709551615"),
        ("--verify-successes", "4000000000"),
    ] {
        let run = world
            .shipgate()
            .args(["--endpoint", &server.url("/health")])
            .args([flag, value])
            .run();
        run.expect_code(2);
        assert!(
            run.stderr
                .contains(&format!("is `{value}`, more than the maximum `1000000`")),
            "{flag} {value}:\n{}",
            run.stderr
        );
    }
    assert!(world.hook_calls().is_empty(), "no traffic moved");
    assert!(!world.state_dir().join("rollout.json").exists());
}

/// `shipgate record` for this world's deployment, as the `if: always()` record job runs it.
fn record_after(world: &World) -> Value {
    let run = Shipgate::new(world.path())
        .args(["--format", "json", "record"])
        .run();
    run.expect_code(0);
    let record = crate::record::read_record(&world.path().join(".shipgate"), ID);
    crate::record::assert_valid(&record);
    record
}

/// Sends `signal` to a running shipgate unless it has exited.
fn signal(running: &mut crate::support::cli::Running, signal: nix::sys::signal::Signal) -> bool {
    if running.exited() {
        return false;
    }
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(running.pid() as i32), signal);
    true
}

/// Waits up to `limit` for the process to exit on its own.
fn exits_within(running: &mut crate::support::cli::Running, limit: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if running.exited() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    running.exited()
}

/// Issue 18, item 1: a bug (panic) after the first hook shifted traffic still runs the rollback
/// hook and writes `rollout.json`, instead of exit 101 with the canary's weight left in place.
/// The panic comes from the debug-only test hook `SHIPGATE_TEST_PANIC_AT_STAGE`.
#[test]
fn a_panic_after_traffic_moved_still_rolls_back_and_writes_the_record() {
    let world = World::new();
    let server = canary(&world, vec![Reply::healthy(VERSION)]);
    let run = world
        .shipgate()
        .actions()
        .env("SHIPGATE_TEST_PANIC_AT_STAGE", "progressive")
        .args(["--endpoint", &server.url("/health")])
        .args(stages(&["canary:5:1s", "progressive:50:1s", "full:100:1s"]))
        .run();
    run.expect_code(1);
    assert_eq!(
        world.hook_calls(),
        [
            ("stage-hook.sh".to_string(), "canary".to_string()),
            ("stage-hook.sh".to_string(), "progressive".to_string()),
            ("rollback-hook.sh".to_string(), "rollback".to_string()),
        ],
        "the rollback hook ran after the panic"
    );
    let result = world.result();
    assert_eq!(result["result"], "rolled_back");
    assert_eq!(result["cause"], "panic");
    assert_eq!(result["failed_stage"], "progressive");
    assert_eq!(result["stages"][0]["status"], "passed");
    assert_eq!(result["stages"][1]["status"], "failed");
    assert_eq!(result["stages"][2]["status"], "not_run");
    assert!(
        result["reason"]
            .as_str()
            .expect("reason")
            .contains("shipgate hit a bug during stage `progressive` (50%)"),
        "{result}"
    );
    assert_eq!(result["rollback"]["verification"]["ok"], true);
    assert_eq!(run.outputs["result"], "rolled_back");
    assert!(
        run.stderr
            .contains("::error title=shipgate rollout — bug::"),
        "{}",
        run.stderr
    );
}

/// Issue 18, item 3: GitHub cancels a step with SIGINT, SIGTERM 7.5 s later and SIGKILL 2.5 s
/// after that. With the default verification (3 healthy probes 10 s apart, at least 20 s) the
/// old rollout was killed before it wrote `rollout.json`, and `record` then said `success`. The
/// sequence is replayed with the real figures against a real `shipgate rollout`.
#[test]
fn githubs_cancel_sequence_rolls_back_and_record_says_it_failed() {
    use nix::sys::signal::Signal;
    let world = World::new();
    let server = canary(&world, vec![Reply::healthy(VERSION)]);
    let mut running = world
        .shipgate()
        .actions()
        .args(["--endpoint", &server.url("/health")])
        .args(["--interval", "10s", "--min-samples", "1"])
        .args(["--verify-successes", "3", "--verify-timeout", "2m"])
        .args(stages(&["canary:5:120s", "full:100:1s"]))
        .spawn();
    eventually("the canary stage to be probed", || {
        world.log().contains("canary 5% canary http://")
    });
    let cancelled = Instant::now();
    assert!(signal(&mut running, Signal::SIGINT), "still running");
    let mut sent = vec!["SIGINT"];
    if !exits_within(&mut running, Duration::from_millis(7500)) {
        signal(&mut running, Signal::SIGTERM);
        sent.push("SIGTERM");
        if !exits_within(&mut running, Duration::from_millis(2500)) {
            signal(&mut running, Signal::SIGKILL);
            sent.push("SIGKILL");
        }
    }
    let run = running.wait_at_most(Duration::from_secs(60));
    // A measurement for the log, not an assertion.
    eprintln!(
        "cancel: signals {sent:?}; exit {} after {:?}",
        run.code,
        cancelled.elapsed()
    );

    assert!(
        world
            .hook_calls()
            .iter()
            .any(|(script, stage)| script == "rollback-hook.sh" && stage == "rollback"),
        "the rollback hook ran: {:?}\n{}",
        world.hook_calls(),
        run.stderr
    );
    let result = world.result();
    assert_ne!(result["result"], "pass", "{result}");
    assert_ne!(result["result"], "in_progress", "{result}");
    assert_eq!(result["cause"], "signal");
    assert_eq!(result["failed_stage"], "canary");

    let record = record_after(&world);
    assert_ne!(record["status"], "success", "{record:#}");
    assert!(
        ["rolled_back", "failure"].contains(&record["status"].as_str().unwrap_or_default()),
        "{record:#}"
    );
    assert_eq!(record["rollout_stages"][0]["status"], "unhealthy");
    assert_eq!(record["rollout_stages"][1]["status"], "not_run");
}

/// Issue 18, item 3: `kill -9` mid-stage leaves `rollout.json` saying `in_progress` at the stage
/// that was running, and `record` reports a failure that says the rollout was interrupted there.
#[test]
fn kill_9_mid_stage_leaves_in_progress_and_record_reports_a_failure() {
    let world = World::new();
    let server = canary(&world, vec![Reply::healthy(VERSION)]);
    let mut running = world
        .shipgate()
        .args(["--endpoint", &server.url("/health")])
        .args(stages(&[
            "canary:5:1s",
            "progressive:50:120s",
            "full:100:1s",
        ]))
        .spawn();
    eventually("the progressive stage to be probed", || {
        world.log().contains("progressive 50% canary http://")
    });
    running.kill();
    let _ = running.wait_at_most(Duration::from_secs(60));

    let result = world.result();
    assert_eq!(result["result"], "in_progress", "{result}");
    assert_eq!(result["current_stage"], "progressive");
    assert_eq!(result["current_weight"], 50);
    assert_eq!(result["stages"][0]["status"], "passed");
    assert_eq!(result["stages"][1]["status"], "running");
    assert_eq!(result["stages"][2]["status"], "not_run");
    assert_eq!(
        world.hook_calls().last().map(|c| c.1.as_str()),
        Some("progressive"),
        "killed: no rollback ran"
    );

    let record = record_after(&world);
    assert_eq!(record["status"], "failure", "{record:#}");
    assert_eq!(record["failure"]["stage"], "rollout");
    let error = record["failure"]["error"].as_str().expect("error");
    assert!(
        error.contains("interrupted at stage `progressive` (50% of traffic)")
            && error.contains("in_progress"),
        "{error}"
    );
    assert!(
        record["failure"]["action_required"]
            .as_str()
            .expect("action")
            .starts_with("ACT NOW"),
        "{record:#}"
    );
    assert_eq!(record["rollout_stages"][1]["status"], "interrupted");
    assert!(
        world
            .state_dir()
            .join(format!("deployment-failure-report-{ID}.md"))
            .exists(),
        "the failure report is written"
    );
}

/// Issue 18, item 7: `--verify-timeout 10s` with a probe every 10 s cannot see 3 healthy probes
/// in a row (at least 20 s): the plan is refused before anything runs, naming the values.
#[test]
fn a_verification_that_cannot_fit_its_timeout_is_refused() {
    let world = World::new();
    let server = canary(&world, vec![Reply::healthy(VERSION)]);
    for dry_run in [false, true] {
        let mut cmd = world.shipgate();
        cmd.args(["--endpoint", &server.url("/health")])
            .args(["--interval", "10s", "--min-samples", "1"])
            .args(["--verify-timeout", "10s", "--verify-successes", "3"])
            .args(stages(&["canary:5:1s"]));
        if dry_run {
            cmd.args(["--dry-run"]);
        }
        let run = cmd.run();
        run.expect_code(2);
        for needle in [
            "`verify-successes` `3`",
            "one every `10s`",
            "at least `20s`",
            "`verify-timeout` is `10s`",
        ] {
            assert!(run.stderr.contains(needle), "`{needle}`:\n{}", run.stderr);
        }
    }
    assert!(world.hook_calls().is_empty(), "no traffic moved");
    assert!(!world.state_dir().join("rollout.json").exists());
}

/// Issue 18, item 7: a verification that times out reports each endpoint's real last answer,
/// not "no answer yet" when that answer was healthy.
#[test]
fn a_failed_verification_reports_the_real_last_answer() {
    let world = World::new();
    let server = HealthServer::start(vec![Reply::error()]);
    // Healthy once, then no answer at all (each later probe hangs past the check's timeout).
    let verify = HealthServer::start(vec![Reply::healthy(PREVIOUS), Reply::Hang]);
    let run = world
        .shipgate()
        .args(["--format", "json", "--endpoint", &server.url("/health")])
        .args(["--verify-endpoint", &verify.url("/health")])
        .args(["--verify-timeout", "3s", "--verify-successes", "2"])
        .args(stages(&["canary:5:30s"]))
        .run();
    run.expect_code(5);
    let result = run.json();
    let endpoint = &result["rollback"]["verification"]["endpoints"][0];
    assert_eq!(endpoint["probes"], 1, "{result:#}");
    assert_eq!(endpoint["last_healthy"], true);
    let detail = result["rollback"]["verification"]["detail"]
        .as_str()
        .expect("detail");
    assert!(
        detail.contains("1 probes, 1 healthy in a row of 2, last: healthy: HTTP 200"),
        "{detail}"
    );
    assert!(!detail.contains("no answer yet"), "{detail}");
}

/// Issue 18, item 3: after a signal the check after the rollback ends within the runner's grace
/// period and says so in the log and `rollout.json`: a verify endpoint that never answers leaves
/// health "not confirmed" (`cut_short`), not two minutes of probing cut off by SIGKILL.
#[test]
fn a_cancel_cuts_the_verification_short_and_says_so() {
    let world = World::new();
    let server = canary(&world, vec![Reply::healthy(VERSION)]);
    let verify = HealthServer::start(vec![Reply::Hang]);
    let running = world
        .shipgate()
        .actions()
        .args(["--endpoint", &server.url("/health")])
        .args(["--verify-endpoint", &verify.url("/health")])
        .args(["--probe-timeout", "30s", "--verify-timeout", "2m"])
        .args(stages(&["canary:5:120s"]))
        .spawn();
    eventually("the canary stage to be probed", || {
        world.log().contains("canary 5% canary http://")
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(running.pid() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("send SIGINT");
    let run = running.wait_at_most(Duration::from_secs(60));
    run.expect_code(1);
    let result = world.result();
    assert_eq!(result["result"], "rolled_back", "{result:#}");
    let verification = &result["rollback"]["verification"];
    assert_eq!(verification["cut_short"], true, "{result:#}");
    assert_eq!(verification["ok"], false);
    let detail = verification["detail"].as_str().expect("detail");
    assert!(
        detail.contains("health after the rollback NOT confirmed")
            && detail.contains("SIGINT")
            && detail.contains("no answer yet"),
        "{detail}"
    );
    assert!(world.log().contains("NOT confirmed"), "{}", world.log());
    assert!(
        run.stderr
            .contains("::warning title=shipgate rollout::health after the rollback NOT confirmed"),
        "{}",
        run.stderr
    );
}
