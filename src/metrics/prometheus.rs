//! A client of the Prometheus HTTP API (`/api/v1/query`, `/api/v1/query_range`, and the raw GET
//! the alerts use), as served by Prometheus, Thanos, Mimir, VictoriaMetrics and Grafana Cloud.
//!
//! A backend that is down, times out or answers 5xx/429 is asked again with backoff (pauses
//! through `util::Backoff`) and is then [`Error::Unavailable`]: never a value. An empty
//! result or NaN is [`Reading::NoData`], its own outcome. Credentials (bearer token or basic
//! auth, from a [`Secret`]) go only into the `Authorization` header, marked sensitive; errors
//! name the backend by its address, which may not carry credentials.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use url::Url;

use super::Error;
use crate::secret::Secret;
use crate::text::one_line;

/// Attempts per request (the first and three more, after 0.5 s, 1 s and 2 s).
const ATTEMPTS: u32 = 4;
const BACKOFF: crate::util::Backoff = crate::util::Backoff {
    first: Duration::from_millis(500),
    factor: 2.0,
    max: Duration::from_secs(10),
    jitter: false,
};
/// The most of an answer read; Prometheus's own errors are short.
const MAX_BODY: usize = 16 << 20;
/// How much of a backend's error text a message quotes.
const MAX_DETAIL: usize = 300;

/// How to authenticate.
#[derive(Debug, Clone)]
pub(crate) enum Auth {
    Bearer(Secret),
    Basic {
        username: String,
        password: Secret,
    },
    /// Headers whose values are secrets (`DD-API-KEY`, `X-Api-Key`), marked sensitive.
    Headers(Vec<(reqwest::header::HeaderName, Secret)>),
}

/// Where a backend is and how to talk to it.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// `http(s)://host:port[/prefix]`, without credentials.
    pub(crate) address: String,
    pub(crate) auth: Option<Auth>,
    /// Extra headers (a tenant id such as `X-Scope-OrgID`).
    pub(crate) headers: Vec<(String, String)>,
    /// Time limit of one attempt.
    pub(crate) timeout: Duration,
}

/// One series of an instant query's result.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Series {
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) value: f64,
}

/// One series of a range query's result: `(unix seconds, value)` points.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RangeSeries {
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) points: Vec<(f64, f64)>,
}

/// What an instant query measured, as one number.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reading {
    Value(f64),
    /// No series, or NaN: nothing to judge (never a pass).
    NoData(String),
    /// More than one series: which one to judge is not said.
    Several(Vec<Series>),
}

/// A client of one backend.
#[derive(Clone)]
pub(crate) struct Client {
    http: reqwest::Client,
    base: Url,
    auth: Option<Auth>,
    /// `Prometheus at `http://…``, for messages.
    label: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label)
    }
}

enum Attempt {
    Retry(String),
    Fatal(Error),
}

/// Checks a backend address: `http`/`https`, a host, no credentials, query or fragment.
pub(crate) fn check_address(address: &str) -> Result<Url, Error> {
    let url = Url::parse(address.trim()).map_err(|e| {
        Error::Setup(format!(
            "metrics address `{}` is not a URL ({e}); write it like `http://prometheus:9090`",
            crate::secret::redact_url(address)
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(Error::Setup(format!(
            "metrics address `{}` must be an http:// or https:// URL with a host",
            crate::secret::redact_url(address)
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::Setup(format!(
            "metrics address `{}` carries credentials; take them out and use `auth` (a bearer token or basic auth read from a secret)",
            crate::secret::redact_url(address)
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::Setup(format!(
            "metrics address `{}` may not have a query or fragment",
            crate::secret::redact_url(address)
        )));
    }
    Ok(url)
}

fn truncate(text: &str) -> String {
    let line = one_line(text.trim());
    match line.char_indices().nth(MAX_DETAIL) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line,
    }
}

/// A backend's error text: Prometheus's `errorType: error`, else the body's start.
fn error_detail(body: &[u8]) -> String {
    if let Ok(json) = serde_json::from_slice::<Value>(body) {
        if let Some(error) = json.get("error").and_then(Value::as_str) {
            return match json.get("errorType").and_then(Value::as_str) {
                Some(kind) => truncate(&format!("{kind}: {error}")),
                None => truncate(error),
            };
        }
        if let Some(message) = json.as_str() {
            return truncate(message);
        }
    }
    truncate(&String::from_utf8_lossy(body))
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::String(text) => text.trim().parse::<f64>().ok(),
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

fn labels(metric: Option<&Value>) -> BTreeMap<String, String> {
    metric
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

impl Client {
    pub(crate) fn new(kind: &str, endpoint: &Endpoint) -> Result<Client, Error> {
        let base = check_address(&endpoint.address)?;
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &endpoint.headers {
            let header =
                reqwest::header::HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
                    Error::Setup(format!("`{}` is not an HTTP header name", one_line(name)))
                })?;
            if header == reqwest::header::AUTHORIZATION {
                return Err(Error::Setup(
                    "the `Authorization` header comes from `auth` (a secret), not from `headers`"
                        .to_string(),
                ));
            }
            let value = reqwest::header::HeaderValue::from_str(value.trim()).map_err(|_| {
                Error::Setup(format!(
                    "the value of header `{}` is not valid in HTTP",
                    one_line(name)
                ))
            })?;
            headers.insert(header, value);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(endpoint.timeout.min(Duration::from_secs(10)))
            .timeout(endpoint.timeout)
            .user_agent(concat!(
                "shipgate/",
                env!("CARGO_PKG_VERSION"),
                " (metrics)"
            ))
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(headers)
            .build()
            .map_err(|e| {
                Error::Setup(format!(
                    "cannot set up the HTTP client for {kind}: {}",
                    crate::hooks::describe_http_error(e)
                ))
            })?;
        let label = format!(
            "{kind} at `{}`",
            crate::secret::redact_url(base.as_str().trim_end_matches('/'))
        );
        Ok(Client {
            http,
            base,
            auth: endpoint.auth.clone(),
            label,
        })
    }

    /// `Prometheus at `http://…``.
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    fn url(&self, path: &str, params: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        url.set_path(&format!("{}{path}", self.base.path().trim_end_matches('/')));
        if !params.is_empty() {
            url.query_pairs_mut().extend_pairs(params);
        }
        url
    }

    async fn once(&self, url: Url) -> Result<Value, Attempt> {
        let mut request = self.http.get(url).header("accept", "application/json");
        request = match &self.auth {
            Some(Auth::Bearer(token)) => request.bearer_auth(token.expose()),
            Some(Auth::Basic { username, password }) => {
                request.basic_auth(username, Some(password.expose()))
            }
            Some(Auth::Headers(headers)) => {
                for (name, value) in headers {
                    let mut value = reqwest::header::HeaderValue::from_str(value.expose())
                        .map_err(|_| {
                            Attempt::Fatal(Error::Setup(format!(
                                "the secret value of header `{name}` is not valid in HTTP"
                            )))
                        })?;
                    value.set_sensitive(true);
                    request = request.header(name.clone(), value);
                }
                request
            }
            None => request,
        };
        let response = request
            .send()
            .await
            .map_err(|e| Attempt::Retry(crate::hooks::describe_http_error(e)))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| Attempt::Retry(crate::hooks::describe_http_error(e)))?;
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(Attempt::Retry(format!(
                "HTTP {}: {}",
                status.as_u16(),
                error_detail(&body)
            )));
        }
        if !status.is_success() {
            let hint = match status.as_u16() {
                401 | 403 => " (check the credentials in `auth`)",
                404 => " (check the address: is it the API's root?)",
                _ => "",
            };
            return Err(Attempt::Fatal(Error::Refused {
                backend: self.label.clone(),
                status: status.as_u16(),
                detail: format!("{}{hint}", error_detail(&body)),
            }));
        }
        if body.len() > MAX_BODY {
            return Err(Attempt::Fatal(Error::Malformed {
                backend: self.label.clone(),
                detail: format!("an answer of {} bytes, more than {MAX_BODY}", body.len()),
            }));
        }
        let json: Value = serde_json::from_slice(&body).map_err(|e| {
            Attempt::Fatal(Error::Malformed {
                backend: self.label.clone(),
                detail: format!(
                    "not JSON ({e}): {}",
                    truncate(&String::from_utf8_lossy(&body))
                ),
            })
        })?;
        Ok(json)
    }

    /// GET `path` with `params`, retried while the backend is down or answers 5xx/429; a
    /// `"status":"error"` answer is refused.
    pub(crate) async fn get(&self, path: &str, params: &[(&str, &str)]) -> Result<Value, Error> {
        let json = self.fetch(self.url(path, params)).await?;
        if json.get("status").and_then(Value::as_str) == Some("error") {
            return Err(Error::Refused {
                backend: self.label.clone(),
                status: 200,
                detail: error_detail(json.to_string().as_bytes()),
            });
        }
        Ok(json)
    }

    /// The JSON answer to a GET of `url`, which must be on this backend's origin (its
    /// credentials go nowhere else), retried while the backend is down or answers 5xx/429.
    pub(crate) async fn fetch(&self, url: Url) -> Result<Value, Error> {
        if url.origin() != self.base.origin() {
            return Err(Error::Setup(format!(
                "`{}` is not on {}",
                crate::secret::redact_url(&format!(
                    "{}://{}",
                    url.scheme(),
                    url.host_str().unwrap_or("")
                )),
                self.label
            )));
        }
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            if attempt > 1 {
                tracing::debug!("{}: {last}; asking again", self.label);
                tokio::time::sleep(BACKOFF.pause(attempt - 1, None)).await;
            }
            match self.once(url.clone()).await {
                Ok(json) => return Ok(json),
                Err(Attempt::Retry(detail)) => last = detail,
                Err(Attempt::Fatal(error)) => return Err(error),
            }
        }
        Err(Error::Unavailable {
            backend: self.label.clone(),
            attempts: ATTEMPTS,
            detail: last,
        })
    }

    fn malformed(&self, detail: impl Into<String>) -> Error {
        Error::Malformed {
            backend: self.label.clone(),
            detail: detail.into(),
        }
    }

    /// `data` of a Prometheus API answer.
    fn data<'a>(&self, json: &'a Value) -> Result<&'a Value, Error> {
        json.get("data")
            .ok_or_else(|| self.malformed("no `data` in the answer"))
    }

    /// An instant query (`/api/v1/query`) at `time` (unix seconds; now when `None`): every
    /// series of a vector, or a scalar as one series without labels.
    pub(crate) async fn query(&self, query: &str, time: Option<f64>) -> Result<Vec<Series>, Error> {
        let time = time.map(|t| format!("{t:.3}"));
        let mut params = vec![("query", query)];
        if let Some(time) = &time {
            params.push(("time", time));
        }
        let json = self.get("/api/v1/query", &params).await?;
        let data = self.data(&json)?;
        let result = data.get("result");
        match data.get("resultType").and_then(Value::as_str) {
            Some("vector") => result
                .and_then(Value::as_array)
                .ok_or_else(|| self.malformed("a vector result that is not a list"))?
                .iter()
                .map(|item| {
                    let value = item
                        .get("value")
                        .and_then(|v| v.get(1))
                        .and_then(number)
                        .ok_or_else(|| self.malformed("a vector sample without a number"))?;
                    Ok(Series {
                        labels: labels(item.get("metric")),
                        value,
                    })
                })
                .collect(),
            Some("scalar") => {
                let value = result
                    .and_then(|v| v.get(1))
                    .and_then(number)
                    .ok_or_else(|| self.malformed("a scalar result without a number"))?;
                Ok(vec![Series {
                    labels: BTreeMap::new(),
                    value,
                }])
            }
            Some("matrix") => Err(Error::Refused {
                backend: self.label.clone(),
                status: 400,
                detail: "the query returns a range vector; an instant query needs one value per series (wrap it in a function such as `rate(...)` or `max_over_time(...)`)".to_string(),
            }),
            other => Err(self.malformed(format!(
                "result type {}",
                other.map_or_else(|| "missing".to_string(), |t| format!("`{}`", one_line(t)))
            ))),
        }
    }

    /// An instant query read as one value: one series (or a scalar) is its value; none, or NaN,
    /// is no data; several are [`Reading::Several`].
    pub(crate) async fn read(&self, query: &str) -> Result<Reading, Error> {
        let mut series = self.query(query, None).await?;
        Ok(match series.len() {
            0 => Reading::NoData("empty result".to_string()),
            1 => {
                let value = series.remove(0).value;
                if value.is_nan() {
                    Reading::NoData("NaN".to_string())
                } else {
                    Reading::Value(value)
                }
            }
            _ => Reading::Several(series),
        })
    }

    /// A range query (`/api/v1/query_range`) from `start` to `end` (unix seconds) every `step`.
    pub(crate) async fn query_range(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step: Duration,
    ) -> Result<Vec<RangeSeries>, Error> {
        let (start, end) = (format!("{start:.3}"), format!("{end:.3}"));
        let step = format!("{:.3}", step.as_secs_f64().max(0.001));
        let json = self
            .get(
                "/api/v1/query_range",
                &[
                    ("query", query),
                    ("start", &start),
                    ("end", &end),
                    ("step", &step),
                ],
            )
            .await?;
        let data = self.data(&json)?;
        if data.get("resultType").and_then(Value::as_str) != Some("matrix") {
            return Err(self.malformed("a range query result that is not a matrix"));
        }
        data.get("result")
            .and_then(Value::as_array)
            .ok_or_else(|| self.malformed("a matrix result that is not a list"))?
            .iter()
            .map(|item| {
                let points = item
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|values| {
                        values
                            .iter()
                            .filter_map(|pair| {
                                Some((pair.get(0)?.as_f64()?, number(pair.get(1)?)?))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Ok(RangeSeries {
                    labels: labels(item.get("metric")),
                    points,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_without_credentials_only() {
        assert!(check_address("http://prometheus:9090").is_ok());
        assert!(check_address("https://prom.example/api/prom").is_ok());
        let error = check_address("https://user:hunter22@prom.example").expect_err("creds");
        assert!(!error.to_string().contains("hunter22"), "{error}");
        assert!(error.to_string().contains("auth"), "{error}");
        assert!(check_address("ftp://prom").is_err());
        assert!(check_address("http://prom:9090/?x=1").is_err());
    }

    #[test]
    fn error_bodies_become_one_line() {
        let body =
            br#"{"status":"error","errorType":"bad_data","error":"1:5: parse error:\nunexpected"}"#;
        assert_eq!(
            error_detail(body),
            "bad_data: 1:5: parse error:\\nunexpected"
        );
        assert_eq!(error_detail(b"plain\ntext"), "plain\\ntext");
        assert!(error_detail("x".repeat(1000).as_bytes()).ends_with('…'));
    }

    #[test]
    fn api_paths_keep_a_prefix() {
        let client = Client::new(
            "Prometheus",
            &Endpoint {
                address: "https://prom.example/api/prom/".into(),
                auth: None,
                headers: vec![("X-Scope-OrgID".into(), "team-a".into())],
                timeout: Duration::from_secs(5),
            },
        )
        .expect("client");
        assert_eq!(
            client
                .url("/api/v1/query", &[("query", "up == 1")])
                .as_str(),
            "https://prom.example/api/prom/api/v1/query?query=up+%3D%3D+1"
        );
        assert_eq!(
            client.label(),
            "Prometheus at `https://prom.example/api/prom`"
        );
        let error = Client::new(
            "Prometheus",
            &Endpoint {
                address: "http://p".into(),
                auth: None,
                headers: vec![("Authorization".into(), "Bearer x".into())],
                timeout: Duration::from_secs(5),
            },
        )
        .expect_err("no Authorization header");
        assert!(error.to_string().contains("auth"), "{error}");
    }
}
