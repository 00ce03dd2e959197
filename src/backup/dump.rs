//! Taking the backup (seed 004 §3 "Database Backup"): `pg_dump` streamed through gzip (or
//! zstd) and SHA-256 to `backup-<deployment-id>.sql.gz` in the destination, with no temporary file and
//! bounded memory; read back and verified; published with its sidecar written last; never
//! overwritten (an earlier run's backup is checked and reused); beside a live run never started.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::archive::{self, Progress};
use super::directory::{self, DirectoryDump, DumpPlan};
use super::sidecar::{
    DatabaseIdentity, ManifestFile, SIDECAR_LIMIT, Sidecar, address_of, check_sidecar,
};
use super::storage::open_storage;
use super::verify::{Expected, VerifyMode, export_snapshot, verify};
use super::{log_line, say};
use crate::actions;
use crate::error::{Error, Result, ResultExt};
use crate::postgres::{self, Database};
use crate::process::{self, SharedLog, Shutdown};
use crate::secret::Secret;
use crate::state::StateDir;
use crate::state::backup::{Compression, DumpFormat};
use crate::storage::lease::{self, Lease, LostWatch};
use crate::storage::{Location, PendingUpload, S3Options, Storage, Upload};

/// How long a failed run keeps trying to abort its multipart upload while S3 is unreachable.
const ABORT_PATIENCE: Duration = Duration::from_secs(30);

/// Compressed parts queued between the compressor and the uploader.
const PART_QUEUE: usize = 1;

/// Capacity asked for pg_dump's output pipe.
const PIPE_SIZE: i32 = 1024 * 1024;

/// A backup's options, resolved by `shipgate backup`.
pub(crate) struct Options {
    pub(crate) location: Location,
    pub(crate) s3: S3Options,
    pub(crate) format: DumpFormat,
    pub(crate) codec: archive::Codec,
    pub(crate) verify: VerifyMode,
    /// pg_dump's `--jobs` (directory format), and the files read back at once.
    pub(crate) jobs: u32,
    /// Where a directory dump's files are kept while they upload (and a `verify: restore`
    /// download of them).
    pub(crate) work_dir: std::path::PathBuf,
    pub(crate) lock_wait: Duration,
    pub(crate) timeout: Duration,
    /// The scratch database's server for `verify: restore` (`verify-database-url`), else the
    /// source's.
    pub(crate) verify_database_url: Option<Secret>,
    /// Recorded in the sidecar.
    pub(crate) environment: String,
    pub(crate) repository: Option<String>,
}

/// A backup taken (or an earlier run's, reused), with its sidecar.
pub(crate) struct Done {
    pub(crate) sidecar: Sidecar,
    pub(crate) reused: bool,
}

/// A phase of the run, for messages about where a failure, signal or deadline struck.
struct Guard<'a> {
    shutdown: &'a mut Shutdown,
    deadline: tokio::time::Instant,
    timeout: Duration,
    /// Fires when this run's marker could not be renewed (see `storage::lease`).
    lease: Option<LostWatch>,
}

impl Guard<'_> {
    /// Runs `work` unless a signal arrives or the deadline passes first.
    async fn run<T>(
        &mut self,
        what: &str,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        tokio::select! {
            result = work => result,
            signal = self.shutdown.recv() => Err(Error::timeout(format!(
                "cancelled by {signal} while {what}"
            ))),
            _ = tokio::time::sleep_until(self.deadline) => Err(Error::timeout(format!(
                "the backup did not finish within {} (`backup-timeout`) while {what}",
                crate::ui::format_duration(self.timeout)
            ))),
            reason = lease_lost(&mut self.lease) => Err(Error::dependency(format!(
                "{reason} (while {what})"
            ))),
        }
    }
}

async fn lease_lost(lease: &mut Option<LostWatch>) -> String {
    match lease {
        Some(watch) => watch.lost().await,
        None => std::future::pending().await,
    }
}

/// What is known so far, for the failure record.
#[derive(Default)]
pub(crate) struct Known {
    pub(crate) backup_id: Option<String>,
    pub(crate) location: Option<String>,
    pub(crate) published: bool,
    /// What a failed run could not clean up (kept in its run marker for later runs).
    pub(crate) left: Option<String>,
}

/// Takes this deployment's backup of `db` (or reuses an earlier run's), stopping at a signal
/// or `options.timeout`; `known` says how far it got when it fails.
pub(crate) async fn backup(
    options: &Options,
    db: &Database,
    state: &StateDir,
    log: &SharedLog,
    shutdown: &mut Shutdown,
    known: &mut Known,
    started: Instant,
) -> Result<Done> {
    let mut guard = Guard {
        shutdown,
        deadline: tokio::time::Instant::now() + options.timeout,
        timeout: options.timeout,
        lease: None,
    };
    let guard = &mut guard;
    let id = state.id().to_string();
    let backup_id = format!("backup-{id}");
    let sidecar_name = format!("{backup_id}.json");
    let object = format!(
        "{backup_id}{}",
        options.format.extension(options.codec.compression)
    );
    let storage = open_storage(&options.location, &options.s3).await;
    known.backup_id = Some(backup_id.clone());
    known.location = Some(storage.url(&object));

    // An earlier run with this deployment id: reuse its backup, never overwrite it.
    let existing = {
        let _group = actions::group(&format!("Look for `{backup_id}`"));
        read_sidecar(&storage, &sidecar_name, guard).await?
    };
    if let Some(sidecar) = existing {
        return reuse(options, log, guard, known, &storage, sidecar, db).await;
    }
    // This run's marker, so that a concurrent run never mistakes this one's upload for a
    // leftover (and this one never aborts a live run's upload): see `storage::lease`.
    let mut lease = Lease::new(&storage, &backup_id);
    let mut begin = tokio::spawn(lease.begin());
    let found = guard
        .run("writing this run's marker", async {
            (&mut begin)
                .await
                .map_err(|e| Error::dependency(format!("writing this run's marker failed: {e}")))?
                .context("cannot write this run's marker next to the backup")
        })
        .await;
    let found = match found {
        Ok(found) => found,
        Err(error) => {
            // Also when cancelled halfway: let the write land, then remove the marker (left
            // behind, it would hold off a re-run until it expires).
            if !begin.is_finished() {
                let _ = tokio::time::timeout(lease.timing().hold, &mut begin).await;
            }
            lease.release(None).await;
            return Err(error);
        }
    };
    let result = take(
        options, state, log, guard, known, started, &storage, db, &mut lease, &found,
    )
    .await;
    guard.lease = None;
    let left = if result.is_err() {
        known.left.clone()
    } else {
        None
    };
    lease.release(left).await;
    result
}

/// The sidecar at `name`, checked; `None` when there is none.
async fn read_sidecar(
    storage: &Storage,
    name: &str,
    guard: &mut Guard<'_>,
) -> Result<Option<Sidecar>> {
    let bytes = guard
        .run("looking for an earlier backup", async {
            storage
                .read_small(name, SIDECAR_LIMIT)
                .await
                .context("cannot check the destination for an earlier backup")
        })
        .await?;
    let Some(bytes) = bytes else {
        return Ok(None);
    };
    let sidecar: Sidecar = serde_json::from_slice(&bytes).map_err(|e| {
        Error::gate(format!(
            "`{}` exists but is not a shipgate backup sidecar ({e}); it is left untouched: move it away or use another deployment id",
            storage.url(name)
        ))
    })?;
    check_sidecar(&sidecar, &storage.url(name))?;
    Ok(Some(sidecar))
}

/// Refuses to run beside another live run of the same backup, clears what dead runs left
/// (unfinished uploads, a dump without its sidecar), then takes the backup.
#[allow(clippy::too_many_arguments)]
async fn take(
    options: &Options,
    state: &StateDir,
    log: &SharedLog,
    guard: &mut Guard<'_>,
    known: &mut Known,
    started: Instant,
    storage: &Storage,
    db: &Database,
    lease: &mut Lease,
    found: &lease::Found,
) -> Result<Done> {
    let id = state.id().to_string();
    let backup_id = format!("backup-{id}");
    let sidecar_name = format!("{backup_id}.json");
    let object = format!(
        "{backup_id}{}",
        options.format.extension(options.codec.compression)
    );

    // Another live run? Whose are the unfinished uploads (of the single object, and of the
    // files under `backup-<id>/` a directory backup writes)?
    let files = storage.child(&backup_id);
    let named: Vec<(Storage, String, PendingUpload)> = guard
        .run("looking for unfinished uploads", async {
            let mut named = Vec::new();
            for name in [DumpFormat::Plain, DumpFormat::Custom]
                .iter()
                .flat_map(|format| {
                    Compression::ALL.map(|c| format!("{backup_id}{}", format.extension(c)))
                })
            {
                let uploads = storage.list_uploads(&name).await.context(format!(
                    "cannot list the unfinished uploads of `{}`",
                    storage.url(&name)
                ))?;
                named.extend(
                    uploads
                        .into_iter()
                        .map(|u| (storage.clone(), name.clone(), u)),
                );
            }
            let uploads = files.list_all_uploads().await.context(format!(
                "cannot list the unfinished uploads under `{}`",
                files.url("")
            ))?;
            named.extend(
                uploads
                    .into_iter()
                    .map(|(name, u)| (files.clone(), name, u)),
            );
            Ok(named)
        })
        .await?;
    let uploads: Vec<PendingUpload> = named.iter().map(|(_, _, u)| u.clone()).collect();
    let assessment = lease::assess(
        &found.mine,
        &found.others,
        &uploads,
        found.now,
        lease.timing(),
        options.timeout,
    );
    if let Some(live) = &assessment.live {
        return Err(conflict(
            storage,
            &object,
            &backup_id,
            live,
            &assessment.live_uploads,
            lease,
        ));
    }
    if let Some(upload) = assessment.unknown.first() {
        return Err(Error::usage(format!(
            "`{}` has an unfinished upload `{}` initiated at {} that no shipgate run marker claims and that is younger than the backup timeout ({}): a run of an older shipgate, or another tool, may still be writing it. Nothing was changed. If nothing is, remove it ({}) and re-run; once it is older than the backup timeout, a re-run aborts it by itself",
            storage.url(&object),
            upload.id,
            upload
                .initiated
                .map(lease::time)
                .unwrap_or_else(|| "an unknown time".into()),
            crate::ui::format_duration(options.timeout),
            storage.abort_hint(&object, &upload.id)
        )));
    }
    // A run that finished between the first look and now.
    if let Some(sidecar) = read_sidecar(storage, &sidecar_name, guard).await? {
        return reuse(options, log, guard, known, storage, sidecar, db).await;
    }
    lease.start();
    guard.lease = Some(lease.watch());

    // A dump without its sidecar was never a backup (its run failed after uploading it, e.g.
    // S3 went away during verification): replace it.
    for name in [DumpFormat::Plain, DumpFormat::Custom]
        .iter()
        .flat_map(|format| Compression::ALL.map(|c| format!("{backup_id}{}", format.extension(c))))
    {
        let info = guard
            .run("looking for an earlier backup", async {
                storage
                    .head(&name)
                    .await
                    .context("cannot check the destination for an earlier backup")
            })
            .await?;
        let Some(info) = info else {
            continue;
        };
        if info.modified.is_some_and(|at| at > found.now) {
            return Err(Error::usage(format!(
                "`{}` appeared at {}, after this run started and without its sidecar: another run is publishing it right now. Nothing was changed; wait for that run, then re-run (it reuses that backup)",
                storage.url(&name),
                info.modified.map(lease::time).unwrap_or_default()
            )));
        }
        say(
            log,
            &format!(
                "`{}` ({}, stored {}) has no sidecar `{sidecar_name}`: an earlier attempt uploaded it and then failed before publishing it, so it was never a backup; deleting it and taking the backup again",
                storage.url(&name),
                crate::ui::bytes(info.size),
                info.modified
                    .map(lease::time)
                    .unwrap_or_else(|| "at an unknown time".into())
            ),
        );
        guard
            .run("deleting a dump without its sidecar", async {
                storage
                    .delete_patiently(&name, ABORT_PATIENCE)
                    .await
                    .context(format!(
                        "cannot delete `{}`, an unpublished dump without its sidecar; delete it by hand and re-run",
                        storage.url(&name)
                    ))
            })
            .await?;
    }
    // Files of a directory backup without its sidecar: the same.
    let stored = guard
        .run("looking for an earlier backup", async {
            files
                .list("")
                .await
                .context("cannot check the destination for an earlier backup")
        })
        .await?;
    let stored: Vec<_> = stored
        .into_iter()
        .filter(|o| !o.name.starts_with('.'))
        .collect();
    if let Some(fresh) = stored
        .iter()
        .find(|o| o.modified.is_some_and(|at| at > found.now))
    {
        return Err(Error::usage(format!(
            "`{}` appeared at {}, after this run started and without its sidecar: another run is publishing it right now. Nothing was changed; wait for that run, then re-run (it reuses that backup)",
            files.url(&fresh.name),
            fresh.modified.map(lease::time).unwrap_or_default()
        )));
    }
    if !stored.is_empty() {
        say(
            log,
            &format!(
                "`{}` holds {} file(s) ({}) but there is no sidecar `{sidecar_name}`: an earlier attempt stored them and then failed before publishing, so they were never a backup; deleting them and taking the backup again",
                files.url(""),
                stored.len(),
                crate::ui::bytes(stored.iter().map(|o| o.size).sum())
            ),
        );
        for object in &stored {
            guard
                .run("deleting the files of an unpublished backup", async {
                    files
                        .delete_patiently(&object.name, ABORT_PATIENCE)
                        .await
                        .context(format!(
                            "cannot delete `{}`, a file of an unpublished backup without its sidecar; delete it by hand and re-run",
                            files.url(&object.name)
                        ))
                })
                .await?;
        }
    }
    let mut all_aborted = true;
    for stale in &assessment.stale {
        let (owner, name) = named
            .iter()
            .find(|(_, _, u)| u.id == stale.upload.id)
            .map(|(owner, name, _)| (owner, name.as_str()))
            .unwrap_or((storage, object.as_str()));
        say(
            log,
            &format!(
                "aborting the unfinished upload `{}` of `{}`{}: {}",
                stale.upload.id,
                owner.url(name),
                stale
                    .upload
                    .initiated
                    .map(|at| format!(" (initiated at {})", lease::time(at)))
                    .unwrap_or_default(),
                stale.reason
            ),
        );
        if let Err(e) = owner.abort_upload(name, &stale.upload.id).await {
            all_aborted = false;
            tracing::warn!(
                "cannot abort `{}` ({e}); continuing: it does not stand in the way of this run",
                stale.upload.id
            );
        }
    }
    if all_aborted {
        for name in &assessment.leftovers {
            if let Err(e) = storage.delete(name).await {
                tracing::debug!("cannot delete the old run marker `{name}`: {e}");
            }
        }
    }

    // Versions: pg_dump must not be older than the server.
    let group = actions::group("Check PostgreSQL versions");
    let pg_dump = db.program("pg_dump");
    let (client_version, client_major) = guard
        .run("checking pg_dump's version", async {
            postgres::client_version(&pg_dump)
                .await
                .map_err(Error::from)
        })
        .await?;
    let (server_version, server_major) = guard
        .run("connecting to the database", async {
            db.server_version()
                .await
                .context(format!("cannot connect to the database `{}`", db.display()))
        })
        .await?;
    if client_major < server_major {
        return Err(Error::usage(format!(
            "pg_dump {client_version} cannot dump PostgreSQL {server_version} (`{}`): pg_dump must be at least the server's major version; install the PostgreSQL {server_major} client tools or point `pg-bin-dir` at them",
            db.name()
        )));
    }
    let identity = guard
        .run("reading the database's identity", async {
            Ok(database_identity(db, log).await)
        })
        .await?;
    say(
        log,
        &format!(
            "database {} on PostgreSQL {server_version}, pg_dump {client_version}",
            identity.describe()
        ),
    );
    drop(group);

    // The row counts and the schema version the sidecar records (a drill compares a restore's
    // with them; `verify: restore` too) are read in the dump's own snapshot: a transaction
    // exports it and stays open while pg_dump reads it (`--snapshot`), so they describe exactly
    // the rows in the dump, however busy the database is.
    let exported = guard
        .run(
            "counting rows in the source",
            export_snapshot(db, options.lock_wait),
        )
        .await?;
    say(
        log,
        &format!(
            "counted the rows of {} tables in snapshot `{}`{}",
            exported.counts.len(),
            exported.name,
            match exported.versions.first() {
                Some(v) => format!(
                    "; schema version {} (`{}`)",
                    v.version.as_deref().unwrap_or("none"),
                    v.table
                ),
                None => String::new(),
            }
        ),
    );
    let mut snapshot = Some((exported.session, exported.name));
    let source_counts = Some(exported.counts);
    let migration_versions = Some(exported.versions);

    // Dump → gzip → SHA-256 → upload.
    let group = actions::group(&format!(
        "Dump `{}` to `{}`",
        db.name(),
        storage.url(&object)
    ));
    let dump_started = crate::util::now_rfc3339();
    let mut argv = match options.format {
        DumpFormat::Plain => vec![
            "--format=plain".to_string(),
            "--clean".to_string(),
            "--if-exists".to_string(),
        ],
        DumpFormat::Custom => vec!["--format=custom".to_string(), "--compress=0".to_string()],
        // Added by `directory::DirectoryDump::start`.
        DumpFormat::Directory => Vec::new(),
    };
    argv.push("--no-password".to_string());
    argv.push(format!(
        "--lock-wait-timeout={}",
        options.lock_wait.as_millis()
    ));
    if let Some((_, name)) = &snapshot {
        argv.push(format!("--snapshot={name}"));
    }
    argv.push(format!("--dbname={}", db.conninfo()));
    let progress = Arc::new(Progress::new());
    // For the ETA: the database's size on disk (indexes included, so an overestimate).
    if let Ok(Some(size)) = db
        .scalar("SELECT pg_database_size(current_database())")
        .await
        && let Ok(size) = size.trim().parse::<u64>()
    {
        progress
            .expected
            .store(size, std::sync::atomic::Ordering::Relaxed);
    }
    let stored = if options.format == DumpFormat::Directory {
        let files = storage.child(&backup_id);
        say(
            log,
            &format!(
                "dumping with {} pg_dump job(s) into a private directory under `{}`; each file is compressed and uploaded to `{}` as pg_dump writes it",
                options.jobs,
                options.work_dir.display(),
                files.url("")
            ),
        );
        let mut run = DirectoryDump::start(DumpPlan {
            db,
            args: argv,
            storage: files.clone(),
            work_dir: &options.work_dir,
            codec: options.codec,
            jobs: options.jobs,
            progress: progress.clone(),
            log,
        })?;
        let streamed = guard.run("dumping and uploading", run.drive()).await;
        let streamed = match streamed {
            Ok(streamed) => streamed,
            Err(error) => {
                let (error, left) = run.fail(error).await;
                if let Some(left) = left {
                    actions::annotate(actions::Level::Warning, Some("shipgate backup"), &left);
                    log_line(log, &left);
                    known.left = Some(left);
                }
                return Err(error);
            }
        };
        drop(run);
        Stored {
            size: streamed.compressed,
            uncompressed: streamed.dumped,
            sha256: streamed.sha256,
            parts: streamed.parts,
            files: Some(streamed.files),
        }
    } else {
        let spec = db.spec("pg_dump", "pg_dump", argv);
        log_line(log, &format!("$ {}", spec.display()));
        let mut upload = guard
            .run("starting the upload", async {
                storage
                    .begin(&object, options.codec.compression.content_type())
                    .await
                    .map_err(Error::from)
            })
            .await?;
        lease.note_upload(upload.id());
        let dumped = dump(&spec, options, &mut upload, &progress, guard, log, lease).await;
        let (compressed, finished) = match dumped {
            Ok(compressed) => {
                let finished = guard
                    .run("publishing the backup", async {
                        upload.finish().await.map_err(Error::from)
                    })
                    .await;
                match finished {
                    Ok(finished) => (compressed, finished),
                    Err(error) => {
                        let error = abort(&mut upload, log, known, error).await;
                        return Err(error);
                    }
                }
            }
            Err(error) => return Err(abort(&mut upload, log, known, error).await),
        };
        progress
            .uploaded
            .store(finished.size, std::sync::atomic::Ordering::Relaxed);
        if finished.size != compressed.compressed {
            withdraw(storage, &object, log, known).await;
            known.published = false;
            return Err(Error::dependency(format!(
                "`{}` holds {} bytes but {} were compressed; the destination lost data, so the object was withdrawn",
                storage.url(&object),
                finished.size,
                compressed.compressed
            )));
        }
        Stored {
            size: finished.size,
            uncompressed: compressed.dumped,
            sha256: compressed.sha256,
            parts: finished.parts,
            files: None,
        }
    };
    if let Some((session, _)) = snapshot.take() {
        session.close().await;
    }
    known.published = true;
    say(log, &progress.line());
    say(
        log,
        &format!(
            "uploaded `{}`: {} ({} dumped), {} {}, SHA-256 {}{}",
            storage.url(&object),
            crate::ui::bytes(stored.size),
            crate::ui::bytes(stored.uncompressed),
            stored.parts,
            if stored.files.is_some() {
                "file(s)"
            } else {
                "part(s)"
            },
            stored.sha256,
            if stored.files.is_some() {
                " (of the manifest)"
            } else {
                ""
            }
        ),
    );
    drop(group);

    // Read it back before anyone relies on it; an unverifiable object is withdrawn.
    let verification = if options.verify == VerifyMode::None {
        tracing::warn!("verification is off (`verify: none`): the backup was not read back");
        None
    } else {
        let expected = Expected {
            object: object.clone(),
            sha256: stored.sha256.clone(),
            size: stored.size,
            uncompressed: stored.uncompressed,
            format: options.format,
            compression: options.codec.compression,
            files: stored.files.clone(),
            jobs: options.jobs,
            work_dir: options.work_dir.clone(),
        };
        let check = guard
            .run(
                "verifying the backup",
                verify(
                    storage,
                    &expected,
                    options.verify,
                    db,
                    source_counts.as_ref(),
                    options.verify_database_url.as_ref(),
                    log,
                ),
            )
            .await;
        match check {
            Ok(verification) => Some(verification),
            Err(error) => {
                withdraw_any(storage, &object, stored.files.as_deref(), log, known).await;
                known.published = false;
                return Err(error);
            }
        }
    };

    let sidecar = Sidecar {
        schema_version: 1,
        backup_id: backup_id.clone(),
        deployment_id: id.clone(),
        location: storage.url(&object),
        sidecar_location: storage.url(&sidecar_name),
        object: object.clone(),
        timestamp: dump_started,
        completed_at: crate::util::now_rfc3339(),
        size: stored.size,
        uncompressed_size: stored.uncompressed,
        sha256: stored.sha256.clone(),
        compression: options.codec.compression,
        compression_level: options.codec.level,
        format: options.format,
        database: db.name().to_string(),
        database_identity: Some(identity),
        server_version: server_version.clone(),
        client_version: client_version.clone(),
        duration_ms: started.elapsed().as_millis() as u64,
        parts: stored.parts,
        verified: verification.is_some(),
        verification: verification.clone(),
        row_counts: source_counts,
        migration_versions,
        environment: options.environment.clone(),
        repository: options.repository.clone(),
        created_by: format!("shipgate {}", env!("CARGO_PKG_VERSION")),
        jobs: stored.files.as_ref().map(|_| options.jobs),
        files: stored.files,
    };
    let body = serde_json::to_vec_pretty(&sidecar)
        .map_err(|e| Error::usage(format!("cannot serialize the sidecar: {e}")))?;
    let body = crate::secret::redact(&String::from_utf8_lossy(&body)).into_bytes();
    let written = guard
        .run("writing the sidecar", async {
            storage
                .put_new(&sidecar_name, body, "application/json")
                .await
                .map_err(Error::from)
        })
        .await;
    if let Err(error) = written {
        withdraw_any(storage, &object, sidecar.files.as_deref(), log, known).await;
        known.published = false;
        return Err(error.context(format!(
            "the backup was uploaded but its sidecar `{}` could not be written, so it was withdrawn",
            storage.url(&sidecar_name)
        )));
    }
    say(
        log,
        &format!("wrote the sidecar `{}`", storage.url(&sidecar_name)),
    );
    Ok(Done {
        sidecar,
        reused: false,
    })
}

/// What was stored, whatever the format.
struct Stored {
    size: u64,
    uncompressed: u64,
    sha256: String,
    parts: u32,
    /// A directory backup's manifest.
    files: Option<Vec<ManifestFile>>,
}

/// [`withdraw`] for either kind of backup: a directory backup's every file.
async fn withdraw_any(
    storage: &Storage,
    object: &str,
    files: Option<&[ManifestFile]>,
    log: &SharedLog,
    known: &mut Known,
) {
    match files {
        None => withdraw(storage, object, log, known).await,
        Some(files) => {
            let dir = storage.child(object.trim_end_matches('/'));
            for file in files {
                withdraw(&dir, &file.name, log, known).await;
            }
        }
    }
}

/// What identifies `db` in a sidecar: host, port and name from `database-url`, and the server's
/// `system_identifier` (left out, with a warning, when the role may not read it).
async fn database_identity(db: &Database, log: &SharedLog) -> DatabaseIdentity {
    let (host, port) = address_of(db.conninfo());
    let system_identifier = match db
        .scalar("SELECT system_identifier FROM pg_control_system()")
        .await
    {
        Ok(id) => id
            .map(|id| id.trim().to_string())
            .filter(|id| !id.is_empty()),
        Err(e) => {
            let message = format!(
                "cannot read the server's system identifier ({e}); the backup records the database by host, port and name only"
            );
            tracing::warn!("{message}");
            log_line(log, &message);
            None
        }
    };
    DatabaseIdentity {
        host,
        port,
        database: db.name().to_string(),
        system_identifier,
    }
}

/// Refuses to reuse `sidecar`'s backup for another database than `db` (a usage error naming
/// both). A sidecar written before shipgate recorded the identity is compared by database name
/// only, with a warning.
async fn check_same_database(
    sidecar: &Sidecar,
    db: &Database,
    guard: &mut Guard<'_>,
    log: &SharedLog,
) -> Result<()> {
    guard
        .run("connecting to the database", async {
            db.server_version().await.context(format!(
                "cannot connect to the database `{}` to check that the earlier backup is of it",
                db.display()
            ))
        })
        .await?;
    let current = guard
        .run("reading the database's identity", async {
            Ok(database_identity(db, log).await)
        })
        .await?;
    let recorded = sidecar.database_identity.clone();
    let verdict = match &recorded {
        Some(recorded) => recorded.same_as(&current),
        None if sidecar.database == current.database => Ok(Some(format!(
            "the sidecar `{}` was written by an older shipgate and records only the database name `{}`, which matches; the server could not be compared, so make sure `database-url` names the database that was backed up",
            sidecar.sidecar_location, sidecar.database
        ))),
        None => Err("the database names differ".to_string()),
    };
    match verdict {
        Ok(None) => Ok(()),
        Ok(Some(warning)) => {
            actions::annotate(actions::Level::Warning, Some("shipgate backup"), &warning);
            log_line(log, &warning);
            Ok(())
        }
        Err(why) => {
            let was = match &recorded {
                Some(recorded) => recorded.describe(),
                None => format!(
                    "`{}` (an older sidecar: no server recorded)",
                    sidecar.database
                ),
            };
            Err(Error::usage(format!(
                "this deployment's backup `{}` is of the database {was}, but `database-url` names {} ({why}); a re-run with the same deployment id must back up the same database: fix `database-url`, or use another deployment id for the other database. The earlier backup is left untouched",
                sidecar.location,
                current.describe()
            )))
        }
    }
}

/// Another run of the same backup is alive: what it is doing, and what to do.
fn conflict(
    storage: &Storage,
    object: &str,
    backup_id: &str,
    live: &lease::Marker,
    uploads: &[PendingUpload],
    lease: &Lease,
) -> Error {
    let doing = match (uploads.first(), &live.body.upload_id) {
        (Some(upload), _) => format!(
            "; its upload `{}` of `{}` was initiated at {}",
            upload.id,
            storage.url(object),
            upload
                .initiated
                .map(lease::time)
                .unwrap_or_else(|| "an unknown time".into())
        ),
        (None, Some(id)) => format!(
            "; its upload `{id}` of `{}` is complete and being verified",
            storage.url(object)
        ),
        (None, None) => "; it has not started uploading yet".to_string(),
    };
    Error::usage(format!(
        "another `shipgate backup` of `{backup_id}` is running ({}; its marker `{}` was renewed at {}){doing}. Refusing to start a second one, which could only abort its upload or race it to publish; nothing was changed. Wait for it to finish (a re-run afterwards reuses its backup), or, if that run is dead, re-run once its marker is older than {}. A `concurrency:` group on the deployment workflow prevents this",
        live.describe(),
        storage.url(&live.name),
        live.modified
            .map(lease::time)
            .unwrap_or_else(|| "an unknown time".into()),
        crate::ui::format_duration(lease.timing().lease)
    ))
}

/// Aborts the upload after `error`, and says what could not be cleaned up.
async fn abort(upload: &mut Upload, log: &SharedLog, known: &mut Known, error: Error) -> Error {
    say(log, "aborting the upload: nothing will be published");
    match upload.abort(ABORT_PATIENCE).await {
        Ok(()) => Error::new(error.kind(), format!("{error}; nothing was published")),
        Err(left) => {
            actions::annotate(actions::Level::Warning, Some("shipgate backup"), &left);
            log_line(log, &left);
            known.left = Some(left.clone());
            Error::new(
                error.kind(),
                format!("{error}; nothing was published, but {left}"),
            )
        }
    }
}

/// Deletes an object this run uploaded but could not vouch for (not a backup anyone relies on:
/// it has no sidecar), trying again for a while when the destination is unreachable.
async fn withdraw(storage: &Storage, object: &str, log: &SharedLog, known: &mut Known) {
    say(
        log,
        &format!(
            "withdrawing `{}`: it failed verification or could not be completed",
            storage.url(object)
        ),
    );
    match storage.delete_patiently(object, ABORT_PATIENCE).await {
        Ok(()) => say(log, &format!("withdrew `{}`", storage.url(object))),
        Err(e) => {
            let message = format!(
                "`{}` failed verification or could not be completed and could not be deleted ({e}); it has no sidecar, so it is not a backup: the next `shipgate backup` with this deployment id replaces it, or delete it by hand",
                storage.url(object)
            );
            actions::annotate(actions::Level::Warning, Some("shipgate backup"), &message);
            log_line(log, &message);
            known.left = Some(message);
        }
    }
}

/// Runs pg_dump into the upload; on success every byte has been handed to the uploader (but
/// the upload is not finished). On failure pg_dump is stopped; the caller aborts the upload.
async fn dump(
    spec: &process::Spec,
    options: &Options,
    upload: &mut Upload,
    progress: &Arc<Progress>,
    guard: &mut Guard<'_>,
    log: &SharedLog,
    lease: &Lease,
) -> Result<archive::Compressed> {
    let mut child = spec.spawn_piped()?;
    let pid = child.id();
    let stdout = child
        .stdout
        .take()
        .and_then(|s| s.into_owned_fd().ok())
        .map(std::fs::File::from)
        .ok_or_else(|| Error::dependency("pg_dump has no output pipe"))?;
    // A bigger pipe means fewer wake-ups of pg_dump and of the compressor (Linux only; the
    // default 64 KiB works too).
    let _ = nix::fcntl::fcntl(&stdout, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
    let stderr = child
        .stderr
        .take()
        .map(|s| process::tail_lines(s, "pg_dump", Some(log.clone()), true));
    let (tx, mut rx) = mpsc::channel::<Bytes>(PART_QUEUE);
    let codec = options.codec;
    let thread_progress = progress.clone();
    let compressor =
        tokio::task::spawn_blocking(move || archive::compress(stdout, codec, tx, &thread_progress));

    let work = async {
        pump(upload, &mut rx, progress, log, lease).await?;
        let compressed = compressor
            .await
            .map_err(|e| Error::dependency(format!("the compressor failed: {e}")))?
            .map_err(|e| Error::dependency(format!("cannot read pg_dump's output: {e}")))?;
        let status = child
            .wait()
            .await
            .map_err(|e| Error::dependency(format!("cannot wait for pg_dump: {e}")))?;
        let tail = match stderr {
            Some(handle) => handle.await.unwrap_or_default(),
            None => Vec::new(),
        };
        if !status.success() {
            use std::os::unix::process::ExitStatusExt as _;
            let how = match (status.code(), status.signal()) {
                (Some(code), _) => format!("exit code {code}"),
                (None, Some(signal)) => format!("killed by signal {signal}"),
                _ => "no exit status".into(),
            };
            let last = last_error(&tail)
                .map(|l| format!(": {l}"))
                .unwrap_or_default();
            return Err(Error::dependency(format!("pg_dump failed ({how}){last}")));
        }
        archive::looks_complete(options.format, &compressed.head, &compressed.tail)
            .map_err(|reason| Error::dependency(format!("pg_dump exited cleanly but {reason}")))?;
        Ok(compressed)
    };
    let result = guard.run("dumping and uploading", work).await;
    drop(rx);
    if result.is_err() {
        process::terminate_group(pid, &mut child).await;
    }
    result
}

/// pg_dump's last error line with the detail lines that follow it (`Query was: …`).
fn last_error(tail: &[String]) -> Option<String> {
    let at = tail
        .iter()
        .rposition(|l| l.contains("error"))
        .or(tail.len().checked_sub(1))?;
    let mut text = tail[at].clone();
    for line in tail[at + 1..].iter().take(3) {
        if let Some(detail) = line.split_once("detail: ").map(|(_, d)| d) {
            text.push_str(&format!(" ({detail})"));
        }
    }
    Some(text)
}

/// Moves compressed parts to the upload until the compressor is done, reporting progress.
async fn pump(
    upload: &mut Upload,
    rx: &mut mpsc::Receiver<Bytes>,
    progress: &Progress,
    log: &SharedLog,
    lease: &Lease,
) -> Result<()> {
    let mut ticker = tokio::time::interval(crate::ui::progress_every(super::PROGRESS_EVERY));
    ticker.tick().await;
    loop {
        tokio::select! {
            part = rx.recv() => match part {
                Some(part) => {
                    upload.write_part(part).await?;
                    lease.note_upload(upload.id());
                    progress.uploaded.store(upload.uploaded(), std::sync::atomic::Ordering::Relaxed);
                }
                None => return Ok(()),
            },
            _ = ticker.tick() => {
                progress.uploaded.store(upload.uploaded(), std::sync::atomic::Ordering::Relaxed);
                super::show_progress(log, progress);
            }
        }
    }
}

/// A backup with a sidecar already exists for this deployment id: check it and reuse it.
async fn reuse(
    options: &Options,
    log: &SharedLog,
    guard: &mut Guard<'_>,
    known: &mut Known,
    storage: &Storage,
    sidecar: Sidecar,
    db: &Database,
) -> Result<Done> {
    known.location = Some(sidecar.location.clone());
    check_same_database(&sidecar, db, guard, log).await?;
    known.published = true;
    say(
        log,
        &format!(
            "`{}` already exists (taken {}): reusing it, not dumping again",
            sidecar.location, sidecar.timestamp
        ),
    );
    if let Some(files) = &sidecar.files {
        let dir = storage.child(sidecar.object.trim_end_matches('/'));
        guard
            .run(
                "checking the earlier backup",
                directory::check_stored(&dir, files),
            )
            .await?;
    }
    let head = match sidecar.files {
        Some(_) => None,
        None => Some(
            guard
                .run("checking the earlier backup", async {
                    storage
                        .head(&sidecar.object)
                        .await
                        .context("cannot check the earlier backup")
                })
                .await?,
        ),
    };
    match head.unwrap_or(Some(crate::storage::ObjectInfo {
        name: sidecar.object.clone(),
        size: sidecar.size,
        modified: None,
    })) {
        None => {
            return Err(Error::gate(format!(
                "the sidecar `{}` exists but its dump `{}` does not: the backup of this deployment is broken; investigate, then remove the sidecar or use another deployment id",
                sidecar.sidecar_location, sidecar.location
            )));
        }
        Some(info) if info.size != sidecar.size => {
            return Err(Error::gate(format!(
                "`{}` is {} bytes but its sidecar says {}: the stored backup changed after it was written; investigate before relying on it",
                sidecar.location, info.size, sidecar.size
            )));
        }
        Some(_) => {}
    }
    let mut verified = sidecar.clone();
    if options.verify != VerifyMode::None {
        let expected = Expected {
            object: sidecar.object.clone(),
            sha256: sidecar.sha256.clone(),
            size: sidecar.size,
            uncompressed: sidecar.uncompressed_size,
            format: sidecar.format,
            compression: sidecar.compression,
            files: sidecar.files.clone(),
            jobs: options.jobs,
            work_dir: options.work_dir.clone(),
        };
        // Re-verified by reading it back; a restore check needs the original counts.
        let mode = if options.verify == VerifyMode::Restore && sidecar.row_counts.is_some() {
            VerifyMode::Restore
        } else {
            VerifyMode::Sha256
        };
        let verification = guard
            .run(
                "verifying the earlier backup",
                verify(
                    storage,
                    &expected,
                    mode,
                    db,
                    sidecar.row_counts.as_ref(),
                    options.verify_database_url.as_ref(),
                    log,
                ),
            )
            .await
            .map_err(|e| {
                e.context(format!(
                    "the earlier backup `{}` of this deployment no longer verifies; it is left untouched",
                    sidecar.location
                ))
            })?;
        verified.verified = true;
        verified.verification = Some(verification);
    }
    Ok(Done {
        sidecar: verified,
        reused: true,
    })
}
