//! The canary judge (`rollout.judge`) end to end: `shipgate rollout` probing a scripted canary
//! and a scripted baseline on loopback, judged at the end of each stage's window. Slowness is
//! scripted far beyond the tolerance so no verdict depends on the machine's speed.

use std::time::Duration;

use serde_json::Value;

use crate::rollout::{PREVIOUS, VERSION, World, canary, eventually, stages};
use crate::support::Shipgate;
use crate::support::health_server::{HealthServer, Reply};

/// Writes `shipgate.yml` with `judge` as the `rollout.judge` section's keys.
fn judge_config(world: &World, judge: &str) {
    std::fs::write(
        world.path().join("shipgate.yml"),
        format!("rollout:\n  judge:\n{judge}"),
    )
    .expect("shipgate.yml");
}

fn judgement<'a>(result: &'a Value, gate: &str) -> &'a Value {
    result["stages"][0]["judgements"]
        .as_array()
        .expect("judgements")
        .iter()
        .find(|j| j["gate"] == gate)
        .unwrap_or_else(|| panic!("no judgement {gate}: {result:#}"))
}

fn verdict<'a>(result: &'a Value, gate: &str) -> &'a Value {
    result["stages"][0]["verdicts"]
        .as_array()
        .expect("verdicts")
        .iter()
        .find(|v| v["gate"] == gate)
        .unwrap_or_else(|| panic!("no verdict {gate}: {result:#}"))
}

/// A canary answering healthy after `delays` (cycled), against a baseline answering at once.
fn servers(world: &World, delays: &[u64]) -> (HealthServer, HealthServer) {
    let script = delays
        .iter()
        .map(|ms| Reply::slow(Duration::from_millis(*ms), Reply::healthy(VERSION)))
        .collect();
    (
        canary(world, script),
        HealthServer::start(vec![Reply::healthy(PREVIOUS)]),
    )
}

fn rollout(world: &World, canary: &HealthServer, baseline: &HealthServer, stage: &str) -> Shipgate {
    let mut cmd = world.shipgate();
    cmd.args(["--endpoint", &canary.url("/health")])
        .args(["--baseline", &baseline.url("/health")])
        .args(stages(&[stage]));
    cmd
}

#[test]
fn judge_a_slower_canary_fails_the_stage_and_rolls_back_naming_the_numbers() {
    let world = World::new();
    judge_config(&world, "    min-samples: 10\n    tolerance: 20ms\n");
    let (slow, stable) = servers(&world, &[90, 100, 110, 120]);
    let run = rollout(&world, &slow, &stable, "canary:5:3s")
        .actions()
        .run();
    run.expect_code(1);
    let result = world.result();
    assert_eq!(result["result"], "rolled_back");
    assert_eq!(result["cause"], "gate");
    assert_eq!(result["failed_gate"], "judge:latency");
    let reason = result["reason"].as_str().expect("reason");
    assert!(reason.contains("canary worse: median "), "{reason}");
    assert!(reason.contains("Cliff's δ "), "{reason}");
    let j = judgement(&result, "judge:latency");
    assert_eq!(j["verdict"], "fail", "{j:#}");
    assert_eq!(j["test"], "mann-whitney");
    assert!(j["canary"].as_f64().expect("median") >= 90.0, "{j:#}");
    assert!(j["baseline"].as_f64().expect("median") < 90.0, "{j:#}");
    assert!(j["p_value"].as_f64().expect("p") < 0.01, "{j:#}");
    assert!(j["canary_samples"].as_u64().expect("n") >= 10, "{j:#}");
    assert_eq!(j["unit"], "ms");
    assert_eq!(verdict(&result, "judge:latency")["status"], "fail");
    // The error counts were judged too: none on either side.
    assert_eq!(judgement(&result, "judge:errors")["verdict"], "pass");
    let calls: Vec<String> = world.hook_calls().into_iter().map(|(_, s)| s).collect();
    assert_eq!(calls, ["canary", "rollback"]);
    assert!(run.summary.contains("Canary judge"), "{}", run.summary);
    assert!(
        run.summary.contains("judge:latency median"),
        "{}",
        run.summary
    );
    let log = world.log();
    assert!(
        log.contains("judge judge:latency mann-whitney FAIL: canary worse"),
        "{log}"
    );
    assert!(
        log.contains("canary judge at the end of each stage"),
        "{log}"
    );
}

#[test]
fn judge_a_healthy_canary_passes_every_test() {
    let world = World::new();
    judge_config(&world, "    min-samples: 10\n    tolerance: 20ms\n");
    let (fast, stable) = servers(&world, &[0]);
    let run = rollout(&world, &fast, &stable, "canary:5:2s").run();
    run.expect_code(0);
    let result = world.result();
    assert_eq!(result["result"], "pass");
    for gate in ["judge:latency", "judge:latency-spread", "judge:errors"] {
        let j = judgement(&result, gate);
        assert_eq!(j["verdict"], "pass", "{j:#}");
        assert_eq!(verdict(&result, gate)["status"], "pass");
    }
    let j = judgement(&result, "judge:errors");
    assert_eq!(
        (j["canary_errors"].as_u64(), j["baseline_errors"].as_u64()),
        (Some(0), Some(0))
    );
}

#[test]
fn judge_too_few_samples_is_inconclusive_failing_by_default() {
    let world = World::new();
    // 150 ms a probe: at most 11 canary samples in the 1.5 s stage, 20 needed.
    judge_config(&world, "    min-samples: 20\n    tolerance: 10s\n");
    let (slow, stable) = servers(&world, &[150]);
    let run = rollout(&world, &slow, &stable, "canary:5:1500ms").run();
    run.expect_code(1);
    let result = world.result();
    assert_eq!(result["failed_gate"], "judge:latency");
    let j = judgement(&result, "judge:latency");
    assert_eq!(j["verdict"], "inconclusive", "{j:#}");
    let reason = result["reason"].as_str().expect("reason");
    assert!(reason.contains("too few samples"), "{reason}");
    assert!(
        reason.contains("inconclusive, a failure (`inconclusive: fail`)"),
        "{reason}"
    );
}

#[test]
fn judge_inconclusive_pause_holds_the_stage_until_approved() {
    let world = World::new();
    judge_config(
        &world,
        "    min-samples: 20\n    tolerance: 10s\n    inconclusive: pause\n",
    );
    let (slow, stable) = servers(&world, &[150]);
    let running = rollout(&world, &slow, &stable, "canary:5:1500ms")
        .args(["--approval-timeout", "2m"])
        .spawn();
    let pause_file = world.state_dir().join("rollout-pause.json");
    eventually("the inconclusive stage to wait", || pause_file.exists());
    let pause: Value =
        serde_json::from_str(&std::fs::read_to_string(&pause_file).unwrap_or_default())
            .unwrap_or_default();
    assert_eq!(pause["stage"], "canary", "{pause:#}");
    let resume = Shipgate::new(world.path())
        .args(["rollout", "--resume", "--approver", "alice"])
        .run();
    resume.expect_code(0);
    let run = running.wait_at_most(Duration::from_secs(60));
    run.expect_code(0);
    let result = world.result();
    assert_eq!(result["result"], "pass");
    assert_eq!(result["stages"][0]["approval"]["approved_by"], "alice");
    assert_eq!(
        judgement(&result, "judge:latency")["verdict"],
        "inconclusive"
    );
    let v = verdict(&result, "judge:latency");
    assert_eq!(v["status"], "pass", "{v:#}");
    assert!(
        v["message"]
            .as_str()
            .expect("message")
            .ends_with("approved by alice"),
        "{v:#}"
    );
    assert!(
        run.stderr
            .contains("because the canary judge is inconclusive"),
        "{}",
        run.stderr
    );
}

#[test]
fn judge_bad_config_is_a_usage_error_naming_the_value() {
    let world = World::new();
    let server = HealthServer::start(vec![Reply::healthy(VERSION)]);
    let stable = HealthServer::start(vec![Reply::healthy(PREVIOUS)]);
    for (judge, baseline, expected) in [
        ("    alpha: 2\n", true, "`alpha` is `2`"),
        ("    effect: 1.5\n", true, "`effect` is `1.5`"),
        ("    min-samples: 1\n", true, "`min-samples` is `1`"),
        ("    stages: [nope]\n", true, "names stage `nope`"),
        (
            "    min-samples: 1000\n",
            true,
            "could only be inconclusive",
        ),
        ("    alpha: 0.05\n", false, "no baseline endpoint is probed"),
        ("    probes: false\n", true, "nothing to judge"),
    ] {
        judge_config(&world, judge);
        let mut cmd = world.shipgate();
        cmd.args(["--endpoint", &server.url("/health")])
            .args(stages(&["canary:5:1s"]));
        if baseline {
            cmd.args(["--baseline", &stable.url("/health")]);
        }
        let run = cmd.run();
        run.expect_code(2);
        assert!(run.stderr.contains(expected), "{judge}: {}", run.stderr);
        assert!(world.hook_calls().is_empty(), "nothing ran");
    }
}
