//! The part of the fake GitHub that `gate`'s security-alerts preflight reads, in the shapes of
//! GitHub's REST description (API version 2022-11-28), which the fake checks every answer
//! against:
//! * `GET /repos/{o}/{r}/code-scanning/alerts` (`state`, `ref`, `per_page`, `page`) → an array
//!   of `code-scanning-alert-items`; a repository without code scanning answers 403 "Code
//!   scanning is not enabled for this repository" (or 404 "no analysis found" when it is on but
//!   nothing was analysed);
//! * `GET /repos/{o}/{r}/dependabot/alerts` (`state`, `severity`, comma lists, `per_page`, cursor
//!   pagination) → an array of `dependabot-alert`; with Dependabot alerts off, 403 "Dependabot
//!   alerts are disabled for this repository.".

use serde_json::{Value, json};

use super::{FakeGitHub, Reply, Repo, Req, iso, paginate};

/// One repository's security alerts and whether each feature is on.
#[derive(Default)]
pub(super) struct RepoSecurity {
    code_scanning: Feature,
    dependabot: Feature,
    code_alerts: Vec<CodeAlert>,
    dependabot_alerts: Vec<DependabotAlert>,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Feature {
    #[default]
    On,
    /// Turned on, but no analysis has been uploaded yet (code scanning only).
    NoAnalysis,
    Off,
}

struct CodeAlert {
    number: u64,
    rule_id: String,
    /// `rule.severity`: none, note, warning, error.
    severity: String,
    /// `rule.security_severity_level`: low, medium, high, critical (null for non-security rules).
    security_severity: Option<String>,
    state: String,
    created_at: i64,
}

struct DependabotAlert {
    number: u64,
    package: String,
    ecosystem: String,
    severity: String,
    ghsa: String,
    state: String,
    created_at: i64,
}

impl FakeGitHub {
    /// An open code-scanning alert of rule `rule_id` with `rule.security_severity_level`
    /// (`None` for a non-security rule, whose `rule.severity` is then `warning`); returns its
    /// number.
    pub fn code_scanning_alert(&self, rule_id: &str, security_severity: Option<&str>) -> u64 {
        let mut state = self.state();
        let at = state.clock.tick();
        let repo = state.current_repo();
        let number = repo.security.code_alerts.len() as u64 + 1;
        repo.security.code_alerts.push(CodeAlert {
            number,
            rule_id: rule_id.to_owned(),
            severity: if security_severity.is_some() {
                "error".into()
            } else {
                "warning".into()
            },
            security_severity: security_severity.map(str::to_owned),
            state: "open".into(),
            created_at: at,
        });
        number
    }

    /// An open Dependabot alert on `package` (npm) with the advisory's `severity`; returns its
    /// number.
    pub fn dependabot_alert(&self, package: &str, severity: &str) -> u64 {
        let mut state = self.state();
        let at = state.clock.tick();
        let repo = state.current_repo();
        let number = repo.security.dependabot_alerts.len() as u64 + 1;
        repo.security.dependabot_alerts.push(DependabotAlert {
            number,
            package: package.to_owned(),
            ecosystem: "npm".into(),
            severity: severity.to_owned(),
            ghsa: format!("GHSA-{number:04}-abcd-efgh"),
            state: "open".into(),
            created_at: at,
        });
        number
    }

    /// Code scanning turned off for the repository.
    pub fn code_scanning_off(&self) -> &Self {
        self.state().current_repo().security.code_scanning = Feature::Off;
        self
    }

    /// Code scanning on, but no analysis uploaded yet.
    pub fn code_scanning_without_analysis(&self) -> &Self {
        self.state().current_repo().security.code_scanning = Feature::NoAnalysis;
        self
    }

    /// Dependabot alerts turned off for the repository.
    pub fn dependabot_off(&self) -> &Self {
        self.state().current_repo().security.dependabot = Feature::Off;
        self
    }
}

pub(super) fn route(repo: &Repo, req: &Req, rest: &[&str]) -> Option<Reply> {
    match rest {
        ["code-scanning", "alerts"] => Some(code_scanning_alerts(repo, req)),
        ["dependabot", "alerts"] => Some(dependabot_alerts(repo, req)),
        _ => None,
    }
}

fn code_scanning_alerts(repo: &Repo, req: &Req) -> Reply {
    match repo.security.code_scanning {
        Feature::Off => {
            return Reply::error(403, "Code scanning is not enabled for this repository");
        }
        Feature::NoAnalysis => {
            return Reply::error(404, "no analysis found");
        }
        Feature::On => {}
    }
    let wanted = req.query("state");
    let items = repo
        .security
        .code_alerts
        .iter()
        .rev()
        .filter(|a| wanted.is_none_or(|s| s == a.state))
        .map(|a| code_alert_json(repo, a))
        .collect();
    paginate(req, &repo.base, items)
}

fn code_alert_json(repo: &Repo, a: &CodeAlert) -> Value {
    let url = format!("{}/code-scanning/alerts/{}", repo.api, a.number);
    json!({
        "number": a.number,
        "created_at": iso(a.created_at),
        "updated_at": iso(a.created_at),
        "url": url,
        "html_url": format!("{}/security/code-scanning/{}", repo.html, a.number),
        "instances_url": format!("{url}/instances"),
        "state": a.state,
        "fixed_at": null,
        "dismissed_by": null,
        "dismissed_at": null,
        "dismissed_reason": null,
        "dismissed_comment": null,
        "rule": {
            "id": a.rule_id,
            "name": a.rule_id,
            "severity": a.severity,
            "security_severity_level": a.security_severity,
            "description": format!("{} found", a.rule_id),
            "tags": ["security"],
        },
        "tool": { "name": "CodeQL", "guid": null, "version": "2.20.0" },
        "most_recent_instance": {
            "ref": format!("refs/heads/{}", repo.default_branch),
            "analysis_key": ".github/workflows/codeql.yml:analyze",
            "environment": "{\"language\":\"javascript\"}",
            "category": ".github/workflows/codeql.yml:analyze/language:javascript",
            "state": a.state,
            "commit_sha": "0000000000000000000000000000000000000000",
            "message": { "text": format!("{} here", a.rule_id) },
            "location": { "path": "src/app.js", "start_line": 10, "end_line": 10, "start_column": 1, "end_column": 20 },
            "classifications": [],
        },
    })
}

fn dependabot_alerts(repo: &Repo, req: &Req) -> Reply {
    if repo.security.dependabot == Feature::Off {
        return Reply::error(403, "Dependabot alerts are disabled for this repository.");
    }
    let list = |name: &str| -> Option<Vec<String>> {
        req.query(name)
            .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
    };
    let (states, severities) = (list("state"), list("severity"));
    let items = repo
        .security
        .dependabot_alerts
        .iter()
        .rev()
        .filter(|a| states.as_ref().is_none_or(|s| s.contains(&a.state)))
        .filter(|a| severities.as_ref().is_none_or(|s| s.contains(&a.severity)))
        .map(|a| dependabot_alert_json(repo, a))
        .collect();
    paginate(req, &repo.base, items)
}

fn dependabot_alert_json(repo: &Repo, a: &DependabotAlert) -> Value {
    let package = json!({ "ecosystem": a.ecosystem, "name": a.package });
    let vulnerability = json!({
        "package": package,
        "severity": a.severity,
        "vulnerable_version_range": "< 1.2.3",
        "first_patched_version": { "identifier": "1.2.3" },
    });
    json!({
        "number": a.number,
        "state": a.state,
        "dependency": {
            "package": package,
            "manifest_path": "package-lock.json",
            "scope": "runtime",
            "relationship": "direct",
        },
        "security_advisory": {
            "ghsa_id": a.ghsa,
            "cve_id": null,
            "summary": format!("{} is vulnerable", a.package),
            "description": format!("A flaw in {}.", a.package),
            "vulnerabilities": [vulnerability],
            "severity": a.severity,
            "cvss": { "score": 9.8, "vector_string": null },
            "cwes": [],
            "identifiers": [{ "type": "GHSA", "value": a.ghsa }],
            "references": [{ "url": format!("https://github.com/advisories/{}", a.ghsa) }],
            "published_at": iso(a.created_at),
            "updated_at": iso(a.created_at),
            "withdrawn_at": null,
        },
        "security_vulnerability": vulnerability,
        "url": format!("{}/dependabot/alerts/{}", repo.api, a.number),
        "html_url": format!("{}/security/dependabot/{}", repo.html, a.number),
        "created_at": iso(a.created_at),
        "updated_at": iso(a.created_at),
        "dismissed_at": null,
        "dismissed_by": null,
        "dismissed_reason": null,
        "dismissed_comment": null,
        "fixed_at": null,
        "auto_dismissed_at": null,
    })
}
