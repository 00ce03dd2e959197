//! Manual pauses (`pause: until-approved`): the waiting rollout announces itself in
//! `rollout-pause.json` and polls the approval file, which `shipgate rollout --resume` (or anyone
//! who can write the file) creates. An approval is used once: it is deleted when taken.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::state::StateDir;

/// Where a paused rollout says which stage waits (in the state dir).
pub(crate) const PAUSE_FILE: &str = "rollout-pause.json";
/// The approval file a paused rollout waits for unless `approval-file` names another.
pub(crate) const APPROVAL_FILE: &str = "rollout-approval.json";

/// `rollout-pause.json`: which stage waits, since when, until when, and where to approve it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Pause {
    pub(crate) stage: String,
    pub(crate) waiting_since: String,
    pub(crate) deadline: String,
    pub(crate) approval_file: PathBuf,
    pub(crate) pid: u32,
}

/// The approval file's content. Any other content (even an empty file) approves whatever stage
/// waits; a JSON object naming another stage is left alone.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Approval {
    pub(crate) stage: Option<String>,
    pub(crate) approved_by: Option<String>,
    pub(crate) at: Option<String>,
}

/// Takes the approval for `stage` from `path` if there is one (deleting the file).
pub(crate) fn take(path: &Path, stage: &str) -> Option<Approval> {
    let text = crate::inputs::read_text_file(path).ok()?;
    let approval = match serde_json::from_str::<Approval>(&text) {
        Ok(approval) => approval,
        Err(_) => Approval {
            stage: None,
            approved_by: Some("approval file".to_string()),
            at: None,
        },
    };
    if let Some(approved) = &approval.stage
        && approved != stage
    {
        return None;
    }
    let _ = std::fs::remove_file(path);
    Some(approval)
}

/// Whether the file holds an approval for a different stage (to tell the person waiting).
pub(crate) fn other_stage(path: &Path, stage: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str::<Approval>(&text)
        .ok()?
        .stage
        .filter(|approved| approved != stage)
}

/// Writes an approval atomically (for `--resume`).
pub(crate) fn write(path: &Path, approval: &Approval) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(approval).unwrap_or_else(|_| "{}".to_string());
    crate::util::write_atomic(path, crate::secret::redact(&text).as_bytes())
}

/// The stage `shipgate rollout --resume` approves: the one `requested` (`--approve-stage`), which
/// must be the one a waiting rollout (`waiting`) waits for, else the waiting one.
pub(crate) fn stage_to_approve(
    state: &StateDir,
    requested: Option<&str>,
    waiting: Option<&Pause>,
) -> Result<String> {
    let stage = match (requested, waiting) {
        (Some(stage), Some(pause)) if stage != pause.stage => {
            return Err(Error::usage(format!(
                "the rollout of deployment `{}` waits for stage `{}`, not `{stage}`; approve `{}` or leave out `--approve-stage`",
                state.id(),
                pause.stage,
                pause.stage
            )));
        }
        (Some(stage), _) => stage.to_string(),
        (None, Some(pause)) => pause.stage.clone(),
        (None, None) => {
            return Err(Error::usage(format!(
                "no rollout of deployment `{}` is waiting for an approval (no `{PAUSE_FILE}` in `{}`); to approve a stage before the rollout reaches it, name it with `--approve-stage`",
                state.id(),
                state.dir().display()
            )));
        }
    };
    crate::inputs::check_name("stage name", &stage)?;
    Ok(stage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approvals_are_taken_once_and_only_for_their_stage() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("approve");
        assert!(take(&path, "full").is_none());
        write(
            &path,
            &Approval {
                stage: Some("progressive".into()),
                approved_by: Some("ops".into()),
                at: None,
            },
        )
        .expect("write");
        assert!(take(&path, "full").is_none());
        assert_eq!(other_stage(&path, "full").as_deref(), Some("progressive"));
        let taken = take(&path, "progressive").expect("approved");
        assert_eq!(taken.approved_by.as_deref(), Some("ops"));
        assert!(!path.exists());
        std::fs::write(&path, "").expect("touch");
        assert!(take(&path, "full").is_some());
    }
}
