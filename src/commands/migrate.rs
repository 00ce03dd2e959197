//! `shipgate migrate` (seed 004 §4 "Database Migrations", seed 000 "apply DB migrations once"):
//! runs the team's own migration command exactly once at a time, under a PostgreSQL advisory lock
//! held on a connection of its own for the whole run, only after a verified backup of this
//! deployment; counts what the command applied from the migration tool's history table; keeps
//! the command's output as `migration-logs-<deployment-id>.log`.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{Outcome, set_outputs};
use crate::actions::{self, Level};
use crate::error::{Error, Result};
use crate::exit;
use crate::migrate::command::{CommandSource, check_program, command_argv};
use crate::migrate::config::{FileConfig, Scalar};
use crate::migrate::history::TableName;
use crate::migrate::lock::{application_name, default_lock_text, hashed_key};
use crate::migrate::run::{Options, how_it_ended, migrate};
use crate::migrate::summary::summary;
use crate::postgres::Database;
use crate::settings::{self, Settings};
use crate::state::Header;
use crate::state::StateDir;
use crate::state::migrate::MigrateFile;
use crate::util::HumanDuration;

/// Default deadline of the migration command.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);
/// Default wait for another run's lock.
const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(600);

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
    pub(crate) timeout: Option<HumanDuration>,
    /// How long to wait while another run holds the migration lock (input `lock-timeout`)
    /// [default: 10m]
    #[arg(long, value_name = "DURATION")]
    pub(crate) lock_timeout: Option<HumanDuration>,
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

/// The command's options from its flags, inputs and `migrate:` section.
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
    let timeout = settings.duration("timeout", args.timeout, file.timeout, DEFAULT_TIMEOUT)?;
    if timeout.is_zero() {
        return Err(Error::usage(
            "a `timeout` of zero would kill the migration at once; give a deadline such as `30m`",
        ));
    }
    let lock_timeout = settings.duration(
        "lock-timeout",
        args.lock_timeout,
        file.lock_timeout,
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

pub(crate) async fn run(args: &Args, settings: &Settings) -> Result<Outcome> {
    let options = resolve(args, settings)?;
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
    Ok(Outcome {
        json,
        status,
        text: None,
    })
}
