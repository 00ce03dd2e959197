//! The `notify:` section of `shipgate.yml`, read by `shipgate notify`.

use serde::Deserialize;

/// The `notify:` section of `shipgate.yml` (webhook URLs are secrets and never live here).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct FileConfig {
    pub(crate) required: Option<bool>,
    pub(crate) message: Option<String>,
}
