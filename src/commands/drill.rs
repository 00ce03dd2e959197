//! `shipgate drill` (seed 001 D6, seed 002 "weekly restore drill"): restore the newest (or a
//! named) backup into a scratch database on the drill server, measure the RTO and the RPO, run
//! the parity checks, drop the scratch database; `drill.json`, a report artifact, a summary,
//! outputs, and exit 1 when a target or a check is missed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::backup::{self, StoreArgs};
use super::{Outcome, set_outputs};
use crate::actions;
use crate::artifacts::{self, Artifact};
use crate::backup::log_line;
use crate::backup::restore::{Chosen, Which};
use crate::drill::report;
use crate::drill::run::{self, Drilled, Known, Options, Smoke};
use crate::error::{Error, Result};
use crate::exit;
use crate::postgres::Database;
use crate::process::{LogFile, SharedLog, Shutdown};
use crate::settings::{self, Settings};
use crate::state::drill::DrillFile;
use crate::state::{Header, StateDir};
use crate::util::HumanDuration;

const DEFAULT_MAX_RTO: Duration = Duration::from_secs(30 * 60);
const DEFAULT_MAX_RPO: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    /// Drill this backup, `backup-<deployment-id>` in the destination, instead of the newest
    /// (input `backup-id`)
    #[arg(long, value_name = "ID")]
    pub(crate) backup_id: Option<String>,
    /// Drill the backup at this URL, `s3://bucket/prefix/backup-<id>.sql.gz` (input
    /// `backup-location`)
    #[arg(long, value_name = "URL")]
    pub(crate) location: Option<String>,
    /// Recovery time objective: the fetch and restore must take at most this (input `max-rto`)
    /// [default: 30m]
    #[arg(long, value_name = "DURATION")]
    pub(crate) max_rto: Option<HumanDuration>,
    /// Recovery point objective: the backup must be at most this old (input `max-rpo`)
    /// [default: 24h]
    #[arg(long, value_name = "DURATION")]
    pub(crate) max_rpo: Option<HumanDuration>,
    /// A smoke suite to run against the app pointed at the scratch database, whose URL it finds
    /// in SHIPGATE_DRILL_DATABASE_URL (input `smoke-suite`)
    #[arg(long, value_name = "FILE")]
    pub(crate) smoke_suite: Option<PathBuf>,
    /// Base for the smoke suite's relative URLs (input `smoke-base-url`)
    #[arg(long, value_name = "URL")]
    pub(crate) smoke_base_url: Option<String>,
    /// Keep the scratch database afterwards, to look at it (input `keep-scratch: true`)
    #[arg(long)]
    pub(crate) keep: bool,
    /// Deadline for the whole drill (input `drill-timeout`) [default: 6h]
    #[arg(long, value_name = "DURATION")]
    pub(crate) timeout: Option<HumanDuration>,
    /// Directory of the PostgreSQL client tools (input `pg-bin-dir`) [default: PATH]
    #[arg(long, value_name = "DIR")]
    pub(crate) pg_bin_dir: Option<PathBuf>,
    /// Where an S3 download is kept while its SHA-256 is checked (input `work-dir`) [default:
    /// TMPDIR]
    #[arg(long, value_name = "DIR")]
    pub(crate) work_dir: Option<PathBuf>,
}

/// Which backup: `--location`, `--backup-id` in the destination, else the newest there.
fn which(args: &Args, settings: &Settings) -> Result<Which> {
    let location = settings.text("backup-location", args.location.clone(), None);
    let backup_id = settings.text("backup-id", args.backup_id.clone(), None);
    let destination = backup::destination(&args.store, settings)?;
    match (location, backup_id) {
        (Some(_), Some(_)) => Err(Error::usage(
            "name the backup one way only: `--backup-id` or `--location` (or neither, for the newest in `--destination`)",
        )),
        (Some(url), None) => Ok(Which::Named(Chosen::from_url(
            &url,
            format!("at {}", actions::quote(&url)),
        )?)),
        (None, Some(id)) => Which::from_id(&id, destination),
        (None, None) => destination.map(Which::Newest).ok_or_else(|| {
            Error::usage(
                "which backups? pass `--destination s3://bucket/prefix` (input `destination`, or `backup.destination` in shipgate.yml) to drill the newest, or `--backup-id` / `--location`",
            )
        }),
    }
}

/// Everything resolved and checked before anything runs: a bad input, or a drill server that is
/// the production database, changes nothing.
async fn options(args: &Args, settings: &Settings, id: &str) -> Result<Options> {
    let max_rto = settings.duration("max-rto", args.max_rto, None, DEFAULT_MAX_RTO)?;
    let max_rpo = settings.duration("max-rpo", args.max_rpo, None, DEFAULT_MAX_RPO)?;
    let timeout = settings.duration("drill-timeout", args.timeout, None, DEFAULT_TIMEOUT)?;
    let bin_dir = backup::pg_bin_dir(settings, args.pg_bin_dir.as_ref());
    let server_url = settings::secret("drill-database-url", &[]).ok_or_else(|| {
        Error::usage(
            "no drill server: set the `drill-database-url` input (from a secret) to a PostgreSQL server where the role may create databases; never the production database",
        )
    })?;
    let server = Database::from_url("`drill-database-url`", &server_url)?
        .with_bin_dir(bin_dir)
        .with_application_name(&format!("shipgate drill {id}"));
    if let Some(production) = settings::secret("database-url", &["DATABASE_URL"]) {
        let production = Database::from_url("`database-url`", &production)?;
        let refuse = || {
            Error::usage(format!(
                "`drill-database-url` names the same database as `database-url` (`{}`): a drill restores into a scratch database on a separate server, never next to production. Point `drill-database-url` at a drill server; nothing was done",
                server.display()
            ))
        };
        if run::same_database(&server, &production) {
            return Err(refuse());
        }
        match run::relation(&server, &production).await {
            run::Relation::SameDatabase => return Err(refuse()),
            run::Relation::SameServer => actions::annotate(
                actions::Level::Warning,
                Some("shipgate drill"),
                &format!(
                    "`drill-database-url` (`{}`) is on the same PostgreSQL cluster as `database-url` (same system identifier): the drill's restore load lands on production's server; point it at a separate drill server",
                    server.display()
                ),
            ),
            run::Relation::Separate => {}
            run::Relation::Unknown(why) => actions::annotate(
                actions::Level::Notice,
                Some("shipgate drill"),
                &format!(
                    "could not ask both servers for their system identifier ({}); the drill server was told apart from production by its URL only",
                    crate::text::one_line(&why)
                ),
            ),
        }
    }
    let which = which(args, settings)?;
    let suite = settings
        .text(
            "smoke-suite",
            args.smoke_suite.as_ref().map(|p| p.display().to_string()),
            None,
        )
        .map(PathBuf::from);
    let smoke = match suite {
        Some(path) => {
            if !path.is_file() {
                return Err(Error::usage(format!(
                    "the smoke suite `{}` does not exist; check `--smoke-suite`",
                    path.display()
                )));
            }
            let suite = path.display().to_string();
            let mut command = vec!["smoke", "--suite", suite.as_str()];
            let base = settings.text("smoke-base-url", args.smoke_base_url.clone(), None);
            if let Some(base) = &base {
                command.extend(["--base-url", base.as_str()]);
            }
            Some(Smoke {
                argv: settings.shipgate_argv(Some(id), &command)?,
                suite,
            })
        }
        None => None,
    };
    let store = backup::s3_options(&args.store, settings)?;
    Ok(Options {
        which,
        s3: store,
        server,
        server_url,
        max_rto,
        max_rpo,
        keep: settings.switch("keep-scratch", args.keep, None, false)?,
        work_dir: backup::work_dir(settings, args.work_dir.as_ref()),
        jobs: backup::jobs(settings, None)?,
        timeout,
        smoke,
    })
}

pub(crate) async fn run(args: &Args, settings: &Settings) -> Result<Outcome> {
    let shutdown = Shutdown::listen();
    let started = Instant::now();
    let id = match &settings.deployment_id {
        Some(id) => id.clone(),
        None => format!(
            "drill-{}",
            jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ")
        ),
    };
    let options = options(args, settings, &id).await?;
    let state = StateDir::create(&settings.state_root, &id)?;
    let log_path = state.path(&format!("drill-logs-{id}.log"));
    let log: SharedLog = Arc::new(std::sync::Mutex::new(LogFile::append(&log_path)?));
    log_line(&log, &format!("shipgate drill `{id}`"));
    let mut known = Known::default();
    let result = run::drill(&options, &state, &log, &shutdown, &mut known).await;
    let (file, error) = match result {
        Ok(drilled) => (
            file_of(&id, &options, &drilled, &known, started, &log_path),
            None,
        ),
        Err(error) => {
            log_line(&log, &format!("failed: {error}"));
            (
                failed_file(&id, &options, &known, &error, started, &log_path),
                Some(error),
            )
        }
    };
    let file = publish(&state, file).await?;
    set_outputs(&[
        ("result", file.header.result.clone()),
        ("backup-id", file.backup_id.clone()),
        ("rto-seconds", format!("{:.1}", file.rto_seconds)),
        ("rpo-seconds", format!("{:.0}", file.rpo_seconds)),
        ("scratch-database", file.scratch_database.clone()),
    ])?;
    if let Some(error) = error {
        return Err(error);
    }
    actions::append_summary(&report::markdown(&file))?;
    let json = serde_json::to_value(&file).unwrap_or_default();
    if file.header.result == "pass" {
        tracing::info!(
            "drill of `{}` passed: RTO {}, RPO {}",
            file.backup_id,
            crate::ui::took_seconds(file.rto_seconds),
            crate::ui::took_seconds(file.rpo_seconds)
        );
        Ok(Outcome::success(json))
    } else {
        let reason = file.reason.clone().unwrap_or_default();
        actions::annotate(actions::Level::Error, Some("shipgate drill"), &reason);
        Ok(Outcome {
            json,
            status: exit::Status::GateFailed,
            text: None,
        })
    }
}

fn file_of(
    id: &str,
    options: &Options,
    drilled: &Drilled,
    known: &Known,
    started: Instant,
    log_path: &std::path::Path,
) -> DrillFile {
    let reason = drilled.failure();
    DrillFile {
        header: Header {
            duration_ms: Some(started.elapsed().as_millis() as u64),
            ..Header::now::<DrillFile>(if reason.is_none() { "pass" } else { "fail" })
        },
        deployment_id: id.to_string(),
        backup_id: drilled.sidecar.backup_id.clone(),
        location: drilled.sidecar.location.clone(),
        backup_timestamp: drilled.sidecar.timestamp.clone(),
        scratch_database: known.scratch_database.clone().unwrap_or_default(),
        scratch_dropped: known.scratch_dropped,
        rto_seconds: drilled.rto.as_secs_f64(),
        rpo_seconds: drilled.rpo.as_secs_f64(),
        max_rto_seconds: options.max_rto.as_secs_f64(),
        max_rpo_seconds: options.max_rpo.as_secs_f64(),
        tables: drilled.row_counts.len(),
        rows: drilled.row_counts.values().sum(),
        row_counts: drilled.row_counts.clone(),
        migration_versions: drilled.migration_versions.clone(),
        checks: drilled.checks.clone(),
        reason,
        log_file: log_path.display().to_string(),
        report: Vec::new(),
        artifacts: None,
    }
}

/// `drill.json` of a drill stopped by an error: what was known, and why.
fn failed_file(
    id: &str,
    options: &Options,
    known: &Known,
    error: &Error,
    started: Instant,
    log_path: &std::path::Path,
) -> DrillFile {
    DrillFile {
        header: Header {
            duration_ms: Some(started.elapsed().as_millis() as u64),
            ..Header::now::<DrillFile>("fail")
        },
        deployment_id: id.to_string(),
        backup_id: known.backup_id.clone().unwrap_or_default(),
        location: known.location.clone().unwrap_or_default(),
        backup_timestamp: known.backup_timestamp.clone().unwrap_or_default(),
        scratch_database: known.scratch_database.clone().unwrap_or_default(),
        scratch_dropped: known.scratch_dropped,
        rto_seconds: 0.0,
        rpo_seconds: 0.0,
        max_rto_seconds: options.max_rto.as_secs_f64(),
        max_rpo_seconds: options.max_rpo.as_secs_f64(),
        tables: 0,
        rows: 0,
        row_counts: Default::default(),
        migration_versions: Vec::new(),
        checks: Vec::new(),
        reason: Some(error.to_string()),
        log_file: log_path.display().to_string(),
        report: Vec::new(),
        artifacts: None,
    }
}

/// Writes `drill.json` and the report (`drill-report-<id>.md` and `.json`), and uploads the
/// report as the `drill-report-<id>` artifact (staged under the state dir without the service).
async fn publish(state: &StateDir, mut file: DrillFile) -> Result<DrillFile> {
    let id = state.id().to_string();
    let markdown_path = state.path(&format!("drill-report-{id}.md"));
    let json_path = state.path(&format!("drill-report-{id}.json"));
    file.report = vec![
        markdown_path.display().to_string(),
        json_path.display().to_string(),
    ];
    state.save(&file)?;
    state.write_json(&format!("drill-report-{id}.json"), &file)?;
    let markdown = crate::secret::redact(&report::markdown(&file));
    crate::util::write_atomic(&markdown_path, markdown.as_bytes()).map_err(|e| {
        Error::usage(format!(
            "cannot write the drill report `{}`: {e}",
            markdown_path.display()
        ))
    })?;
    let artifact = Artifact {
        name: format!("drill-report-{id}"),
        files: vec![
            (markdown_path, format!("drill-report-{id}.md")),
            (json_path, format!("drill-report-{id}.json")),
        ],
    };
    let publication = {
        let _group = actions::group("Artifacts");
        artifacts::publish(&state.path("artifacts"), &[artifact], None).await
    };
    for failed in publication.failures() {
        actions::annotate(
            actions::Level::Warning,
            Some("shipgate drill"),
            &format!(
                "the drill report artifact `{}` could not be uploaded ({}); it is in `{}`",
                failed.name,
                failed.error.as_deref().unwrap_or("unknown error"),
                publication.dir
            ),
        );
    }
    file.artifacts = Some(publication);
    state.save(&file)?;
    Ok(file)
}
