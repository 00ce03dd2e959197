//! The `record:` section of `shipgate.yml`, read by `shipgate record`.

use serde::Deserialize;

/// The `record:` section of `shipgate.yml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct FileConfig {
    pub(crate) services: Option<Vec<String>>,
    pub(crate) rollback_window_minutes: Option<u64>,
    pub(crate) retention_days: Option<u32>,
    pub(crate) artifacts_required: Option<bool>,
    pub(crate) github_deployment: Option<bool>,
    pub(crate) environment_url: Option<String>,
    pub(crate) required_contexts: Option<String>,
    pub(crate) on_call: Option<String>,
}
