//! `rollback.json`: the manual rollback's steps, hook, restore and health checks.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::hook::HookRun;
use super::record::Publication;
use super::{Header, StateFile};

/// `rollback.json`, and `rollback`'s `--format json` object.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct RollbackFile {
    #[serde(flatten)]
    pub(crate) header: Header,
    pub(crate) deployment_id: String,
    pub(crate) version: String,
    pub(crate) previous_version: Option<String>,
    pub(crate) reason: String,
    pub(crate) rollback_deadline: String,
    pub(crate) forced: bool,
    pub(crate) refused: bool,
    pub(crate) already_rolled_back: bool,
    pub(crate) steps: Vec<Step>,
    /// The rollback hook's run: every attempt with its exit code or HTTP status.
    pub(crate) hook: Option<HookRun>,
    /// No rollback hook is configured: the stage hook ran at weight 0.
    pub(crate) stage_hook_reused: bool,
    pub(crate) database_restored: Option<bool>,
    pub(crate) health: Vec<Health>,
    pub(crate) github_deployment: Option<MarkedDeployment>,
    pub(crate) incident: Option<String>,
    pub(crate) record: Option<String>,
    pub(crate) artifacts: Option<Publication>,
    pub(crate) error: Option<String>,
}

impl StateFile for RollbackFile {
    const FILE: &'static str = "rollback.json";
    const COMMAND: &'static str = "rollback";
}

/// One step of the rollback (the hook, the restore).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Step {
    pub(crate) name: String,
    pub(crate) command: String,
    pub(crate) ok: bool,
    pub(crate) outcome: String,
    pub(crate) duration_ms: u64,
}

/// One health URL checked after the rollback.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Health {
    pub(crate) url: String,
    /// `healthy`, `unhealthy`, `unknown`, …
    pub(crate) state: String,
    pub(crate) detail: String,
    pub(crate) attempts: u32,
}

/// The GitHub deployment marked inactive, or why it could not be.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct MarkedDeployment {
    pub(crate) id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}
