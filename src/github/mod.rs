//! The GitHub REST adapter: octocrab for transport and auth, plus what polite clients need and
//! octocrab leaves out — conditional requests (ETag / `If-None-Match`, so an unchanged poll costs
//! nothing against the rate limit), `retry-after` and `x-ratelimit-*`, backoff on 5xx for reads
//! only (a POST is never resent blindly), `Link` pagination and a timeout on every call.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use http::header::{HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use octocrab::Octocrab;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub(crate) mod deployments;

use crate::error::{Classify, Kind};
use crate::secret::Secret;

/// Upper bound for one request, whatever the server does.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts for a read that meets 5xx or transport errors.
const MAX_ATTEMPTS: u32 = 5;
/// The longest shipgate waits for a rate limit to reset before giving up.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, thiserror::Error)]
pub(crate) enum GitHubError {
    #[error("GitHub has no `{path}` (404 Not Found)")]
    NotFound { path: String },
    #[error(
        "GitHub refused the token for `{path}` (401 Bad credentials); check the `github-token` input"
    )]
    Unauthorized { path: String },
    #[error(
        "GitHub refused `{path}` (403): {message}; give the job the permission this call needs"
    )]
    Forbidden { path: String, message: String },
    #[error(
        "GitHub's rate limit for this token is exhausted until {reset} (in {wait}); re-run after that or use a token with a higher limit"
    )]
    RateLimited { reset: String, wait: String },
    #[error("GitHub answered {status} to `{method} {path}` after {attempts} attempt(s)")]
    Server {
        method: Method,
        path: String,
        status: u16,
        attempts: u32,
    },
    #[error("cannot reach GitHub for `{method} {path}` after {attempts} attempt(s): {reason}")]
    Transport {
        method: Method,
        path: String,
        attempts: u32,
        reason: String,
    },
    #[error("GitHub answered {status} to `{method} {path}`: {message}")]
    Status {
        method: Method,
        path: String,
        status: u16,
        message: String,
    },
    #[error("GitHub's answer to `{path}` is not what shipgate expects: {reason}")]
    Decode { path: String, reason: String },
    #[error("`{url}` is not a usable GitHub API URL: {reason}")]
    Setup { url: String, reason: String },
}

impl Classify for GitHubError {
    fn kind(&self) -> Kind {
        match self {
            GitHubError::Unauthorized { .. } | GitHubError::Setup { .. } => Kind::Usage,
            _ => Kind::Dependency,
        }
    }
}

/// Request counts, for progress lines and benchmarks.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub(crate) struct Stats {
    /// Requests sent, retries included.
    pub(crate) sent: u64,
    /// Answers that were `304 Not Modified` (not charged against the rate limit).
    pub(crate) not_modified: u64,
    /// Last `x-ratelimit-remaining` seen.
    pub(crate) rate_limit_remaining: Option<u64>,
}

impl Stats {
    /// Requests charged against the primary rate limit.
    pub(crate) fn charged(&self) -> u64 {
        self.sent - self.not_modified
    }
}

/// The items of a paginated list, with what GitHub said about its size.
#[derive(Debug)]
pub(crate) struct Listing<T> {
    pub(crate) items: Vec<T>,
    /// `total_count` of the first page, for endpoints that wrap their items in an object.
    pub(crate) total_count: Option<u64>,
    /// More pages existed than the caller allowed.
    pub(crate) truncated: bool,
}

struct Cached {
    etag: String,
    body: String,
    /// The `Link` header of the cached answer: a `304` carries none, and pagination must go on.
    link: Option<HeaderValue>,
}

/// A client for one repository.
pub(crate) struct GitHub {
    crab: Octocrab,
    repo: String,
    cache: Mutex<HashMap<String, Cached>>,
    stats: Mutex<Stats>,
}

impl GitHub {
    /// A client for `repo` (`owner/name`) at `api_url` (`GITHUB_API_URL`: github.com or GHES).
    pub(crate) fn new(api_url: &str, token: &Secret, repo: &str) -> Result<GitHub, GitHubError> {
        let setup = |reason: String| GitHubError::Setup {
            url: crate::secret::redact_url(api_url),
            reason,
        };
        let crab = Octocrab::builder()
            .base_uri(api_url.trim_end_matches('/'))
            .map_err(|e| setup(e.to_string()))?
            .personal_token(token.expose().to_string())
            .set_connect_timeout(Some(Duration::from_secs(10)))
            .set_read_timeout(Some(Duration::from_secs(30)))
            .set_write_timeout(Some(Duration::from_secs(30)))
            // octocrab sends `X-GitHub-Api-Version: 2022-11-28` on every request itself (its
            // `[package.metadata.github-api]`); adding it here would send it twice.
            .build()
            .map_err(|e| setup(e.to_string()))?;
        Ok(GitHub {
            crab,
            repo: repo.to_string(),
            cache: Mutex::new(HashMap::new()),
            stats: Mutex::new(Stats::default()),
        })
    }

    /// `owner/name`.
    pub(crate) fn repo(&self) -> &str {
        &self.repo
    }

    /// `/repos/{owner}/{name}` + `rest`.
    pub(crate) fn repo_path(&self, rest: &str) -> String {
        format!("/repos/{}{rest}", self.repo)
    }

    pub(crate) fn stats(&self) -> Stats {
        *self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// GET `path` as JSON; conditional, retried, rate-limit aware.
    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, GitHubError> {
        let (body, _) = self.get_raw(path).await?;
        decode(path, &body)
    }

    /// GET every page of a list endpoint whose items sit in the array `field` of an object, as
    /// in `{"total_count": 2, "check_runs": [...]}`, following `Link: rel="next"`, at most
    /// `max_pages`. Each page is a conditional request of its own, so unchanged pages cost
    /// nothing against the rate limit.
    pub(crate) async fn get_pages_in<T: DeserializeOwned>(
        &self,
        path: &str,
        field: &str,
        max_pages: usize,
    ) -> Result<Listing<T>, GitHubError> {
        self.list(path, Some(field), max_pages).await
    }

    /// GET every page of a list endpoint: a bare array when `field` is `None`, else the array
    /// `field` of an object. Reports `total_count` and whether pages were left unread.
    pub(crate) async fn list<T: DeserializeOwned>(
        &self,
        path: &str,
        field: Option<&str>,
        max_pages: usize,
    ) -> Result<Listing<T>, GitHubError> {
        let mut listing = Listing {
            items: Vec::new(),
            total_count: None,
            truncated: false,
        };
        let mut next = Some(path.to_string());
        let mut pages = 0;
        while let Some(current) = next.take() {
            let (body, headers) = self.get_raw(&current).await?;
            let page: Vec<T> = match field {
                None => decode(&current, &body)?,
                Some(field) => {
                    let mut object: serde_json::Map<String, serde_json::Value> =
                        decode(&current, &body)?;
                    if listing.total_count.is_none() {
                        listing.total_count = object
                            .get("total_count")
                            .and_then(serde_json::Value::as_u64);
                    }
                    let items = object.remove(field).ok_or_else(|| GitHubError::Decode {
                        path: current.clone(),
                        reason: format!("the answer has no `{field}` list"),
                    })?;
                    serde_json::from_value(items).map_err(|e| GitHubError::Decode {
                        path: current.clone(),
                        reason: e.to_string(),
                    })?
                }
            };
            listing.items.extend(page);
            pages += 1;
            next = headers.get("link").and_then(next_link);
            if pages >= max_pages && next.is_some() {
                listing.truncated = true;
                break;
            }
        }
        Ok(listing)
    }

    /// POST JSON. Resent only when GitHub said it did not process it (rate limited).
    pub(crate) async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, GitHubError> {
        let (status, body, _) = self.send(Method::POST, path, Some(body)).await?;
        if !status.is_success() {
            return Err(status_error(Method::POST, path, status, &body));
        }
        decode(path, &body)
    }

    async fn get_raw(&self, path: &str) -> Result<(String, HeaderMap), GitHubError> {
        let (status, body, headers) = self.send::<()>(Method::GET, path, None).await?;
        if status == StatusCode::NOT_MODIFIED {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            return match cache.get(path) {
                Some(cached) => {
                    let mut headers = headers;
                    if let Some(link) = &cached.link
                        && !headers.contains_key("link")
                    {
                        headers.insert("link", link.clone());
                    }
                    Ok((cached.body.clone(), headers))
                }
                None => Err(GitHubError::Decode {
                    path: path.to_string(),
                    reason: "304 Not Modified for a request sent without If-None-Match".into(),
                }),
            };
        }
        if !status.is_success() {
            return Err(status_error(Method::GET, path, status, &body));
        }
        if let Some(etag) = headers.get("etag").and_then(|v| v.to_str().ok()) {
            self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(
                path.to_string(),
                Cached {
                    etag: etag.to_string(),
                    body: body.clone(),
                    link: headers.get("link").cloned(),
                },
            );
        }
        Ok((body, headers))
    }

    /// Sends one logical request, with the retries its method allows. Returns the final status,
    /// body and headers; rate-limit and server errors past the retry budget become errors.
    async fn send<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<(StatusCode, String, HeaderMap), GitHubError> {
        let idempotent = method == Method::GET;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut builder = http::Request::builder()
                .method(method.clone())
                .uri(path)
                .header("accept", "application/vnd.github+json");
            if idempotent
                && let Some(cached) = self
                    .cache
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(path)
                && let Ok(value) = HeaderValue::from_str(&cached.etag)
            {
                builder = builder.header("if-none-match", value);
            }
            let request =
                self.crab
                    .build_request(builder, body)
                    .map_err(|e| GitHubError::Decode {
                        path: path.to_string(),
                        reason: format!("cannot build the request: {}", describe(&e)),
                    })?;
            self.count(|s| s.sent += 1);
            let outcome = tokio::time::timeout(REQUEST_TIMEOUT, async {
                let response = self.crab.execute(request).await?;
                let (parts, body) = response.into_parts();
                let text = self
                    .crab
                    .body_to_string(http::Response::from_parts(parts.clone(), body))
                    .await?;
                Ok::<_, octocrab::Error>((parts.status, parts.headers, text))
            })
            .await;
            let answer = match outcome {
                Ok(Ok(answer)) => Ok(answer),
                Ok(Err(e)) => Err(describe(&e)),
                Err(_) => Err(format!("no answer within {}s", REQUEST_TIMEOUT.as_secs())),
            };
            let (status, headers, text) = match answer {
                Ok(answer) => answer,
                Err(reason) => {
                    if idempotent && attempt < MAX_ATTEMPTS {
                        tracing::warn!(
                            "GitHub `{method} {path}` failed ({reason}); retrying (attempt {attempt} of {MAX_ATTEMPTS})"
                        );
                        tokio::time::sleep(backoff(attempt)).await;
                        continue;
                    }
                    return Err(GitHubError::Transport {
                        method,
                        path: path.to_string(),
                        attempts: attempt,
                        reason,
                    });
                }
            };
            let remaining = header_u64(&headers, "x-ratelimit-remaining");
            self.count(|s| {
                if status == StatusCode::NOT_MODIFIED {
                    s.not_modified += 1;
                }
                if remaining.is_some() {
                    s.rate_limit_remaining = remaining;
                }
            });
            if let Some(wait) = rate_limit_wait(status, &headers, &text) {
                if wait > MAX_RATE_LIMIT_WAIT || attempt >= MAX_ATTEMPTS + 2 {
                    return Err(GitHubError::RateLimited {
                        reset: reset_time(&headers),
                        wait: crate::ui::format_duration(wait),
                    });
                }
                tracing::warn!(
                    "GitHub rate limit hit on `{method} {path}` ({}); waiting {} as GitHub asks",
                    status.as_u16(),
                    crate::ui::format_duration(wait)
                );
                tokio::time::sleep(crate::util::retry_delay(wait)).await;
                continue;
            }
            if status.is_server_error() {
                if idempotent && attempt < MAX_ATTEMPTS {
                    tracing::warn!(
                        "GitHub answered {} to `{method} {path}`; retrying (attempt {attempt} of {MAX_ATTEMPTS})",
                        status.as_u16()
                    );
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
                return Err(GitHubError::Server {
                    method,
                    path: path.to_string(),
                    status: status.as_u16(),
                    attempts: attempt,
                });
            }
            return Ok((status, text, headers));
        }
    }

    fn count(&self, f: impl FnOnce(&mut Stats)) {
        f(&mut self.stats.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// Retries of GitHub's API: about 1 s, 2 s, 4 s, 8 s, jittered.
const BACKOFF: crate::util::Backoff = crate::util::Backoff {
    first: Duration::from_secs(1),
    factor: 2.0,
    max: Duration::from_secs(64),
    jitter: true,
};

fn backoff(attempt: u32) -> Duration {
    BACKOFF.pause(attempt, None)
}

/// How long GitHub asks us to wait, when the answer is a rate limit: `retry-after` first, then
/// `x-ratelimit-remaining: 0` until `x-ratelimit-reset`, then a minute for a secondary limit
/// (429, or 403 whose message says so). `None` when the answer is not a rate limit.
fn rate_limit_wait(status: StatusCode, headers: &HeaderMap, body: &str) -> Option<Duration> {
    if status != StatusCode::FORBIDDEN && status != StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    if let Some(secs) = header_u64(headers, "retry-after") {
        return Some(Duration::from_secs(secs.max(1)));
    }
    if header_u64(headers, "x-ratelimit-remaining") == Some(0) {
        let reset = header_u64(headers, "x-ratelimit-reset").unwrap_or(0);
        let now = jiff::Timestamp::now().as_second().max(0) as u64;
        return Some(Duration::from_secs(reset.saturating_sub(now) + 1));
    }
    if status == StatusCode::TOO_MANY_REQUESTS || body.to_lowercase().contains("rate limit") {
        return Some(Duration::from_secs(60));
    }
    None
}

fn reset_time(headers: &HeaderMap) -> String {
    header_u64(headers, "x-ratelimit-reset")
        .and_then(|secs| jiff::Timestamp::from_second(secs as i64).ok())
        .map_or_else(|| "an unknown time".to_string(), |t| t.to_string())
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// The path and query of the `rel="next"` URL of a `Link` header.
fn next_link(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    text.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        if !params.split(';').any(|p| p.trim() == "rel=\"next\"") {
            return None;
        }
        let url = url.trim().trim_start_matches('<').trim_end_matches('>');
        let uri: http::Uri = url.parse().ok()?;
        uri.path_and_query().map(|pq| pq.as_str().to_string())
    })
}

fn status_error(method: Method, path: &str, status: StatusCode, body: &str) -> GitHubError {
    let message = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
    let path = path.to_string();
    match status {
        StatusCode::NOT_FOUND => GitHubError::NotFound { path },
        StatusCode::UNAUTHORIZED => GitHubError::Unauthorized { path },
        StatusCode::FORBIDDEN => GitHubError::Forbidden { path, message },
        _ => GitHubError::Status {
            method,
            path,
            status: status.as_u16(),
            message,
        },
    }
}

fn decode<T: DeserializeOwned>(path: &str, body: &str) -> Result<T, GitHubError> {
    serde_json::from_str(body).map_err(|e| GitHubError::Decode {
        path: path.to_string(),
        reason: e.to_string(),
    })
}

/// An octocrab error as one line without any URL (hyper and reqwest errors can carry one).
fn describe(error: &octocrab::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = Some(error);
    let mut innermost = error.to_string();
    while let Some(e) = source {
        innermost = e.to_string();
        source = e.source();
    }
    let text = strip_urls(&innermost);
    crate::secret::redact(&text)
}

/// Replaces anything that looks like a URL with `<url>`.
pub(crate) fn strip_urls(text: &str) -> String {
    text.split(' ')
        .map(|word| if word.contains("://") { "<url>" } else { word })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `owner/name` with GitHub's characters, before it goes into any API path.
pub(crate) fn check_repository(repo: &str) -> crate::error::Result<()> {
    let valid = repo.split_once('/').is_some_and(|(owner, name)| {
        let part = |s: &str| {
            !s.is_empty()
                && !s.starts_with('.')
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        part(owner) && part(name)
    });
    if valid {
        Ok(())
    } else {
        Err(crate::error::Error::usage(format!(
            "repository `{}` is not `owner/name`; pass `--repository owner/name`",
            crate::text::one_line(repo)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_must_be_owner_slash_name() {
        assert!(crate::github::check_repository("octo/app").is_ok());
        assert!(crate::github::check_repository("octo").is_err());
        assert!(crate::github::check_repository("octo/app/x").is_err());
        assert!(crate::github::check_repository("../app").is_err());
    }

    #[test]
    fn next_link_is_found() {
        let value = HeaderValue::from_static(
            "<https://api.github.com/repositories/1/deployments?page=2>; rel=\"next\", <https://api.github.com/repositories/1/deployments?page=5>; rel=\"last\"",
        );
        assert_eq!(
            next_link(&value).as_deref(),
            Some("/repositories/1/deployments?page=2")
        );
        let last_only = HeaderValue::from_static("<https://x/y?page=1>; rel=\"prev\"");
        assert_eq!(next_link(&last_only), None);
    }

    #[test]
    fn rate_limits_are_recognised() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(
            rate_limit_wait(StatusCode::FORBIDDEN, &headers, ""),
            Some(Duration::from_secs(7))
        );
        let plain = HeaderMap::new();
        assert_eq!(
            rate_limit_wait(
                StatusCode::FORBIDDEN,
                &plain,
                "{\"message\":\"Resource not accessible by integration\"}"
            ),
            None
        );
        assert_eq!(
            rate_limit_wait(StatusCode::TOO_MANY_REQUESTS, &plain, ""),
            Some(Duration::from_secs(60))
        );
        assert_eq!(rate_limit_wait(StatusCode::BAD_GATEWAY, &headers, ""), None);
    }

    #[test]
    fn urls_are_stripped() {
        assert_eq!(
            strip_urls("error sending request for url (https://hooks.example/T000/secret) refused"),
            "error sending request for url <url> refused"
        );
    }
}
