//! Restoring a backup (seed 004 "Rollback Procedure", step 3): which backup a location or a
//! deployment record names; fetching it and checking its SHA-256 against its sidecar BEFORE
//! touching the database; restoring it in a single transaction (the tools `shipgate restore`
//! and verification by restore run) and counting rows; `restore.json` and the summary; and the
//! one text that restores a backup by hand.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::archive::{self, Progress, Source};
use super::directory;
use super::prune::list_backups;
use super::say;
use super::sidecar::{ManifestFile, SIDECAR_LIMIT, Sidecar, check_sidecar};
use crate::actions::{self, Table};
use crate::error::{Error, Result, ResultExt};
use crate::postgres::Database;
use crate::process::{self, SharedLog, Shutdown};
use crate::state::backup::{Compression, DumpFormat};
use crate::storage::{Location, Storage};
use crate::ui::mark::{FAIL, PASS};

/// The one text that restores a backup by hand, without shipgate, the way `shipgate restore`
/// does it (one transaction, stopping at the first error): the SHA-256 check to run first, then
/// fetch | gunzip (or `zstd -dc`) | psql or pg_restore into `$DATABASE_URL`. `None` for a
/// location that is neither `s3://` nor `file://`.
pub(crate) fn manual_restore(
    location: &str,
    format: DumpFormat,
    sha256: Option<&str>,
) -> Option<String> {
    if format == DumpFormat::Directory {
        return manual_directory_restore(location);
    }
    let fetch = if let Some(path) = location.strip_prefix("file://") {
        format!("cat '{path}'")
    } else if location.starts_with("s3://") {
        format!("aws s3 cp '{location}' -")
    } else {
        return None;
    };
    let unpack = Compression::ALL
        .into_iter()
        .find(|c| location.ends_with(c.suffix()))
        .map(|c| format!(" | {}", c.shell_decompress()))
        .unwrap_or_default();
    let apply = match format {
        DumpFormat::Plain => {
            "psql --no-psqlrc --set=ON_ERROR_STOP=1 --single-transaction --file=- --dbname=\"$DATABASE_URL\""
        }
        DumpFormat::Custom | DumpFormat::Directory => {
            "pg_restore --clean --if-exists --single-transaction --exit-on-error --dbname=\"$DATABASE_URL\""
        }
    };
    let mut text = String::from("set -o pipefail\n");
    if let Some(sha) = sha256 {
        text.push_str(&format!("{fetch} | sha256sum   # expect {sha}\n"));
    }
    text.push_str(&format!("{fetch}{unpack} | {apply}\n"));
    Some(text)
}

/// [`manual_restore`] of a directory backup: copy its files, check them against the manifest
/// in the sidecar, decompress them, then `pg_restore --jobs` (not one transaction: the checks
/// come first).
fn manual_directory_restore(location: &str) -> Option<String> {
    let prefix = location.trim_end_matches('/');
    let (_, stem) = prefix.rsplit_once('/')?;
    let fetch = if let Some(path) = prefix.strip_prefix("file://") {
        format!("cp -r '{path}/.' {stem}/ && cp '{path}.json' {stem}.json")
    } else if prefix.starts_with("s3://") {
        format!(
            "aws s3 cp --recursive '{prefix}/' {stem}/ && aws s3 cp '{prefix}.json' {stem}.json"
        )
    } else {
        return None;
    };
    Some(format!(
        "set -eo pipefail\nmkdir {stem} && {fetch}\n(cd {stem} && jq -r '.files[] | \"\\(.sha256)  \\(.name)\"' ../{stem}.json | sha256sum -c --quiet)\n(cd {stem} && for f in *.gz *.zst; do [ -e \"$f\" ] || continue; case $f in *.gz) gunzip \"$f\" ;; *) zstd -dq --rm \"$f\" ;; esac; done)\npg_restore --jobs=4 --clean --if-exists --exit-on-error --dbname=\"$DATABASE_URL\" {stem}   # not one transaction\n"
    ))
}

/// The tool that restores a dump of `format` into `db` in one transaction.
pub(crate) fn restore_spec(db: &Database, format: DumpFormat) -> process::Spec {
    match format {
        DumpFormat::Plain => db.spec(
            "psql",
            "psql",
            vec![
                "--no-psqlrc".into(),
                "--quiet".into(),
                "--set=ON_ERROR_STOP=1".into(),
                "--single-transaction".into(),
                "--no-password".into(),
                "--file=-".into(),
                format!("--dbname={}", db.conninfo()),
            ],
        ),
        // A directory archive is restored from its directory: `directory::restore_spec`.
        DumpFormat::Custom | DumpFormat::Directory => db.spec(
            "pg_restore",
            "pg_restore",
            vec![
                "--clean".into(),
                "--if-exists".into(),
                "--single-transaction".into(),
                "--exit-on-error".into(),
                "--no-password".into(),
                format!("--dbname={}", db.conninfo()),
            ],
        ),
    }
}

/// Per-table rows shown in the summary.
const SUMMARY_TABLES: usize = 100;

/// `restore.json`, and the `--format json` object.
#[derive(Debug, Serialize)]
pub(crate) struct RestoreResult {
    pub(crate) schema_version: u32,
    pub(crate) command: &'static str,
    pub(crate) result: &'static str,
    pub(crate) timestamp: String,
    pub(crate) duration_ms: u64,
    pub(crate) deployment_id: String,
    pub(crate) backup_id: String,
    pub(crate) location: String,
    pub(crate) sha256: String,
    pub(crate) size: u64,
    pub(crate) format: DumpFormat,
    pub(crate) backup_timestamp: String,
    pub(crate) target_database: String,
    pub(crate) target: String,
    pub(crate) tables: usize,
    pub(crate) rows: u64,
    pub(crate) row_counts: BTreeMap<String, u64>,
    /// Whether the restored counts equal those recorded at backup time (`verify: restore`
    /// backups only).
    pub(crate) counts_match: Option<bool>,
    pub(crate) log_file: String,
}

impl RestoreResult {
    /// A restore of `sidecar`'s backup into `target` that counted `counts` (`counts_match`:
    /// whether they equal those recorded at backup time, when recorded).
    pub(crate) fn new(
        deployment_id: &str,
        sidecar: &Sidecar,
        target: &Database,
        counts: BTreeMap<String, u64>,
        counts_match: Option<bool>,
        started: Instant,
        log_path: &Path,
    ) -> RestoreResult {
        RestoreResult {
            schema_version: 1,
            command: "restore",
            result: if counts_match == Some(false) {
                "fail"
            } else {
                "pass"
            },
            timestamp: crate::util::now_rfc3339(),
            duration_ms: started.elapsed().as_millis() as u64,
            deployment_id: deployment_id.to_string(),
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
            row_counts: counts,
            counts_match,
            log_file: log_path.display().to_string(),
        }
    }
}

/// Which backup, and where it lives.
pub(crate) struct Chosen {
    pub(crate) location: Location,
    /// The sidecar's name in `location`.
    pub(crate) sidecar: String,
    /// How the user named it, for messages.
    pub(crate) named: String,
}

impl Chosen {
    /// The backup whose dump or sidecar `url` is, named `named` in messages.
    pub(crate) fn from_url(url: &str, named: String) -> Result<Chosen> {
        // A directory backup is named by its prefix, `…/backup-<id>/`.
        let (location, name) = match url.strip_suffix('/') {
            Some(prefix) => {
                let (location, name) = Location::split_object(prefix)?;
                (location, format!("{name}/"))
            }
            None => Location::split_object(url)?,
        };
        let stem = DumpFormat::object_stem(&name).ok_or_else(|| {
            Error::usage(format!(
                "{} does not name a shipgate backup (`backup-<id>.sql.gz`, `.dump.gz`, `.json` or the directory `backup-<id>/`)",
                actions::quote(url)
            ))
        })?;
        Ok(Chosen {
            sidecar: format!("{stem}.json"),
            location,
            named,
        })
    }

    /// The backup `--backup-id` names (`backup-<id>` or `<id>`) in `destination`, which it
    /// needs.
    pub(crate) fn from_id(id: &str, destination: Option<Location>) -> Result<Chosen> {
        let id = id.strip_prefix("backup-").unwrap_or(id).to_string();
        crate::state::check_deployment_id(&id)?;
        let location = destination.ok_or_else(|| {
            Error::usage(format!(
                "`--backup-id backup-{id}` needs the destination it lives in: pass `--destination s3://bucket/prefix` (input `destination`)"
            ))
        })?;
        Ok(Chosen {
            sidecar: format!("backup-{id}.json"),
            named: format!("`backup-{id}` in `{}`", location.display()),
            location,
        })
    }
}

/// Which backup: one named, or the newest complete one at a destination.
pub(crate) enum Which {
    /// The newest complete backup at this destination (`--backup-id latest`, or none named).
    Newest(Location),
    /// The one named by `--backup-id`, `--location` or a record.
    Named(Chosen),
}

impl Which {
    /// `--backup-id ID` in `destination`: `latest` is the newest complete backup there.
    pub(crate) fn from_id(id: &str, destination: Option<Location>) -> Result<Which> {
        if id.trim() != "latest" {
            return Ok(Which::Named(Chosen::from_id(id, destination)?));
        }
        destination.map(Which::Newest).ok_or_else(|| {
            Error::usage(
                "`--backup-id latest` needs the destination to look in: pass `--destination s3://bucket/prefix` (input `destination`)",
            )
        })
    }

    /// Where the backup lives.
    pub(crate) fn location(&self) -> &Location {
        match self {
            Which::Newest(location) => location,
            Which::Named(chosen) => &chosen.location,
        }
    }

    /// The backup's sidecar, read and checked from `storage` (opened at [`Which::location`]):
    /// for `Newest`, the newest complete backup listed there.
    pub(crate) async fn read(&self, storage: &Storage, shutdown: &Shutdown) -> Result<Sidecar> {
        match self {
            Which::Named(chosen) => read_sidecar(storage, chosen).await,
            Which::Newest(location) => {
                let found = list_backups(storage, location, shutdown).await?;
                let newest = found
                    .into_iter()
                    .find(|f| f.complete && f.sidecar.is_some())
                    .ok_or_else(|| {
                        Error::gate(format!(
                            "no complete backup in `{}` (a backup is complete when its sidecar and its dump are both there); run `shipgate backup` first, or check `destination`",
                            location.display()
                        ))
                    })?;
                let chosen = Chosen {
                    location: location.clone(),
                    sidecar: newest.sidecar_name.clone(),
                    named: format!("`{}` in `{}`", newest.backup_id, location.display()),
                };
                // Read again, checked, as a named backup is read.
                read_sidecar(storage, &chosen).await
            }
        }
    }
}

/// The sidecar of the backup `chosen` names, in `storage`, checked: a gate failure when there is
/// none (a backup without its sidecar is incomplete) or it is not a shipgate sidecar.
pub(crate) async fn read_sidecar(storage: &Storage, chosen: &Chosen) -> Result<Sidecar> {
    let url = storage.url(&chosen.sidecar);
    let bytes = storage
        .read_small(&chosen.sidecar, SIDECAR_LIMIT)
        .await
        .context(format!("cannot read the backup's sidecar `{url}`"))?;
    let sidecar: Sidecar = match bytes {
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            Error::gate(format!(
                "`{url}` is not a shipgate backup sidecar ({e}); refusing to restore"
            ))
        })?,
        None => {
            return Err(Error::gate(format!(
                "no backup {}: its sidecar `{url}` does not exist (a backup without its sidecar is incomplete); check the id or location",
                chosen.named
            )));
        }
    };
    check_sidecar(&sidecar, &url)?;
    Ok(sidecar)
}

/// What a stopped restore left behind.
pub(crate) fn state_of(committed: &std::sync::atomic::AtomicBool) -> &'static str {
    if committed.load(std::sync::atomic::Ordering::SeqCst) {
        "the restore had already committed; only the row counts are missing"
    } else {
        "it was stopped before its transaction committed, so the database is unchanged"
    }
}

/// `database_backup.location` of a deployment record (seed 004 §8), or a top-level
/// `location` (a `backup.json`).
pub(crate) fn location_in_record(path: &Path) -> Result<String> {
    let text = crate::inputs::read_text_file(path)
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

/// Restores the backup, counts rows. A single-stream backup streams from its storage into one
/// transaction, checked against its sidecar on the way (the transaction commits only if the
/// whole object matched); a directory backup is fetched and checked in full first (see
/// [`restore_directory`]). `committed` says when the restore has committed.
pub(crate) async fn restore(
    work_dir: &Path,
    storage: &Storage,
    sidecar: &Sidecar,
    target: &Database,
    jobs: u32,
    log: &SharedLog,
    committed: &std::sync::atomic::AtomicBool,
) -> Result<BTreeMap<String, u64>> {
    if let Some(files) = &sidecar.files {
        return restore_directory(
            work_dir, storage, sidecar, files, target, jobs, log, committed,
        )
        .await;
    }
    let url = storage.url(&sidecar.object);
    check_target_version(target, sidecar).await?;

    let _group = actions::group(&format!("Restore `{url}` into `{}`", target.display()));
    let source = match storage.local_path(&sidecar.object) {
        Some(path) => Source::File(std::fs::File::open(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                broken(&url)
            } else {
                Error::dependency(format!("cannot read `{}`: {e}", path.display()))
            }
        })?),
        None => Source::Download(
            storage
                .get(&sidecar.object)
                .await
                .context(format!("cannot download `{url}`"))?
                .ok_or_else(|| broken(&url))?,
        ),
    };
    let spec = restore_spec(target, sidecar.format);
    say(
        log,
        &format!(
            "streaming `{url}` ({}) into one transaction, checking its SHA-256 against the sidecar on the way: the transaction commits only if the whole object matches",
            crate::ui::bytes(sidecar.size)
        ),
    );
    say(log, &format!("$ {}", spec.display()));
    let progress = Arc::new(Progress::reading(sidecar.size, sidecar.uncompressed_size));
    let feeding = archive::feed_tool(
        &spec,
        source,
        sidecar.compression,
        Some(&sidecar.sha256),
        &progress,
        log,
    );
    let fed = super::with_progress(log, &progress, feeding).await?;
    if let Err(archive::UnpackError::Corrupt(reason)) = &fed.read {
        return Err(Error::gate(format!(
            "`{url}` is corrupted ({reason}; its sidecar records {} bytes with SHA-256 {}): the restore's transaction was rolled back, so the database is unchanged",
            sidecar.size, sidecar.sha256
        )));
    }
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
    say(
        log,
        &format!("`{url}` matches its sidecar (SHA-256 {})", sidecar.sha256),
    );
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

/// Connects to `target`, warning when it runs an older PostgreSQL than the backup's.
async fn check_target_version(target: &Database, sidecar: &Sidecar) -> Result<()> {
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
    Ok(())
}

/// [`restore`] of a directory backup: every file downloaded `jobs` at a time into a private
/// directory under `work_dir`, checked against the manifest while it streams (kept compressed
/// where pg_restore reads the compression itself, else decompressed);
/// only once every file matched, `pg_restore --jobs` (one transaction with `jobs` 1).
#[allow(clippy::too_many_arguments)]
async fn restore_directory(
    work_dir: &Path,
    storage: &Storage,
    sidecar: &Sidecar,
    files: &[ManifestFile],
    target: &Database,
    jobs: u32,
    log: &SharedLog,
    committed: &std::sync::atomic::AtomicBool,
) -> Result<BTreeMap<String, u64>> {
    let url = storage.url(&sidecar.object);
    let dir = storage.child(sidecar.object.trim_end_matches('/'));
    let group = actions::group(&format!("Fetch and check `{url}`"));
    let temp = directory::PrivateDir::new(work_dir, "restore")?;
    let readable = directory::readable_by_pg_restore(target).await;
    let progress = Arc::new(Progress::reading(sidecar.size, sidecar.uncompressed_size));
    say(
        log,
        &format!(
            "fetching the {} files of `{url}` ({}), {jobs} at a time, checking each against the manifest before anything touches `{}`",
            files.len(),
            crate::ui::bytes(sidecar.size),
            target.display()
        ),
    );
    let fetched = {
        let fetch = directory::Fetch::ForRestore {
            dir: temp.path(),
            readable: &readable,
        };
        let reading = directory::read_all(&dir, files, fetch, jobs, &progress);
        super::with_progress(log, &progress, reading).await
    };
    let read =
        fetched.map_err(|e| Error::new(e.kind(), format!("{e}; the database was not touched")))?;
    say(
        log,
        &format!(
            "all {} files of `{url}` match the manifest (SHA-256 {} of the manifest); {} written to the work directory{}",
            files.len(),
            sidecar.sha256,
            crate::ui::bytes(read),
            if readable.contains(&sidecar.compression) {
                format!(
                    ", the data files still {}-compressed (pg_restore reads them)",
                    sidecar.compression.name()
                )
            } else {
                String::new()
            }
        ),
    );
    drop(group);
    check_target_version(target, sidecar).await?;

    let _group = actions::group(&format!("Restore into `{}`", target.display()));
    let spec = directory::restore_spec(target, temp.path(), jobs);
    if jobs > 1 {
        say(
            log,
            &format!(
                "restoring with {jobs} parallel pg_restore jobs: not one transaction (pg_restore cannot run jobs in one), so a failure leaves `{}` partly restored; every file was verified before it was touched",
                target.display()
            ),
        );
    }
    say(log, &format!("$ {}", spec.display()));
    let restoring = directory::run_restore(&spec, log);
    if let Err(e) = super::with_elapsed(log, "pg_restore running", restoring).await {
        return Err(Error::dependency(if jobs > 1 {
            format!(
                "the restore into `{}` failed ({e}); it ran as {jobs} parallel jobs, not one transaction, so the database may be partly restored: fix the cause and restore again (`--clean` replaces the backup's objects)",
                target.display()
            )
        } else {
            format!(
                "the restore into `{}` failed ({e}); it ran in one transaction, so the database is unchanged",
                target.display()
            )
        }));
    }
    committed.store(true, std::sync::atomic::Ordering::SeqCst);
    drop(temp);
    say(
        log,
        &format!("restored into `{}`; counting rows", target.display()),
    );
    target.row_counts().await.context(format!(
        "restored, but cannot count the rows of `{}`",
        target.display()
    ))
}

fn broken(url: &str) -> Error {
    Error::gate(format!(
        "`{url}` does not exist although its sidecar does: the backup is broken"
    ))
}

pub(crate) fn summary(result: &RestoreResult, expected: Option<&BTreeMap<String, u64>>) -> String {
    let heading = if result.result == "pass" {
        format!(
            "### {PASS} Restored `{}` into `{}`",
            result.backup_id, result.target_database
        )
    } else {
        format!(
            "### {FAIL} Restored `{}` into `{}`, but row counts differ",
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
        &format!("`{}` {PASS} checked before restoring", result.sha256),
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
                Some(e) if e == rows => format!("{e} {PASS}"),
                Some(e) => format!("{e} {FAIL}"),
                None => format!("— {FAIL}"),
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
    fn one_manual_restore_text_for_every_format_and_place() {
        let plain = manual_restore(
            "s3://bk/prod/backup-1.sql.gz",
            DumpFormat::Plain,
            Some("ab"),
        )
        .expect("s3");
        assert!(plain.starts_with("set -o pipefail\n"), "{plain}");
        assert!(
            plain.contains("aws s3 cp 's3://bk/prod/backup-1.sql.gz' - | sha256sum   # expect ab"),
            "{plain}"
        );
        assert!(
            plain.contains(
                "- | gunzip | psql --no-psqlrc --set=ON_ERROR_STOP=1 --single-transaction"
            ),
            "{plain}"
        );
        let custom = manual_restore("file:///var/bk/backup-1.dump.gz", DumpFormat::Custom, None)
            .expect("file");
        assert!(
            custom.contains("cat '/var/bk/backup-1.dump.gz' | gunzip | pg_restore --clean --if-exists --single-transaction --exit-on-error"),
            "{custom}"
        );
        assert!(!custom.contains("sha256sum"), "{custom}");
        assert_eq!(manual_restore("https://x/y", DumpFormat::Plain, None), None);
        assert_eq!(
            DumpFormat::of(None, "s3://b/backup-1.dump.gz"),
            DumpFormat::Custom
        );
        assert_eq!(
            DumpFormat::of(Some("plain"), "s3://b/backup-1.dump.gz"),
            DumpFormat::Plain
        );
    }

    #[test]
    fn a_directory_backup_is_named_by_its_prefix_and_restored_by_hand_in_parallel() {
        let text =
            manual_restore("s3://bk/prod/backup-1-abc/", DumpFormat::Directory, None).expect("s3");
        assert!(text.starts_with("set -eo pipefail\n"), "{text}");
        assert!(
            text.contains("aws s3 cp --recursive 's3://bk/prod/backup-1-abc/' backup-1-abc/"),
            "{text}"
        );
        assert!(text.contains("sha256sum -c"), "{text}");
        assert!(text.contains("*.gz) gunzip \"$f\""), "{text}");
        assert!(text.contains("zstd -dq --rm \"$f\""), "{text}");
        assert!(text.contains("pg_restore --jobs="), "{text}");
        let chosen = Chosen::from_url("s3://bkt/prod/backup-1-abc/", String::new()).expect("named");
        assert_eq!(chosen.sidecar, "backup-1-abc.json");
        assert_eq!(
            DumpFormat::of(None, "s3://bk/prod/backup-1-abc/"),
            DumpFormat::Directory
        );
    }

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
