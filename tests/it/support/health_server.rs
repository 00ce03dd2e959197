//! A loopback HTTP/1.1 server with scripted behaviour, written on raw tokio sockets so it can
//! misbehave the way real services do: answer 500s, answer slowly, flap, report `Degraded` or
//! the wrong version, hang without answering, or drop the connection mid-request. Tests use it
//! as health endpoints and as webhook receivers (it records requests); the rollout benchmark
//! uses it as its loopback target (this file has no dependency on the rest of the harness).
//!
//! Replies are taken from a script by request number, cycling; once `switch_file` exists, the
//! `after` script is used instead — a hook script creates that file to play "traffic shifted".

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// An answer with this status, content type and body.
    Answer {
        status: u16,
        content_type: String,
        body: String,
    },
    /// Wait, then give the inner reply.
    Slow(Duration, Box<Reply>),
    /// Read the request and never answer (the connection stays open).
    Hang,
    /// Read the request and close the connection without an answer.
    Drop,
}

impl Reply {
    /// `200 {"status":"healthy","version":…}` (seed 004's health body).
    pub fn healthy(version: &str) -> Reply {
        Reply::json(
            200,
            &format!(r#"{{"status":"healthy","version":"{version}"}}"#),
        )
    }

    /// `500 {"status":"error"}`.
    pub fn error() -> Reply {
        Reply::json(500, r#"{"status":"error"}"#)
    }

    /// ASP.NET Core's JSON writer reporting `Degraded` (which it sends with a 200).
    pub fn degraded(version: &str) -> Reply {
        Reply::json(
            200,
            &format!(
                r#"{{"status":"Degraded","version":"{version}","totalDuration":"00:00:00.01","entries":{{"cache":{{"status":"Degraded"}}}}}}"#
            ),
        )
    }

    pub fn json(status: u16, body: &str) -> Reply {
        Reply::Answer {
            status,
            content_type: "application/json".to_string(),
            body: body.to_string(),
        }
    }

    pub fn slow(delay: Duration, then: Reply) -> Reply {
        Reply::Slow(delay, Box::new(then))
    }
}

/// A request the server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("request body is not JSON ({e}): {}", self.body))
    }
}

struct Behaviour {
    script: Vec<Reply>,
    after: Option<(PathBuf, Vec<Reply>)>,
    record: bool,
    recorded: Vec<Recorded>,
}

struct Shared {
    behaviour: Mutex<Behaviour>,
    count: AtomicU64,
}

/// A running server on `127.0.0.1`. Dropping it stops it.
pub struct HealthServer {
    shared: Arc<Shared>,
    port: u16,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HealthServer {
    /// Serves `script` (cycled) on a free loopback port, on its own thread and runtime.
    pub fn start(script: Vec<Reply>) -> HealthServer {
        assert!(!script.is_empty(), "a script needs at least one reply");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("local addr").port();
        let shared = Arc::new(Shared {
            behaviour: Mutex::new(Behaviour {
                script,
                after: None,
                record: true,
                recorded: Vec::new(),
            }),
            count: AtomicU64::new(0),
        });
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("health-server-{port}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("server runtime");
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    let accept = async {
                        loop {
                            let Ok((stream, _)) = listener.accept().await else {
                                continue;
                            };
                            let _ = stream.set_nodelay(true);
                            tokio::spawn(serve(stream, served.clone()));
                        }
                    };
                    tokio::select! {
                        _ = accept => {}
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime drops every connection task, hung ones included.
            })
            .expect("spawn server thread");
        HealthServer {
            shared,
            port,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Once `file` exists, answer with `script` (cycled) instead.
    pub fn switch_when_exists(&self, file: PathBuf, script: Vec<Reply>) -> &Self {
        assert!(!script.is_empty(), "a script needs at least one reply");
        self.behaviour().after = Some((file, script));
        self
    }

    /// Replaces the script.
    pub fn set_script(&self, script: Vec<Reply>) -> &Self {
        assert!(!script.is_empty(), "a script needs at least one reply");
        self.behaviour().script = script;
        self
    }

    /// Stops keeping requests (for benchmarks).
    pub fn no_recording(&self) -> &Self {
        self.behaviour().record = false;
        self
    }

    /// Requests received so far.
    pub fn count(&self) -> u64 {
        self.shared.count.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.behaviour().recorded.clone()
    }

    fn behaviour(&self) -> std::sync::MutexGuard<'_, Behaviour> {
        self.shared
            .behaviour
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Reads one request (head and `Content-Length` body); `None` at end of stream.
async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Recorded> {
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_string();
    let path = request_line.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let body_start = head_end + 4;
    while buffer.len() < body_start + length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buffer[body_start..body_start + length]).into_owned();
    buffer.drain(..body_start + length);
    Some(Recorded {
        method,
        path,
        headers,
        body,
    })
}

async fn serve(mut stream: TcpStream, shared: Arc<Shared>) {
    let mut buffer = Vec::new();
    while let Some(request) = read_request(&mut stream, &mut buffer).await {
        let number = shared.count.fetch_add(1, Ordering::SeqCst) as usize;
        let close = request
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let mut reply = {
            let mut behaviour = shared
                .behaviour
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if behaviour.record {
                behaviour.recorded.push(request);
            }
            let script = match &behaviour.after {
                Some((file, after)) if file.exists() => after,
                _ => &behaviour.script,
            };
            script[number % script.len()].clone()
        };
        loop {
            match reply {
                Reply::Slow(delay, then) => {
                    tokio::time::sleep(delay).await;
                    reply = *then;
                }
                Reply::Hang => std::future::pending::<()>().await,
                Reply::Drop => return,
                Reply::Answer {
                    status,
                    content_type,
                    body,
                } => {
                    let response = format!(
                        "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n{}\r\n{body}",
                        reason(status),
                        body.len(),
                        if close { "connection: close\r\n" } else { "" }
                    );
                    if stream.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                    break;
                }
            }
        }
        if close {
            return;
        }
    }
}
