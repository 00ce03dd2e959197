//! A real Prometheus on 127.0.0.1 (Debian's `prometheus` package, `/usr/bin/prometheus`):
//! a throwaway config scraping the given loopback targets every second, an optional alerting
//! rule file evaluated every second, its TSDB in a temp dir. Started per test; `Drop` kills it
//! and removes the dir, and a watchdog does the same if the test process dies first.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::watchdog::{Watchdog, free_port, log_tail, make_temp_dir, shell_quote_path};

const READY_DEADLINE: Duration = Duration::from_secs(60);

/// The Prometheus binary: `SHIPGATE_PROMETHEUS`, else `/usr/bin/prometheus`, else PATH.
fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SHIPGATE_PROMETHEUS") {
        return PathBuf::from(path);
    }
    let debian = Path::new("/usr/bin/prometheus");
    if debian.exists() {
        return debian.to_path_buf();
    }
    super::watchdog::which("prometheus").expect(
        "prometheus is not installed: run .ci/install-deps.sh (Debian package `prometheus`)",
    )
}

pub struct Prometheus {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
    watchdog: Watchdog,
}

/// A blocking HTTP/1.0 GET on loopback: `(status, body)`.
pub fn http_get(port: u16, path_and_query: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path_and_query} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (`host:port`, path `/metrics`) every second, with
    /// `rules` (an alerting rule file's YAML) when given; waits for `/-/ready`.
    pub fn start(targets: &[String], rules: Option<&str>) -> Prometheus {
        let mut last = String::new();
        for _ in 0..4 {
            match Prometheus::try_start(targets, rules) {
                Ok(server) => return server,
                Err(log) => last = log,
            }
        }
        panic!("prometheus did not start:\n{last}");
    }

    fn try_start(targets: &[String], rules: Option<&str>) -> Result<Prometheus, String> {
        let dir = make_temp_dir("shipgate-prometheus");
        let port = free_port();
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n",
        );
        if let Some(rules) = rules {
            std::fs::write(dir.join("rules.yml"), rules).expect("rule file");
            config.push_str("rule_files:\n  - rules.yml\n");
        }
        config.push_str(
            "scrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: [",
        );
        config.push_str(
            &targets
                .iter()
                .map(|t| format!("'{t}'"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        config.push_str("]\n");
        std::fs::write(dir.join("prometheus.yml"), config).expect("prometheus.yml");
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("log file");
        let child = Command::new(binary())
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let watchdog = Watchdog::spawn(&format!(
            "kill -9 {} 2>/dev/null; rm -rf {}",
            child.id(),
            shell_quote_path(&dir)
        ));
        let mut server = Prometheus {
            dir,
            port,
            child: Some(child),
            watchdog,
        };
        let started = Instant::now();
        loop {
            if let Ok((200, _)) = http_get(port, "/-/ready") {
                return Ok(server);
            }
            let exited = server
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
                .is_some();
            if exited || started.elapsed() > READY_DEADLINE {
                let tail = log_tail(&server.dir.join("prometheus.log"), 30);
                if exited && tail.contains("address already in use") {
                    return Err(tail);
                }
                panic!("prometheus did not become ready:\n{tail}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An instant query's `data.result`.
    pub fn query(&self, query: &str) -> serde_json::Value {
        let (status, body) = http_get(self.port, &format!("/api/v1/query?query={}", encode(query)))
            .expect("query prometheus");
        assert_eq!(status, 200, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        json["data"]["result"].clone()
    }

    /// Waits until `query` returns a non-empty result (at most 60 s).
    pub fn wait_for(&self, query: &str) {
        let started = Instant::now();
        while self.query(query).as_array().is_none_or(Vec::is_empty) {
            assert!(
                started.elapsed() < READY_DEADLINE,
                "prometheus never returned data for `{query}`:\n{}",
                log_tail(&self.dir.join("prometheus.log"), 20)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.watchdog.disarm();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
