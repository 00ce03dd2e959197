//! `notify.json`: where the announcement went.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Header, StateFile};

/// `notify.json`, and `notify`'s `--format json` object. `result` is `pass`, `fail` or
/// `skipped` (nowhere to send).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct NotifyFile {
    #[serde(flatten)]
    pub(crate) header: Header,
    pub(crate) deployment_id: String,
    /// The deployment's status announced.
    pub(crate) status: String,
    pub(crate) deliveries: Vec<Delivery>,
}

impl StateFile for NotifyFile {
    const FILE: &'static str = "notify.json";
    const COMMAND: &'static str = "notify";
}

/// One destination's delivery.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Delivery {
    /// `slack` or `webhook`.
    pub(crate) destination: String,
    pub(crate) delivered: bool,
    pub(crate) attempts: u32,
    pub(crate) error: Option<String>,
}
