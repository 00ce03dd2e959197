//! Plumbing shared by the server fixtures (`postgres`, `s3`): temp dirs, random tokens, free
//! loopback ports, and a watchdog process that cleans up after the test process is gone.
//!
//! Fixtures kept in a `static` are never dropped, so each fixture starts a small `sh` watchdog
//! the moment its temp dir exists. The watchdog polls the test process (`kill -0`) and, once it
//! has exited (normally, by panic=abort, or by a signal), runs the fixture's cleanup script: stop
//! the server and remove the temp dir. An owned fixture disarms (kills) its watchdog in `Drop`
//! and cleans up itself.

use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

/// `n` random bytes from the kernel, as lowercase hex (`2n` chars).
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A number unique within this test process, to make names readable and collision-free.
pub fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Creates a fresh private (0700) directory `<tmp>/<prefix>-<pid>-<random>`.
pub fn make_temp_dir(prefix: &str) -> PathBuf {
    let base = std::env::temp_dir();
    for _ in 0..10 {
        let dir = base.join(format!("{prefix}-{}-{}", std::process::id(), random_hex(6)));
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return dir,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("cannot create temp dir {}: {e}", dir.display()),
        }
    }
    panic!("cannot create a unique temp dir under {}", base.display());
}

/// `n` distinct TCP ports on 127.0.0.1 that were free a moment ago (all bound to port 0 at
/// once, then released). Someone else may grab one before the server binds it, so callers
/// retry on a bind conflict.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local_addr").port())
        .collect()
}

pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// Quotes `s` for a POSIX shell (single quotes).
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

pub fn shell_quote_path(p: &Path) -> String {
    shell_quote(p.to_str().expect("fixture paths are UTF-8"))
}

/// Is this process running as root (`id -u` prints 0)?
pub fn is_root() -> bool {
    static ROOT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ROOT.get_or_init(|| {
        let out = Command::new("id").arg("-u").output().expect("run `id -u`");
        String::from_utf8_lossy(&out.stdout).trim() == "0"
    })
}

/// The start and end of a log file, for panic messages: the first `head` lines (where
/// usage errors show up) and the last `tail` lines.
pub fn log_excerpt(path: &Path, head: usize, tail: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            if all.len() <= head + tail {
                all.join("\n")
            } else {
                format!(
                    "{}\n[… {} lines …]\n{}",
                    all[..head].join("\n"),
                    all.len() - head - tail,
                    all[all.len() - tail..].join("\n")
                )
            }
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// Last `lines` lines of a log file.
pub fn log_tail(path: &Path, lines: usize) -> String {
    log_excerpt(path, 0, lines)
}

/// First executable `name` on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// A `sh` process that runs `cleanup` (a shell snippet) once the test process has exited.
/// It runs in its own process group, with no stdio, so neither a Ctrl-C aimed at the test run
/// nor a harness waiting for the test's output pipes is affected by it.
pub struct Watchdog {
    child: Option<Child>,
}

impl Watchdog {
    pub fn spawn(cleanup: &str) -> Watchdog {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done\n{cleanup}\n",
            pid = std::process::id()
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .current_dir("/")
            .process_group(0)
            .spawn()
            .expect("spawn watchdog sh");
        Watchdog { child: Some(child) }
    }

    /// Stops the watchdog without running its cleanup (the owner cleans up itself).
    pub fn disarm(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
