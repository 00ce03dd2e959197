//! The backup stream, both ways, with bounded memory and no temporary file:
//! - out: pg_dump's output → gzip (flate2) → SHA-256 (sha2) → parts cut by
//!   [`storage::part_size`], handed to the uploader through a small channel;
//! - back: an object (or a local file) → SHA-256 → gunzip → a sink (a scan, or the stdin of
//!   `pg_restore`/`psql`), for verification and restore.
//!
//! The CPU work runs on blocking threads; the async side only moves buffers.

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use flate2::Compression;
use flate2::bufread::GzDecoder;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::state::backup::DumpFormat;
use crate::storage::{self, Download, StorageError};

/// Bytes read from pg_dump per call.
const READ_BUFFER: usize = 256 * 1024;
/// Bytes of the uncompressed stream kept from its start and its end, for sanity checks.
const EDGE: usize = 4096;
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
        }
    }

    /// `1.2 GiB dumped, 310.5 MiB compressed, 296.0 MiB uploaded in 25s (49.2 MiB/s dumped)`,
    /// then, when counted, `; 12 of 40 tables` and `, ETA 3m 10s`.
    pub(crate) fn line(&self) -> String {
        let elapsed = self.started.elapsed();
        let dumped = self.dumped.load(Ordering::Relaxed);
        let rate = dumped as f64 / elapsed.as_secs_f64().max(0.001);
        let mut line = format!(
            "{} dumped, {} compressed, {} uploaded in {} ({}/s)",
            bytes(dumped),
            bytes(self.compressed.load(Ordering::Relaxed)),
            bytes(self.uploaded.load(Ordering::Relaxed)),
            crate::util::format_duration(elapsed),
            bytes(rate as u64)
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
                crate::util::format_duration(std::time::Duration::from_secs(left.ceil() as u64)),
                bytes(expected)
            ));
        }
        line
    }
}

/// `512 B`, `12.3 KiB`, `1.5 GiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
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
        // Room for the overshoot of the last write, so the buffer never reallocates (doubling).
        storage::part_size(number) + READ_BUFFER
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
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
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

/// Reads `input` to its end, gzip-compressing at `level`, hashing the compressed bytes and
/// sending them as parts through `tx`. Blocking: run it with `spawn_blocking`. Memory: one part
/// being filled plus the compressor's window.
pub(crate) fn compress(
    mut input: impl Read,
    level: u32,
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
    let mut encoder = GzEncoder::new(sink, Compression::new(level));
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
    /// The bytes are not an intact gzip stream.
    #[error("it is not an intact gzip stream: {0}")]
    Corrupt(String),
    /// The consumer (a tool's stdin) stopped taking bytes.
    #[error("the consumer stopped reading: {0}")]
    Sink(String),
}

/// A consumer of the decompressed stream.
pub(crate) type Sink = Box<dyn Write + Send>;

/// Streams `source` through SHA-256 and gunzip into `sink`, and hands the sink back unclosed:
/// on failure the caller stops the consumer *before* closing its input (a `psql -1` that saw
/// the end of its input would commit what it got). The whole object is read even when it is
/// not an intact gzip stream, so its hash is always known.
pub(crate) async fn unpack(
    source: Source,
    sink: Sink,
    progress: &std::sync::Arc<Progress>,
) -> (Result<ReadBack, UnpackError>, Option<Sink>) {
    let progress = progress.clone();
    match source {
        Source::File(file) => {
            let worker = tokio::task::spawn_blocking(move || {
                let mut sink = sink;
                let result = decompress(file, &mut sink, &progress);
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
                let result = decompress(ChannelReader::new(rx), &mut sink, &progress);
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

/// The stdin of a tool being fed a backup. Its pipe is closed (end of input) only once
/// [`ToolInput::release`] allowed it: otherwise dropping it leaves the pipe open, so a tool
/// that must not see a clean end of input (`psql -1` would commit) never does; the caller
/// kills it instead.
struct ToolInput {
    file: Option<std::fs::File>,
    release: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Write for ToolInput {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match self.file.as_mut() {
            Some(file) => file.write(data),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the tool's input is closed",
            )),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.file.as_mut() {
            Some(file) => file.flush(),
            None => Ok(()),
        }
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
        !self.tool_ok() && matches!(self.read, Ok(_) | Err(UnpackError::Sink(_)))
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
    };
    let (mut read, sink) = unpack(source, Box::new(input), progress).await;
    if let (Ok(back), Some(expected)) = (&read, expect_sha256)
        && back.sha256 != expected
    {
        read = Err(UnpackError::Corrupt(format!(
            "its SHA-256 is {} while {expected} was expected",
            back.sha256
        )));
    }
    if read.is_ok() {
        release.store(true, Ordering::SeqCst);
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

fn decompress(
    input: impl Read,
    sink: &mut dyn Write,
    progress: &Progress,
) -> Result<ReadBack, UnpackError> {
    let hashing = Hashing {
        inner: input,
        hasher: Sha256::new(),
        count: 0,
    };
    let mut decoder = GzDecoder::new(BufReader::with_capacity(READ_BUFFER, hashing));
    let mut buf = vec![0u8; READ_BUFFER];
    let mut edges = Edges::default();
    let mut uncompressed = 0u64;
    let mut corrupt = None;
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
        uncompressed += n as u64;
        progress.dumped.fetch_add(n as u64, Ordering::Relaxed);
        if let Err(e) = sink.write_all(&buf[..n]) {
            return Err(UnpackError::Sink(e.to_string()));
        }
    }
    if let Err(e) = sink.flush() {
        return Err(UnpackError::Sink(e.to_string()));
    }
    // Read what is left so the hash covers the whole object, and refuse trailing bytes.
    let mut rest = decoder.into_inner();
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
    if corrupt.is_none() && trailing > 0 {
        corrupt = Some(format!(
            "{trailing} bytes follow the end of the gzip stream"
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

    fn roundtrip(data: &[u8]) -> (Compressed, Vec<Bytes>) {
        let (tx, mut rx) = mpsc::channel(1024);
        let progress = Progress::new();
        let compressed = compress(data, 1, tx, &progress).expect("compress");
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
        let back = decompress(&all[..], &mut std::io::sink(), &progress).expect("intact");
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
        let error = decompress(&flipped[..], &mut std::io::sink(), &progress).expect_err("corrupt");
        assert!(matches!(error, UnpackError::Corrupt(_)), "{error}");

        let truncated = &good[..good.len() - 4];
        assert!(decompress(truncated, &mut std::io::sink(), &progress).is_err());

        let mut trailing = good.clone();
        trailing.extend_from_slice(b"junk");
        let error =
            decompress(&trailing[..], &mut std::io::sink(), &progress).expect_err("trailing");
        assert!(error.to_string().contains("follow the end"), "{error}");
    }

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
    }
}
