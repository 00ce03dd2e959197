//! The security-alerts preflight gate (seed 002: "zero open critical vulnerabilities from latest
//! security scan"): the repository's open code-scanning alerts (security rules only, by
//! `rule.security_severity_level`) and open Dependabot alerts (by the advisory's severity) above
//! `max-severity` refuse the deployment, listed with links. A repository where a source is not
//! enabled, or a token that cannot read it, is said so — a refusal unless `security-not-enabled:
//! warn` — never a silent pass.

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::github::{GitHub, GitHubError};
use crate::state::gate::{PreflightRow, PreflightVerdict};

/// Pages of 100 alerts read per source at most.
const MAX_PAGES: usize = 10;
/// Alerts named in the reason; the rest are counted.
const NAMED: usize = 5;

/// Alert severities, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    fn parse(text: &str) -> Option<Severity> {
        match text.to_ascii_lowercase().as_str() {
            "low" => Some(Severity::Low),
            "medium" | "moderate" => Some(Severity::Medium),
            "high" => Some(Severity::High),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// The highest severity allowed to stay open: `none` (no open alert at all), `low`, `medium`,
/// `high` (the documented default: nothing critical) or `critical`.
pub(crate) fn parse_max(text: &str) -> std::result::Result<Option<Severity>, String> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    Severity::parse(text).map(Some).ok_or_else(|| {
        format!("`{text}` is not a severity; use none, low, medium, high (nothing critical open) or critical")
    })
}

/// Where alerts are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    CodeScanning,
    Dependabot,
}

impl Source {
    pub(crate) fn parse(text: &str) -> std::result::Result<Source, String> {
        match text {
            "code-scanning" => Ok(Source::CodeScanning),
            "dependabot" => Ok(Source::Dependabot),
            other => Err(format!(
                "`{other}` is not an alert source; use code-scanning and/or dependabot"
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Source::CodeScanning => "code scanning",
            Source::Dependabot => "Dependabot",
        }
    }
}

/// The gate's settings.
#[derive(Debug, Clone)]
pub(crate) struct SecurityGate {
    /// `None`: no open alert of any severity is allowed.
    pub(crate) max: Option<Severity>,
    pub(crate) sources: Vec<Source>,
    /// A source that is not enabled (or not readable) passes with a warning instead of refusing.
    pub(crate) accept_not_enabled: bool,
}

#[derive(Debug, Deserialize)]
struct CodeAlert {
    number: u64,
    html_url: String,
    rule: CodeRule,
}

#[derive(Debug, Deserialize)]
struct CodeRule {
    id: Option<String>,
    name: Option<String>,
    security_severity_level: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DependabotAlert {
    number: u64,
    html_url: String,
    security_advisory: Advisory,
    dependency: Dependency,
}

#[derive(Debug, Deserialize)]
struct Advisory {
    ghsa_id: String,
    severity: String,
}

#[derive(Debug, Deserialize)]
struct Dependency {
    package: Option<Package>,
}

#[derive(Debug, Deserialize)]
struct Package {
    name: String,
}

/// One open alert above the allowed severity.
struct Finding {
    severity: Severity,
    what: String,
    link: String,
}

/// What one source said.
enum Read {
    Alerts(Vec<Finding>, usize),
    NotEnabled(String),
}

/// The gate's verdict: open alerts above `max` refuse, naming the worst first with links.
pub(crate) async fn check(github: &GitHub, gate: &SecurityGate) -> Result<PreflightRow> {
    let mut findings = Vec::new();
    let mut open_total = 0;
    let mut not_enabled = Vec::new();
    for source in &gate.sources {
        match read(github, *source, gate.max).await? {
            Read::Alerts(found, open) => {
                findings.extend(found);
                open_total += open;
            }
            Read::NotEnabled(why) => not_enabled.push(why),
        }
    }
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    let allowed = match gate.max {
        Some(max) => format!("at most `{}` open", max.word()),
        None => "no open alert".to_string(),
    };
    let sources = gate
        .sources
        .iter()
        .map(|s| s.name())
        .collect::<Vec<_>>()
        .join(" and ");
    let (verdict, reason) = if !findings.is_empty() {
        let named: Vec<String> = findings
            .iter()
            .take(NAMED)
            .map(|f| format!("{} ({})", f.what, f.severity.word()))
            .collect();
        let more = findings.len().saturating_sub(NAMED);
        (
            PreflightVerdict::Fail,
            format!(
                "{} open security alert(s) above the allowed severity ({allowed}): {}{}",
                findings.len(),
                named.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ),
        )
    } else if !not_enabled.is_empty() {
        let verdict = if gate.accept_not_enabled {
            PreflightVerdict::NotEnabled
        } else {
            PreflightVerdict::Fail
        };
        (
            verdict,
            format!(
                "{}{}",
                not_enabled.join("; "),
                if gate.accept_not_enabled {
                    " (accepted by `security-not-enabled: warn`)"
                } else {
                    "; enable it, or set `security-not-enabled: warn` to deploy without it"
                }
            ),
        )
    } else {
        (
            PreflightVerdict::Pass,
            format!(
                "{open_total} open alert(s) in {sources}, none above the allowed severity ({allowed})"
            ),
        )
    };
    Ok(PreflightRow {
        gate: "security-alerts".into(),
        verdict,
        reason,
        measured: Some(format!(
            "{open_total} open, {} above the allowed severity",
            findings.len()
        )),
        links: findings.iter().map(|f| f.link.clone()).collect(),
        override_by: None,
        override_reason: None,
    })
}

async fn read(github: &GitHub, source: Source, max: Option<Severity>) -> Result<Read> {
    let above = |severity: Severity| max.is_none_or(|max| severity > max);
    let path = match source {
        Source::CodeScanning => github.repo_path("/code-scanning/alerts?state=open&per_page=100"),
        Source::Dependabot => github.repo_path("/dependabot/alerts?state=open&per_page=100"),
    };
    let not_enabled = |e: &GitHubError| -> Option<String> {
        match e {
            GitHubError::Forbidden { message, .. } => {
                let lower = message.to_ascii_lowercase();
                if lower.contains("not enabled")
                    || lower.contains("disabled")
                    || lower.contains("advanced security")
                {
                    Some(format!(
                        "{} is not enabled for this repository (GitHub said: {})",
                        source.name(),
                        crate::text::one_line(message)
                    ))
                } else {
                    Some(format!(
                        "the token cannot read {} alerts (403: {}); {}",
                        source.name(),
                        crate::text::one_line(message),
                        permission(source)
                    ))
                }
            }
            GitHubError::NotFound { .. } if source == Source::CodeScanning => Some(
                "code scanning has no analysis for this repository (404 no analysis found), or the token cannot see it; give the job `security-events: read`".to_string(),
            ),
            _ => None,
        }
    };
    match source {
        Source::CodeScanning => {
            alerts::<CodeAlert>(github, &path, source, &not_enabled, |a| {
                // Quality rules (no security severity) are not vulnerabilities.
                let severity = Severity::parse(a.rule.security_severity_level.as_deref()?)?;
                above(severity).then(|| Finding {
                    severity,
                    what: format!(
                        "code scanning #{} `{}`",
                        a.number,
                        crate::text::one_line(
                            a.rule
                                .id
                                .as_deref()
                                .or(a.rule.name.as_deref())
                                .unwrap_or("?")
                        )
                    ),
                    link: a.html_url,
                })
            })
            .await
        }
        Source::Dependabot => {
            alerts::<DependabotAlert>(github, &path, source, &not_enabled, |a| {
                let severity = Severity::parse(&a.security_advisory.severity)?;
                above(severity).then(|| Finding {
                    severity,
                    what: format!(
                        "Dependabot #{} `{}` in `{}`",
                        a.number,
                        crate::text::one_line(&a.security_advisory.ghsa_id),
                        crate::text::one_line(
                            a.dependency
                                .package
                                .as_ref()
                                .map(|p| p.name.as_str())
                                .unwrap_or("?")
                        )
                    ),
                    link: a.html_url,
                })
            })
            .await
        }
    }
}

/// Every open alert of one source, as findings (`finding` keeps those that count); a source
/// that is not enabled or not readable as [`Read::NotEnabled`].
async fn alerts<T: serde::de::DeserializeOwned>(
    github: &GitHub,
    path: &str,
    source: Source,
    not_enabled: &dyn Fn(&GitHubError) -> Option<String>,
    finding: impl FnMut(T) -> Option<Finding>,
) -> Result<Read> {
    match github.list::<T>(path, None, MAX_PAGES).await {
        Ok(listing) => {
            let open = listing.items.len();
            let found = listing.items.into_iter().filter_map(finding).collect();
            Ok(Read::Alerts(found, open))
        }
        Err(e) => match not_enabled(&e) {
            Some(why) => Ok(Read::NotEnabled(why)),
            None => {
                Err(Error::from(e).context(format!("cannot read the {} alerts", source.name())))
            }
        },
    }
}

/// The permission each source needs.
fn permission(source: Source) -> &'static str {
    match source {
        Source::CodeScanning => "give the job `permissions: security-events: read`",
        Source::Dependabot => {
            "Dependabot alerts need a token with the `Dependabot alerts: read` permission (a GitHub App or fine-grained token; the workflow's GITHUB_TOKEN cannot read them), or leave `dependabot` out of `security-sources`"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_order_and_parse() {
        assert!(Severity::Critical > Severity::High && Severity::Medium > Severity::Low);
        assert_eq!(parse_max("none"), Ok(None));
        assert_eq!(parse_max("HIGH"), Ok(Some(Severity::High)));
        assert_eq!(Severity::parse("moderate"), Some(Severity::Medium));
        assert!(
            parse_max("severe")
                .expect_err("refused")
                .contains("`severe` is not a severity")
        );
        assert!(
            Source::parse("snyk")
                .expect_err("refused")
                .contains("code-scanning")
        );
    }
}
