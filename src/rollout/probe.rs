//! Probes: what one look at a target (an HTTP health endpoint or a command) observed, and how
//! an observation becomes a passed or failed sample under a stage's rules. Bodies are read only
//! through [`crate::health`].

use std::time::{Duration, Instant};

use super::gates::DegradedPolicy;
use super::window::Sample;
use crate::health::{self, Rule, State};
use crate::hooks::describe_http_error;
use crate::process::{self, Spec};

/// The most of a health body that is read; the rest is not needed to judge it.
const BODY_LIMIT: usize = 64 * 1024;

/// What is probed.
#[derive(Debug, Clone)]
pub(crate) enum Probe {
    /// GET of a health endpoint.
    Http { url: String },
    /// A command: exit 0 passes; a health body on stdout (`{"status":"warn"}`, `Degraded`) is
    /// read too.
    Command { argv: Vec<String> },
}

/// A named probe.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// How logs and messages name it: the URL without credentials or query, or the probe name.
    pub(crate) label: String,
    pub(crate) probe: Probe,
}

impl Target {
    pub(crate) fn http(url: &str) -> Target {
        Target {
            label: endpoint_label(url),
            probe: Probe::Http {
                url: url.to_string(),
            },
        }
    }

    pub(crate) fn is_http(&self) -> bool {
        matches!(self.probe, Probe::Http { .. })
    }
}

/// A URL for logs: scheme, host, port and path; never userinfo, query or fragment.
pub(crate) fn endpoint_label(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(url) => {
            let host = url.host_str().unwrap_or("");
            let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
            crate::secret::redact(&format!("{}://{host}{port}{}", url.scheme(), url.path()))
        }
        Err(_) => "(invalid URL)".to_string(),
    }
}

/// What a probe saw.
#[derive(Debug, Clone)]
pub(crate) enum Answer {
    /// A response (or command output) read as a health state.
    Health {
        state: State,
        version: Option<String>,
        /// `HTTP 500, status `fail``, `exit code 0`.
        detail: String,
    },
    /// No usable answer: `connection refused`, `timed out after 5s`, `exit code 2`.
    Failed { cause: String },
}

/// One probe of one target.
#[derive(Debug, Clone)]
pub(crate) struct Observation {
    pub(crate) target: usize,
    pub(crate) at: Instant,
    pub(crate) latency: Option<Duration>,
    pub(crate) answer: Answer,
}

/// How observations are probed and judged.
#[derive(Debug, Clone)]
pub(crate) struct Prober {
    pub(crate) client: reqwest::Client,
    pub(crate) timeout: Duration,
    pub(crate) rule: Rule,
}

impl Prober {
    /// A probe client: every request bounded by `timeout` (connect, headers and body).
    pub(crate) fn new(timeout: Duration, rule: Rule) -> Result<Prober, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .timeout(timeout)
            .user_agent(concat!(
                "shipgate/",
                env!("CARGO_PKG_VERSION"),
                " (health probe)"
            ))
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()?;
        Ok(Prober {
            client,
            timeout,
            rule,
        })
    }

    pub(crate) async fn probe(&self, index: usize, target: &Target) -> Observation {
        let started = Instant::now();
        let (latency, answer) = match &target.probe {
            Probe::Http { url } => self.http(url, started).await,
            Probe::Command { argv } => (None, self.command(&target.label, argv).await),
        };
        Observation {
            target: index,
            at: Instant::now(),
            latency,
            answer,
        }
    }

    async fn http(&self, url: &str, started: Instant) -> (Option<Duration>, Answer) {
        let failed = |error: reqwest::Error, timeout: Duration| {
            let timed_out = error.is_timeout();
            let cause = if timed_out {
                format!("timed out after {}", crate::ui::format_duration(timeout))
            } else {
                describe_http_error(error)
            };
            (
                timed_out.then(|| started.elapsed()),
                Answer::Failed { cause },
            )
        };
        let mut response = match self
            .client
            .get(url)
            .header("cache-control", "no-cache")
            .send()
            .await
        {
            Ok(response) => response,
            Err(error) => return failed(error, self.timeout),
        };
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = BODY_LIMIT - body.len();
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    if body.len() >= BODY_LIMIT {
                        break;
                    }
                }
                Ok(None) => break,
                Err(error) => return failed(error, self.timeout),
            }
        }
        let latency = started.elapsed();
        let reading = health::read(status, content_type.as_deref(), &body, &self.rule);
        (
            Some(latency),
            Answer::Health {
                state: reading.state,
                version: reading.version,
                detail: reading.detail,
            },
        )
    }

    async fn command(&self, label: &str, argv: &[String]) -> Answer {
        let spec = Spec::new(format!("probe {label}"), argv.to_vec()).timeout(Some(self.timeout));
        match process::run_quiet(&spec, BODY_LIMIT, std::future::pending()).await {
            Ok((finished, _)) if !finished.success() => Answer::Failed {
                cause: finished.describe(),
            },
            Ok((_, stdout)) if stdout.trim().is_empty() => Answer::Health {
                state: State::Healthy,
                version: None,
                detail: "exit code 0".to_string(),
            },
            Ok((_, stdout)) => {
                let reading = health::read(200, None, stdout.as_bytes(), &Rule::default());
                let said = reading
                    .detail
                    .strip_prefix("HTTP 200")
                    .unwrap_or("")
                    .to_string();
                Answer::Health {
                    state: reading.state,
                    version: reading.version,
                    detail: format!("exit code 0{said}"),
                }
            }
            Err(error) => Answer::Failed {
                cause: error.to_string(),
            },
        }
    }
}

/// How a stage judges an observation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Judge<'a> {
    pub(crate) degraded: DegradedPolicy,
    /// The version canary targets must report (baseline targets are not checked).
    pub(crate) expect_version: Option<&'a str>,
}

fn same_version(reported: &str, expected: &str) -> bool {
    let strip = |v: &str| {
        let v = v.trim();
        v.strip_prefix(['v', 'V']).unwrap_or(v).to_string()
    };
    strip(reported) == strip(expected)
}

impl Judge<'_> {
    /// The sample an observation makes.
    pub(crate) fn sample(&self, observation: &Observation) -> Sample {
        let (ok, degraded, cause) = match &observation.answer {
            Answer::Failed { cause } => (false, false, Some(cause.clone())),
            Answer::Health {
                state,
                version,
                detail,
            } => match state {
                State::Unhealthy => (false, false, Some(detail.clone())),
                State::Unknown => (false, false, Some(format!("{detail} (unknown state)"))),
                State::Degraded if self.degraded == DegradedPolicy::Fail => {
                    (false, true, Some(format!("{detail} (degraded)")))
                }
                State::Healthy | State::Degraded => {
                    let degraded = *state == State::Degraded;
                    match (self.expect_version, version) {
                        (Some(expected), Some(got)) if !same_version(got, expected) => (
                            false,
                            degraded,
                            Some(format!("version `{got}` (expected `{expected}`)")),
                        ),
                        (Some(expected), None) => (
                            false,
                            degraded,
                            Some(format!("no version reported (expected `{expected}`)")),
                        ),
                        _ => (true, degraded, None),
                    }
                }
            },
        };
        Sample {
            target: observation.target,
            at: observation.at,
            ok,
            degraded,
            latency: observation.latency,
            cause: cause.map(|c| crate::actions::one_line(&c)),
            source: None,
        }
    }
}

/// One log line for an observation and its sample.
pub(crate) fn log_line(label: &str, observation: &Observation, sample: &Sample) -> String {
    let latency = observation
        .latency
        .map(|l| format!(" in {:.1}ms", l.as_secs_f64() * 1000.0))
        .unwrap_or_default();
    let what = match &observation.answer {
        Answer::Health {
            detail, version, ..
        } => match version {
            Some(version) => format!("{detail}, version `{version}`"),
            None => detail.clone(),
        },
        Answer::Failed { cause } => cause.clone(),
    };
    let verdict = match (sample.ok, sample.degraded) {
        (true, false) => "ok",
        (true, true) => "ok (degraded)",
        (false, _) => "FAIL",
    };
    crate::actions::one_line(&format!(
        "{label}: {verdict}{latency}: {what}{}",
        match (&sample.cause, sample.ok) {
            (Some(cause), false) if !what.contains(cause.as_str()) => format!(" [{cause}]"),
            _ => String::new(),
        }
    ))
}

/// The answer of one probe, short, for messages: `healthy: HTTP 200, status `UP``, `HTTP 500,
/// status `fail``, `connection refused`.
pub(crate) fn answer_text(observation: &Observation, sample: &Sample) -> String {
    let what = match &observation.answer {
        Answer::Health { detail, .. } => detail.clone(),
        Answer::Failed { cause } => cause.clone(),
    };
    let text = match (&sample.cause, sample.ok) {
        (_, true) => format!("healthy: {what}"),
        (Some(cause), false) if !what.contains(cause.as_str()) => format!("{what} [{cause}]"),
        _ => what,
    };
    crate::actions::one_line(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(state: State, version: Option<&str>) -> Observation {
        Observation {
            target: 0,
            at: Instant::now(),
            latency: Some(Duration::from_millis(5)),
            answer: Answer::Health {
                state,
                version: version.map(str::to_string),
                detail: "HTTP 200, status `x`".into(),
            },
        }
    }

    #[test]
    fn degraded_follows_the_policy() {
        let fail = Judge {
            degraded: DegradedPolicy::Fail,
            expect_version: None,
        };
        let s = fail.sample(&health(State::Degraded, None));
        assert!(!s.ok && s.degraded);
        assert!(s.cause.expect("cause").contains("degraded"));
        let warn = Judge {
            degraded: DegradedPolicy::Warn,
            expect_version: None,
        };
        let s = warn.sample(&health(State::Degraded, None));
        assert!(s.ok && s.degraded);
        assert!(!warn.sample(&health(State::Unknown, None)).ok);
    }

    #[test]
    fn versions_must_match_when_expected() {
        let judge = Judge {
            degraded: DegradedPolicy::Fail,
            expect_version: Some("v1.4.0"),
        };
        assert!(judge.sample(&health(State::Healthy, Some("1.4.0"))).ok);
        let wrong = judge.sample(&health(State::Healthy, Some("1.3.2")));
        assert_eq!(
            wrong.cause.as_deref(),
            Some("version `1.3.2` (expected `v1.4.0`)")
        );
        assert!(!judge.sample(&health(State::Healthy, None)).ok);
    }

    #[test]
    fn labels_never_carry_credentials_or_queries() {
        assert_eq!(
            endpoint_label("https://user:pw@svc.example:8443/health?token=abc#x"),
            "https://svc.example:8443/health"
        );
    }
}
