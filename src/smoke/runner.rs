//! Runs a checked suite: independent tests concurrently (up to `--concurrency`), a test after
//! the tests it depends on (captures, `needs`), each test retried with backoff until its
//! readiness deadline. Every attempt goes to the log file; captures that are secrets are
//! registered (masked) before anything about the response is written anywhere.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::task::JoinSet;

use super::assert::{Assert, Failure, Observed, Subject, excerpt};
use super::suite::{Action, Body, Source, TestPlan};
use super::template::{Template, Var, Vars};
use crate::actions;
use crate::process::LogFile;
use crate::secret::{Secret, redact_url};
pub(crate) use crate::state::smoke::{Status, TestResult};

/// Bodies are read up to this size; asserts see the first part of a larger one.
const MAX_BODY: usize = 1024 * 1024;
/// Connect timeout for HTTP (the request timeout bounds the whole exchange).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Response headers whose values are credentials: registered as secrets on sight.
const SENSITIVE_HEADERS: &[&str] = &[
    "set-cookie",
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "x-auth-token",
    "x-access-token",
];

/// Snapshot values: test name → JSON location → value.
pub(crate) type SnapshotValues = BTreeMap<String, BTreeMap<String, Value>>;

/// What the tests share while they run.
pub(crate) struct Context {
    pub(crate) plain: reqwest::Client,
    pub(crate) follow: reqwest::Client,
    pub(crate) base_url: Option<Template>,
    pub(crate) vars: Mutex<Vars>,
    pub(crate) log: Mutex<LogFile>,
    /// Snapshot name → its recorded values (for `before` / `growth`).
    pub(crate) snapshots: BTreeMap<String, SnapshotValues>,
    /// `--snapshot NAME`: tests of that snapshot record values instead of comparing.
    pub(crate) recording: Option<String>,
}

impl Context {
    pub(crate) fn new(
        base_url: Option<Template>,
        vars: Vars,
        log: LogFile,
        snapshots: BTreeMap<String, SnapshotValues>,
        recording: Option<String>,
    ) -> Result<Context, String> {
        let build = |policy: reqwest::redirect::Policy| {
            reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(super::suite::DEFAULT_REQUEST_TIMEOUT * 6)
                .redirect(policy)
                .user_agent(concat!("shipgate/", env!("CARGO_PKG_VERSION"), " (smoke)"))
                .build()
                .map_err(|e| describe(&e))
        };
        Ok(Context {
            plain: build(reqwest::redirect::Policy::none())?,
            follow: build(reqwest::redirect::Policy::limited(10))?,
            base_url,
            vars: Mutex::new(vars),
            log: Mutex::new(log),
            snapshots,
            recording,
        })
    }

    fn log(&self, line: &str) {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .line(line);
    }

    fn vars(&self) -> Vars {
        self.vars.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Runs the `selected` tests; the others get no result. Dependencies of a selected test must
/// be selected too.
pub(crate) async fn run_all(
    ctx: Arc<Context>,
    tests: Arc<Vec<TestPlan>>,
    selected: &[bool],
    concurrency: usize,
) -> Vec<Option<TestResult>> {
    let n = tests.len();
    let mut results: Vec<Option<TestResult>> = vec![None; n];
    let mut waiting: Vec<usize> = tests.iter().map(|t| t.deps.len()).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, t) in tests.iter().enumerate() {
        for &d in &t.deps {
            dependents[d].push(i);
        }
    }
    let mut queue: VecDeque<usize> = (0..n).filter(|&i| selected[i] && waiting[i] == 0).collect();
    let mut set: JoinSet<(usize, TestResult)> = JoinSet::new();
    let shutdown = crate::process::shutdown_signal();
    tokio::pin!(shutdown);
    let mut cancelled = false;
    loop {
        while set.len() < concurrency.max(1)
            && let Some(i) = queue.pop_front()
        {
            let ctx = ctx.clone();
            let tests = tests.clone();
            set.spawn(async move { (i, run_test(&ctx, &tests[i]).await) });
        }
        let joined = tokio::select! {
            joined = set.join_next() => joined,
            _ = &mut shutdown, if !cancelled => {
                cancelled = true;
                set.abort_all();
                continue;
            }
        };
        let Some(joined) = joined else { break };
        let (i, result) = match joined {
            Ok(done) => done,
            Err(e) if e.is_cancelled() => continue,
            Err(e) => {
                tracing::error!("a smoke test task failed: {e}");
                continue;
            }
        };
        let passed = result.status == Status::Passed;
        report_progress(&result);
        results[i] = Some(result);
        for &d in &dependents[i] {
            if !selected[d] || results[d].is_some() {
                continue;
            }
            if passed {
                waiting[d] -= 1;
                if waiting[d] == 0 {
                    queue.push_back(d);
                }
            } else {
                skip(&tests, &dependents, &mut results, d, &tests[i].name);
            }
        }
    }
    for i in 0..n {
        if selected[i] && results[i].is_none() {
            let reason = if cancelled {
                "not finished: shipgate was cancelled".to_string()
            } else {
                "not run".to_string()
            };
            results[i] = Some(not_run(&tests[i], Status::Failed, reason));
        }
    }
    results
}

fn skip(
    tests: &[TestPlan],
    dependents: &[Vec<usize>],
    results: &mut [Option<TestResult>],
    i: usize,
    because: &str,
) {
    if results[i].is_some() {
        return;
    }
    let result = not_run(
        &tests[i],
        Status::Skipped,
        format!("not run: it needs `{because}`, which did not pass"),
    );
    report_progress(&result);
    results[i] = Some(result);
    for &d in &dependents[i] {
        skip(tests, dependents, results, d, &tests[i].name);
    }
}

fn not_run(test: &TestPlan, status: Status, reason: String) -> TestResult {
    let failure = Failure::new("dependency", "", reason);
    TestResult {
        name: test.name.clone(),
        kind: test.kind,
        status,
        target: String::new(),
        duration_ms: 0,
        time_to_ready_ms: None,
        ready_timed_out: false,
        attempts: 0,
        http_status: None,
        failures: vec![failure.message()],
        failed_checks: vec![failure],
        recorded: BTreeMap::new(),
    }
}

fn report_progress(result: &TestResult) {
    let name = actions::quote(&result.name);
    match result.status {
        Status::Passed => {
            let ready = result
                .time_to_ready_ms
                .filter(|_| result.attempts > 1)
                .map(|ms| {
                    format!(
                        ", ready after {} ({} attempts)",
                        fmt_ms(ms),
                        result.attempts
                    )
                })
                .unwrap_or_default();
            tracing::info!("passed {name} in {}{ready}", fmt_ms(result.duration_ms));
        }
        Status::Failed => tracing::warn!("FAILED {name}: {}", result.failures.join("; ")),
        Status::Skipped => tracing::warn!("skipped {name}: {}", result.failures.join("; ")),
    }
}

pub(crate) fn fmt_ms(ms: u64) -> String {
    crate::ui::format_duration(Duration::from_millis(ms))
}

/// One attempt's outcome.
struct Attempt {
    target: String,
    failures: Vec<Failure>,
    captures: Vec<(String, Var)>,
    recorded: BTreeMap<String, Value>,
    duration_ms: u64,
    http_status: Option<u16>,
}

async fn run_test(ctx: &Context, test: &TestPlan) -> TestResult {
    let started = Instant::now();
    let deadline = test.ready.map(|r| started + r.timeout);
    let mut pause = test.ready.map_or(Duration::ZERO, |r| r.interval);
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let timeout = match deadline {
            Some(d) => test
                .timeout
                .min(d.saturating_duration_since(Instant::now()))
                .max(Duration::from_millis(100)),
            None => test.timeout,
        };
        let attempt = match &test.action {
            Action::Http { .. } => http(ctx, test, timeout).await,
            Action::Database { url, query } => {
                database(ctx, url, query.as_ref(), test, timeout).await
            }
            Action::Tcp(target) => tcp(ctx, target, test, timeout).await,
        };
        log_attempt(ctx, test, attempts, &attempt);
        let passed = attempt.failures.is_empty();
        let now = Instant::now();
        let retry = match (test.ready, deadline) {
            (Some(ready), Some(deadline)) if !passed && now < deadline => Some((ready, deadline)),
            _ => None,
        };
        let Some((ready, deadline)) = retry else {
            return finish(ctx, test, attempt, attempts, started);
        };
        let wait = crate::util::retry_delay(pause).min(deadline.saturating_duration_since(now));
        tracing::info!(
            "{} not ready yet (attempt {attempts}: {}); next attempt in {}",
            actions::quote(&test.name),
            attempt
                .failures
                .first()
                .map(Failure::message)
                .unwrap_or_default(),
            crate::ui::format_duration(wait)
        );
        tokio::time::sleep(wait).await;
        pause = (pause * 2).min(ready.max_interval);
    }
}

/// The result of a test from its last attempt; a passing test's captures become variables.
fn finish(
    ctx: &Context,
    test: &TestPlan,
    attempt: Attempt,
    attempts: u32,
    started: Instant,
) -> TestResult {
    let passed = attempt.failures.is_empty();
    if passed {
        let mut vars = ctx.vars.lock().unwrap_or_else(|p| p.into_inner());
        for (name, var) in attempt.captures {
            vars.insert(name, var);
        }
    }
    let mut failures = attempt.failures;
    let ready_timed_out = !passed && test.ready.is_some();
    if let (true, Some(ready)) = (ready_timed_out, test.ready) {
        failures.insert(
            0,
            Failure::new(
                "ready",
                format!("ready within {}", crate::ui::format_duration(ready.timeout)),
                format!(
                    "not ready after {} ({attempts} attempts); last attempt below",
                    fmt_ms(started.elapsed().as_millis() as u64)
                ),
            ),
        );
    }
    TestResult {
        name: test.name.clone(),
        kind: test.kind,
        status: if passed {
            Status::Passed
        } else {
            Status::Failed
        },
        target: attempt.target,
        duration_ms: attempt.duration_ms,
        time_to_ready_ms: (passed && test.ready.is_some())
            .then(|| started.elapsed().as_millis() as u64),
        ready_timed_out,
        attempts,
        http_status: attempt.http_status,
        failures: failures.iter().map(Failure::message).collect(),
        failed_checks: failures,
        recorded: attempt.recorded,
    }
}

fn log_attempt(ctx: &Context, test: &TestPlan, n: u32, attempt: &Attempt) {
    let status = attempt
        .http_status
        .map(|s| format!(" → HTTP {s}"))
        .unwrap_or_default();
    let verdict = if attempt.failures.is_empty() {
        "passed".to_string()
    } else {
        attempt
            .failures
            .iter()
            .map(Failure::message)
            .collect::<Vec<_>>()
            .join("; ")
    };
    ctx.log(&format!(
        "[{}] {} attempt {n}: {}{status} in {}: {verdict}",
        crate::util::now_rfc3339(),
        actions::quote(&test.name),
        attempt.target,
        fmt_ms(attempt.duration_ms),
    ));
}

fn render(template: &Template, vars: &Vars) -> Result<String, Failure> {
    template
        .render(vars)
        .map(|r| r.text)
        .map_err(|e| Failure::new("template", "", e))
}

fn failed(target: String, failure: Failure, started: Instant) -> Attempt {
    Attempt {
        target,
        failures: vec![failure],
        captures: Vec::new(),
        recorded: BTreeMap::new(),
        duration_ms: started.elapsed().as_millis() as u64,
        http_status: None,
    }
}

async fn http(ctx: &Context, test: &TestPlan, timeout: Duration) -> Attempt {
    let started = Instant::now();
    let Action::Http {
        method,
        url,
        headers,
        body,
        follow_redirects,
    } = &test.action
    else {
        return failed(
            String::new(),
            Failure::new("test", "", "not an HTTP test"),
            started,
        );
    };
    let vars = ctx.vars();
    let url = match render(url, &vars) {
        Ok(url) => url,
        Err(f) => return failed(String::new(), f, started),
    };
    let url = if url.contains("://") {
        url
    } else {
        match ctx.base_url.as_ref().map(|b| render(b, &vars)) {
            Some(Ok(base)) => format!(
                "{}/{}",
                base.trim_end_matches('/'),
                url.trim_start_matches('/')
            ),
            Some(Err(f)) => return failed(String::new(), f, started),
            None => {
                return failed(
                    String::new(),
                    Failure::new(
                        "url",
                        "",
                        format!(
                            "{} is relative and there is no base URL",
                            actions::quote(&url)
                        ),
                    ),
                    started,
                );
            }
        }
    };
    let target = format!("{method} {}", redact_url(&url));
    let client = if *follow_redirects {
        &ctx.follow
    } else {
        &ctx.plain
    };
    let mut request = client.request(method.clone(), &url).timeout(timeout);
    for (name, value) in headers {
        match render(value, &vars) {
            Ok(value) => request = request.header(name.as_str(), value),
            Err(f) => return failed(target, f, started),
        }
    }
    match body {
        Body::None => {}
        Body::Json(json) => {
            let mut secret = false;
            match super::template::render_json(json, &vars, &mut secret) {
                Ok(value) => {
                    request = request
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(value.to_string());
                }
                Err(e) => return failed(target, Failure::new("template", "", e), started),
            }
        }
        Body::Text(text) => match render(text, &vars) {
            Ok(text) => request = request.body(text),
            Err(f) => return failed(target, f, started),
        },
    }
    let sent = Instant::now();
    let exchange = async {
        let mut response = request.send().await?;
        let status = response.status().as_u16();
        let headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            let room = MAX_BODY.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if room <= chunk.len() {
                break;
            }
        }
        Ok::<_, reqwest::Error>((status, headers, body))
    };
    let (status, response_headers, body) = match exchange.await {
        Ok(done) => done,
        Err(e) => {
            let e = e.without_url();
            let what = if e.is_timeout() {
                format!(
                    "no complete response within {}",
                    crate::ui::format_duration(timeout)
                )
            } else {
                describe(&e)
            };
            return failed(target, Failure::new("request", "", what), started);
        }
    };
    let duration_ms = sent.elapsed().as_millis() as u64;
    // Credentials in the response are secrets before anything else happens with it.
    for (name, value) in &response_headers {
        if SENSITIVE_HEADERS.contains(&name.as_str()) {
            register_header_secret(name, value);
        }
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    let mut failures = Vec::new();
    let mut captures = Vec::new();
    for capture in &test.captures {
        let value = match &capture.source {
            Source::Json(path) => json.as_ref().and_then(|j| path.find(j)).map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            }),
            Source::Header(name) => response_headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone()),
            Source::Body(regex) => regex.captures(&text).map(|c| {
                c.get(1)
                    .or_else(|| c.get(0))
                    .map_or(String::new(), |m| m.as_str().to_string())
            }),
        };
        match value {
            Some(value) => {
                let var = if capture.secret {
                    Var::Secret(Secret::new(value))
                } else {
                    Var::Plain(value)
                };
                captures.push((capture.name.clone(), var));
            }
            None => {
                let from = match &capture.source {
                    Source::Json(path) => format!("`{path}` in the body"),
                    Source::Header(name) => format!("header `{name}`"),
                    Source::Body(regex) => format!("a match of /{}/ in the body", regex.as_str()),
                };
                failures.push(Failure::new(
                    &format!("capture {}", capture.name),
                    format!("a value at {from}"),
                    format!("nothing (HTTP {status}, {})", excerpt(&text)),
                ));
            }
        }
    }
    let needs_health = test
        .asserts
        .iter()
        .any(|a| matches!(a.subject, Subject::Health | Subject::Version));
    let content_type = response_headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.as_str());
    let health =
        needs_health.then(|| crate::health::read(status, content_type, &body, &test.health));
    let recording = test.snapshot.is_some() && test.snapshot == ctx.recording;
    let snapshot = test
        .snapshot
        .as_ref()
        .and_then(|s| ctx.snapshots.get(s))
        .and_then(|values| values.get(&test.name));
    let observed = Observed {
        status: Some(status),
        headers: response_headers.clone(),
        body: Some(&text),
        json: json.as_ref(),
        duration_ms,
        health: health.as_ref(),
        value: None,
        rows: None,
        snapshot,
        vars: Some(&vars),
    };
    let mut recorded = BTreeMap::new();
    if recording {
        // Taking a snapshot: the service must answer, and every value compared later must be
        // there; the other asserts are for after the deploy.
        if !(200..400).contains(&status) {
            failures.push(Failure::new(
                "status",
                "2xx or 3xx (to take a snapshot)",
                status.to_string(),
            ));
        }
        for path in test.asserts.iter().filter_map(Assert::snapshot_path) {
            match json.as_ref().and_then(|j| path.find(j)) {
                Some(value) => {
                    recorded.insert(path.to_string(), value.clone());
                }
                None => failures.push(Failure::new(
                    &format!("json {path}"),
                    "a value to record",
                    format!("nothing ({})", excerpt(&text)),
                )),
            }
        }
    } else {
        for a in &test.asserts {
            if let Err(f) = a.check(&observed) {
                failures.push(f);
            }
        }
    }
    if !failures.is_empty() {
        ctx.log(&format!("  response body: {}", excerpt(&text)));
    }
    Attempt {
        target,
        failures,
        captures,
        recorded,
        duration_ms,
        http_status: Some(status),
    }
}

fn register_header_secret(name: &str, value: &str) {
    let value = value.trim();
    if name == "set-cookie" {
        // `name=value; Path=/; HttpOnly`: the cookie's value is the credential.
        if let Some((_, rest)) = value.split_once('=') {
            let cookie = rest.split(';').next().unwrap_or("").trim();
            if cookie.len() >= 4 {
                crate::secret::register(cookie);
            }
        }
        return;
    }
    if let Some((_, credential)) = value.split_once(' ') {
        crate::secret::register(credential.trim());
    }
    crate::secret::register(value);
}

async fn database(
    ctx: &Context,
    url: &Template,
    query: Option<&Template>,
    test: &TestPlan,
    timeout: Duration,
) -> Attempt {
    let started = Instant::now();
    let vars = ctx.vars();
    let url = match render(url, &vars) {
        Ok(url) => Secret::new(url),
        Err(f) => return failed(String::new(), f, started),
    };
    let db = match crate::postgres::Database::from_url(
        &format!("the database URL of test `{}`", test.name),
        &url,
    ) {
        Ok(db) => db,
        Err(e) => {
            return failed(
                String::new(),
                Failure::new("database", "", e.to_string()),
                started,
            );
        }
    };
    let target = db.display().to_string();
    let no_answer = || {
        Failure::new(
            "database",
            "",
            format!("no answer within {}", crate::ui::format_duration(timeout)),
        )
    };
    match tokio::time::timeout(timeout, db.scalar("SELECT 1")).await {
        Err(_) => return failed(target, no_answer(), started),
        Ok(Err(e)) => return failed(target, Failure::new("database", "", e.to_string()), started),
        Ok(Ok(value)) if value.as_deref().map(str::trim) != Some("1") => {
            return failed(
                target,
                Failure::new("SELECT 1", "1", value.unwrap_or_else(|| "no row".into())),
                started,
            );
        }
        Ok(Ok(_)) => {}
    }
    let mut rows = None;
    if let Some(query) = query {
        let sql = match render(query, &vars) {
            Ok(sql) => sql,
            Err(f) => return failed(target, f, started),
        };
        match tokio::time::timeout(timeout, db.query(&sql)).await {
            Err(_) => return failed(target, no_answer(), started),
            Ok(Err(e)) => return failed(target, Failure::new("query", "", e.to_string()), started),
            Ok(Ok(r)) => rows = Some(r),
        }
    }
    let duration_ms = started.elapsed().as_millis() as u64;
    let value = rows
        .as_ref()
        .and_then(|r| r.first())
        .and_then(|row| row.first())
        .map(String::as_str);
    let observed = Observed {
        duration_ms,
        value,
        rows: rows.as_ref().map(Vec::len),
        vars: Some(&vars),
        ..Observed::default()
    };
    let failures = test
        .asserts
        .iter()
        .filter_map(|a| a.check(&observed).err())
        .collect();
    Attempt {
        target,
        failures,
        captures: Vec::new(),
        recorded: BTreeMap::new(),
        duration_ms,
        http_status: None,
    }
}

async fn tcp(ctx: &Context, target: &Template, test: &TestPlan, timeout: Duration) -> Attempt {
    let started = Instant::now();
    let address = match render(target, &ctx.vars()) {
        Ok(a) => a,
        Err(f) => return failed(String::new(), f, started),
    };
    let shown = format!("tcp {}", crate::secret::redact(&address));
    if let Err(e) = super::suite::host_port(&address) {
        return failed(shown, Failure::new("tcp", "", e), started);
    }
    let failures =
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&address)).await {
            Err(_) => vec![Failure::new(
                "connect",
                "",
                format!(
                    "no connection within {}",
                    crate::ui::format_duration(timeout)
                ),
            )],
            Ok(Err(e)) => vec![Failure::new("connect", "", format!("cannot connect: {e}"))],
            Ok(Ok(_stream)) => {
                let observed = Observed {
                    duration_ms: started.elapsed().as_millis() as u64,
                    ..Observed::default()
                };
                test.asserts
                    .iter()
                    .filter_map(|a| a.check(&observed).err())
                    .collect()
            }
        };
    Attempt {
        target: shown,
        failures,
        captures: Vec::new(),
        recorded: BTreeMap::new(),
        duration_ms: started.elapsed().as_millis() as u64,
        http_status: None,
    }
}

/// An HTTP error as one line without any URL: what failed and the innermost cause.
pub(crate) fn describe(error: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(e) = source {
        let text = crate::github::strip_urls(&e.to_string());
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    let kind = if error.is_connect() {
        "cannot connect"
    } else if error.is_redirect() {
        "too many redirects"
    } else if error.is_body() || error.is_decode() {
        "cannot read the response"
    } else {
        "request failed"
    };
    let detail = parts.last().cloned().unwrap_or_default();
    crate::secret::redact(&format!("{kind}: {detail}"))
}
