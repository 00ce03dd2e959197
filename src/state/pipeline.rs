//! `pipeline.json`: each stage `pipeline` ran as a child process, and how it ended.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Header, StateFile};

/// `pipeline.json`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct PipelineFile {
    #[serde(flatten)]
    pub(crate) header: Header,
    pub(crate) deployment_id: Option<String>,
    pub(crate) failed_stage: Option<String>,
    pub(crate) rolled_back: bool,
    pub(crate) stages: Vec<StageRun>,
}

impl StateFile for PipelineFile {
    const FILE: &'static str = "pipeline.json";
    const COMMAND: &'static str = "pipeline";
}

/// One stage as it ran.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct StageRun {
    pub(crate) stage: String,
    pub(crate) exit_code: Option<i32>,
    /// `pass` or `fail`.
    pub(crate) result: String,
    pub(crate) duration_ms: u64,
}
