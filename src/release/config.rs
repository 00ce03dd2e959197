//! The `validate:` section of `shipgate.yml`, read by `shipgate validate`.

use serde::Deserialize;

/// The `validate:` section of `shipgate.yml`. (`allow-downgrade` is deliberately absent: a
/// downgrade is a decision for one run, never a standing setting.)
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct FileConfig {
    pub(crate) tag_prefix: Option<String>,
    pub(crate) allow_prerelease: Option<bool>,
    pub(crate) require_signed: Option<bool>,
    pub(crate) allow_any_branch: Option<bool>,
    pub(crate) default_branch: Option<String>,
}
