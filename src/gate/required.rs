//! The checks a branch requires: the union of classic branch protection
//! (`GET …/branches/{branch}`, whose `protection.required_status_checks` any reader may see) and
//! the `required_status_checks` rules of the active rulesets that target the branch
//! (`GET …/rules/branches/{branch}`, which returns the rules of every level — repository and
//! organization — and leaves out rulesets in `evaluate` or `disabled`). An app id
//! (`app_id` / `integration_id`) restricts which app's check runs satisfy a check.

use serde::Deserialize;

use super::verdict::{Origin, Pattern, Requirement};
use crate::error::{Error, Result, ResultExt};
use crate::github::{GitHub, GitHubError};

const MAX_RULE_PAGES: usize = 10;

#[derive(Debug, Deserialize)]
struct Branch {
    #[serde(default)]
    protected: bool,
    protection: Option<Protection>,
}

#[derive(Debug, Deserialize)]
struct Protection {
    required_status_checks: Option<RequiredStatusChecks>,
}

#[derive(Debug, Deserialize)]
struct RequiredStatusChecks {
    enforcement_level: Option<String>,
    #[serde(default)]
    contexts: Vec<String>,
    #[serde(default)]
    checks: Vec<ProtectionCheck>,
}

#[derive(Debug, Deserialize)]
struct ProtectionCheck {
    context: String,
    app_id: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct Rule {
    #[serde(rename = "type")]
    kind: String,
    ruleset_id: Option<u64>,
    parameters: Option<RuleParameters>,
}

#[derive(Debug, Deserialize)]
struct RuleParameters {
    #[serde(default)]
    required_status_checks: Vec<RuleCheck>,
}

#[derive(Debug, Deserialize)]
struct RuleCheck {
    context: String,
    integration_id: Option<u64>,
}

/// `branch` with every path segment percent-encoded (slashes kept, as GitHub expects them).
pub(crate) fn encode_branch(branch: &str) -> String {
    branch
        .split('/')
        .map(crate::secret::percent_encode)
        .collect::<Vec<_>>()
        .join("/")
}

/// The union of what protection and rulesets require on `branch`.
pub(crate) async fn required_by_branch(github: &GitHub, branch: &str) -> Result<Vec<Requirement>> {
    let encoded = encode_branch(branch);
    let info: Branch = match github
        .get(&github.repo_path(&format!("/branches/{encoded}")))
        .await
    {
        Ok(info) => info,
        Err(GitHubError::NotFound { .. }) => {
            return Err(Error::usage(format!(
                "branch `{branch}` does not exist in `{}`; pass the branch whose required checks the release must meet to `--required-from` (e.g. `main`)",
                github.repo()
            )));
        }
        Err(e) => {
            return Err(Error::from(e).context(format!("cannot read branch `{branch}`")));
        }
    };
    let mut out: Vec<Requirement> = Vec::new();
    let mut add = |name: &str, app_id: Option<u64>, origin: Origin| match out
        .iter_mut()
        .find(|r| r.pattern.as_str() == name && r.app_id == app_id)
    {
        Some(existing) => {
            if !existing.origins.contains(&origin) {
                existing.origins.push(origin);
            }
        }
        None => out.push(Requirement {
            pattern: Pattern::exact(name),
            app_id,
            origins: vec![origin],
        }),
    };
    if info.protected
        && let Some(rsc) = info.protection.and_then(|p| p.required_status_checks)
        && rsc.enforcement_level.as_deref() != Some("off")
    {
        if rsc.checks.is_empty() {
            for context in &rsc.contexts {
                add(context, None, Origin::Protection(branch.to_string()));
            }
        }
        for check in &rsc.checks {
            // `app_id` null or -1: any source.
            let app = check.app_id.filter(|id| *id > 0).map(|id| id as u64);
            add(&check.context, app, Origin::Protection(branch.to_string()));
        }
    }
    let rules_path = github.repo_path(&format!("/rules/branches/{encoded}?per_page=100"));
    match github.list::<Rule>(&rules_path, None, MAX_RULE_PAGES).await {
        Ok(rules) => {
            for rule in rules
                .items
                .iter()
                .filter(|r| r.kind == "required_status_checks")
            {
                let origin = Origin::Ruleset(rule.ruleset_id.unwrap_or(0));
                for check in rule
                    .parameters
                    .iter()
                    .flat_map(|p| p.required_status_checks.iter())
                {
                    add(&check.context, check.integration_id, origin.clone());
                }
            }
        }
        // Servers without rulesets (older GHES) answer 404.
        Err(GitHubError::NotFound { .. }) => {
            tracing::warn!(
                "GitHub has no rulesets endpoint for branch `{branch}` here; using branch protection alone"
            );
        }
        Err(e) => {
            return Err(Error::from(e))
                .context(format!("cannot read the rulesets of branch `{branch}`"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches_keep_their_slashes() {
        assert_eq!(encode_branch("release/1.x"), "release/1.x");
        assert_eq!(encode_branch("feat/a b#c"), "feat/a%20b%23c");
    }
}
