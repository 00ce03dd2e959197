//! `record.json`: what `record` wrote and published (not the deployment record itself).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Header, StateFile};

/// `record.json`, and `record`'s `--format json` object.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct RecordFile {
    #[serde(flatten)]
    pub(crate) header: Header,
    pub(crate) deployment_id: String,
    /// `success`, `failure` or `rolled_back`.
    pub(crate) status: String,
    /// The path of `deployment-record-<id>.json`.
    pub(crate) record: String,
    pub(crate) rollback_instructions: String,
    pub(crate) failure_report: Option<String>,
    pub(crate) rollback_deadline: String,
    pub(crate) not_run: Vec<String>,
    pub(crate) artifacts: Publication,
    pub(crate) github_deployment: Option<DeploymentSummary>,
    pub(crate) warnings: Vec<String>,
}

impl StateFile for RecordFile {
    const FILE: &'static str = "record.json";
    const COMMAND: &'static str = "record";
}

/// The GitHub deployment `record` created or reused.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct DeploymentSummary {
    pub(crate) id: u64,
    pub(crate) created: bool,
    /// The final status set (`success`/`failure`), once it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) state: Option<String>,
}

/// What publishing the artifacts did.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Publication {
    /// Whether the results service was there to upload to.
    pub(crate) service: bool,
    /// Days the artifacts are kept: as asked (capped by the repository), or the repository's
    /// setting (`GITHUB_RETENTION_DAYS`) when none was asked; `null` when neither is known.
    pub(crate) retention_days: Option<u32>,
    /// The `expires_at` sent to the service; `null` when no retention was asked (the
    /// repository's setting applies).
    pub(crate) expires_at: Option<String>,
    /// Where the files are for `actions/upload-artifact` (one directory per artifact).
    pub(crate) dir: String,
    pub(crate) artifacts: Vec<Uploaded>,
}

/// What happened to one artifact.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Uploaded {
    pub(crate) name: String,
    /// `uploaded`, `exists` (a previous attempt uploaded it), `written` (left on disk for
    /// `actions/upload-artifact`) or `failed`.
    pub(crate) state: String,
    pub(crate) files: Vec<String>,
    /// Bytes of the zip (uploaded or that would have been).
    pub(crate) size: Option<u64>,
    /// `sha256:<hex>` of the zip.
    pub(crate) sha256: Option<String>,
    pub(crate) artifact_id: Option<String>,
    /// The directory holding the artifact's files, for `actions/upload-artifact`.
    pub(crate) dir: String,
    pub(crate) error: Option<String>,
}
