//! The `pipeline:` section of `shipgate.yml`, read by `shipgate pipeline`.

use serde::Deserialize;

use super::stage::Stage;

/// The `pipeline:` section of `shipgate.yml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct FileConfig {
    pub(crate) stages: Option<Vec<Stage>>,
    pub(crate) rollback_on_failure: Option<bool>,
    pub(crate) restore_database: Option<bool>,
}
