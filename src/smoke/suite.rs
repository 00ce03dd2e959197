//! The smoke suite file (YAML, e.g. `.github/shipgate/smoke.yml`) and the plan built from it.
//! Everything is checked before anything is sent: unknown keys, bad asserts and templates (with
//! `file:line:column` from the parser), then names, kinds, variables, captures, dependencies and
//! snapshots (with the line of the test). A malformed suite is a usage error.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::assert::{Assert, Subject};
pub(crate) use super::scalar::{Scalar, ScalarOr};
use super::template::{self, Template, Var, Vars};
use crate::error::{Error, Result};
use crate::health;
use crate::metrics::json_path as jsonpath;
pub(crate) use crate::state::smoke::Kind;

/// Per-request timeout unless the suite or `--request-timeout` says otherwise.
pub(crate) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// First pause between readiness attempts; it doubles up to [`MAX_INTERVAL`].
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
pub(crate) const MAX_INTERVAL: Duration = Duration::from_secs(15);

/// A positive duration (`10s`, `250ms`, `2m`; a bare number is seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Scalar")]
pub(crate) struct Dur(pub(crate) Duration);

impl TryFrom<Scalar> for Dur {
    type Error = String;
    fn try_from(value: Scalar) -> Result<Self, String> {
        parse_positive_duration(&value.0).map(Dur)
    }
}

pub(crate) fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let d = crate::util::parse_duration(text)?;
    if d.is_zero() {
        return Err(format!(
            "`{text}` is zero; give a positive duration such as `10s`"
        ));
    }
    Ok(d)
}

/// An HTTP method.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Scalar")]
pub(crate) struct MethodName(pub(crate) reqwest::Method);

impl TryFrom<Scalar> for MethodName {
    type Error = String;
    fn try_from(value: Scalar) -> Result<Self, String> {
        let upper = value.0.trim().to_ascii_uppercase();
        match upper.as_str() {
            "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" => {
                reqwest::Method::from_bytes(upper.as_bytes())
                    .map(MethodName)
                    .map_err(|e| e.to_string())
            }
            _ => Err(format!(
                "method {} is not one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
                crate::actions::quote(&value.0)
            )),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct SuiteFile {
    base_url: Option<Template>,
    #[serde(default)]
    vars: BTreeMap<String, ScalarOr<VarFrom>>,
    #[serde(default)]
    defaults: Defaults,
    #[serde(default)]
    tests: Vec<TestDef>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Defaults {
    timeout: Option<Dur>,
    ready: Option<ScalarOr<ReadyDef>>,
    #[serde(default)]
    headers: BTreeMap<String, Template>,
    follow_redirects: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct VarFrom {
    /// Read the value from this environment variable.
    env: Option<String>,
    value: Option<Scalar>,
    /// Used when `env` is unset.
    default: Option<Scalar>,
    secret: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ReadyDef {
    timeout: Dur,
    interval: Option<Dur>,
    max_interval: Option<Dur>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct CaptureDef {
    json: Option<String>,
    header: Option<String>,
    /// A regular expression on the body; its first group (or the whole match) is captured.
    body: Option<String>,
    secret: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct DatabaseDef {
    url: Template,
    query: Option<Template>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct TestDef {
    name: String,
    url: Option<Template>,
    method: Option<MethodName>,
    #[serde(default)]
    headers: BTreeMap<String, Template>,
    json: Option<serde_json::Value>,
    body: Option<Template>,
    timeout: Option<Dur>,
    ready: Option<ScalarOr<ReadyDef>>,
    #[serde(default)]
    expect: Vec<Assert>,
    #[serde(default)]
    capture: BTreeMap<String, ScalarOr<CaptureDef>>,
    #[serde(default)]
    needs: Vec<String>,
    snapshot: Option<String>,
    health: Option<health::Rule>,
    database: Option<DatabaseDef>,
    tcp: Option<Template>,
    follow_redirects: Option<bool>,
}

/// Retry until ready: exponential backoff from `interval` up to `max_interval`, until `timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ready {
    pub(crate) timeout: Duration,
    pub(crate) interval: Duration,
    pub(crate) max_interval: Duration,
}

#[derive(Debug, Clone)]
pub(crate) enum Body {
    None,
    Json(serde_json::Value),
    Text(Template),
}

#[derive(Debug, Clone)]
pub(crate) enum Action {
    Http {
        method: reqwest::Method,
        url: Template,
        headers: Vec<(String, Template)>,
        body: Body,
        follow_redirects: bool,
    },
    Database {
        url: Template,
        query: Option<Template>,
    },
    Tcp(Template),
}

#[derive(Debug, Clone)]
pub(crate) enum Source {
    Json(jsonpath::Path),
    Header(String),
    Body(regex_lite::Regex),
}

#[derive(Debug, Clone)]
pub(crate) struct Capture {
    pub(crate) name: String,
    pub(crate) source: Source,
    pub(crate) secret: bool,
}

/// One test, ready to run.
#[derive(Debug, Clone)]
pub(crate) struct TestPlan {
    pub(crate) name: String,
    pub(crate) kind: Kind,
    pub(crate) action: Action,
    pub(crate) timeout: Duration,
    pub(crate) ready: Option<Ready>,
    pub(crate) asserts: Vec<Assert>,
    pub(crate) captures: Vec<Capture>,
    /// Indexes of the tests that must pass first.
    pub(crate) deps: Vec<usize>,
    pub(crate) snapshot: Option<String>,
    pub(crate) health: health::Rule,
}

/// The whole suite, checked.
#[derive(Debug)]
pub(crate) struct Suite {
    pub(crate) file: Option<PathBuf>,
    pub(crate) base_url: Option<Template>,
    pub(crate) vars: Vars,
    pub(crate) tests: Vec<TestPlan>,
}

/// What the command line adds to a suite.
#[derive(Debug, Default)]
pub(crate) struct Overrides {
    pub(crate) base_url: Option<String>,
    /// `--var NAME=VALUE`: wins over the suite's `vars`.
    pub(crate) vars: Vec<(String, String)>,
    /// `--secret NAME`: values already read (from the input or environment variable NAME).
    pub(crate) secrets: Vec<(String, crate::secret::Secret)>,
    /// Variables every suite can use (`deployment_id`, `environment`, `version`).
    pub(crate) builtins: Vec<(String, String)>,
    pub(crate) urls: Vec<String>,
    pub(crate) request_timeout: Option<Duration>,
    pub(crate) ready_timeout: Option<Duration>,
}

/// Names whose values are credentials: such variables and captures are secrets unless marked
/// `secret: false`.
pub(crate) fn looks_sensitive(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [
        "token",
        "secret",
        "password",
        "passwd",
        "session",
        "cookie",
        "auth",
        "key",
        "jwt",
        "credential",
        "bearer",
        "database_url",
        "database-url",
        "dsn",
    ]
    .iter()
    .any(|word| lower.contains(word))
}

/// Reads and checks a suite file (when given) plus the command line's additions.
pub(crate) fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Suite> {
    let (def, text) = match file {
        Some(path) => {
            let text = crate::inputs::read_text_file(path).map_err(|e| {
                Error::usage(format!(
                    "cannot read the smoke suite `{}`: {e}; pass an existing file with `--suite`",
                    path.display()
                ))
            })?;
            let def: SuiteFile = if text.trim().is_empty() {
                SuiteFile::default()
            } else {
                crate::inputs::parse_yaml(path, &text)?
            };
            (def, text)
        }
        None => (SuiteFile::default(), String::new()),
    };
    let at = Locator {
        file: file.map(Path::to_path_buf),
        text,
    };
    build(def, &at, overrides)
}

/// Turns problems into `file:line: …` messages.
struct Locator {
    file: Option<PathBuf>,
    text: String,
}

impl Locator {
    fn error(&self, line: Option<usize>, message: impl fmt::Display) -> Error {
        match (&self.file, line) {
            (Some(file), Some(line)) => Error::usage(format!(
                "{}:{line}: {message}",
                file.display()
            ))
            .at(file.display().to_string(), line, 1),
            (Some(file), None) => Error::usage(format!("{}: {message}", file.display())),
            (None, _) => Error::usage(message),
        }
    }

    /// The line (1-based) of the `index`-th item of the top-level `tests:` list.
    fn test_line(&self, index: usize) -> Option<usize> {
        let lines: Vec<&str> = self.text.lines().collect();
        let start = lines
            .iter()
            .position(|l| l.trim_end() == "tests:" || l.starts_with("tests:"))?;
        let mut indent = None;
        let mut seen = 0;
        for (i, line) in lines.iter().enumerate().skip(start + 1) {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let this = line.len() - trimmed.len();
            if this == 0 && !trimmed.starts_with('-') {
                break;
            }
            if trimmed.starts_with("- ") || trimmed == "-" {
                let want = *indent.get_or_insert(this);
                if this == want {
                    if seen == index {
                        return Some(i + 1);
                    }
                    seen += 1;
                }
            }
        }
        None
    }

    /// The first line at or after `from` that contains `needle`, else `from`.
    fn line_with(&self, from: Option<usize>, needle: &str) -> Option<usize> {
        let start = from.unwrap_or(1);
        self.text
            .lines()
            .enumerate()
            .skip(start.saturating_sub(1))
            .find(|(_, l)| l.contains(needle))
            .map(|(i, _)| i + 1)
            .or(from)
    }
}

fn ready_of(def: &ScalarOr<ReadyDef>) -> std::result::Result<Ready, String> {
    match def {
        ScalarOr::Scalar(text) => Ok(Ready {
            timeout: parse_positive_duration(text)?,
            interval: DEFAULT_INTERVAL,
            max_interval: MAX_INTERVAL,
        }),
        ScalarOr::Map(map) => {
            let interval = map.interval.map_or(DEFAULT_INTERVAL, |d| d.0);
            Ok(Ready {
                timeout: map.timeout.0,
                interval,
                max_interval: map.max_interval.map_or(MAX_INTERVAL.max(interval), |d| d.0),
            })
        }
    }
}

fn build(def: SuiteFile, at: &Locator, o: &Overrides) -> Result<Suite> {
    // Variables: built-ins < suite `vars` < `--var` < `--secret`.
    let mut vars = Vars::new();
    for (name, value) in &o.builtins {
        vars.insert(name.clone(), Var::Plain(value.clone()));
    }
    for (name, var) in &def.vars {
        let line = at.line_with(None, &format!("{name}:"));
        if !template::valid_name(name) {
            return Err(at.error(
                line,
                format!(
                    "variable name {} is not valid: use letters, digits, `_`, `-` or `.`",
                    crate::actions::quote(name)
                ),
            ));
        }
        let value = match var {
            ScalarOr::Scalar(text) => {
                if looks_sensitive(name) {
                    Var::Secret(crate::secret::Secret::new(text.clone()))
                } else {
                    Var::Plain(text.clone())
                }
            }
            ScalarOr::Map(from) => {
                let secret = from.secret.unwrap_or_else(|| {
                    looks_sensitive(name) || from.env.as_deref().is_some_and(looks_sensitive)
                });
                let text = match (&from.env, &from.value) {
                    (Some(_), Some(_)) => {
                        return Err(at.error(
                            line,
                            format!("variable `{name}` has both `env` and `value`; keep one"),
                        ));
                    }
                    (Some(env), None) => match crate::inputs::env(env) {
                        Some(value) => value,
                        None => match &from.default {
                            Some(d) => d.0.clone(),
                            None => {
                                return Err(at.error(line, format!(
                                    "variable `{name}` reads the environment variable `{env}`, which is not set; set it (in Actions: `env: {env}: ${{{{ secrets.… }}}}`) or give a `default`"
                                )));
                            }
                        },
                    },
                    (None, Some(value)) => value.0.clone(),
                    (None, None) => {
                        return Err(at.error(
                            line,
                            format!("variable `{name}` needs `env: NAME` or `value: …`"),
                        ));
                    }
                };
                if secret {
                    Var::Secret(crate::secret::Secret::new(text))
                } else {
                    Var::Plain(text)
                }
            }
        };
        vars.insert(name.clone(), value);
    }
    for (name, value) in &o.vars {
        if !template::valid_name(name) {
            return Err(Error::usage(format!(
                "`--var {}` does not name a valid variable: write `--var NAME=VALUE`",
                crate::actions::one_line(name)
            )));
        }
        let keep_secret = vars.get(name).is_some_and(Var::is_secret) || looks_sensitive(name);
        let var = if keep_secret {
            Var::Secret(crate::secret::Secret::new(value.clone()))
        } else {
            Var::Plain(value.clone())
        };
        vars.insert(name.clone(), var);
    }
    for (name, secret) in &o.secrets {
        vars.insert(name.clone(), Var::Secret(secret.clone()));
    }

    let base_url = match &o.base_url {
        Some(text) => {
            Some(Template::parse(text).map_err(|e| Error::usage(format!("base URL: {e}")))?)
        }
        None => def.base_url.clone(),
    };
    let default_timeout = o
        .request_timeout
        .or(def.defaults.timeout.map(|d| d.0))
        .unwrap_or(DEFAULT_REQUEST_TIMEOUT);
    let default_ready = match (&o.ready_timeout, &def.defaults.ready) {
        (Some(timeout), _) => Some(Ready {
            timeout: *timeout,
            interval: DEFAULT_INTERVAL,
            max_interval: MAX_INTERVAL,
        }),
        (None, Some(def_ready)) => Some(ready_of(def_ready).map_err(|e| {
            at.error(
                at.line_with(None, "ready:"),
                format!("defaults: ready: {e}"),
            )
        })?),
        (None, None) => None,
    };

    let mut tests = Vec::new();
    let mut lines = Vec::new();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for (index, t) in def.tests.into_iter().enumerate() {
        let line = at.test_line(index);
        let name = t.name.trim().to_string();
        let fail = |message: String| {
            at.error(
                line,
                format!("test `{}`: {message}", crate::actions::one_line(&name)),
            )
        };
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(at.error(line, "a test needs a `name` of 1-200 printable characters"));
        }
        if let Some(first) = names.insert(name.clone(), index) {
            return Err(fail(format!(
                "the name is already used by test {} of the suite; names must be unique",
                first + 1
            )));
        }
        let kinds = [t.url.is_some(), t.database.is_some(), t.tcp.is_some()];
        let kind = match kinds {
            [true, false, false] => Kind::Http,
            [false, true, false] => Kind::Database,
            [false, false, true] => Kind::Tcp,
            _ => {
                return Err(fail("give exactly one of `url` (an HTTP request), `database` (a PostgreSQL check) or `tcp` (`host:port`)".into()));
            }
        };
        if kind != Kind::Http {
            let http_only = [
                ("method", t.method.is_some()),
                ("headers", !t.headers.is_empty()),
                ("json", t.json.is_some()),
                ("body", t.body.is_some()),
                ("capture", !t.capture.is_empty()),
                ("health", t.health.is_some()),
                ("snapshot", t.snapshot.is_some()),
                ("follow-redirects", t.follow_redirects.is_some()),
            ];
            if let Some((key, _)) = http_only.iter().find(|(_, set)| *set) {
                return Err(fail(format!("`{key}` applies to HTTP tests (`url`) only")));
            }
        }
        for a in &t.expect {
            if !a.subject.applies_to(kind) {
                let kind_name = match kind {
                    Kind::Http => "HTTP tests",
                    Kind::Database => "database tests",
                    Kind::Tcp => "TCP tests",
                };
                return Err(at.error(
                    at.line_with(line, a.text()),
                    format!(
                        "test `{name}`: assert `{}` does not apply to {kind_name}",
                        a.text()
                    ),
                ));
            }
        }
        let uses_snapshot = t.expect.iter().any(Assert::uses_snapshot);
        match (&t.snapshot, uses_snapshot) {
            (Some(s), _) => {
                crate::inputs::check_name("snapshot name", s).map_err(|e| fail(e.to_string()))?
            }
            (None, true) => {
                return Err(fail("an assert uses `before` or `growth` but the test names no `snapshot:`; add `snapshot: NAME` and take it with `shipgate smoke --snapshot NAME` before the deploy".into()));
            }
            (None, false) => {}
        }
        if t.snapshot.is_some() && !uses_snapshot {
            return Err(fail(
                "`snapshot:` is set but no assert uses `before` or `growth`".into(),
            ));
        }
        let mut captures = Vec::new();
        for (cname, cdef) in &t.capture {
            let cline = at.line_with(line, &format!("{cname}:"));
            let cfail =
                |m: String| at.error(cline, format!("test `{name}`: capture `{cname}`: {m}"));
            if !template::valid_name(cname) {
                return Err(cfail("not a valid variable name".into()));
            }
            if vars.contains_key(cname) {
                return Err(cfail(
                    "a variable of that name already exists; pick another name".into(),
                ));
            }
            let (source, secret) = match cdef {
                ScalarOr::Scalar(path) => (
                    Source::Json(jsonpath::Path::parse(path).map_err(cfail)?),
                    None,
                ),
                ScalarOr::Map(c) => {
                    let source = match (&c.json, &c.header, &c.body) {
                        (Some(p), None, None) => {
                            Source::Json(jsonpath::Path::parse(p).map_err(cfail)?)
                        }
                        (None, Some(h), None) => Source::Header(h.to_ascii_lowercase()),
                        (None, None, Some(r)) => {
                            Source::Body(regex_lite::Regex::new(r).map_err(|e| {
                                cfail(format!("the regular expression does not compile: {e}"))
                            })?)
                        }
                        _ => {
                            return Err(cfail(
                                "give exactly one of `json`, `header` or `body`".into(),
                            ));
                        }
                    };
                    (source, c.secret)
                }
            };
            let sensitive_source = match &source {
                Source::Header(h) => {
                    looks_sensitive(h) || h == "set-cookie" || h == "authorization"
                }
                Source::Json(p) => looks_sensitive(&p.to_string()),
                Source::Body(_) => false,
            };
            captures.push(Capture {
                name: cname.clone(),
                source,
                secret: secret.unwrap_or(looks_sensitive(cname) || sensitive_source),
            });
        }
        let ready = match &t.ready {
            Some(r) => Some(ready_of(r).map_err(|e| {
                at.error(
                    at.line_with(line, "ready"),
                    format!("test `{name}`: ready: {e}"),
                )
            })?),
            None => default_ready,
        };
        let action = match kind {
            Kind::Http => {
                let url = t.url.clone().unwrap_or_else(|| Template::literal(""));
                if base_url.is_none() && url_is_relative(&url) {
                    return Err(fail("the URL is relative but there is no base URL; set `base-url` in the suite or pass `--base-url`".into()));
                }
                let body = match (t.json, t.body) {
                    (Some(_), Some(_)) => {
                        return Err(fail("give `json` or `body`, not both".into()));
                    }
                    (Some(json), None) => Body::Json(json),
                    (None, Some(text)) => Body::Text(text),
                    (None, None) => Body::None,
                };
                let mut headers: Vec<(String, Template)> = Vec::new();
                for (k, v) in def.defaults.headers.iter().chain(t.headers.iter()) {
                    if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
                        return Err(fail(format!(
                            "{} is not a valid header name",
                            crate::actions::quote(k)
                        )));
                    }
                    headers.retain(|(existing, _)| !existing.eq_ignore_ascii_case(k));
                    headers.push((k.clone(), v.clone()));
                }
                Action::Http {
                    method: t.method.map_or(reqwest::Method::GET, |m| m.0),
                    url,
                    headers,
                    body,
                    follow_redirects: t
                        .follow_redirects
                        .or(def.defaults.follow_redirects)
                        .unwrap_or(false),
                }
            }
            Kind::Database => {
                let d = t.database.unwrap_or(DatabaseDef {
                    url: Template::literal(""),
                    query: None,
                });
                if t.expect
                    .iter()
                    .any(|a| matches!(a.subject, Subject::Value | Subject::Rows))
                    && d.query.is_none()
                {
                    return Err(fail("`value` and `rows` asserts need a `query`".into()));
                }
                Action::Database {
                    url: d.url,
                    query: d.query,
                }
            }
            Kind::Tcp => {
                let target = t.tcp.unwrap_or_else(|| Template::literal(""));
                // Known now unless it is templated: a bad address is the suite's error.
                if target.names().is_empty() {
                    host_port(target.prefix().unwrap_or(""))
                        .map_err(|e| fail(format!("tcp: {e}")))?;
                }
                Action::Tcp(target)
            }
        };
        let mut asserts = t.expect;
        if kind == Kind::Http {
            add_default_asserts(&mut asserts, t.health.is_some());
        }
        let plan = TestPlan {
            name: name.clone(),
            kind,
            action,
            timeout: t.timeout.map_or(default_timeout, |d| d.0),
            ready,
            asserts,
            captures,
            deps: Vec::new(),
            snapshot: t.snapshot,
            health: t.health.unwrap_or_default(),
        };
        tests.push((plan, t.needs));
        lines.push(line);
    }

    // `--url`: a GET each, healthy by the health-format reader.
    for raw in &o.urls {
        let url = Template::parse(raw).map_err(|e| Error::usage(format!("`--url`: {e}")))?;
        if base_url.is_none() && url_is_relative(&url) {
            return Err(Error::usage(format!(
                "`--url {}` is relative but there is no base URL; pass `--base-url`",
                crate::secret::redact_url(raw)
            )));
        }
        let name = crate::secret::redact_url(raw);
        if names.insert(name.clone(), tests.len()).is_some() {
            return Err(Error::usage(format!("`--url {name}` is given twice")));
        }
        let mut asserts = Vec::new();
        add_default_asserts(&mut asserts, true);
        tests.push((
            TestPlan {
                name,
                kind: Kind::Http,
                action: Action::Http {
                    method: reqwest::Method::GET,
                    url,
                    headers: Vec::new(),
                    body: Body::None,
                    follow_redirects: false,
                },
                timeout: default_timeout,
                ready: default_ready,
                asserts,
                captures: Vec::new(),
                deps: Vec::new(),
                snapshot: None,
                health: health::Rule::default(),
            },
            Vec::new(),
        ));
        lines.push(None);
    }
    if tests.is_empty() {
        return Err(at.error(
            None,
            "there are no tests: add `tests:` to the suite or pass `--url`",
        ));
    }

    // Who captures what.
    let mut captured_by: BTreeMap<String, usize> = BTreeMap::new();
    for (i, (t, _)) in tests.iter().enumerate() {
        for c in &t.captures {
            if let Some(other) = captured_by.insert(c.name.clone(), i) {
                return Err(at.error(
                    at.line_with(lines[i], &format!("{}:", c.name)),
                    format!("test `{}`: capture `{}` is already captured by test `{}`; use another name", t.name, c.name, tests[other].0.name),
                ));
            }
        }
    }
    // Dependencies: `needs:` plus every test whose capture a template reads.
    let mut plans: Vec<TestPlan> = Vec::new();
    for (i, (mut t, needs)) in tests.clone().into_iter().enumerate() {
        let line = lines[i];
        let mut deps = BTreeSet::new();
        for need in &needs {
            match names.get(need.trim()) {
                Some(&j) if j != i => {
                    deps.insert(j);
                }
                Some(_) => {
                    return Err(at.error(
                        at.line_with(line, "needs"),
                        format!("test `{}` lists itself in `needs`", t.name),
                    ));
                }
                None => {
                    return Err(at.error(
                        at.line_with(line, need),
                        format!(
                            "test `{}` needs {}, which is not a test of this suite",
                            t.name,
                            crate::actions::quote(need)
                        ),
                    ));
                }
            }
        }
        let mut used = BTreeSet::new();
        template_names(&t, base_url.as_ref(), &mut used)
            .map_err(|e| at.error(line, format!("test `{}`: {e}", t.name)))?;
        for name in &used {
            if vars.contains_key(name.as_str()) {
                continue;
            }
            match captured_by.get(name.as_str()) {
                Some(&j) if j == i => {
                    return Err(at.error(
                        at.line_with(line, &format!("{{{{{name}")),
                        format!("test `{}` uses `{{{{{name}}}}}`, which it captures itself; captures are for later tests", t.name),
                    ));
                }
                Some(&j) => {
                    deps.insert(j);
                }
                None => {
                    return Err(at.error(
                        at.line_with(line, &format!("{{{{{name}")).or_else(|| at.line_with(None, &format!("{{{{{name}"))),
                        format!(
                            "test `{}` uses `{{{{{name}}}}}`, which is not defined: add it to `vars`, pass `--var {name}=…` or `--secret {name}`, or capture it in an earlier test",
                            t.name
                        ),
                    ));
                }
            }
        }
        t.deps = deps.into_iter().collect();
        plans.push(t);
    }
    if let Some(cycle) = find_cycle(&plans) {
        let names: Vec<String> = cycle
            .iter()
            .map(|&i| format!("`{}`", plans[i].name))
            .collect();
        return Err(at.error(
            lines[cycle[0]],
            format!(
                "tests depend on each other in a cycle: {}; break it",
                names.join(" → ")
            ),
        ));
    }
    Ok(Suite {
        file: at.file.clone(),
        base_url,
        vars,
        tests: plans,
    })
}

/// A test with no status assert must answer 2xx/3xx; a health-format test (or `--url`) must
/// read as healthy.
fn add_default_asserts(asserts: &mut Vec<Assert>, health: bool) {
    let has = |f: &dyn Fn(&Subject) -> bool| asserts.iter().any(|a| f(&a.subject));
    let default = if health && !has(&|s| matches!(s, Subject::Health)) {
        Some("health == healthy")
    } else if !health && !has(&|s| matches!(s, Subject::Status | Subject::Health)) {
        Some("status < 400")
    } else {
        None
    };
    if let Some(Ok(assert)) = default.map(Assert::parse) {
        asserts.insert(0, assert);
    }
}

fn url_is_relative(url: &Template) -> bool {
    // A URL that starts with a variable is decided when it is rendered.
    url.prefix().is_some_and(|text| !text.contains("://"))
}

fn template_names(
    t: &TestPlan,
    base: Option<&Template>,
    out: &mut BTreeSet<String>,
) -> std::result::Result<(), String> {
    let mut add = |tpl: &Template| out.extend(tpl.names().into_iter().map(str::to_string));
    match &t.action {
        Action::Http {
            url, headers, body, ..
        } => {
            add(url);
            if let Some(base) = base {
                add(base);
            }
            for (_, v) in headers {
                add(v);
            }
            match body {
                Body::Json(json) => template::json_names(json, out)?,
                Body::Text(text) => out.extend(text.names().into_iter().map(str::to_string)),
                Body::None => {}
            }
        }
        Action::Database { url, query } => {
            add(url);
            if let Some(q) = query {
                add(q);
            }
        }
        Action::Tcp(target) => add(target),
    }
    for a in &t.asserts {
        if let Some(tpl) = a.template() {
            out.extend(tpl.names().into_iter().map(str::to_string));
        }
    }
    Ok(())
}

/// A dependency cycle, as test indexes, if there is one.
fn find_cycle(tests: &[TestPlan]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit(
        i: usize,
        tests: &[TestPlan],
        marks: &mut [Mark],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        marks[i] = Mark::Active;
        stack.push(i);
        for &d in &tests[i].deps {
            match marks[d] {
                Mark::Active => {
                    let from = stack.iter().position(|&s| s == d).unwrap_or(0);
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(d);
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(d, tests, marks, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks[i] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; tests.len()];
    for i in 0..tests.len() {
        if marks[i] == Mark::New {
            let mut stack = Vec::new();
            if let Some(c) = visit(i, tests, &mut marks, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

/// A `tcp:` target is `host:port`, with a port that is a number.
pub(crate) fn host_port(address: &str) -> std::result::Result<(), String> {
    match address.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(format!(
            "{} is not `host:port`; write e.g. `db.internal:5432`",
            crate::text::quote(address)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Suite> {
        let def: SuiteFile = crate::inputs::parse_yaml(Path::new("smoke.yml"), text)?;
        build(
            def,
            &Locator {
                file: Some(PathBuf::from("smoke.yml")),
                text: text.to_string(),
            },
            &Overrides::default(),
        )
    }

    fn err(text: &str) -> String {
        parse(text).expect_err("malformed").to_string()
    }

    #[test]
    fn a_login_chain_orders_its_tests() {
        let suite = parse(
            "base-url: http://127.0.0.1:1\nvars:\n  user: ann\ntests:\n  - name: login\n    url: /login\n    method: post\n    json: {user: '{{user}}'}\n    capture:\n      token: $.token\n  - name: call\n    url: /me\n    headers:\n      Authorization: Bearer {{token}}\n    expect:\n      - status == 200\n",
        )
        .expect("valid");
        assert_eq!(suite.tests.len(), 2);
        assert_eq!(suite.tests[1].deps, vec![0]);
        assert!(
            suite.tests[0].captures[0].secret,
            "tokens are secret by name"
        );
        assert_eq!(suite.tests[0].asserts[0].text(), "status < 400");
    }

    #[test]
    fn malformed_suites_name_the_line_and_problem() {
        let e = err("tests:\n  - name: a\n    url: http://x/\n    expect:\n      - status = 200\n");
        assert!(e.starts_with("smoke.yml:5:"), "{e}");
        assert!(e.contains("expected an operator"), "{e}");
        let e = err("tests:\n  - name: a\n    url: http://x/\n    retries: 3\n");
        assert!(e.starts_with("smoke.yml:4:"), "{e}");
        assert!(e.contains("retries"), "{e}");
        let e = err(
            "tests:\n  - name: a\n    url: http://x/\n  - name: b\n    url: http://x/{{nope}}\n",
        );
        assert!(e.starts_with("smoke.yml:5:"), "{e}");
        assert!(e.contains("`{{nope}}`, which is not defined"), "{e}");
        let e = err("tests:\n  - name: a\n    url: http://x/\n  - name: a\n    url: http://y/\n");
        assert!(
            e.starts_with("smoke.yml:4:") && e.contains("already used"),
            "{e}"
        );
        let e = err("tests:\n  - name: a\n    url: http://x/\n    tcp: x:1\n");
        assert!(
            e.starts_with("smoke.yml:2:") && e.contains("exactly one of"),
            "{e}"
        );
        let e = err("tests:\n  - name: a\n    url: /x\n");
        assert!(e.contains("no base URL"), "{e}");
        let e = err("tests:\n  - name: a\n    url: http://x/\n    timeout: 0s\n");
        assert!(e.starts_with("smoke.yml:4:") && e.contains("zero"), "{e}");
        let e = err(
            "tests:\n  - name: a\n    url: http://x/\n    expect:\n      - json $.n < before\n",
        );
        assert!(e.contains("snapshot"), "{e}");
        let e = err("tests:\n  - name: a\n    tcp: nohostport\n");
        assert!(e.contains("`nohostport` is not `host:port`"), "{e}");
        let e = err("tests:\n  - name: a\n    tcp: x:1\n    expect:\n      - status == 200\n");
        assert!(
            e.starts_with("smoke.yml:5:") && e.contains("does not apply to TCP tests"),
            "{e}"
        );
        let e = err(
            "tests:\n  - name: a\n    url: http://x/\n    needs: [b]\n  - name: b\n    url: http://x/\n    needs: [a]\n",
        );
        assert!(e.contains("cycle"), "{e}");
        let e = err("tests:\n  - name: a\n    url: http://x/{{\n");
        assert!(
            e.starts_with("smoke.yml:3:") && e.contains("closing"),
            "{e}"
        );
        let e = err("tests: []\n");
        assert!(e.contains("no tests"), "{e}");
    }
}
