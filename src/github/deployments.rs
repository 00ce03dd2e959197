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
