//! `shipgate backup` (seed 004 §3 "Database Backup"): `pg_dump` streamed through gzip and
//! SHA-256 to `s3://bucket/prefix/backup-<deployment-id>.sql.gz` (or `file:///dir/…`), with no
//! temporary file and bounded memory; read back and verified; published with a metadata
//! sidecar written last; never overwritten. `shipgate backup prune` applies retention.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Outcome, set_outputs};
use crate::actions;
use crate::backup::archive::Codec;
pub(crate) use crate::backup::config::FileConfig;
use crate::backup::directory;
use crate::backup::dump::{self, Known, Options};
use crate::backup::prune::{self, prune_summary};
use crate::backup::report;
use crate::backup::storage::{self, S3Given};
use crate::backup::verify::VerifyMode;
use crate::backup::{log_line, say};
use crate::error::{Error, Result};
use crate::postgres::Database;
use crate::process::{LogFile, SharedLog, Shutdown};
use crate::settings::{self, Settings};
use crate::state::StateDir;
use crate::state::backup::{Compression, DumpFormat};
use crate::storage::{Checksum, Location, S3Options, Storage};
use crate::util::HumanDuration;

const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(60);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

#[derive(Debug, Default, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct Args {
    #[command(subcommand)]
    pub(crate) action: Option<Action>,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    #[command(flatten)]
    pub(crate) lease: super::lease::hold::LeaseArgs,
    /// pg_dump format: `plain` (SQL; `gunzip | psql` restores it), `custom` (restored with
    /// pg_restore; stored as `.dump.gz`) or `directory` (parallel: `pg_dump --jobs`, each file
    /// stored as `backup-<id>/<file>.gz`, restored with `pg_restore --jobs`) (input
    /// `dump-format`) [default: plain]
    #[arg(long, value_name = "FORMAT")]
    pub(crate) dump_format: Option<DumpFormat>,
    /// `gzip` (`gunzip` reads it) or `zstd` (faster per core, smaller; `zstd -d` reads it)
    /// (input `compression`) [default: gzip]
    #[arg(long, value_name = "gzip|zstd")]
    pub(crate) compression: Option<Compression>,
    /// Compression level: gzip 0 (none) to 9 (smallest, slowest), zstd 1 to 19 (input
    /// `compression-level`) [default: gzip 1, zstd 3]
    #[arg(long, value_name = "LEVEL")]
    pub(crate) compression_level: Option<u32>,
    /// Parallel work, 1 to 64: pg_dump's jobs with `--dump-format directory`, the threads that
    /// compress a single-stream dump (input `jobs`) [default: the available cores, at most 8]
    #[arg(long, value_name = "N")]
    pub(crate) jobs: Option<String>,
    /// Where a directory dump's files wait while they upload, in a private directory (input
    /// `work-dir`) [default: TMPDIR]
    #[arg(long, value_name = "DIR")]
    pub(crate) work_dir: Option<PathBuf>,
    /// After uploading: `sha256` (read the object back, check its SHA-256, decompress it and
    /// read the whole dump), `restore` (also restore it into a scratch database and compare
    /// per-table row counts with the source) or `none` (input `verify`) [default: sha256]
    #[arg(long, value_name = "MODE")]
    pub(crate) verify: Option<VerifyMode>,
    /// How long pg_dump waits for a table lock before failing (input `lock-wait-timeout`)
    /// [default: 60s]
    #[arg(long, value_name = "DURATION")]
    pub(crate) lock_wait_timeout: Option<HumanDuration>,
    /// Deadline for the whole backup, verification included (input `backup-timeout`)
    /// [default: 6h]
    #[arg(long, value_name = "DURATION")]
    pub(crate) timeout: Option<HumanDuration>,
    /// Directory of the PostgreSQL client tools, e.g. `/usr/lib/postgresql/17/bin` (input
    /// `pg-bin-dir`) [default: PATH]
    #[arg(long, value_name = "DIR")]
    pub(crate) pg_bin_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Action {
    /// Delete old backups: keep the newest `--keep-last`, those younger than `--keep-days`,
    /// and always the newest verified one
    Prune(PruneArgs),
    /// List every backup at the destination, newest first: id, time, age, size, state,
    /// format, verification, deployment (`--format json` for scripts)
    List(ListArgs),
}

#[derive(Debug, Default, clap::Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    pub(crate) store: StoreArgs,
}

/// Where backups live and how to reach S3; shared by `backup`, `backup prune` and `restore`.
#[derive(Debug, Default, Clone, clap::Args)]
pub(crate) struct StoreArgs {
    /// Where backups live: `s3://bucket/prefix` or `file:///absolute/dir` (input `destination`)
    #[arg(long, value_name = "URL")]
    pub(crate) destination: Option<String>,
    /// S3-compatible endpoint, e.g. `https://minio.internal:9000` (input `s3-endpoint-url`)
    /// [default: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, else AWS]
    #[arg(long, value_name = "URL")]
    pub(crate) endpoint_url: Option<String>,
    /// S3 region (input `s3-region`) [default: AWS_REGION / the AWS config, else us-east-1]
    #[arg(long, value_name = "REGION")]
    pub(crate) region: Option<String>,
    /// Path-style S3 addressing, `true` or `false` (input `s3-path-style`) [default: true with
    /// a custom endpoint]
    #[arg(long, value_name = "BOOL")]
    pub(crate) path_style: Option<bool>,
    /// Server-side encryption: `AES256` (SSE-S3) or `aws:kms` (SSE-KMS) (input `s3-sse`)
    #[arg(long, value_name = "MODE")]
    pub(crate) sse: Option<String>,
    /// KMS key for `aws:kms` (input `s3-sse-kms-key-id`) [default: the bucket's]
    #[arg(long, value_name = "KEY")]
    pub(crate) sse_kms_key_id: Option<String>,
    /// Per-part checksum: `sha256` or `none` for servers that reject checksum headers (input
    /// `s3-checksum`) [default: sha256]
    #[arg(long, value_name = "MODE")]
    pub(crate) checksum: Option<String>,
}

#[derive(Debug, Default, clap::Args)]
pub(crate) struct PruneArgs {
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    /// Keep every backup younger than this many days (input `keep-days`) [default, when no
    /// rule is given: 7 for `dev`, 14 for `staging`, 35 for `production`]
    #[arg(long, value_name = "N")]
    pub(crate) keep_days: Option<u64>,
    /// Keep the newest M complete backups (input `keep-last`)
    #[arg(long, value_name = "M")]
    pub(crate) keep_last: Option<u64>,
    /// Show what would be deleted, delete nothing (input `dry-run`)
    #[arg(long)]
    pub(crate) dry_run: bool,
}

fn file_config(settings: &Settings) -> &FileConfig {
    static EMPTY: std::sync::OnceLock<FileConfig> = std::sync::OnceLock::new();
    settings
        .file
        .backup
        .as_ref()
        .unwrap_or_else(|| EMPTY.get_or_init(FileConfig::default))
}

/// The destination (flag > input > `backup:` in shipgate.yml), when one is configured.
pub(crate) fn destination(args: &StoreArgs, settings: &Settings) -> Result<Option<Location>> {
    let file = file_config(settings);
    settings
        .text(
            "destination",
            args.destination.clone(),
            file.destination.as_ref(),
        )
        .map(|text| Location::parse(&text).map_err(Error::from))
        .transpose()
}

/// How to reach S3 (endpoint URL, region, path-style, SSE, checksum; credentials come from the
/// default AWS chain), resolved flag > input > `backup:` in shipgate.yml > environment. The one
/// place every command resolves it, whatever names the backup (`--destination`, `--backup-id`,
/// `--location`, `--record` or the state directory's `backup.json`): open storage only through
/// [`open_storage`].
pub(crate) fn s3_options(args: &StoreArgs, settings: &Settings) -> Result<S3Options> {
    let file = file_config(settings);
    storage::s3_options(S3Given {
        endpoint_url: settings.text(
            "s3-endpoint-url",
            args.endpoint_url.clone(),
            file.s3_endpoint_url.as_ref(),
        ),
        region: settings.text("s3-region", args.region.clone(), file.s3_region.as_ref()),
        path_style: settings.value("s3-path-style", args.path_style, file.s3_path_style)?,
        checksum: settings
            .value::<Checksum>(
                "s3-checksum",
                parse_opt(args.checksum.as_deref(), "--checksum")?,
                parse_opt(file.s3_checksum.as_deref(), "backup.s3-checksum")?,
            )?
            .unwrap_or(Checksum::Sha256),
        sse: settings.text("s3-sse", args.sse.clone(), file.s3_sse.as_ref()),
        sse_kms_key_id: settings.text(
            "s3-sse-kms-key-id",
            args.sse_kms_key_id.clone(),
            file.s3_sse_kms_key_id.as_ref(),
        ),
    })
}

/// Opens `location` with the S3 settings of `args` and `settings` (see [`s3_options`]); the
/// only way `backup`, `backup prune` and `restore` reach a destination.
pub(crate) async fn open_storage(
    location: &Location,
    args: &StoreArgs,
    settings: &Settings,
) -> Result<Storage> {
    Ok(storage::open_storage(location, &s3_options(args, settings)?).await)
}

fn parse_opt<T>(text: Option<&str>, what: &str) -> Result<Option<T>>
where
    T: std::str::FromStr<Err = String>,
{
    text.map(|t| {
        t.parse::<T>()
            .map_err(|e| Error::usage(format!("{what}: {e}")))
    })
    .transpose()
}

/// The client tools' directory: flag > input `pg-bin-dir` > `backup.pg-bin-dir`.
pub(crate) fn pg_bin_dir(settings: &Settings, flag: Option<&PathBuf>) -> Option<PathBuf> {
    let file = file_config(settings)
        .pg_bin_dir
        .as_ref()
        .map(|p| p.display().to_string());
    settings
        .text(
            "pg-bin-dir",
            flag.map(|p| p.display().to_string()),
            file.as_ref(),
        )
        .map(PathBuf::from)
}

/// `--jobs` (flag > input `jobs` > `backup.jobs` > the available cores, at most 8): a usage
/// error naming the value unless it is 1 to [`directory::MAX_JOBS`].
pub(crate) fn jobs(settings: &Settings, flag: Option<&str>) -> Result<u32> {
    let file = file_config(settings).jobs.map(|n| n.to_string());
    let Some(text) = settings.text("jobs", flag.map(str::to_string), file.as_ref()) else {
        return Ok(directory::default_jobs());
    };
    match text.trim().parse::<u32>() {
        Ok(n) if (1..=directory::MAX_JOBS).contains(&n) => Ok(n),
        _ => Err(Error::usage(format!(
            "jobs {} is out of range; use a whole number from 1 to {}",
            actions::quote(&text),
            directory::MAX_JOBS
        ))),
    }
}

/// The work directory: flag > input `work-dir` > TMPDIR.
pub(crate) fn work_dir(settings: &Settings, flag: Option<&PathBuf>) -> PathBuf {
    settings
        .text("work-dir", flag.map(|p| p.display().to_string()), None)
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

/// The database URL secret (`database-url`, else DATABASE_URL).
pub(crate) fn source_database(bin_dir: Option<PathBuf>) -> Result<Database> {
    let url = settings::secret("database-url", &["DATABASE_URL"]).ok_or_else(|| {
        Error::usage(
            "no database: set the `database-url` input (from a secret) or the DATABASE_URL environment variable",
        )
    })?;
    Ok(Database::from_url("`database-url`", &url)?.with_bin_dir(bin_dir))
}

/// The backup's options, flag > input > `backup:` in shipgate.yml > default.
fn options(args: &Args, settings: &Settings) -> Result<Options> {
    let file = file_config(settings);
    let location = destination(&args.store, settings)?.ok_or_else(|| {
        Error::usage(
            "no backup destination: pass `--destination s3://bucket/prefix` (input `destination`, or `backup.destination` in shipgate.yml)",
        )
    })?;
    // Checked before anything runs, so a bad S3 setting is a usage error up front.
    let s3 = s3_options(&args.store, settings)?;
    let format = settings
        .value(
            "dump-format",
            args.dump_format,
            parse_opt(file.dump_format.as_deref(), "backup.dump-format")?,
        )?
        .unwrap_or(DumpFormat::Plain);
    let compression = settings
        .value(
            "compression",
            args.compression,
            parse_opt(file.compression.as_deref(), "backup.compression")?,
        )?
        .unwrap_or_default();
    let (levels, default_level) = compression.levels();
    let level = settings
        .value(
            "compression-level",
            args.compression_level,
            file.compression_level,
        )?
        .unwrap_or(default_level);
    if !levels.contains(&level) {
        return Err(Error::usage(format!(
            "compression level `{level}` is out of range for {}; use {} (fastest) to {} (smallest)",
            compression.name(),
            levels.start(),
            levels.end()
        )));
    }
    let verify = settings
        .value(
            "verify",
            args.verify,
            parse_opt(file.verify.as_deref(), "backup.verify")?,
        )?
        .unwrap_or(VerifyMode::Sha256);
    let lock_wait = settings.duration(
        "lock-wait-timeout",
        args.lock_wait_timeout,
        file.lock_wait_timeout,
        DEFAULT_LOCK_WAIT,
    )?;
    if lock_wait < Duration::from_millis(1) {
        return Err(Error::usage(
            "`lock-wait-timeout` must be at least 1ms; pg_dump would otherwise wait forever",
        ));
    }
    let timeout = settings.duration(
        "backup-timeout",
        args.timeout,
        file.timeout,
        DEFAULT_TIMEOUT,
    )?;
    let jobs = jobs(settings, args.jobs.as_deref())?;
    Ok(Options {
        location,
        s3,
        format,
        codec: Codec {
            compression,
            level,
            threads: jobs as usize,
        },
        verify,
        jobs,
        work_dir: work_dir(settings, args.work_dir.as_ref()),
        lock_wait,
        timeout,
        verify_database_url: settings::secret("verify-database-url", &[]),
        environment: settings.environment.clone(),
        repository: settings.repository.clone(),
    })
}

pub(crate) async fn run(args: &Args, settings: &Settings) -> Result<Outcome> {
    match &args.action {
        Some(Action::Prune(prune_args)) => return prune(prune_args, settings).await,
        Some(Action::List(list_args)) => return list(list_args, settings).await,
        None if settings::input("prune")
            .as_deref()
            .and_then(settings::parse_bool)
            .unwrap_or(false) =>
        {
            return prune(&PruneArgs::default(), settings).await;
        }
        None => {}
    }
    let mut shutdown = Shutdown::listen();
    let started = Instant::now();
    let ran_at = crate::util::now_rfc3339();
    let options = options(args, settings)?;
    let lease_place =
        super::lease::hold::place(&args.lease, Some(options.location.clone()), settings)?;
    let state = StateDir::open(settings)?;
    // Named in `pg_stat_activity`, so a DBA (or a test) can tell this run's sessions apart.
    // Resolved before the lease is taken: bad input changes nothing.
    let db = source_database(pg_bin_dir(settings, args.pg_bin_dir.as_ref()))?
        .with_application_name(&format!("shipgate backup {}", state.id()));
    // One deployment per environment: refused here (exit 1, nothing written) while another
    // deployment holds the lease; held from here until `record`.
    let holding =
        super::lease::hold::take(lease_place, &options.s3, settings, &state, "backup").await?;
    let log_path = state.path(&format!("backup-logs-{}.log", state.id()));
    let log: SharedLog = Arc::new(std::sync::Mutex::new(LogFile::append(&log_path)?));
    log_line(
        &log,
        &format!("shipgate backup, deployment `{}`", state.id()),
    );
    let mut known = Known::default();
    let result = async {
        let done = dump::backup(
            &options,
            &db,
            &state,
            &log,
            &mut shutdown,
            &mut known,
            started,
        )
        .await?;
        finish(&state, &log, &options, &done, started, &ran_at)
    }
    .await;
    if let Some(holding) = holding {
        holding.finish(&state).await;
    }
    match result {
        Ok(outcome) => Ok(outcome),
        Err(error) => {
            log_line(&log, &format!("failed: {error}"));
            report::save_failure(&state, &known, &error, started, &ran_at)?;
            Err(error)
        }
    }
}

/// Writes `backup.json`, the outputs and the summary.
fn finish(
    state: &StateDir,
    log: &SharedLog,
    options: &Options,
    done: &dump::Done,
    started: Instant,
    ran_at: &str,
) -> Result<Outcome> {
    let reused = done.reused;
    let (file, taken) = report::save(
        state,
        &done.sidecar,
        reused,
        &options.environment,
        started,
        ran_at,
    )?;
    let result = &taken;
    set_outputs(&[
        ("result", "pass".to_string()),
        ("backup-id", result.backup_id.clone()),
        ("location", result.location.clone()),
        ("sidecar-location", result.sidecar_location.clone()),
        ("sha256", result.sha256.clone()),
        ("size", result.size.to_string()),
        ("reused", result.reused.to_string()),
        ("verified", result.verified.to_string()),
    ])?;
    actions::append_summary(&report::summary(&file, result))?;
    say(
        log,
        &format!(
            "backup `{}` {} at `{}` ({}, SHA-256 {})",
            result.backup_id,
            if reused { "reused" } else { "stored" },
            result.location,
            crate::ui::bytes(result.size),
            result.sha256
        ),
    );
    let json = serde_json::to_value(&file).unwrap_or_else(|_| json!({}));
    Ok(Outcome::success(json))
}

/// `backup list`: reads the destination, writes nothing (no state file, no output but the
/// listing and the summary).
async fn list(args: &ListArgs, settings: &Settings) -> Result<Outcome> {
    let location = destination(&args.store, settings)?.ok_or_else(|| {
        Error::usage(
            "no backup destination to list: pass `--destination s3://bucket/prefix` (input `destination`)",
        )
    })?;
    let storage = open_storage(&location, &args.store, settings).await?;
    if let Some(dir) = storage.local_path("")
        && !dir.is_dir()
    {
        return Err(Error::usage(format!(
            "`{}` is not a directory; check `--destination`",
            location.display()
        )));
    }
    let found = prune::list_backups(&storage, &location, &Shutdown::listen()).await?;
    let listed = prune::listing(&found, jiff::Timestamp::now().as_second());
    let destination = location.display();
    actions::append_summary(&prune::listing_summary(&listed, &destination))?;
    set_outputs(&[
        ("result", "pass".to_string()),
        ("count", listed.len().to_string()),
        (
            "latest",
            listed
                .iter()
                .find(|l| l.state == "complete")
                .map(|l| l.backup_id.clone())
                .unwrap_or_default(),
        ),
    ])?;
    let text = prune::listing_text(&listed, &destination);
    Ok(Outcome::listing(
        json!({
            "schema_version": 1,
            "command": "backup-list",
            "destination": destination,
            "backups": listed,
        }),
        text,
    ))
}

async fn prune(args: &PruneArgs, settings: &Settings) -> Result<Outcome> {
    let started = Instant::now();
    let file = file_config(settings);
    let location = destination(&args.store, settings)?.ok_or_else(|| {
        Error::usage(
            "no backup destination to prune: pass `--destination s3://bucket/prefix` (input `destination`)",
        )
    })?;
    let mut keep_days = settings.value("keep-days", args.keep_days, file.keep_days)?;
    let keep_last = settings.value("keep-last", args.keep_last, file.keep_last)?;
    // No rule given at all: the environment's default retention (seed 002).
    let mut keep_days_from = "given";
    if keep_days.is_none() && keep_last.is_none() {
        keep_days = Some(prune::default_keep_days(&settings.environment).ok_or_else(|| {
            Error::usage(format!(
                "prune needs a retention rule: pass `--keep-days N` and/or `--keep-last M` (inputs `keep-days`, `keep-last`); the environment `{}` has no default ({})",
                settings.environment,
                prune::DEFAULTS_TEXT
            ))
        })?);
        keep_days_from = "environment default";
        tracing::info!(
            "no retention rule given: keeping {} days, the default for the environment `{}` ({})",
            keep_days.unwrap_or_default(),
            settings.environment,
            prune::DEFAULTS_TEXT
        );
    }
    let dry_run = settings.switch("dry-run", args.dry_run, None, false)?;
    let storage = open_storage(&location, &args.store, settings).await?;
    let shutdown = Shutdown::listen();
    let prune::Pruned {
        found,
        kept,
        deleted,
        would,
    } = prune::prune(
        &storage, &location, keep_days, keep_last, dry_run, &shutdown,
    )
    .await?;
    let result = json!({
        "schema_version": 1,
        "command": "backup-prune",
        "result": "pass",
        "timestamp": crate::util::now_rfc3339(),
        "duration_ms": started.elapsed().as_millis() as u64,
        "destination": location.display(),
        "keep_days": keep_days,
        "keep_days_from": keep_days_from,
        "environment": settings.environment,
        "keep_last": keep_last,
        "dry_run": dry_run,
        "kept": kept,
        "deleted": deleted,
        "would_delete": would,
        "backups": found,
    });
    if settings.deployment_id.is_some() || settings.state_root.join("latest").exists() {
        let state = StateDir::open(settings)?;
        state.write_json("backup-prune.json", &result)?;
    }
    set_outputs(&[
        ("result", "pass".to_string()),
        ("kept", kept.to_string()),
        (
            "deleted",
            (if dry_run { would } else { deleted }).to_string(),
        ),
    ])?;
    actions::append_summary(&prune_summary(&found, dry_run, &location.display()))?;
    Ok(Outcome::success(result))
}
