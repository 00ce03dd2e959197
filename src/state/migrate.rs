//! `migrate.json`: what the migration command applied, under which lock, and how it ended.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Header, StateFile};

/// `migrate.json`, and `migrate`'s `--format json` object.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct MigrateFile {
    #[serde(flatten)]
    pub(crate) header: Header,
    pub(crate) deployment_id: String,
    pub(crate) environment: String,
    pub(crate) repository: Option<String>,
    pub(crate) database: String,
    /// The migration tool(s) whose history table was found; `null` when none was.
    pub(crate) tool: Option<String>,
    /// `null` when unknown (no history table, or one that keeps only the current version).
    pub(crate) applied_count: Option<u64>,
    pub(crate) applied: Vec<String>,
    pub(crate) failed: Vec<String>,
    pub(crate) history_tables: Vec<HistoryTable>,
    pub(crate) migration_command: String,
    pub(crate) shell: bool,
    pub(crate) exit_code: Option<i32>,
    pub(crate) signal: Option<i32>,
    pub(crate) timed_out: bool,
    pub(crate) cancelled: bool,
    pub(crate) command_duration_ms: Option<u64>,
    /// The command's deadline (`timeout`).
    pub(crate) timeout_ms: u64,
    /// Decimal text: JSON readers may not hold 64-bit integers exactly.
    pub(crate) lock_key: String,
    pub(crate) lock_key_source: String,
    pub(crate) lock_wait_ms: u64,
    /// Who held the lock while this run waited.
    pub(crate) lock_holders: Vec<LockHolder>,
    /// The lock connection ended during the run (the database restarted or the connection was
    /// cut): another run may have overlapped.
    pub(crate) lock_lost: bool,
    /// `PGAPPNAME` of the command: the sessions it opens carry it, and the ones still there when
    /// it ends (or when shipgate dies) are stopped before the lock is released.
    pub(crate) application_name: String,
    /// The command exited but left processes behind (stopped; see `warning`).
    pub(crate) left_processes: bool,
    /// Database sessions of the command still there after it ended, stopped before the lock
    /// was released.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) stopped_sessions: Vec<SessionSeen>,
    /// What the command left behind, and what became of it.
    pub(crate) warning: Option<String>,
    pub(crate) backup_required: bool,
    pub(crate) backup: Option<BackupRef>,
    pub(crate) log_file: String,
    /// The last lines of the command's output (redacted) when it failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) output_tail: Vec<String>,
    pub(crate) error: Option<String>,
}

impl StateFile for MigrateFile {
    const FILE: &'static str = "migrate.json";
    const COMMAND: &'static str = "migrate";
}

/// One history table in `migrate.json`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct HistoryTable {
    pub(crate) schema: String,
    pub(crate) table: String,
    pub(crate) tool: String,
    /// `None`: the table did not exist yet.
    pub(crate) rows_before: Option<usize>,
    pub(crate) rows_after: usize,
    /// For tables that keep only the current version(s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) versions_before: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) versions_after: Option<Vec<String>>,
}

/// The backup this run relies on, from `backup.json`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct BackupRef {
    pub(crate) backup_id: Option<String>,
    pub(crate) location: Option<String>,
    pub(crate) verified: bool,
}

/// A session holding an advisory lock, as another client sees it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub(crate) struct LockHolder {
    pub(crate) pid: Option<i64>,
    pub(crate) application_name: Option<String>,
    pub(crate) user: Option<String>,
    /// Client address, `local socket`, or none when hidden.
    pub(crate) client: Option<String>,
    /// `active`, `idle`, `idle in transaction`, …
    pub(crate) state: Option<String>,
    /// When the holder's connection started (RFC 3339 UTC).
    pub(crate) connected_since: Option<String>,
    pub(crate) connected_for_secs: Option<u64>,
}

/// A session found by `Session::stop_sessions`, as it was before it was stopped.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub(crate) struct SessionSeen {
    pub(crate) pid: Option<i64>,
    /// `active`, `idle`, `idle in transaction`, …
    pub(crate) state: Option<String>,
    /// Its current or last query (200 characters, one line, redacted).
    pub(crate) query: Option<String>,
}
