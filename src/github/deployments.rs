//! GitHub's Deployments API, read the way every command needs it: the deployments of an
//! environment (optionally of one commit) and each one's statuses — every page, ordered by id
//! rather than trusting the server's order or `per_page=1`.

use serde::Deserialize;

use super::{GitHub, GitHubError};

/// Statuses read per deployment at most (100 a page).
const MAX_STATUS_PAGES: usize = 10;

/// A deployment as the REST API returns it (the fields shipgate reads).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Deployment {
    pub(crate) id: u64,
    pub(crate) sha: String,
    #[serde(rename = "ref")]
    pub(crate) reference: String,
    #[serde(default)]
    pub(crate) payload: serde_json::Value,
    pub(crate) created_at: String,
}

impl Deployment {
    /// The payload as an object (GitHub returns what was sent: an object, or a JSON string).
    pub(crate) fn payload(&self) -> serde_json::Value {
        match &self.payload {
            serde_json::Value::String(text) => serde_json::from_str(text).unwrap_or_default(),
            other => other.clone(),
        }
    }
}

/// One status of a deployment.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct DeploymentStatus {
    pub(crate) id: u64,
    pub(crate) state: String,
    pub(crate) created_at: String,
}

/// The deployments to `environment` (of commit `sha` when given), newest first as GitHub lists
/// them, at most `max_pages` pages of 100 (or `per_page` when smaller).
pub(crate) async fn list(
    github: &GitHub,
    environment: &str,
    sha: Option<&str>,
    per_page: u32,
    max_pages: usize,
) -> Result<Vec<Deployment>, GitHubError> {
    let mut query = format!(
        "environment={}&per_page={}",
        crate::secret::percent_encode(environment),
        per_page.clamp(1, 100)
    );
    if let Some(sha) = sha {
        query = format!("sha={sha}&{query}");
    }
    let path = github.repo_path(&format!("/deployments?{query}"));
    Ok(github.list(&path, None, max_pages).await?.items)
}

/// Every status of deployment `id`, oldest first (by id, which GitHub assigns in order).
pub(crate) async fn statuses(
    github: &GitHub,
    id: u64,
) -> Result<Vec<DeploymentStatus>, GitHubError> {
    let path = github.repo_path(&format!("/deployments/{id}/statuses?per_page=100"));
    let mut statuses: Vec<DeploymentStatus> =
        github.list(&path, None, MAX_STATUS_PAGES).await?.items;
    statuses.sort_by_key(|s| s.id);
    Ok(statuses)
}

/// The newest status of deployment `id`, if it has any.
pub(crate) async fn latest_status(
    github: &GitHub,
    id: u64,
) -> Result<Option<DeploymentStatus>, GitHubError> {
    Ok(statuses(github, id).await?.pop())
}

/// A deployment to create: always for an exact commit (`auto_merge: false`), never a branch.
pub(crate) struct NewDeployment<'a> {
    pub(crate) sha: &'a str,
    pub(crate) environment: &'a str,
    /// At most 140 characters (GitHub's limit); longer text is cut by the caller.
    pub(crate) description: &'a str,
    /// The commit statuses GitHub checks before creating it (empty: none).
    pub(crate) required_contexts: &'a [String],
    pub(crate) payload: serde_json::Value,
}

/// Creates a deployment and returns its id. A 409 (required contexts not green) comes back as
/// `GitHubError::Status`; an answer without an id (GitHub's 202 "auto-merged" reply, which an
/// exact SHA never gets) as `GitHubError::Decode`.
pub(crate) async fn create(github: &GitHub, new: &NewDeployment<'_>) -> Result<u64, GitHubError> {
    let body = serde_json::json!({
        "ref": new.sha,
        "task": "deploy",
        "auto_merge": false,
        "required_contexts": new.required_contexts,
        "environment": new.environment,
        "production_environment": new.environment == "production",
        "transient_environment": false,
        "description": new.description,
        "payload": new.payload,
    });
    let path = github.repo_path("/deployments");
    let created: serde_json::Value = github.post(&path, &body).await?;
    created
        .get("id")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| GitHubError::Decode {
            path,
            reason: format!(
                "it created no deployment ({}); shipgate deploys exact SHAs with `auto_merge: false`, so this is unexpected",
                crate::text::one_line(
                    created
                        .get("message")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or("no message")
                )
            ),
        })
}

/// A status to post on a deployment.
pub(crate) struct NewStatus<'a> {
    pub(crate) state: &'a str,
    /// At most 140 characters (GitHub's limit); longer text is cut by the caller.
    pub(crate) description: &'a str,
    pub(crate) log_url: Option<&'a str>,
    pub(crate) environment_url: Option<&'a str>,
}

/// Posts a status on deployment `id`. Only `success` asks GitHub to retire the environment's
/// earlier deployments (`auto_inactive`, documented for the status that makes a deployment the
/// live one); any other state sends `false`, since GitHub's default is `true`.
pub(crate) async fn post_status(
    github: &GitHub,
    id: u64,
    status: &NewStatus<'_>,
) -> Result<(), GitHubError> {
    let mut body = serde_json::json!({
        "state": status.state,
        "description": status.description,
        "auto_inactive": status.state == "success",
    });
    if let Some(url) = status.log_url {
        body["log_url"] = serde_json::json!(url);
    }
    if let Some(url) = status.environment_url {
        body["environment_url"] = serde_json::json!(url);
    }
    let path = github.repo_path(&format!("/deployments/{id}/statuses"));
    let _: serde_json::Value = github.post(&path, &body).await?;
    Ok(())
}
