//! The `lease:` section of `shipgate.yml`, read by every command that takes, renews, shows or
//! releases the deployment lease (`backup`, `rollout`, `record`, `pipeline`, `lease`).

use serde::Deserialize;

use crate::util::HumanDuration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct FileConfig {
    /// `false` turns the lease off.
    pub(crate) enabled: Option<bool>,
    /// Where the lease lives; default: the backup destination.
    pub(crate) destination: Option<String>,
    pub(crate) ttl: Option<HumanDuration>,
    pub(crate) wait: Option<HumanDuration>,
}
