//! A tiny HTTP server on loopback for tests: [`serve`] runs any request → response function on
//! its own thread; [`StubServer`] answers from a queue of canned responses (Slack, webhooks,
//! health endpoints) and records every request.

use std::collections::VecDeque;
use std::future::IntoFuture;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;

/// One request as received.
#[derive(Clone, Debug)]
pub struct Incoming {
    pub method: String,
    pub path: String,
    /// Raw query string without `?`.
    pub query: String,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Incoming {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of a query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A response to send.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Outgoing {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Outgoing {
        Outgoing {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Outgoing {
        Outgoing::new(status, value.to_string()).header("content-type", "application/json")
    }

    pub fn header(mut self, name: &str, value: &str) -> Outgoing {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

type Handler = Arc<dyn Fn(Incoming) -> Outgoing + Send + Sync>;

/// A running server; dropping it stops it.
pub struct Server {
    pub url: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Serves `handler` on `127.0.0.1:<free port>`.
pub fn serve(handler: impl Fn(Incoming) -> Outgoing + Send + Sync + 'static) -> Server {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind stub server");
    listener.set_nonblocking(true).expect("non-blocking");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let handler: Handler = Arc::new(handler);
    let app = axum::Router::new().fallback(move |request: Request| {
        let handler = Arc::clone(&handler);
        async move {
            let (parts, body) = request.into_parts();
            let body = axum::body::to_bytes(body, 256 * 1024 * 1024)
                .await
                .unwrap_or_default();
            let incoming = Incoming {
                method: parts.method.as_str().to_string(),
                path: parts.uri.path().to_string(),
                query: parts.uri.query().unwrap_or("").to_string(),
                headers: parts
                    .headers
                    .iter()
                    .map(|(n, v)| {
                        (
                            n.as_str().to_ascii_lowercase(),
                            v.to_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect(),
                body: body.to_vec(),
            };
            let out = handler(incoming);
            let mut response = Response::builder().status(out.status);
            for (name, value) in &out.headers {
                response = response.header(name, value);
            }
            response.body(Body::from(out.body)).expect("stub response")
        }
    });
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("stub runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            tokio::select! {
                result = axum::serve(listener, app).into_future() => { result.expect("stub server"); }
                _ = stopped => {}
            }
        });
    });
    Server {
        url,
        shutdown: Some(shutdown),
        thread: Some(thread),
    }
}

/// A URL on loopback where nothing listens (connection refused).
pub fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    format!("http://{addr}")
}

/// Answers from a queue of canned responses (then the default) and records every request.
pub struct StubServer {
    server: Server,
    queue: Arc<Mutex<VecDeque<Outgoing>>>,
    requests: Arc<Mutex<Vec<Incoming>>>,
}

impl StubServer {
    pub fn start(default: Outgoing) -> StubServer {
        let queue: Arc<Mutex<VecDeque<Outgoing>>> = Arc::default();
        let requests: Arc<Mutex<Vec<Incoming>>> = Arc::default();
        let (q, r) = (Arc::clone(&queue), Arc::clone(&requests));
        let server = serve(move |incoming| {
            r.lock().expect("requests").push(incoming);
            q.lock()
                .expect("queue")
                .pop_front()
                .unwrap_or_else(|| default.clone())
        });
        StubServer {
            server,
            queue,
            requests,
        }
    }

    pub fn url(&self) -> &str {
        &self.server.url
    }

    /// The next requests get these answers, in order.
    pub fn then(&self, responses: Vec<Outgoing>) -> &Self {
        self.queue.lock().expect("queue").extend(responses);
        self
    }

    pub fn requests(&self) -> Vec<Incoming> {
        self.requests.lock().expect("requests").clone()
    }
}
