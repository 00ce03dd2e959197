//! What a finished backup reports: `backup.json` and the step summary.

use std::time::Instant;

use super::dump::Known;
use super::restore::manual_restore;
use super::sidecar::Sidecar;
use crate::actions::Table;
use crate::error::{Error, Result};
use crate::state::backup::{BackupFile, BackupOutcome, Failed, Taken};
use crate::state::{Header, StateDir};
use crate::ui::mark::{PASS, WARN};

/// Writes `backup.json` for the backup `sidecar` describes (taken by the run that started at
/// `ran_at`, or reused).
pub(crate) fn save(
    state: &StateDir,
    sidecar: &Sidecar,
    reused: bool,
    environment: &str,
    started: Instant,
    ran_at: &str,
) -> Result<(BackupFile, Taken)> {
    let log_file = state
        .path(&format!("backup-logs-{}.log", state.id()))
        .display()
        .to_string();
    let mut header = Header::now::<BackupFile>("pass");
    header.timestamp = sidecar.timestamp.clone();
    header.duration_ms = Some(started.elapsed().as_millis() as u64);
    let taken = Taken {
        environment: environment.to_string(),
        backup_id: sidecar.backup_id.clone(),
        location: sidecar.location.clone(),
        sidecar_location: sidecar.sidecar_location.clone(),
        size: sidecar.size,
        uncompressed_size: sidecar.uncompressed_size,
        sha256: sidecar.sha256.clone(),
        compression: sidecar.compression,
        compression_level: sidecar.compression_level,
        format: sidecar.format,
        parts: sidecar.parts,
        verified: sidecar.verified,
        verification: sidecar.verification.clone(),
        reused,
        database: sidecar.database.clone(),
        server_version: sidecar.server_version.clone(),
        client_version: sidecar.client_version.clone(),
    };
    let file = BackupFile {
        header,
        ran_at: ran_at.to_string(),
        deployment_id: state.id().to_string(),
        log_file,
        outcome: BackupOutcome::Taken(Box::new(taken.clone())),
    };
    state.save(&file)?;
    Ok((file, taken))
}

/// Writes `backup.json` for a run that failed with `error`, saying how far it got (`known`).
pub(crate) fn save_failure(
    state: &StateDir,
    known: &Known,
    error: &Error,
    started: Instant,
    ran_at: &str,
) -> Result<()> {
    let log_path = state.path(&format!("backup-logs-{}.log", state.id()));
    let reason = error.to_string();
    let mut header = Header::now::<BackupFile>("fail");
    header.timestamp = ran_at.to_string();
    header.duration_ms = Some(started.elapsed().as_millis() as u64);
    state.save(&BackupFile {
        header,
        ran_at: ran_at.to_string(),
        deployment_id: state.id().to_string(),
        log_file: log_path.display().to_string(),
        outcome: BackupOutcome::Failed(Failed {
            backup_id: known.backup_id.clone(),
            location: known.location.clone(),
            published: known.published,
            reason,
            exit_code: error.kind().exit_code(),
        }),
    })?;
    Ok(())
}

/// The step summary of a finished backup, with the manual restore.
pub(crate) fn summary(file: &BackupFile, result: &Taken) -> String {
    let mut table = Table::new(&["", ""]);
    table.row(&["Backup id", &format!("`{}`", result.backup_id)]);
    table.row(&["Location", &format!("`{}`", result.location)]);
    table.row(&[
        "Size",
        &format!(
            "{} (gzip level {}; {} dumped, {} format)",
            crate::ui::bytes(result.size),
            result.compression_level,
            crate::ui::bytes(result.uncompressed_size),
            result.format.name()
        ),
    ]);
    table.row(&["SHA-256", &format!("`{}`", result.sha256)]);
    let verified = match &result.verification {
        Some(v) if v.mode == "restore" => format!(
            "{PASS} read back, SHA-256 matched, restored into a scratch database: {} tables with identical row counts",
            v.tables.unwrap_or(0)
        ),
        Some(v) => format!(
            "{PASS} read back, SHA-256 matched, {} decompressed and read in full",
            crate::ui::bytes(v.read_bytes)
        ),
        None => format!("{WARN} not verified (`verify: none`)"),
    };
    table.row(&["Verified", &verified]);
    table.row(&[
        "Database",
        &format!(
            "`{}` on PostgreSQL {} (pg_dump {})",
            result.database, result.server_version, result.client_version
        ),
    ]);
    table.row(&["Taken", &file.header.timestamp]);
    table.row(&[
        "Reused",
        if result.reused {
            "yes: this deployment's backup already existed, so it was not dumped again"
        } else {
            "no"
        },
    ]);
    format!(
        "### {PASS} Database backup `{}`\n\n{}\nRestore with `shipgate restore --location {} --yes`, or by hand:\n\n```sh\n{}```\n",
        result.backup_id,
        table.render(),
        result.location,
        manual_restore(&result.location, result.format, Some(&result.sha256)).unwrap_or_default()
    )
}
