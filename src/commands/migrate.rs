//! `shipgate migrate` (seed 004 §4 "Database Migrations", seed 000 "apply DB migrations once"):
//! runs the team's own migration command exactly once at a time, under a PostgreSQL advisory lock
//! held on a connection of its own for the whole run, only after a verified backup of this
//! deployment; counts what the command applied from the migration tool's history table; keeps
//! the command's output as `migration-logs-<deployment-id>.log`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::{Outcome, set_outputs};
use crate::actions::{self, Level, Table};
use crate::error::{Error, Result, ResultExt};
use crate::exit;
pub(crate) use crate::migrate::config::{CommandConfig, FileConfig, Scalar};
use crate::postgres::{self, Database, LockHolder, Session};
use crate::process::{self, Finished, LogFile, Spec};
use crate::secret::Secret;
use crate::settings::{self, Settings};
use crate::state::Header;
use crate::state::StateDir;
use crate::state::backup::{BackupFile, BackupOutcome};
use crate::state::migrate::{BackupRef, HistoryTable, MigrateFile};
use crate::util::{format_duration, parse_duration};

/// Default deadline of the migration command.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);
/// Default wait for another run's lock.
const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(600);
/// Pauses between attempts to take the lock: from the first to the last, doubling.
const LOCK_POLL_FIRST: Duration = Duration::from_millis(50);
const LOCK_POLL_MAX: Duration = Duration::from_millis(250);
/// How often the lock connection is used while the command runs.
const LOCK_PING_EVERY: Duration = Duration::from_secs(30);
/// How often the holder is named again while waiting.
const LOCK_REPORT_EVERY: Duration = Duration::from_secs(30);
/// Names listed in the summary before "and N more".
const SUMMARY_NAMES: usize = 50;
/// PostgreSQL keeps the first 63 bytes of an `application_name`.
const APPLICATION_NAME_MAX: usize = 63;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    shipgate migrate -- npx prisma migrate deploy\n  \
    shipgate migrate --shell -- 'make db-migrate && ./bin/seed-check'\n\n\
    The database comes from the `database-url` input or DATABASE_URL, and reaches the command as DATABASE_URL.")]
pub(crate) struct Args {
    /// Run the command through `sh -c`; the command is then one script argument (input `shell`)
    #[arg(long)]
    pub(crate) shell: bool,
    /// Deadline of the migration command: at it the command's whole process group is killed
    /// (input `timeout`) [default: 1h]
    #[arg(long, value_name = "DURATION")]
    pub(crate) timeout: Option<String>,
    /// How long to wait while another run holds the migration lock (input `lock-timeout`)
    /// [default: 10m]
    #[arg(long, value_name = "DURATION")]
    pub(crate) lock_timeout: Option<String>,
    /// Advisory lock key: a signed 64-bit integer, or any text (hashed) (input `lock-key`)
    /// [default: derived from the repository and the environment]
    #[arg(long, value_name = "KEY", allow_hyphen_values = true)]
    pub(crate) lock_key: Option<String>,
    /// The migration tool's history table, `table` or `schema.table`, exact case (input
    /// `history-table`) [default: detected]
    #[arg(long, value_name = "TABLE")]
    pub(crate) history_table: Option<String>,
    /// Migrate even without a verified backup of this deployment (input `backup-required: false`)
    #[arg(long)]
    pub(crate) no_backup_required: bool,
    /// The migration command and its arguments, after `--` (input `migration-command`, config
    /// `migrate.command`)
    #[arg(last = true, value_name = "COMMAND")]
    pub(crate) command: Vec<String>,
}

/// Where the command came from.
enum CommandSource {
    /// After `--`: argv as given.
    Args(Vec<String>),
    /// The `migration-command` input: one line.
    Input(String),
    /// `migrate.command` in the config file.
    File(CommandConfig),
}

/// Resolved options.
#[derive(Debug)]
struct Options {
    argv: Vec<String>,
    shell: bool,
    timeout: Duration,
    lock_timeout: Duration,
    lock_key: i64,
    /// Where the key came from, for logs and the state file.
    lock_key_source: String,
    history_table: Option<TableName>,
    backup_required: bool,
}

impl Options {
    fn resolve(args: &Args, settings: &Settings) -> Result<Options> {
        let default_file = FileConfig::default();
        let file = settings.file.migrate.as_ref().unwrap_or(&default_file);
        let shell = settings.switch("shell", args.shell, file.shell, false)?;
        let source = if !args.command.is_empty() {
            CommandSource::Args(args.command.clone())
        } else if let Some(line) = settings::input("migration-command") {
            CommandSource::Input(line)
        } else if let Some(config) = &file.command {
            CommandSource::File(config.clone())
        } else {
            return Err(Error::usage(
                "no migration command: pass it after `--` (`shipgate migrate -- npx prisma migrate deploy`), or set the `migration-command` input or `migrate.command` in shipgate.yml",
            ));
        };
        let argv = command_argv(source, shell)?;
        if !shell {
            check_program(&argv[0])?;
        }
        let timeout = duration_setting(
            settings,
            "timeout",
            args.timeout.clone(),
            file.timeout.as_ref(),
            DEFAULT_TIMEOUT,
        )?;
        if timeout.is_zero() {
            return Err(Error::usage(
                "timeout `0` would kill the migration at once; give a deadline such as `30m`",
            ));
        }
        let lock_timeout = duration_setting(
            settings,
            "lock-timeout",
            args.lock_timeout.clone(),
            file.lock_timeout.as_ref(),
            DEFAULT_LOCK_TIMEOUT,
        )?;
        let explicit_key = settings.text(
            "lock-key",
            args.lock_key.clone(),
            file.lock_key.as_ref().map(Scalar::text).as_ref(),
        );
        let (lock_key, lock_key_source) = match explicit_key {
            Some(text) => match text.trim().parse::<i64>() {
                Ok(key) => (key, "lock-key".to_string()),
                Err(_) => (
                    hashed_key(text.trim()),
                    format!("lock-key {}", actions::quote(text.trim())),
                ),
            },
            None => {
                let repository = settings.repository.clone().unwrap_or_default();
                let text = default_lock_text(&repository, &settings.environment);
                let source = if repository.is_empty() {
                    format!(
                        "environment `{}` (no repository: pass `--repository owner/name` so that every runner derives the same key)",
                        settings.environment
                    )
                } else {
                    format!(
                        "repository `{repository}` and environment `{}`",
                        settings.environment
                    )
                };
                (hashed_key(&text), source)
            }
        };
        let history_table = settings
            .text(
                "history-table",
                args.history_table.clone(),
                file.history_table.as_ref(),
            )
            .map(|text| TableName::parse(&text))
            .transpose()?;
        let backup_required = if args.no_backup_required {
            false
        } else {
            settings.switch("backup-required", false, file.backup_required, true)?
        };
        Ok(Options {
            argv,
            shell,
            timeout,
            lock_timeout,
            lock_key,
            lock_key_source,
            history_table,
            backup_required,
        })
    }

    /// The command as logs show it (the script alone for `--shell`), redacted.
    fn shown(&self) -> String {
        if self.shell {
            crate::secret::redact(self.argv.last().map(String::as_str).unwrap_or(""))
        } else {
            crate::secret::redact(&self.argv.join(" "))
        }
    }
}

fn command_argv(source: CommandSource, shell: bool) -> Result<Vec<String>> {
    let argv = if shell {
        let script = match source {
            CommandSource::Args(args) if args.len() == 1 => args[0].clone(),
            CommandSource::Args(args) => {
                return Err(Error::usage(format!(
                    "with `--shell` the command is one script argument, but {} were given; quote the script: `shipgate migrate --shell -- 'make db-migrate && ./check'`",
                    args.len()
                )));
            }
            CommandSource::Input(line) | CommandSource::File(CommandConfig::Line(line)) => line,
            CommandSource::File(CommandConfig::Argv(list)) if list.len() == 1 => list[0].clone(),
            CommandSource::File(CommandConfig::Argv(_)) => {
                return Err(Error::usage(
                    "with `shell: true`, `migrate.command` in shipgate.yml is one script string, not a list",
                ));
            }
        };
        if script.trim().is_empty() {
            return Err(Error::usage(
                "the migration script is empty; give the command to run",
            ));
        }
        vec!["sh".to_string(), "-c".to_string(), script]
    } else {
        match source {
            CommandSource::Args(args) => args,
            CommandSource::File(CommandConfig::Argv(list)) => list,
            CommandSource::Input(line) => crate::process::split_command(&line)
                .map_err(|e| Error::usage(format!("input `migration-command` {e}")))?,
            CommandSource::File(CommandConfig::Line(line)) => crate::process::split_command(&line)
                .map_err(|e| Error::usage(format!("`migrate.command` in shipgate.yml {e}")))?,
        }
    };
    if argv.first().is_none_or(|program| program.is_empty()) {
        return Err(Error::usage(
            "the migration command is empty; give the program to run, e.g. `npx prisma migrate deploy`",
        ));
    }
    Ok(argv)
}

/// Refuses, before anything happens, a program that cannot be started: "command not found" is a
/// usage error, not a failed migration.
fn check_program(program: &str) -> Result<()> {
    let executable = |path: &Path| {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let path = Path::new(program);
        if executable(path) {
            return Ok(());
        }
        let why = if path.exists() {
            "is not an executable file; `chmod +x` it, or run it through a shell with `--shell`"
        } else {
            "does not exist; check the path (relative paths start from the working directory)"
        };
        return Err(Error::usage(format!(
            "the migration command {} {why}",
            actions::quote(program)
        )));
    }
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| executable(&dir.join(program))))
        .unwrap_or(false);
    if found {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "the migration command {} was not found on PATH; install it where shipgate runs (the job, or an image built on shipgate's), give its path, or run it with `--shell`",
            actions::quote(program)
        )))
    }
}

fn duration_setting(
    settings: &Settings,
    name: &str,
    flag: Option<String>,
    file: Option<&Scalar>,
    default: Duration,
) -> Result<Duration> {
    match settings.text(name, flag, file.map(Scalar::text).as_ref()) {
        Some(text) => parse_duration(&text)
            .map_err(|e| Error::usage(format!("{name} {}: {e}", actions::quote(&text)))),
        None => Ok(default),
    }
}

/// What the default lock key is derived from: one lock per repository and environment.
fn default_lock_text(repository: &str, environment: &str) -> String {
    format!("shipgate migrate {repository} {environment}")
}

/// The advisory lock key for `text`: the first 8 bytes of its SHA-256, big-endian, as a signed
/// 64-bit integer. Stable across versions and machines: every runner must derive the same key.
fn hashed_key(text: &str) -> i64 {
    let digest = Sha256::digest(text.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// `schema.table` or `table`, case kept.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TableName {
    schema: Option<String>,
    table: String,
}

impl TableName {
    fn parse(text: &str) -> Result<TableName> {
        let text = text.trim();
        let (schema, table) = match text.split_once('.') {
            Some((schema, table)) => (Some(schema.to_string()), table.to_string()),
            None => (None, text.to_string()),
        };
        let bad = |part: &str| part.is_empty() || part.chars().any(|c| c.is_control());
        if bad(&table) || schema.as_deref().is_some_and(bad) {
            return Err(Error::usage(format!(
                "history table {} is not `table` or `schema.table`",
                actions::quote(text)
            )));
        }
        Ok(TableName { schema, table })
    }
}

/// How a migration tool records what it applied.
#[derive(Debug)]
struct Style {
    tool: &'static str,
    table: &'static str,
    /// `SELECT key, name, status FROM {t} ORDER BY …`: one row per migration the tool recorded,
    /// in the order it applied them; status `true` applied, `false` failed, NULL neither (rolled
    /// back, marked as run without running).
    rows: &'static str,
    /// The table holds only the current version(s), not one row per migration.
    version_only: bool,
}

const STYLES: &[Style] = &[
    Style {
        tool: "prisma",
        table: "_prisma_migrations",
        rows: "SELECT id::text, migration_name::text, CASE WHEN rolled_back_at IS NULL THEN finished_at IS NOT NULL END FROM {t} ORDER BY started_at, migration_name",
        version_only: false,
    },
    Style {
        tool: "ef-core",
        table: "__EFMigrationsHistory",
        rows: "SELECT \"MigrationId\"::text, \"MigrationId\"::text, true FROM {t} ORDER BY \"MigrationId\"",
        version_only: false,
    },
    Style {
        tool: "flyway",
        table: "flyway_schema_history",
        rows: "SELECT installed_rank::text, coalesce(script, description, version)::text, success FROM {t} WHERE type NOT IN ('SCHEMA', 'BASELINE') ORDER BY installed_rank",
        version_only: false,
    },
    Style {
        tool: "rails",
        table: "schema_migrations",
        rows: "SELECT version::text, version::text, true FROM {t} ORDER BY version",
        version_only: false,
    },
    Style {
        tool: "django",
        table: "django_migrations",
        rows: "SELECT id::text, (app || '.' || name)::text, true FROM {t} ORDER BY id",
        version_only: false,
    },
    Style {
        tool: "sqlx",
        table: "_sqlx_migrations",
        rows: "SELECT version::text, (version::text || ' ' || description)::text, success FROM {t} ORDER BY version",
        version_only: false,
    },
    Style {
        tool: "diesel",
        table: "__diesel_schema_migrations",
        rows: "SELECT version::text, version::text, true FROM {t} ORDER BY version",
        version_only: false,
    },
    Style {
        tool: "alembic",
        table: "alembic_version",
        rows: "SELECT version_num::text, version_num::text, true FROM {t} ORDER BY version_num",
        version_only: true,
    },
    Style {
        tool: "liquibase",
        table: "databasechangelog",
        rows: "SELECT (id || ':' || author || ':' || filename)::text, (filename || '::' || id || '::' || author)::text, CASE WHEN exectype IN ('EXECUTED', 'RERAN') THEN true WHEN exectype = 'FAILED' THEN false END FROM {t} ORDER BY orderexecuted, dateexecuted",
        version_only: false,
    },
];

/// golang-migrate shares Rails' table name; its table has a `dirty` column and one row.
const GOLANG_MIGRATE: Style = Style {
    tool: "golang-migrate",
    table: "schema_migrations",
    rows: "SELECT version::text, version::text, NOT dirty FROM {t} ORDER BY version",
    version_only: true,
};

/// A table named by `--history-table` that is none of the known ones: one row per migration,
/// named by its first `name`/`migration`/`version`/`id` column, else by the whole row.
const CUSTOM: &str = "custom";

#[derive(Debug, Clone)]
struct Row {
    key: String,
    name: String,
    /// `Some(true)` applied, `Some(false)` failed, `None` neither.
    applied: Option<bool>,
}

/// One history table at one moment.
#[derive(Debug, Clone)]
struct TableRows {
    schema: String,
    table: String,
    tool: &'static str,
    version_only: bool,
    rows: Vec<Row>,
}

/// Every history table found, by `(schema, table)`.
type Snapshot = BTreeMap<(String, String), TableRows>;

/// Finds the history tables (the known ones in every schema, or the one named) and reads them.
async fn snapshot(db: &Database, named: Option<&TableName>) -> Result<Snapshot> {
    let dirty = "EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'dirty' AND NOT a.attisdropped)";
    let columns = "(SELECT string_agg(a.attname, ',' ORDER BY a.attnum) FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)";
    let filter = match named {
        Some(name) => {
            let qualified = match &name.schema {
                Some(schema) => format!(
                    "{}.{}",
                    postgres::identifier(schema),
                    postgres::identifier(&name.table)
                ),
                None => postgres::identifier(&name.table),
            };
            format!("c.oid = to_regclass({})", postgres::literal(&qualified))
        }
        None => {
            let names: Vec<String> = STYLES
                .iter()
                .map(|style| postgres::literal(style.table))
                .collect();
            format!(
                "c.relname IN ({}) AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'",
                names.join(", ")
            )
        }
    };
    let sql = format!(
        "SELECT n.nspname, c.relname, {dirty}, coalesce({columns}, '') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {filter} ORDER BY 1, 2"
    );
    let found = db
        .query(&sql)
        .await
        .context("cannot look for the migration history table")?;
    let mut out = Snapshot::new();
    for row in found {
        let [schema, table, dirty, columns] = &row[..] else {
            continue;
        };
        let known = if table == "schema_migrations" && dirty == "t" {
            Some(&GOLANG_MIGRATE)
        } else {
            STYLES.iter().find(|style| style.table == table)
        };
        let qualified = format!(
            "{}.{}",
            postgres::identifier(schema),
            postgres::identifier(table)
        );
        let (tool, version_only, sql) = match known {
            Some(style) => (
                style.tool,
                style.version_only,
                style.rows.replace("{t}", &format!("{qualified} AS h")),
            ),
            None => {
                let columns: Vec<&str> = columns.split(',').collect();
                let name = ["name", "migration_name", "migration", "version", "id"]
                    .into_iter()
                    .find(|candidate| columns.contains(candidate))
                    .map_or_else(
                        || "(h.*)::text".to_string(),
                        |column| format!("h.{}::text", postgres::identifier(column)),
                    );
                let order = columns
                    .first()
                    .filter(|c| !c.is_empty())
                    .map_or_else(String::new, |c| {
                        format!(" ORDER BY h.{}", postgres::identifier(c))
                    });
                (
                    CUSTOM,
                    false,
                    format!("SELECT (h.*)::text, {name}, true FROM {qualified} AS h{order}"),
                )
            }
        };
        let rows = db
            .query(&sql)
            .await
            .context(format!(
                "cannot read the migration history table `{schema}.{table}`"
            ))?
            .into_iter()
            .map(|fields| Row {
                key: fields.first().cloned().unwrap_or_default(),
                name: fields.get(1).cloned().unwrap_or_default(),
                applied: match fields.get(2).map(String::as_str) {
                    Some("t") => Some(true),
                    Some("f") => Some(false),
                    _ => None,
                },
            })
            .collect();
        out.insert(
            (schema.clone(), table.clone()),
            TableRows {
                schema: schema.clone(),
                table: table.clone(),
                tool,
                version_only,
                rows,
            },
        );
    }
    Ok(out)
}

/// What the run changed, from the snapshots before and after.
#[derive(Debug, Default)]
struct Counted {
    /// `None` when a table that keeps only the current version changed (the number of steps in
    /// between is not recorded anywhere).
    applied_count: Option<u64>,
    applied: Vec<String>,
    failed: Vec<String>,
    tables: Vec<HistoryTable>,
}

fn count(before: &Snapshot, after: &Snapshot) -> Counted {
    let mut counted = Counted {
        // No history table at all: whatever the command did, it left no count to read.
        applied_count: (!after.is_empty()).then_some(0),
        ..Counted::default()
    };
    for (id, now) in after {
        let earlier = before.get(id);
        let done_before: BTreeSet<&str> = earlier
            .map(|t| {
                t.rows
                    .iter()
                    .filter(|r| r.applied == Some(true))
                    .map(|r| r.key.as_str())
                    .collect()
            })
            .unwrap_or_default();
        let seen_before: BTreeSet<&str> = earlier
            .map(|t| t.rows.iter().map(|r| r.key.as_str()).collect())
            .unwrap_or_default();
        let applied: Vec<String> = now
            .rows
            .iter()
            .filter(|r| r.applied == Some(true) && !done_before.contains(r.key.as_str()))
            .map(|r| r.name.clone())
            .collect();
        counted.failed.extend(
            now.rows
                .iter()
                .filter(|r| r.applied == Some(false) && !seen_before.contains(r.key.as_str()))
                .map(|r| r.name.clone()),
        );
        let mut entry = HistoryTable {
            schema: now.schema.clone(),
            table: now.table.clone(),
            tool: now.tool.to_string(),
            rows_before: earlier.map(|t| t.rows.len()),
            rows_after: now.rows.len(),
            versions_before: None,
            versions_after: None,
        };
        if now.version_only {
            let versions = |t: &TableRows| {
                let mut v: Vec<String> = t.rows.iter().map(|r| r.name.clone()).collect();
                v.sort();
                v
            };
            let after_versions = versions(now);
            let before_versions = earlier.map(versions).unwrap_or_default();
            if after_versions != before_versions {
                counted.applied_count = None;
            }
            entry.versions_before = Some(before_versions);
            entry.versions_after = Some(after_versions);
        } else if let Some(n) = counted.applied_count.as_mut() {
            *n += applied.len() as u64;
        }
        counted.applied.extend(applied);
        counted.tables.push(entry);
    }
    counted
}

/// The tools whose tables were found, e.g. `prisma`.
fn tools(counted: &Counted) -> Option<String> {
    let mut names: Vec<&str> = counted.tables.iter().map(|t| t.tool.as_str()).collect();
    names.dedup();
    (!names.is_empty()).then(|| names.join(", "))
}

pub(crate) async fn run(args: &Args, settings: &Settings) -> Result<Outcome> {
    let options = Options::resolve(args, settings)?;
    let url = settings::secret("database-url", &["DATABASE_URL"]).ok_or_else(|| {
        Error::usage(
            "no database to migrate: set the `database-url` input (from a secret) or DATABASE_URL",
        )
    })?;
    let db = Database::from_url(
        "the database URL (`database-url` input or DATABASE_URL)",
        &url,
    )?;
    let state = StateDir::open(settings)?;
    let log_path = state.path(&format!("migration-logs-{}.log", state.id()));
    let mut result = MigrateFile {
        header: Header {
            duration_ms: Some(0),
            ..Header::now::<MigrateFile>("fail")
        },
        deployment_id: state.id().to_string(),
        environment: settings.environment.clone(),
        repository: settings.repository.clone(),
        database: db.display().to_string(),
        tool: None,
        applied_count: None,
        applied: Vec::new(),
        failed: Vec::new(),
        history_tables: Vec::new(),
        migration_command: options.shown(),
        shell: options.shell,
        exit_code: None,
        signal: None,
        timed_out: false,
        cancelled: false,
        command_duration_ms: None,
        timeout_ms: options.timeout.as_millis() as u64,
        lock_key: options.lock_key.to_string(),
        lock_key_source: options.lock_key_source.clone(),
        lock_wait_ms: 0,
        lock_holders: Vec::new(),
        lock_lost: false,
        application_name: application_name(state.id()),
        left_processes: false,
        stopped_sessions: Vec::new(),
        warning: None,
        backup_required: options.backup_required,
        backup: None,
        log_file: log_path.display().to_string(),
        output_tail: Vec::new(),
        error: None,
    };
    let started = Instant::now();
    let outcome = migrate(&options, &db, &url, &state, &log_path, &mut result).await;
    result.header.duration_ms = Some(started.elapsed().as_millis() as u64);
    match outcome {
        Ok(code) => finish(&state, &options, &result, code),
        Err(error) => {
            result.header.result = "fail".to_string();
            result.error = Some(error.message());
            // The error itself is reported by the caller; the state file must still say why.
            if let Err(e) = state.save(&result) {
                tracing::warn!("{e}");
            }
            Err(error)
        }
    }
}

/// Backup check, lock, count, run, count, unlock. Returns the exit code of a run that got as far
/// as the command; earlier failures are errors.
async fn migrate(
    options: &Options,
    db: &Database,
    url: &Secret,
    state: &StateDir,
    log_path: &Path,
    result: &mut MigrateFile,
) -> Result<exit::Status> {
    result.backup = check_backup(state, options.backup_required)?;
    let mut log = LogFile::append(log_path)?;
    log.line(&format!(
        "[{}] shipgate migrate: deployment {}, environment {}, database {}",
        crate::util::now_rfc3339(),
        state.id(),
        result.environment,
        db.display()
    ));

    let shutdown = process::shutdown_signal();
    tokio::pin!(shutdown);

    let lock_group = actions::group("Migration lock");
    let db = db.with_application_name(&format!("shipgate migrate {}", state.id()));
    let mut session = db
        .session()
        .await
        .context("cannot open the connection that holds the migration lock")?;
    tracing::info!(
        "taking the migration lock (advisory lock {} from {}) on {}",
        options.lock_key,
        options.lock_key_source,
        db.display()
    );
    let waited = acquire(
        &mut session,
        options.lock_key,
        options.lock_timeout,
        shutdown.as_mut(),
        result,
    )
    .await;
    result.lock_wait_ms = waited.as_ref().map_or_else(|(w, _)| *w, |w| *w).as_millis() as u64;
    if let Err((_, error)) = waited {
        log.line(&format!(
            "[{}] not run: {}",
            crate::util::now_rfc3339(),
            error.message()
        ));
        return Err(error);
    }
    tracing::info!(
        "holding the migration lock (waited {})",
        format_duration(Duration::from_millis(result.lock_wait_ms))
    );
    log.line(&format!(
        "[{}] migration lock {} taken after {}",
        crate::util::now_rfc3339(),
        options.lock_key,
        format_duration(Duration::from_millis(result.lock_wait_ms))
    ));
    drop(lock_group);

    let before = match snapshot(&db, options.history_table.as_ref()).await {
        Ok(before) => Some(before),
        Err(e) => {
            actions::annotate(
                Level::Warning,
                Some("shipgate migrate"),
                &format!("{e}; the migrations applied will not be counted"),
            );
            None
        }
    };
    if let Some(before) = &before {
        describe_before(before, options.history_table.as_ref());
    }

    // A cancellation that arrived while counting: do not start anything.
    let stopped = tokio::select! {
        biased;
        _ = shutdown.as_mut() => true,
        _ = std::future::ready(()) => false,
    };
    if stopped {
        return Err(Error::dependency(
            "stopped before the migration command started; nothing was run",
        ));
    }

    // The command's sessions carry PGAPPNAME (libpq, pgx, lib/pq, node-postgres, sqlx honour
    // it), so that the ones it leaves running can be found and stopped under the lock: by
    // shipgate when the command ends, by the guard (through the lock session, before the lock
    // can go) when shipgate dies first.
    let spec = Spec::new("migration command", options.argv.clone())
        .secret_env("DATABASE_URL", url)
        .env("PGAPPNAME", &result.application_name)
        .env("SHIPGATE_DEPLOYMENT_ID", state.id())
        .env("SHIPGATE_ENVIRONMENT", &result.environment)
        .env_remove("INPUT_GITHUB-TOKEN")
        .timeout(Some(options.timeout))
        .die_with_shipgate(
            session.keepalive().ok(),
            Some(postgres::stop_sessions_script(&result.application_name)),
        );
    let run_group = actions::group(&format!("Run {}", actions::quote(&options.shown())));
    tracing::info!(
        "running {} (timeout {})",
        actions::quote(&options.shown()),
        format_duration(options.timeout)
    );
    let finished = {
        let run = process::run_guarded(&spec, Some(&mut log), shutdown.as_mut());
        tokio::pin!(run);
        // The lock connection sits idle while the command runs: a query now and then keeps
        // proxies, NAT and `idle_session_timeout` from dropping it, and notices if it was.
        // (Scaled like retry pauses, so that tests see it within their time.)
        let every = crate::util::retry_delay(LOCK_PING_EVERY).max(Duration::from_millis(20));
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                finished = &mut run => break finished,
                _ = ping.tick(), if !result.lock_lost => {
                    if let Err(e) = session.query("SELECT 1").await {
                        result.lock_lost = true;
                        actions::annotate(
                            Level::Warning,
                            Some("shipgate migrate"),
                            &format!("{e}: the migration lock is lost while the command still runs; another run may start and overlap this one"),
                        );
                    }
                }
            }
        }
    };
    drop(run_group);
    let (finished, guard) = finished?;
    record_finish(result, &finished);
    stop_sessions(&mut session, result, &mut log).await;

    let after = snapshot(&db, options.history_table.as_ref()).await;
    match (&before, after) {
        (Some(before), Ok(after)) => {
            let counted = count(before, &after);
            result.tool = tools(&counted);
            result.applied_count = counted.applied_count;
            result.applied = counted.applied;
            result.failed = counted.failed;
            result.history_tables = counted.tables;
        }
        (_, Err(e)) => actions::annotate(
            Level::Warning,
            Some("shipgate migrate"),
            &format!("{e}; the migrations applied are not counted"),
        ),
        (None, Ok(_)) => {}
    }
    if result.tool.is_none() && before.is_some() {
        actions::annotate(
            Level::Warning,
            Some("shipgate migrate"),
            &match &options.history_table {
                Some(name) => format!(
                    "the history table {} does not exist after the run; the migrations applied are not counted (check `history-table`)",
                    actions::quote(&display_table(name))
                ),
                None => "no migration history table of a known tool was found; the migrations applied are not counted (set `history-table` to count them)".to_string(),
            },
        );
    }

    match session.advisory_unlock(options.lock_key).await {
        Ok(true) => {}
        Ok(false) | Err(_) if result.lock_lost => {}
        Ok(false) | Err(_) => {
            result.lock_lost = true;
            actions::annotate(
                Level::Warning,
                Some("shipgate migrate"),
                "the connection holding the migration lock was lost during the run (database restart or cut connection); another run may have overlapped this one: check the migration history",
            );
        }
    }
    session.close().await;
    if let Some(guard) = guard {
        guard.dismiss().await;
    }
    log.line(&format!(
        "[{}] result: {}; applied {}: {}",
        crate::util::now_rfc3339(),
        finished.describe(),
        result
            .applied_count
            .map_or_else(|| "unknown".to_string(), |n| n.to_string()),
        if result.applied.is_empty() {
            "-".to_string()
        } else {
            result.applied.join(", ")
        }
    ));

    Ok(if finished.success() {
        exit::Status::Success
    } else if finished.timed_out {
        exit::Status::Timeout
    } else {
        exit::Status::Dependency
    })
}

/// `shipgate-migrate-<deployment id>-<random>`: distinct per run (two runs of one deployment,
/// for two databases on one server, must not stop each other's sessions), within the 63 bytes
/// PostgreSQL keeps.
fn application_name(deployment_id: &str) -> String {
    let suffix = format!("-{}", crate::util::random_hex(3));
    let prefix = "shipgate-migrate-";
    let room = APPLICATION_NAME_MAX - prefix.len() - suffix.len();
    // Deployment ids are ASCII (letters, digits, `.`, `_`, `-`).
    let id: String = deployment_id.chars().take(room).collect();
    format!("{prefix}{id}{suffix}")
}

/// Stops what the command left running on the server (its sessions, found by
/// `application_name`) while the lock is still held, and says so when it was more than
/// connections closing.
async fn stop_sessions(session: &mut Session, result: &mut MigrateFile, log: &mut LogFile) {
    if result.lock_lost {
        // The lock connection is gone (already reported): nothing to protect, no way to ask.
        return;
    }
    let stopped = match session.stop_sessions(&result.application_name).await {
        Ok(stopped) => stopped,
        Err(e) => {
            actions::annotate(
                Level::Warning,
                Some("shipgate migrate"),
                &format!(
                    "{e}: cannot check for database sessions the migration command left running (application_name `{}`); check `pg_stat_activity` before the next migration",
                    result.application_name
                ),
            );
            return;
        }
    };
    let busy: Vec<&postgres::SessionSeen> = stopped.sessions.iter().filter(|s| s.busy()).collect();
    if busy.is_empty() && stopped.remaining == 0 {
        return;
    }
    let listed = busy
        .iter()
        .map(|s| {
            format!(
                "pid {} ({}{})",
                s.pid.map_or_else(|| "?".to_string(), |p| p.to_string()),
                s.state.as_deref().unwrap_or("?"),
                s.query
                    .as_deref()
                    .map(|q| format!(": {}", actions::quote(q)))
                    .unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let message = if stopped.remaining == 0 {
        format!(
            "{} database session(s) of the migration command were still running SQL after it ended ({listed}); they were cancelled (terminated if needed) before the migration lock was released",
            busy.len()
        )
    } else {
        format!(
            "database sessions of the migration command were still running after it ended ({listed}); {} still there after a minute of cancelling and terminating them: the lock is released anyway, check `pg_stat_activity` for application_name `{}` before the next migration",
            stopped.remaining, result.application_name
        )
    };
    log.line(&format!(
        "[{}] warning: {message}",
        crate::util::now_rfc3339()
    ));
    actions::annotate(Level::Warning, Some("shipgate migrate"), &message);
    result.stopped_sessions = busy.into_iter().cloned().collect();
    result.warning = Some(match result.warning.take() {
        Some(earlier) => format!("{earlier}; {message}"),
        None => message,
    });
}

fn record_finish(result: &mut MigrateFile, finished: &Finished) {
    result.left_processes = finished.left_processes;
    result.warning = finished.warning.clone();
    result.exit_code = finished.exit_code;
    result.signal = finished.signal;
    result.timed_out = finished.timed_out;
    result.cancelled = finished.cancelled;
    result.command_duration_ms = Some(finished.duration_ms);
    if finished.success() {
        result.header.result = "pass".to_string();
    } else {
        result.output_tail = finished.tail.clone();
        result.error = Some(format!("the migration command {}", how_it_ended(result)));
    }
}

/// Polls `pg_try_advisory_lock` until it succeeds, the lock timeout passes, or shipgate is told
/// to stop. Returns how long it waited; on failure also the error naming the holder.
async fn acquire(
    session: &mut Session,
    key: i64,
    timeout: Duration,
    mut shutdown: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    result: &mut MigrateFile,
) -> std::result::Result<Duration, (Duration, Error)> {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut pause = LOCK_POLL_FIRST;
    let mut last_report: Option<Instant> = None;
    loop {
        match session.try_advisory_lock(key).await {
            Ok(true) => return Ok(started.elapsed()),
            Ok(false) => {}
            Err(e) => {
                return Err((
                    started.elapsed(),
                    Error::from(e).context("cannot take the migration lock"),
                ));
            }
        }
        let now = Instant::now();
        let report_due = last_report.is_none_or(|at| now - at >= LOCK_REPORT_EVERY);
        if report_due || now >= deadline {
            let holders = session.advisory_lock_holders(key).await.unwrap_or_default();
            for holder in &holders {
                if !result.lock_holders.iter().any(|h| h.pid == holder.pid) {
                    result.lock_holders.push(holder.clone());
                }
            }
            let named = name_holders(&holders);
            if now >= deadline {
                return Err((
                    started.elapsed(),
                    Error::timeout(format!(
                        "the migration lock (advisory lock {key}) is still held by {named} after waiting {}; let that run finish and re-run, end it if it is stuck (`SELECT pg_terminate_backend(<pid>)`), or wait longer with `--lock-timeout`",
                        format_duration(started.elapsed())
                    )),
                ));
            }
            tracing::info!(
                "the migration lock is held by {named}; waiting up to {} for it",
                format_duration(deadline - now)
            );
            last_report = Some(now);
        }
        let sleep = pause.min(deadline.saturating_duration_since(Instant::now()));
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = shutdown.as_mut() => {
                return Err((
                    started.elapsed(),
                    Error::dependency("stopped while waiting for the migration lock; nothing was run"),
                ));
            }
        }
        pause = (pause * 2).min(LOCK_POLL_MAX);
    }
}

fn name_holders(holders: &[LockHolder]) -> String {
    match holders {
        [] => "a session that released it as it was looked up".to_string(),
        [one] => one.describe(),
        many => many
            .iter()
            .map(LockHolder::describe)
            .collect::<Vec<_>>()
            .join("; "),
    }
}

fn describe_before(before: &Snapshot, named: Option<&TableName>) {
    if before.is_empty() {
        match named {
            Some(name) => tracing::info!(
                "history table {} does not exist yet",
                actions::quote(&display_table(name))
            ),
            None => tracing::info!("no migration history table yet"),
        }
        return;
    }
    for table in before.values() {
        tracing::info!(
            "history table `{}.{}` ({}): {} row(s) before the run",
            table.schema,
            table.table,
            table.tool,
            table.rows.len()
        );
    }
}

fn display_table(name: &TableName) -> String {
    match &name.schema {
        Some(schema) => format!("{schema}.{}", name.table),
        None => name.table.clone(),
    }
}

/// Refuses to migrate without a verified backup of this deployment (seed 004 §3: a restorable
/// backup comes before any database change), unless told to.
fn check_backup(state: &StateDir, required: bool) -> Result<Option<BackupRef>> {
    let path = state.path("backup.json");
    let fix = "run `shipgate backup` for this deployment first, or pass `--no-backup-required` (input `backup-required: false`) to migrate without one";
    let backup: Option<BackupFile> = state.load()?;
    let Some(backup) = backup else {
        if required {
            return Err(Error::gate(format!(
                "no backup of deployment `{}`: `{}` does not exist; {fix}",
                state.id(),
                path.display()
            )));
        }
        actions::annotate(
            Level::Warning,
            Some("shipgate migrate"),
            &format!(
                "migrating deployment `{}` without a backup (`backup-required: false`)",
                state.id()
            ),
        );
        return Ok(None);
    };
    let reference = match &backup.outcome {
        BackupOutcome::Taken(taken) => BackupRef {
            backup_id: Some(taken.backup_id.clone()),
            location: Some(crate::secret::redact_url(&taken.location)),
            verified: backup.taken().is_some_and(|t| t.verified),
        },
        BackupOutcome::Failed(failed) => BackupRef {
            backup_id: failed.backup_id.clone(),
            location: failed.location.as_deref().map(crate::secret::redact_url),
            verified: false,
        },
    };
    if !reference.verified {
        let id = reference
            .backup_id
            .as_deref()
            .map_or_else(String::new, |id| format!(" {}", actions::quote(id)));
        if required {
            return Err(Error::gate(format!(
                "the backup{id} of deployment `{}` is not verified (`{}` does not say `verified: true` with `result: pass`); {fix}",
                state.id(),
                path.display()
            )));
        }
        actions::annotate(
            Level::Warning,
            Some("shipgate migrate"),
            &format!(
                "migrating deployment `{}` with an unverified backup (`backup-required: false`)",
                state.id()
            ),
        );
    } else {
        tracing::info!(
            "verified backup{}: {}",
            reference
                .backup_id
                .as_deref()
                .map_or_else(String::new, |id| format!(" {}", actions::quote(id))),
            reference.location.as_deref().unwrap_or("(no location)")
        );
    }
    Ok(Some(reference))
}

/// Writes the state file, outputs and summary of a run that got as far as the command.
fn finish(
    state: &StateDir,
    options: &Options,
    result: &MigrateFile,
    status: exit::Status,
) -> Result<Outcome> {
    let path = state.save(result)?;
    let applied_json = serde_json::to_string(&result.applied).unwrap_or_else(|_| "[]".into());
    set_outputs(&[
        ("result", result.header.result.clone()),
        (
            "migrations-applied",
            result
                .applied_count
                .map_or_else(String::new, |n| n.to_string()),
        ),
        ("applied", applied_json),
        ("tool", result.tool.clone().unwrap_or_default()),
        ("log-file", result.log_file.clone()),
    ])?;
    actions::append_summary(&summary(result, options))?;
    let count = match result.applied_count {
        Some(1) => "1 migration".to_string(),
        Some(n) => format!("{n} migrations"),
        None => "an unknown number of migrations".to_string(),
    };
    if status == exit::Status::Success {
        tracing::info!(
            "applied {count}{}; state in `{}`",
            result
                .tool
                .as_deref()
                .map_or_else(String::new, |t| format!(" ({t})")),
            path.display()
        );
    } else {
        let how = how_it_ended(result);
        let backup = match result.backup.as_ref().and_then(|b| b.backup_id.as_deref()) {
            Some(id) => format!(
                "; the backup {} of this deployment can restore the database",
                actions::quote(id)
            ),
            None => String::new(),
        };
        actions::annotate(
            Level::Error,
            Some("shipgate migrate"),
            &format!(
                "the migration command {} {how}; {count} applied before it stopped; its output is in `{}`{backup}",
                actions::quote(&result.migration_command),
                result.log_file
            ),
        );
    }
    let json = serde_json::to_value(result).unwrap_or_else(|_| json!({}));
    Ok(Outcome { json, status })
}

fn how_it_ended(result: &MigrateFile) -> String {
    let duration = format_duration(Duration::from_millis(
        result.command_duration_ms.unwrap_or(0),
    ));
    if result.timed_out {
        return format!(
            "timed out after {}; its whole process group was killed",
            format_duration(Duration::from_millis(result.timeout_ms))
        );
    }
    if result.cancelled {
        return format!("was stopped after {duration} because shipgate was cancelled");
    }
    match (result.exit_code, result.signal) {
        (Some(127), _) if result.shell => {
            "failed with exit code 127: the shell could not find a command in the script".into()
        }
        (Some(code), _) => format!("failed with exit code {code} after {duration}"),
        (None, Some(signal)) => format!("was killed by signal {signal} after {duration}"),
        _ => format!("ended without a status after {duration}"),
    }
}

/// A code fence that the text inside cannot close.
fn fenced(text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        if c == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    let fence = "`".repeat((longest + 1).max(3));
    format!("{fence}text\n{text}\n{fence}\n")
}

fn summary(result: &MigrateFile, options: &Options) -> String {
    let count = result
        .applied_count
        .map_or_else(|| "unknown".to_string(), |n| n.to_string());
    let heading = if result.header.result == "pass" {
        format!(
            "### ✅ Migrations: {count} applied{}",
            result
                .tool
                .as_deref()
                .map_or_else(String::new, |t| format!(" ({t})"))
        )
    } else if result.timed_out {
        "### ❌ Migration command timed out".to_string()
    } else if result.cancelled {
        "### ❌ Migration command stopped (cancelled)".to_string()
    } else {
        let how = match (result.exit_code, result.signal) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(signal)) => format!("signal {signal}"),
            _ => "no status".to_string(),
        };
        format!("### ❌ Migration command failed ({how})")
    };
    let mut table = Table::new(&["Migration", "Result"]);
    let tool = if result.history_tables.is_empty() {
        "none detected (set `history-table` to count)".to_string()
    } else {
        result
            .history_tables
            .iter()
            .map(|t| {
                let created = if t.rows_before.is_none() {
                    ", created by this run"
                } else {
                    ""
                };
                format!("{} (`{}.{}`{created})", t.tool, t.schema, t.table)
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    table.row(&["Tool", &tool]);
    table.row(&["Applied", &count]);
    if !result.applied.is_empty() {
        table.row(&["New", &list_names(&result.applied)]);
    }
    for t in &result.history_tables {
        if let (Some(before), Some(after)) = (&t.versions_before, &t.versions_after)
            && before != after
        {
            table.row(&[
                "Version",
                &format!(
                    "{} → {}",
                    if before.is_empty() {
                        "none".to_string()
                    } else {
                        list_names(before)
                    },
                    list_names(after)
                ),
            ]);
        }
    }
    if !result.failed.is_empty() {
        table.row(&["Failed", &list_names(&result.failed)]);
    }
    let ended = match (result.exit_code, result.header.result.as_str()) {
        (Some(0), "pass") => "exit code 0".to_string(),
        _ => how_it_ended(result),
    };
    table.row(&[
        "Command",
        &format!("`{}`: {ended}", result.migration_command.replace('`', "'")),
    ]);
    table.row(&[
        "Duration",
        &format_duration(Duration::from_millis(
            result.command_duration_ms.unwrap_or(0),
        )),
    ]);
    let holders = if result.lock_holders.is_empty() {
        String::new()
    } else {
        format!(
            ", behind {}",
            result
                .lock_holders
                .iter()
                .map(|h| h
                    .pid
                    .map_or_else(|| "?".to_string(), |p| format!("pid {p}")))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    table.row(&[
        "Lock wait",
        &format!(
            "{} (advisory lock `{}`{holders})",
            format_duration(Duration::from_millis(result.lock_wait_ms)),
            result.lock_key
        ),
    ]);
    let backup = match &result.backup {
        Some(b) => format!(
            "{} ({})",
            b.backup_id
                .as_deref()
                .map_or_else(|| "unnamed".to_string(), |id| format!("`{id}`")),
            if b.verified {
                "verified"
            } else {
                "not verified"
            }
        ),
        None if !options.backup_required => "not required (`backup-required: false`)".into(),
        None => "none".into(),
    };
    table.row(&["Backup", &backup]);
    table.row(&["Log", &format!("`{}`", result.log_file)]);
    let mut out = format!("{heading}\n\n{}", table.render());
    if !result.output_tail.is_empty() {
        out.push_str(&format!(
            "\nLast lines of output:\n\n{}",
            fenced(&result.output_tail.join("\n"))
        ));
    }
    if result.lock_lost {
        out.push_str("\n> [!WARNING]\n> The connection holding the migration lock was lost during the run; another run may have overlapped this one.\n");
    }
    if let Some(warning) = &result.warning {
        out.push_str(&format!(
            "\n> [!WARNING]\n> {}\n",
            actions::one_line(warning)
        ));
    }
    out
}

fn list_names(names: &[String]) -> String {
    let mut shown: Vec<String> = names
        .iter()
        .take(SUMMARY_NAMES)
        .map(|n| format!("`{}`", n.replace('`', "'")))
        .collect();
    if names.len() > SUMMARY_NAMES {
        shown.push(format!(
            "… and {} more (see `migrate.json`)",
            names.len() - SUMMARY_NAMES
        ));
    }
    shown.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_without_a_shell() {
        assert_eq!(
            crate::process::split_command("npx prisma migrate deploy").expect("words"),
            ["npx", "prisma", "migrate", "deploy"]
        );
        assert_eq!(
            crate::process::split_command(
                r#"migrate -path 'db/my migrations' -database "x\"y" a\ b ''"#
            )
            .expect("words"),
            [
                "migrate",
                "-path",
                "db/my migrations",
                "-database",
                "x\"y",
                "a b",
                ""
            ]
        );
        assert!(crate::process::split_command("make migrate && echo ok").is_err());
        assert!(crate::process::split_command("migrate $DATABASE_URL").is_err());
        assert!(crate::process::split_command("migrate \"$DATABASE_URL\"").is_err());
        assert!(crate::process::split_command("migrate 'unclosed").is_err());
        assert!(crate::process::split_command("ls ~/x").is_err());
        assert_eq!(
            crate::process::split_command("a=~b").expect("words"),
            ["a=~b"]
        );
    }

    #[test]
    fn the_lock_key_never_changes() {
        // Every runner, every version of shipgate, must derive the same key: this pins it.
        assert_eq!(
            hashed_key(&default_lock_text("octo/app", "production")),
            -4_271_874_471_539_250_901
        );
        // SHA-256("") starts e3b0c44298fc1c14.
        assert_eq!(hashed_key(""), -2_039_914_840_885_289_964);
        assert_ne!(
            hashed_key(&default_lock_text("octo/app", "production")),
            hashed_key(&default_lock_text("octo/app", "staging"))
        );
    }

    #[test]
    fn table_names() {
        assert_eq!(
            TableName::parse("public.__EFMigrationsHistory").expect("name"),
            TableName {
                schema: Some("public".into()),
                table: "__EFMigrationsHistory".into()
            }
        );
        assert!(TableName::parse("x.").is_err());
        assert!(TableName::parse("").is_err());
    }

    fn rows(tool: &'static str, version_only: bool, rows: &[(&str, Option<bool>)]) -> TableRows {
        TableRows {
            schema: "public".into(),
            table: "t".into(),
            tool,
            version_only,
            rows: rows
                .iter()
                .map(|(name, applied)| Row {
                    key: name.to_string(),
                    name: name.to_string(),
                    applied: *applied,
                })
                .collect(),
        }
    }

    fn snap(table: TableRows) -> Snapshot {
        let mut s = Snapshot::new();
        s.insert((table.schema.clone(), table.table.clone()), table);
        s
    }

    #[test]
    fn counting_rows_and_versions() {
        let (yes, no) = (Some(true), Some(false));
        let before = snap(rows("prisma", false, &[("a", yes), ("b", no)]));
        let after = snap(rows(
            "prisma",
            false,
            &[("a", yes), ("b", yes), ("c", yes), ("d", no), ("e", None)],
        ));
        let counted = count(&before, &after);
        assert_eq!(counted.applied_count, Some(2));
        assert_eq!(counted.applied, ["b", "c"]);
        assert_eq!(counted.failed, ["d"]);

        let none = count(&Snapshot::new(), &after);
        assert_eq!(none.applied_count, Some(3));
        assert_eq!(none.tables[0].rows_before, None);

        let v1 = snap(rows("alembic", true, &[("abc", yes)]));
        let v2 = snap(rows("alembic", true, &[("def", yes)]));
        let moved = count(&v1, &v2);
        assert_eq!(moved.applied_count, None);
        assert_eq!(moved.applied, ["def"]);
        assert_eq!(count(&v1, &v1).applied_count, Some(0));
        assert_eq!(
            count(&Snapshot::new(), &Snapshot::new()).applied_count,
            None
        );
    }

    #[test]
    fn fences_outlast_the_text() {
        assert!(fenced("a ``` b").starts_with("````text\n"));
        assert!(fenced("plain").starts_with("```text\n"));
    }
}
