//! The canary judge (`rollout.judge`) end to end: `shipgate rollout` probing a scripted canary
//! and a scripted baseline on loopback, judged at the end of each stage's window. Slowness is
//! scripted far beyond the tolerance so no verdict depends on the machine's speed.

use std::time::Duration;

use serde_json::Value;

use crate::metrics;
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

/// The mean latency of one version over 2 s, from the sample service's histogram (the
/// probes' fast `/health/live` answers included, so a 300 ms `/api/items` shows as less).
const MEAN_LATENCY: &str = r#"sum(rate(http_request_duration_seconds_sum{version="{{version}}"}[2s])) / sum(rate(http_request_duration_seconds_count{version="{{version}}"}[2s]))"#;

fn latency_pair() -> String {
    format!(
        "      - name: mean-latency\n        query: '{MEAN_LATENCY}'\n        baseline-query: '{}'\n        step: 500ms\n        tolerance: 0.05\n",
        MEAN_LATENCY.replace("{{version}}", "{{previous_version}}")
    )
}

#[test]
fn judge_prometheus_range_queries_catch_a_slow_canary_of_the_sample_service() {
    let world = metrics::World::new(&format!("slow={VERSION}\\nslow-ms=300"));
    let (service, prometheus) = metrics::scraped_service(&world);
    let config = format!(
        "  prometheus:\n    address: {}\n  judge:\n    probes: false\n    min-samples: 5\n    metrics:\n{}",
        prometheus.url(),
        latency_pair()
    );
    let run = world
        .rollout(
            &config,
            &format!("http://{}/health/live", service.target()),
            &["canary:50:8s"],
        )
        .run();
    run.expect_code(1);
    let result = world.result();
    assert_eq!(result["failed_gate"], "judge:mean-latency");
    let j = judgement(&result, "judge:mean-latency");
    assert_eq!(j["verdict"], "fail", "{j:#}");
    assert!(j["canary"].as_f64().expect("canary median") >= 0.1, "{j:#}");
    assert!(
        j["baseline"].as_f64().expect("baseline median") < 0.05,
        "{j:#}"
    );
    let query = j["query"].as_str().expect("query");
    assert!(query.contains(r#"version="1.4.0""#), "templated: {query}");
    let baseline_query = j["baseline_query"].as_str().expect("baseline query");
    assert!(
        baseline_query.contains(r#"version="1.3.2""#),
        "{baseline_query}"
    );
    assert_eq!(world.hook_calls(), vec!["canary 50", "rollback 0"]);
}

#[test]
fn dry_run_evaluates_each_metric_once_against_prometheus_and_moves_no_traffic() {
    let world = metrics::World::new("");
    let (service, prometheus) = metrics::scraped_service(&world);
    let stable_rate =
        r#"sum(rate(http_requests_total{version="{{previous_version}}"}[{{window}}]))"#;
    // `rate` over the 10 s window needs two scrapes of the stable version.
    prometheus.wait_for(&format!(
        r#"sum(rate(http_requests_total{{version="{PREVIOUS}"}}[10s]))"#
    ));
    let config = format!(
        "  prometheus:\n    address: {}\n  metrics:\n{}{}{}  judge:\n    probes: false\n    min-samples: 5\n    metrics:\n{}",
        prometheus.url(),
        metrics::metric("stable-errors", metrics::BASELINE_ERROR_RATE, "< 0.03", ""),
        metrics::metric("stable-rate", stable_rate, "> 1000000", ""),
        metrics::metric("canary-errors", metrics::ERROR_RATE, "< 0.03", ""),
        latency_pair()
    );
    let run = world
        .rollout(
            &config,
            &format!("http://{}/health/live", service.target()),
            &["canary:50:8s"],
        )
        .args(["--dry-run", "--format", "json"])
        .actions()
        .run();
    run.expect_code(0);
    assert!(world.hook_calls().is_empty(), "no traffic moved");
    let json = run.json();
    let trial = |gate: &str| {
        json["metrics"]
            .as_array()
            .expect("metrics")
            .iter()
            .find(|t| t["gate"] == gate)
            .unwrap_or_else(|| panic!("no trial {gate}: {json:#}"))
            .clone()
    };
    let ok = trial("metric:stable-errors");
    assert_eq!(ok["verdict"], "pass", "{ok:#}");
    assert_eq!(ok["value"], 0.0);
    assert_eq!(ok["stage"], "canary");
    let high = trial("metric:stable-rate");
    assert_eq!(high["verdict"], "fail", "{high:#}");
    assert!(high["value"].as_f64().expect("rate") > 0.0, "{high:#}");
    assert!(
        high["detail"]
            .as_str()
            .expect("detail")
            .contains("is not > 1000000"),
        "{high:#}"
    );
    assert!(
        high["query"]
            .as_str()
            .expect("query")
            .contains(r#"version="1.3.2""#),
        "{high:#}"
    );
    assert_eq!(trial("metric:canary-errors")["verdict"], "no_data");
    // The canary has no traffic yet: the judge's range queries answer, and it cannot judge.
    let judgements = json["judgements"].as_array().expect("judgements");
    assert!(
        judgements
            .iter()
            .any(|j| j["gate"] == "judge:mean-latency" && j["verdict"] == "inconclusive"),
        "{json:#}"
    );
    assert!(
        run.stderr
            .contains("dry run metric:stable-rate (stage `canary`): fail"),
        "{}",
        run.stderr
    );
    assert!(
        run.summary.contains("each metric was evaluated once"),
        "{}",
        run.summary
    );

    // A backend that is down: exit 3, naming it, still nothing moved.
    let closed = crate::support::watchdog::free_port();
    let run = world
        .rollout(
            &format!(
                "  metrics:\n{}",
                metrics::metric(
                    "m",
                    "up",
                    "== 1",
                    &format!("      address: http://127.0.0.1:{closed}\n")
                )
            ),
            &format!("http://{}/health/live", service.target()),
            &["canary:50:8s"],
        )
        .args(["--dry-run"])
        .run();
    run.expect_code(3);
    assert!(
        run.stderr.contains("did not answer after 4 attempt(s)"),
        "{}",
        run.stderr
    );
    assert!(world.hook_calls().is_empty(), "no traffic moved");
}

/// An error-count source of the sample service's counters over the stage's window.
fn error_counts() -> String {
    let count = |version: &str, errors: bool| {
        format!(
            r#"sum(increase(http_requests_total{{version="{{{{{version}}}}}"{}}}[{{{{window}}}}]))"#,
            if errors { r#",status=~"5..""# } else { "" }
        )
    };
    format!(
        "      - name: http-errors\n        errors: '{}'\n        total: '{}'\n        baseline-errors: '{}'\n        baseline-total: '{}'\n",
        count("version", true),
        count("version", false),
        count("previous_version", true),
        count("previous_version", false)
    )
}

/// A one-stage rollout of the sample service (`extra` control lines) judged by Prometheus
/// only: the mean-latency pair and the error counts.
fn prometheus_judged(extra: &str) -> (metrics::World, crate::support::cli::Run) {
    let world = metrics::World::new(extra);
    let (service, prometheus) = metrics::scraped_service(&world);
    let config = format!(
        "  prometheus:\n    address: {}\n  judge:\n    probes: false\n    min-samples: 5\n    metrics:\n{}    errors:\n{}",
        prometheus.url(),
        latency_pair(),
        error_counts()
    );
    let run = world
        .rollout(
            &config,
            &format!("http://{}/health/live", service.target()),
            &["canary:50:8s"],
        )
        .actions()
        .run();
    (world, run)
}

#[test]
fn judge_prometheus_error_counts_fail_an_erring_canary_and_pass_a_healthy_one() {
    let (world, run) = prometheus_judged(&format!("broken={VERSION}"));
    run.expect_code(1);
    let result = world.result();
    assert_eq!(result["failed_gate"], "judge:http-errors", "{result:#}");
    let j = judgement(&result, "judge:http-errors");
    assert_eq!(j["verdict"], "fail", "{j:#}");
    assert_eq!(j["test"], "fisher");
    assert!(j["canary_errors"].as_u64().expect("errors") > 0, "{j:#}");
    assert_eq!(j["baseline_errors"], 0, "{j:#}");
    assert!(
        j["detail"]
            .as_str()
            .expect("detail")
            .starts_with("canary errs more: "),
        "{j:#}"
    );
    assert!(
        j["query"]
            .as_str()
            .expect("query")
            .contains(r#"version="1.4.0",status=~"5..""#),
        "{j:#}"
    );
    assert!(
        run.summary.contains("errors (Fisher's exact)"),
        "{}",
        run.summary
    );

    let (world, run) = prometheus_judged("");
    run.expect_code(0);
    let result = world.result();
    for gate in [
        "judge:mean-latency",
        "judge:mean-latency-spread",
        "judge:http-errors",
    ] {
        assert_eq!(judgement(&result, gate)["verdict"], "pass", "{result:#}");
    }
}
