//! The PostgreSQL adapter: the real client tools (`psql`, `pg_dump`, `pg_restore`) driven with
//! argv only. The password never reaches argv: it travels in the child's `PGPASSWORD`, and the
//! connection string handed to the tools has it removed. A `Session` keeps one `psql` connection
//! open (for advisory locks held for a whole run); if shipgate dies, psql's stdin closes, the
//! session ends and PostgreSQL releases whatever the session held.

// Shared adapter whose commands land with the next issues (migrate, backup, rollout, smoke);
// remove this allowance once they use it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use url::Url;

use crate::error::{Classify, Kind};
use crate::secret::{Secret, redact};
pub(crate) use crate::state::migrate::{LockHolder, SessionSeen};

/// Field and record separators for machine-read psql output (ASCII unit/record separators).
const FIELD_SEP: char = '\u{1f}';
const RECORD_SEP: char = '\u{1e}';
/// How long psql may take to connect.
const CONNECT_TIMEOUT_SECS: u32 = 10;
/// Inherited libpq variables a client tool must not see: the connection comes from the URL only.
const INHERITED_PG_ENV: &[&str] = &[
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSERVICE",
    "PGDATABASE",
    "PGHOST",
    "PGUSER",
];
/// Tables counted per query by [`Database::row_counts`].
const COUNT_BATCH: usize = 200;
/// How long [`stop_sessions_sql`] waits for the sessions it stops to be gone.
const STOP_SESSIONS_PATIENCE_SECS: u32 = 60;
/// How long it lets a cancelled query end before terminating the session.
const CANCEL_BEFORE_TERMINATE_MS: u32 = 1000;
/// Runs psql with SIGPIPE ignored (dispositions set to "ignore" survive `exec`), so that a
/// session whose reader (shipgate) is gone keeps running the input still written to it (see
/// [`Session::keepalive`]) instead of dying at its next line of output.
const IGNORE_SIGPIPE: &str = "trap '' PIPE; exec \"$0\" \"$@\"";

#[derive(Debug, thiserror::Error)]
pub(crate) enum PgError {
    #[error("{what} is not a PostgreSQL URL (`postgres://user:password@host:5432/db`): {reason}")]
    BadUrl { what: String, reason: String },
    #[error("cannot run `{tool}` ({reason}); install the PostgreSQL client tools")]
    Tool { tool: String, reason: String },
    #[error("PostgreSQL at `{target}` refused the query: {message}")]
    Query { target: String, message: String },
    #[error("PostgreSQL session at `{target}` ended unexpectedly: {message}")]
    Session { target: String, message: String },
}

impl Classify for PgError {
    fn kind(&self) -> Kind {
        match self {
            PgError::BadUrl { .. } => Kind::Usage,
            _ => Kind::Dependency,
        }
    }
}

/// A database to connect to.
#[derive(Debug, Clone)]
pub(crate) struct Database {
    /// The URL without its password, as the tools receive it.
    conninfo: String,
    password: Option<Secret>,
    /// `postgres://user:***@host:port/db`, for messages.
    display: String,
    name: String,
    /// `application_name` of the sessions, as `pg_stat_activity` shows them to other clients.
    application_name: String,
    /// Where the client tools live; `None`: found on PATH.
    bin_dir: Option<PathBuf>,
}

impl Database {
    /// Parses `postgres://` / `postgresql://` URLs. `what` names the input in errors.
    pub(crate) fn from_url(what: &str, url: &Secret) -> Result<Database, PgError> {
        let bad = |reason: &str| PgError::BadUrl {
            what: what.to_string(),
            reason: reason.to_string(),
        };
        let mut parsed = Url::parse(url.expose()).map_err(|e| bad(&e.to_string()))?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(bad("the scheme must be `postgres` or `postgresql`"));
        }
        let password = parsed.password().map(|p| {
            let decoded = crate::secret::percent_decode(p).unwrap_or_else(|| p.to_string());
            Secret::new(decoded)
        });
        parsed
            .set_password(None)
            .map_err(|_| bad("the URL cannot carry credentials"))?;
        let name = parsed.path().trim_start_matches('/').to_string();
        let host = parsed.host_str().unwrap_or("").to_string();
        let local = host.is_empty()
            || host == "localhost"
            || host.starts_with("127.")
            || host == "[::1]"
            || host.starts_with('/');
        let has_sslmode = parsed.query_pairs().any(|(k, _)| k == "sslmode");
        if !has_sslmode && !local {
            // libpq's default `prefer` does not protect against a man in the middle.
            parsed
                .query_pairs_mut()
                .append_pair("sslmode", "verify-full");
        }
        let display = {
            let mut shown = parsed.clone();
            if password.is_some() {
                let _ = shown.set_password(Some(crate::secret::MASK));
            }
            redact(shown.as_str())
        };
        Ok(Database {
            conninfo: parsed.to_string(),
            password,
            display,
            name: crate::secret::percent_decode(&name).unwrap_or(name),
            application_name: "shipgate".to_string(),
            bin_dir: None,
        })
    }

    /// The same database, with connections named `name` in `pg_stat_activity` (so that another
    /// client waiting for a lock can tell who holds it). PostgreSQL keeps the first 63 bytes.
    pub(crate) fn with_application_name(&self, name: &str) -> Database {
        let mut other = self.clone();
        other.application_name = crate::actions::one_line(name);
        other
    }

    /// Runs the client tools from `dir` instead of PATH.
    pub(crate) fn with_bin_dir(mut self, dir: Option<PathBuf>) -> Database {
        self.bin_dir = dir;
        self
    }

    /// The directory of the client tools, when not PATH.
    pub(crate) fn bin_dir(&self) -> Option<&PathBuf> {
        self.bin_dir.as_ref()
    }

    /// The path of a client tool: in the configured directory, else the bare name (PATH).
    pub(crate) fn program(&self, tool: &str) -> String {
        match &self.bin_dir {
            Some(dir) => dir.join(tool).to_string_lossy().into_owned(),
            None => tool.to_string(),
        }
    }

    /// A [`crate::process::Spec`] for a client tool (`pg_dump`, `pg_restore`, `psql`): argv as
    /// given (the caller adds `--dbname` with [`Database::conninfo`]), the password only in the
    /// child's `PGPASSWORD`, inherited libpq variables removed.
    pub(crate) fn spec(&self, label: &str, tool: &str, args: Vec<String>) -> crate::process::Spec {
        let mut argv = vec![self.program(tool)];
        argv.extend(args);
        let mut spec = crate::process::Spec::new(label, argv);
        for var in INHERITED_PG_ENV {
            spec = spec.env_remove(var);
        }
        for (key, value) in self.env() {
            spec = spec.env(&key, value);
        }
        if let Some(password) = &self.password {
            spec = spec.secret_env("PGPASSWORD", password);
        }
        spec
    }

    /// `postgres://user:***@host:port/db`.
    pub(crate) fn display(&self) -> &str {
        &self.display
    }

    /// The database name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The same server and credentials, another database.
    pub(crate) fn with_database(&self, name: &str) -> Database {
        let mut other = self.clone();
        if let Ok(mut url) = Url::parse(&self.conninfo) {
            url.set_path(&format!("/{}", crate::secret::percent_encode(name)));
            other.conninfo = url.to_string();
            if let Ok(mut shown) = Url::parse(&self.display) {
                shown.set_path(&format!("/{}", crate::secret::percent_encode(name)));
                other.display = redact(shown.as_str());
            }
        }
        other.name = name.to_string();
        other
    }

    /// The connection string for a tool's `--dbname` (no password in it).
    pub(crate) fn conninfo(&self) -> &str {
        &self.conninfo
    }

    /// A command for a PostgreSQL client tool, with the password in its environment only.
    pub(crate) fn tool(&self, program: &str) -> Command {
        let mut command = Command::new(self.program(program));
        self.apply_env(&mut command);
        command.stdin(Stdio::null()).kill_on_drop(true);
        command
    }

    /// `psql` set up for machine-read output: no psqlrc, quiet, unaligned, tuples only, stop on
    /// the first error, unit/record separators.
    fn psql(&self) -> Command {
        let mut command = self.tool("psql");
        command.args(self.psql_args());
        command
    }

    fn psql_args(&self) -> Vec<String> {
        let mut args: Vec<String> = ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
            .into_iter()
            .map(str::to_string)
            .collect();
        args.push(format!("--field-separator={FIELD_SEP}"));
        args.push(format!("--record-separator={RECORD_SEP}"));
        args.push("--dbname".into());
        args.push(self.conninfo.clone());
        args
    }

    /// The environment a client tool needs (for callers building a `process::Spec`).
    pub(crate) fn env(&self) -> Vec<(String, String)> {
        vec![
            ("PGCONNECT_TIMEOUT".into(), CONNECT_TIMEOUT_SECS.to_string()),
            ("PGAPPNAME".into(), self.application_name.clone()),
        ]
    }

    fn apply_env(&self, command: &mut Command) {
        for var in INHERITED_PG_ENV {
            command.env_remove(var);
        }
        for (key, value) in self.env() {
            command.env(key, value);
        }
        if let Some(password) = &self.password {
            command.env("PGPASSWORD", password.expose());
        }
    }

    /// Runs `sql` with psql and returns the rows (fields as text; NULL as empty).
    pub(crate) async fn query(&self, sql: &str) -> Result<Vec<Vec<String>>, PgError> {
        let output = self
            .psql()
            .arg("--command")
            .arg(sql)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .await
            .map_err(|e| PgError::Tool {
                tool: "psql".into(),
                reason: e.to_string(),
            })?;
        if !output.status.success() {
            return Err(PgError::Query {
                target: self.display.clone(),
                message: clean_message(&String::from_utf8_lossy(&output.stderr)),
            });
        }
        Ok(parse_rows(&String::from_utf8_lossy(&output.stdout)))
    }

    /// The first field of the first row.
    pub(crate) async fn scalar(&self, sql: &str) -> Result<Option<String>, PgError> {
        Ok(self
            .query(sql)
            .await?
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next()))
    }

    /// `server_version_num`, e.g. `170002`.
    pub(crate) async fn server_version_num(&self) -> Result<u32, PgError> {
        let text = self
            .scalar("SHOW server_version_num")
            .await?
            .unwrap_or_default();
        text.trim().parse().map_err(|_| PgError::Query {
            target: self.display.clone(),
            message: format!("unexpected server_version_num `{text}`"),
        })
    }

    /// The server's version: `15.18` (or `9.6.24`) and its major number (`15`, `9`).
    pub(crate) async fn server_version(&self) -> Result<(String, u32), PgError> {
        let num = self.server_version_num().await?;
        Ok(version_from_num(num))
    }

    /// Exact row counts of every user table (`schema.table` → rows), in one connection per
    /// batch of tables.
    pub(crate) async fn row_counts(&self) -> Result<BTreeMap<String, u64>, PgError> {
        let tables = self.query(USER_TABLES_SQL).await?;
        let mut counts = BTreeMap::new();
        for sql in count_queries(&tables) {
            collect_counts(&mut counts, self.query(&sql).await?, &self.display)?;
        }
        Ok(counts)
    }

    /// Opens a long-lived session (one `psql` connection kept open). Its psql ignores SIGPIPE:
    /// when shipgate dies, the session still runs what a guard holding [`Session::keepalive`]
    /// writes before it lets go.
    pub(crate) async fn session(&self) -> Result<Session, PgError> {
        let program = self.program("psql");
        if !executable_exists(&program) {
            // Said here: through `sh`, a missing psql would only show as a session that ended.
            return Err(PgError::Tool {
                tool: "psql".into(),
                reason: format!("`{program}` is not an executable file or not on PATH"),
            });
        }
        let mut command = Command::new("sh");
        command
            .args(["-c", IGNORE_SIGPIPE])
            .arg(&program)
            .args(self.psql_args());
        self.apply_env(&mut command);
        let mut child = command
            .kill_on_drop(true)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| PgError::Tool {
                tool: "psql".into(),
                reason: e.to_string(),
            })?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().map(BufReader::new);
        let (Some(stdin), Some(stdout)) = (stdin, stdout) else {
            return Err(PgError::Session {
                target: self.display.clone(),
                message: "psql has no pipes".into(),
            });
        };
        let mut session = Session {
            child,
            stdin,
            stdout,
            target: self.display.clone(),
        };
        session.query("SELECT 1").await?;
        Ok(session)
    }
}

/// Something that runs SQL and returns its rows: a [`Database`] (a connection per query) or a
/// [`Session`] (one connection, e.g. inside the transaction that exported the dump's snapshot),
/// so one reader serves both.
pub(crate) trait Queries {
    /// Runs `sql` and returns its rows (fields as text; NULL as empty).
    async fn rows(&mut self, sql: &str) -> Result<Vec<Vec<String>>, PgError>;
}

impl Queries for Database {
    async fn rows(&mut self, sql: &str) -> Result<Vec<Vec<String>>, PgError> {
        self.query(sql).await
    }
}

impl Queries for Session {
    async fn rows(&mut self, sql: &str) -> Result<Vec<Vec<String>>, PgError> {
        self.query(sql).await
    }
}

/// One open connection. Dropping it kills psql, which ends the session.
pub(crate) struct Session {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    target: String,
}

impl Session {
    /// Runs `sql` on this connection and returns its rows.
    pub(crate) async fn query(&mut self, sql: &str) -> Result<Vec<Vec<String>>, PgError> {
        let marker = format!("shipgate-end-{}", crate::util::random_hex(8));
        let script = format!("{};\n\\echo {marker}\n", sql.trim().trim_end_matches(';'));
        if let Err(e) = self.stdin.write_all(script.as_bytes()).await {
            return Err(self.ended(e.to_string()).await);
        }
        let _ = self.stdin.flush().await;
        let mut collected = String::new();
        loop {
            let mut line = String::new();
            match self.stdout.read_line(&mut line).await {
                Ok(0) => return Err(self.ended("psql exited".into()).await),
                Ok(_) => {
                    if let Some(before) = line.trim_end_matches('\n').strip_suffix(&marker) {
                        collected.push_str(before);
                        break;
                    }
                    collected.push_str(&line);
                }
                Err(e) => return Err(self.ended(e.to_string()).await),
            }
        }
        Ok(parse_rows(&collected))
    }

    /// `pg_try_advisory_lock(key)`: `true` when this session now holds the session-level
    /// advisory lock `key` (held until unlocked or until the session ends, however it ends).
    pub(crate) async fn try_advisory_lock(&mut self, key: i64) -> Result<bool, PgError> {
        let value = self
            .query(&format!("SELECT pg_try_advisory_lock({key})"))
            .await?;
        Ok(first_field(&value) == Some("t"))
    }

    /// `pg_advisory_unlock(key)`: `false` when this session did not hold the lock (any more).
    pub(crate) async fn advisory_unlock(&mut self, key: i64) -> Result<bool, PgError> {
        let value = self
            .query(&format!("SELECT pg_advisory_unlock({key})"))
            .await?;
        Ok(first_field(&value) == Some("t"))
    }

    /// The other sessions that hold the advisory lock `key` in this database, from `pg_locks`
    /// and `pg_stat_activity` (fields another role's session hides are empty unless this role
    /// has `pg_read_all_stats`).
    pub(crate) async fn advisory_lock_holders(
        &mut self,
        key: i64,
    ) -> Result<Vec<LockHolder>, PgError> {
        // A one-bigint advisory lock appears in pg_locks as classid = high 32 bits, objid = low
        // 32 bits, objsubid = 1.
        let bits = key as u64;
        let (high, low) = (bits >> 32, bits & 0xffff_ffff);
        let sql = format!(
            "SELECT l.pid, coalesce(a.application_name, ''), coalesce(a.usename::text, ''), \
             coalesce(host(a.client_addr), CASE WHEN a.client_port = -1 THEN 'local socket' END, ''), \
             coalesce(a.state, ''), \
             coalesce(to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), ''), \
             coalesce(extract(epoch FROM now() - a.backend_start)::bigint::text, '') \
             FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
             AND l.classid = '{high}'::oid AND l.objid = '{low}'::oid \
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND l.pid IS DISTINCT FROM pg_backend_pid() ORDER BY l.pid"
        );
        let rows = self.query(&sql).await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let field = |i: usize| row.get(i).cloned().filter(|v| !v.is_empty());
                LockHolder {
                    pid: field(0).and_then(|v| v.parse().ok()),
                    application_name: field(1),
                    user: field(2),
                    client: field(3),
                    state: field(4),
                    connected_since: field(5),
                    connected_for_secs: field(6).and_then(|v| v.parse().ok()),
                }
            })
            .collect())
    }

    /// The other sessions named `application_name`, in every database of the server (what a
    /// command given that `PGAPPNAME` opened): their queries are cancelled, those still there
    /// after a second are terminated, and this waits (at most a minute) until they are gone —
    /// all on this connection, so that a lock it holds outlives them. Returns the sessions found
    /// and how many are still there.
    pub(crate) async fn stop_sessions(
        &mut self,
        application_name: &str,
    ) -> Result<StoppedSessions, PgError> {
        let name = literal(application_name);
        let found = self
            .query(&format!(
                "SELECT pid, coalesce(state, ''), coalesce(left(query, 200), '') \
                 FROM pg_stat_activity WHERE application_name = {name} \
                 AND pid <> pg_backend_pid() ORDER BY pid"
            ))
            .await?;
        let mut stopped = StoppedSessions {
            sessions: found
                .into_iter()
                .map(|row| {
                    let field = |i: usize| row.get(i).cloned().filter(|v| !v.is_empty());
                    SessionSeen {
                        pid: field(0).and_then(|v| v.trim().parse().ok()),
                        state: field(1),
                        query: field(2).map(|q| redact(&crate::actions::one_line(&q))),
                    }
                })
                .collect(),
            remaining: 0,
        };
        if stopped.sessions.is_empty() {
            return Ok(stopped);
        }
        self.query(&stop_sessions_sql(application_name)).await?;
        stopped.remaining = self
            .query(&format!(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = {name} \
                 AND pid <> pg_backend_pid()"
            ))
            .await
            .ok()
            .and_then(|rows| first_field(&rows).and_then(|v| v.parse().ok()))
            .unwrap_or(0);
        Ok(stopped)
    }

    /// A duplicate of the write end of psql's stdin: while any copy is open, psql keeps the
    /// session (and every lock it holds) alive. Handed to a guard process that must outlive
    /// shipgate for as long as it has work to do (see `process::Spec::die_with_shipgate`); what
    /// the guard writes there (e.g. [`stop_sessions_script`]) runs on this session before it
    /// ends.
    pub(crate) fn keepalive(&self) -> std::io::Result<std::os::fd::OwnedFd> {
        use std::os::fd::AsFd as _;
        self.stdin.as_fd().try_clone_to_owned()
    }

    /// [`Database::row_counts`] on this connection (inside its transaction, if one is open).
    pub(crate) async fn row_counts(&mut self) -> Result<BTreeMap<String, u64>, PgError> {
        let tables = self.query(USER_TABLES_SQL).await?;
        let mut counts = BTreeMap::new();
        for sql in count_queries(&tables) {
            let rows = self.query(&sql).await?;
            collect_counts(&mut counts, rows, &self.target)?;
        }
        Ok(counts)
    }

    /// Ends the session cleanly (`\q`), waiting briefly, then kills psql if needed.
    pub(crate) async fn close(mut self) {
        let _ = self.stdin.write_all(b"\\q\n").await;
        let _ = self.stdin.shutdown().await;
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }

    async fn ended(&mut self, reason: String) -> PgError {
        let mut stderr = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ =
                tokio::time::timeout(Duration::from_secs(2), err.read_to_string(&mut stderr)).await;
        }
        let message = if stderr.trim().is_empty() {
            reason
        } else {
            clean_message(&stderr)
        };
        PgError::Session {
            target: self.target.clone(),
            message,
        }
    }
}

/// What [`Session::stop_sessions`] found and stopped.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct StoppedSessions {
    pub(crate) sessions: Vec<SessionSeen>,
    /// Still there after the wait.
    pub(crate) remaining: u64,
}

impl SessionSeen {
    /// Still running SQL (or holding a transaction open), not just closing.
    pub(crate) fn busy(&self) -> bool {
        self.state.as_deref().is_some_and(|s| s != "idle")
    }
}

/// One statement (a `DO` block, no output, never an error) that stops the sessions named
/// `application_name` from the session running it: cancels their queries, terminates those
/// still there after a second, and returns once they are gone or after a minute. It polls
/// `pg_stat_activity`, whose snapshot is refreshed with `pg_stat_clear_snapshot()` inside the
/// block's one transaction.
pub(crate) fn stop_sessions_sql(application_name: &str) -> String {
    let name = literal(application_name);
    let tag = format!("$shipgate_{}$", crate::util::random_hex(6));
    let others = format!(
        "FROM pg_stat_activity WHERE application_name = {name} AND pid <> pg_backend_pid()"
    );
    format!(
        "DO {tag}\n\
         DECLARE\n  \
           give_up timestamptz := clock_timestamp() + interval '{STOP_SESSIONS_PATIENCE_SECS} seconds';\n  \
           terminate_from timestamptz := clock_timestamp() + interval '{CANCEL_BEFORE_TERMINATE_MS} milliseconds';\n\
         BEGIN\n  \
           PERFORM set_config('client_min_messages', 'error', true);\n  \
           PERFORM pg_cancel_backend(pid) {others};\n  \
           LOOP\n    \
             PERFORM pg_stat_clear_snapshot();\n    \
             EXIT WHEN NOT EXISTS (SELECT 1 {others});\n    \
             EXIT WHEN clock_timestamp() > give_up;\n    \
             IF clock_timestamp() > terminate_from THEN\n      \
               PERFORM pg_terminate_backend(pid) {others};\n    \
             END IF;\n    \
             PERFORM pg_sleep(0.05);\n  \
           END LOOP;\n\
         EXCEPTION WHEN OTHERS THEN NULL;\n\
         END\n\
         {tag}"
    )
}

/// [`stop_sessions_sql`] as psql input: what a guard holding a session's
/// [`Session::keepalive`] writes there when shipgate is gone, so that the session stops them
/// before it ends (and releases its locks).
pub(crate) fn stop_sessions_script(application_name: &str) -> String {
    format!("{};\n", stop_sessions_sql(application_name))
}

impl LockHolder {
    /// `pid 4242 (`shipgate migrate 17-abc`, user `app`, from 10.0.0.7, idle, connected since
    /// 2026-01-01T10:00:00Z, 2m ago)`, every value quoted as untrusted text.
    pub(crate) fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(name) = &self.application_name {
            parts.push(crate::actions::quote(name));
        }
        if let Some(user) = &self.user {
            parts.push(format!("user {}", crate::actions::quote(user)));
        }
        if let Some(client) = &self.client {
            parts.push(format!("from {}", crate::actions::one_line(client)));
        }
        if let Some(state) = &self.state {
            parts.push(crate::actions::one_line(state));
        }
        if let Some(since) = &self.connected_since {
            let ago = self
                .connected_for_secs
                .map(|s| {
                    format!(
                        ", {} ago",
                        crate::ui::format_duration(Duration::from_secs(s))
                    )
                })
                .unwrap_or_default();
            parts.push(format!(
                "connected since {}{ago}",
                crate::actions::one_line(since)
            ));
        }
        let pid = self.pid.map_or_else(
            || "a prepared transaction".to_string(),
            |p| format!("pid {p}"),
        );
        if parts.is_empty() {
            pid
        } else {
            format!("{pid} ({})", parts.join(", "))
        }
    }
}

/// Whether `program` names an executable file: a path as is, a bare name on `PATH`.
fn executable_exists(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    let executable = |path: &std::path::Path| {
        path.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        return executable(std::path::Path::new(program));
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| executable(&dir.join(program))))
}

fn first_field(rows: &[Vec<String>]) -> Option<&str> {
    rows.first().and_then(|row| row.first()).map(|v| v.trim())
}

/// Every user table, as (schema, name): ordinary and partitioned tables outside the system
/// schemas.
const USER_TABLES_SQL: &str = "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c \
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
    WHERE c.relkind IN ('r', 'p') AND n.nspname <> 'information_schema' \
    AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1, 2";

/// `SELECT 'schema.table', count(*) FROM schema.table UNION ALL …`, in batches.
fn count_queries(tables: &[Vec<String>]) -> Vec<String> {
    tables
        .iter()
        .filter(|row| row.len() == 2)
        .collect::<Vec<_>>()
        .chunks(COUNT_BATCH)
        .map(|batch| {
            batch
                .iter()
                .map(|row| {
                    let name = format!("{}.{}", row[0], row[1]);
                    format!(
                        "SELECT {}, count(*) FROM {}.{}",
                        literal(&name),
                        identifier(&row[0]),
                        identifier(&row[1])
                    )
                })
                .collect::<Vec<_>>()
                .join(" UNION ALL ")
        })
        .collect()
}

fn collect_counts(
    counts: &mut BTreeMap<String, u64>,
    rows: Vec<Vec<String>>,
    target: &str,
) -> Result<(), PgError> {
    for row in rows {
        let (Some(name), Some(count)) = (row.first(), row.get(1)) else {
            continue;
        };
        let count = count.trim().parse().map_err(|_| PgError::Query {
            target: target.to_string(),
            message: format!("unexpected row count `{count}` for `{name}`"),
        })?;
        counts.insert(name.clone(), count);
    }
    Ok(())
}

/// `150018` → (`15.18`, 15); `90624` → (`9.6.24`, 9).
pub(crate) fn version_from_num(num: u32) -> (String, u32) {
    if num >= 100_000 {
        (format!("{}.{}", num / 10_000, num % 10_000), num / 10_000)
    } else {
        (
            format!("{}.{}.{}", num / 10_000, num / 100 % 100, num % 100),
            num / 10_000,
        )
    }
}

/// The version a client tool reports (`pg_dump --version` → `pg_dump (PostgreSQL) 15.18
/// (Debian …)`): (`15.18`, 15). Development and beta builds (`17beta1`) count by their major.
pub(crate) async fn client_version(program: &str) -> Result<(String, u32), PgError> {
    let tool_error = |reason: String| PgError::Tool {
        tool: program.to_string(),
        reason,
    };
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        Command::new(program)
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| tool_error("`--version` did not answer within 30s".into()))?
    .map_err(|e| tool_error(e.to_string()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    parse_client_version(&text).ok_or_else(|| {
        tool_error(format!(
            "`{program} --version` printed {}, not a PostgreSQL version",
            crate::actions::quote(text.trim())
        ))
    })
}

fn parse_client_version(text: &str) -> Option<(String, u32)> {
    let after = text.split("(PostgreSQL)").nth(1)?;
    let version = after.split_whitespace().next()?;
    let digits: String = version.chars().take_while(|c| c.is_ascii_digit()).collect();
    let major = digits.parse().ok()?;
    Some((version.to_string(), major))
}

fn parse_rows(text: &str) -> Vec<Vec<String>> {
    text.split(RECORD_SEP)
        .map(|record| record.trim_matches('\n'))
        .filter(|record| !record.is_empty())
        .map(|record| record.split(FIELD_SEP).map(str::to_string).collect())
        .collect()
}

/// psql's stderr as one redacted line: `psql: error: ` prefixes and line breaks removed.
pub(crate) fn clean_message(stderr: &str) -> String {
    let text = stderr
        .lines()
        .map(|l| {
            l.trim()
                .trim_start_matches("psql: ")
                .trim_start_matches("error: ")
        })
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    crate::actions::one_line(&text)
}

/// A SQL string literal.
pub(crate) fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A SQL identifier.
pub(crate) fn identifier(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_leaves_the_connection_string() {
        let url =
            Secret::new("postgres://app:s%40cret%2Fpw@db.example:5432/app?application_name=x");
        let db = Database::from_url("`database-url`", &url).expect("valid");
        assert!(!db.conninfo().contains("cret"), "{}", db.conninfo());
        assert!(
            db.conninfo().contains("sslmode=verify-full"),
            "{}",
            db.conninfo()
        );
        assert_eq!(db.password.as_ref().map(|p| p.expose()), Some("s@cret/pw"));
        assert_eq!(
            db.display(),
            "postgres://app:***@db.example:5432/app?application_name=x&sslmode=verify-full"
        );
        assert_eq!(db.name(), "app");
        let local =
            Database::from_url("x", &Secret::new("postgres://u:p@127.0.0.1:5/d")).expect("valid");
        assert!(!local.conninfo().contains("sslmode"));
        let other = local.with_database("scratch");
        assert_eq!(other.name(), "scratch");
        assert!(
            other.conninfo().ends_with("/scratch"),
            "{}",
            other.conninfo()
        );
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(Database::from_url("x", &Secret::new("mysql://a@b/c")).is_err());
        assert!(Database::from_url("x", &Secret::new("not a url")).is_err());
    }

    #[test]
    fn rows_split_on_separators() {
        let text = format!("a{FIELD_SEP}b{RECORD_SEP}c{FIELD_SEP}d\n");
        assert_eq!(parse_rows(&text), vec![vec!["a", "b"], vec!["c", "d"]]);
        assert!(parse_rows("").is_empty());
    }

    #[test]
    fn versions() {
        assert_eq!(version_from_num(150018), ("15.18".to_string(), 15));
        assert_eq!(version_from_num(170000), ("17.0".to_string(), 17));
        assert_eq!(version_from_num(90624), ("9.6.24".to_string(), 9));
        assert_eq!(
            parse_client_version("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"),
            Some(("15.18".to_string(), 15))
        );
        assert_eq!(
            parse_client_version("pg_dump (PostgreSQL) 17beta1\n"),
            Some(("17beta1".to_string(), 17))
        );
        assert_eq!(parse_client_version("hello"), None);
    }

    #[test]
    fn counts_are_batched_and_quoted() {
        let tables: Vec<Vec<String>> = (0..450)
            .map(|i| vec!["public".to_string(), format!("t\"{i}")])
            .collect();
        let queries = count_queries(&tables);
        assert_eq!(queries.len(), 3);
        assert!(
            queries[0]
                .starts_with("SELECT 'public.t\"0', count(*) FROM \"public\".\"t\"\"0\" UNION ALL")
        );
    }

    #[test]
    fn stopping_sessions_is_one_quiet_statement() {
        let sql = stop_sessions_sql("shipgate-migrate-it's-1");
        assert!(sql.starts_with("DO $shipgate_"), "{sql}");
        assert!(
            sql.contains("application_name = 'shipgate-migrate-it''s-1'"),
            "{sql}"
        );
        // pg_stat_activity is a snapshot per transaction: refreshed on every round.
        assert!(sql.contains("pg_stat_clear_snapshot()"), "{sql}");
        assert!(sql.contains("EXCEPTION WHEN OTHERS THEN NULL"), "{sql}");
        // A fresh dollar-quote tag each time, so no text inside can close it.
        assert_ne!(sql, stop_sessions_sql("shipgate-migrate-it's-1"));
        assert!(stop_sessions_script("x").ends_with("$;\n"));
    }

    #[test]
    fn quoting() {
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(identifier("we\"ird"), "\"we\"\"ird\"");
    }
}
