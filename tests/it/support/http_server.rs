//! A scripted HTTP server on loopback for smoke tests: each route is a closure from the request
//! to a reply (status, headers, body, and a server-side delay), so a test can script a login
//! issuing a token, an endpoint that is not ready for its first calls, counters that change
//! between runs, and slow responses. Every request is recorded with server-side start and end
//! times (since the server started), which is how tests prove concurrency and ordering without
//! wall-clock thresholds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, Response, StatusCode};

/// What a route receives.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub query: String,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// What a route answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    pub fn json(status: u16, value: serde_json::Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: value.to_string(),
            delay: Duration::ZERO,
        }
    }

    pub fn text(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.retain(|(k, _)| {
            !k.eq_ignore_ascii_case(name) || name.eq_ignore_ascii_case("set-cookie")
        });
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// The server waits this long before answering (the request stays in flight meanwhile).
    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub req: Req,
    pub status: u16,
    /// Since the server started.
    pub start: Duration,
    pub end: Duration,
}

type Route = Arc<dyn Fn(&Req) -> Reply + Send + Sync>;

struct Shared {
    origin: Instant,
    routes: Mutex<HashMap<(String, String), Route>>,
    log: Mutex<Vec<Recorded>>,
}

pub struct HttpServer {
    shared: Arc<Shared>,
    url: String,
    _server: super::axum_server::AxumServer,
}

impl HttpServer {
    /// Binds `127.0.0.1:0` and serves on its own thread and runtime. Unknown routes are 404.
    pub fn start() -> HttpServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind HTTP server");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let shared = Arc::new(Shared {
            origin: Instant::now(),
            routes: Mutex::new(HashMap::new()),
            log: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let server = super::axum_server::AxumServer::start("smoke-http", listener, app);
        HttpServer {
            shared,
            url,
            _server: server,
        }
    }

    /// `http://127.0.0.1:<port>`, no trailing slash.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Scripts `method path` (path without the query).
    pub fn route(
        &self,
        method: &str,
        path: &str,
        reply: impl Fn(&Req) -> Reply + Send + Sync + 'static,
    ) -> &Self {
        self.shared.routes.lock().expect("routes").insert(
            (method.to_ascii_uppercase(), path.to_string()),
            Arc::new(reply),
        );
        self
    }

    /// Every request so far, in the order they finished.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.log.lock().expect("log").clone()
    }

    /// The requests to `path`.
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.req.path == path)
            .collect()
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request<Body>) -> Response<Body> {
    let start = shared.origin.elapsed();
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let req = Req {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    };
    let route = shared
        .routes
        .lock()
        .expect("routes")
        .get(&(req.method.clone(), req.path.clone()))
        .cloned();
    let reply = match route {
        Some(route) => route(&req),
        None => Reply::text(404, "no such route"),
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response = Response::builder()
        .status(StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    for (k, v) in &reply.headers {
        response = response.header(k.as_str(), v.as_str());
    }
    let end = shared.origin.elapsed();
    shared.log.lock().expect("log").push(Recorded {
        req,
        status: reply.status,
        start,
        end,
    });
    response
        .body(Body::from(reply.body))
        .unwrap_or_else(|_| Response::new(Body::from("bad reply")))
}
