//! Directory-format backups (`dump-format: directory`), both ways:
//! - out: `pg_dump --format=directory --jobs=N` writes into a private temporary directory; each
//!   file is picked up as it appears (inotify), tailed while pg_dump writes it, compressed,
//!   hashed and uploaded as its own streamed upload to `backup-<id>/<file>.gz`, then deleted
//!   (holes are punched behind the read offset meanwhile, so the disk holds little more than
//!   what pg_dump wrote ahead of the upload). The manifest (every file's size, uncompressed size
//!   and SHA-256) goes into the sidecar, written last by the caller;
//! - back: every file downloaded N at a time, checked against the manifest while it streams and
//!   decompressed into a private temporary directory, and only when all of them matched,
//!   `pg_restore --jobs=N` from it.
//!
//! On any failure everything this run stored under `backup-<id>/` is aborted or deleted.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use sha2::Digest as _;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::archive::{self, Progress, Source};
use super::say;
use super::sidecar::{ManifestFile, manifest_text};
use crate::error::{Error, Result, ResultExt};
use crate::postgres::Database;
use crate::process::{self, SharedLog};
use crate::state::backup::{Compression, DumpFormat};
use crate::storage::Storage;

/// pg_dump's table of contents in a directory archive (written first, read by pg_restore).
pub(crate) const TOC: &str = "toc.dat";
/// How long a failed run keeps trying to abort or delete while the destination is unreachable.
const PATIENCE: Duration = Duration::from_secs(30);
/// How often the directory's events are read while nothing else happens.
const EVENT_POLL: Duration = Duration::from_millis(50);
/// How long a reader that caught up with pg_dump waits before reading again.
const TAIL_POLL: Duration = Duration::from_millis(20);
/// Holes are punched once this much was read past the last one.
const PUNCH_EVERY: u64 = 8 * 1024 * 1024;
/// Files compressed and uploaded at once, whatever `--jobs` says: each one holds up to two
/// parts of [`crate::storage::part_size`] (8 MiB) in memory (being filled, queued), plus its
/// share of [`PARTS_IN_FLIGHT`]; pg_dump still runs `--jobs` workers, and the files they
/// finish wait on disk for their turn.
pub(crate) const MAX_STREAMS: usize = 2;
/// Parts handed to the uploads (waiting for or being uploaded) at once, across all files: with
/// [`MAX_STREAMS`], at most 2 × 2 + 3 parts of 8 MiB are in memory, which keeps the peak RSS
/// well under 100 MiB. At least 3, so two files each holding the first part of a multipart
/// upload never wait on each other.
const PARTS_IN_FLIGHT: usize = 3;

/// The most `--jobs` may be.
pub(crate) const MAX_JOBS: u32 = 64;

/// `--jobs` when none is given: the available cores, at most 8.
pub(crate) fn default_jobs() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
        .clamp(1, 8)
}

/// A private (0700) temporary directory, removed with everything in it when dropped.
pub(crate) struct PrivateDir(PathBuf);

impl PrivateDir {
    /// `<work_dir>/shipgate-<what>-<random>`.
    pub(crate) fn new(work_dir: &Path, what: &str) -> Result<PrivateDir> {
        use std::os::unix::fs::DirBuilderExt as _;
        let path = work_dir.join(format!("shipgate-{what}-{}", crate::util::random_hex(8)));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| {
                Error::usage(format!(
                    "cannot create the temporary directory `{}`: {e}; set `work-dir` to a writable directory with room for the files in flight",
                    path.display()
                ))
            })?;
        Ok(PrivateDir(path))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the directory dump stored.
pub(crate) struct Streamed {
    /// In name order.
    pub(crate) files: Vec<ManifestFile>,
    pub(crate) dumped: u64,
    pub(crate) compressed: u64,
    pub(crate) parts: u32,
    /// SHA-256 of the manifest ([`manifest_text`]).
    pub(crate) sha256: String,
}

/// A file pg_dump is writing, as the directory's events describe it.
#[derive(Default)]
struct FileState {
    /// pg_dump closed it (IN_CLOSE_WRITE, or pg_dump exited).
    closed: AtomicBool,
}

/// Reads a file pg_dump is still writing: at its current end it waits for more until the file
/// is closed; behind what it read it punches holes, so the data is not on disk twice.
struct Tail {
    file: std::fs::File,
    offset: u64,
    punched: u64,
    punch: bool,
    state: Arc<FileState>,
    stop: Arc<AtomicBool>,
}

impl Read for Tail {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return Err(std::io::Error::other("the backup stopped"));
            }
            // Read the flag first: closed before a read that found nothing means the end.
            let closed = self.state.closed.load(Ordering::SeqCst);
            let n = self.file.read(buf)?;
            if n > 0 {
                self.offset += n as u64;
                self.punch_behind();
                return Ok(n);
            }
            if closed {
                return Ok(0);
            }
            std::thread::sleep(TAIL_POLL);
        }
    }
}

impl Tail {
    fn punch_behind(&mut self) {
        if !self.punch || self.offset - self.punched < PUNCH_EVERY {
            return;
        }
        let end = self.offset & !4095;
        use nix::fcntl::{FallocateFlags, fallocate};
        match fallocate(
            &self.file,
            FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
            self.punched as i64,
            (end - self.punched) as i64,
        ) {
            Ok(()) => self.punched = end,
            Err(e) => {
                // tmpfs, ext4, xfs, btrfs support it; elsewhere the file stays until uploaded.
                tracing::debug!(
                    "cannot punch holes in pg_dump's files ({e}); they are deleted once uploaded instead"
                );
                self.punch = false;
            }
        }
    }
}

/// What every file's stream shares.
struct StreamCtx {
    /// The destination's `backup-<id>/`.
    storage: Storage,
    /// pg_dump's output directory.
    dir: PathBuf,
    /// The backup's codec, one thread per file (the files are compressed side by side).
    codec: archive::Codec,
    progress: Arc<Progress>,
    cancel: watch::Receiver<bool>,
    /// [`PARTS_IN_FLIGHT`] permits.
    parts: Arc<tokio::sync::Semaphore>,
}

/// A file whose stream failed.
struct StreamFailure {
    file: String,
    error: Error,
    /// Its upload, when it failed on its own: aborted by [`DirectoryDump::fail`] with every
    /// other (so the failure is reported at once, not after the abort's retries).
    upload: Option<Box<crate::storage::Upload>>,
    /// What its aborted upload left behind, when cancelled.
    left: Option<String>,
}

/// Compresses, hashes and uploads one file as pg_dump writes it; aborts its upload when it
/// fails or the run is cancelled.
async fn stream_file(
    ctx: Arc<StreamCtx>,
    name: String,
    state: Arc<FileState>,
) -> std::result::Result<ManifestFile, StreamFailure> {
    let object = format!("{name}{}", ctx.codec.compression.suffix());
    let mut upload = match ctx
        .storage
        .begin(&object, ctx.codec.compression.content_type())
        .await
    {
        Ok(upload) => upload,
        Err(e) => {
            return Err(StreamFailure {
                file: name,
                error: e.into(),
                upload: None,
                left: None,
            });
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let mut cancel = ctx.cancel.clone();
    let result = tokio::select! {
        result = upload_file(&ctx, &name, &object, &state, &mut upload, &stop) => result.map_err(Some),
        _ = cancel.wait_for(|c| *c) => Err(None),
    };
    match result {
        Ok(entry) => Ok(entry),
        Err(Some(error)) => {
            stop.store(true, Ordering::SeqCst);
            Err(StreamFailure {
                file: name,
                error,
                upload: Some(Box::new(upload)),
                left: None,
            })
        }
        Err(None) => {
            stop.store(true, Ordering::SeqCst);
            let left = upload.abort(PATIENCE).await.err();
            Err(StreamFailure {
                file: name,
                error: Error::dependency("stopped"),
                upload: None,
                left,
            })
        }
    }
}

async fn upload_file(
    ctx: &StreamCtx,
    name: &str,
    object: &str,
    state: &Arc<FileState>,
    upload: &mut crate::storage::Upload,
    stop: &Arc<AtomicBool>,
) -> Result<ManifestFile> {
    let path = ctx.dir.join(name);
    let file = std::fs::File::open(&path)
        .map_err(|e| Error::dependency(format!("cannot open `{}`: {e}", path.display())))?;
    let reader = Tail {
        file,
        offset: 0,
        punched: 0,
        // The table of contents is kept whole: it names the tables when something fails.
        punch: name != TOC,
        state: state.clone(),
        stop: stop.clone(),
    };
    let (tx, mut rx) = mpsc::channel::<Bytes>(1);
    let progress = ctx.progress.clone();
    let codec = ctx.codec;
    let compressor =
        tokio::task::spawn_blocking(move || archive::compress(reader, codec, tx, &progress));
    let mut reported = 0u64;
    // This file's permits, each with the bytes sent once its part was: released as the
    // destination acknowledges as many bytes.
    let mut held: VecDeque<(u64, tokio::sync::OwnedSemaphorePermit)> = VecDeque::new();
    let mut sent = 0u64;
    let release = |held: &mut VecDeque<(u64, tokio::sync::OwnedSemaphorePermit)>, done: u64| {
        while held.front().is_some_and(|(end, _)| *end <= done) {
            held.pop_front();
        }
    };
    while let Some(part) = rx.recv().await {
        let permit = loop {
            release(&mut held, upload.uploaded());
            match tokio::time::timeout(TAIL_POLL, ctx.parts.clone().acquire_owned()).await {
                Ok(Ok(permit)) => break permit,
                Ok(Err(_)) => return Err(Error::dependency("the upload budget was closed")),
                Err(_) => continue,
            }
        };
        sent += part.len() as u64;
        held.push_back((sent, permit));
        upload.write_part(part).await?;
        release(&mut held, upload.uploaded());
        let now = upload.uploaded();
        ctx.progress
            .uploaded
            .fetch_add(now.saturating_sub(reported), Ordering::Relaxed);
        reported = reported.max(now);
    }
    let compressed = compressor
        .await
        .map_err(|e| Error::dependency(format!("the compressor failed: {e}")))?
        .map_err(|e| {
            Error::dependency(format!("cannot read `{name}` as pg_dump writes it: {e}"))
        })?;
    let finished = upload.finish().await?;
    drop(held);
    ctx.progress
        .uploaded
        .fetch_add(finished.size.saturating_sub(reported), Ordering::Relaxed);
    if finished.size != compressed.compressed {
        return Err(Error::dependency(format!(
            "`{}` holds {} bytes but {} were compressed; the destination lost data",
            ctx.storage.url(object),
            finished.size,
            compressed.compressed
        )));
    }
    if name == TOC {
        archive::looks_complete(DumpFormat::Directory, &compressed.head, &compressed.tail)
            .map_err(|reason| Error::dependency(format!("pg_dump's `{TOC}`: {reason}")))?;
    } else {
        let _ = std::fs::remove_file(&path);
    }
    Ok(ManifestFile {
        name: object.to_string(),
        size: finished.size,
        uncompressed_size: compressed.dumped,
        sha256: compressed.sha256,
    })
}

/// A running directory dump: pg_dump, the watch on its directory, and the files' streams.
pub(crate) struct DirectoryDump {
    child: tokio::process::Child,
    pid: Option<u32>,
    stderr: Option<tokio::task::JoinHandle<Vec<String>>>,
    exit: Option<std::process::ExitStatus>,
    inotify: Inotify,
    out: PathBuf,
    _temp: PrivateDir,
    files: BTreeMap<String, Arc<FileState>>,
    queue: VecDeque<String>,
    tasks: JoinSet<std::result::Result<ManifestFile, StreamFailure>>,
    done: Vec<ManifestFile>,
    left: Vec<String>,
    /// Uploads of failed files, still to abort.
    failed: Vec<crate::storage::Upload>,
    cancel: watch::Sender<bool>,
    ctx: Arc<StreamCtx>,
    streams: usize,
    /// `3346.dat` → `public.accounts`, from `pg_restore --list` once `toc.dat` is written.
    tables: Option<BTreeMap<String, String>>,
    db: Database,
    log: SharedLog,
}

/// How the directory dump is run.
pub(crate) struct DumpPlan<'a> {
    pub(crate) db: &'a Database,
    /// pg_dump's options but `--format`, `--compress`, `--jobs` and `--file` (`--dbname` last).
    pub(crate) args: Vec<String>,
    /// The destination's `backup-<id>/`.
    pub(crate) storage: Storage,
    pub(crate) work_dir: &'a Path,
    pub(crate) codec: archive::Codec,
    pub(crate) jobs: u32,
    pub(crate) progress: Arc<Progress>,
    pub(crate) log: &'a SharedLog,
}

impl DirectoryDump {
    /// Creates the private directory, watches it, and starts pg_dump into it.
    pub(crate) fn start(plan: DumpPlan<'_>) -> Result<DirectoryDump> {
        let temp = PrivateDir::new(plan.work_dir, "backup")?;
        let out = temp.path().join("dump");
        {
            use std::os::unix::fs::DirBuilderExt as _;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&out)
                .map_err(|e| {
                    Error::dependency(format!("cannot create `{}`: {e}", out.display()))
                })?;
        }
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(|e| Error::dependency(format!("cannot watch pg_dump's directory: {e}")))?;
        inotify
            .add_watch(
                &out,
                AddWatchFlags::IN_CREATE
                    | AddWatchFlags::IN_CLOSE_WRITE
                    | AddWatchFlags::IN_MOVED_TO,
            )
            .map_err(|e| Error::dependency(format!("cannot watch `{}`: {e}", out.display())))?;
        let mut argv = vec![
            "--format=directory".to_string(),
            "--compress=0".to_string(),
            format!("--jobs={}", plan.jobs),
            format!("--file={}", out.display()),
        ];
        argv.extend(plan.args);
        let spec = plan.db.spec("pg_dump", "pg_dump", argv);
        super::log_line(plan.log, &format!("$ {}", spec.display()));
        let mut child = spec.spawn_piped()?;
        let pid = child.id();
        let stderr = child
            .stderr
            .take()
            .map(|s| process::tail_lines(s, "pg_dump", Some(plan.log.clone()), true));
        // pg_dump prints nothing on stdout with `--file`.
        drop(child.stdout.take());
        let (cancel, cancel_rx) = watch::channel(false);
        let streams = (plan.jobs as usize).clamp(1, MAX_STREAMS);
        Ok(DirectoryDump {
            child,
            pid,
            stderr,
            exit: None,
            inotify,
            out: out.clone(),
            _temp: temp,
            files: BTreeMap::new(),
            queue: VecDeque::new(),
            tasks: JoinSet::new(),
            done: Vec::new(),
            left: Vec::new(),
            failed: Vec::new(),
            cancel,
            ctx: Arc::new(StreamCtx {
                storage: plan.storage,
                dir: out,
                codec: archive::Codec {
                    threads: 1,
                    ..plan.codec
                },
                progress: plan.progress,
                cancel: cancel_rx,
                parts: Arc::new(tokio::sync::Semaphore::new(PARTS_IN_FLIGHT)),
            }),
            streams,
            tables: None,
            db: plan.db.clone(),
            log: plan.log.clone(),
        })
    }

    /// Streams every file until pg_dump has finished and every file is stored.
    pub(crate) async fn drive(&mut self) -> Result<Streamed> {
        enum Event {
            Joined(
                Option<
                    std::result::Result<
                        std::result::Result<ManifestFile, StreamFailure>,
                        tokio::task::JoinError,
                    >,
                >,
            ),
            Exited(std::io::Result<std::process::ExitStatus>),
            Tick,
            Progress,
        }
        let mut ticker = tokio::time::interval(crate::ui::progress_every(super::PROGRESS_EVERY));
        ticker.tick().await;
        loop {
            self.read_events().await;
            while self.tasks.len() < self.streams
                && let Some(name) = self.queue.pop_front()
            {
                let state = self.files.get(&name).cloned().unwrap_or_default();
                self.tasks.spawn(stream_file(self.ctx.clone(), name, state));
            }
            if self.exit.is_some() && self.queue.is_empty() && self.tasks.is_empty() {
                break;
            }
            let event = tokio::select! {
                joined = self.tasks.join_next(), if !self.tasks.is_empty() => Event::Joined(joined),
                status = self.child.wait(), if self.exit.is_none() => Event::Exited(status),
                _ = tokio::time::sleep(EVENT_POLL) => Event::Tick,
                _ = ticker.tick() => Event::Progress,
            };
            match event {
                Event::Joined(Some(Ok(Ok(entry)))) => {
                    if Compression::split(&entry.name)
                        .is_some_and(|(file, _)| file.ends_with(".dat"))
                    {
                        self.ctx
                            .progress
                            .tables_done
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    self.done.push(entry);
                }
                Event::Joined(Some(Ok(Err(failure)))) => {
                    if let Some(left) = failure.left {
                        self.left.push(left);
                    }
                    self.failed.extend(failure.upload.map(|u| *u));
                    let what = self.what(&failure.file).await;
                    return Err(Error::new(
                        failure.error.kind(),
                        format!("storing {what} failed: {}", failure.error),
                    ));
                }
                Event::Joined(Some(Err(e))) => {
                    return Err(Error::dependency(format!("a file's upload failed: {e}")));
                }
                Event::Joined(None) | Event::Tick => {}
                Event::Exited(status) => self.exited(status).await?,
                Event::Progress => super::show_progress(&self.log, &self.ctx.progress),
            }
        }
        let mut files = std::mem::take(&mut self.done);
        files.sort_by(|a, b| a.name.cmp(&b.name));
        if !files.iter().any(|f| is_toc(&f.name)) {
            return Err(Error::dependency(format!(
                "pg_dump exited cleanly but wrote no `{TOC}`"
            )));
        }
        let sha256 = archive::hex(&sha2::Sha256::digest(manifest_text(&files).as_bytes()));
        Ok(Streamed {
            dumped: files.iter().map(|f| f.uncompressed_size).sum(),
            compressed: files.iter().map(|f| f.size).sum(),
            parts: files.len() as u32,
            sha256,
            files,
        })
    }

    /// pg_dump ended: a failure names the tables it was writing; a success closes every file.
    async fn exited(&mut self, status: std::io::Result<std::process::ExitStatus>) -> Result<()> {
        let status =
            status.map_err(|e| Error::dependency(format!("cannot wait for pg_dump: {e}")))?;
        self.exit = Some(status);
        self.read_events().await;
        if !status.success() {
            use std::os::unix::process::ExitStatusExt as _;
            let how = match (status.code(), status.signal()) {
                (Some(code), _) => format!("exit code {code}"),
                (None, Some(signal)) => format!("killed by signal {signal}"),
                _ => "no exit status".into(),
            };
            let tail = match self.stderr.take() {
                Some(handle) => tokio::time::timeout(Duration::from_secs(5), handle)
                    .await
                    .ok()
                    .and_then(|r| r.ok())
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            let last = tail
                .iter()
                .rev()
                .find(|l| l.contains("error"))
                .map(|l| format!(": {l}"))
                .unwrap_or_default();
            // A worker can finish and close its file after the leader died, before its event
            // is read here: a file counts as being written until its upload is done too.
            let open: Vec<String> = self
                .files
                .iter()
                .filter(|(name, state)| {
                    name.as_str() != TOC
                        && (!state.closed.load(Ordering::SeqCst)
                            || self.done.iter().all(|d| &d.name != *name))
                })
                .map(|(name, _)| name.clone())
                .collect();
            let mut writing = Vec::new();
            for name in &open {
                writing.push(self.what(name).await);
            }
            let during = if writing.is_empty() {
                String::new()
            } else {
                format!(" while writing {}", writing.join(", "))
            };
            return Err(Error::dependency(format!(
                "pg_dump failed ({how}){during}{last}"
            )));
        }
        if let Some(handle) = self.stderr.take() {
            let _ = handle.await;
        }
        // Every file is complete now, whatever events were missed.
        self.rescan();
        for state in self.files.values() {
            state.closed.store(true, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Reads the directory's events: new files are queued, closed ones marked.
    async fn read_events(&mut self) {
        let mut toc_closed = false;
        loop {
            let events = match self.inotify.read_events() {
                Ok(events) if !events.is_empty() => events,
                _ => break,
            };
            for event in events {
                if event.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                    self.rescan();
                    continue;
                }
                let Some(name) = event.name.map(|n| n.to_string_lossy().into_owned()) else {
                    continue;
                };
                let state = self.register(&name);
                if event.mask.contains(AddWatchFlags::IN_CLOSE_WRITE) {
                    state.closed.store(true, Ordering::SeqCst);
                    toc_closed |= name == TOC;
                }
            }
        }
        if toc_closed && self.tables.is_none() {
            self.tables = Some(table_files(&self.db, &self.out).await);
            let count = self.tables.as_ref().map_or(0, |t| t.len()) as u64;
            self.ctx
                .progress
                .tables_total
                .store(count, Ordering::Relaxed);
        }
    }

    fn register(&mut self, name: &str) -> Arc<FileState> {
        if let Some(state) = self.files.get(name) {
            return state.clone();
        }
        let state = Arc::new(FileState::default());
        self.files.insert(name.to_string(), state.clone());
        self.queue.push_back(name.to_string());
        state
    }

    /// Registers any file in the directory not seen yet (after an event overflow or at the end).
    fn rescan(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.out) else {
            return;
        };
        let names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        for name in names {
            if !self.files.contains_key(&name) && self.done.iter().all(|d| d.name != name) {
                self.register(&name);
            }
        }
    }

    /// `table `public.accounts` (`3346.dat`)`, for messages.
    async fn what(&mut self, file: &str) -> String {
        if file == TOC {
            return format!("pg_dump's table of contents (`{TOC}`)");
        }
        if self.tables.is_none()
            && self
                .files
                .get(TOC)
                .is_some_and(|s| s.closed.load(Ordering::SeqCst))
        {
            self.tables = Some(table_files(&self.db, &self.out).await);
        }
        match self.tables.as_ref().and_then(|t| t.get(file)) {
            Some(table) => format!("the data of table `{table}` (`{file}`)"),
            None => format!("`{file}`"),
        }
    }

    /// After a failure: stops pg_dump, aborts every upload in flight, deletes what was already
    /// stored under `backup-<id>/`. Returns the error to report and what could not be cleaned.
    pub(crate) async fn fail(mut self, error: Error) -> (Error, Option<String>) {
        say(
            &self.log,
            "stopping pg_dump and aborting every upload of the backup: nothing will be published",
        );
        let _ = self.cancel.send(true);
        // Also when the leader is gone: its workers share its process group.
        process::terminate_group(self.pid, &mut self.child).await;
        while let Some(joined) = self.tasks.join_next().await {
            match joined {
                Ok(Ok(entry)) => self.done.push(entry),
                Ok(Err(failure)) => {
                    if let Some(left) = failure.left {
                        self.left.push(left);
                    }
                    self.failed.extend(failure.upload.map(|u| *u));
                }
                Err(_) => {}
            }
        }
        for mut upload in std::mem::take(&mut self.failed) {
            if let Err(left) = upload.abort(PATIENCE).await {
                self.left.push(left);
            }
        }
        let storage = &self.ctx.storage;
        let mut names: BTreeSet<String> = self.done.iter().map(|f| f.name.clone()).collect();
        if let Ok(listed) = storage.list("").await {
            names.extend(
                listed
                    .into_iter()
                    .map(|o| o.name)
                    .filter(|n| !n.starts_with('.')),
            );
        }
        let started = std::time::Instant::now();
        let mut undeleted = Vec::new();
        for name in &names {
            let patience = PATIENCE.saturating_sub(started.elapsed());
            if let Err(e) = storage.delete_patiently(name, patience).await {
                undeleted.push(format!("`{}` ({e})", storage.url(name)));
            }
        }
        if undeleted.is_empty() {
            // On file://, the now empty `backup-<id>/` too; left behind, it is only untidy.
            let _ = storage.remove_if_empty().await;
        }
        if !names.is_empty() && undeleted.is_empty() {
            say(
                &self.log,
                &format!(
                    "deleted the {} file(s) already stored under `{}`",
                    names.len(),
                    storage.url("")
                ),
            );
        }
        if !undeleted.is_empty() {
            self.left.push(format!(
                "{} could not be deleted; without a sidecar they are not a backup, and the next `shipgate backup` with this deployment id deletes them",
                undeleted.join(", ")
            ));
        }
        let left = (!self.left.is_empty()).then(|| self.left.join("; "));
        let message = match &left {
            None => format!("{error}; nothing was published"),
            Some(left) => format!("{error}; nothing was published, but {left}"),
        };
        (Error::new(error.kind(), message), left)
    }
}

/// `<dumpId>.dat` → `schema.table` for every `TABLE DATA` entry of the directory archive's
/// table of contents (`pg_restore --list`); empty when it cannot be read. `pg_restore --list`
/// prints names unquoted (a space in a schema's name is ambiguous there), so each name is read
/// back from `db` by the table's oid, quoted where needed; the listed words when that fails.
async fn table_files(db: &Database, dir: &Path) -> BTreeMap<String, String> {
    let mut command = db.tool("pg_restore");
    command.arg("--list").arg(dir);
    let listed = match tokio::time::timeout(Duration::from_secs(60), command.output()).await {
        Ok(Ok(out)) if out.status.success() => parse_list(&String::from_utf8_lossy(&out.stdout)),
        _ => return BTreeMap::new(),
    };
    let oids: Vec<String> = listed
        .values()
        .filter_map(|t| t.oid)
        .map(|oid| oid.to_string())
        .collect();
    let mut exact = BTreeMap::new();
    if !oids.is_empty() {
        let sql = format!(
            "SELECT c.oid, format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid IN ({})",
            oids.join(", ")
        );
        if let Ok(Ok(rows)) = tokio::time::timeout(Duration::from_secs(30), db.query(&sql)).await {
            for row in rows {
                if let [oid, name] = row.as_slice()
                    && let Ok(oid) = oid.parse::<u32>()
                {
                    exact.insert(oid, name.clone());
                }
            }
        }
    }
    listed
        .into_iter()
        .map(|(file, table)| {
            let name = table
                .oid
                .and_then(|oid| exact.get(&oid).cloned())
                .unwrap_or(table.words);
            (file, name)
        })
        .collect()
}

/// A `TABLE DATA` entry of `pg_restore --list`.
#[derive(Debug, PartialEq)]
pub(crate) struct ListedData {
    /// The table's oid in the dumped database.
    pub(crate) oid: Option<u32>,
    /// `schema.table` as the list's words read (ambiguous when a name has a space).
    pub(crate) words: String,
}

/// Parses `pg_restore --list`: `3346; 0 16384 TABLE DATA public accounts postgres`.
pub(crate) fn parse_list(text: &str) -> BTreeMap<String, ListedData> {
    let mut found = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with(';') {
            continue;
        }
        let Some((id, rest)) = line.split_once(';') else {
            continue;
        };
        let Some(at) = rest.find(" TABLE DATA ") else {
            continue;
        };
        let oid = rest[..at]
            .split_whitespace()
            .nth(1)
            .and_then(|oid| oid.parse::<u32>().ok());
        let what = &rest[at + " TABLE DATA ".len()..];
        let what = what.rsplit_once(' ').map_or(what, |(w, _owner)| w);
        let words = match what.split_once(' ') {
            Some((schema, table)) => format!("{schema}.{table}"),
            None => what.to_string(),
        };
        found.insert(format!("{}.dat", id.trim()), ListedData { oid, words });
    }
    found
}

/// Where [`read_all`] puts the files it checks.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Fetch<'a> {
    /// Nowhere: each file is decompressed in full, to prove it can be, and dropped.
    Check,
    /// Into `dir`, for `pg_restore`: `toc.dat` decompressed (and checked to be an archive's
    /// table of contents); a data file as stored (`3012.dat.gz`) when `pg_restore` decompresses
    /// its compression itself (`readable`), else decompressed (`3012.dat`).
    ForRestore {
        dir: &'a Path,
        readable: &'a [Compression],
    },
}

/// The compressions `pg_restore` (of `db`'s client tools) reads in a directory archive by
/// itself: gzip always, zstd from PostgreSQL 16 on. Only gzip when its version cannot be read.
pub(crate) async fn readable_by_pg_restore(db: &Database) -> Vec<Compression> {
    match crate::postgres::client_version(&db.program("pg_restore")).await {
        Ok((_, major)) if major >= 16 => vec![Compression::Gzip, Compression::Zstd],
        _ => vec![Compression::Gzip],
    }
}

/// Reads every file of a directory backup `jobs` at a time, checking each one's size and
/// SHA-256 against `files` (the manifest) while it streams, and puts it where `fetch` says. A
/// gate failure names the first file that does not match. Returns the bytes written (or, for
/// [`Fetch::Check`], decompressed).
pub(crate) async fn read_all(
    storage: &Storage,
    files: &[ManifestFile],
    fetch: Fetch<'_>,
    jobs: u32,
    progress: &Arc<Progress>,
) -> Result<u64> {
    let mut queue: VecDeque<ManifestFile> = files.iter().cloned().collect();
    let mut tasks: JoinSet<Result<u64>> = JoinSet::new();
    let mut total = 0u64;
    progress.tables_total.store(
        files.iter().filter(|f| !is_toc(&f.name)).count() as u64,
        Ordering::Relaxed,
    );
    loop {
        while tasks.len() < jobs.max(1) as usize
            && let Some(file) = queue.pop_front()
        {
            let storage = storage.clone();
            let (into, keep) = match fetch {
                Fetch::Check => (None, false),
                Fetch::ForRestore { dir, readable } => (
                    Some(dir.to_path_buf()),
                    !is_toc(&file.name)
                        && Compression::split(&file.name)
                            .is_some_and(|(_, c)| readable.contains(&c)),
                ),
            };
            let progress = progress.clone();
            tasks.spawn(async move {
                read_one(&storage, &file, into.as_deref(), keep, &progress).await
            });
        }
        match tasks.join_next().await {
            None => return Ok(total),
            Some(Ok(Ok(n))) => {
                total += n;
                progress.tables_done.fetch_add(1, Ordering::Relaxed);
            }
            Some(Ok(Err(e))) => {
                tasks.abort_all();
                return Err(e);
            }
            Some(Err(e)) => {
                tasks.abort_all();
                return Err(Error::dependency(format!("a download failed: {e}")));
            }
        }
    }
}

/// Reads one file of a directory backup, checking it against the manifest; into `into` when
/// given, as stored when `as_stored` (else decompressed).
async fn read_one(
    storage: &Storage,
    file: &ManifestFile,
    into: Option<&Path>,
    as_stored: bool,
    progress: &Arc<Progress>,
) -> Result<u64> {
    let url = storage.url(&file.name);
    let source = match storage.local_path(&file.name) {
        Some(path) => match std::fs::File::open(&path) {
            Ok(f) => Source::File(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing(&url)),
            Err(e) => {
                return Err(Error::dependency(format!("cannot read `{url}`: {e}")));
            }
        },
        None => Source::Download(
            storage
                .get(&file.name)
                .await
                .context(format!("cannot download `{url}`"))?
                .ok_or_else(|| missing(&url))?,
        ),
    };
    let sink: archive::Sink = match into {
        Some(dir) => {
            use std::os::unix::fs::OpenOptionsExt as _;
            let name = match Compression::split(&file.name) {
                Some((name, _)) if !as_stored => name,
                _ => file.name.as_str(),
            };
            let path = dir.join(name);
            let out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| {
                    Error::usage(format!(
                        "cannot create `{}`: {e}; set `work-dir` to a writable directory with room for the uncompressed backup",
                        path.display()
                    ))
                })?;
            Box::new(std::io::BufWriter::with_capacity(256 * 1024, out))
        }
        None => Box::new(std::io::sink()),
    };
    let what = if as_stored {
        archive::Unpacked::AsStored
    } else {
        archive::Unpacked::Decompressed(
            Compression::split(&file.name).map_or(Compression::Gzip, |(_, c)| c),
        )
    };
    let (read, sink) = archive::unpack(source, what, sink, progress).await;
    drop(sink);
    let read = match read {
        Ok(read) => read,
        Err(archive::UnpackError::Storage(e)) => {
            return Err(Error::from(e).context(format!("cannot download `{url}`")));
        }
        Err(archive::UnpackError::Corrupt(reason)) => {
            return Err(Error::gate(format!(
                "`{url}` is corrupted ({reason}); the backup cannot be used"
            )));
        }
        Err(archive::UnpackError::Sink(reason) | archive::UnpackError::Stopped { reason, .. }) => {
            return Err(Error::dependency(format!(
                "cannot write the decompressed `{url}`: {reason}"
            )));
        }
    };
    if read.size != file.size || read.sha256 != file.sha256 {
        return Err(Error::gate(format!(
            "`{url}` is {} bytes with SHA-256 {}, but the backup's manifest records {} bytes with SHA-256 {}: the backup is corrupted",
            read.size, read.sha256, file.size, file.sha256
        )));
    }
    if is_toc(&file.name) {
        archive::looks_complete(DumpFormat::Directory, &read.head, &read.tail)
            .map_err(|reason| Error::gate(format!("`{url}`: {reason}")))?;
    }
    Ok(if as_stored {
        read.size
    } else {
        read.uncompressed
    })
}

/// Whether a stored file is the archive's table of contents.
fn is_toc(name: &str) -> bool {
    Compression::split(name).is_some_and(|(file, _)| file == TOC)
}

fn missing(url: &str) -> Error {
    Error::gate(format!(
        "`{url}` does not exist although the backup's manifest lists it: the backup is broken"
    ))
}

/// `pg_restore` of the directory `dir` into `db`: with `jobs` 1 in one transaction, else `jobs`
/// parallel sessions (not one transaction).
pub(crate) fn restore_spec(db: &Database, dir: &Path, jobs: u32) -> process::Spec {
    let mut argv = vec![
        "--clean".to_string(),
        "--if-exists".to_string(),
        "--exit-on-error".to_string(),
    ];
    if jobs <= 1 {
        argv.push("--single-transaction".to_string());
    } else {
        argv.push(format!("--jobs={jobs}"));
    }
    argv.push("--no-password".to_string());
    argv.push(format!("--dbname={}", db.conninfo()));
    argv.push(dir.display().to_string());
    db.spec("pg_restore", "pg_restore", argv)
}

/// Runs `spec` (pg_restore) to its end, its stderr logged; `Err` with the last error line when
/// it fails. Dropping the future kills it.
pub(crate) async fn run_restore(spec: &process::Spec, log: &SharedLog) -> Result<()> {
    let mut child = spec.spawn_piped()?;
    let out = child
        .stdout
        .take()
        .map(|s| process::tail_lines(s, "pg_restore stdout", Some(log.clone()), false));
    let err = child
        .stderr
        .take()
        .map(|s| process::tail_lines(s, "pg_restore", Some(log.clone()), true));
    let status = child
        .wait()
        .await
        .map_err(|e| Error::dependency(format!("cannot wait for pg_restore: {e}")))?;
    let tail = match err {
        Some(handle) => handle.await.unwrap_or_default(),
        None => Vec::new(),
    };
    if let Some(handle) = out {
        let _ = handle.await;
    }
    if status.success() {
        return Ok(());
    }
    use std::os::unix::process::ExitStatusExt as _;
    let how = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => "no exit status".into(),
    };
    let last = tail
        .iter()
        .rev()
        .find(|l| l.contains("ERROR") || l.contains("error") || l.contains("FATAL"))
        .or(tail.last())
        .map(|l| format!(": {l}"))
        .unwrap_or_default();
    Err(Error::dependency(format!("{how}{last}")))
}

/// Names the files under a directory backup's prefix that are not in its manifest or differ
/// in size from it; `Ok` when every manifest file is there with its size.
pub(crate) async fn check_stored(storage: &Storage, files: &[ManifestFile]) -> Result<()> {
    let listed = storage
        .list("")
        .await
        .context(format!("cannot list `{}`", storage.url("")))?;
    for file in files {
        match listed.iter().find(|o| o.name == file.name) {
            None => return Err(missing(&storage.url(&file.name))),
            Some(o) if o.size != file.size => {
                return Err(Error::gate(format!(
                    "`{}` is {} bytes but the backup's manifest says {}: the stored backup changed after it was written; investigate before relying on it",
                    storage.url(&file.name),
                    o.size,
                    file.size
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_names_each_data_file_table() {
        let list = ";\n; Archive created at 2026-12-04\n;\n215; 1259 16384 TABLE public a postgres\n3346; 0 16384 TABLE DATA public a postgres\n3347; 0 16387 TABLE DATA Odd Schema b x\n";
        let tables = parse_list(list);
        assert_eq!(
            tables.get("3346.dat"),
            Some(&ListedData {
                oid: Some(16384),
                words: "public.a".into()
            })
        );
        // Ambiguous as words: the oid settles it (read back from the database).
        assert_eq!(
            tables.get("3347.dat"),
            Some(&ListedData {
                oid: Some(16387),
                words: "Odd.Schema b".into()
            })
        );
        assert_eq!(tables.len(), 2);
    }

    #[test]
    fn progress_counts_tables_and_estimates_the_rest() {
        let progress = Progress::new();
        assert!(!progress.line().contains("tables"), "{}", progress.line());
        progress.tables_total.store(4, Ordering::Relaxed);
        progress.tables_done.store(1, Ordering::Relaxed);
        progress.dumped.store(1 << 20, Ordering::Relaxed);
        progress.expected.store(4 << 20, Ordering::Relaxed);
        let line = progress.line();
        assert!(line.contains("; 1 of 4 tables, ETA "), "{line}");
        assert!(line.ends_with("(of about 4.0 MiB)"), "{line}");
    }

    #[test]
    fn a_tail_waits_for_the_writer_and_ends_when_it_closed() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("1.dat");
        let mut writer = std::fs::File::create(&path).expect("create");
        let state = Arc::new(FileState::default());
        let mut tail = Tail {
            file: std::fs::File::open(&path).expect("open"),
            offset: 0,
            punched: 0,
            punch: true,
            state: state.clone(),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            tail.read_to_end(&mut all).map(|_| all)
        });
        writer.write_all(b"abc").expect("write");
        std::thread::sleep(Duration::from_millis(60));
        writer.write_all(b"def").expect("write");
        drop(writer);
        state.closed.store(true, Ordering::SeqCst);
        let all = reader.join().expect("join").expect("read");
        assert_eq!(all, b"abcdef");
    }
}
