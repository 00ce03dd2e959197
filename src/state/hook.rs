//! A hook's run as the state files record it (`rollout.json` `hooks[]`, `rollback.json` `hook`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What running a hook did: every attempt with its exit code or HTTP status and duration.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct HookRun {
    /// `stage hook`, `rollback hook`.
    pub(crate) hook: String,
    /// `command` or `webhook`.
    pub(crate) kind: String,
    /// The command (redacted); absent for a webhook.
    pub(crate) command: Option<String>,
    /// `stage` or `rollback`.
    pub(crate) event: String,
    pub(crate) stage: String,
    pub(crate) weight: u8,
    pub(crate) ok: bool,
    /// Stopped by SIGTERM/SIGINT.
    pub(crate) cancelled: bool,
    pub(crate) started_at: String,
    pub(crate) duration_ms: u64,
    pub(crate) attempts: Vec<Attempt>,
}

/// One attempt of a hook.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Attempt {
    pub(crate) exit_code: Option<i32>,
    pub(crate) signal: Option<i32>,
    pub(crate) http_status: Option<u16>,
    pub(crate) timed_out: bool,
    pub(crate) duration_ms: u64,
    /// Why the attempt failed, when it did.
    pub(crate) error: Option<String>,
    /// The command exited but left processes behind (in its process group, or holding its
    /// output open); they were stopped, and the attempt is judged by the exit status alone.
    pub(crate) left_processes: bool,
    /// What it left behind, and what became of it.
    pub(crate) warning: Option<String>,
}
