//! Metric gates in `shipgate rollout` against a real Prometheus (Debian's package) scraping the
//! real sample service (`examples/sample_service.rs`, canary and stable side by side, traffic
//! from a loop in the test) or a scripted exposition server: real PromQL (`rate`,
//! `histogram_quantile`) over real scraped data. No wall-clock thresholds: stages last a few
//! seconds so that a 1 s scrape interval has data.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::health_server::{HealthServer, Reply};
use crate::support::prometheus::{Prometheus, http_get};
use crate::support::{Shipgate, assert_no_secret, read_tree, state_files};

const ID: &str = "77-metrics0";
const VERSION: &str = "1.4.0";
const PREVIOUS: &str = "1.3.2";

pub(crate) const ERROR_RATE: &str = r#"(sum(rate(http_requests_total{version="{{version}}",status=~"5.."}[{{window}}])) or vector(0)) / sum(rate(http_requests_total{version="{{version}}"}[{{window}}]))"#;
pub(crate) const BASELINE_ERROR_RATE: &str = r#"(sum(rate(http_requests_total{version="{{previous_version}}",status=~"5.."}[{{window}}])) or vector(0)) / sum(rate(http_requests_total{version="{{previous_version}}"}[{{window}}]))"#;
const P95: &str = r#"histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{version="{{version}}"}[{{window}}])))"#;

/// The sample service, with a loop sending it traffic; both stop when dropped.
pub(crate) struct Service {
    child: Child,
    port: u16,
    stop: Arc<AtomicBool>,
    traffic: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.traffic.take() {
            let _ = t.join();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Service {
    fn start(control: &Path) -> Service {
        let exe = Path::new(env!("CARGO_BIN_EXE_shipgate"))
            .parent()
            .expect("target dir")
            .join("examples/sample_service");
        assert!(
            exe.exists(),
            "{} is missing: `cargo test` builds it",
            exe.display()
        );
        let port = crate::support::watchdog::free_port();
        let child = Command::new(exe)
            .args(["--port", &port.to_string(), "--control"])
            .arg(control)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the sample service");
        let stop = Arc::new(AtomicBool::new(false));
        let mut service = Service {
            child,
            port,
            stop: stop.clone(),
            traffic: None,
        };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                service.traffic = Some(std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        let _ = http_get(port, "/api/items");
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }));
                return service;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the sample service did not start");
    }

    pub(crate) fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// A workspace with `validate.json`, a stage hook that routes the sample service (its
/// `SHIPGATE_WEIGHT` to the canary, plus `extra` control lines) and is also the rollback hook.
pub(crate) struct World {
    dir: tempfile::TempDir,
}

impl World {
    pub(crate) fn new(extra: &str) -> World {
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
        std::fs::write(
            world.control(),
            format!("stable={PREVIOUS}\ncanary=\nweight=0\n"),
        )
        .expect("control");
        let hook = world.path().join("hook.sh");
        std::fs::write(
            &hook,
            format!(
                "#!/bin/sh\necho \"$SHIPGATE_STAGE $SHIPGATE_WEIGHT\" >> '{log}'\nprintf 'stable={PREVIOUS}\\ncanary={VERSION}\\nweight=%s\\n{extra}\\n' \"$SHIPGATE_WEIGHT\" > '{control}.tmp'\nmv '{control}.tmp' '{control}'\ntouch '{shifted}'\n",
                log = world.path().join("hooks.log").display(),
                control = world.control().display(),
                shifted = world.shifted().display(),
            ),
        )
        .expect("hook");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        world
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn control(&self) -> PathBuf {
        self.path().join("service.control")
    }

    /// Created by the first hook call: traffic moved.
    fn shifted(&self) -> PathBuf {
        self.path().join("shifted")
    }

    fn state_dir(&self) -> PathBuf {
        self.path().join(".shipgate").join(ID)
    }

    pub(crate) fn hook_calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.path().join("hooks.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// `shipgate rollout` with `config` as shipgate.yml's `rollout:` metric keys, a healthy
    /// probe on `probe_url` and `stages`.
    pub(crate) fn rollout(&self, config: &str, probe_url: &str, stages: &[&str]) -> Shipgate {
        std::fs::write(
            self.path().join("shipgate.yml"),
            format!("rollout:\n{config}"),
        )
        .expect("shipgate.yml");
        let mut cmd = Shipgate::new(self.path());
        cmd.args(["rollout", "--endpoint", probe_url]);
        for stage in stages {
            cmd.args(["--stage", stage]);
        }
        for (name, value) in [
            ("interval", "200ms"),
            ("min-samples", "3"),
            ("max-p95", "10s"),
            ("window", "10s"),
            ("hook-retries", "0"),
            ("verify-successes", "1"),
            ("verify-timeout", "20s"),
        ] {
            cmd.input(name, value);
        }
        cmd.input("hook", &self.path().join("hook.sh").display().to_string());
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

/// A metric entry of `rollout.metrics` (YAML, indented for the list).
pub(crate) fn metric(name: &str, query: &str, condition: &str, extra: &str) -> String {
    format!(
        "    - name: {name}\n      query: '{}'\n      condition: '{condition}'\n      interval: 500ms\n{extra}",
        query.replace('\'', "''")
    )
}

fn verdict<'a>(result: &'a Value, stage: usize, gate: &str) -> &'a Value {
    result["stages"][stage]["verdicts"]
        .as_array()
        .expect("verdicts")
        .iter()
        .find(|v| v["gate"] == gate)
        .unwrap_or_else(|| panic!("no verdict for {gate}: {result:#}"))
}

/// The sample service scraped by a fresh Prometheus, with the stable version's series there.
pub(crate) fn scraped_service(world: &World) -> (Service, Prometheus) {
    let service = Service::start(&world.control());
    let prometheus = Prometheus::start(&[service.target()], None);
    prometheus.wait_for(&format!(r#"http_requests_total{{version="{PREVIOUS}"}}"#));
    (service, prometheus)
}

#[test]
fn metrics_error_rate_p95_and_baseline_ratio_pass_on_a_healthy_canary() {
    let world = World::new("");
    let (service, prometheus) = scraped_service(&world);
    let config = format!(
        "  prometheus:\n    address: {}\n  metrics:\n{}{}{}",
        prometheus.url(),
        metric(
            "error-rate",
            ERROR_RATE,
            "< 0.03",
            "      initial-delay: 2s\n      no-data: wait\n"
        ),
        metric(
            "p95",
            P95,
            "< 0.25",
            "      initial-delay: 2s\n      no-data: wait\n"
        ),
        metric(
            "vs-baseline",
            ERROR_RATE,
            "<= 2 * baseline",
            &format!(
                "      baseline-query: '{}'\n      initial-delay: 2s\n      no-data: wait\n",
                BASELINE_ERROR_RATE
            )
        ),
    );
    let run = world
        .rollout(
            &config,
            &format!("http://{}/health/live", service.target()),
            &["canary:50:6s"],
        )
        .actions()
        .run();
    run.expect_code(0);
    let result = world.result();
    assert_eq!(result["result"], "pass");
    for gate in ["metric:error-rate", "metric:p95", "metric:vs-baseline"] {
        let v = verdict(&result, 0, gate);
        assert_eq!(v["status"], "pass", "{v:#}");
        let query = v["query"].as_str().expect("query recorded");
        assert!(query.contains(r#"version="1.4.0""#), "templated: {query}");
        assert!(
            query.contains("[10s]"),
            "{{window}} is the stage's window: {query}"
        );
    }
    assert_eq!(verdict(&result, 0, "metric:error-rate")["value"], 0.0);
    assert!(
        verdict(&result, 0, "metric:p95")["value"]
            .as_f64()
            .expect("p95")
            < 0.25
    );
    let log = world.log();
    assert!(log.contains("metric:error-rate pass 0"), "{log}");
    assert!(
        log.contains("metric gate metric:p95"),
        "the plan lists it: {log}"
    );
}

/// Runs a one-stage rollout whose canary misbehaves (`extra` control lines) under `metrics`.
fn failing_rollout(extra: &str, metrics: &str) -> (World, Value, crate::support::cli::Run) {
    let world = World::new(extra);
    let (service, prometheus) = scraped_service(&world);
    let config = format!(
        "  prometheus:\n    address: {}\n  metrics:\n{metrics}",
        prometheus.url()
    );
    let run = world
        .rollout(
            &config,
            &format!("http://{}/health/live", service.target()),
            &["canary:50:8s"],
        )
        .actions()
        .run();
    let result = world.result();
    drop(prometheus);
    (world, result, run)
}

#[test]
fn metrics_error_rate_fails_on_a_canary_that_answers_500s_and_rolls_back() {
    let (world, result, run) = failing_rollout(
        &format!("broken={VERSION}"),
        &metric(
            "error-rate",
            ERROR_RATE,
            "< 0.03",
            "      initial-delay: 1s\n      no-data: wait\n",
        ),
    );
    run.expect_code(1);
    assert_eq!(result["result"], "rolled_back");
    assert_eq!(result["cause"], "gate");
    assert_eq!(result["failed_gate"], "metric:error-rate");
    let reason = result["reason"].as_str().expect("reason");
    assert!(
        reason.contains(" is not < 0.03"),
        "value and condition: {reason}"
    );
    let value = verdict(&result, 0, "metric:error-rate")["value"]
        .as_f64()
        .expect("value");
    assert!(value > 0.5, "most canary requests failed: {value}");
    assert!(
        reason.contains(r#"http_requests_total{version="1.4.0",status=~"5.."}"#),
        "the query: {reason}"
    );
    assert_eq!(run.outputs["failed-stage"], "canary");
    assert!(run.summary.contains("metric:error-rate"), "{}", run.summary);
    assert!(run.summary.contains("Metric gates"), "{}", run.summary);
    assert_eq!(world.hook_calls(), vec!["canary 50", "rollback 0"]);
}

#[test]
fn metrics_p95_fails_on_a_slow_canary() {
    let (_world, result, run) = failing_rollout(
        &format!("slow={VERSION}\\nslow-ms=300"),
        &metric(
            "p95",
            P95,
            "< 0.25",
            "      initial-delay: 1s\n      no-data: wait\n",
        ),
    );
    run.expect_code(1);
    assert_eq!(result["failed_gate"], "metric:p95");
    let v = verdict(&result, 0, "metric:p95");
    assert_eq!(v["status"], "fail");
    assert!(v["value"].as_f64().expect("p95") >= 0.25, "{v:#}");
    assert!(
        v["message"]
            .as_str()
            .expect("message")
            .contains("is not < 0.25"),
        "{v:#}"
    );
}

#[test]
fn metrics_canary_against_baseline_ratio_fails_when_only_the_canary_errs() {
    let (_world, result, run) = failing_rollout(
        &format!("broken={VERSION}"),
        &metric(
            "vs-baseline",
            ERROR_RATE,
            "canary <= 2 * baseline",
            &format!(
                "      baseline-query: '{BASELINE_ERROR_RATE}'\n      initial-delay: 1s\n      no-data: wait\n"
            ),
        ),
    );
    run.expect_code(1);
    assert_eq!(result["failed_gate"], "metric:vs-baseline");
    let reason = result["reason"].as_str().expect("reason");
    assert!(
        reason.contains(" is not <= 2 * baseline (baseline 0, bound 0)"),
        "{reason}"
    );
    assert!(
        reason.contains(r#"version="1.3.2""#),
        "the baseline query: {reason}"
    );
}

/// A scripted exposition server scraped by Prometheus: `present 1`, `not_a_number NaN`.
fn scripted_exposition() -> (HealthServer, Prometheus) {
    let server = HealthServer::start(vec![Reply::Answer {
        status: 200,
        content_type: "text/plain; version=0.0.4".into(),
        body: "present 1\nnot_a_number NaN\n".into(),
    }]);
    let prometheus = Prometheus::start(&[format!("127.0.0.1:{}", server.port())], None);
    prometheus.wait_for("not_a_number");
    (server, prometheus)
}

#[test]
fn metrics_no_data_fails_by_default_waits_or_is_ignored_when_so_configured() {
    let (_server, prometheus) = scripted_exposition();
    let health = HealthServer::start(vec![Reply::healthy(VERSION)]);
    let probe = health.url("/health");
    let run_with = |query: &str, extra: &str| {
        let world = World::new("");
        let config = format!(
            "  prometheus:\n    address: {}\n  metrics:\n{}",
            prometheus.url(),
            metric("m", query, "< 10", extra)
        );
        let run = world.rollout(&config, &probe, &["canary:5:2s"]).run();
        let result = world.result();
        (world, run, result)
    };
    for query in ["absent_metric", "not_a_number"] {
        let (world, run, result) = run_with(query, "");
        run.expect_code(1);
        assert_eq!(result["failed_gate"], "metric:m");
        let v = verdict(&result, 0, "metric:m");
        assert_eq!(v["status"], "fail", "{v:#}");
        let why = if query == "absent_metric" {
            "empty result"
        } else {
            "NaN"
        };
        assert!(
            v["message"]
                .as_str()
                .expect("message")
                .contains(&format!("no data ({why}; `no-data: fail`)")),
            "{v:#}"
        );
        assert_eq!(world.hook_calls().len(), 2, "rolled back");
    }
    let (_world, run, result) = run_with("absent_metric", "      no-data: wait\n");
    run.expect_code(1);
    let v = verdict(&result, 0, "metric:m");
    assert_eq!(
        v["status"], "no_data",
        "waits, then the stage ends without data: {v:#}"
    );
    assert_eq!(result["failed_gate"], "metric:m");
    let (_world, run, result) = run_with("absent_metric", "      no-data: ignore\n");
    run.expect_code(0);
    let v = verdict(&result, 0, "metric:m");
    assert_eq!(v["status"], "ignored", "{v:#}");
    assert!(
        v["message"]
            .as_str()
            .expect("message")
            .contains("ignored as configured")
    );
    let (_world, run, result) = run_with("present", "");
    run.expect_code(0);
    assert_eq!(verdict(&result, 0, "metric:m")["value"], 1.0);
}

#[test]
fn metrics_a_firing_alert_fails_the_stage_and_a_pending_one_does_not() {
    let server = HealthServer::start(vec![Reply::healthy(VERSION)]);
    let rules = "groups:\n  - name: test\n    rules:\n      - alert: CanaryErrors\n        expr: vector(1)\n        labels:\n          severity: critical\n          service: api\n      - alert: SlowBurn\n        expr: vector(1)\n        for: 1h\n        labels:\n          severity: warning\n          service: web\n";
    let prometheus = Prometheus::start(&[format!("127.0.0.1:{}", server.port())], Some(rules));
    prometheus.wait_for("ALERTS{alertstate=\"firing\"}");
    let alerts = |selector: &str| {
        format!(
            "  alerts:\n    address: {}\n    selector: '{selector}'\n    interval: 300ms\n",
            prometheus.url()
        )
    };
    let world = World::new("");
    let run = world
        .rollout(
            &alerts(r#"severity=~"critical|warning", service="api""#),
            &server.url("/health"),
            &["canary:5:3s"],
        )
        .run();
    run.expect_code(1);
    let result = world.result();
    assert_eq!(result["failed_gate"], "alerts");
    let reason = result["reason"].as_str().expect("reason");
    assert!(
        reason.contains(r#"CanaryErrors{service="api", severity="critical"}"#),
        "{reason}"
    );
    // `SlowBurn` matches this selector but is only pending (`for: 1h`).
    let world = World::new("");
    let run = world
        .rollout(
            &alerts(r#"service="web""#),
            &server.url("/health"),
            &["canary:5:2s"],
        )
        .run();
    run.expect_code(0);
    assert_eq!(verdict(&world.result(), 0, "alerts")["status"], "pass");
}

#[test]
fn metrics_backend_down_or_5xx_is_retried_then_a_dependency_error_never_a_pass() {
    const TOKEN: &str = "prom-token-Zq9+/s3cr3t";
    let server = HealthServer::start(vec![Reply::healthy(VERSION)]);
    // Down before the rollout: nothing moves, exit 3.
    let closed = crate::support::watchdog::free_port();
    let world = World::new("");
    let run = world
        .rollout(
            &format!(
                "  metrics:\n{}",
                metric(
                    "m",
                    "up",
                    "== 1",
                    &format!("      address: http://127.0.0.1:{closed}\n")
                )
            ),
            &server.url("/health"),
            &["canary:5:2s"],
        )
        .run();
    run.expect_code(3);
    assert!(
        run.stderr.contains("did not answer after 4 attempt(s)"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("connection refused"), "{}", run.stderr);
    assert!(world.hook_calls().is_empty(), "no traffic moved");

    // Answers until traffic moved, then 503: retried, then rolled back with exit 3.
    let ok = Reply::json(
        200,
        r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"1"]}]}}"#,
    );
    let fake = HealthServer::start(vec![ok]);
    let world = World::new("");
    fake.switch_when_exists(
        world.shifted(),
        vec![Reply::json(
            503,
            r#"{"status":"error","errorType":"unavailable","error":"overloaded"}"#,
        )],
    );
    let run = world
        .rollout(
            &format!(
                "  prometheus:\n    address: {}\n    auth:\n      bearer: PROM_TOKEN\n  metrics:\n{}",
                fake.url(""),
                metric("m", "up", "== 1", "")
            ),
            &server.url("/health"),
            &["canary:5:3s"],
        )
        .env("PROM_TOKEN", TOKEN)
        .actions()
        .run();
    run.expect_code(3);
    let result = world.result();
    assert_eq!(result["result"], "rolled_back");
    assert_eq!(result["cause"], "dependency");
    let reason = result["reason"].as_str().expect("reason");
    assert!(
        reason.contains("did not answer after 4 attempt(s): HTTP 503: unavailable: overloaded"),
        "{reason}"
    );
    let requests = fake.requests();
    assert!(
        requests.len() >= 5,
        "the preflight, then 4 attempts: {}",
        requests.len()
    );
    assert!(
        requests
            .iter()
            .all(|r| r.header("authorization") == Some(&format!("Bearer {TOKEN}")))
    );
    let mut places = run.everything();
    places.extend(read_tree(world.path()));
    assert_no_secret(TOKEN, places.iter().map(|(n, t)| (n.clone(), t.as_str())));
}
