//! A small sample service for the local rehearsal (`scripts/rehearse.sh`): the thing shipgate
//! deploys. Standard library only.
//!
//! It serves two versions at once, like a fleet mid-rollout: a control file (re-read on every
//! request) names the `stable` and `canary` versions and the canary's traffic `weight` (0-100),
//! which the rollout's stage hooks change. A canary listed in `broken` answers its health checks
//! and `/api/items` with 500s, so the rehearsal can show an automatic rollback; one listed in
//! `broken-api` answers only `/api/items` with 500s while its health checks stay green (what
//! synthetic probes cannot see and a metric gate can); one listed in `slow` (`slow=1.4.0`,
//! `slow-ms=300`) answers `/api/items` that much later.
//!
//! `--traffic RPS` plays the users: that many `GET /api/items` a second to itself, routed like
//! any other request, so the canary serves real traffic at its weight.
//!
//! `GET /metrics` is Prometheus text exposition of what it served (itself excepted):
//! `http_requests_total{status,version}` and the latency histogram
//! `http_request_duration_seconds{version}` (`_bucket{le}`, `_sum`, `_count`), so metric gates
//! run real PromQL with the canary and the stable version side by side.
//!
//! ```text
//! cargo run --example sample_service -- --port 8080 --control /tmp/control
//! ```
//!
//! Routes: `GET /health` (`{"status":"healthy","version":…}`), `GET /health/live`,
//! `GET /health/ready` (Spring style), `GET /api/items`, `POST /login` (`{"token":…}`),
//! `GET /api/me` (needs `Authorization: Bearer <token>`), `GET /ops/summary` (counters),
//! `GET /metrics`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOKEN: &str = "sample-session-token-7f3a";

/// Upper bounds of the latency histogram's buckets, in seconds (`+Inf` implied).
const BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// One version's latency histogram.
#[derive(Default)]
struct Histogram {
    /// Cumulative counts per bucket of `BUCKETS`.
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

/// What `/metrics` exposes.
#[derive(Default)]
struct Metrics {
    /// `(status, version)` → requests.
    requests: BTreeMap<(u16, String), u64>,
    latency: BTreeMap<String, Histogram>,
}

impl Metrics {
    fn observe(&mut self, status: u16, version: &str, seconds: f64) {
        *self
            .requests
            .entry((status, version.to_string()))
            .or_default() += 1;
        let histogram = self.latency.entry(version.to_string()).or_default();
        if histogram.buckets.is_empty() {
            histogram.buckets = vec![0; BUCKETS.len()];
        }
        for (bound, count) in BUCKETS.iter().zip(histogram.buckets.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        histogram.sum += seconds;
        histogram.count += 1;
    }

    fn exposition(&self) -> String {
        let mut out = String::from(
            "# HELP http_requests_total Requests served, by status and version.\n# TYPE http_requests_total counter\n",
        );
        for ((status, version), n) in &self.requests {
            out.push_str(&format!(
                "http_requests_total{{status=\"{status}\",version=\"{version}\"}} {n}\n"
            ));
        }
        out.push_str("# HELP http_request_duration_seconds Request latency, by version.\n# TYPE http_request_duration_seconds histogram\n");
        for (version, h) in &self.latency {
            for (bound, count) in BUCKETS.iter().zip(&h.buckets) {
                out.push_str(&format!(
                    "http_request_duration_seconds_bucket{{version=\"{version}\",le=\"{bound}\"}} {count}\n"
                ));
            }
            out.push_str(&format!(
                "http_request_duration_seconds_bucket{{version=\"{version}\",le=\"+Inf\"}} {}\nhttp_request_duration_seconds_sum{{version=\"{version}\"}} {}\nhttp_request_duration_seconds_count{{version=\"{version}\"}} {}\n",
                h.count, h.sum, h.count
            ));
        }
        out
    }
}

struct Control {
    stable: String,
    canary: String,
    weight: u64,
    broken: Vec<String>,
    broken_api: Vec<String>,
    slow: Vec<String>,
    slow_ms: u64,
}

fn read_control(path: &PathBuf) -> Control {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut control = Control {
        stable: "0.0.0".into(),
        canary: String::new(),
        weight: 0,
        broken: Vec::new(),
        broken_api: Vec::new(),
        slow: Vec::new(),
        slow_ms: 300,
    };
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim().to_string();
        match key.trim() {
            "stable" => control.stable = value,
            "canary" => control.canary = value,
            "weight" => control.weight = value.parse().unwrap_or(0).min(100),
            "broken" => control.broken = list(&value),
            "broken-api" => control.broken_api = list(&value),
            "slow" => control.slow = list(&value),
            "slow-ms" => control.slow_ms = value.parse().unwrap_or(300),
            _ => {}
        }
    }
    control
}

fn list(value: &str) -> Vec<String> {
    value.split(',').map(|v| v.trim().to_string()).collect()
}

/// The simulated users of `--traffic`: `rps` requests a second to `/api/items`, for ever.
fn play_users(port: u16, rps: u64) {
    let pause = Duration::from_micros(1_000_000 / rps.max(1));
    loop {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let request = format!("GET /api/items HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
            if stream.write_all(request.as_bytes()).is_ok() {
                let _ = stream.read_to_end(&mut Vec::new());
            }
        }
        std::thread::sleep(pause);
    }
}

fn main() {
    let mut port = 8080u16;
    let mut traffic = 0u64;
    let mut control = PathBuf::from("sample-service.control");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => port = args.next().and_then(|p| p.parse().ok()).unwrap_or(port),
            "--control" => control = args.next().map(PathBuf::from).unwrap_or(control),
            "--traffic" => traffic = args.next().and_then(|r| r.parse().ok()).unwrap_or(0),
            other => {
                eprintln!("sample_service: unknown argument `{other}`");
                std::process::exit(2);
            }
        }
    }
    let listener = match TcpListener::bind(("127.0.0.1", port)) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("sample_service: cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("sample_service: listening on http://127.0.0.1:{port}");
    if traffic > 0 {
        std::thread::spawn(move || play_users(port, traffic));
    }
    let counter = Arc::new(AtomicU64::new(0));
    let metrics = Arc::new(Mutex::new(Metrics::default()));
    for stream in listener.incoming().flatten() {
        let control = control.clone();
        let counter = Arc::clone(&counter);
        let metrics = Arc::clone(&metrics);
        std::thread::spawn(move || {
            let _ = handle(stream, &control, &counter, &metrics);
        });
    }
}

fn handle(
    mut stream: TcpStream,
    control: &PathBuf,
    counter: &AtomicU64,
    metrics: &Mutex<Metrics>,
) -> std::io::Result<()> {
    let started = Instant::now();
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("/").to_string();
    let mut content_length = 0usize;
    let mut authorization = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => content_length = value.trim().parse().unwrap_or(0),
                "authorization" => authorization = value.trim().to_string(),
                _ => {}
            }
        }
    }
    let mut body = vec![0u8; content_length.min(1 << 20)];
    reader.read_exact(&mut body)?;

    if method == "GET" && path == "/metrics" {
        let body = metrics
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .exposition();
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        return stream.write_all(response.as_bytes());
    }
    let n = counter.fetch_add(1, Ordering::Relaxed);
    let control = read_control(control);
    // Deterministic, evenly spread weighted routing: `weight` of every 100 requests go to the
    // canary (at 5 %, every 20th request; at 50 %, every other one).
    let on_canary = !control.canary.is_empty() && (n * control.weight) % 100 < control.weight;
    let version = if on_canary {
        control.canary.clone()
    } else {
        control.stable.clone()
    };
    let broken = control.broken.contains(&version);
    let api_broken = broken || control.broken_api.contains(&version);

    let (status, content_type, body) = match (method.as_str(), path.as_str()) {
        ("GET", "/health") if broken => (
            500,
            "application/json",
            format!(r#"{{"status":"unhealthy","version":"{version}"}}"#),
        ),
        ("GET", "/health") => (
            200,
            "application/json",
            format!(r#"{{"status":"healthy","version":"{version}"}}"#),
        ),
        ("GET", "/health/live") => (200, "text/plain", "Healthy".to_string()),
        ("GET", "/health/ready") if broken => {
            (503, "application/json", r#"{"status":"DOWN"}"#.to_string())
        }
        ("GET", "/health/ready") => (200, "application/json", r#"{"status":"UP"}"#.to_string()),
        ("GET", "/api/items") if api_broken => (
            500,
            "application/json",
            r#"{"error":"internal"}"#.to_string(),
        ),
        ("GET", "/api/items") => (
            200,
            "application/json",
            r#"{"items":[{"id":1,"name":"widget"},{"id":2,"name":"gadget"}],"total":2}"#
                .to_string(),
        ),
        ("POST", "/login") => {
            let text = String::from_utf8_lossy(&body);
            if text.contains("\"password\"") {
                (200, "application/json", format!(r#"{{"token":"{TOKEN}"}}"#))
            } else {
                (
                    400,
                    "application/json",
                    r#"{"error":"password required"}"#.to_string(),
                )
            }
        }
        ("GET", "/api/me") if authorization == format!("Bearer {TOKEN}") => (
            200,
            "application/json",
            r#"{"user":"release-bot","roles":["deployer"]}"#.to_string(),
        ),
        ("GET", "/api/me") => (
            401,
            "application/json",
            r#"{"error":"unauthorized"}"#.to_string(),
        ),
        ("GET", "/ops/summary") => (
            200,
            "application/json",
            format!(r#"{{"requests":{n},"outbox_backlog":3,"version":"{version}"}}"#),
        ),
        _ => (
            404,
            "application/json",
            r#"{"error":"not found"}"#.to_string(),
        ),
    };
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Service Unavailable",
    };
    if path == "/api/items" && control.slow.contains(&version) {
        std::thread::sleep(Duration::from_millis(control.slow_ms));
    }
    metrics
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .observe(status, &version, started.elapsed().as_secs_f64());
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())
}
