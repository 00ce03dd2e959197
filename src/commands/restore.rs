//! `shipgate restore` (seed 004 "Rollback Procedure", step 3): fetch a backup by id, location
//! or deployment record, check its SHA-256 against its sidecar BEFORE touching the database,
//! then restore it in a single transaction and report per-table row counts.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::backup::{self, StoreArgs};
use super::{Outcome, set_outputs};
use crate::actions;
use crate::backup::restore::{
    Chosen, RestoreResult, Which, location_in_record, restore, state_of, summary,
};
use crate::backup::say;
use crate::backup::sidecar::Sidecar;
use crate::backup::verify::compare_backup_tables;
use crate::error::{Error, Result};
use crate::postgres::Database;
use crate::process::{LogFile, SharedLog, Shutdown};
use crate::settings::{self, Settings};
use crate::state::StateDir;
use crate::state::backup::BackupFile;
use crate::util::HumanDuration;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The backup to restore: `backup-<deployment-id>` (or the deployment id) in the
    /// destination, or `latest` for the newest complete one there (input `backup-id`)
    #[arg(long, value_name = "ID")]
    pub(crate) backup_id: Option<String>,
    /// The dump's URL: `s3://bucket/prefix/backup-<id>.sql.gz` or `file:///dir/…` (input
    /// `backup-location`)
    #[arg(long, value_name = "URL")]
    pub(crate) location: Option<String>,
    /// A deployment record (JSON) whose `database_backup.location` names the backup (input
    /// `record`)
    #[arg(long, value_name = "FILE")]
    pub(crate) record: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    /// Restore without asking; required when stdin is not a terminal (input `confirm: true`)
    #[arg(long)]
    pub(crate) yes: bool,
    /// Deadline for the download and the restore (input `restore-timeout`) [default: 6h]
    #[arg(long, value_name = "DURATION")]
    pub(crate) timeout: Option<HumanDuration>,
    /// Directory of the PostgreSQL client tools (input `pg-bin-dir`) [default: PATH]
    #[arg(long, value_name = "DIR")]
    pub(crate) pg_bin_dir: Option<PathBuf>,
    /// Where an S3 download is kept while its SHA-256 is checked, and a directory backup is
    /// decompressed (input `work-dir`) [default: TMPDIR]
    #[arg(long, value_name = "DIR")]
    pub(crate) work_dir: Option<PathBuf>,
    /// Files downloaded at once and `pg_restore --jobs` for a directory backup, 1 to 64 (input
    /// `jobs`) [default: the available cores, at most 8]
    #[arg(long, value_name = "N")]
    pub(crate) jobs: Option<String>,
}

pub(crate) async fn run(args: &Args, settings: &Settings) -> Result<Outcome> {
    let shutdown = Shutdown::listen();
    let started = Instant::now();
    let timeout = settings.duration("restore-timeout", args.timeout, None, DEFAULT_TIMEOUT)?;
    let deadline = tokio::time::Instant::now() + timeout;
    let which = choose(args, settings)?;
    let jobs = backup::jobs(settings, args.jobs.as_deref())?;
    // The same S3 settings (`--endpoint-url`, region, path style) however the backup is named.
    let storage = backup::open_storage(which.location(), &args.store, settings).await?;
    let sidecar = tokio::select! {
        read = which.read(&storage, &shutdown) => read?,
        signal = shutdown.recv() => return Err(Error::timeout(format!("cancelled by {signal}; the database was not touched"))),
        _ = tokio::time::sleep_until(deadline) => return Err(Error::timeout("the restore timed out before it started; the database was not touched")),
    };
    let deployment_id = settings
        .deployment_id
        .clone()
        .unwrap_or_else(|| sidecar.deployment_id.clone());
    let state = StateDir::create(&settings.state_root, &deployment_id)?;
    let log_path = state.path(&format!("restore-logs-{deployment_id}.log"));
    let log: SharedLog = Arc::new(std::sync::Mutex::new(LogFile::append(&log_path)?));
    say(
        &log,
        &format!(
            "restoring `{}` ({}, {}, taken {})",
            sidecar.backup_id,
            sidecar.location,
            crate::ui::bytes(sidecar.size),
            sidecar.timestamp
        ),
    );
    let bin_dir = backup::pg_bin_dir(settings, args.pg_bin_dir.as_ref());
    let target = match settings::secret("target-database-url", &[]) {
        Some(url) => Database::from_url("`target-database-url`", &url)?.with_bin_dir(bin_dir),
        None => backup::source_database(bin_dir).map_err(|_| {
            Error::usage(
                "no database to restore into: set the `target-database-url` input (from a secret), or `database-url` / DATABASE_URL",
            )
        })?,
    };
    let committed = std::sync::atomic::AtomicBool::new(false);
    let work = async {
        confirm(args, settings, &target, &sidecar).await?;
        let work_dir = backup::work_dir(settings, args.work_dir.as_ref());
        restore(
            &work_dir, &storage, &sidecar, &target, jobs, &log, &committed,
        )
        .await
    };
    let outcome = tokio::select! {
        result = work => result,
        signal = shutdown.recv() => Err(Error::timeout(format!(
            "cancelled by {signal}; {}",
            state_of(&committed)
        ))),
        _ = tokio::time::sleep_until(deadline) => Err(Error::timeout(format!(
            "the restore did not finish within {} (`restore-timeout`); {}",
            crate::ui::format_duration(timeout),
            state_of(&committed)
        ))),
    };
    let counts = match outcome {
        Ok(counts) => counts,
        Err(error) => {
            let reason = error.to_string();
            say(&log, &format!("failed: {reason}"));
            state.write_json(
                "restore.json",
                &json!({
                    "schema_version": 1,
                    "command": "restore",
                    "result": "fail",
                    "timestamp": crate::util::now_rfc3339(),
                    "duration_ms": started.elapsed().as_millis() as u64,
                    "deployment_id": deployment_id,
                    "backup_id": sidecar.backup_id,
                    "location": sidecar.location,
                    "target_database": target.name(),
                    "target": target.display(),
                    "reason": reason,
                    "exit_code": error.kind().exit_code(),
                    "log_file": log_path.display().to_string(),
                }),
            )?;
            return Err(error);
        }
    };
    let counts_match = sidecar
        .row_counts
        .as_ref()
        .map(|expected| compare_backup_tables(expected, &counts));
    let result = RestoreResult::new(
        &deployment_id,
        &sidecar,
        &target,
        counts,
        counts_match.as_ref().map(|c| c.is_ok()),
        started,
        &log_path,
    );
    state.write_json("restore.json", &result)?;
    set_outputs(&[
        ("result", result.result.to_string()),
        ("backup-id", result.backup_id.clone()),
        ("location", result.location.clone()),
        ("tables", result.tables.to_string()),
        ("rows", result.rows.to_string()),
    ])?;
    actions::append_summary(&summary(&result, sidecar.row_counts.as_ref()))?;
    if let Some(Err(diff)) = counts_match {
        return Err(Error::gate(format!(
            "`{}` was restored into `{}`, but its row counts differ from those recorded when the backup was taken: {diff}",
            result.backup_id, result.target_database
        )));
    }
    say(
        &log,
        &format!(
            "restored `{}` into `{}`: {} tables, {} rows",
            result.backup_id, result.target_database, result.tables, result.rows
        ),
    );
    let json = serde_json::to_value(&result).unwrap_or_else(|_| json!({}));
    Ok(Outcome::success(json))
}

/// Picks the backup: `--location`, `--backup-id` (in the destination), `--record`, else the
/// state directory's `backup.json`. Exactly one way.
fn choose(args: &Args, settings: &Settings) -> Result<Which> {
    let location = settings.text("backup-location", args.location.clone(), None);
    let backup_id = settings.text("backup-id", args.backup_id.clone(), None);
    let record = settings
        .text(
            "record",
            args.record.as_ref().map(|p| p.display().to_string()),
            None,
        )
        .map(PathBuf::from);
    let given = [location.is_some(), backup_id.is_some(), record.is_some()]
        .iter()
        .filter(|g| **g)
        .count();
    if given > 1 {
        return Err(Error::usage(
            "name the backup one way only: `--backup-id`, `--location` or `--record`",
        ));
    }
    let destination = backup::destination(&args.store, settings)?;
    if let Some(url) = location {
        return Ok(Which::Named(Chosen::from_url(
            &url,
            format!("at {}", actions::quote(&url)),
        )?));
    }
    if let Some(id) = backup_id {
        return Which::from_id(&id, destination);
    }
    if let Some(path) = record {
        let url = location_in_record(&path)?;
        return Ok(Which::Named(Chosen::from_url(
            &url,
            format!("from the record `{}`", path.display()),
        )?));
    }
    let state = StateDir::open(settings).map_err(|_| {
        Error::usage(
            "which backup? pass `--backup-id`, `--location` or `--record`, or `--deployment-id` of a deployment whose `backup.json` is in the state directory",
        )
    })?;
    let Some(backup) = state.load::<BackupFile>()? else {
        return Err(Error::usage(format!(
            "deployment `{}` has no `backup.json` in `{}`; pass `--backup-id`, `--location` or `--record`",
            state.id(),
            state.dir().display()
        )));
    };
    let url = backup
        .taken()
        .map(|taken| taken.location.clone())
        .ok_or_else(|| {
            Error::gate(format!(
                "the backup of deployment `{}` did not succeed (see `{}`); there is nothing to restore from it",
                state.id(),
                state.path("backup.json").display()
            ))
        })?;
    Ok(Which::Named(Chosen::from_url(
        &url,
        format!("of deployment `{}`", state.id()),
    )?))
}

/// `--yes` / `confirm: true`, or the database's name typed at a terminal.
async fn confirm(
    args: &Args,
    settings: &Settings,
    target: &Database,
    sidecar: &Sidecar,
) -> Result<()> {
    if settings.switch("confirm", args.yes, None, false)? {
        return Ok(());
    }
    let what = format!(
        "restoring `{}` (taken {}) replaces the objects it contains in `{}`",
        sidecar.backup_id,
        sidecar.timestamp,
        target.display()
    );
    if !std::io::stdin().is_terminal() {
        return Err(Error::usage(format!(
            "{what}; refusing without confirmation because stdin is not a terminal: pass `--yes` (input `confirm: true`)"
        )));
    }
    actions::emit(&format!(
        "{what}.\nType the database name `{}` to continue: ",
        target.name()
    ));
    // A plain thread, not the runtime's blocking pool: if a signal or the deadline ends the
    // wait, shipgate exits without waiting for this read.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = tx.send(std::io::stdin().read_line(&mut line).map(|_| line));
    });
    let answer = rx
        .await
        .map_err(|e| Error::usage(format!("cannot read the answer: {e}")))?
        .map_err(|e| Error::usage(format!("cannot read the answer: {e}")))?;
    if answer.trim() == target.name() {
        Ok(())
    } else {
        Err(Error::usage("not confirmed; nothing was restored"))
    }
}
