//! The backup stream, both ways, with bounded memory and no temporary file:
//! - out: pg_dump's output → gzip (flate2; block-parallel on several threads) or zstd
//!   (multi-threaded) → SHA-256 (sha2) → parts cut by [`storage::part_size`], handed to the
//!   uploader through a small channel;
//! - back: an object (or a local file) → SHA-256 → gunzip / zstd → a sink (a scan, or the
//!   stdin of `pg_restore`/`psql`), for verification and restore.
//!
//! The CPU work runs on blocking threads; the async side only moves buffers.

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use flate2::bufread::GzDecoder;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::state::backup::{Compression, DumpFormat};
use crate::storage::{self, Download, StorageError};

/// Bytes read from pg_dump per call.
const READ_BUFFER: usize = 256 * 1024;
/// Bytes of the uncompressed stream kept from its start and its end, for sanity checks.
const EDGE: usize = 4096;
/// Bytes of input per job of multi-threaded zstd.
const ZSTD_JOB: u32 = 2 * 1024 * 1024;
/// Chunks of a download queued for the decompressor.
const DOWNLOAD_QUEUE: usize = 4;
/// Written by pg_dump at the very end of a plain-format dump (before `\unrestrict`).
pub(crate) const PLAIN_COMPLETE: &str = "-- PostgreSQL database dump complete";
/// The first bytes of a custom-format archive.
pub(crate) const CUSTOM_MAGIC: &[u8] = b"PGDMP";

/// Live counters for progress lines.
#[derive(Debug)]
pub(crate) struct Progress {
    started: Instant,
    /// Bytes read from pg_dump (or, reading back, decompressed).
    pub(crate) dumped: AtomicU64,
    /// Bytes after compression (or, reading back, downloaded).
    pub(crate) compressed: AtomicU64,
    /// Bytes acknowledged by the destination.
    pub(crate) uploaded: AtomicU64,
    /// Tables (files of a directory archive) done, of `tables_total`; not shown while the
    /// total is 0.
    pub(crate) tables_done: AtomicU64,
    pub(crate) tables_total: AtomicU64,
    /// Bytes expected in `dumped` (an estimate, e.g. `pg_database_size`), for the ETA; 0 when
    /// unknown.
    pub(crate) expected: AtomicU64,
    /// Reading back: the bytes stored and their size decompressed (the sidecar's), expected in
    /// `compressed` and `dumped`; 0 when unknown.
    pub(crate) stored: AtomicU64,
    pub(crate) stored_uncompressed: AtomicU64,
}

impl Progress {
    pub(crate) fn new() -> Progress {
        Progress {
            started: Instant::now(),
            dumped: AtomicU64::new(0),
            compressed: AtomicU64::new(0),
            uploaded: AtomicU64::new(0),
            tables_done: AtomicU64::new(0),
            tables_total: AtomicU64::new(0),
            expected: AtomicU64::new(0),
            stored: AtomicU64::new(0),
            stored_uncompressed: AtomicU64::new(0),
        }
    }

    /// Reading back a backup of `size` bytes, `uncompressed` decompressed: the percent and
    /// ETA of a live terminal are of them.
    pub(crate) fn reading(size: u64, uncompressed: u64) -> Progress {
        let progress = Progress::new();
        progress.stored.store(size, Ordering::Relaxed);
        progress
            .stored_uncompressed
            .store(uncompressed, Ordering::Relaxed);
        progress
    }

    /// What a live terminal shows: [`Progress::line`] and the fraction done, of what is read
    /// back (stored bytes copied as they are, or decompressed bytes) with its ETA, else of
    /// `expected`.
    pub(crate) fn live(&self) -> (String, Option<f64>) {
        let mut line = self.line();
        let of = |done: &AtomicU64, total: &AtomicU64| {
            let total = total.load(Ordering::Relaxed);
            (total > 0).then(|| done.load(Ordering::Relaxed) as f64 / total as f64)
        };
        let read = match (
            of(&self.compressed, &self.stored),
            of(&self.dumped, &self.stored_uncompressed),
        ) {
            (Some(stored), Some(decompressed)) => Some(stored.max(decompressed)),
            (stored, decompressed) => stored.or(decompressed),
        };
        if let Some(fraction) = read {
            if fraction > 0.0 && fraction < 1.0 {
                let left = self.started.elapsed().as_secs_f64() * (1.0 - fraction) / fraction;
                line.push_str(&format!(
                    ", ETA {} (of {} to read)",
                    crate::ui::format_duration(std::time::Duration::from_secs(left.ceil() as u64)),
                    crate::ui::bytes(self.stored.load(Ordering::Relaxed))
                ));
            }
            return (line, Some(fraction));
        }
        (line, of(&self.dumped, &self.expected))
    }

    /// `1.2 GiB dumped, 310.5 MiB compressed, 296.0 MiB uploaded in 25s (49.2 MiB/s dumped)`,
    /// then, when counted, `; 12 of 40 tables` and `, ETA 3m 10s`.
    pub(crate) fn line(&self) -> String {
        let elapsed = self.started.elapsed();
        let dumped = self.dumped.load(Ordering::Relaxed);
        let rate = dumped as f64 / elapsed.as_secs_f64().max(0.001);
        let mut line = format!(
            "{} dumped, {} compressed, {} uploaded in {} ({}/s)",
            crate::ui::bytes(dumped),
            crate::ui::bytes(self.compressed.load(Ordering::Relaxed)),
            crate::ui::bytes(self.uploaded.load(Ordering::Relaxed)),
            crate::ui::format_duration(elapsed),
            crate::ui::bytes(rate as u64)
        );
        let total = self.tables_total.load(Ordering::Relaxed);
        if total > 0 {
            line.push_str(&format!(
                "; {} of {total} tables",
                self.tables_done.load(Ordering::Relaxed).min(total)
            ));
        }
        let expected = self.expected.load(Ordering::Relaxed);
        if expected > 0 && rate >= 1.0 {
            let left = expected.saturating_sub(dumped) as f64 / rate;
            line.push_str(&format!(
                ", ETA {} (of about {})",
                crate::ui::format_duration(std::time::Duration::from_secs(left.ceil() as u64)),
                crate::ui::bytes(expected)
            ));
        }
        line
    }
}

/// What the compressor saw.
#[derive(Debug, Clone)]
pub(crate) struct Compressed {
    pub(crate) dumped: u64,
    pub(crate) compressed: u64,
    pub(crate) sha256: String,
    /// The first and last bytes of the dump.
    pub(crate) head: Vec<u8>,
    pub(crate) tail: Vec<u8>,
}

/// Keeps the first and last [`EDGE`] bytes of a stream.
#[derive(Debug, Default)]
struct Edges {
    head: Vec<u8>,
    tail: Vec<u8>,
}

impl Edges {
    fn see(&mut self, data: &[u8]) {
        if self.head.len() < EDGE {
            let take = (EDGE - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..take]);
        }
        if data.len() >= EDGE {
            self.tail.clear();
            self.tail.extend_from_slice(&data[data.len() - EDGE..]);
        } else {
            self.tail.extend_from_slice(data);
            if self.tail.len() > EDGE {
                self.tail.drain(..self.tail.len() - EDGE);
            }
        }
    }
}

/// Receives compressed bytes, hashes them and cuts them into parts.
struct PartSink<'a> {
    buf: Vec<u8>,
    number: u32,
    hasher: Sha256,
    total: u64,
    tx: mpsc::Sender<Bytes>,
    progress: &'a Progress,
}

impl PartSink<'_> {
    fn capacity(number: u32) -> usize {
        storage::part_size(number)
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let next = Self::capacity(self.number + 1);
        let part = std::mem::replace(&mut self.buf, Vec::with_capacity(next));
        self.number += 1;
        self.tx
            .blocking_send(Bytes::from(part))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the upload stopped"))
    }
}

impl Write for PartSink<'_> {
    /// Takes at most what fills the current part, so a part never outgrows its buffer.
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = storage::part_size(self.number).saturating_sub(self.buf.len());
        let data = &data[..room.min(data.len())];
        self.hasher.update(data);
        self.buf.extend_from_slice(data);
        self.total += data.len() as u64;
        self.progress
            .compressed
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        if self.buf.len() >= storage::part_size(self.number) {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// How the stream is compressed: which compression, its level, and how many threads compress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Codec {
    pub(crate) compression: Compression,
    pub(crate) level: u32,
    /// Threads compressing: gzip with more than one cuts the stream into blocks compressed as
    /// separate gzip members (one stream to `gunzip`); zstd uses its own workers.
    pub(crate) threads: usize,
}

/// Bytes of input per gzip member when several threads compress.
const GZIP_BLOCK: usize = 1024 * 1024;

/// A compressor writing into `W`.
enum Encoder<W: Write> {
    Gzip(GzEncoder<W>),
    Parallel(ParallelGzip<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    fn new(codec: Codec, inner: W) -> std::io::Result<Encoder<W>> {
        Ok(match codec.compression {
            Compression::Gzip if codec.threads > 1 => {
                Encoder::Parallel(ParallelGzip::new(inner, codec.level, codec.threads))
            }
            Compression::Gzip => {
                Encoder::Gzip(GzEncoder::new(inner, flate2::Compression::new(codec.level)))
            }
            Compression::Zstd => {
                let mut encoder = zstd::stream::write::Encoder::new(inner, codec.level as i32)?;
                encoder.include_checksum(true)?;
                if codec.threads > 1 {
                    encoder.multithread(codec.threads as u32)?;
                    // Jobs of 2 MiB instead of zstd's default (4 windows, 8 MiB at level 3):
                    // each worker holds a job's input and output, so this keeps the peak RSS
                    // flat for a slightly lower ratio.
                    encoder.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB))?;
                }
                Encoder::Zstd(encoder)
            }
        })
    }

    fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.write_all(data),
            Encoder::Parallel(e) => e.write_all(data),
            Encoder::Zstd(e) => e.write_all(data),
        }
    }

    fn finish(self) -> std::io::Result<W> {
        match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::Parallel(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

/// A compressed block coming back from a worker: its place in the stream and its bytes.
type Done = (u64, std::io::Result<Vec<u8>>);

/// gzip on several threads: the input is cut into [`GZIP_BLOCK`]s, each compressed by a
/// worker as a complete gzip member, written out in order. A series of members is one gzip
/// stream to `gunzip` (RFC 1952 §2.2). At most two blocks per worker are in flight.
struct ParallelGzip<W: Write> {
    inner: W,
    block: Vec<u8>,
    jobs: Option<std::sync::mpsc::SyncSender<(u64, Vec<u8>)>>,
    done: std::sync::mpsc::Receiver<Done>,
    workers: Vec<std::thread::JoinHandle<()>>,
    sent: u64,
    written: u64,
    waiting: std::collections::BTreeMap<u64, Vec<u8>>,
    in_flight: u64,
}

impl<W: Write> ParallelGzip<W> {
    fn new(inner: W, level: u32, threads: usize) -> ParallelGzip<W> {
        let (jobs, queue) = std::sync::mpsc::sync_channel::<(u64, Vec<u8>)>(threads);
        let queue = std::sync::Arc::new(std::sync::Mutex::new(queue));
        let (results, done) = std::sync::mpsc::channel::<Done>();
        let workers = (0..threads)
            .map(|_| {
                let queue = queue.clone();
                let results = results.clone();
                std::thread::spawn(move || {
                    loop {
                        let job = match queue.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => return,
                        };
                        let Ok((number, block)) = job else {
                            return;
                        };
                        let mut member = GzEncoder::new(
                            Vec::with_capacity(block.len() / 2),
                            flate2::Compression::new(level),
                        );
                        let compressed = member.write_all(&block).and_then(|()| member.finish());
                        if results.send((number, compressed)).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        ParallelGzip {
            inner,
            block: Vec::with_capacity(GZIP_BLOCK),
            jobs: Some(jobs),
            done,
            workers,
            sent: 0,
            written: 0,
            waiting: std::collections::BTreeMap::new(),
            in_flight: 2 * threads as u64,
        }
    }

    fn write_all(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let take = (GZIP_BLOCK - self.block.len()).min(data.len());
            self.block.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.block.len() == GZIP_BLOCK {
                self.submit()?;
            }
        }
        Ok(())
    }

    /// Hands the current block to the workers, first waiting while too many are in flight.
    fn submit(&mut self) -> std::io::Result<()> {
        while self.sent - self.written >= self.in_flight {
            self.collect(true)?;
        }
        let block = std::mem::replace(&mut self.block, Vec::with_capacity(GZIP_BLOCK));
        let sent = self
            .jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send((self.sent, block)).is_ok());
        if !sent {
            return Err(std::io::Error::other("the gzip workers stopped"));
        }
        self.sent += 1;
        self.collect(false)
    }

    /// Takes finished blocks (waiting for one when `wait`) and writes out those next in line.
    fn collect(&mut self, wait: bool) -> std::io::Result<()> {
        let mut wait = wait;
        loop {
            let next = if wait {
                wait = false;
                self.done
                    .recv()
                    .map_err(|_| std::io::Error::other("the gzip workers stopped"))?
            } else {
                match self.done.try_recv() {
                    Ok(done) => done,
                    Err(_) => break,
                }
            };
            let (number, compressed) = next;
            self.waiting.insert(number, compressed?);
        }
        while let Some(member) = self.waiting.remove(&self.written) {
            self.inner.write_all(&member)?;
            self.written += 1;
        }
        Ok(())
    }

    fn finish(mut self) -> std::io::Result<W> {
        // An empty input still makes one (empty) member: a valid gzip stream.
        if !self.block.is_empty() || self.sent == 0 {
            self.submit()?;
        }
        while self.written < self.sent {
            self.collect(true)?;
        }
        self.jobs = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        Ok(self.inner)
    }
}

/// Reads `input` to its end, compressing it with `codec`, hashing the compressed bytes and
/// sending them as parts through `tx`. Blocking: run it with `spawn_blocking`. Memory: one part
/// being filled plus the compressor's window (with several gzip threads, two 1 MiB blocks per
/// thread).
pub(crate) fn compress(
    mut input: impl Read,
    codec: Codec,
    tx: mpsc::Sender<Bytes>,
    progress: &Progress,
) -> std::io::Result<Compressed> {
    let sink = PartSink {
        buf: Vec::with_capacity(PartSink::capacity(1)),
        number: 1,
        hasher: Sha256::new(),
        total: 0,
        tx,
        progress,
    };
    let mut encoder = Encoder::new(codec, sink)?;
    let mut buf = vec![0u8; READ_BUFFER];
    let mut edges = Edges::default();
    let mut dumped = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        edges.see(&buf[..n]);
        dumped += n as u64;
        progress.dumped.fetch_add(n as u64, Ordering::Relaxed);
        encoder.write_all(&buf[..n])?;
    }
    let mut sink = encoder.finish()?;
    sink.send()?;
    Ok(Compressed {
        dumped,
        compressed: sink.total,
        sha256: hex(&sink.hasher.finalize()),
        head: edges.head,
        tail: edges.tail,
    })
}

pub(crate) fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Does the dump look complete? Plain dumps end with pg_dump's completion comment; custom
/// archives start with `PGDMP`.
pub(crate) fn looks_complete(format: DumpFormat, head: &[u8], tail: &[u8]) -> Result<(), String> {
    match format {
        DumpFormat::Plain => {
            let tail = String::from_utf8_lossy(tail);
            if tail.contains(PLAIN_COMPLETE) {
                Ok(())
            } else {
                Err(format!(
                    "the dump does not end with pg_dump's `{PLAIN_COMPLETE}` line; it is truncated"
                ))
            }
        }
        // A directory archive's `toc.dat` starts like a custom archive.
        DumpFormat::Custom | DumpFormat::Directory => {
            if head.starts_with(CUSTOM_MAGIC) {
                Ok(())
            } else {
                Err(
                    "the dump does not start with `PGDMP`; it is not a custom-format archive"
                        .into(),
                )
            }
        }
    }
}

/// Where the bytes of a backup come from, reading back.
pub(crate) enum Source {
    Download(Download),
    File(std::fs::File),
}

/// What reading a backup back found.
#[derive(Debug, Clone)]
pub(crate) struct ReadBack {
    /// Bytes of the stored (compressed) object.
    pub(crate) size: u64,
    pub(crate) sha256: String,
    /// Bytes after decompression.
    pub(crate) uncompressed: u64,
    pub(crate) head: Vec<u8>,
    pub(crate) tail: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum UnpackError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The bytes are not an intact gzip (or zstd) stream.
    #[error("it is not an intact compressed stream: {0}")]
    Corrupt(String),
    /// The consumer (a tool's stdin) stopped taking bytes.
    #[error("the consumer stopped reading: {0}")]
    Sink(String),
    /// The consumer stopped taking bytes, and the rest of the object was read (not decoded)
    /// so that its SHA-256 says whether it was intact: `read.uncompressed` is what the
    /// consumer took.
    #[error("the consumer stopped reading: {reason}")]
    Stopped { reason: String, read: ReadBack },
}

/// A consumer of the decompressed stream.
pub(crate) type Sink = Box<dyn Write + Send>;

/// What [`unpack`] writes to its sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unpacked {
    /// The stream decompressed.
    Decompressed(Compression),
    /// The bytes as stored (for a consumer that decompresses them itself, like `pg_restore`
    /// reading `3012.dat.gz`); the uncompressed size, head and tail are then unknown.
    AsStored,
}

/// Streams `source` through SHA-256 and the decompressor (unless `AsStored`) into `sink`, and
/// hands the sink back unclosed: on failure the caller stops the consumer *before* closing its
/// input (a `psql -1` that saw the end of its input would commit what it got). The whole
/// object is read even when it is not an intact compressed stream, so its hash is always known.
pub(crate) async fn unpack(
    source: Source,
    what: Unpacked,
    sink: Sink,
    progress: &std::sync::Arc<Progress>,
) -> (Result<ReadBack, UnpackError>, Option<Sink>) {
    let progress = progress.clone();
    match source {
        Source::File(file) => {
            let worker = tokio::task::spawn_blocking(move || {
                let mut sink = sink;
                let result = read_through(file, what, &mut sink, &progress);
                (result, sink)
            });
            match worker.await {
                Ok((result, sink)) => (result, Some(sink)),
                Err(e) => (
                    Err(UnpackError::Sink(format!("the decompressor failed: {e}"))),
                    None,
                ),
            }
        }
        Source::Download(mut download) => {
            let (tx, rx) = mpsc::channel::<Bytes>(DOWNLOAD_QUEUE);
            let worker = tokio::task::spawn_blocking(move || {
                let mut sink = sink;
                let result = read_through(ChannelReader::new(rx), what, &mut sink, &progress);
                (result, sink)
            });
            let mut failure = None;
            loop {
                match download.next().await {
                    Ok(Some(chunk)) => {
                        if tx.send(chunk).await.is_err() {
                            // The decompressor stopped; its result says why.
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            drop(tx);
            let (result, sink) = match worker.await {
                Ok((result, sink)) => (result, Some(sink)),
                Err(e) => (
                    Err(UnpackError::Sink(format!("the decompressor failed: {e}"))),
                    None,
                ),
            };
            match failure {
                Some(e) => (Err(UnpackError::Storage(e)), sink),
                None => (result, sink),
            }
        }
    }
}

/// Bytes of a backup a tool does not get until the whole object matched its SHA-256.
const HOLD_BACK: usize = 64 * 1024;

/// The stdin of a tool being fed a backup while it downloads. The last [`HOLD_BACK`] bytes
/// are held back, and the pipe is closed (end of input), only once [`ToolInput::release`]
/// allowed it (the caller then flushes): a tool cannot finish, and `psql -1` or `pg_restore
/// --single-transaction` cannot commit, before the object is known to be intact. Otherwise
/// dropping it leaves the pipe open and the caller kills the tool instead.
struct ToolInput {
    file: Option<std::fs::File>,
    release: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The latest bytes, not yet passed on.
    held: Vec<u8>,
}

impl ToolInput {
    fn file(&mut self) -> std::io::Result<&mut std::fs::File> {
        self.file.as_mut().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the tool's input is closed")
        })
    }
}

impl Write for ToolInput {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if data.len() >= HOLD_BACK {
            let (now, later) = data.split_at(data.len() - HOLD_BACK);
            let held = std::mem::take(&mut self.held);
            let file = self.file()?;
            file.write_all(&held)?;
            file.write_all(now)?;
            self.held.extend_from_slice(later);
        } else {
            self.held.extend_from_slice(data);
            if self.held.len() > 2 * HOLD_BACK {
                let now = self.held.len() - HOLD_BACK;
                let held = std::mem::take(&mut self.held);
                self.file()?.write_all(&held[..now])?;
                self.held.extend_from_slice(&held[now..]);
            }
        }
        Ok(data.len())
    }

    /// Passes the held bytes on once released; before that, nothing.
    fn flush(&mut self) -> std::io::Result<()> {
        if !self.release.load(Ordering::SeqCst) {
            return Ok(());
        }
        let held = std::mem::take(&mut self.held);
        let file = self.file()?;
        file.write_all(&held)?;
        file.flush()
    }
}

impl Drop for ToolInput {
    fn drop(&mut self) {
        if !self.release.load(Ordering::SeqCst)
            && let Some(file) = self.file.take()
        {
            // Keep the descriptor open until shipgate exits; the tool is killed meanwhile.
            std::mem::forget(file);
        }
    }
}

/// How feeding a backup to a tool went.
pub(crate) struct Fed {
    pub(crate) read: Result<ReadBack, UnpackError>,
    pub(crate) exit: Option<std::process::ExitStatus>,
    /// The tool's last lines of stderr, redacted.
    pub(crate) tail: Vec<String>,
}

impl Fed {
    pub(crate) fn tool_ok(&self) -> bool {
        self.exit.is_some_and(|s| s.success())
    }

    /// The tool failed on its own (not because the backup could not be read): it exited with
    /// an error while the backup read fine, or reading stopped because it stopped taking input.
    pub(crate) fn tool_failed(&self) -> bool {
        !self.tool_ok()
            && matches!(
                self.read,
                Ok(_) | Err(UnpackError::Sink(_) | UnpackError::Stopped { .. })
            )
    }

    /// `exit code 3: ERROR: relation "x" already exists`, for messages.
    pub(crate) fn tool_failure(&self) -> String {
        use std::os::unix::process::ExitStatusExt as _;
        let status = match self.exit {
            Some(s) => match (s.code(), s.signal()) {
                (Some(code), _) => format!("exit code {code}"),
                (None, Some(signal)) => format!("killed by signal {signal}"),
                _ => "no exit status".to_string(),
            },
            None => "no exit status".to_string(),
        };
        let last = self
            .tail
            .iter()
            .rev()
            .find(|l| l.contains("ERROR") || l.contains("error") || l.contains("FATAL"))
            .or(self.tail.last());
        match last {
            Some(line) => format!("{status}: {line}"),
            None => status,
        }
    }
}

/// Runs `spec` (psql or pg_restore) and feeds it the decompressed backup on stdin. The tool's
/// input is closed only after the whole backup was read intact; otherwise the tool is killed
/// first, so a single-transaction restore rolls back. Dropping the returned future kills the
/// tool the same way.
/// With `expect_sha256`, the input is also closed only if the bytes read have that SHA-256 (so
/// a file changed after it was checked is never restored).
pub(crate) async fn feed_tool(
    spec: &crate::process::Spec,
    source: Source,
    compression: Compression,
    expect_sha256: Option<&str>,
    progress: &std::sync::Arc<Progress>,
    log: &crate::process::SharedLog,
) -> Result<Fed, crate::process::ProcessError> {
    let mut child = spec.spawn_piped_stdin()?;
    let pid = child.id();
    let tool = spec.argv.first().cloned().unwrap_or_default();
    let tool = std::path::Path::new(&tool)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or(tool);
    let stdin = child
        .stdin
        .take()
        .and_then(|s| s.into_owned_fd().ok())
        .map(std::fs::File::from)
        .ok_or_else(|| crate::process::ProcessError::Spawn {
            program: tool.clone(),
            reason: "no stdin pipe".into(),
        })?;
    let out = child.stdout.take().map(|s| {
        crate::process::tail_lines(s, &format!("{tool} stdout"), Some(log.clone()), false)
    });
    let err = child
        .stderr
        .take()
        .map(|s| crate::process::tail_lines(s, &tool, Some(log.clone()), true));
    let release = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let input = ToolInput {
        file: Some(stdin),
        release: release.clone(),
        held: Vec::with_capacity(2 * HOLD_BACK),
    };
    let (mut read, sink) = unpack(
        source,
        Unpacked::Decompressed(compression),
        Box::new(input),
        progress,
    )
    .await;
    let mismatch = |sha256: &str, expected: &str| {
        UnpackError::Corrupt(format!(
            "its SHA-256 is {sha256} while {expected} was expected"
        ))
    };
    match (&read, expect_sha256) {
        (Ok(back), Some(expected)) if back.sha256 != expected => {
            read = Err(mismatch(&back.sha256, expected));
        }
        // The tool stopped early: a corrupted object explains it, else the tool failed on its
        // own.
        (Err(UnpackError::Stopped { reason, read: back }), expected) => {
            read = Err(match expected {
                Some(expected) if back.sha256 != expected => mismatch(&back.sha256, expected),
                _ => UnpackError::Sink(reason.clone()),
            });
        }
        _ => {}
    }
    let mut sink = sink;
    if read.is_ok() {
        // Only now may the tool see the last bytes and the end of its input.
        release.store(true, Ordering::SeqCst);
        if let Some(Err(e)) = sink.as_mut().map(|s| s.flush()) {
            read = Err(UnpackError::Sink(e.to_string()));
        }
    } else {
        crate::process::terminate_group(pid, &mut child).await;
    }
    drop(sink);
    let exit = child.wait().await.ok();
    let tail = match err {
        Some(handle) => handle.await.unwrap_or_default(),
        None => Vec::new(),
    };
    if let Some(handle) = out {
        let _ = handle.await;
    }
    Ok(Fed { read, exit, tail })
}

/// Counts and hashes what passes through.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// gzip members one after another (what several compressing threads write, or `cat a.gz
/// b.gz`), read as one stream; bytes after the last member that do not start another are left
/// in the reader for the caller to find.
struct GzMembers<R: BufRead> {
    member: Option<GzDecoder<R>>,
    ended: bool,
}

impl<R: BufRead> GzMembers<R> {
    fn new(reader: R) -> GzMembers<R> {
        GzMembers {
            member: Some(GzDecoder::new(reader)),
            ended: false,
        }
    }

    fn into_inner(self) -> Option<R> {
        self.member.map(GzDecoder::into_inner)
    }
}

impl<R: BufRead> Read for GzMembers<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while !self.ended {
            let Some(member) = self.member.as_mut() else {
                break;
            };
            let n = member.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            // This member ended: another one follows only if the gzip magic does.
            if member.get_mut().fill_buf()?.starts_with(&[0x1f, 0x8b]) {
                self.member = self
                    .member
                    .take()
                    .map(|done| GzDecoder::new(done.into_inner()));
            } else {
                self.ended = true;
            }
        }
        Ok(0)
    }
}

/// A decompressor reading from `R`, which hands `R` back at the end.
enum Decoder<R: BufRead> {
    Gzip(GzMembers<R>),
    Zstd(zstd::stream::read::Decoder<'static, R>),
}

impl<R: BufRead> Decoder<R> {
    fn new(compression: Compression, reader: R) -> std::io::Result<Decoder<R>> {
        Ok(match compression {
            Compression::Gzip => Decoder::Gzip(GzMembers::new(reader)),
            Compression::Zstd => Decoder::Zstd(zstd::stream::read::Decoder::with_buffer(reader)?),
        })
    }

    fn into_inner(self) -> Option<R> {
        match self {
            Decoder::Gzip(d) => d.into_inner(),
            Decoder::Zstd(d) => Some(d.finish()),
        }
    }
}

impl<R: BufRead> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Decoder::Gzip(d) => d.read(buf),
            Decoder::Zstd(d) => d.read(buf),
        }
    }
}

fn read_through(
    input: impl Read,
    what: Unpacked,
    sink: &mut dyn Write,
    progress: &Progress,
) -> Result<ReadBack, UnpackError> {
    match what {
        Unpacked::Decompressed(compression) => decompress(input, compression, sink, progress),
        Unpacked::AsStored => copy_hashed(input, sink, progress),
    }
}

/// Copies `input` to `sink` as it is, hashing it.
fn copy_hashed(
    input: impl Read,
    sink: &mut dyn Write,
    progress: &Progress,
) -> Result<ReadBack, UnpackError> {
    let mut hashing = Hashing {
        inner: input,
        hasher: Sha256::new(),
        count: 0,
    };
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        let n = match hashing.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(UnpackError::Corrupt(e.to_string())),
        };
        progress.compressed.fetch_add(n as u64, Ordering::Relaxed);
        sink.write_all(&buf[..n])
            .map_err(|e| UnpackError::Sink(e.to_string()))?;
    }
    sink.flush().map_err(|e| UnpackError::Sink(e.to_string()))?;
    Ok(ReadBack {
        size: hashing.count,
        sha256: hex(&hashing.hasher.finalize()),
        uncompressed: 0,
        head: Vec::new(),
        tail: Vec::new(),
    })
}

fn decompress(
    input: impl Read,
    compression: Compression,
    sink: &mut dyn Write,
    progress: &Progress,
) -> Result<ReadBack, UnpackError> {
    let hashing = Hashing {
        inner: input,
        hasher: Sha256::new(),
        count: 0,
    };
    let mut decoder = Decoder::new(compression, BufReader::with_capacity(READ_BUFFER, hashing))
        .map_err(|e| UnpackError::Corrupt(e.to_string()))?;
    let mut buf = vec![0u8; READ_BUFFER];
    let mut edges = Edges::default();
    let mut uncompressed = 0u64;
    let mut corrupt = None;
    // The sink's failure: the rest of the input is then only hashed.
    let mut stopped = None;
    loop {
        let n = match decoder.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                corrupt = Some(e.to_string());
                break;
            }
        };
        edges.see(&buf[..n]);
        if let Err(e) = sink.write_all(&buf[..n]) {
            stopped = Some(e.to_string());
            break;
        }
        uncompressed += n as u64;
        progress.dumped.fetch_add(n as u64, Ordering::Relaxed);
    }
    if stopped.is_none()
        && let Err(e) = sink.flush()
    {
        stopped = Some(e.to_string());
    }
    // Read what is left so the hash covers the whole object, and refuse trailing bytes.
    let Some(mut rest) = decoder.into_inner() else {
        return Err(UnpackError::Corrupt(
            "the decompressor lost its input".into(),
        ));
    };
    let mut trailing = 0u64;
    loop {
        let available = match rest.fill_buf() {
            Ok([]) => break,
            Ok(data) => data.len(),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                corrupt.get_or_insert_with(|| e.to_string());
                break;
            }
        };
        trailing += available as u64;
        rest.consume(available);
    }
    if corrupt.is_none() && stopped.is_none() && trailing > 0 {
        corrupt = Some(format!(
            "{trailing} bytes follow the end of the {} stream",
            compression.name()
        ));
    }
    let hashing = rest.into_inner();
    progress.compressed.store(hashing.count, Ordering::Relaxed);
    let read_back = ReadBack {
        size: hashing.count,
        sha256: hex(&hashing.hasher.finalize()),
        uncompressed,
        head: edges.head,
        tail: edges.tail,
    };
    if let Some(reason) = stopped {
        return Err(UnpackError::Stopped {
            reason,
            read: read_back,
        });
    }
    match corrupt {
        Some(reason) => Err(UnpackError::Corrupt(format!(
            "{reason} (SHA-256 of what was read: {})",
            read_back.sha256
        ))),
        None => Ok(read_back),
    }
}

/// A blocking reader over chunks arriving through a channel.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl ChannelReader {
    fn new(rx: mpsc::Receiver<Bytes>) -> ChannelReader {
        ChannelReader {
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GZIP: Codec = Codec {
        compression: Compression::Gzip,
        level: 1,
        threads: 1,
    };

    fn roundtrip(data: &[u8]) -> (Compressed, Vec<Bytes>) {
        roundtrip_with(data, GZIP)
    }

    /// A tool's input passes everything on but the last [`HOLD_BACK`] bytes (up to twice that,
    /// with small writes), whatever the sizes of the writes, and those only once released and
    /// flushed.
    #[test]
    fn a_tools_input_holds_the_end_back_until_released() {
        let data: Vec<u8> = (0..5 * HOLD_BACK + 123)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        for write_size in [1000, HOLD_BACK - 1, HOLD_BACK, 3 * HOLD_BACK] {
            for released in [false, true] {
                let dir = tempfile::tempdir().expect("temp dir");
                let path = dir.path().join("stdin");
                let release = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                let mut input = ToolInput {
                    file: Some(std::fs::File::create(&path).expect("create")),
                    release: release.clone(),
                    held: Vec::new(),
                };
                for chunk in data.chunks(write_size) {
                    input.write_all(chunk).expect("write");
                }
                input.flush().expect("flush before release");
                let passed = std::fs::read(&path).expect("read");
                assert!(
                    (data.len() - 2 * HOLD_BACK..=data.len() - HOLD_BACK).contains(&passed.len()),
                    "writes of {write_size}: {} of {} passed",
                    passed.len(),
                    data.len()
                );
                assert_eq!(passed[..], data[..passed.len()]);
                let held_back = passed.len();
                if released {
                    release.store(true, Ordering::SeqCst);
                    input.flush().expect("flush");
                }
                drop(input);
                let passed = std::fs::read(&path).expect("read");
                let expected = if released { data.len() } else { held_back };
                assert_eq!(passed[..], data[..expected], "writes of {write_size}");
            }
        }
    }

    fn roundtrip_with(data: &[u8], codec: Codec) -> (Compressed, Vec<Bytes>) {
        let (tx, mut rx) = mpsc::channel(1024);
        let progress = Progress::new();
        let compressed = compress(data, codec, tx, &progress).expect("compress");
        let mut parts = Vec::new();
        while let Ok(part) = rx.try_recv() {
            parts.push(part);
        }
        (compressed, parts)
    }

    #[test]
    fn compress_hashes_what_it_sends_and_cuts_parts() {
        // Incompressible, so the output spans several 8 MiB parts.
        let mut data = vec![0u8; 20 * 1024 * 1024];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for b in data.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let (compressed, parts) = roundtrip(&data);
        assert_eq!(parts.len(), 3);
        assert!(parts[0].len() >= storage::part_size(1));
        let all: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
        assert_eq!(all.len() as u64, compressed.compressed);
        assert_eq!(hex(&Sha256::digest(&all)), compressed.sha256);
        assert_eq!(compressed.dumped, data.len() as u64);
        assert_eq!(compressed.tail, data[data.len() - EDGE..]);

        let progress = std::sync::Arc::new(Progress::new());
        let back = decompress(&all[..], Compression::Gzip, &mut std::io::sink(), &progress)
            .expect("intact");
        assert_eq!(back.sha256, compressed.sha256);
        assert_eq!(back.uncompressed, data.len() as u64);
    }

    #[test]
    fn damage_is_found() {
        let text = format!("CREATE TABLE t ();\n{PLAIN_COMPLETE}\n--\n").repeat(3);
        let (compressed, parts) = roundtrip(text.as_bytes());
        assert!(looks_complete(DumpFormat::Plain, &compressed.head, &compressed.tail).is_ok());
        assert!(looks_complete(DumpFormat::Custom, &compressed.head, &compressed.tail).is_err());
        let good: Vec<u8> = parts.concat();
        let progress = std::sync::Arc::new(Progress::new());

        let mut flipped = good.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0xff;
        let error = decompress(
            &flipped[..],
            Compression::Gzip,
            &mut std::io::sink(),
            &progress,
        )
        .expect_err("corrupt");
        assert!(matches!(error, UnpackError::Corrupt(_)), "{error}");

        let truncated = &good[..good.len() - 4];
        assert!(
            decompress(
                truncated,
                Compression::Gzip,
                &mut std::io::sink(),
                &progress
            )
            .is_err()
        );

        let mut trailing = good.clone();
        trailing.extend_from_slice(b"junk");
        let error = decompress(
            &trailing[..],
            Compression::Gzip,
            &mut std::io::sink(),
            &progress,
        )
        .expect_err("trailing");
        assert!(error.to_string().contains("follow the end"), "{error}");
    }

    /// Pseudo-random bytes, with every other 4 KiB run repeated so they compress somewhat.
    fn sample(len: usize) -> Vec<u8> {
        let mut data = vec![0u8; len];
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for (i, b) in data.iter_mut().enumerate() {
            if (i / 4096) % 2 == 0 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
            }
            *b = (x >> 24) as u8;
        }
        data
    }

    /// Every codec's output decompresses to the input, hashes to what was sent, and is read
    /// by the system's own tool (`gzip -dc`, `zstd -dc`) the way a person restoring by hand
    /// reads it.
    #[test]
    fn every_codec_round_trips_and_the_system_tools_read_it() {
        let data = sample(5 * GZIP_BLOCK + 12345);
        for (compression, threads) in [
            (Compression::Gzip, 1),
            (Compression::Gzip, 3),
            (Compression::Zstd, 1),
            (Compression::Zstd, 3),
        ] {
            let codec = Codec {
                compression,
                level: compression.levels().1,
                threads,
            };
            let (compressed, parts) = roundtrip_with(&data, codec);
            let all: Vec<u8> = parts.concat();
            assert_eq!(hex(&Sha256::digest(&all)), compressed.sha256, "{codec:?}");
            assert!(compressed.compressed < data.len() as u64, "{codec:?}");
            let progress = Progress::new();
            let mut out = Vec::new();
            let back = decompress(&all[..], compression, &mut out, &progress).expect("intact");
            assert!(out == data, "{codec:?}: decompressed bytes differ");
            assert_eq!(back.sha256, compressed.sha256);

            let tool = compression.shell_decompress();
            let mut words = tool.split(' ');
            let program = words.next().expect("a program");
            let mut child = std::process::Command::new(program)
                .args(words)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("`{tool}` is needed by this test: {e}"));
            let mut stdin = child.stdin.take().expect("stdin");
            let feeder = std::thread::spawn(move || stdin.write_all(&all));
            let output = child.wait_with_output().expect("the tool runs");
            feeder.join().expect("feeder").expect("fed");
            assert!(output.status.success(), "{tool} failed on {codec:?}");
            assert!(
                output.stdout == data,
                "{tool} read other bytes for {codec:?}"
            );
        }
    }

    #[test]
    fn parallel_gzip_of_nothing_is_a_valid_stream() {
        let codec = Codec { threads: 4, ..GZIP };
        let (compressed, parts) = roundtrip_with(&[], codec);
        let all: Vec<u8> = parts.concat();
        assert_eq!(compressed.dumped, 0);
        let progress = Progress::new();
        let back =
            decompress(&all[..], Compression::Gzip, &mut std::io::sink(), &progress).expect("ok");
        assert_eq!(back.uncompressed, 0);
    }

    #[test]
    fn zstd_damage_is_found() {
        let codec = Codec {
            compression: Compression::Zstd,
            level: 3,
            threads: 2,
        };
        let (_, parts) = roundtrip_with(&sample(3 * GZIP_BLOCK), codec);
        let good: Vec<u8> = parts.concat();
        let progress = Progress::new();
        let mut flipped = good.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0xff;
        let error = decompress(
            &flipped[..],
            Compression::Zstd,
            &mut std::io::sink(),
            &progress,
        )
        .expect_err("corrupt");
        assert!(matches!(error, UnpackError::Corrupt(_)), "{error}");
        let truncated = &good[..good.len() - 4];
        assert!(
            decompress(
                truncated,
                Compression::Zstd,
                &mut std::io::sink(),
                &progress
            )
            .is_err()
        );
    }

    #[test]
    fn live_progress_is_a_fraction_of_what_is_read_back_or_expected() {
        let reading = Progress::reading(4 << 20, 16 << 20);
        reading.compressed.store(1 << 20, Ordering::Relaxed);
        let (text, fraction) = reading.live();
        assert_eq!(fraction, Some(0.25));
        reading.compressed.store(0, Ordering::Relaxed);
        reading.dumped.store(8 << 20, Ordering::Relaxed);
        assert_eq!(reading.live().1, Some(0.5));
        assert!(
            text.starts_with("0 B dumped, 1.0 MiB compressed, "),
            "{text}"
        );
        assert!(text.contains("(of 4.0 MiB to read)"), "{text}");
        let dumping = Progress::new();
        assert_eq!(dumping.live().1, None);
        dumping.expected.store(4 << 20, Ordering::Relaxed);
        dumping.dumped.store(2 << 20, Ordering::Relaxed);
        assert_eq!(dumping.live().1, Some(0.5));
    }
}
