//! Reading a backup back before anyone relies on it: SHA-256 and size, an intact gzip stream,
//! a complete dump read in full; with `verify: restore`, restored into a scratch database whose
//! row counts must equal the source's (counted in the dump's own snapshot).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::archive::{self, Progress, Source};
use super::directory::{self, PrivateDir};
use super::restore::restore_spec;
use super::sidecar::ManifestFile;
use super::{log_line, say};
use crate::actions;
use crate::error::{Error, Result, ResultExt};
use crate::postgres::{self, Database};
use crate::process::SharedLog;
use crate::secret::Secret;
use crate::state::backup::{Compression, DumpFormat, MigrationVersion, Verification};
use crate::storage::Storage;

/// How a backup is read back after uploading (`verify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum VerifyMode {
    Sha256,
    Restore,
    None,
}

impl std::str::FromStr for VerifyMode {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "sha256" | "true" => Ok(VerifyMode::Sha256),
            "restore" => Ok(VerifyMode::Restore),
            "none" | "false" => Ok(VerifyMode::None),
            other => Err(format!(
                "`{other}` is not a verification mode; use `sha256`, `restore` or `none`"
            )),
        }
    }
}

impl VerifyMode {
    fn name(self) -> &'static str {
        match self {
            VerifyMode::Sha256 => "sha256",
            VerifyMode::Restore => "restore",
            VerifyMode::None => "none",
        }
    }
}

/// The source as pg_dump will see it: the snapshot exported for `pg_dump --snapshot` by a
/// repeatable-read transaction kept open in `session`, and what was read in that same snapshot.
pub(crate) struct Exported {
    pub(crate) session: postgres::Session,
    pub(crate) name: String,
    /// Every user table's exact row count.
    pub(crate) counts: BTreeMap<String, u64>,
    /// The migration history tables' versions (none when there is no history table).
    pub(crate) versions: Vec<MigrationVersion>,
}

/// Opens a repeatable-read transaction, exports its snapshot (for `pg_dump --snapshot`), and
/// counts every table's rows and reads the migration history in it: exactly what the dump holds.
/// A table locked by another session is waited for at most `lock_wait`, as pg_dump waits
/// (`--lock-wait-timeout`), never forever.
pub(crate) async fn export_snapshot(db: &Database, lock_wait: Duration) -> Result<Exported> {
    let what = || {
        format!(
            "cannot count the rows of `{}` (a table lock not granted within `lock-wait-timeout` {} fails this)",
            db.display(),
            crate::ui::format_duration(lock_wait)
        )
    };
    let mut session = db.session().await.context(what())?;
    let rows = session
        .query(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET LOCAL lock_timeout = '{}ms'; SELECT pg_export_snapshot()",
            lock_wait.as_millis().max(1)
        ))
        .await
        .context(what())?;
    let name = rows
        .first()
        .and_then(|r| r.first())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::dependency(format!("{}: no snapshot was exported", what())))?;
    let counts = session.row_counts().await.context(what())?;
    let history = crate::migrate::history::snapshot_in(&mut session, None).await?;
    Ok(Exported {
        session,
        name,
        counts,
        versions: crate::migrate::history::versions(&history),
    })
}

/// What a stored backup must be.
pub(crate) struct Expected {
    pub(crate) object: String,
    pub(crate) sha256: String,
    pub(crate) size: u64,
    /// Its size decompressed, for the progress of reading it back.
    pub(crate) uncompressed: u64,
    pub(crate) format: DumpFormat,
    pub(crate) compression: Compression,
    /// A directory backup's manifest (its files are under `object`).
    pub(crate) files: Option<Vec<ManifestFile>>,
    /// Files read at once, and `pg_restore --jobs` for `restore`.
    pub(crate) jobs: u32,
    /// Where a directory backup is decompressed for `restore`.
    pub(crate) work_dir: std::path::PathBuf,
}

/// Reads the backup back: SHA-256 and size, an intact gzip stream, a complete dump read in
/// full (custom archives by `pg_restore`); with `restore`, restored into a scratch database
/// whose row counts must equal `source_counts` (on the `verify_database_url` server, else
/// `db`'s).
pub(crate) async fn verify(
    storage: &Storage,
    expected: &Expected,
    mode: VerifyMode,
    db: &Database,
    source_counts: Option<&BTreeMap<String, u64>>,
    verify_database_url: Option<&Secret>,
    log: &SharedLog,
) -> Result<Verification> {
    let _group = actions::group(&format!("Verify `{}`", storage.url(&expected.object)));
    let url = storage.url(&expected.object);
    if let Some(files) = &expected.files {
        return verify_directory(
            storage,
            expected,
            files,
            mode,
            db,
            source_counts,
            verify_database_url,
            log,
        )
        .await;
    }
    let progress = Arc::new(Progress::reading(expected.size, expected.uncompressed));
    let source = || async {
        let download = storage
            .get(&expected.object)
            .await
            .context(format!("cannot read `{url}` back"))?
            .ok_or_else(|| {
                Error::gate(format!("`{url}` disappeared before it could be verified"))
            })?;
        Ok::<_, Error>(Source::Download(download))
    };
    let (read, tables) = match mode {
        VerifyMode::Restore => {
            let counts = source_counts.ok_or_else(|| {
                Error::usage("verification by restore needs the source row counts")
            })?;
            let source = source().await?;
            let restoring = restore_into_scratch(
                db,
                verify_database_url,
                expected.format,
                expected.compression,
                source,
                &progress,
                log,
            );
            let (read, restored) = super::with_progress(log, &progress, restoring).await?;
            compare_counts(counts, &restored).map_err(|diff| {
                Error::gate(format!(
                    "verification failed: `{url}` restored into a scratch database with different row counts than the source: {diff}"
                ))
            })?;
            (read, Some(restored.len()))
        }
        _ => {
            let source = source().await?;
            let read = match expected.format {
                DumpFormat::Plain => {
                    let unpacking = archive::unpack(
                        source,
                        archive::Unpacked::Decompressed(expected.compression),
                        Box::new(std::io::sink()),
                        &progress,
                    );
                    let (read, _) = super::with_progress(log, &progress, unpacking).await;
                    read
                }
                DumpFormat::Custom | DumpFormat::Directory => {
                    // pg_restore reading the whole archive (`--list` would pass a truncated one).
                    let spec = db.spec(
                        "pg_restore",
                        "pg_restore",
                        vec!["--file=/dev/null".to_string()],
                    );
                    let feeding = archive::feed_tool(
                        &spec,
                        source,
                        expected.compression,
                        None,
                        &progress,
                        log,
                    );
                    let fed = super::with_progress(log, &progress, feeding).await?;
                    if fed.tool_failed() {
                        return Err(Error::gate(format!(
                            "verification failed: pg_restore could not read `{url}` in full ({})",
                            fed.tool_failure()
                        )));
                    }
                    fed.read
                }
            };
            (read.map_err(|e| unpack_failure(&url, e))?, None)
        }
    };
    if read.sha256 != expected.sha256 || read.size != expected.size {
        return Err(Error::gate(format!(
            "verification failed: `{url}` read back as {} bytes with SHA-256 {}, but {} bytes with SHA-256 {} were uploaded; the stored object is corrupted",
            read.size, read.sha256, expected.size, expected.sha256
        )));
    }
    archive::looks_complete(expected.format, &read.head, &read.tail)
        .map_err(|reason| Error::gate(format!("verification failed: `{url}`: {reason}")))?;
    Ok(verified(
        log,
        format!(
            "verified `{url}`: SHA-256 matches, {} decompressed and read in full",
            crate::ui::bytes(read.uncompressed)
        ),
        mode,
        read.uncompressed,
        tables,
    ))
}

/// Logs `what` (with the scratch restore's tables, if any) and makes the sidecar's record.
fn verified(
    log: &SharedLog,
    what: String,
    mode: VerifyMode,
    read_bytes: u64,
    tables: Option<usize>,
) -> Verification {
    let restored = match tables {
        Some(n) => {
            format!(", restored into a scratch database with identical row counts in {n} tables")
        }
        None => String::new(),
    };
    say(log, &format!("{what}{restored}"));
    Verification {
        mode: mode.name().to_string(),
        checked_at: crate::util::now_rfc3339(),
        read_bytes,
        tables,
    }
}

/// [`verify`] of a directory backup: every file read back `jobs` at a time, its size and
/// SHA-256 checked and decompressed in full; with `restore`, decompressed into a private
/// directory and restored from it into a scratch database with `pg_restore --jobs`.
#[allow(clippy::too_many_arguments)]
async fn verify_directory(
    storage: &Storage,
    expected: &Expected,
    files: &[ManifestFile],
    mode: VerifyMode,
    db: &Database,
    source_counts: Option<&BTreeMap<String, u64>>,
    verify_database_url: Option<&Secret>,
    log: &SharedLog,
) -> Result<Verification> {
    let url = storage.url(&expected.object);
    let dir = storage.child(expected.object.trim_end_matches('/'));
    let progress = Arc::new(Progress::reading(expected.size, expected.uncompressed));
    let fail = |e: Error| {
        let kind = e.kind();
        Error::new(kind, format!("verification failed: {e}"))
    };
    let (read_bytes, tables, read_how) = match mode {
        VerifyMode::Restore => {
            let counts = source_counts.ok_or_else(|| {
                Error::usage("verification by restore needs the source row counts")
            })?;
            let temp = PrivateDir::new(&expected.work_dir, "verify")?;
            let readable = directory::readable_by_pg_restore(db).await;
            let fetch = directory::Fetch::ForRestore {
                dir: temp.path(),
                readable: &readable,
            };
            let reading = directory::read_all(&dir, files, fetch, expected.jobs, &progress);
            let read = super::with_progress(log, &progress, reading)
                .await
                .map_err(fail)?;
            let server = match verify_database_url {
                Some(url) => Database::from_url("`verify-database-url`", url)?
                    .with_bin_dir(db.bin_dir().cloned()),
                None => db.clone(),
            };
            let name = create_scratch(&server, "shipgate_verify", "for verification; the role needs CREATEDB, or set `verify-database-url` to a server where it has it").await?;
            say(
                log,
                &format!(
                    "restoring into the scratch database `{name}` with {} pg_restore job(s)",
                    expected.jobs
                ),
            );
            let scratch = server.with_database(&name);
            let result = async {
                let spec = directory::restore_spec(&scratch, temp.path(), expected.jobs);
                let restoring = directory::run_restore(&spec, log);
                super::with_elapsed(log, "pg_restore running", restoring).await.map_err(|e| {
                    Error::gate(format!(
                        "verification failed: the backup did not restore into a scratch database ({e})"
                    ))
                })?;
                scratch
                    .row_counts()
                    .await
                    .context("cannot count the rows of the scratch database")
            }
            .await;
            if let Err(message) = drop_scratch(&server, &name).await {
                actions::annotate(actions::Level::Warning, Some("shipgate backup"), &message);
                log_line(log, &message);
            }
            let restored = result?;
            compare_counts(counts, &restored).map_err(|diff| {
                Error::gate(format!(
                    "verification failed: `{url}` restored into a scratch database with different row counts than the source: {diff}"
                ))
            })?;
            (
                read,
                Some(restored.len()),
                "fetched (pg_restore decompressed them)",
            )
        }
        _ => (
            super::with_progress(
                log,
                &progress,
                directory::read_all(
                    &dir,
                    files,
                    directory::Fetch::Check,
                    expected.jobs,
                    &progress,
                ),
            )
            .await
            .map_err(fail)?,
            None,
            "decompressed in full",
        ),
    };
    Ok(verified(
        log,
        format!(
            "verified `{url}`: {} files, each one's SHA-256 matches the manifest, {} {read_how}",
            files.len(),
            crate::ui::bytes(read_bytes)
        ),
        mode,
        read_bytes,
        tables,
    ))
}

fn unpack_failure(url: &str, error: archive::UnpackError) -> Error {
    match error {
        archive::UnpackError::Storage(e) => {
            Error::from(e).context(format!("verification could not read `{url}` back"))
        }
        archive::UnpackError::Corrupt(reason) => Error::gate(format!(
            "verification failed: `{url}` is corrupted: {reason}"
        )),
        archive::UnpackError::Sink(reason) | archive::UnpackError::Stopped { reason, .. } => {
            Error::gate(format!(
                "verification failed: `{url}` could not be read in full: {reason}"
            ))
        }
    }
}

/// Restores `source` into a new scratch database (on the `verify-database-url` server, else
/// the source's), counts its rows, and drops it whatever happened.
async fn restore_into_scratch(
    db: &Database,
    verify_database_url: Option<&Secret>,
    format: DumpFormat,
    compression: Compression,
    source: Source,
    progress: &Arc<Progress>,
    log: &SharedLog,
) -> Result<(archive::ReadBack, BTreeMap<String, u64>)> {
    let server = match verify_database_url {
        Some(url) => {
            Database::from_url("`verify-database-url`", url)?.with_bin_dir(db.bin_dir().cloned())
        }
        None => db.clone(),
    };
    let name = create_scratch(&server, "shipgate_verify", "for verification; the role needs CREATEDB, or set `verify-database-url` to a server where it has it").await?;
    say(
        log,
        &format!("restoring into the scratch database `{name}`"),
    );
    let scratch = server.with_database(&name);
    let result = async {
        let fed = archive::feed_tool(
            &restore_spec(&scratch, format),
            source,
            compression,
            None,
            progress,
            log,
        )
        .await?;
        if fed.tool_failed() {
            return Err(Error::gate(format!(
                "verification failed: the backup did not restore into a scratch database ({})",
                fed.tool_failure()
            )));
        }
        let read = fed.read.map_err(|e| unpack_failure("the backup", e))?;
        let counts = scratch
            .row_counts()
            .await
            .context("cannot count the rows of the scratch database")?;
        Ok((read, counts))
    }
    .await;
    if let Err(message) = drop_scratch(&server, &name).await {
        actions::annotate(actions::Level::Warning, Some("shipgate backup"), &message);
        log_line(log, &message);
    }
    result
}

/// Creates an empty scratch database `<prefix>_<random>` on `server` and returns its name;
/// `hint` ends the error message (what it is for, and what to do when the role may not).
pub(crate) async fn create_scratch(server: &Database, prefix: &str, hint: &str) -> Result<String> {
    let name = format!("{prefix}_{}", crate::util::random_hex(6));
    server
        .query(&format!(
            "CREATE DATABASE {} TEMPLATE template0",
            postgres::identifier(&name)
        ))
        .await
        .context(format!(
            "cannot create the scratch database `{name}` on `{}` {hint}",
            server.display()
        ))?;
    Ok(name)
}

/// Drops the scratch database `name` on `server`, ending its sessions first (PostgreSQL 13+);
/// the error is a message saying to drop it by hand.
pub(crate) async fn drop_scratch(server: &Database, name: &str) -> std::result::Result<(), String> {
    let drop_sql = format!(
        "DROP DATABASE IF EXISTS {}{}",
        postgres::identifier(name),
        if server.server_version_num().await.unwrap_or(0) >= 130_000 {
            " WITH (FORCE)"
        } else {
            ""
        }
    );
    server
        .query(&drop_sql)
        .await
        .map(drop)
        .map_err(|e| format!("cannot drop the scratch database `{name}` ({e}); drop it by hand"))
}

/// `Ok` when both sides have the same tables with the same counts; else the differences.
pub(crate) fn compare_counts(
    expected: &BTreeMap<String, u64>,
    actual: &BTreeMap<String, u64>,
) -> std::result::Result<(), String> {
    compare(expected, actual, true)
}

/// [`compare_counts`] for a restore into a database that already existed: tables the backup
/// does not hold (made after it, e.g. by a migration being rolled back) are left as they were
/// by the restore and are not counted against it; the backup's own tables must match.
pub(crate) fn compare_backup_tables(
    expected: &BTreeMap<String, u64>,
    actual: &BTreeMap<String, u64>,
) -> std::result::Result<(), String> {
    compare(expected, actual, false)
}

fn compare(
    expected: &BTreeMap<String, u64>,
    actual: &BTreeMap<String, u64>,
    extra_is_a_difference: bool,
) -> std::result::Result<(), String> {
    let mut diffs = Vec::new();
    for (table, rows) in expected {
        match actual.get(table) {
            Some(found) if found == rows => {}
            Some(found) => diffs.push(format!("`{table}` has {found} rows, expected {rows}")),
            None => diffs.push(format!("`{table}` is missing")),
        }
    }
    if extra_is_a_difference {
        for table in actual.keys().filter(|t| !expected.contains_key(*t)) {
            diffs.push(format!("`{table}` is unexpected"));
        }
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        let shown = diffs.len().min(10);
        let more = if diffs.len() > shown {
            format!(" (and {} more)", diffs.len() - shown)
        } else {
            String::new()
        };
        Err(format!("{}{more}", diffs[..shown].join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_compare_both_ways() {
        let a: BTreeMap<String, u64> = [("public.a".to_string(), 3), ("public.b".to_string(), 0)]
            .into_iter()
            .collect();
        assert!(compare_counts(&a, &a).is_ok());
        let mut b = a.clone();
        b.insert("public.a".into(), 2);
        b.remove("public.b");
        b.insert("public.c".into(), 1);
        let diff = compare_counts(&a, &b).expect_err("differs");
        assert!(diff.contains("`public.a` has 2 rows, expected 3"), "{diff}");
        assert!(diff.contains("`public.b` is missing"), "{diff}");
        assert!(diff.contains("`public.c` is unexpected"), "{diff}");
        let mut only_extra = a.clone();
        only_extra.insert("public.made_later".into(), 3);
        assert!(compare_backup_tables(&a, &only_extra).is_ok());
    }

    #[test]
    fn verify_modes_parse() {
        assert_eq!("restore".parse::<VerifyMode>(), Ok(VerifyMode::Restore));
        assert_eq!("SHA256".parse::<VerifyMode>(), Ok(VerifyMode::Sha256));
        assert!("maybe".parse::<VerifyMode>().is_err());
    }
}
