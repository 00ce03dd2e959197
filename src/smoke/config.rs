//! The `smoke:` section of `shipgate.yml`, read by `shipgate smoke`.

use serde::Deserialize;

use crate::util::HumanDuration;

/// The `smoke:` section of `shipgate.yml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct FileConfig {
    pub(crate) suite: Option<String>,
    pub(crate) base_url: Option<String>,
    #[serde(default)]
    pub(crate) urls: Vec<String>,
    #[serde(default)]
    pub(crate) secrets: Vec<String>,
    pub(crate) concurrency: Option<usize>,
    pub(crate) request_timeout: Option<HumanDuration>,
    pub(crate) ready_timeout: Option<HumanDuration>,
}
