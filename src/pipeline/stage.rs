//! The stages `shipgate pipeline` runs, each a shipgate command.

use serde::{Deserialize, Serialize};

/// The stages, in the order they run.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Stage {
    Validate,
    Gate,
    Backup,
    Migrate,
    Rollout,
    Smoke,
    Record,
    Notify,
}

impl Stage {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Stage::Validate => "validate",
            Stage::Gate => "gate",
            Stage::Backup => "backup",
            Stage::Migrate => "migrate",
            Stage::Rollout => "rollout",
            Stage::Smoke => "smoke",
            Stage::Record => "record",
            Stage::Notify => "notify",
        }
    }

    /// Stages that run at the end whatever happened before.
    pub(crate) fn is_final(self) -> bool {
        matches!(self, Stage::Record | Stage::Notify)
    }
}
