//! A throwaway PostgreSQL cluster on 127.0.0.1, with password (SCRAM) auth over TCP.
//!
//! - [`PgCluster::shared`]: one cluster per test process, started on first use; a watchdog
//!   process stops it and removes its temp dir when the test process exits.
//! - [`PgCluster::start`]: an owned cluster; `Drop` stops it (`pg_ctl stop -m immediate`) and
//!   removes its temp dir.
//!
//! The server binaries come from the highest `/usr/lib/postgresql/*/bin` that has `initdb`
//! (else `PATH`). `initdb` refuses to run as root, so as root the temp dir is chowned to the
//! `postgres` user and the server tools run through `runuser -u postgres --`.
//!
//! The password deliberately contains characters that must be percent-encoded in a URL
//! (`@ : / % ? # & +`), so secret-leak tests can search output for both forms:
//! [`PgCluster::password`] and [`PgCluster::password_url_encoded`].

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::watchdog::{
    Watchdog, free_port, is_root, log_excerpt, make_temp_dir, next_id, random_hex,
    shell_quote_path, which,
};

/// Environment variables that would redirect or alter libpq connections made by `psql`.
const LIBPQ_ENV: &[&str] = &[
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGOPTIONS",
    "PGSSLMODE",
    "PGREQUIRESSL",
    "PGTARGETSESSIONATTRS",
];

pub struct PgCluster {
    dir: PathBuf,
    port: u16,
    password: String,
    /// Run the server tools via `runuser -u postgres --` (we are root).
    as_postgres: bool,
    watchdog: Watchdog,
    started_in: Duration,
}

impl PgCluster {
    /// The cluster shared by all tests of this process. Started on first call; if that fails,
    /// every caller panics with the same message (no restart per test).
    pub fn shared() -> &'static PgCluster {
        static SHARED: OnceLock<Result<PgCluster, String>> = OnceLock::new();
        let result = SHARED.get_or_init(|| {
            std::panic::catch_unwind(PgCluster::start).map_err(|e| panic_message(&*e))
        });
        match result {
            Ok(cluster) => cluster,
            Err(msg) => panic!("shared PostgreSQL cluster failed to start: {msg}"),
        }
    }

    /// Starts a new cluster owned by the caller (initdb + pg_ctl start; about 1–2 s).
    pub fn start() -> PgCluster {
        let begun = Instant::now();
        let as_postgres = is_root();
        let dir = make_temp_dir("shipgate-pg");
        let data = dir.join("data");
        // Armed before anything else, so even a half-started cluster disappears with us.
        let watchdog = Watchdog::spawn(&format!(
            "{stop} >/dev/null 2>&1\nrm -rf {dir}",
            stop = stop_command_line(as_postgres, &data),
            dir = shell_quote_path(&dir),
        ));
        let mut cluster = PgCluster {
            dir,
            port: 0,
            password: format!("p@ss:w/rd%_{}?#&+", random_hex(8)),
            as_postgres,
            watchdog,
            started_in: Duration::ZERO,
        };
        cluster.initdb();
        cluster.start_server();
        cluster.started_in = begun.elapsed();
        cluster
    }

    /// Directory holding `initdb`, `pg_ctl`, `psql`, `pg_dump`, `pg_restore`, …
    pub fn bin_dir() -> &'static Path {
        static BIN: OnceLock<PathBuf> = OnceLock::new();
        BIN.get_or_init(find_bin_dir)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    pub fn user(&self) -> &'static str {
        "postgres"
    }

    /// The superuser's password, decoded (as typed).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The password as it appears in [`PgCluster::url`] (every byte outside `A-Za-z0-9-._~`
    /// percent-encoded).
    pub fn password_url_encoded(&self) -> String {
        url_encode(&self.password)
    }

    /// `postgres://postgres:<url-encoded pw>@127.0.0.1:<port>/<db>`
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/{}",
            self.password_url_encoded(),
            self.port,
            url_encode(db)
        )
    }

    /// The cluster's temp dir (removed when the cluster goes away).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Wall time `start()` took (initdb + server start).
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// Creates a database with a unique name starting with `name_prefix` (sanitised to
    /// `[a-z0-9_]`) and returns that name.
    pub fn create_database(&self, name_prefix: &str) -> String {
        let mut prefix: String = name_prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        if prefix.is_empty() || prefix.starts_with(|c: char| c.is_ascii_digit()) {
            prefix.insert(0, 'd');
        }
        let name = format!("{prefix}_{}_{}", next_id(), random_hex(3));
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""));
        name
    }

    /// Runs `sql` (a script; may hold several statements) with real `psql -X -q -A -t
    /// -v ON_ERROR_STOP=1` against `db`, and returns its stdout with trailing whitespace
    /// trimmed (unaligned, tuples only: one row per line, columns separated by `|`).
    /// Panics with psql's stderr if it fails.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        match self.try_psql(db, sql) {
            Ok(out) => out,
            Err(err) => panic!("psql failed on db {db:?}: {err}\n--- sql ---\n{sql}"),
        }
    }

    /// [`PgCluster::psql`] that returns `Err(stderr)` instead of panicking.
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        self.try_psql_with_password(&self.password, db, sql)
    }

    /// Like [`PgCluster::try_psql`] but authenticating with `password` (to test refusals).
    /// The password is passed only through the child's `PGPASSWORD`, never on argv.
    pub fn try_psql_with_password(
        &self,
        password: &str,
        db: &str,
        sql: &str,
    ) -> Result<String, String> {
        let mut cmd = Command::new(psql_path());
        for var in LIBPQ_ENV {
            cmd.env_remove(var);
        }
        cmd.env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "10")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "postgres", "-d", db, "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn psql");
        let mut stdin = child.stdin.take().expect("psql stdin");
        let script = sql.to_owned();
        let writer = std::thread::spawn(move || {
            // psql may exit early (auth failure) and close the pipe: ignore EPIPE.
            let _ = stdin.write_all(script.as_bytes());
        });
        let out = child.wait_with_output().expect("wait for psql");
        let _ = writer.join();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
        } else {
            Err(format!(
                "psql exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim_end()
            ))
        }
    }

    /// e.g. 150018 for 15.18.
    pub fn server_version_num(&self) -> u32 {
        let v = self.psql("postgres", "SHOW server_version_num");
        v.parse()
            .unwrap_or_else(|e| panic!("server_version_num {v:?}: {e}"))
    }

    // --- internals -------------------------------------------------------------------------

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn socket_dir(&self) -> PathBuf {
        self.dir.join("sock")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// A server tool (`initdb`, `pg_ctl`), run as `postgres` when we are root.
    fn server_tool(&self, tool: &str) -> Command {
        let path = Self::bin_dir().join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        // The postgres user may not be able to read the test's cwd.
        cmd.current_dir(&self.dir).stdin(Stdio::null());
        cmd
    }

    fn run_tool(&self, mut cmd: Command, what: &str) -> Result<(), String> {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{what} exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout).trim_end(),
                String::from_utf8_lossy(&out.stderr).trim_end()
            ))
        }
    }

    fn initdb(&self) {
        let pwfile = self.dir.join("pwfile");
        fs::write(&pwfile, format!("{}\n", self.password)).expect("write pwfile");
        fs::set_permissions(&pwfile, fs::Permissions::from_mode(0o600)).expect("chmod pwfile");
        fs::create_dir(self.socket_dir()).expect("create socket dir");
        if self.as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(&self.dir)
                .status()
                .expect("run chown");
            assert!(
                status.success(),
                "chown -R postgres: {}",
                self.dir.display()
            );
        }
        let mut cmd = self.server_tool("initdb");
        cmd.arg("-D")
            .arg(self.data_dir())
            .args([
                "--auth=scram-sha-256",
                "--username=postgres",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ])
            .arg(format!("--pwfile={}", pwfile.display()));
        if let Err(e) = self.run_tool(cmd, "initdb") {
            panic!("{e}");
        }
        let _ = fs::remove_file(&pwfile);

        let conf = format!(
            "\n# shipgate test fixture\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\n\
             fsync = off\n\
             synchronous_commit = off\n\
             full_page_writes = off\n\
             max_connections = 200\n\
             log_min_messages = warning\n",
            self.socket_dir().display()
        );
        fs::OpenOptions::new()
            .append(true)
            .open(self.data_dir().join("postgresql.conf"))
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .expect("append to postgresql.conf");
    }

    fn start_server(&mut self) {
        let mut last_err = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let mut cmd = self.server_tool("pg_ctl");
            cmd.arg("-D")
                .arg(self.data_dir())
                .arg("-l")
                .arg(self.log_path())
                .args(["-w", "-t", "60", "-o", &format!("-p {port}"), "start"]);
            match self.run_tool(cmd, "pg_ctl start") {
                Ok(()) => {
                    self.port = port;
                    return;
                }
                Err(e) => {
                    let log = log_excerpt(&self.log_path(), 10, 30);
                    last_err = format!("{e}\n--- postgres log ---\n{log}");
                    if !log.contains("could not bind") && !log.contains("already in use") {
                        break;
                    }
                    // Port taken between our probe and the server's bind: try another.
                    let _ = fs::remove_file(self.log_path());
                }
            }
        }
        panic!("PostgreSQL did not start: {last_err}");
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.watchdog.disarm();
        let mut stop = self.server_tool("pg_ctl");
        stop.arg("-D")
            .arg(self.data_dir())
            .args(["stop", "-m", "immediate", "-w", "-t", "30"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = stop.status();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The shell command the watchdog uses to stop a cluster.
fn stop_command_line(as_postgres: bool, data: &Path) -> String {
    let pg_ctl = shell_quote_path(&PgCluster::bin_dir().join("pg_ctl"));
    let runas = if as_postgres {
        "runuser -u postgres -- "
    } else {
        ""
    };
    format!(
        "cd / && {runas}{pg_ctl} -D {} stop -m immediate -w -t 30",
        shell_quote_path(data)
    )
}

fn find_bin_dir() -> PathBuf {
    let mut candidates: Vec<(Vec<u32>, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let version: Vec<u32> = name
                .split('.')
                .map(|p| p.parse().ok())
                .collect::<Option<_>>()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    candidates.sort();
    if let Some((_, bin)) = candidates.pop() {
        return bin;
    }
    if let Some(initdb) = which("initdb") {
        let real = fs::canonicalize(&initdb).unwrap_or(initdb);
        return real
            .parent()
            .expect("initdb has a parent dir")
            .to_path_buf();
    }
    panic!(
        "PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/initdb, no initdb \
         on PATH); run `bash .ci/install-deps.sh` (apt-get install postgresql postgresql-client)"
    );
}

fn psql_path() -> PathBuf {
    let in_bin = PgCluster::bin_dir().join("psql");
    if in_bin.is_file() {
        in_bin
    } else {
        which("psql").unwrap_or_else(|| PathBuf::from("psql"))
    }
}

/// Percent-encodes every byte outside RFC 3986's unreserved set.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic>".to_owned()
    }
}
