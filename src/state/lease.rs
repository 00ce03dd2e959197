//! `lease.json`: the deployment lease this deployment took on its environment (who holds it,
//! where it lives, when it was taken, renewed and released), so `record` can release it and
//! list it in the deployment record.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Header, StateFile};

/// Who holds a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Holder {
    /// The GitHub Actions run's page, when the holder runs in Actions.
    #[serde(default)]
    pub(crate) run_url: Option<String>,
    pub(crate) deployment_id: String,
    /// The user who triggered the run (else the local user).
    pub(crate) actor: String,
    /// The host and process id that took or last renewed it.
    #[serde(default)]
    pub(crate) process: String,
}

impl Holder {
    /// `deployment `<id>` by <actor> (<run url or process>)`, for messages.
    pub(crate) fn describe(&self) -> String {
        format!(
            "deployment `{}` by `{}` ({})",
            self.deployment_id,
            self.actor,
            self.run_url.as_deref().unwrap_or(&self.process)
        )
    }
}

/// Where the lease stands for this deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum LeaseStatus {
    /// Taken and not released yet (it expires by itself `ttl_seconds` after its last renewal).
    Held,
    /// Released by `record` or `pipeline` (or `lease release`).
    Released,
    /// Someone else holds it now: it expired and was taken over, or was broken.
    Lost,
}

/// `lease.json`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct LeaseFile {
    #[serde(flatten)]
    pub(crate) header: Header,
    pub(crate) environment: String,
    /// `s3://…/lease-<environment>.json` or `file://…`.
    pub(crate) location: String,
    /// This holder's random token (also in the lease object).
    pub(crate) token: String,
    pub(crate) holder: Holder,
    /// The command that took it (`backup`, `rollout`, `lease`).
    pub(crate) taken_by: String,
    /// RFC 3339.
    pub(crate) taken_at: String,
    /// The last renewal this deployment made, RFC 3339.
    pub(crate) renewed_at: String,
    /// The lease lapses this long after its last renewal.
    pub(crate) ttl_seconds: u64,
    /// The expired holder this deployment took the lease over from.
    #[serde(default)]
    pub(crate) takeover_of: Option<Holder>,
    pub(crate) status: LeaseStatus,
    /// When it was released, RFC 3339.
    #[serde(default)]
    pub(crate) released_at: Option<String>,
    /// Why it was lost, or how the release went when it could not be done.
    #[serde(default)]
    pub(crate) note: Option<String>,
}

impl StateFile for LeaseFile {
    const FILE: &'static str = "lease.json";
    const COMMAND: &'static str = "lease";
}
