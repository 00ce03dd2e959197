//! The `watch:` section of `shipgate.yml`, read by `shipgate watch`. What is watched (probes,
//! metric gates, alerts) is the `rollout:` section's; how a breach is rolled back is the
//! `rollback:` section's.

use serde::Deserialize;

use crate::util::HumanDuration;

/// The `watch:` section of `shipgate.yml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct FileConfig {
    /// How long to watch after the rollout (seed 000/004: the first 60 minutes).
    #[serde(rename = "for")]
    pub(crate) duration: Option<HumanDuration>,
    /// Time between two checks (seed 000/004: every 5 minutes).
    pub(crate) interval: Option<HumanDuration>,
    /// Also restore the database when a breach rolls back (off unless asked).
    pub(crate) restore_database: Option<bool>,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_section_parses_and_refuses_unknown_keys() {
        let file: FileConfig =
            serde_yaml_ng::from_str("for: 60m\ninterval: 5m\nrestore-database: false").expect("ok");
        assert_eq!(file.duration.map(|d| d.0), Some(Duration::from_secs(3600)));
        assert_eq!(file.interval.map(|d| d.0), Some(Duration::from_secs(300)));
        assert!(serde_yaml_ng::from_str::<FileConfig>("duration: 60m").is_err());
    }
}
