//! `provider: web` metric gates (Argo's `web`): `shipgate rollout` against a scripted loopback
//! JSON endpoint answering a good value, a bad one, an answer without the value, and 500s; the
//! URL is templated, the secret header is sent and never shown anywhere.

use std::path::Path;

use serde_json::{Value, json};

use crate::support::health_server::{HealthServer, Reply};
use crate::support::stub_http::{Outgoing, StubServer};
use crate::support::{Shipgate, assert_no_secret, read_tree};

const ID: &str = "88-webmetric";
const VERSION: &str = "1.4.0";
const API_KEY: &str = "dd-k3y-9f8e7d6c5b4a-web";

/// A Datadog-like query answer holding `value` at `series[0].pointlist[-1][1]`.
fn answer(value: f64) -> Outgoing {
    Outgoing::json(
        200,
        &json!({"status": "ok", "series": [{"metric": "errors", "pointlist": [[1.0, 0.5], [2.0, value]]}]}),
    )
}

struct World {
    dir: tempfile::TempDir,
    probe: HealthServer,
}

impl World {
    fn new() -> World {
        World {
            dir: tempfile::tempdir().expect("workdir"),
            probe: HealthServer::start(vec![Reply::healthy(VERSION)]),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `shipgate rollout` of one 2-second stage with the web metric `extra` YAML keys added.
    fn rollout(&self, api: &StubServer, extra: &str) -> Shipgate {
        std::fs::write(
            self.path().join("shipgate.yml"),
            format!(
                "rollout:\n  metrics:\n    - name: errors\n      provider: web\n      url: '{}/api/v1/query?query=sum:errors{{version:{{{{version}}}},stage:{{{{stage}}}}}}'\n      path: series[0].pointlist[-1][1]\n      condition: '< 0.03'\n      interval: 300ms\n      auth:\n        headers:\n          DD-API-KEY: DD_API_KEY\n{extra}",
                api.url()
            ),
        )
        .expect("shipgate.yml");
        let mut cmd = Shipgate::new(self.path());
        cmd.actions()
            .input("deployment-id", ID)
            .env("DD_API_KEY", API_KEY)
            .env("SHIPGATE_RETRY_SCALE", "0.01")
            .args([
                "rollout",
                "--version",
                VERSION,
                "--endpoint",
                &self.probe.url("/health"),
                "--stage",
                "canary:50:2s",
            ]);
        for (name, value) in [
            ("hook", "true"),
            ("interval", "200ms"),
            ("min-samples", "3"),
            ("max-p95", "10s"),
            ("hook-retries", "0"),
            ("verify-successes", "1"),
        ] {
            cmd.input(name, value);
        }
        cmd
    }

    fn result(&self) -> Value {
        let text =
            std::fs::read_to_string(self.path().join(".shipgate").join(ID).join("rollout.json"))
                .expect("rollout.json");
        serde_json::from_str(&text).expect("JSON")
    }

    /// Nothing the run printed or wrote holds the API key.
    fn assert_key_hidden(&self, run: &crate::support::cli::Run) {
        let mut places = run.everything();
        places.extend(read_tree(self.path()));
        assert_no_secret(API_KEY, places.iter().map(|(n, t)| (n.clone(), t.as_str())));
    }
}

fn verdict(result: &Value) -> Value {
    result["stages"][0]["verdicts"]
        .as_array()
        .expect("verdicts")
        .iter()
        .find(|v| v["gate"] == "metric:errors")
        .cloned()
        .unwrap_or_else(|| panic!("no web metric verdict: {result:#}"))
}

#[test]
fn web_metric_a_good_value_passes_with_the_secret_header_and_a_templated_url() {
    let world = World::new();
    let api = StubServer::start(answer(0.01));
    let run = world.rollout(&api, "").run();
    run.expect_code(0);
    let v = verdict(&world.result());
    assert_eq!(v["status"], "pass", "{v:#}");
    assert_eq!(v["value"], 0.01);
    assert_eq!(v["threshold"], "< 0.03");
    let requests = api.requests();
    assert!(
        requests.len() >= 2,
        "the preflight and the stage's measurements"
    );
    for request in &requests {
        assert_eq!(request.path, "/api/v1/query");
        assert_eq!(request.header("dd-api-key"), Some(API_KEY));
        assert_eq!(
            request.query_param("query").as_deref(),
            Some("sum:errors{version:1.4.0,stage:canary}")
        );
    }
    world.assert_key_hidden(&run);
}

#[test]
fn web_metric_a_bad_value_rolls_back_naming_value_condition_and_url() {
    let world = World::new();
    let api = StubServer::start(answer(0.2));
    // The preflight only checks the endpoint answers; the value is judged during the stage.
    let run = world.rollout(&api, "").run();
    run.expect_code(1);
    let result = world.result();
    assert_eq!(result["result"], "rolled_back");
    assert_eq!(result["failed_gate"], "metric:errors");
    let v = verdict(&result);
    assert_eq!(v["status"], "fail");
    let message = v["message"].as_str().expect("message");
    assert!(message.contains("0.2 is not < 0.03"), "{message}");
    assert!(
        message.contains("GET `http://127.0.0.1:")
            && message.contains("at `$.series[0].pointlist[-1][1]`"),
        "{message}"
    );
    world.assert_key_hidden(&run);
}

#[test]
fn web_metric_an_answer_without_the_value_is_no_data_and_fails_by_default() {
    let world = World::new();
    let api = StubServer::start(Outgoing::json(200, &json!({"status": "ok", "series": []})));
    let run = world.rollout(&api, "").run();
    run.expect_code(1);
    let v = verdict(&world.result());
    assert_eq!(v["status"], "fail", "{v:#}");
    let message = v["message"].as_str().expect("message");
    assert!(
        message.contains("no data (nothing at `$.series[0]"),
        "{message}"
    );
    assert!(message.contains("no-data: fail"), "{message}");

    // `no-data: ignore` leaves it out of the verdict, and says so.
    let world = World::new();
    let run = world.rollout(&api, "      no-data: ignore\n").run();
    run.expect_code(0);
    let v = verdict(&world.result());
    assert_eq!(v["status"], "ignored", "{v:#}");
}

#[test]
fn web_metric_500s_are_retried_then_a_dependency_failure_never_a_pass() {
    let world = World::new();
    let api = StubServer::start(Outgoing::new(500, "upstream exploded"));
    // The preflight is answered; every measurement during the stage gets 500s.
    api.then(vec![answer(0.01)]);
    let run = world.rollout(&api, "").run();
    run.expect_code(3);
    let result = world.result();
    assert_eq!(result["result"], "rolled_back");
    assert_eq!(result["cause"], "dependency");
    let v = verdict(&result);
    assert_eq!(v["status"], "fail");
    let message = v["message"].as_str().expect("message");
    assert!(
        message.contains("did not answer after 4 attempt(s): HTTP 500"),
        "{message}"
    );
    assert!(api.requests().len() >= 5, "the preflight, then 4 attempts");
    world.assert_key_hidden(&run);

    // A backend that is down before the rollout stops it with nothing changed.
    let world = World::new();
    let down = StubServer::start(Outgoing::new(503, "maintenance"));
    let run = world.rollout(&down, "").run();
    run.expect_code(3);
    assert!(
        run.stderr.contains("failed before the rollout started"),
        "{}",
        run.stderr
    );
}

#[test]
fn web_metric_config_errors_name_the_key() {
    let world = World::new();
    let api = StubServer::start(answer(0.01));
    let run = world.rollout(&api, "      query: 'sum(x)'\n").run();
    run.expect_code(2);
    assert!(
        run.stderr.contains("`provider: web` and has `query`"),
        "{}",
        run.stderr
    );
    let run = world.rollout(&api, "").env("DD_API_KEY", "").run();
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("`auth.headers.DD-API-KEY` names `DD_API_KEY`"),
        "{}",
        run.stderr
    );
    assert!(api.requests().is_empty(), "nothing was asked");
}
