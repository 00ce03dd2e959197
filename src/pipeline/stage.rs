//! The stages `shipgate pipeline` runs, each a shipgate command run as a child process.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::process::{self, Spec};
use crate::state::pipeline::StageRun;

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

/// Runs one stage, `argv` (this executable as a child sharing the state dir and the runner's
/// files), until it ends or `cancel` fires.
pub(crate) async fn run(
    name: &str,
    argv: Vec<String>,
    cancel: impl std::future::Future<Output = ()>,
) -> Result<StageRun> {
    tracing::info!("pipeline: `shipgate {name}`");
    let finished = process::run_inherited(&Spec::new(name, argv).shipgate_child(), cancel).await?;
    let result = if finished.success() { "pass" } else { "fail" };
    tracing::info!(
        "pipeline: `shipgate {name}` {} in {}",
        if finished.success() {
            "passed"
        } else {
            "failed"
        },
        crate::ui::format_duration(std::time::Duration::from_millis(finished.duration_ms))
    );
    Ok(StageRun {
        stage: name.to_string(),
        exit_code: finished.exit_code,
        result: result.to_string(),
        duration_ms: finished.duration_ms,
    })
}
