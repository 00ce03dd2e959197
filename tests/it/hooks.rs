//! Hook commands are judged by their exit status, not by when their output closes: real
//! `shipgate rollout` runs whose hook scripts leave background processes behind (holding the
//! hook's stdout) or are killed by the test with SIGKILL.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::health_server::{HealthServer, Reply};
use crate::support::{Shipgate, state_files};

const ID: &str = "77-feedbee";
const VERSION: &str = "2.0.0";
const PREVIOUS: &str = "1.9.0";

/// A workspace with a validated deployment and hook scripts written by each test.
struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let world = World {
            dir: tempfile::tempdir().expect("workdir"),
        };
        let state = world.state_dir();
        std::fs::create_dir_all(&state).expect("state dir");
        let mut validated = state_files::validate(ID, 1);
        validated["version"] = json!(VERSION);
        validated["previous"]["version"] = json!(PREVIOUS);
        std::fs::write(state.join("validate.json"), validated.to_string()).expect("validate.json");
        world.script(
            "rollback-hook.sh",
            &format!(
                "echo rollback >> '{}'",
                world.path().join("calls").display()
            ),
        );
        world
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn state_dir(&self) -> PathBuf {
        self.path().join(".shipgate").join(ID)
    }

    /// An executable `#!/bin/sh` script `name` with `body`.
    fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("script");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    /// `shipgate rollout` with one short stage, fast probes and the two hooks, no retries.
    fn rollout(&self, server: &HealthServer, hook_timeout: &str) -> Shipgate {
        let mut cmd = Shipgate::new(self.path());
        cmd.args(["--deployment-id", ID, "--format", "json", "rollout"])
            .args(["--endpoint", &server.url("/health")])
            .args(["--stage", "canary:5:1s"])
            .args([
                "--interval",
                "50ms",
                "--min-samples",
                "3",
                "--max-p95",
                "10s",
            ])
            .args(["--verify-timeout", "20s", "--verify-successes", "1"])
            .args(["--hook-timeout", hook_timeout, "--hook-retries", "0"])
            .args([
                "--hook",
                &self.path().join("stage-hook.sh").display().to_string(),
            ])
            .args([
                "--rollback-hook",
                &self.path().join("rollback-hook.sh").display().to_string(),
            ]);
        cmd
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.state_dir().join(format!("rollout-logs-{ID}.log")))
            .unwrap_or_default()
    }

    fn calls(&self) -> String {
        std::fs::read_to_string(self.path().join("calls")).unwrap_or_default()
    }

    fn pid(&self, name: &str) -> Option<i32> {
        std::fs::read_to_string(self.path().join(name))
            .ok()
            .and_then(|t| t.trim().parse().ok())
    }
}

/// Kills (SIGKILL) the processes whose pids the hooks wrote, when dropped: a failing test must
/// not leave them running.
struct Reaper<'a>(&'a World, &'static [&'static str]);

impl Drop for Reaper<'_> {
    fn drop(&mut self) {
        for name in self.1 {
            if let Some(pid) = self.0.pid(name) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// Polls `check` every 20 ms; panics naming `what` after 60 s (a hang guard, not a timing
/// assertion).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "gave up waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The process is gone (or a zombie nobody reaps: it runs no code any more).
fn is_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

#[test]
fn a_hook_that_exits_0_leaving_a_background_child_succeeded() {
    let world = World::new();
    // Exits 0 at once; the background child keeps the hook's stdout and stderr open.
    world.script(
        "stage-hook.sh",
        &format!(
            "echo shifting to $SHIPGATE_WEIGHT; sleep 20 & echo $! > '{}'; exit 0",
            world.path().join("background.pid").display()
        ),
    );
    let _reaper = Reaper(&world, &["background.pid"]);
    let server = HealthServer::start(vec![Reply::healthy(VERSION)]);
    let run = world
        .rollout(&server, "5s")
        .spawn()
        .wait_at_most(Duration::from_secs(120));
    run.expect_code(0);
    let result = run.json();
    assert_eq!(result["result"], "pass", "{result}");
    assert_eq!(world.calls(), "", "no rollback ran");
    let hook = &result["hooks"][0];
    assert_eq!(hook["ok"], true, "{hook}");
    let attempt = &hook["attempts"][0];
    assert_eq!(attempt["exit_code"], 0, "{attempt}");
    assert_eq!(attempt["timed_out"], false, "{attempt}");
    assert_eq!(attempt["error"], Value::Null, "{attempt}");
    assert_eq!(attempt["left_processes"], true, "{attempt}");
    let warning = attempt["warning"].as_str().expect("a warning");
    assert!(warning.contains("left 1 process behind"), "{warning}");
    assert!(warning.contains("holding its output"), "{warning}");
    let log = world.log();
    assert!(log.contains("[stdout] shifting to 5"), "{log}");
    assert!(log.contains("left 1 process behind"), "{log}");
    assert!(
        run.stderr.contains("left 1 process behind"),
        "{}",
        run.stderr
    );
    // What shipgate does with what a finished hook left running: it stops it.
    let background = world.pid("background.pid").expect("background pid");
    eventually("the hook's background child to be stopped", || {
        is_gone(background)
    });
}

#[test]
fn a_hook_killed_while_its_child_holds_stdout_fails_by_its_signal() {
    let world = World::new();
    // Writes its pid, starts a child that would hold stdout forever, and waits.
    world.script(
        "stage-hook.sh",
        &format!(
            "echo $$ > '{hook}'; sleep 100000 & echo $! > '{child}'; wait",
            hook = world.path().join("hook.pid").display(),
            child = world.path().join("child.pid").display()
        ),
    );
    let _reaper = Reaper(&world, &["child.pid", "hook.pid"]);
    let server = HealthServer::start(vec![Reply::healthy(VERSION)]);
    let running = world.rollout(&server, "10m").spawn();
    eventually("the hook and its child to start", || {
        world.pid("hook.pid").is_some() && world.pid("child.pid").is_some()
    });
    let hook = world.pid("hook.pid").expect("hook pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(hook),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9 the hook");
    // The watchdog: shipgate must notice the hook's end without waiting for the child, which
    // would never end by itself.
    let run = running.wait_at_most(Duration::from_secs(60));
    run.expect_code(1);
    let result = run.json();
    assert_eq!(result["result"], "rolled_back", "{result}");
    let attempt = &result["hooks"][0]["attempts"][0];
    assert_eq!(attempt["signal"], 9, "{attempt}");
    assert_eq!(attempt["exit_code"], Value::Null, "{attempt}");
    assert_eq!(attempt["timed_out"], false, "{attempt}");
    assert_eq!(attempt["left_processes"], true, "{attempt}");
    assert!(
        result["reason"]
            .as_str()
            .expect("reason")
            .contains("killed by signal 9"),
        "{result}"
    );
    assert_eq!(world.calls(), "rollback\n", "the rollback hook ran");
    let child = world.pid("child.pid").expect("child pid");
    eventually("the hook's child to be stopped", || is_gone(child));
}
