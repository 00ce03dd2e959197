//! Metric gates: Prometheus queries with a condition, and firing alerts, measured on their own
//! schedule during each stage beside the probes. Each measurement passes, fails, has no data
//! (an empty result or NaN: its own policy, never a silent pass) or hits a backend that is down
//! after retries (a failure whose cause is the dependency). The verdicts go where the probe
//! gates' go: a breach stops the stage and rolls back.

use std::collections::BTreeMap;
use std::time::Duration;

pub(crate) use super::config::NoDataPolicy;
use super::config::{AlertsConfig, AuthConfig, BackendConfig, MetricConfig, Provider};
use super::gates::{Status, Verdict};
use crate::error::{Error, Result};
use crate::metrics::alerts::{self, Api, Selector};
use crate::metrics::condition::{Condition, number_text};
use crate::metrics::json_path::Path;
use crate::metrics::prometheus::{Auth, Client, Endpoint, Reading};
use crate::metrics::template::{self, Vars};
use crate::metrics::web;
use crate::text::one_line;
use crate::util::HumanDuration;

const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a gate checks.
#[derive(Debug, Clone)]
pub(crate) enum Check {
    /// A Prometheus query, or with `path` a web metric: `query` is then the URL (rendered with
    /// percent-encoded values) and `path` the location of the number in its JSON answer.
    Query {
        query: String,
        baseline_query: Option<String>,
        condition: Condition,
        path: Option<Path>,
    },
    Alerts {
        selector: Selector,
        api: Api,
    },
}

/// One resolved metric gate.
#[derive(Debug, Clone)]
pub(crate) struct MetricSpec {
    /// The gate's name in verdicts: `metric:<name>`, or `alerts`.
    pub(crate) gate: String,
    pub(crate) check: Check,
    pub(crate) client: Client,
    pub(crate) interval: Duration,
    pub(crate) initial_delay: Duration,
    /// Failed measurements tolerated in a stage (`None`: any number).
    pub(crate) failure_limit: Option<u32>,
    /// Failed measurements in a row that fail the stage (`None`: off).
    pub(crate) consecutive: Option<u32>,
    pub(crate) no_data: NoDataPolicy,
    /// Only in these stages (`None`: every stage).
    pub(crate) stages: Option<Vec<String>>,
}

impl MetricSpec {
    pub(crate) fn applies(&self, stage: &str) -> bool {
        self.stages
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == stage))
    }

    /// The plan's line for this gate.
    pub(crate) fn describe(&self) -> String {
        let stages = self
            .stages
            .as_ref()
            .map(|s| format!(" in {}", s.join(", ")))
            .unwrap_or_default();
        let what = match &self.check {
            Check::Query {
                query,
                baseline_query,
                condition,
                path,
            } => format!(
                "`{}`{} {condition}{}",
                one_line(query),
                path.as_ref()
                    .map(|p| format!(" at `{p}`"))
                    .unwrap_or_default(),
                baseline_query
                    .as_ref()
                    .map(|b| format!(" (baseline `{}`)", one_line(b)))
                    .unwrap_or_default()
            ),
            Check::Alerts { selector, api } => {
                format!("no firing {} alert matching `{selector}`", api.name())
            }
        };
        format!(
            "{}: {what} from {}, every {} after {}{stages}; no data: {}",
            self.gate,
            self.client.label(),
            crate::ui::format_duration(self.interval),
            crate::ui::format_duration(self.initial_delay),
            self.no_data.name()
        )
    }
}

/// The plan's metric gates from `rollout.prometheus`, `rollout.metrics` and `rollout.alerts`.
pub(crate) fn resolve(
    backend: Option<&BackendConfig>,
    metrics: &[MetricConfig],
    alerts: Option<&AlertsConfig>,
) -> Result<Vec<MetricSpec>> {
    let default = BackendConfig::default();
    let backend = backend.unwrap_or(&default);
    let mut specs = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for metric in metrics {
        crate::inputs::check_name("metric name", &metric.name)?;
        if !seen.insert(metric.name.clone()) {
            return Err(Error::usage(format!(
                "metric `{}` is configured twice in `rollout.metrics`; give each a unique name",
                metric.name
            )));
        }
        let what = format!("metric `{}`", metric.name);
        let web = metric.provider == Some(Provider::Web);
        let (query, baseline_query, path) = if web {
            web_keys(&what, metric)?
        } else {
            if let Some(key) = [
                ("url", metric.url.is_some()),
                ("baseline-url", metric.baseline_url.is_some()),
                ("path", metric.path.is_some()),
            ]
            .iter()
            .find_map(|(key, set)| set.then_some(key))
            {
                return Err(Error::usage(format!(
                    "{what} has `{key}`, which is for `provider: web`; a Prometheus metric has a `query`"
                )));
            }
            (metric.query.clone(), metric.baseline_query.clone(), None)
        };
        let condition: Condition = metric
            .condition
            .parse()
            .map_err(|e| Error::usage(format!("{what}: {e}")))?;
        for text in std::iter::once(&query).chain(baseline_query.as_ref()) {
            template::check(text).map_err(|e| Error::usage(format!("{what}: {e}")))?;
        }
        if query.trim().is_empty() {
            return Err(Error::usage(format!("{what} has an empty `query`")));
        }
        match (condition.needs_baseline(), &baseline_query) {
            (true, None) => {
                return Err(Error::usage(format!(
                    "{what}: the condition `{condition}` compares with the baseline, so it needs a `baseline-query` (the same query for the stable version, e.g. with `{{{{previous_version}}}}`)"
                )));
            }
            (false, Some(_)) => {
                return Err(Error::usage(format!(
                    "{what} has a `baseline-query` but its condition `{condition}` does not use it; write it like `<= 2 * baseline`"
                )));
            }
            _ => {}
        }
        let client = if web {
            // A web metric's credentials are its own: never `rollout.prometheus`'s.
            let origin = web::origin(&query).map_err(|e| Error::usage(format!("{what}: {e}")))?;
            client(
                &what,
                "web metric",
                Some(&origin),
                metric.auth.as_ref(),
                metric.headers.as_ref(),
                metric.timeout,
                &BackendConfig::default(),
            )?
        } else {
            client(
                &what,
                "Prometheus",
                metric.address.as_ref(),
                metric.auth.as_ref(),
                metric.headers.as_ref(),
                metric.timeout,
                backend,
            )?
        };
        let consecutive = metric.consecutive_failures.filter(|n| *n > 0);
        specs.push(MetricSpec {
            gate: format!("metric:{}", metric.name),
            check: Check::Query {
                query,
                baseline_query,
                condition,
                path,
            },
            client,
            interval: interval(&what, metric.interval)?,
            initial_delay: metric.initial_delay.map_or(Duration::ZERO, |d| d.0),
            // `consecutive-failures` alone tolerates scattered failures.
            failure_limit: match (metric.failure_limit, consecutive) {
                (Some(limit), _) => Some(limit),
                (None, Some(_)) => None,
                (None, None) => Some(0),
            },
            consecutive,
            no_data: metric.no_data.unwrap_or_default(),
            stages: metric.stages.clone(),
        });
    }
    if let Some(config) = alerts {
        let what = "`rollout.alerts`";
        let selector: Selector = config
            .selector
            .parse()
            .map_err(|e| Error::usage(format!("{what}: {e}")))?;
        let api = config.api.unwrap_or_default();
        let client = client(
            what,
            api.name(),
            config.address.as_ref(),
            config.auth.as_ref(),
            config.headers.as_ref(),
            config.timeout,
            backend,
        )?;
        specs.push(MetricSpec {
            gate: "alerts".to_string(),
            check: Check::Alerts { selector, api },
            client,
            interval: interval(what, config.interval)?,
            initial_delay: config.initial_delay.map_or(Duration::ZERO, |d| d.0),
            failure_limit: Some(0),
            consecutive: None,
            no_data: NoDataPolicy::Fail,
            stages: config.stages.clone(),
        });
    }
    Ok(specs)
}

/// A web metric's `url`, `baseline-url` and `path`; `query`, `baseline-query` and `address`
/// belong to Prometheus metrics.
fn web_keys(what: &str, metric: &MetricConfig) -> Result<(String, Option<String>, Option<Path>)> {
    if let Some(key) = [
        ("query", !metric.query.is_empty()),
        ("baseline-query", metric.baseline_query.is_some()),
        ("address", metric.address.is_some()),
    ]
    .iter()
    .find_map(|(key, set)| set.then_some(key))
    {
        return Err(Error::usage(format!(
            "{what} is `provider: web` and has `{key}`: a web metric has a `url` (and `baseline-url`) and a `path`"
        )));
    }
    let url = metric.url.clone().ok_or_else(|| {
        Error::usage(format!(
            "{what} is `provider: web` but has no `url` (the JSON endpoint, e.g. `https://api.example.com/v1/query?q=...`)"
        ))
    })?;
    if let Some(baseline) = &metric.baseline_url {
        let same = |u: &str| web::origin(u).map_err(|e| Error::usage(format!("{what}: {e}")));
        if same(baseline)? != same(&url)? {
            return Err(Error::usage(format!(
                "{what}: `baseline-url` must be on the same host as `url` (the credentials go to one host)"
            )));
        }
    }
    let path = web::parse_path(metric.path.as_deref().unwrap_or(""))
        .map_err(|e| Error::usage(format!("{what}: `path`: {e}")))?;
    Ok((url, metric.baseline_url.clone(), Some(path)))
}

fn interval(what: &str, value: Option<HumanDuration>) -> Result<Duration> {
    let interval = value.map_or(DEFAULT_INTERVAL, |d| d.0);
    if interval < Duration::from_millis(100) {
        return Err(Error::usage(format!(
            "{what}: `interval` must be at least 100ms"
        )));
    }
    Ok(interval)
}

fn read_secret(what: &str, key: &str, name: &str) -> Result<crate::secret::Secret> {
    crate::inputs::secret(name, &[name]).ok_or_else(|| {
        Error::usage(format!(
            "{what}: `auth.{key}` names `{name}`, but neither the input `{name}` nor the environment variable `{name}` is set; set it from a secret"
        ))
    })
}

fn auth(what: &str, config: &AuthConfig) -> Result<Auth> {
    if let Some(headers) = &config.headers {
        if config.bearer.is_some() || config.username.is_some() || config.password.is_some() {
            return Err(Error::usage(format!(
                "{what}: `auth` takes one of `bearer`, `username`/`password` or `headers`"
            )));
        }
        let mut secret_headers = Vec::new();
        for (name, secret) in headers {
            let header =
                reqwest::header::HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
                    Error::usage(format!(
                        "{what}: `auth.headers` names `{}`, which is not an HTTP header name",
                        one_line(name)
                    ))
                })?;
            secret_headers.push((
                header,
                read_secret(what, &format!("headers.{name}"), secret)?,
            ));
        }
        return Ok(Auth::Headers(secret_headers));
    }
    match (&config.bearer, &config.username, &config.password) {
        (Some(bearer), None, None) => Ok(Auth::Bearer(read_secret(what, "bearer", bearer)?)),
        (None, Some(username), Some(password)) => Ok(Auth::Basic {
            username: username.clone(),
            password: read_secret(what, "password", password)?,
        }),
        _ => Err(Error::usage(format!(
            "{what}: `auth` takes either `bearer: NAME`, `username` and `password: NAME`, or `headers: {{Header-Name: NAME}}` (NAME: the input or environment variable holding the secret)"
        ))),
    }
}

/// The backend of one gate: its own keys over `rollout.prometheus`'s. Also `gate`'s
/// no-firing-alerts preflight, from `rollout.alerts` over `rollout.prometheus`.
pub(crate) fn client(
    what: &str,
    kind: &str,
    address: Option<&String>,
    auth_config: Option<&AuthConfig>,
    headers: Option<&BTreeMap<String, String>>,
    timeout: Option<HumanDuration>,
    backend: &BackendConfig,
) -> Result<Client> {
    let address = address.or(backend.address.as_ref()).ok_or_else(|| {
        Error::usage(format!(
            "{what} has no backend: set `address` on it or in `rollout.prometheus` (e.g. `http://prometheus:9090`)"
        ))
    })?;
    let auth = match auth_config.or(backend.auth.as_ref()) {
        Some(config) => Some(auth(what, config)?),
        None => None,
    };
    let mut merged = backend.headers.clone().unwrap_or_default();
    merged.extend(headers.cloned().unwrap_or_default());
    let endpoint = Endpoint {
        address: address.clone(),
        auth,
        headers: merged.into_iter().collect(),
        timeout: timeout.or(backend.timeout).map_or(DEFAULT_TIMEOUT, |d| d.0),
    };
    if endpoint.timeout.is_zero() {
        return Err(Error::usage(format!(
            "{what}: `timeout` must be more than 0"
        )));
    }
    Client::new(kind, &endpoint).map_err(|e| Error::usage(format!("{what}: {e}")))
}

/// What one measurement found.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// The condition held (`value`, and the baseline's when compared).
    Pass {
        value: f64,
        baseline: Option<f64>,
    },
    /// The condition did not hold; `detail` says how.
    Fail {
        value: Option<f64>,
        baseline: Option<f64>,
        detail: String,
    },
    NoData(String),
    /// The backend failed after retries (or refused the query).
    Error(String),
}

/// One measurement of gate `index`.
#[derive(Debug, Clone)]
pub(crate) struct Measurement {
    pub(crate) index: usize,
    /// The query as sent (templated), or the alert selector.
    pub(crate) query: String,
    pub(crate) baseline_query: Option<String>,
    pub(crate) outcome: Outcome,
}

/// Renders `text` for `vars`, as a usage error naming the gate.
fn render(spec: &MetricSpec, text: &str, vars: &Vars) -> std::result::Result<String, String> {
    match &spec.check {
        Check::Query { path: Some(_), .. } => template::render_url(text, vars),
        _ => template::render(text, vars),
    }
    .map_err(|e| format!("{}: {e}", spec.gate))
}

/// Measures gate `index` once.
pub(crate) async fn measure(index: usize, spec: &MetricSpec, vars: &Vars) -> Measurement {
    match &spec.check {
        Check::Query {
            query,
            baseline_query,
            condition,
            ..
        } => {
            let rendered = render(spec, query, vars);
            let rendered_baseline = baseline_query.as_ref().map(|b| render(spec, b, vars));
            let mut measurement = Measurement {
                index,
                query: rendered.clone().unwrap_or_else(|_| query.clone()),
                baseline_query: rendered_baseline
                    .as_ref()
                    .map(|b| b.clone().unwrap_or_else(|_| String::new())),
                outcome: Outcome::NoData(String::new()),
            };
            let rendered = match rendered {
                Ok(q) => q,
                Err(e) => {
                    measurement.outcome = Outcome::Error(e);
                    return measurement;
                }
            };
            measurement.outcome =
                query_outcome(spec, &rendered, rendered_baseline, condition).await;
            measurement
        }
        Check::Alerts { selector, api } => {
            let outcome = match alerts::firing(&spec.client, *api, selector).await {
                Ok(firing) if firing.is_empty() => Outcome::Pass {
                    value: 0.0,
                    baseline: None,
                },
                Ok(firing) => Outcome::Fail {
                    value: Some(firing.len() as f64),
                    baseline: None,
                    detail: format!(
                        "{} firing alert(s) match `{selector}`: {}",
                        firing.len(),
                        firing
                            .iter()
                            .take(5)
                            .map(|a| match &a.since {
                                Some(since) => format!("{} since {since}", a.describe()),
                                None => a.describe(),
                            })
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                },
                Err(e) => Outcome::Error(e.to_string()),
            };
            Measurement {
                index,
                query: selector.to_string(),
                baseline_query: None,
                outcome,
            }
        }
    }
}

/// One value: a Prometheus query's, or a web metric's at its `path`.
async fn read_one(
    spec: &MetricSpec,
    query: &str,
) -> std::result::Result<Reading, crate::metrics::Error> {
    match &spec.check {
        Check::Query {
            path: Some(path), ..
        } => web::read(&spec.client, query, path).await,
        _ => spec.client.read(query).await,
    }
}

fn several(series: &[crate::metrics::prometheus::Series], what: &str) -> String {
    format!(
        "the {what} returned {} series, and a condition judges one value: aggregate it (`sum(...)`, `max(...)`) or select one series; first: {}",
        series.len(),
        series
            .iter()
            .take(3)
            .map(|s| format!(
                "{{{}}} {}",
                s.labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v:?}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                number_text(s.value)
            ))
            .collect::<Vec<_>>()
            .join("; ")
    )
}

async fn query_outcome(
    spec: &MetricSpec,
    query: &str,
    baseline_query: Option<std::result::Result<String, String>>,
    condition: &Condition,
) -> Outcome {
    let value = match read_one(spec, query).await {
        Ok(Reading::Value(v)) => v,
        Ok(Reading::NoData(why)) => return Outcome::NoData(why),
        Ok(Reading::Several(series)) => return Outcome::Error(several(&series, "query")),
        Err(e) => return Outcome::Error(e.to_string()),
    };
    let baseline = match baseline_query {
        None => None,
        Some(Err(e)) => return Outcome::Error(e),
        Some(Ok(q)) => match read_one(spec, &q).await {
            Ok(Reading::Value(v)) => Some(v),
            Ok(Reading::NoData(why)) => return Outcome::NoData(format!("baseline: {why}")),
            Ok(Reading::Several(series)) => {
                return Outcome::Error(several(&series, "baseline query"));
            }
            Err(e) => return Outcome::Error(e.to_string()),
        },
    };
    match condition.holds(value, baseline) {
        Some(true) => Outcome::Pass { value, baseline },
        _ => Outcome::Fail {
            value: Some(value),
            baseline,
            detail: format!(
                "{} is not {}",
                number_text(value),
                condition.describe(baseline)
            ),
        },
    }
}

/// Checks every gate against its backend once before traffic moves: a query the backend
/// refuses is a usage error and a backend that is down a dependency error, with nothing changed.
/// Values are not judged (the new version has no traffic yet).
pub(crate) async fn preflight(specs: &[MetricSpec], vars: &Vars) -> Result<()> {
    for spec in specs {
        let queries: Vec<String> = match &spec.check {
            Check::Query {
                query,
                baseline_query,
                ..
            } => std::iter::once(query)
                .chain(baseline_query)
                .map(|q| render(spec, q, vars).map_err(Error::usage))
                .collect::<Result<_>>()?,
            Check::Alerts { selector, api } => {
                alerts::firing(&spec.client, *api, selector)
                    .await
                    .map_err(|e| {
                        Error::from(e).context(format!(
                            "{}: cannot list alerts before the rollout",
                            spec.gate
                        ))
                    })?;
                continue;
            }
        };
        for query in queries {
            let checked = match &spec.check {
                Check::Query {
                    path: Some(path), ..
                } => web::read(&spec.client, &query, path).await.map(drop),
                _ => spec.client.query(&query, None).await.map(drop),
            };
            checked.map_err(|e| {
                Error::from(e).context(format!(
                    "{}: the query `{}` failed before the rollout started (nothing was changed)",
                    spec.gate,
                    one_line(&query)
                ))
            })?;
        }
    }
    Ok(())
}

/// What `--dry-run` measured of one gate: its value and verdict, once, against the live
/// backend, with the template values of the first stage it applies to.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Trial {
    pub(crate) gate: String,
    /// The stage whose template values the query was rendered with.
    pub(crate) stage: String,
    /// The query as sent (templated, secrets redacted), or the alert selector.
    pub(crate) query: String,
    pub(crate) baseline_query: Option<String>,
    pub(crate) value: Option<f64>,
    pub(crate) baseline: Option<f64>,
    /// `pass`, `fail`, `no_data` or `error`.
    pub(crate) verdict: &'static str,
    /// The verdict in words: the value against the condition, why there is no data, the error.
    pub(crate) detail: String,
}

/// Measures gate `index` once with `vars` (of `stage`), for `--dry-run`.
pub(crate) async fn trial(index: usize, spec: &MetricSpec, stage: &str, vars: &Vars) -> Trial {
    let m = measure(index, spec, vars).await;
    let threshold = match &spec.check {
        Check::Query { condition, .. } => condition.to_string(),
        Check::Alerts { .. } => "none firing".to_string(),
    };
    let (verdict, value, baseline, detail) = match &m.outcome {
        Outcome::Pass { value, baseline } => (
            "pass",
            Some(*value),
            *baseline,
            match &spec.check {
                Check::Query { condition, .. } => {
                    format!(
                        "{} is {}",
                        number_text(*value),
                        condition.describe(*baseline)
                    )
                }
                Check::Alerts { .. } => "no matching alert is firing".to_string(),
            },
        ),
        Outcome::Fail {
            value,
            baseline,
            detail,
        } => ("fail", *value, *baseline, detail.clone()),
        Outcome::NoData(why) => (
            "no_data",
            None,
            None,
            format!(
                "no data ({why}; `no-data: {}`; needs {threshold})",
                spec.no_data.name()
            ),
        ),
        Outcome::Error(e) => ("error", None, None, e.clone()),
    };
    Trial {
        gate: spec.gate.clone(),
        stage: stage.to_string(),
        query: crate::secret::redact(&m.query),
        baseline_query: m.baseline_query.as_deref().map(crate::secret::redact),
        value,
        baseline,
        verdict,
        detail: one_line(&detail),
    }
}

/// A gate's measurements over one stage.
#[derive(Debug, Clone, Default)]
pub(crate) struct MetricState {
    pub(crate) taken: u32,
    pub(crate) failures: u32,
    pub(crate) in_a_row: u32,
    pub(crate) no_data: u32,
    pub(crate) last: Option<Measurement>,
    /// The last measurement that had data.
    pub(crate) last_with_data: Option<Measurement>,
}

impl MetricState {
    /// Counts `measurement` under `spec`'s policies.
    pub(crate) fn push(&mut self, spec: &MetricSpec, measurement: Measurement) {
        self.taken += 1;
        let failed = match &measurement.outcome {
            Outcome::Pass { .. } => false,
            Outcome::Fail { .. } | Outcome::Error(_) => true,
            Outcome::NoData(_) => {
                self.no_data += 1;
                spec.no_data == NoDataPolicy::Fail
            }
        };
        let counts = !matches!(measurement.outcome, Outcome::NoData(_))
            || spec.no_data == NoDataPolicy::Fail;
        if failed {
            self.failures += 1;
            self.in_a_row += 1;
        } else if counts {
            self.in_a_row = 0;
        }
        if !matches!(measurement.outcome, Outcome::NoData(_)) {
            self.last_with_data = Some(measurement.clone());
        }
        self.last = Some(measurement);
    }

    fn tripped(&self, spec: &MetricSpec) -> Option<String> {
        if let Some(limit) = spec.failure_limit
            && self.failures > limit
        {
            return Some(format!(
                "{} failed measurement(s) of {} (failure-limit {limit})",
                self.failures, self.taken
            ));
        }
        if let Some(limit) = spec.consecutive
            && self.in_a_row >= limit
        {
            return Some(format!(
                "{} failed measurements in a row (consecutive-failures {limit})",
                self.in_a_row
            ));
        }
        None
    }
}

/// The gate's verdict on what it measured so far in this stage.
pub(crate) fn verdict(spec: &MetricSpec, state: &MetricState) -> Verdict {
    let threshold = match &spec.check {
        Check::Query { condition, .. } => condition.to_string(),
        Check::Alerts { .. } => "none firing".to_string(),
    };
    let Some(last) = &state.last else {
        return Verdict {
            gate: spec.gate.clone(),
            status: if spec.no_data == NoDataPolicy::Ignore {
                Status::Ignored
            } else {
                Status::NoData
            },
            value: None,
            measured: "-".to_string(),
            threshold,
            message: format!(
                "{}: no measurement yet (the first comes {} into the stage)",
                spec.gate,
                crate::ui::format_duration(spec.initial_delay)
            ),
            query: None,
            dependency: false,
        };
    };
    let query_text = |m: &Measurement| match (&spec.check, &m.baseline_query) {
        (
            Check::Query {
                path: Some(path), ..
            },
            baseline,
        ) => format!(
            "GET `{}`{} at `{path}`",
            one_line(&m.query),
            baseline
                .as_ref()
                .map(|b| format!(", baseline `{}`", one_line(b)))
                .unwrap_or_default()
        ),
        (_, Some(b)) => format!("query `{}`, baseline `{}`", one_line(&m.query), one_line(b)),
        (Check::Query { .. }, None) => format!("query `{}`", one_line(&m.query)),
        (Check::Alerts { api, .. }, None) => format!("{} alerts `{}`", api.name(), m.query),
    };
    let counts = format!(
        "{} measurement(s), {} failed, {} without data",
        state.taken, state.failures, state.no_data
    );
    // The measurement that decides the verdict: with `ignore`, the last one with data.
    let decisive = if spec.no_data == NoDataPolicy::Ignore {
        state.last_with_data.as_ref()
    } else {
        Some(last)
    };
    let tripped = state.tripped(spec);
    let (status, value, measured, what) = match decisive.map(|m| &m.outcome) {
        None => (
            Status::Ignored,
            None,
            "no data".to_string(),
            format!(
                "no data ({}), ignored as configured (`no-data: ignore`)",
                match &last.outcome {
                    Outcome::NoData(why) => why.clone(),
                    _ => String::new(),
                }
            ),
        ),
        Some(Outcome::Pass { value, baseline }) => (
            if tripped.is_some() {
                Status::Fail
            } else {
                Status::Pass
            },
            Some(*value),
            number_text(*value),
            match (&spec.check, baseline) {
                (Check::Alerts { .. }, _) => "no matching alert is firing".to_string(),
                (Check::Query { condition, .. }, b) => {
                    format!("{} is {}", number_text(*value), condition.describe(*b))
                }
            },
        ),
        Some(Outcome::Fail { value, detail, .. }) => (
            if tripped.is_some() {
                Status::Fail
            } else {
                Status::Pass
            },
            *value,
            value.map_or_else(|| "-".to_string(), number_text),
            detail.clone(),
        ),
        Some(Outcome::NoData(why)) => (
            if tripped.is_some() {
                Status::Fail
            } else {
                Status::NoData
            },
            None,
            "no data".to_string(),
            format!("no data ({why}; `no-data: {}`)", spec.no_data.name()),
        ),
        Some(Outcome::Error(e)) => (Status::Fail, None, "error".to_string(), e.clone()),
    };
    let dependency = matches!(decisive.map(|m| &m.outcome), Some(Outcome::Error(_)));
    let message = match (&tripped, status) {
        (Some(why), Status::Fail) if !dependency => {
            format!("{}: {what} ({}); {why}", spec.gate, query_text(last))
        }
        _ => format!("{}: {what} ({}); {counts}", spec.gate, query_text(last)),
    };
    Verdict {
        gate: spec.gate.clone(),
        status,
        value,
        measured,
        threshold,
        message,
        query: Some(crate::secret::redact(&last.query)),
        dependency,
    }
}

/// One measurement as a log line.
pub(crate) fn log_line(spec: &MetricSpec, m: &Measurement) -> String {
    let outcome = match &m.outcome {
        Outcome::Pass { value, baseline } => format!(
            "pass {}{}",
            number_text(*value),
            baseline
                .map(|b| format!(" (baseline {})", number_text(b)))
                .unwrap_or_default()
        ),
        Outcome::Fail { detail, .. } => format!("FAIL {detail}"),
        Outcome::NoData(why) => format!("no data ({why}; no-data: {})", spec.no_data.name()),
        Outcome::Error(e) => format!("ERROR {e}"),
    };
    one_line(&format!("{} {outcome} — `{}`", spec.gate, m.query))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(
        no_data: NoDataPolicy,
        failure_limit: Option<u32>,
        consecutive: Option<u32>,
    ) -> MetricSpec {
        MetricSpec {
            gate: "metric:error-rate".into(),
            check: Check::Query {
                query: "q".into(),
                baseline_query: None,
                condition: "< 0.03".parse().expect("condition"),
                path: None,
            },
            client: Client::new(
                "Prometheus",
                &Endpoint {
                    address: "http://127.0.0.1:9".into(),
                    auth: None,
                    headers: Vec::new(),
                    timeout: Duration::from_secs(1),
                },
            )
            .expect("client"),
            interval: Duration::from_secs(1),
            initial_delay: Duration::ZERO,
            failure_limit,
            consecutive,
            no_data,
            stages: None,
        }
    }

    fn m(outcome: Outcome) -> Measurement {
        Measurement {
            index: 0,
            query: "sum(rate(x[5m]))".into(),
            baseline_query: None,
            outcome,
        }
    }

    fn pass(v: f64) -> Outcome {
        Outcome::Pass {
            value: v,
            baseline: None,
        }
    }

    fn fail(v: f64) -> Outcome {
        Outcome::Fail {
            value: Some(v),
            baseline: None,
            detail: format!("{v} is not < 0.03"),
        }
    }

    #[test]
    fn a_failed_measurement_fails_by_default_naming_value_condition_and_query() {
        let spec = spec(NoDataPolicy::Fail, Some(0), None);
        let mut state = MetricState::default();
        assert_eq!(verdict(&spec, &state).status, Status::NoData);
        state.push(&spec, m(pass(0.01)));
        assert_eq!(verdict(&spec, &state).status, Status::Pass);
        state.push(&spec, m(fail(0.5)));
        let v = verdict(&spec, &state);
        assert_eq!(v.status, Status::Fail);
        assert!(v.message.contains("0.5 is not < 0.03"), "{}", v.message);
        assert!(v.message.contains("`sum(rate(x[5m]))`"), "{}", v.message);
        assert_eq!(v.threshold, "< 0.03");
        assert!(!v.dependency);
    }

    #[test]
    fn limits_and_runs() {
        let spec = spec(NoDataPolicy::Fail, None, Some(2));
        let mut state = MetricState::default();
        state.push(&spec, m(fail(0.5)));
        assert_eq!(
            verdict(&spec, &state).status,
            Status::Pass,
            "one is tolerated"
        );
        state.push(&spec, m(pass(0.0)));
        state.push(&spec, m(fail(0.5)));
        assert_eq!(verdict(&spec, &state).status, Status::Pass);
        state.push(&spec, m(fail(0.5)));
        let v = verdict(&spec, &state);
        assert_eq!(v.status, Status::Fail);
        assert!(
            v.message.contains("2 failed measurements in a row"),
            "{}",
            v.message
        );
    }

    #[test]
    fn no_data_policies() {
        let none = || m(Outcome::NoData("empty result".into()));
        let fail_spec = spec(NoDataPolicy::Fail, Some(0), None);
        let mut state = MetricState::default();
        state.push(&fail_spec, none());
        assert_eq!(verdict(&fail_spec, &state).status, Status::Fail);

        let wait = spec(NoDataPolicy::Wait, Some(0), None);
        let mut state = MetricState::default();
        state.push(&wait, none());
        let v = verdict(&wait, &state);
        assert_eq!(
            v.status,
            Status::NoData,
            "not a breach, still fails at the end"
        );
        assert!(v.message.contains("no-data: wait"), "{}", v.message);
        state.push(&wait, m(pass(0.0)));
        assert_eq!(verdict(&wait, &state).status, Status::Pass);

        let ignore = spec(NoDataPolicy::Ignore, Some(0), None);
        let mut state = MetricState::default();
        state.push(&ignore, none());
        let v = verdict(&ignore, &state);
        assert_eq!(v.status, Status::Ignored);
        assert!(v.message.contains("ignored as configured"), "{}", v.message);
        state.push(&ignore, m(fail(0.5)));
        state.push(&ignore, none());
        assert_eq!(
            verdict(&ignore, &state).status,
            Status::Fail,
            "the failure stays"
        );
    }

    #[test]
    fn a_backend_error_is_a_dependency_failure() {
        let spec = spec(NoDataPolicy::Fail, Some(5), None);
        let mut state = MetricState::default();
        state.push(
            &spec,
            m(Outcome::Error("Prometheus at `x` did not answer".into())),
        );
        let v = verdict(&spec, &state);
        assert_eq!(v.status, Status::Fail);
        assert!(v.dependency);
    }
}
