//! `shipgate smoke` end to end: the real binary against scripted loopback HTTP servers and the
//! real PostgreSQL fixture. Concurrency and ordering are proven with server-side timestamps,
//! never with wall-clock thresholds.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::http_server::{HttpServer, Reply};
use crate::support::postgres::PgCluster;
use crate::support::state_files;
use crate::support::{Shipgate, assert_no_secret, read_tree};

const ID: &str = "7-abcdef0";

fn smoke(dir: &Path, suite: &str) -> Shipgate {
    std::fs::write(dir.join("smoke.yml"), suite).expect("write suite");
    let mut cmd = Shipgate::new(dir);
    cmd.args(["--deployment-id", ID, "smoke", "--suite", "smoke.yml"]);
    cmd
}

fn state_file(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(".shipgate").join(ID).join(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn smoke_json(dir: &Path) -> Value {
    serde_json::from_str(&state_file(dir, "smoke.json")).expect("smoke.json is JSON")
}

fn test_result<'a>(result: &'a Value, name: &str) -> &'a Value {
    result["tests"]
        .as_array()
        .and_then(|tests| tests.iter().find(|t| t["name"] == name))
        .unwrap_or_else(|| panic!("no test `{name}` in {result:#}"))
}

fn failures(result: &Value, name: &str) -> String {
    test_result(result, name)["failures"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// A strict well-formedness check of the JUnit report with a real XML tokenizer, plus element
/// nesting and entity checks; returns the `name` of every `<testcase>`.
fn junit_testcases(xml: &str) -> Vec<String> {
    let mut stack: Vec<String> = Vec::new();
    let mut roots = 0;
    let mut cases = Vec::new();
    let mut current: Option<String> = None;
    let check_entities = |text: &str| {
        let mut rest = text;
        while let Some(i) = rest.find('&') {
            let after = &rest[i + 1..];
            let end = after
                .find(';')
                .unwrap_or_else(|| panic!("bare `&` in {text:?}"));
            let entity = &after[..end];
            assert!(
                matches!(entity, "amp" | "lt" | "gt" | "quot" | "apos") || entity.starts_with('#'),
                "unknown entity `&{entity};`"
            );
            rest = &after[end..];
        }
    };
    for token in xmlparser::Tokenizer::from(xml) {
        let token = token.unwrap_or_else(|e| panic!("JUnit is not well-formed XML: {e}\n{xml}"));
        match token {
            xmlparser::Token::ElementStart { local, .. } => {
                if stack.is_empty() {
                    roots += 1;
                }
                stack.push(local.as_str().to_string());
                current = Some(local.as_str().to_string());
            }
            xmlparser::Token::Attribute { local, value, .. } => {
                check_entities(value.as_str());
                assert!(!value.as_str().contains('<'), "`<` in an attribute");
                if current.as_deref() == Some("testcase") && local.as_str() == "name" {
                    cases.push(
                        value
                            .as_str()
                            .replace("&lt;", "<")
                            .replace("&gt;", ">")
                            .replace("&quot;", "\"")
                            .replace("&apos;", "'")
                            .replace("&amp;", "&"),
                    );
                }
            }
            xmlparser::Token::ElementEnd { end, .. } => match end {
                xmlparser::ElementEnd::Open => current = None,
                xmlparser::ElementEnd::Empty => {
                    stack.pop();
                    current = None;
                }
                xmlparser::ElementEnd::Close(_, local) => {
                    let open = stack.pop().expect("a closing tag without an opening one");
                    assert_eq!(open, local.as_str(), "mismatched tags");
                }
            },
            xmlparser::Token::Text { text } => check_entities(text.as_str()),
            _ => {}
        }
    }
    assert!(stack.is_empty(), "unclosed elements: {stack:?}");
    assert_eq!(roots, 1, "one root element");
    cases
}

/// A service with something for every kind of assert.
fn service() -> HttpServer {
    let server = HttpServer::start();
    server
        .route("GET", "/health", |_| {
            let mut reply = Reply::json(200, json!({"status": "pass", "version": "1.4.0"}));
            reply.headers = vec![("content-type".into(), "application/health+json".into())];
            reply
        })
        .route("GET", "/degraded", |_| {
            Reply::json(200, json!({"status": "Degraded"}))
        })
        .route("GET", "/data", |_| {
            Reply::json(
                200,
                json!({"items": [{"id": 41, "tags": ["a", "b"]}], "count": 7, "state": "serving", "nothing": null}),
            )
            .header("x-request-id", "req-123")
        })
        .route("GET", "/text", |_| Reply::text(200, "all systems go"))
        .route("GET", "/slow", |_| {
            Reply::text(200, "late").delay(Duration::from_millis(400))
        })
        .route("GET", "/broken", |_| Reply::text(500, "boom"));
    server
}

#[test]
fn every_assert_kind_passes() {
    let server = service();
    let dir = tempfile::tempdir().expect("workdir");
    let suite = format!(
        r#"base-url: {}
tests:
  - name: health format
    url: /health
    expect:
      - status == 200
      - health == healthy
      - version == 1.4.0
      - version == {{{{version}}}}
  - name: json and headers
    url: /data
    expect:
      - header content-type contains json
      - header X-Request-Id matches ^req-\d+$
      - header x-request-id exists
      - header x-missing not exists
      - json /items/0/id == 41
      - json $.items[0].id == 41
      - json $.count != 8
      - json $.count < 8
      - json $.count > 6
      - json $.count <= 7
      - json $.count >= 7
      - json $.items[0].tags contains b
      - json $.state contains serv
      - json $.state matches "^serv(ing|ed)$"
      - json $.nothing exists
      - json $.missing not exists
      - json $.items[?@.id == 41].tags[-1] == b
      - count $.items[?@.id > 40 && length(@.tags) == 2] == 1
      - count $.items[?@.id == 0] == 0
      - count $.items[*].tags[*] >= 2
  - name: body and time
    url: /text
    expect:
      - body contains systems
      - body matches "^all .* go$"
      - duration < 60s
"#,
        server.url()
    );
    // `{{version}}` comes from what `validate` recorded.
    state_files::write(
        &dir.path().join(".shipgate"),
        ID,
        "validate.json",
        &state_files::validate(ID, 1),
    );
    let run = smoke(dir.path(), &suite).actions().run();
    run.expect_code(0);
    assert_eq!(run.outputs["result"], "pass");
    assert_eq!(run.outputs["total"], "3");
    assert_eq!(run.outputs["passed"], "3");
    let result = smoke_json(dir.path());
    assert_eq!(result["schema_version"], 1);
    assert_eq!(result["command"], "smoke");
    assert_eq!(result["result"], "pass");
    assert_eq!(result["passed"], 3);
    assert!(
        run.summary.contains("Smoke tests passed"),
        "{}",
        run.summary
    );
    let cases = junit_testcases(&state_file(dir.path(), "smoke-junit.xml"));
    assert_eq!(
        cases,
        ["health format", "json and headers", "body and time"]
    );
}

#[test]
fn every_assert_kind_fails_showing_expected_and_actual() {
    let server = service();
    let dir = tempfile::tempdir().expect("workdir");
    let cases: &[(&str, &str, &str)] = &[
        ("status", "/broken", "status == 200"),
        (
            "header contains",
            "/data",
            "header content-type contains xml",
        ),
        (
            "header matches",
            "/data",
            "header x-request-id matches ^id-",
        ),
        ("header exists", "/data", "header x-trace exists"),
        ("pointer ==", "/data", "json /items/0/id == 42"),
        ("path ==", "/data", "json $.items[0].id == 42"),
        ("!=", "/data", "json $.count != 7"),
        ("<", "/data", "json $.count < 7"),
        (">", "/data", "json $.count > 7"),
        ("contains", "/data", "json $.items[0].tags contains z"),
        ("matches", "/data", "json $.state matches ^down$"),
        ("exists", "/data", "json $.items[3] exists"),
        ("body contains", "/text", "body contains failure"),
        ("body matches", "/text", "body matches ^nope"),
        ("duration", "/slow", "duration < 100ms"),
        ("health", "/degraded", "health == healthy"),
        ("version", "/health", "version == 2.0.0"),
        (
            "version from a variable",
            "/health",
            "version == {{expected_version}}",
        ),
    ];
    let mut suite = format!("base-url: {}\ntests:\n", server.url());
    for (name, path, assert) in cases {
        suite.push_str(&format!(
            "  - name: \"{name}\"\n    url: {path}\n    expect:\n      - '{assert}'\n"
        ));
    }
    let run = smoke(dir.path(), &suite)
        .args(["--var", "expected_version=2.1.0"])
        .actions()
        .run();
    run.expect_code(1);
    assert_eq!(run.outputs["result"], "fail");
    assert_eq!(run.outputs["failed-count"], cases.len().to_string());
    let result = smoke_json(dir.path());
    let expected = [
        ("status", "status: expected == 200, got 500"),
        (
            "header contains",
            "header content-type: expected contains \"xml\", got \"application/json\"",
        ),
        (
            "header matches",
            "header x-request-id: expected matches /^id-/, got \"req-123\"",
        ),
        (
            "header exists",
            "header x-trace: expected exists, got nothing (missing)",
        ),
        ("pointer ==", "json /items/0/id: expected == 42, got 41"),
        ("path ==", "json $.items[0].id: expected == 42, got 41"),
        ("!=", "json $.count: expected != 7, got 7"),
        ("<", "json $.count: expected < 7, got 7"),
        (">", "json $.count: expected > 7, got 7"),
        (
            "contains",
            "json $.items[0].tags: expected contains \"z\", got [\"a\",\"b\"]",
        ),
        (
            "matches",
            "json $.state: expected matches /^down$/, got \"serving\"",
        ),
        (
            "exists",
            "json $.items[3]: expected exists, got nothing (missing)",
        ),
        (
            "body contains",
            "body: expected contains \"failure\", got \"all systems go\"",
        ),
        (
            "body matches",
            "body: expected matches /^nope/, got \"all systems go\"",
        ),
        ("duration", "duration: expected < 100ms, got "),
        (
            "health",
            "health: expected == \"healthy\", got \"degraded\" (HTTP 200, status `Degraded`)",
        ),
        ("version", "version: expected == \"2.0.0\", got \"1.4.0\""),
        (
            "version from a variable",
            "version: expected == \"2.1.0\", got \"1.4.0\"",
        ),
    ];
    for (name, message) in expected {
        let got = failures(&result, name);
        assert!(got.starts_with(message), "{name}: {got}");
    }
    // The summary lists each failed check with expected and actual side by side.
    assert!(
        run.summary.contains("| Test | Check | Expected | Actual |"),
        "{}",
        run.summary
    );
    assert!(
        run.summary
            .contains("| `path ==` | `json $.items[0].id` | == 42 | 41 |"),
        "{}",
        run.summary
    );
    // One annotation per failed test (capped), naming the test.
    assert!(
        run.stderr
            .contains("::error title=smoke test status::status: expected == 200, got 500"),
        "{}",
        run.stderr
    );
    let xml = state_file(dir.path(), "smoke-junit.xml");
    let names = junit_testcases(&xml);
    assert_eq!(names.len(), cases.len());
    assert_eq!(xml.matches("<failure ").count(), cases.len());
    assert!(xml.contains("message=\"json $.items[0].tags: expected contains &quot;z&quot;, got [&quot;a&quot;,&quot;b&quot;]\""), "{xml}");
}

#[test]
fn login_token_chain_works_and_the_token_never_leaks() {
    let token = format!("tok-{}", crate::support::watchdog::random_hex(12));
    let cookie = format!("sess{}", crate::support::watchdog::random_hex(10));
    let password = "pa$$&<w0rd>\"smoke\"";
    let server = HttpServer::start();
    {
        let token = token.clone();
        let cookie = cookie.clone();
        server.route("POST", "/api/v1/auth/login", move |req| {
            let body = req.json();
            if body["user"] == "ann@example.com" && body["password"] == password {
                Reply::json(200, json!({"token": token, "user": "ann"}))
                    .header("set-cookie", &format!("session={cookie}; Path=/; HttpOnly"))
            } else {
                Reply::json(401, json!({"error": "bad credentials"}))
            }
        });
    }
    {
        let token = token.clone();
        server.route("GET", "/api/v1/reports/summary", move |req| {
            if req.header("authorization") == Some(&format!("Bearer {token}")) {
                // Echoes the token, so a failing assert would show it if it were not masked.
                Reply::json(200, json!({"reports": 12, "echo": token}))
            } else {
                Reply::json(401, json!({"error": "no token"}))
            }
        });
    }
    let suite = format!(
        r#"base-url: {}
vars:
  user: ann@example.com
tests:
  - name: login
    url: /api/v1/auth/login
    method: POST
    json:
      user: "{{{{user}}}}"
      password: "{{{{SMOKE_PASSWORD}}}}"
    expect:
      - status == 200
    capture:
      token: $.token
      session:
        header: set-cookie
  - name: reports summary
    url: /api/v1/reports/summary
    headers:
      Authorization: Bearer {{{{token}}}}
    expect:
      - status == 200
      - json $.reports > 0
      - json $.echo == not-the-token
"#,
        server.url()
    );
    let dir = tempfile::tempdir().expect("workdir");
    let run = smoke(dir.path(), &suite)
        .args(["--secret", "SMOKE_PASSWORD"])
        .env("SMOKE_PASSWORD", password)
        .actions()
        .run();
    // The chain worked: the call carried the token the login issued...
    let calls = server.requests_to("/api/v1/reports/summary");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].status, 200, "the token was not passed on");
    let login = server.requests_to("/api/v1/auth/login");
    assert_eq!(login[0].status, 200, "the secret password was not sent");
    assert!(
        calls[0].start >= login[0].end,
        "the call did not wait for the login"
    );
    // ...and the deliberately failing assert shows the echoed token masked.
    run.expect_code(1);
    let result = smoke_json(dir.path());
    assert_eq!(test_result(&result, "login")["status"], "passed");
    assert_eq!(
        failures(&result, "reports summary"),
        "json $.echo: expected == \"not-the-token\", got \"***\""
    );
    // Registered with the runner, and in no output, report, state or log file.
    assert!(
        run.stderr.contains(&format!("::add-mask::{token}")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!("::add-mask::{cookie}")),
        "{}",
        run.stderr
    );
    let files = read_tree(&dir.path().join(".shipgate"));
    assert!(
        files
            .iter()
            .any(|(p, _)| p.ends_with(&format!("smoke-test-logs-{ID}.log")))
    );
    for secret in [token.as_str(), cookie.as_str(), password] {
        assert_no_secret(
            secret,
            run.everything()
                .iter()
                .map(|(n, t)| (n.clone(), t.as_str()))
                .chain(files.iter().map(|(n, t)| (n.clone(), t.as_str()))),
        );
    }
    junit_testcases(&state_file(dir.path(), "smoke-junit.xml"));
}

#[test]
fn retries_until_ready_and_reports_time_to_ready_separately() {
    let server = HttpServer::start();
    let calls = Arc::new(AtomicUsize::new(0));
    {
        let calls = calls.clone();
        server.route("GET", "/health/ready", move |_| {
            if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                Reply::json(503, json!({"status": "not_ready"}))
            } else {
                Reply::json(200, json!({"status": "ready"}))
            }
        });
    }
    let dir = tempfile::tempdir().expect("workdir");
    let suite = format!(
        "tests:\n  - name: readiness\n    url: {}/health/ready\n    ready:\n      timeout: 5m\n      interval: 1s\n    expect:\n      - health == healthy\n",
        server.url()
    );
    let run = smoke(dir.path(), &suite).actions().run();
    run.expect_code(0);
    let result = smoke_json(dir.path());
    let test = test_result(&result, "readiness");
    assert_eq!(test["status"], "passed");
    assert_eq!(test["attempts"], 4);
    assert!(test["time_to_ready_ms"].is_u64(), "{test}");
    assert_eq!(test["failures"], json!([]));
    assert_eq!(server.requests_to("/health/ready").len(), 4);
    assert!(run.summary.contains("Ready after"), "{}", run.summary);
    let log = state_file(dir.path(), &format!("smoke-test-logs-{ID}.log"));
    assert!(log.contains("`readiness` attempt 1: GET"), "{log}");
    assert!(log.contains("→ HTTP 503"), "{log}");
    assert!(
        log.contains("attempt 4") && log.contains(": passed"),
        "{log}"
    );
}

#[test]
fn a_readiness_deadline_that_passes_fails_the_test_as_not_ready() {
    let server = HttpServer::start();
    server.route("GET", "/health", |_| {
        Reply::json(503, json!({"status": "DOWN"}))
    });
    let dir = tempfile::tempdir().expect("workdir");
    let suite = format!(
        "tests:\n  - name: never ready\n    url: {}/health\n    ready:\n      timeout: 1s\n      interval: 20ms\n    expect:\n      - status == 200\n",
        server.url()
    );
    let run = smoke(dir.path(), &suite)
        .env("SHIPGATE_RETRY_SCALE", "1")
        .actions()
        .run();
    run.expect_code(1);
    let result = smoke_json(dir.path());
    let test = test_result(&result, "never ready");
    assert_eq!(test["ready_timed_out"], true);
    assert!(test["time_to_ready_ms"].is_null());
    let attempts = test["attempts"].as_u64().expect("attempts");
    assert!(attempts >= 2, "{test}");
    assert_eq!(server.requests_to("/health").len() as u64, attempts);
    let got = failures(&result, "never ready");
    assert!(
        got.starts_with("ready: expected ready within 1s, got not ready after"),
        "{got}"
    );
    assert!(got.contains("status: expected == 200, got 503"), "{got}");
    assert!(state_file(dir.path(), "smoke-junit.xml").contains("type=\"not-ready\""));
    assert!(run.summary.contains("⏱️ not ready"), "{}", run.summary);
}

#[test]
fn independent_tests_overlap_and_dependent_ones_wait() {
    let server = HttpServer::start();
    for i in 0..4 {
        server.route("GET", &format!("/c{i}"), |_| {
            Reply::json(200, json!({"ok": true})).delay(Duration::from_millis(300))
        });
    }
    server.route("POST", "/login", |_| {
        Reply::json(200, json!({"id": "s-1"})).delay(Duration::from_millis(200))
    });
    server.route("GET", "/after", |req| {
        let status = if req.query == "id=s-1" { 200 } else { 400 };
        Reply::json(status, json!({}))
    });
    let mut suite = format!("base-url: {}\ntests:\n", server.url());
    for i in 0..4 {
        suite.push_str(&format!("  - name: c{i}\n    url: /c{i}\n"));
    }
    suite.push_str("  - name: login\n    url: /login\n    method: POST\n    capture:\n      id: $.id\n  - name: after\n    url: /after?id={{id}}\n");
    let dir = tempfile::tempdir().expect("workdir");
    smoke(dir.path(), &suite)
        .args(["--concurrency", "8"])
        .run()
        .expect_code(0);
    let requests = server.requests();
    let independent: Vec<_> = requests
        .iter()
        .filter(|r| r.req.path.starts_with("/c"))
        .collect();
    assert_eq!(independent.len(), 4);
    let latest_start = independent.iter().map(|r| r.start).max().expect("starts");
    let earliest_end = independent.iter().map(|r| r.end).min().expect("ends");
    assert!(
        latest_start < earliest_end,
        "all four were in flight at once on the server: {:?}",
        independent
            .iter()
            .map(|r| (r.start, r.end))
            .collect::<Vec<_>>()
    );
    let login = server.requests_to("/login");
    let after = server.requests_to("/after");
    assert_eq!(
        after[0].status, 200,
        "the capture reached the dependent test"
    );
    assert!(after[0].start >= login[0].end, "the dependent test waited");

    // Sequentially, no two requests overlap.
    let sequential = HttpServer::start();
    for i in 0..4 {
        sequential.route("GET", &format!("/c{i}"), |_| {
            Reply::json(200, json!({})).delay(Duration::from_millis(50))
        });
    }
    let mut suite = format!("base-url: {}\ntests:\n", sequential.url());
    for i in 0..4 {
        suite.push_str(&format!("  - name: c{i}\n    url: /c{i}\n"));
    }
    smoke(dir.path(), &suite)
        .args(["--concurrency", "1"])
        .run()
        .expect_code(0);
    let mut spans: Vec<_> = sequential
        .requests()
        .iter()
        .map(|r| (r.start, r.end))
        .collect();
    spans.sort();
    for pair in spans.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "overlap at concurrency 1: {spans:?}"
        );
    }
}

#[test]
fn a_failed_dependency_skips_the_tests_that_need_it() {
    let server = HttpServer::start();
    server.route("POST", "/login", |_| {
        Reply::json(401, json!({"error": "no"}))
    });
    server.route("GET", "/me", |_| Reply::json(200, json!({})));
    let suite = format!(
        "base-url: {}\ntests:\n  - name: login\n    url: /login\n    method: POST\n    capture:\n      token: $.token\n  - name: me\n    url: /me\n    headers:\n      Authorization: Bearer {{{{token}}}}\n",
        server.url()
    );
    let dir = tempfile::tempdir().expect("workdir");
    let run = smoke(dir.path(), &suite).actions().run();
    run.expect_code(1);
    assert!(server.requests_to("/me").is_empty());
    let result = smoke_json(dir.path());
    assert_eq!(test_result(&result, "me")["status"], "skipped");
    assert_eq!(result["skipped"], 1);
    let got = failures(&result, "login");
    assert!(got.contains("status: expected < 400, got 401"), "{got}");
    assert!(
        got.contains("capture token: expected a value at `$.token` in the body"),
        "{got}"
    );
    let xml = state_file(dir.path(), "smoke-junit.xml");
    assert_eq!(junit_testcases(&xml).len(), 2);
    assert!(
        xml.contains(
            "<skipped message=\"dependency: not run: it needs `login`, which did not pass\"/>"
        ),
        "{xml}"
    );
}

#[test]
fn database_check_passes_and_a_wrong_password_fails_without_showing_it() {
    let pg = PgCluster::shared();
    let db = pg.create_database("smoke");
    pg.psql(
        &db,
        "CREATE TABLE users (id int); INSERT INTO users VALUES (1), (2), (3);",
    );
    let suite = "vars:\n  db:\n    env: SMOKE_DB\n    secret: true\ntests:\n  - name: database\n    database:\n      url: \"{{db}}\"\n      query: SELECT count(*) FROM users\n    expect:\n      - value == 3\n      - rows == 1\n";
    let dir = tempfile::tempdir().expect("workdir");
    let run = smoke(dir.path(), suite)
        .env("SMOKE_DB", pg.url(&db))
        .actions()
        .run();
    run.expect_code(0);
    let result = smoke_json(dir.path());
    let test = test_result(&result, "database");
    assert_eq!(test["status"], "passed");
    assert!(
        test["target"]
            .as_str()
            .unwrap_or("")
            .contains(":***@127.0.0.1"),
        "{test}"
    );

    // A wrong expectation shows both values.
    let wrong_value = suite.replace("value == 3", "value == 4");
    let run = smoke(dir.path(), &wrong_value)
        .env("SMOKE_DB", pg.url(&db))
        .run();
    run.expect_code(1);
    assert_eq!(
        failures(&smoke_json(dir.path()), "database"),
        "value: expected == 4, got \"3\""
    );

    // A wrong password: a clear failure, and neither password anywhere.
    let wrong = format!("Wr0ng&pw:{}@/", crate::support::watchdog::random_hex(6));
    let url = pg.url(&db).replace(
        &pg.password_url_encoded(),
        &crate::support::postgres::url_encode(&wrong),
    );
    let run = smoke(dir.path(), suite)
        .env("SMOKE_DB", &url)
        .actions()
        .run();
    run.expect_code(1);
    let got = failures(&smoke_json(dir.path()), "database");
    assert!(got.contains("password authentication failed"), "{got}");
    assert!(got.contains("postgres://postgres:***@127.0.0.1"), "{got}");
    let files = read_tree(&dir.path().join(".shipgate"));
    for secret in [wrong.as_str(), pg.password()] {
        assert_no_secret(
            secret,
            run.everything()
                .iter()
                .map(|(n, t)| (n.clone(), t.as_str()))
                .chain(files.iter().map(|(n, t)| (n.clone(), t.as_str()))),
        );
    }
}

#[test]
fn tcp_check_connects_and_fails_on_a_closed_port() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let open = listener.local_addr().expect("addr").port();
    let closed = crate::support::watchdog::free_port();
    let suite = format!(
        "tests:\n  - name: open\n    tcp: 127.0.0.1:{open}\n    expect:\n      - duration < 60s\n  - name: closed\n    tcp: 127.0.0.1:{closed}\n"
    );
    let dir = tempfile::tempdir().expect("workdir");
    let run = smoke(dir.path(), &suite).run();
    run.expect_code(1);
    let result = smoke_json(dir.path());
    assert_eq!(test_result(&result, "open")["status"], "passed");
    let got = failures(&result, "closed");
    assert!(got.starts_with("connect: cannot connect:"), "{got}");
    let xml = state_file(dir.path(), "smoke-junit.xml");
    assert_eq!(junit_testcases(&xml), ["open", "closed"]);
    assert!(xml.contains("type=\"unreachable\""), "{xml}");
    drop(listener);
}

#[test]
fn a_counter_that_grew_past_its_snapshot_tolerance_fails_naming_both_values() {
    let pending = Arc::new(AtomicU64::new(100));
    let failed_jobs = Arc::new(AtomicU64::new(4));
    let server = HttpServer::start();
    {
        let (pending, failed_jobs) = (pending.clone(), failed_jobs.clone());
        server.route("GET", "/v1/admin/ops/summary", move |req| {
            if req.header("authorization") != Some("Bearer admin-token-abc123") {
                return Reply::json(401, json!({}));
            }
            Reply::json(
                200,
                json!({"outbox": {"pending": pending.load(Ordering::SeqCst)}, "jobs": {"failed": failed_jobs.load(Ordering::SeqCst)}}),
            )
        });
    }
    server.route("GET", "/health", |_| {
        Reply::json(200, json!({"status": "healthy"}))
    });
    let suite = format!(
        r#"base-url: {}
tests:
  - name: health
    url: /health
  - name: ops summary
    url: /v1/admin/ops/summary
    headers:
      Authorization: Bearer {{{{admin_token}}}}
    snapshot: ops
    expect:
      - json $.outbox.pending <= before * 1.2
      - json $.jobs.failed growth < 100
"#,
        server.url()
    );
    let dir = tempfile::tempdir().expect("workdir");

    // Without a snapshot the suite refuses to run, and nothing is sent.
    let run = smoke(dir.path(), &suite)
        .args(["--secret", "admin_token"])
        .env("admin_token", "admin-token-abc123")
        .run();
    run.expect_code(2);
    assert!(
        run.stderr.contains("shipgate smoke --snapshot ops"),
        "{}",
        run.stderr
    );
    assert!(server.requests().is_empty());

    // Before the deploy: only the snapshot's test runs, and its values are recorded.
    let run = smoke(dir.path(), &suite)
        .args(["--secret", "admin_token", "--snapshot", "ops"])
        .env("admin_token", "admin-token-abc123")
        .actions()
        .run();
    run.expect_code(0);
    assert!(server.requests_to("/health").is_empty());
    let snapshot: Value =
        serde_json::from_str(&state_file(dir.path(), "smoke-snapshot-ops.json")).expect("JSON");
    assert_eq!(snapshot["values"]["ops summary"]["$.outbox.pending"], 100);
    assert_eq!(snapshot["values"]["ops summary"]["$.jobs.failed"], 4);
    assert!(run.outputs["snapshot"].ends_with("smoke-snapshot-ops.json"));

    // Within tolerance after the deploy: passes.
    pending.store(115, Ordering::SeqCst);
    failed_jobs.store(50, Ordering::SeqCst);
    let run = smoke(dir.path(), &suite)
        .args(["--secret", "admin_token"])
        .env("admin_token", "admin-token-abc123")
        .run();
    run.expect_code(0);

    // The backlog balloons: the gate fails and says before and after.
    pending.store(540, Ordering::SeqCst);
    failed_jobs.store(250, Ordering::SeqCst);
    let run = smoke(dir.path(), &suite)
        .args(["--secret", "admin_token"])
        .env("admin_token", "admin-token-abc123")
        .actions()
        .run();
    run.expect_code(1);
    let got = failures(&smoke_json(dir.path()), "ops summary");
    assert_eq!(
        got,
        "json $.outbox.pending: expected <= before * 1.2 = 120 (before 100), got 540\njson $.jobs.failed growth: expected < 100, got 246 (before 4, now 250)"
    );
    assert!(run.summary.contains("before 100"), "{}", run.summary);
}

#[test]
fn a_malformed_suite_is_a_usage_error_naming_file_and_line_and_nothing_is_sent() {
    let server = service();
    let dir = tempfile::tempdir().expect("workdir");
    let bad: &[(&str, &str, &str)] = &[
        (
            "tests:\n  - name: ok\n    url: {url}/health\n  - name: typo\n    url: {url}/data\n    expect:\n      - status = 200\n",
            "smoke.yml:7:",
            "expected an operator",
        ),
        (
            "tests:\n  - name: ok\n    url: {url}/health\n    retry: 3\n",
            "smoke.yml:4:",
            "unknown field `retry`",
        ),
        (
            "tests:\n  - name: ok\n    url: {url}/health\n  - name: call\n    url: {url}/data\n    headers:\n      Authorization: Bearer {{token}}\n",
            "smoke.yml:7:",
            "`{{token}}`, which is not defined",
        ),
        (
            "tests:\n  - name: ok\n    url: {url}/health\n    timeout: soon\n",
            "smoke.yml:4:",
            "`soon`",
        ),
    ];
    for (suite, at, why) in bad {
        let suite = suite.replace("{url}", &server.url());
        let run = smoke(dir.path(), &suite).actions().run();
        run.expect_code(2);
        assert!(run.stderr.contains(at), "{at}: {}", run.stderr);
        assert!(run.stderr.contains(why), "{why}: {}", run.stderr);
        assert_eq!(run.outputs["result"], "fail");
    }
    assert!(
        server.requests().is_empty(),
        "a malformed suite sent requests"
    );
}

#[test]
fn url_flags_check_health_and_a_missing_secret_is_a_usage_error() {
    let server = service();
    let dir = tempfile::tempdir().expect("workdir");
    let mut cmd = Shipgate::new(dir.path());
    let run = cmd
        .args(["--deployment-id", ID, "--format", "json", "smoke"])
        .args([
            "--base-url",
            &server.url(),
            "--url",
            "/health",
            "--url",
            "/degraded",
        ])
        .actions()
        .run();
    run.expect_code(1);
    let result = run.json();
    assert_eq!(result["total"], 2);
    assert_eq!(test_result(&result, "/health")["status"], "passed");
    assert!(
        failures(&result, "/degraded")
            .starts_with("health: expected == \"healthy\", got \"degraded\"")
    );
    assert_eq!(run.outputs["failed"], r#"["/degraded"]"#);

    let run = Shipgate::new(dir.path())
        .args([
            "--deployment-id",
            ID,
            "smoke",
            "--url",
            &format!("{}/health", server.url()),
        ])
        .args(["--secret", "API_KEY"])
        .run();
    run.expect_code(2);
    assert!(
        run.stderr.contains("secret `API_KEY` is not set"),
        "{}",
        run.stderr
    );
}
