//! `drill.json`: a restore drill — which backup, how long the restore took (RTO), how old the
//! backup was (RPO), and the verdict of every parity check.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::backup::MigrationVersion;
use super::record::Publication;
use super::{Header, StateFile};

/// `drill.json`, and `drill`'s `--format json` object. `result` is `pass` when every check and
/// target passed, else `fail`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct DrillFile {
    #[serde(flatten)]
    pub(crate) header: Header,
    pub(crate) deployment_id: String,
    pub(crate) backup_id: String,
    /// `s3://…` or `file://…` of the dump restored.
    pub(crate) location: String,
    /// When the backup was taken (the sidecar's `timestamp`, RFC 3339).
    pub(crate) backup_timestamp: String,
    /// The scratch database restored into, on the `drill-database-url` server.
    pub(crate) scratch_database: String,
    /// Whether the scratch database was dropped afterwards (`false` with `--keep`, or when the
    /// drop failed: `reason` says which).
    pub(crate) scratch_dropped: bool,
    /// Fetch, SHA-256 check, restore and row count, in seconds.
    pub(crate) rto_seconds: f64,
    /// The backup's age when the drill started, in seconds.
    pub(crate) rpo_seconds: f64,
    pub(crate) max_rto_seconds: f64,
    pub(crate) max_rpo_seconds: f64,
    pub(crate) tables: usize,
    pub(crate) rows: u64,
    /// Rows per table after the restore (`schema.table`).
    pub(crate) row_counts: BTreeMap<String, u64>,
    /// The schema version of each migration history table after the restore.
    pub(crate) migration_versions: Vec<MigrationVersion>,
    /// One verdict per check, in the order they ran.
    pub(crate) checks: Vec<Check>,
    /// Why the drill failed (the first failed check or target, or the error that stopped it).
    pub(crate) reason: Option<String>,
    pub(crate) log_file: String,
    /// The drill report's Markdown and JSON files.
    pub(crate) report: Vec<String>,
    /// What became of the `drill-report-<id>` artifact.
    pub(crate) artifacts: Option<Publication>,
}

impl StateFile for DrillFile {
    const FILE: &'static str = "drill.json";
    const COMMAND: &'static str = "drill";
}

/// One check's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Check {
    /// `rto`, `rpo`, `row-counts`, `schema-version`, `indexes`, `constraints`, `smoke`.
    pub(crate) name: String,
    /// `pass`, `fail` or `skipped`.
    pub(crate) verdict: String,
    /// What was measured or found, naming the values (a table and both counts, an index).
    pub(crate) detail: String,
}
