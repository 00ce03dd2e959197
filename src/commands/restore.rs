//! `shipgate restore` (seed 004 "Rollback Procedure", step 3): fetch a backup by id, location
//! or deployment record, check its SHA-256 against its sidecar BEFORE touching the database,
//! then restore it in a single transaction and report per-table row counts.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;
use sha2::Digest as _;
use tokio::io::AsyncWriteExt as _;

use super::backup::{self, StoreArgs};
use super::{Outcome, set_outputs};
use crate::actions::{self, Table};
use crate::backup::archive::{self, Progress, Source};
use crate::backup::restore::restore_spec;
use crate::backup::sidecar::{SIDECAR_LIMIT, Sidecar, check_sidecar};
use crate::backup::verify::compare_counts;
use crate::error::{Error, Result, ResultExt};
use crate::postgres::Database;
use crate::process::{LogFile, SharedLog, Shutdown};
use crate::settings::{self, Settings};
use crate::state::StateDir;
use crate::state::backup::{BackupFile, DumpFormat};
use crate::storage::{Location, Storage};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
/// Per-table rows shown in the summary.
const SUMMARY_TABLES: usize = 100;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The backup to restore: `backup-<deployment-id>` (or the deployment id) in the
    /// destination (input `backup-id`)
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
    pub(crate) timeout: Option<String>,
    /// Directory of the PostgreSQL client tools (input `pg-bin-dir`) [default: PATH]
    #[arg(long, value_name = "DIR")]
    pub(crate) pg_bin_dir: Option<PathBuf>,
    /// Where an S3 download is kept while its SHA-256 is checked (input `work-dir`) [default:
    /// TMPDIR]
    #[arg(long, value_name = "DIR")]
    pub(crate) work_dir: Option<PathBuf>,
}

/// `restore.json`, and the `--format json` object.
#[derive(Debug, Serialize)]
struct RestoreResult {
    schema_version: u32,
    command: &'static str,
    result: &'static str,
    timestamp: String,
    duration_ms: u64,
    deployment_id: String,
    backup_id: String,
    location: String,
    sha256: String,
    size: u64,
    format: DumpFormat,
    backup_timestamp: String,
    target_database: String,
    target: String,
    tables: usize,
    rows: u64,
    row_counts: BTreeMap<String, u64>,
    /// Whether the restored counts equal those recorded at backup time (`verify: restore`
    /// backups only).
    counts_match: Option<bool>,
    log_file: String,
}

/// Which backup, and where it lives.
struct Chosen {
    location: Location,
    /// The sidecar's name in `location`.
    sidecar: String,
    /// How the user named it, for messages.
    named: String,
}

pub(crate) async fn run(args: &Args, settings: &Settings) -> Result<Outcome> {
    let shutdown = Shutdown::listen();
    let started = Instant::now();
    let timeout = match settings.text("restore-timeout", args.timeout.clone(), None) {
        Some(text) => crate::util::parse_duration(&text)
            .map_err(|e| Error::usage(format!("`restore-timeout`: {e}")))?,
        None => DEFAULT_TIMEOUT,
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let chosen = choose(args, settings)?;
    // The same S3 settings (`--endpoint-url`, region, path style) however the backup is named.
    let storage = backup::open_storage(&chosen.location, &args.store, settings).await?;
    let sidecar_url = storage.url(&chosen.sidecar);
    let sidecar_bytes = tokio::select! {
        read = storage.read_small(&chosen.sidecar, SIDECAR_LIMIT) => read.context(format!("cannot read the backup's sidecar `{sidecar_url}`"))?,
        signal = shutdown.recv() => return Err(Error::timeout(format!("cancelled by {signal}; the database was not touched"))),
        _ = tokio::time::sleep_until(deadline) => return Err(Error::timeout("the restore timed out before it started; the database was not touched")),
    };
    let sidecar: Sidecar = match sidecar_bytes {
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            Error::gate(format!(
                "`{sidecar_url}` is not a shipgate backup sidecar ({e}); refusing to restore"
            ))
        })?,
        None => {
            return Err(Error::gate(format!(
                "no backup {}: its sidecar `{sidecar_url}` does not exist (a backup without its sidecar is incomplete); check the id or location",
                chosen.named
            )));
        }
    };
    check_sidecar(&sidecar, &sidecar_url)?;
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
            archive::bytes(sidecar.size),
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
        restore(args, &storage, &sidecar, &target, &log, &committed).await
    };
    let outcome = tokio::select! {
        result = work => result,
        signal = shutdown.recv() => Err(Error::timeout(format!(
            "cancelled by {signal}; {}",
            state_of(&committed)
        ))),
        _ = tokio::time::sleep_until(deadline) => Err(Error::timeout(format!(
            "the restore did not finish within {} (`restore-timeout`); {}",
            crate::util::format_duration(timeout),
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
        .map(|expected| compare_counts(expected, &counts));
    let result = RestoreResult {
        schema_version: 1,
        command: "restore",
        result: if matches!(counts_match, Some(Err(_))) {
            "fail"
        } else {
            "pass"
        },
        timestamp: crate::util::now_rfc3339(),
        duration_ms: started.elapsed().as_millis() as u64,
        deployment_id: deployment_id.clone(),
        backup_id: sidecar.backup_id.clone(),
        location: sidecar.location.clone(),
        sha256: sidecar.sha256.clone(),
        size: sidecar.size,
        format: sidecar.format,
        backup_timestamp: sidecar.timestamp.clone(),
        target_database: target.name().to_string(),
        target: target.display().to_string(),
        tables: counts.len(),
        rows: counts.values().sum(),
        row_counts: counts.clone(),
        counts_match: counts_match.as_ref().map(|c| c.is_ok()),
        log_file: log_path.display().to_string(),
    };
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

/// What a stopped restore left behind.
fn state_of(committed: &std::sync::atomic::AtomicBool) -> &'static str {
    if committed.load(std::sync::atomic::Ordering::SeqCst) {
        "the restore had already committed; only the row counts are missing"
    } else {
        "it was stopped before its transaction committed, so the database is unchanged"
    }
}

fn say(log: &SharedLog, text: &str) {
    tracing::info!("{text}");
    if let Ok(mut log) = log.lock() {
        log.line(&format!("[{}] {text}", crate::util::now_rfc3339()));
    }
}

/// Picks the backup: `--location`, `--backup-id` (in the destination), `--record`, else the
/// state directory's `backup.json`. Exactly one way.
fn choose(args: &Args, settings: &Settings) -> Result<Chosen> {
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
    let from_url = |url: &str, named: String| -> Result<Chosen> {
        let (location, name) = Location::split_object(url)?;
        let stem = [".sql.gz", ".dump.gz", ".json"]
            .iter()
            .find_map(|ext| name.strip_suffix(ext))
            .ok_or_else(|| {
                Error::usage(format!(
                    "{} does not name a shipgate backup (`backup-<id>.sql.gz`, `.dump.gz` or `.json`)",
                    actions::quote(url)
                ))
            })?;
        Ok(Chosen {
            sidecar: format!("{stem}.json"),
            location,
            named,
        })
    };
    if let Some(url) = location {
        return from_url(&url, format!("at {}", actions::quote(&url)));
    }
    if let Some(id) = backup_id {
        let id = id.strip_prefix("backup-").unwrap_or(&id).to_string();
        crate::state::check_deployment_id(&id)?;
        let Some(location) = destination else {
            return Err(Error::usage(format!(
                "`--backup-id backup-{id}` needs the destination it lives in: pass `--destination s3://bucket/prefix` (input `destination`)"
            )));
        };
        return Ok(Chosen {
            sidecar: format!("backup-{id}.json"),
            named: format!("`backup-{id}` in `{}`", location.display()),
            location,
        });
    }
    if let Some(path) = record {
        let url = location_in_record(&path)?;
        return from_url(&url, format!("from the record `{}`", path.display()));
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
    from_url(&url, format!("of deployment `{}`", state.id()))
}

/// `database_backup.location` of a deployment record (seed 004 §8), or a top-level
/// `location` (a `backup.json`).
fn location_in_record(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::usage(format!("cannot read the record `{}`: {e}", path.display())))?;
    /// What restore reads of a deployment record (or of a `backup.json`).
    #[derive(serde::Deserialize)]
    struct Named {
        database_backup: Option<Located>,
        location: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Located {
        location: String,
    }
    let named: Named = serde_json::from_str(&text).map_err(|e| {
        Error::usage(format!(
            "the record `{}` is not a deployment record: {e}",
            path.display()
        ))
    })?;
    named
        .database_backup
        .map(|b| b.location)
        .or(named.location)
        .ok_or_else(|| {
            Error::usage(format!(
                "the record `{}` names no backup (`database_backup.location`)",
                path.display()
            ))
        })
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

/// A downloaded copy, removed when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Downloads (or opens) the backup, checks it against its sidecar, restores it, counts rows.
async fn restore(
    args: &Args,
    storage: &Storage,
    sidecar: &Sidecar,
    target: &Database,
    log: &SharedLog,
    committed: &std::sync::atomic::AtomicBool,
) -> Result<BTreeMap<String, u64>> {
    let url = storage.url(&sidecar.object);
    let group = actions::group(&format!("Fetch and check `{url}`"));
    let mut _temp = None;
    let path = match storage.local_path(&sidecar.object) {
        Some(path) => path,
        None => {
            let dir = args
                .work_dir
                .clone()
                .or_else(|| settings::input("work-dir").map(PathBuf::from))
                .unwrap_or_else(std::env::temp_dir);
            let path = dir.join(format!(
                "shipgate-restore-{}.gz",
                crate::util::random_hex(8)
            ));
            _temp = Some(TempFile(path.clone()));
            download(storage, &sidecar.object, &path).await?;
            path
        }
    };
    let (size, sha256) = hash_file(&path).await?;
    if size != sidecar.size || sha256 != sidecar.sha256 {
        return Err(Error::gate(format!(
            "`{url}` is {size} bytes with SHA-256 {sha256}, but its sidecar records {} bytes with SHA-256 {}: the backup is corrupted; the database was not touched",
            sidecar.size, sidecar.sha256
        )));
    }
    say(
        log,
        &format!("`{url}` matches its sidecar (SHA-256 {sha256})"),
    );
    drop(group);

    let (server_version, server_major) = target
        .server_version()
        .await
        .context(format!("cannot connect to `{}`", target.display()))?;
    let dump_major = sidecar
        .server_version
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok())
        .unwrap_or(0);
    if dump_major > server_major {
        actions::annotate(
            actions::Level::Warning,
            Some("shipgate restore"),
            &format!(
                "the backup comes from PostgreSQL {} and `{}` runs {server_version}: restoring into an older server is not guaranteed to work",
                sidecar.server_version,
                target.name()
            ),
        );
    }

    let _group = actions::group(&format!("Restore into `{}`", target.display()));
    let spec = restore_spec(target, sidecar.format);
    say(log, &format!("$ {}", spec.display()));
    let file = std::fs::File::open(&path)
        .map_err(|e| Error::dependency(format!("cannot open `{}`: {e}", path.display())))?;
    let progress = Arc::new(Progress::new());
    let fed = archive::feed_tool(
        &spec,
        Source::File(file),
        Some(&sidecar.sha256),
        &progress,
        log,
    )
    .await?;
    if fed.tool_failed() {
        return Err(Error::dependency(format!(
            "the restore into `{}` failed ({}); it ran in one transaction, so the database is unchanged",
            target.display(),
            fed.tool_failure()
        )));
    }
    if let Err(e) = &fed.read {
        return Err(Error::gate(format!(
            "`{url}` could not be read in full while restoring ({e}); the restore was stopped before its transaction committed, so the database is unchanged"
        )));
    }
    committed.store(true, std::sync::atomic::Ordering::SeqCst);
    say(
        log,
        &format!("restored into `{}`; counting rows", target.display()),
    );
    let counts = target.row_counts().await.context(format!(
        "restored, but cannot count the rows of `{}`",
        target.display()
    ))?;
    Ok(counts)
}

async fn download(storage: &Storage, object: &str, path: &Path) -> Result<()> {
    let url = storage.url(object);
    let mut download = storage
        .get(object)
        .await
        .context(format!("cannot download `{url}`"))?
        .ok_or_else(|| {
            Error::gate(format!(
                "`{url}` does not exist although its sidecar does: the backup is broken"
            ))
        })?;
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .await
        .map_err(|e| {
            Error::usage(format!(
                "cannot create `{}` for the download: {e}; set `--work-dir` to a writable directory",
                path.display()
            ))
        })?;
    while let Some(chunk) = download
        .next()
        .await
        .context(format!("cannot download `{url}`"))?
    {
        file.write_all(&chunk)
            .await
            .map_err(|e| Error::dependency(format!("cannot write `{}`: {e}", path.display())))?;
    }
    file.sync_all()
        .await
        .map_err(|e| Error::dependency(format!("cannot write `{}`: {e}", path.display())))?;
    Ok(())
}

/// Size and SHA-256 of a file, read on a blocking thread.
async fn hash_file(path: &Path) -> Result<(u64, String)> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::io::Read as _;
        let mut file = std::fs::File::open(&path)?;
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; 1024 * 1024];
        let mut size = 0u64;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        Ok::<_, std::io::Error>((size, archive::hex(&hasher.finalize())))
    })
    .await
    .map_err(|e| Error::dependency(format!("cannot hash the backup: {e}")))?
    .map_err(|e| Error::dependency(format!("cannot read the backup: {e}")))
}

fn summary(result: &RestoreResult, expected: Option<&BTreeMap<String, u64>>) -> String {
    let heading = if result.result == "pass" {
        format!(
            "### ✅ Restored `{}` into `{}`",
            result.backup_id, result.target_database
        )
    } else {
        format!(
            "### ❌ Restored `{}` into `{}`, but row counts differ",
            result.backup_id, result.target_database
        )
    };
    let mut about = Table::new(&["", ""]);
    about.row(&[
        "Backup",
        &format!("`{}` (taken {})", result.location, result.backup_timestamp),
    ]);
    about.row(&[
        "SHA-256",
        &format!("`{}` ✅ checked before restoring", result.sha256),
    ]);
    about.row(&["Target", &format!("`{}`", result.target)]);
    about.row(&[
        "Restored",
        &format!(
            "{} tables, {} rows, in one transaction",
            result.tables, result.rows
        ),
    ]);
    let mut header = vec!["Table", "Rows"];
    if expected.is_some() {
        header.push("At backup time");
    }
    let mut tables = Table::new(&header);
    for (name, rows) in result.row_counts.iter().take(SUMMARY_TABLES) {
        let mut row = vec![format!("`{name}`"), rows.to_string()];
        if let Some(expected) = expected {
            row.push(match expected.get(name) {
                Some(e) if e == rows => format!("{e} ✅"),
                Some(e) => format!("{e} ❌"),
                None => "— ❌".to_string(),
            });
        }
        tables.row(&row);
    }
    let more = if result.row_counts.len() > SUMMARY_TABLES {
        format!(
            "\n{} more tables in `restore.json`.\n",
            result.row_counts.len() - SUMMARY_TABLES
        )
    } else {
        String::new()
    };
    format!("{heading}\n\n{}\n{}{more}", about.render(), tables.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_name_their_backup() {
        let dir = tempfile::tempdir().expect("temp dir");
        let record = dir.path().join("record.json");
        std::fs::write(
            &record,
            r#"{"deployment_id":"1-abc","database_backup":{"backup_id":"backup-1-abc","location":"s3://b/p/backup-1-abc.sql.gz"}}"#,
        )
        .expect("write");
        assert_eq!(
            location_in_record(&record).ok().as_deref(),
            Some("s3://b/p/backup-1-abc.sql.gz")
        );
        std::fs::write(&record, r#"{"deployment_id":"1"}"#).expect("write");
        assert!(location_in_record(&record).is_err());
    }
}
