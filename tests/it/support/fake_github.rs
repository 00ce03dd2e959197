//! A stateful, in-process fake of the GitHub REST API, served over real HTTP on loopback.
//!
//! The product binary talks to it exactly as it would to `api.github.com` (base URL from
//! `GITHUB_API_URL`). Tests build the world with the builder methods on [`FakeGitHub`]
//! (repositories, a commit DAG, branches, tags, deployments), optionally queue faults with
//! [`FakeGitHub::inject`], run the product, then assert on [`FakeGitHub::requests`] and the state.
//!
//! Layout of this module:
//! * public API: [`FakeGitHub`], [`Injected`], [`Recorded`];
//! * the server thread and the request pipeline (auth, injection, rate limit, ETag, recording);
//! * [`State`] and the per-repository [`Repo`] (the place to add check runs, commit statuses,
//!   branch protection and rulesets: add a field to `Repo`, a builder on `FakeGitHub`, a route
//!   arm in `State::route_repo` and a handler section below);
//! * handlers grouped by resource: repository, git refs and tags, commits and compare,
//!   deployments and deployment statuses;
//! * JSON renderers and small helpers (pagination, time, hashing);
//! * [`checks`] (child module): check runs and suites, commit status listings, branch
//!   protection, rulesets, Actions jobs, and the timeline that changes them while a test runs;
//! * [`openapi`] (child module): GitHub's REST OpenAPI description as the judge of every request
//!   and every answer. What breaks it is a [`Violation`], and a fake dropped with violations
//!   fails the test (take the ones a test provokes on purpose with
//!   [`FakeGitHub::take_violations`]).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State as Extract};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub mod checks;
pub mod openapi;
pub mod security;

pub use openapi::Violation;

const DOCS_URL: &str = "https://docs.github.com/rest";
const RATE_LIMIT: u64 = 5000;
/// The REST API version shipgate speaks; GitHub answers 400 to versions it does not support.
const API_VERSION: &str = "2022-11-28";
/// 2024-01-01T00:00:00Z: the fake clock used for every `created_at`/`updated_at`.
const CLOCK_START: i64 = 1_704_067_200;
/// Every object created by a builder or a POST advances the fake clock by this much.
const CLOCK_STEP: i64 = 60;
const FIRST_DEPLOYMENT_ID: u64 = 1_000;
const FIRST_DEPLOYMENT_STATUS_ID: u64 = 50_000;
const DEPLOYMENT_STATES: [&str; 7] = [
    "error",
    "failure",
    "inactive",
    "in_progress",
    "queued",
    "pending",
    "success",
];

// =================================================================================================
// Public API
// =================================================================================================

/// A running fake GitHub. Dropping it stops the server.
pub struct FakeGitHub {
    shared: Arc<Shared>,
    url: String,
    _server: super::axum_server::AxumServer,
}

/// A canned response consumed by the next matching request (see [`FakeGitHub::inject`]).
#[derive(Clone, Debug)]
pub struct Injected {
    pub status: u16,
    /// Sent after the default headers, replacing any default of the same name.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// One request as the fake saw it, with the status it answered.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// Upper-case method, e.g. `GET`.
    pub method: String,
    /// Percent-decoded path, e.g. `/repos/acme/app/git/ref/tags/release/1.0`.
    pub path: String,
    /// The path as sent, e.g. `/repos/acme/app/git/ref/tags/release%2F1.0`.
    pub raw_path: String,
    /// Raw query string without the `?` (empty when absent).
    pub query: String,
    pub status: u16,
    pub if_none_match: Option<String>,
    pub authorization_present: bool,
    pub body: String,
    /// True when the answer came from an [`Injected`] response.
    pub injected: bool,
    /// All request headers (lower-case names).
    pub headers: Vec<(String, String)>,
}

impl Injected {
    /// A plain error with GitHub's `{"message", "documentation_url"}` body, e.g. `status(502)`.
    pub fn status(status: u16) -> Self {
        let message = StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error");
        Self::json(
            status,
            json!({ "message": message, "documentation_url": DOCS_URL }),
        )
    }

    /// Any JSON body with the given status.
    pub fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.to_string(),
        }
    }

    /// A secondary-rate-limit answer (use 403 or 429) carrying `retry-after: secs`.
    pub fn retry_after(status: u16, secs: u64) -> Self {
        Self::json(
            status,
            json!({
                "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
            }),
        )
        .with_header("retry-after", &secs.to_string())
    }

    /// A primary-rate-limit answer: 403, `x-ratelimit-remaining: 0`, `x-ratelimit-reset: reset_epoch`.
    pub fn rate_limited_until(reset_epoch: u64) -> Self {
        primary_rate_limit_body()
            .with_header("x-ratelimit-remaining", "0")
            .with_header("x-ratelimit-used", &RATE_LIMIT.to_string())
            .with_header("x-ratelimit-reset", &reset_epoch.to_string())
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

impl FakeGitHub {
    /// Binds `127.0.0.1:0` and serves on a dedicated thread with its own tokio runtime.
    /// Panics when GitHub's OpenAPI description is not installed (`bash .ci/install-deps.sh`).
    pub fn start() -> FakeGitHub {
        openapi::spec();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind fake GitHub");
        let addr = listener.local_addr().expect("fake GitHub address");
        let url = format!("http://{addr}");
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(url.clone())),
            token: format!("ghs_fakeGitHubToken{:0>17}", addr.port()),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let server = super::axum_server::AxumServer::start("fake-github", listener, app);
        FakeGitHub {
            shared,
            url,
            _server: server,
        }
    }

    /// Base URL without a trailing slash, e.g. `http://127.0.0.1:41234` (use as `GITHUB_API_URL`).
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The token every request must carry as `Authorization: Bearer <t>` or `token <t>`.
    pub fn token(&self) -> String {
        self.shared.token.clone()
    }

    // ---- world building (each returns &Self for chaining) --------------------------------------

    /// Creates (or selects, if it exists) a repository; later builders apply to it.
    pub fn repo(&self, owner: &str, name: &str, default_branch: &str) -> &Self {
        let mut state = self.state();
        let key = repo_key(owner, name);
        let id = 100_000 + state.repos.len() as u64;
        let base = state.base_url.clone();
        state
            .repos
            .entry(key.clone())
            .or_insert_with(|| Repo::new(&base, id, owner, name))
            .default_branch = default_branch.to_owned();
        state.current = Some(key);
        self
    }

    /// Adds a commit (full 40-hex sha) whose parents must already exist.
    pub fn commit(&self, sha: &str, parents: &[&str]) -> &Self {
        assert_sha(sha);
        let mut state = self.state();
        let at = state.clock.tick();
        let repo = state.current_repo();
        for parent in parents {
            assert!(
                repo.commits.contains_key(*parent),
                "fake GitHub: parent {parent} of {sha} is not a known commit"
            );
        }
        let seq = repo.commits.len();
        repo.commits.insert(
            sha.to_owned(),
            Commit {
                sha: sha.to_owned(),
                parents: parents.iter().map(|p| (*p).to_owned()).collect(),
                message: format!("Commit {}", &sha[..7]),
                at,
                seq,
            },
        );
        self
    }

    /// Creates or moves a branch.
    pub fn branch(&self, name: &str, sha: &str) -> &Self {
        let mut state = self.state();
        let repo = state.current_repo();
        repo.expect_commit(sha);
        repo.branches.insert(name.to_owned(), sha.to_owned());
        self
    }

    /// `refs/tags/{name}` pointing straight at a commit.
    pub fn lightweight_tag(&self, name: &str, commit_sha: &str) -> &Self {
        let mut state = self.state();
        let repo = state.current_repo();
        repo.expect_commit(commit_sha);
        repo.tags.insert(name.to_owned(), commit_sha.to_owned());
        self
    }

    /// A tag object `tag_object_sha` named `name` plus `refs/tags/{name}` pointing at it.
    /// `target_sha` is a commit, or another tag object (then the object's `type` is `tag`).
    /// `verification`: `None` means unsigned; `Some((verified, reason))` a signed tag.
    pub fn annotated_tag(
        &self,
        name: &str,
        tag_object_sha: &str,
        target_sha: &str,
        verification: Option<(bool, &str)>,
    ) -> &Self {
        self.tag_object(tag_object_sha, name, target_sha, verification);
        let mut state = self.state();
        state
            .current_repo()
            .tags
            .insert(name.to_owned(), tag_object_sha.to_owned());
        self
    }

    /// Replaces the message of an existing tag object (in the current repository).
    pub fn set_tag_message(&self, tag_object_sha: &str, message: &str) -> &Self {
        let mut state = self.state();
        let repo = state.current_repo();
        let tag = repo
            .tag_objects
            .get_mut(tag_object_sha)
            .unwrap_or_else(|| panic!("no tag object {tag_object_sha}"));
        tag.message = message.to_owned();
        self
    }

    /// Only the tag object (no ref), e.g. the inner object of a tag-of-a-tag chain.
    pub fn tag_object(
        &self,
        tag_object_sha: &str,
        tag_name: &str,
        target_sha: &str,
        verification: Option<(bool, &str)>,
    ) -> &Self {
        assert_sha(tag_object_sha);
        let mut state = self.state();
        let at = state.clock.tick();
        let repo = state.current_repo();
        let target_type = if repo.tag_objects.contains_key(target_sha) {
            "tag"
        } else {
            repo.expect_commit(target_sha);
            "commit"
        };
        repo.tag_objects.insert(
            tag_object_sha.to_owned(),
            TagObject {
                sha: tag_object_sha.to_owned(),
                tag: tag_name.to_owned(),
                message: format!("Release {tag_name}\n"),
                target_type,
                target_sha: target_sha.to_owned(),
                at,
                verification: verification.map(|(ok, reason)| (ok, reason.to_owned())),
            },
        );
        self
    }

    /// A commit status (`state`: error|failure|pending|success) for `sha` under `context`.
    /// Used by deployment creation to honour `required_contexts` (409 when not all succeed).
    pub fn commit_status(&self, sha: &str, context: &str, state_: &str) -> &Self {
        let mut state = self.state();
        let at = state.clock.tick();
        let id = state.checks.next_id();
        state.current_repo().commit_statuses.push(CommitStatus {
            sha: sha.to_owned(),
            context: context.to_owned(),
            state: state_.to_owned(),
            at,
            id,
            target_url: None,
            description: None,
        });
        self
    }

    /// A pre-existing deployment with its statuses in chronological order; returns its id.
    /// `ref_` is stored verbatim, `sha` need not be in the DAG. task `deploy`, non-transient,
    /// `production_environment` iff `environment == "production"`.
    pub fn deployment(
        &self,
        environment: &str,
        ref_: &str,
        sha: &str,
        payload: Value,
        statuses: &[&str],
    ) -> u64 {
        let mut state = self.state();
        let id = state.ids.deployment();
        let created = state.clock.tick();
        let mut deployment = Deployment {
            id,
            sha: sha.to_owned(),
            ref_: ref_.to_owned(),
            task: "deploy".to_owned(),
            payload,
            original_environment: environment.to_owned(),
            environment: environment.to_owned(),
            description: None,
            transient: false,
            production: environment == "production",
            created_at: created,
            updated_at: created,
            statuses: Vec::new(),
            request_body: None,
        };
        for status in statuses {
            assert!(
                DEPLOYMENT_STATES.contains(status),
                "fake GitHub: bad deployment state {status}"
            );
            let at = state.clock.tick();
            deployment.statuses.push(DeploymentStatus {
                id: state.ids.status(),
                state: (*status).to_owned(),
                description: String::new(),
                environment: environment.to_owned(),
                log_url: String::new(),
                environment_url: String::new(),
                created_at: at,
            });
            deployment.updated_at = at;
        }
        state.current_repo().deployments.push(deployment);
        id
    }

    // ---- transport knobs -----------------------------------------------------------------------

    /// Queues responses for requests whose method matches (`"*"` = any) and whose decoded path
    /// starts with `path_prefix`. Consumed in order, after the auth check, before normal handling.
    pub fn inject(&self, method: &str, path_prefix: &str, responses: Vec<Injected>) -> &Self {
        self.state().injections.push(Injection {
            method: method.to_ascii_uppercase(),
            path_prefix: path_prefix.to_owned(),
            queue: responses.into(),
        });
        self
    }

    /// Delay applied to every request before it is handled.
    pub fn set_latency(&self, latency: Duration) -> &Self {
        self.state().latency = latency;
        self
    }

    /// Sets the primary rate limit window. While `remaining` is 0 and `reset_epoch` is in the
    /// future, every request gets GitHub's 403 "API rate limit exceeded".
    pub fn set_rate_limit(&self, remaining: u64, reset_epoch: u64) -> &Self {
        let mut state = self.state();
        state.rate.remaining = remaining.min(RATE_LIMIT);
        state.rate.reset = reset_epoch;
        self
    }

    // ---- observation ---------------------------------------------------------------------------

    pub fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    /// Removes and returns what broke GitHub's OpenAPI description so far (requests the client
    /// sent, answers the fake gave). Whatever is left when the fake is dropped fails the test.
    pub fn take_violations(&self) -> Vec<Violation> {
        std::mem::take(&mut self.state().violations)
    }

    /// Requests charged against the rate limit (every answer but 304).
    pub fn charged_count(&self) -> usize {
        self.state()
            .requests
            .iter()
            .filter(|r| r.status != 304)
            .count()
    }

    pub fn total_count(&self) -> usize {
        self.state().requests.len()
    }

    /// Raw JSON bodies of the `POST …/deployments` requests that created a deployment (201),
    /// in order (a body that was not JSON is kept as a JSON string).
    pub fn created_deployments(&self) -> Vec<Value> {
        let state = self.state();
        let mut created: Vec<&Deployment> = state
            .repos
            .values()
            .flat_map(|r| r.deployments.iter())
            .filter(|d| d.request_body.is_some())
            .collect();
        created.sort_by_key(|d| d.id);
        created
            .into_iter()
            .filter_map(|d| d.request_body.clone())
            .collect()
    }

    /// Every deployment of every repository as the API renders it, oldest first.
    pub fn deployments(&self) -> Vec<Value> {
        let state = self.state();
        let mut all: Vec<Value> = state
            .repos
            .values()
            .flat_map(|r| r.deployments.iter().map(move |d| deployment_json(r, d)))
            .collect();
        all.sort_by_key(|d| d["id"].as_u64());
        all
    }

    /// The statuses of a deployment as the API renders them, oldest first (empty if unknown).
    pub fn deployment_statuses(&self, id: u64) -> Vec<Value> {
        let state = self.state();
        state
            .find_deployment(id)
            .map(|(repo, d)| d.statuses.iter().map(|s| status_json(repo, d, s)).collect())
            .unwrap_or_default()
    }

    /// Just the states of [`Self::deployment_statuses`], oldest first.
    pub fn deployment_states(&self, id: u64) -> Vec<String> {
        let state = self.state();
        state
            .find_deployment(id)
            .map(|(_, d)| d.statuses.iter().map(|s| s.state.clone()).collect())
            .unwrap_or_default()
    }

    /// Current sha of a branch of the current repository (auto-merge may move branches).
    pub fn branch_sha(&self, name: &str) -> Option<String> {
        self.state().current_repo().branches.get(name).cloned()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }
}

impl Drop for FakeGitHub {
    /// Fails the test that let a request or an answer break GitHub's OpenAPI description.
    fn drop(&mut self) {
        let violations = self.take_violations();
        if violations.is_empty() || std::thread::panicking() {
            return;
        }
        // One line per operation and rule, with how often it happened.
        let mut distinct: Vec<(&Violation, usize)> = Vec::new();
        for v in &violations {
            match distinct
                .iter_mut()
                .find(|(d, _)| d.operation == v.operation && d.rule == v.rule)
            {
                Some((_, n)) => *n += 1,
                None => distinct.push((v, 1)),
            }
        }
        let list: Vec<String> = distinct
            .iter()
            .map(|(v, n)| match n {
                1 => format!("  - {v}"),
                n => format!("  - {v} (and {} more like it)", n - 1),
            })
            .collect();
        panic!(
            "fake GitHub: {} request(s) or answer(s) do not conform to GitHub's REST OpenAPI description (API {API_VERSION}):\n{}",
            violations.len(),
            list.join("\n")
        );
    }
}

// =================================================================================================
// Server plumbing: one fallback handler runs the whole pipeline under the state lock.
// =================================================================================================

struct Shared {
    state: Mutex<State>,
    token: String,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

async fn handle(Extract(shared): Extract<Arc<Shared>>, request: Request) -> Response {
    let latency = shared.lock().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let req = Req::new(&parts, &body);
    let reply = shared.lock().respond(&shared.token, &req);
    reply.into_response()
}

/// A parsed request.
struct Req {
    method: String,
    /// Path as received (still percent-encoded), used to build Link URLs.
    raw_path: String,
    /// Percent-decoded path.
    path: String,
    /// Decoded path segments (split on the raw `/` first, so `%2F` stays inside a segment).
    segments: Vec<String>,
    raw_query: String,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    body: String,
}

impl Req {
    fn new(parts: &axum::http::request::Parts, body: &[u8]) -> Req {
        let raw_path = parts.uri.path().to_owned();
        let raw_query = parts.uri.query().unwrap_or("").to_owned();
        Req {
            method: parts.method.as_str().to_ascii_uppercase(),
            path: percent_decode(&raw_path),
            segments: raw_path
                .split('/')
                .filter(|s| !s.is_empty())
                .map(percent_decode)
                .collect(),
            query: url::form_urlencoded::parse(raw_query.as_bytes())
                .into_owned()
                .collect(),
            raw_path,
            raw_query,
            headers: parts.headers.clone(),
            body: String::from_utf8_lossy(body).into_owned(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn authorized(&self, token: &str) -> bool {
        self.header("authorization")
            .and_then(|value| value.trim().split_once(' '))
            .is_some_and(|(scheme, credential)| {
                (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token"))
                    && credential.trim() == token
            })
    }

    fn json_body(&self) -> Result<serde_json::Map<String, Value>, Reply> {
        if self.body.trim().is_empty() {
            return Ok(serde_json::Map::new());
        }
        match serde_json::from_str::<Value>(&self.body) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(Reply::error(400, "Problems parsing JSON")),
        }
    }
}

/// A response before the default headers are added.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn json(status: u16, body: &Value) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.to_string(),
        }
    }

    fn ok(body: &Value) -> Reply {
        Reply::json(200, body)
    }

    fn error(status: u16, message: &str) -> Reply {
        Reply::json(
            status,
            &json!({ "message": message, "documentation_url": DOCS_URL }),
        )
    }

    fn not_found() -> Reply {
        Reply::error(404, "Not Found")
    }

    fn validation(message: &str, errors: Value) -> Reply {
        Reply::json(
            422,
            &json!({ "message": message, "errors": errors, "documentation_url": DOCS_URL }),
        )
    }

    fn header(mut self, name: &str, value: String) -> Reply {
        self.set_header(name, value);
        self
    }

    fn set_header(&mut self, name: &str, value: String) {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers.push((name.to_owned(), value));
    }

    fn into_response(self) -> Response {
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).expect("valid header name");
            let value = HeaderValue::from_str(value).expect("valid header value");
            headers.insert(name, value);
        }
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() = StatusCode::from_u16(self.status).expect("valid status");
        *response.headers_mut() = headers;
        response
    }
}

impl From<Injected> for Reply {
    fn from(injected: Injected) -> Reply {
        Reply {
            status: injected.status,
            headers: injected.headers,
            body: injected.body,
        }
    }
}

fn primary_rate_limit_body() -> Injected {
    Injected::json(
        403,
        json!({
            "message": "API rate limit exceeded for installation ID 1.",
            "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-the-primary-rate-limit",
        }),
    )
}

// =================================================================================================
// State
// =================================================================================================

type RepoKey = (String, String);

fn repo_key(owner: &str, name: &str) -> RepoKey {
    (owner.to_ascii_lowercase(), name.to_ascii_lowercase())
}

struct State {
    base_url: String,
    clock: Clock,
    ids: Ids,
    repos: BTreeMap<RepoKey, Repo>,
    /// The repository the builders apply to (the last one passed to `FakeGitHub::repo`).
    current: Option<RepoKey>,
    rate: RateLimit,
    latency: Duration,
    injections: Vec<Injection>,
    requests: Vec<Recorded>,
    /// What broke GitHub's OpenAPI description (see [`openapi`]).
    violations: Vec<Violation>,
    /// Ids, the check-suite cap and the scheduled changes (see [`checks`]).
    checks: checks::Global,
}

struct Clock(i64);

impl Clock {
    fn tick(&mut self) -> i64 {
        self.0 += CLOCK_STEP;
        self.0
    }
}

struct Ids {
    deployment: u64,
    status: u64,
    request: u64,
}

impl Ids {
    fn deployment(&mut self) -> u64 {
        self.deployment += 1;
        self.deployment
    }

    fn status(&mut self) -> u64 {
        self.status += 1;
        self.status
    }
}

struct RateLimit {
    remaining: u64,
    reset: u64,
}

impl RateLimit {
    /// Starts a fresh window once the reset time has passed.
    fn roll(&mut self) {
        let now = now_epoch();
        if now >= self.reset {
            self.remaining = RATE_LIMIT;
            self.reset = now + 3600;
        }
    }
}

struct Injection {
    method: String,
    path_prefix: String,
    queue: VecDeque<Injected>,
}

struct Repo {
    id: u64,
    owner: String,
    name: String,
    default_branch: String,
    /// `{base}/repos/{owner}/{name}`
    api: String,
    /// `https://github.com/{owner}/{name}`
    html: String,
    base: String,
    commits: BTreeMap<String, Commit>,
    branches: BTreeMap<String, String>,
    /// Tag name → sha of a commit (lightweight) or of a tag object (annotated).
    tags: BTreeMap<String, String>,
    tag_objects: BTreeMap<String, TagObject>,
    commit_statuses: Vec<CommitStatus>,
    /// Ascending id (= creation order).
    deployments: Vec<Deployment>,
    /// Check runs and suites, protection, rulesets, Actions jobs (see [`checks`]).
    checks: checks::RepoChecks,
    /// Code-scanning and Dependabot alerts (see [`security`]).
    security: security::RepoSecurity,
}

struct Commit {
    sha: String,
    parents: Vec<String>,
    message: String,
    at: i64,
    /// Creation order; parents always come first, so this is a topological order.
    seq: usize,
}

struct TagObject {
    sha: String,
    tag: String,
    message: String,
    target_type: &'static str,
    target_sha: String,
    at: i64,
    verification: Option<(bool, String)>,
}

struct CommitStatus {
    sha: String,
    context: String,
    state: String,
    at: i64,
    id: u64,
    target_url: Option<String>,
    description: Option<String>,
}

struct Deployment {
    id: u64,
    sha: String,
    ref_: String,
    task: String,
    payload: Value,
    original_environment: String,
    environment: String,
    description: Option<String>,
    transient: bool,
    production: bool,
    created_at: i64,
    updated_at: i64,
    /// Oldest first.
    statuses: Vec<DeploymentStatus>,
    /// The POST body, for deployments created through the API.
    request_body: Option<Value>,
}

struct DeploymentStatus {
    id: u64,
    state: String,
    description: String,
    environment: String,
    log_url: String,
    environment_url: String,
    created_at: i64,
}

impl State {
    fn new(base_url: String) -> State {
        State {
            base_url,
            clock: Clock(CLOCK_START),
            ids: Ids {
                deployment: FIRST_DEPLOYMENT_ID - 1,
                status: FIRST_DEPLOYMENT_STATUS_ID - 1,
                request: 0,
            },
            repos: BTreeMap::new(),
            current: None,
            rate: RateLimit {
                remaining: RATE_LIMIT,
                reset: now_epoch() + 3600,
            },
            latency: Duration::ZERO,
            injections: Vec::new(),
            requests: Vec::new(),
            violations: Vec::new(),
            checks: checks::Global::default(),
        }
    }

    fn current_repo(&mut self) -> &mut Repo {
        let key = self
            .current
            .clone()
            .expect("fake GitHub: call .repo(owner, name, default_branch) first");
        self.repos.get_mut(&key).expect("current repo exists")
    }

    fn find_deployment(&self, id: u64) -> Option<(&Repo, &Deployment)> {
        self.repos
            .values()
            .find_map(|r| r.deployments.iter().find(|d| d.id == id).map(|d| (r, d)))
    }

    /// The whole pipeline: auth → injected fault → rate limit → routing → ETag/304 →
    /// rate-limit accounting and default headers → recording.
    fn respond(&mut self, token: &str, req: &Req) -> Reply {
        self.rate.roll();
        self.fire_due_changes();
        let spec = openapi::spec();
        let (operation, violations) = spec.check_request(req);
        self.violations.extend(violations);
        let mut injected = false;
        let versions: Vec<&str> = req
            .headers
            .get_all("x-github-api-version")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let mut reply = if versions.len() > 1 || versions.iter().any(|v| *v != API_VERSION) {
            // GitHub answers 400 to a version it does not support; the client must send exactly
            // one `X-GitHub-Api-Version` (a doubled header is not a version GitHub documents).
            Reply::error(
                400,
                &format!(
                    "exactly one X-GitHub-Api-Version of {API_VERSION} expected, got {versions:?}"
                ),
            )
        } else if !req.authorized(token) {
            Reply::error(401, "Bad credentials")
        } else if let Some(canned) = self.take_injection(req) {
            injected = true;
            Reply::from(canned)
        } else if self.rate.remaining == 0 {
            Reply::from(primary_rate_limit_body())
        } else {
            self.route(req)
        };
        if let Some(operation) = operation
            && !injected
        {
            let violations = spec.check_response(operation, req, reply.status, &reply.body);
            self.violations.extend(violations);
        }

        if req.method == "GET" && (200..300).contains(&reply.status) && !injected {
            let etag = format!("\"{}\"", hex_sha256(reply.body.as_bytes()));
            if req
                .header("if-none-match")
                .is_some_and(|h| etag_matches(h, &etag))
            {
                reply = Reply {
                    status: 304,
                    headers: Vec::new(),
                    body: String::new(),
                };
            }
            reply.set_header("etag", etag);
        }

        if reply.status != 304 {
            self.rate.remaining = self.rate.remaining.saturating_sub(1);
        }
        self.ids.request += 1;
        let mut headers = vec![
            (
                "content-type".to_owned(),
                "application/json; charset=utf-8".to_owned(),
            ),
            ("x-ratelimit-limit".to_owned(), RATE_LIMIT.to_string()),
            (
                "x-ratelimit-remaining".to_owned(),
                self.rate.remaining.to_string(),
            ),
            ("x-ratelimit-reset".to_owned(), self.rate.reset.to_string()),
            (
                "x-ratelimit-used".to_owned(),
                (RATE_LIMIT - self.rate.remaining).to_string(),
            ),
            ("x-ratelimit-resource".to_owned(), "core".to_owned()),
            (
                "x-github-request-id".to_owned(),
                format!("FAKE:{:08X}", self.ids.request),
            ),
            (
                "x-github-media-type".to_owned(),
                "github.v3; format=json".to_owned(),
            ),
        ];
        headers.retain(|(k, _)| !reply.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(k)));
        headers.append(&mut reply.headers);
        reply.headers = headers;

        self.requests.push(Recorded {
            method: req.method.clone(),
            path: req.path.clone(),
            raw_path: req.raw_path.clone(),
            query: req.raw_query.clone(),
            status: reply.status,
            if_none_match: req.header("if-none-match").map(str::to_owned),
            authorization_present: req.headers.contains_key("authorization"),
            body: req.body.clone(),
            injected,
            headers: req
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
        });
        reply
    }

    fn take_injection(&mut self, req: &Req) -> Option<Injected> {
        self.injections
            .iter_mut()
            .filter(|i| i.method == "*" || i.method == req.method)
            .filter(|i| req.path.starts_with(&i.path_prefix))
            .find_map(|i| i.queue.pop_front())
    }

    fn route(&mut self, req: &Req) -> Reply {
        let segments: Vec<&str> = req.segments.iter().map(String::as_str).collect();
        match segments.as_slice() {
            ["repos", owner, name, rest @ ..] => {
                let key = repo_key(owner, name);
                if !self.repos.contains_key(&key) {
                    return Reply::not_found();
                }
                self.route_repo(&key, req, rest)
            }
            _ => Reply::not_found(),
        }
    }

    /// Routes `/repos/{owner}/{repo}/…`; `rest` is what follows the repository.
    fn route_repo(&mut self, key: &RepoKey, req: &Req, rest: &[&str]) -> Reply {
        let repo = &self.repos[key];
        if req.method == "GET"
            && let Some(reply) = checks::route(&self.checks, repo, req, rest)
        {
            return reply;
        }
        if req.method == "GET"
            && let Some(reply) = security::route(repo, req, rest)
        {
            return reply;
        }
        match (req.method.as_str(), rest) {
            // repository
            ("GET", []) => Reply::ok(&repo_json(repo)),
            // git refs and tag objects
            ("GET", ["git", "ref" | "refs", kind @ ("tags" | "heads"), name @ ..])
                if !name.is_empty() =>
            {
                get_git_ref(repo, kind, &name.join("/"))
            }
            ("GET", ["git", "tags", sha]) => get_git_tag(repo, sha),
            // commits and compare (future: `["commits", r @ .., "check-runs" | "status" | "statuses"]`
            // arms go before the catch-all commit arm)
            ("GET", ["compare", spec @ ..]) if !spec.is_empty() => {
                compare(repo, req, &spec.join("/"))
            }
            ("GET", ["commits", reference @ ..]) if !reference.is_empty() => {
                get_commit(repo, &reference.join("/"))
            }
            // deployments
            ("GET", ["deployments"]) => list_deployments(repo, req),
            ("POST", ["deployments"]) => self.create_deployment(key, req),
            ("GET", ["deployments", id]) => {
                with_deployment(repo, id, |d| Reply::ok(&deployment_json(repo, d)))
            }
            ("DELETE", ["deployments", id]) => self.delete_deployment(key, id),
            ("GET", ["deployments", id, "statuses"]) => with_deployment(repo, id, |d| {
                let statuses = d.statuses.iter().rev().map(|s| status_json(repo, d, s));
                paginate(req, &repo.base, statuses.collect())
            }),
            ("POST", ["deployments", id, "statuses"]) => {
                self.create_deployment_status(key, id, req)
            }
            ("GET", ["deployments", id, "statuses", status_id]) => with_deployment(repo, id, |d| {
                d.statuses
                    .iter()
                    .find(|s| s.id.to_string() == *status_id)
                    .map_or_else(Reply::not_found, |s| Reply::ok(&status_json(repo, d, s)))
            }),
            _ => Reply::not_found(),
        }
    }
}

impl Repo {
    fn new(base: &str, id: u64, owner: &str, name: &str) -> Repo {
        Repo {
            id,
            owner: owner.to_owned(),
            name: name.to_owned(),
            default_branch: "main".to_owned(),
            api: format!("{base}/repos/{owner}/{name}"),
            html: format!("https://github.com/{owner}/{name}"),
            base: base.to_owned(),
            commits: BTreeMap::new(),
            branches: BTreeMap::new(),
            tags: BTreeMap::new(),
            tag_objects: BTreeMap::new(),
            commit_statuses: Vec::new(),
            deployments: Vec::new(),
            checks: checks::RepoChecks::default(),
            security: security::RepoSecurity::default(),
        }
    }

    fn expect_commit(&self, sha: &str) {
        assert!(
            self.commits.contains_key(sha),
            "fake GitHub: {sha} is not a known commit of {}/{}",
            self.owner,
            self.name
        );
    }

    /// Follows tag objects down to a commit sha.
    fn peel(&self, sha: &str) -> Option<String> {
        let mut current = sha;
        for _ in 0..16 {
            if self.commits.contains_key(current) {
                return Some(current.to_owned());
            }
            current = &self.tag_objects.get(current)?.target_sha;
        }
        None
    }

    /// Resolves a commit-ish: full sha, `refs/heads/x`, `heads/x`, `refs/tags/x`, `tags/x`,
    /// branch name, tag name (peeled), or a unique sha prefix of at least 7 characters.
    fn resolve(&self, reference: &str) -> Option<String> {
        if let Some(name) = reference
            .strip_prefix("refs/heads/")
            .or_else(|| reference.strip_prefix("heads/"))
        {
            return self.branches.get(name).cloned();
        }
        if let Some(name) = reference
            .strip_prefix("refs/tags/")
            .or_else(|| reference.strip_prefix("tags/"))
        {
            return self.peel(self.tags.get(name)?);
        }
        if self.commits.contains_key(reference) {
            return Some(reference.to_owned());
        }
        if let Some(sha) = self.branches.get(reference) {
            return Some(sha.clone());
        }
        if let Some(sha) = self.tags.get(reference) {
            return self.peel(sha);
        }
        if reference.len() >= 7 && reference.chars().all(|c| c.is_ascii_hexdigit()) {
            let lower = reference.to_ascii_lowercase();
            let mut matches = self.commits.keys().filter(|sha| sha.starts_with(&lower));
            if let (Some(sha), None) = (matches.next(), matches.next()) {
                return Some(sha.clone());
            }
        }
        None
    }

    /// `sha` and all its ancestors.
    fn ancestors(&self, shas: &[&str]) -> HashSet<String> {
        let mut seen = HashSet::new();
        let mut queue: VecDeque<String> = shas.iter().map(|s| (*s).to_owned()).collect();
        while let Some(sha) = queue.pop_front() {
            if !seen.insert(sha.clone()) {
                continue;
            }
            if let Some(commit) = self.commits.get(&sha) {
                queue.extend(commit.parents.iter().cloned());
            }
        }
        seen
    }

    fn is_ancestor(&self, ancestor: &str, of: &str) -> bool {
        self.ancestors(&[of]).contains(ancestor)
    }

    /// The best common ancestor (newest when several are best), if any.
    fn merge_base(&self, a: &str, b: &str) -> Option<String> {
        let from_b = self.ancestors(&[b]);
        let common: Vec<&String> = self
            .ancestors(&[a])
            .into_iter()
            .filter(|c| from_b.contains(c))
            .filter_map(|c| self.commits.get(&c).map(|commit| &commit.sha))
            .collect();
        let parents: Vec<&str> = common
            .iter()
            .flat_map(|c| self.commits[*c].parents.iter().map(String::as_str))
            .collect();
        let covered = self.ancestors(&parents);
        common
            .into_iter()
            .filter(|c| !covered.contains(*c))
            .max_by_key(|c| self.commits[*c].seq)
            .cloned()
    }

    /// Latest state per context of the commit statuses for `sha`; `(context, state)` pairs that
    /// keep a deployment from being created (`state` is `missing` for an absent context).
    fn failing_contexts(&self, sha: &str, required: Option<&[String]>) -> Vec<(String, String)> {
        let mut latest: BTreeMap<&str, &str> = BTreeMap::new();
        for status in self.commit_statuses.iter().filter(|s| s.sha == sha) {
            latest.insert(&status.context, &status.state);
        }
        let wanted: Vec<String> = match required {
            Some(list) => list.to_vec(),
            None => latest.keys().map(|k| (*k).to_owned()).collect(),
        };
        wanted
            .into_iter()
            .filter_map(|context| match latest.get(context.as_str()) {
                Some(&"success") => None,
                Some(state) => Some((context, (*state).to_owned())),
                None => Some((context, "missing".to_owned())),
            })
            .collect()
    }
}

// =================================================================================================
// Handlers: git refs and tag objects
// =================================================================================================

fn get_git_ref(repo: &Repo, kind: &str, name: &str) -> Reply {
    let target = match kind {
        "tags" => repo.tags.get(name),
        _ => repo.branches.get(name),
    };
    let Some(sha) = target else {
        return Reply::not_found();
    };
    Reply::ok(&json!({
        "ref": format!("refs/{kind}/{name}"),
        "node_id": node_id("REF", &format!("{kind}/{name}")),
        "url": format!("{}/git/refs/{kind}/{name}", repo.api),
        "object": object_json(repo, sha),
    }))
}

fn get_git_tag(repo: &Repo, sha: &str) -> Reply {
    let Some(tag) = repo.tag_objects.get(sha) else {
        return Reply::not_found();
    };
    let tagger_date = iso(tag.at);
    let payload = format!(
        "object {}\ntype {}\ntag {}\ntagger Release Bot <release@example.com> {} +0000\n\n{}",
        tag.target_sha, tag.target_type, tag.tag, tag.at, tag.message
    );
    let verification = match &tag.verification {
        None => json!({
            "verified": false, "reason": "unsigned",
            "signature": null, "payload": null, "verified_at": null,
        }),
        Some((verified, reason)) => json!({
            "verified": verified,
            "reason": reason,
            "signature": "-----BEGIN PGP SIGNATURE-----\n\niQEzBAABCAAdFiEEfakefakefake\n-----END PGP SIGNATURE-----\n",
            "payload": payload,
            "verified_at": if *verified { json!(tagger_date) } else { Value::Null },
        }),
    };
    Reply::ok(&json!({
        "node_id": node_id("TAG", &tag.sha),
        "tag": tag.tag,
        "sha": tag.sha,
        "url": format!("{}/git/tags/{}", repo.api, tag.sha),
        "message": tag.message,
        "tagger": { "name": "Release Bot", "email": "release@example.com", "date": tagger_date },
        "object": object_json(repo, &tag.target_sha),
        "verification": verification,
    }))
}

fn object_json(repo: &Repo, sha: &str) -> Value {
    if repo.tag_objects.contains_key(sha) {
        json!({ "type": "tag", "sha": sha, "url": format!("{}/git/tags/{sha}", repo.api) })
    } else {
        json!({ "type": "commit", "sha": sha, "url": format!("{}/git/commits/{sha}", repo.api) })
    }
}

// =================================================================================================
// Handlers: commits and compare
// =================================================================================================

fn get_commit(repo: &Repo, reference: &str) -> Reply {
    match repo.resolve(reference) {
        Some(sha) => {
            let mut body = commit_json(repo, &repo.commits[&sha]);
            body["stats"] = json!({ "additions": 0, "deletions": 0, "total": 0 });
            body["files"] = json!([]);
            Reply::ok(&body)
        }
        None => Reply::validation(&format!("No commit found for SHA: {reference}"), json!([])),
    }
}

/// `status`, `ahead_by`, `behind_by` and `total_commits` cover the whole comparison; `commits`
/// is one page of the commits ahead (`per_page`, default 250, and `page`), as on GitHub.
fn compare(repo: &Repo, req: &Req, spec: &str) -> Reply {
    let Some((base_ref, head_ref)) = spec.split_once("...") else {
        return Reply::not_found();
    };
    let (Some(base), Some(head)) = (repo.resolve(base_ref), repo.resolve(head_ref)) else {
        return Reply::not_found();
    };
    let Some(merge_base) = repo.merge_base(&base, &head) else {
        return Reply::error(
            404,
            &format!("No common ancestor between {base_ref} and {head_ref}."),
        );
    };
    let from_base = repo.ancestors(&[&base]);
    let from_head = repo.ancestors(&[&head]);
    let mut ahead: Vec<&Commit> = from_head
        .difference(&from_base)
        .map(|sha| &repo.commits[sha])
        .collect();
    ahead.sort_by_key(|c| c.seq);
    let behind_by = from_base.difference(&from_head).count();
    let status = match (ahead.len(), behind_by) {
        (0, 0) => "identical",
        (_, 0) => "ahead",
        (0, _) => "behind",
        _ => "diverged",
    };
    let base_head = format!("{base_ref}...{head_ref}");
    let number = |name: &str, default: usize| {
        req.query(name)
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(default)
    };
    let per_page = number("per_page", 250);
    let page = number("page", 1);
    Reply::ok(&json!({
        "url": format!("{}/compare/{base_head}", repo.api),
        "html_url": format!("{}/compare/{base_head}", repo.html),
        "permalink_url": format!("{}/compare/{}:{base}...{}:{head}", repo.html, repo.owner, repo.owner),
        "diff_url": format!("{}/compare/{base_head}.diff", repo.html),
        "patch_url": format!("{}/compare/{base_head}.patch", repo.html),
        "base_commit": commit_json(repo, &repo.commits[&base]),
        "merge_base_commit": commit_json(repo, &repo.commits[&merge_base]),
        "status": status,
        "ahead_by": ahead.len(),
        "behind_by": behind_by,
        "total_commits": ahead.len(),
        "commits": ahead.iter().skip((page - 1) * per_page).take(per_page).map(|c| commit_json(repo, c)).collect::<Vec<_>>(),
        "files": [],
    }))
}

// =================================================================================================
// Handlers: deployments and deployment statuses
// =================================================================================================

fn with_deployment(repo: &Repo, id: &str, f: impl FnOnce(&Deployment) -> Reply) -> Reply {
    repo.deployments
        .iter()
        .find(|d| d.id.to_string() == id)
        .map_or_else(Reply::not_found, f)
}

fn list_deployments(repo: &Repo, req: &Req) -> Reply {
    let matches = |filter: &str, value: &str| req.query(filter).is_none_or(|want| want == value);
    let items = repo
        .deployments
        .iter()
        .rev()
        .filter(|d| matches("sha", &d.sha))
        .filter(|d| matches("ref", &d.ref_))
        .filter(|d| matches("task", &d.task))
        .filter(|d| matches("environment", &d.environment))
        .map(|d| deployment_json(repo, d))
        .collect();
    paginate(req, &repo.base, items)
}

impl State {
    fn create_deployment(&mut self, key: &RepoKey, req: &Req) -> Reply {
        let body = match req.json_body() {
            Ok(body) => body,
            Err(reply) => return reply,
        };
        let now = self.clock.tick();
        let repo = self.repos.get_mut(key).expect("routed repo");
        let str_field = |name: &str| body.get(name).and_then(Value::as_str);
        let bool_field =
            |name: &str, default: bool| body.get(name).and_then(Value::as_bool).unwrap_or(default);

        let Some(reference) = str_field("ref") else {
            return Reply::validation("Invalid request.\n\n\"ref\" wasn't supplied.", json!([]));
        };
        let Some(sha) = repo.resolve(reference) else {
            return Reply::validation(&format!("No ref found for: {reference}"), json!([]));
        };
        let payload = match body.get("payload") {
            None | Some(Value::Null) => json!({}),
            Some(p @ (Value::Object(_) | Value::String(_))) => p.clone(),
            Some(_) => {
                return Reply::validation(
                    "Invalid request.\n\nFor 'properties/payload', must be an object or a string.",
                    json!([]),
                );
            }
        };
        let environment = str_field("environment").unwrap_or("production").to_owned();

        // auto_merge (default true): a branch behind the default branch gets it merged in and
        // the answer is 202 without a deployment, as on GitHub.
        let branch = reference
            .strip_prefix("refs/heads/")
            .or_else(|| reference.strip_prefix("heads/"))
            .unwrap_or(reference);
        let default_head = repo.branches.get(&repo.default_branch).cloned();
        if let (true, Some(branch_head), Some(default_head)) = (
            bool_field("auto_merge", true),
            repo.branches.get(branch).cloned(),
            default_head,
        ) && branch != repo.default_branch
            && !repo.is_ancestor(&default_head, &branch_head)
        {
            let merge_sha = fake_sha(&format!("merge {branch_head} {default_head}"));
            let seq = repo.commits.len();
            repo.commits.insert(
                merge_sha.clone(),
                Commit {
                    sha: merge_sha.clone(),
                    parents: vec![branch_head, default_head],
                    message: format!("Merge {} into {branch}", repo.default_branch),
                    at: now,
                    seq,
                },
            );
            repo.branches.insert(branch.to_owned(), merge_sha);
            return Reply::json(
                202,
                &json!({ "message": format!("Auto-merged {} into {branch} on deployment.", repo.default_branch) }),
            );
        }

        let required: Option<Vec<String>> = body
            .get("required_contexts")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            });
        let failing = repo.failing_contexts(&sha, required.as_deref());
        if !failing.is_empty() {
            let contexts: Vec<Value> = failing
                .iter()
                .map(|(context, state)| json!({ "context": context, "state": state }))
                .collect();
            return Reply::json(
                409,
                &json!({
                    "message": format!("Conflict: Commit status checks failed for {reference}."),
                    "errors": [{ "contexts": contexts, "resource": "Deployment",
                                 "field": "required_contexts", "code": "invalid" }],
                    "documentation_url": DOCS_URL,
                }),
            );
        }

        let deployment = Deployment {
            id: self.ids.deployment(),
            sha,
            ref_: reference.to_owned(),
            task: str_field("task").unwrap_or("deploy").to_owned(),
            payload,
            original_environment: environment.clone(),
            production: bool_field("production_environment", environment == "production"),
            environment,
            description: str_field("description").map(str::to_owned),
            transient: bool_field("transient_environment", false),
            created_at: now,
            updated_at: now,
            statuses: Vec::new(),
            request_body: Some(serde_json::from_str(&req.body).unwrap_or_else(|_| json!(req.body))),
        };
        let reply = Reply::json(201, &deployment_json(repo, &deployment)).header(
            "location",
            format!("{}/deployments/{}", repo.api, deployment.id),
        );
        repo.deployments.push(deployment);
        reply
    }

    fn delete_deployment(&mut self, key: &RepoKey, id: &str) -> Reply {
        let repo = self.repos.get_mut(key).expect("routed repo");
        let Some(index) = repo.deployments.iter().position(|d| d.id.to_string() == id) else {
            return Reply::not_found();
        };
        let target = &repo.deployments[index];
        let active = target.statuses.last().is_none_or(|s| s.state != "inactive");
        let others = repo
            .deployments
            .iter()
            .any(|d| d.id != target.id && d.environment == target.environment);
        if active && others {
            return Reply::validation(
                "We cannot delete an active deployment unless it is the only deployment in a given environment.",
                json!([]),
            );
        }
        repo.deployments.remove(index);
        Reply {
            status: 204,
            headers: Vec::new(),
            body: String::new(),
        }
    }

    fn create_deployment_status(&mut self, key: &RepoKey, id: &str, req: &Req) -> Reply {
        let body = match req.json_body() {
            Ok(body) => body,
            Err(reply) => return reply,
        };
        let now = self.clock.tick();
        let repo = self.repos.get_mut(key).expect("routed repo");
        let Some(index) = repo.deployments.iter().position(|d| d.id.to_string() == id) else {
            return Reply::not_found();
        };
        let str_field = |name: &str| body.get(name).and_then(Value::as_str);
        let state = match str_field("state") {
            Some(state) if DEPLOYMENT_STATES.contains(&state) => state.to_owned(),
            _ => {
                return Reply::validation(
                    "Validation Failed",
                    json!([{ "resource": "DeploymentStatus", "field": "state", "code": "invalid" }]),
                );
            }
        };
        let description = str_field("description").unwrap_or("").to_owned();
        if description.chars().count() > 140 {
            return Reply::validation(
                "Validation Failed",
                json!([{ "resource": "DeploymentStatus", "field": "description", "code": "custom",
                         "message": "description is too long (maximum is 140 characters)" }]),
            );
        }
        // `log_url` replaces `target_url`; setting either sets both.
        let log_url = str_field("log_url")
            .or_else(|| str_field("target_url"))
            .unwrap_or("")
            .to_owned();
        let auto_inactive = body
            .get("auto_inactive")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        // GitHub documents `auto_inactive` only for what a `success` does; a client that asks
        // for it with another state relies on behaviour no one promised.
        if body.get("auto_inactive") == Some(&Value::Bool(true)) && state != "success" {
            self.violations.push(Violation {
                operation: "repos/create-deployment-status".to_owned(),
                request: format!("{} {}", req.method, req.raw_path),
                rule: format!(
                    "`auto_inactive: true` with state `{state}`: GitHub documents it only for `success`"
                ),
            });
        }

        let deployment = &mut repo.deployments[index];
        if let Some(environment) = str_field("environment") {
            deployment.environment = environment.to_owned();
        }
        deployment.updated_at = now;
        deployment.statuses.push(DeploymentStatus {
            id: self.ids.status(),
            state: state.clone(),
            description,
            environment: deployment.environment.clone(),
            log_url,
            environment_url: str_field("environment_url").unwrap_or("").to_owned(),
            created_at: now,
        });

        // auto_inactive (documented): "Adds a new inactive status to all prior non-transient,
        // non-production environment deployments with the same repository and environment name
        // as the created status's deployment. An inactive status is only added to deployments
        // that had a success state."
        if auto_inactive && state == "success" {
            let environment = repo.deployments[index].environment.clone();
            let this_id = repo.deployments[index].id;
            for prior in repo.deployments.iter_mut().filter(|d| {
                d.id < this_id
                    && d.environment == environment
                    && !d.transient
                    && !d.production
                    && d.statuses.last().is_some_and(|s| s.state == "success")
            }) {
                prior.updated_at = now;
                prior.statuses.push(DeploymentStatus {
                    id: self.ids.status(),
                    state: "inactive".to_owned(),
                    description: String::new(),
                    environment: environment.clone(),
                    log_url: String::new(),
                    environment_url: String::new(),
                    created_at: now,
                });
            }
        }

        let deployment = &repo.deployments[index];
        let status = deployment.statuses.last().expect("just pushed");
        Reply::json(201, &status_json(repo, deployment, status))
    }
}

// =================================================================================================
// JSON renderers
// =================================================================================================

fn user_json(base: &str, login: &str, id: u64, kind: &str) -> Value {
    let api = format!("{base}/users/{login}");
    json!({
        "login": login,
        "id": id,
        "node_id": node_id("U", &id.to_string()),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"),
        "gravatar_id": "",
        "url": api,
        "html_url": format!("https://github.com/{login}"),
        "followers_url": format!("{api}/followers"),
        "following_url": format!("{api}/following{{/other_user}}"),
        "gists_url": format!("{api}/gists{{/gist_id}}"),
        "starred_url": format!("{api}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{api}/subscriptions"),
        "organizations_url": format!("{api}/orgs"),
        "repos_url": format!("{api}/repos"),
        "events_url": format!("{api}/events{{/privacy}}"),
        "received_events_url": format!("{api}/received_events"),
        "type": kind,
        "user_view_type": "public",
        "site_admin": false,
    })
}

fn bot_json(base: &str) -> Value {
    user_json(base, "github-actions[bot]", 41_898_282, "Bot")
}

/// A `full-repository` as `GET /repos/{owner}/{repo}` returns it (every required field).
fn repo_json(repo: &Repo) -> Value {
    let api = &repo.api;
    let created = iso(CLOCK_START);
    let mut body = json!({
        "id": repo.id,
        "node_id": node_id("R", &repo.id.to_string()),
        "name": repo.name,
        "full_name": format!("{}/{}", repo.owner, repo.name),
        "private": false,
        "visibility": "public",
        "owner": user_json(&repo.base, &repo.owner, repo.id + 1_000_000, "Organization"),
        "html_url": repo.html,
        "description": null,
        "fork": false,
        "url": api,
        "archived": false,
        "disabled": false,
        "default_branch": repo.default_branch,
        "created_at": created,
        "updated_at": created,
        "pushed_at": created,
        "permissions": { "admin": false, "maintain": false, "push": true, "triage": true, "pull": true },
        "clone_url": format!("{}.git", repo.html),
        "git_url": format!("git://github.com/{}/{}.git", repo.owner, repo.name),
        "ssh_url": format!("git@github.com:{}/{}.git", repo.owner, repo.name),
        "svn_url": repo.html,
        "homepage": null,
        "language": null,
        "mirror_url": null,
        "license": null,
        "has_issues": true,
        "has_projects": false,
        "has_wiki": false,
        "has_pages": false,
        "has_discussions": false,
        "forks": 0,
        "forks_count": 0,
        "open_issues": 0,
        "open_issues_count": 0,
        "size": 0,
        "stargazers_count": 0,
        "watchers": 0,
        "watchers_count": 0,
        "network_count": 0,
        "subscribers_count": 0,
    });
    // The hypermedia URLs: `(field, path after the repository URL)`.
    let links = [
        ("archive_url", "/{archive_format}{/ref}"),
        ("assignees_url", "/assignees{/user}"),
        ("blobs_url", "/git/blobs{/sha}"),
        ("branches_url", "/branches{/branch}"),
        ("collaborators_url", "/collaborators{/collaborator}"),
        ("comments_url", "/comments{/number}"),
        ("commits_url", "/commits{/sha}"),
        ("compare_url", "/compare/{base}...{head}"),
        ("contents_url", "/contents/{+path}"),
        ("contributors_url", "/contributors"),
        ("deployments_url", "/deployments"),
        ("downloads_url", "/downloads"),
        ("events_url", "/events"),
        ("forks_url", "/forks"),
        ("git_commits_url", "/git/commits{/sha}"),
        ("git_refs_url", "/git/refs{/sha}"),
        ("git_tags_url", "/git/tags{/sha}"),
        ("hooks_url", "/hooks"),
        ("issue_comment_url", "/issues/comments{/number}"),
        ("issue_events_url", "/issues/events{/number}"),
        ("issues_url", "/issues{/number}"),
        ("keys_url", "/keys{/key_id}"),
        ("labels_url", "/labels{/name}"),
        ("languages_url", "/languages"),
        ("merges_url", "/merges"),
        ("milestones_url", "/milestones{/number}"),
        (
            "notifications_url",
            "/notifications{?since,all,participating}",
        ),
        ("pulls_url", "/pulls{/number}"),
        ("releases_url", "/releases{/id}"),
        ("stargazers_url", "/stargazers"),
        ("statuses_url", "/statuses/{sha}"),
        ("subscribers_url", "/subscribers"),
        ("subscription_url", "/subscription"),
        ("tags_url", "/tags"),
        ("teams_url", "/teams"),
        ("trees_url", "/git/trees{/sha}"),
    ];
    for (field, path) in links {
        body[field] = json!(format!("{api}{path}"));
    }
    body
}

fn commit_json(repo: &Repo, commit: &Commit) -> Value {
    let sha = &commit.sha;
    let tree = fake_sha(&format!("tree {sha}"));
    let person =
        json!({ "name": "Fake Author", "email": "author@example.com", "date": iso(commit.at) });
    json!({
        "url": format!("{}/commits/{sha}", repo.api),
        "sha": sha,
        "node_id": node_id("C", sha),
        "html_url": format!("{}/commit/{sha}", repo.html),
        "comments_url": format!("{}/commits/{sha}/comments", repo.api),
        "commit": {
            "url": format!("{}/git/commits/{sha}", repo.api),
            "author": person,
            "committer": person,
            "message": commit.message,
            "tree": { "sha": tree, "url": format!("{}/git/trees/{tree}", repo.api) },
            "comment_count": 0,
            "verification": {
                "verified": false, "reason": "unsigned",
                "signature": null, "payload": null, "verified_at": null,
            },
        },
        "author": bot_json(&repo.base),
        "committer": bot_json(&repo.base),
        "parents": commit.parents.iter().map(|p| json!({
            "sha": p,
            "url": format!("{}/commits/{p}", repo.api),
            "html_url": format!("{}/commit/{p}", repo.html),
        })).collect::<Vec<_>>(),
    })
}

fn deployment_json(repo: &Repo, d: &Deployment) -> Value {
    let url = format!("{}/deployments/{}", repo.api, d.id);
    json!({
        "url": url,
        "id": d.id,
        "node_id": node_id("DE", &d.id.to_string()),
        "sha": d.sha,
        "ref": d.ref_,
        "task": d.task,
        "payload": d.payload,
        "original_environment": d.original_environment,
        "environment": d.environment,
        "description": d.description,
        "creator": bot_json(&repo.base),
        "created_at": iso(d.created_at),
        "updated_at": iso(d.updated_at),
        "statuses_url": format!("{url}/statuses"),
        "repository_url": repo.api,
        "transient_environment": d.transient,
        "production_environment": d.production,
        "performed_via_github_app": null,
    })
}

fn status_json(repo: &Repo, d: &Deployment, s: &DeploymentStatus) -> Value {
    let deployment_url = format!("{}/deployments/{}", repo.api, d.id);
    json!({
        "url": format!("{deployment_url}/statuses/{}", s.id),
        "id": s.id,
        "node_id": node_id("DES", &s.id.to_string()),
        "state": s.state,
        "creator": bot_json(&repo.base),
        "description": s.description,
        "environment": s.environment,
        "target_url": s.log_url,
        "log_url": s.log_url,
        "environment_url": s.environment_url,
        "created_at": iso(s.created_at),
        "updated_at": iso(s.created_at),
        "deployment_url": deployment_url,
        "repository_url": repo.api,
        "performed_via_github_app": null,
    })
}

// =================================================================================================
// Helpers
// =================================================================================================

/// Slices `items` by `per_page` (default 30, clamped to 1..=100) and `page` (default 1) and adds
/// GitHub's `Link` header (`prev`, `next`, `last`, `first`, omitted when there is one page).
/// Link URLs are `{base}{raw request path}?{other query params}&per_page=N&page=K`.
fn paginate(req: &Req, base: &str, items: Vec<Value>) -> Reply {
    let per_page = req
        .query("per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .map_or(30, |n| n.min(100));
    let page = req
        .query("page")
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(1);
    let last = items.len().div_ceil(per_page).max(1);
    let body: Vec<Value> = items
        .into_iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .collect();
    let mut reply = Reply::ok(&Value::Array(body));

    let link = |target: usize| {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in req
            .query
            .iter()
            .filter(|(k, _)| k != "per_page" && k != "page")
        {
            query.append_pair(k, v);
        }
        query.append_pair("per_page", &per_page.to_string());
        query.append_pair("page", &target.to_string());
        format!("<{base}{}?{}>", req.raw_path, query.finish())
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(format!("{}; rel=\"prev\"", link((page - 1).min(last))));
    }
    if page < last {
        links.push(format!("{}; rel=\"next\"", link(page + 1)));
        links.push(format!("{}; rel=\"last\"", link(last)));
    }
    if page > 1 {
        links.push(format!("{}; rel=\"first\"", link(1)));
    }
    if !links.is_empty() {
        reply.set_header("link", links.join(", "));
    }
    reply
}

fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn assert_sha(sha: &str) {
    assert!(
        sha.len() == 40
            && sha
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
        "fake GitHub: {sha:?} is not a full lower-case 40-hex sha"
    );
}

fn hex_sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A deterministic 40-hex sha derived from `seed`.
fn fake_sha(seed: &str) -> String {
    hex_sha256(seed.as_bytes())[..40].to_owned()
}

fn node_id(prefix: &str, seed: &str) -> String {
    format!("{prefix}_kwDO{}", &hex_sha256(seed.as_bytes())[..12])
}

fn iso(epoch: i64) -> String {
    jiff::Timestamp::from_second(epoch)
        .expect("timestamp in range")
        .to_string()
}

fn now_epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
