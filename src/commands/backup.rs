//! `shipgate backup` (seed 004 §3 "Database Backup"): `pg_dump` streamed through gzip and
//! SHA-256 to `s3://bucket/prefix/backup-<deployment-id>.sql.gz` (or `file:///dir/…`), with no
//! temporary file and bounded memory; read back and verified; published with a metadata
//! sidecar written last; never overwritten. `shipgate backup prune` applies retention.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use serde_json::json;
use tokio::sync::mpsc;

use super::{Outcome, set_outputs};
use crate::actions::{self, Table};
use crate::backup::archive::{self, Progress, Source};
pub(crate) use crate::backup::config::FileConfig;
use crate::backup::restore::manual_restore;
use crate::backup::sidecar::{DatabaseIdentity, Sidecar};
use crate::error::{Error, Result, ResultExt};
use crate::postgres::{self, Database};
use crate::process::{self, LogFile, SharedLog, Shutdown};
use crate::settings::{self, Settings};
use crate::state::backup::{BackupFile, BackupOutcome, DumpFormat, Failed, Taken, Verification};
use crate::state::{Header, StateDir};
use crate::storage::lease::{self, Lease, LostWatch};
use crate::storage::{Checksum, Location, PendingUpload, S3Options, Sse, Storage, Upload};

/// Sidecars are small; anything bigger at that name is not one.
pub(crate) const SIDECAR_LIMIT: usize = 1024 * 1024;
/// How long a failed run keeps trying to abort its multipart upload while S3 is unreachable.
const ABORT_PATIENCE: Duration = Duration::from_secs(30);
/// How often progress is reported while dumping.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// Compressed parts queued between the compressor and the uploader.
const PART_QUEUE: usize = 1;
/// Capacity asked for pg_dump's output pipe.
const PIPE_SIZE: i32 = 1024 * 1024;
const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(60);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
const DEFAULT_LEVEL: u32 = 1;

#[derive(Debug, Default, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct Args {
    #[command(subcommand)]
    pub(crate) action: Option<Action>,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    /// pg_dump format: `plain` (SQL; `gunzip | psql` restores it) or `custom` (restored with
    /// pg_restore; stored as `.dump.gz`) (input `dump-format`) [default: plain]
    #[arg(long, value_name = "FORMAT")]
    pub(crate) dump_format: Option<DumpFormat>,
    /// gzip level, 0 (none) to 9 (smallest, slowest) (input `compression-level`) [default: 1]
    #[arg(long, value_name = "0-9")]
    pub(crate) compression_level: Option<u32>,
    /// After uploading: `sha256` (read the object back, check its SHA-256, decompress it and
    /// read the whole dump), `restore` (also restore it into a scratch database and compare
    /// per-table row counts with the source) or `none` (input `verify`) [default: sha256]
    #[arg(long, value_name = "MODE")]
    pub(crate) verify: Option<VerifyMode>,
    /// How long pg_dump waits for a table lock before failing (input `lock-wait-timeout`)
    /// [default: 60s]
    #[arg(long, value_name = "DURATION")]
    pub(crate) lock_wait_timeout: Option<String>,
    /// Deadline for the whole backup, verification included (input `backup-timeout`)
    /// [default: 6h]
    #[arg(long, value_name = "DURATION")]
    pub(crate) timeout: Option<String>,
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
    /// Keep every backup younger than this many days (input `keep-days`)
    #[arg(long, value_name = "N")]
    pub(crate) keep_days: Option<u64>,
    /// Keep the newest M complete backups (input `keep-last`)
    #[arg(long, value_name = "M")]
    pub(crate) keep_last: Option<u64>,
    /// Show what would be deleted, delete nothing (input `dry-run`)
    #[arg(long)]
    pub(crate) dry_run: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum VerifyMode {
    Sha256,
    Restore,
    None,
}

impl std::str::FromStr for VerifyMode {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "sha256" | "true" => Ok(VerifyMode::Sha256),
            "restore" => Ok(VerifyMode::Restore),
            "none" | "false" => Ok(VerifyMode::None),
            other => Err(format!(
                "`{other}` is not a verification mode; use `sha256`, `restore` or `none`"
            )),
        }
    }
}

impl VerifyMode {
    fn name(self) -> &'static str {
        match self {
            VerifyMode::Sha256 => "sha256",
            VerifyMode::Restore => "restore",
            VerifyMode::None => "none",
        }
    }
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
fn s3_options(args: &StoreArgs, settings: &Settings) -> Result<S3Options> {
    let file = file_config(settings);
    let endpoint_url = settings.text(
        "s3-endpoint-url",
        args.endpoint_url.clone(),
        file.s3_endpoint_url.as_ref(),
    );
    if let Some(url) = &endpoint_url {
        let ok = url::Url::parse(url)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
        if !ok {
            return Err(Error::usage(format!(
                "S3 endpoint {} is not an `http://` or `https://` URL",
                actions::quote(&crate::secret::redact_url(url))
            )));
        }
    }
    let region = settings.text("s3-region", args.region.clone(), file.s3_region.as_ref());
    let path_style = settings.value("s3-path-style", args.path_style, file.s3_path_style)?;
    let checksum = settings
        .value::<Checksum>(
            "s3-checksum",
            parse_opt(args.checksum.as_deref(), "--checksum")?,
            parse_opt(file.s3_checksum.as_deref(), "backup.s3-checksum")?,
        )?
        .unwrap_or(Checksum::Sha256);
    let sse_mode = settings.text("s3-sse", args.sse.clone(), file.s3_sse.as_ref());
    let kms_key = settings.text(
        "s3-sse-kms-key-id",
        args.sse_kms_key_id.clone(),
        file.s3_sse_kms_key_id.as_ref(),
    );
    let sse = match (
        sse_mode.as_deref().map(str::to_ascii_lowercase).as_deref(),
        kms_key,
    ) {
        (None | Some("none"), None) => None,
        (Some("aes256"), None) => Some(Sse::Aes256),
        (Some("aws:kms") | None, key) => Some(Sse::Kms(key)),
        (Some("aes256") | Some("none"), Some(_)) => {
            return Err(Error::usage(
                "`s3-sse-kms-key-id` needs `s3-sse: aws:kms`; remove the key id or switch to SSE-KMS",
            ));
        }
        (Some(other), _) => {
            return Err(Error::usage(format!(
                "server-side encryption {} is not known; use `AES256` (SSE-S3) or `aws:kms` (SSE-KMS)",
                actions::quote(other)
            )));
        }
    };
    Ok(S3Options {
        endpoint_url,
        region,
        path_style,
        sse,
        checksum,
    })
}

/// Opens `location` with the S3 settings of `args` and `settings` (see [`s3_options`]); the
/// only way `backup`, `backup prune` and `restore` reach a destination.
pub(crate) async fn open_storage(
    location: &Location,
    args: &StoreArgs,
    settings: &Settings,
) -> Result<Storage> {
    let s3 = s3_options(args, settings)?;
    if s3.sse.is_some() && matches!(location, Location::File { .. }) {
        tracing::warn!("`s3-sse` has no effect on a `file://` destination");
    }
    Ok(Storage::open(location, &s3).await)
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

fn duration_setting(
    settings: &Settings,
    input: &str,
    flag: Option<&String>,
    file: Option<&String>,
    default: Duration,
) -> Result<Duration> {
    match settings.text(input, flag.cloned(), file) {
        Some(text) => {
            crate::util::parse_duration(&text).map_err(|e| Error::usage(format!("`{input}`: {e}")))
        }
        None => Ok(default),
    }
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

/// Refuses a sidecar whose names do not follow shipgate's layout (it could point anywhere).
pub(crate) fn check_sidecar(sidecar: &Sidecar, url: &str) -> Result<()> {
    let id_ok = sidecar.backup_id.strip_prefix("backup-").is_some_and(|id| {
        id == sidecar.deployment_id && crate::state::check_deployment_id(id).is_ok()
    });
    let object_ok =
        sidecar.object == format!("{}{}", sidecar.backup_id, sidecar.format.extension());
    let sha_ok =
        sidecar.sha256.len() == 64 && sidecar.sha256.chars().all(|c| c.is_ascii_hexdigit());
    if id_ok && object_ok && sha_ok {
        Ok(())
    } else {
        Err(Error::gate(format!(
            "`{url}` does not describe a shipgate backup (backup id {}, object {}); refusing to use it",
            actions::quote(&sidecar.backup_id),
            actions::quote(&sidecar.object)
        )))
    }
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

/// Resolved options.
struct Options {
    location: Location,
    store: StoreArgs,
    format: DumpFormat,
    level: u32,
    verify: VerifyMode,
    lock_wait: Duration,
    timeout: Duration,
    bin_dir: Option<PathBuf>,
}

impl Options {
    fn resolve(args: &Args, settings: &Settings) -> Result<Options> {
        let file = file_config(settings);
        let location = destination(&args.store, settings)?.ok_or_else(|| {
            Error::usage(
                "no backup destination: pass `--destination s3://bucket/prefix` (input `destination`, or `backup.destination` in shipgate.yml)",
            )
        })?;
        // Checked before anything runs, so a bad S3 setting is a usage error up front.
        s3_options(&args.store, settings)?;
        let format = settings
            .value(
                "dump-format",
                args.dump_format,
                parse_opt(file.dump_format.as_deref(), "backup.dump-format")?,
            )?
            .unwrap_or(DumpFormat::Plain);
        let level = settings
            .value(
                "compression-level",
                args.compression_level,
                file.compression_level,
            )?
            .unwrap_or(DEFAULT_LEVEL);
        if level > 9 {
            return Err(Error::usage(format!(
                "compression level `{level}` is out of range; use 0 (none) to 9 (smallest)"
            )));
        }
        let verify = settings
            .value(
                "verify",
                args.verify,
                parse_opt(file.verify.as_deref(), "backup.verify")?,
            )?
            .unwrap_or(VerifyMode::Sha256);
        let lock_wait = duration_setting(
            settings,
            "lock-wait-timeout",
            args.lock_wait_timeout.as_ref(),
            file.lock_wait_timeout.as_ref(),
            DEFAULT_LOCK_WAIT,
        )?;
        if lock_wait < Duration::from_millis(1) {
            return Err(Error::usage(
                "`lock-wait-timeout` must be at least 1ms; pg_dump would otherwise wait forever",
            ));
        }
        let timeout = duration_setting(
            settings,
            "backup-timeout",
            args.timeout.as_ref(),
            file.timeout.as_ref(),
            DEFAULT_TIMEOUT,
        )?;
        let bin_dir = pg_bin_dir(settings, args.pg_bin_dir.as_ref());
        Ok(Options {
            location,
            store: args.store.clone(),
            format,
            level,
            verify,
            lock_wait,
            timeout,
            bin_dir,
        })
    }
}

/// A phase of the run, for messages about where a failure, signal or deadline struck.
struct Guard<'a> {
    shutdown: &'a mut Shutdown,
    deadline: tokio::time::Instant,
    timeout: Duration,
    /// Fires when this run's marker could not be renewed (see `storage::lease`).
    lease: Option<LostWatch>,
}

impl Guard<'_> {
    /// Runs `work` unless a signal arrives or the deadline passes first.
    async fn run<T>(
        &mut self,
        what: &str,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        tokio::select! {
            result = work => result,
            signal = self.shutdown.recv() => Err(Error::timeout(format!(
                "cancelled by {signal} while {what}"
            ))),
            _ = tokio::time::sleep_until(self.deadline) => Err(Error::timeout(format!(
                "the backup did not finish within {} (`backup-timeout`) while {what}",
                crate::util::format_duration(self.timeout)
            ))),
            reason = lease_lost(&mut self.lease) => Err(Error::dependency(format!(
                "{reason} (while {what})"
            ))),
        }
    }
}

async fn lease_lost(lease: &mut Option<LostWatch>) -> String {
    match lease {
        Some(watch) => watch.lost().await,
        None => std::future::pending().await,
    }
}

/// What is known so far, for the failure record.
#[derive(Default)]
struct Known {
    backup_id: Option<String>,
    location: Option<String>,
    published: bool,
    /// What a failed run could not clean up (kept in its run marker for later runs).
    left: Option<String>,
}

pub(crate) async fn run(args: &Args, settings: &Settings) -> Result<Outcome> {
    match &args.action {
        Some(Action::Prune(prune_args)) => return prune(prune_args, settings).await,
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
    let options = Options::resolve(args, settings)?;
    let state = StateDir::open(settings)?;
    let log_path = state.path(&format!("backup-logs-{}.log", state.id()));
    let log: SharedLog = Arc::new(std::sync::Mutex::new(LogFile::append(&log_path)?));
    log_line(
        &log,
        &format!("shipgate backup, deployment `{}`", state.id()),
    );
    let mut known = Known::default();
    let mut guard = Guard {
        shutdown: &mut shutdown,
        deadline: tokio::time::Instant::now() + options.timeout,
        timeout: options.timeout,
        lease: None,
    };
    let result = backup(
        &options, settings, &state, &log, &mut guard, &mut known, started, &ran_at,
    )
    .await;
    match result {
        Ok(outcome) => Ok(outcome),
        Err(error) => {
            let reason = error.to_string();
            log_line(&log, &format!("failed: {reason}"));
            let mut header = Header::now::<BackupFile>("fail");
            header.timestamp = ran_at.clone();
            header.duration_ms = Some(started.elapsed().as_millis() as u64);
            state.save(&BackupFile {
                header,
                ran_at: ran_at.clone(),
                deployment_id: state.id().to_string(),
                log_file: log_path.display().to_string(),
                outcome: BackupOutcome::Failed(Failed {
                    backup_id: known.backup_id.clone(),
                    location: known.location.clone(),
                    published: known.published,
                    reason,
                    exit_code: error.kind().exit_code(),
                }),
            })?;
            Err(error)
        }
    }
}

fn log_line(log: &SharedLog, text: &str) {
    if let Ok(mut log) = log.lock() {
        log.line(&format!("[{}] {text}", crate::util::now_rfc3339()));
    }
}

/// Logs to stderr and the log file.
fn say(log: &SharedLog, text: &str) {
    tracing::info!("{text}");
    log_line(log, text);
}

#[allow(clippy::too_many_arguments)]
async fn backup(
    options: &Options,
    settings: &Settings,
    state: &StateDir,
    log: &SharedLog,
    guard: &mut Guard<'_>,
    known: &mut Known,
    started: Instant,
    ran_at: &str,
) -> Result<Outcome> {
    let id = state.id().to_string();
    let backup_id = format!("backup-{id}");
    let sidecar_name = format!("{backup_id}.json");
    let object = format!("{backup_id}{}", options.format.extension());
    // Named in `pg_stat_activity`, so a DBA (or a test) can tell this run's sessions apart.
    let db = source_database(options.bin_dir.clone())?
        .with_application_name(&format!("shipgate backup {id}"));
    let storage = open_storage(&options.location, &options.store, settings).await?;
    known.backup_id = Some(backup_id.clone());
    known.location = Some(storage.url(&object));

    // An earlier run with this deployment id: reuse its backup, never overwrite it.
    let existing = {
        let _group = actions::group(&format!("Look for `{backup_id}`"));
        read_sidecar(&storage, &sidecar_name, guard).await?
    };
    if let Some(sidecar) = existing {
        return reuse(
            options, settings, state, log, guard, known, &storage, sidecar, &db, started, ran_at,
        )
        .await;
    }
    // This run's marker, so that a concurrent run never mistakes this one's upload for a
    // leftover (and this one never aborts a live run's upload): see `storage::lease`.
    let mut lease = Lease::new(&storage, &backup_id);
    let mut begin = tokio::spawn(lease.begin());
    let found = guard
        .run("writing this run's marker", async {
            (&mut begin)
                .await
                .map_err(|e| Error::dependency(format!("writing this run's marker failed: {e}")))?
                .context("cannot write this run's marker next to the backup")
        })
        .await;
    let found = match found {
        Ok(found) => found,
        Err(error) => {
            // Also when cancelled halfway: let the write land, then remove the marker (left
            // behind, it would hold off a re-run until it expires).
            if !begin.is_finished() {
                let _ = tokio::time::timeout(lease.timing().hold, &mut begin).await;
            }
            lease.release(None).await;
            return Err(error);
        }
    };
    let result = take(
        options, settings, state, log, guard, known, started, ran_at, &storage, &db, &mut lease,
        &found,
    )
    .await;
    guard.lease = None;
    let left = if result.is_err() {
        known.left.clone()
    } else {
        None
    };
    lease.release(left).await;
    result
}

/// The sidecar at `name`, checked; `None` when there is none.
async fn read_sidecar(
    storage: &Storage,
    name: &str,
    guard: &mut Guard<'_>,
) -> Result<Option<Sidecar>> {
    let bytes = guard
        .run("looking for an earlier backup", async {
            storage
                .read_small(name, SIDECAR_LIMIT)
                .await
                .context("cannot check the destination for an earlier backup")
        })
        .await?;
    let Some(bytes) = bytes else {
        return Ok(None);
    };
    let sidecar: Sidecar = serde_json::from_slice(&bytes).map_err(|e| {
        Error::gate(format!(
            "`{}` exists but is not a shipgate backup sidecar ({e}); it is left untouched: move it away or use another deployment id",
            storage.url(name)
        ))
    })?;
    check_sidecar(&sidecar, &storage.url(name))?;
    Ok(Some(sidecar))
}

/// Refuses to run beside another live run of the same backup, clears what dead runs left
/// (unfinished uploads, a dump without its sidecar), then takes the backup.
#[allow(clippy::too_many_arguments)]
async fn take(
    options: &Options,
    settings: &Settings,
    state: &StateDir,
    log: &SharedLog,
    guard: &mut Guard<'_>,
    known: &mut Known,
    started: Instant,
    ran_at: &str,
    storage: &Storage,
    db: &Database,
    lease: &mut Lease,
    found: &lease::Found,
) -> Result<Outcome> {
    let id = state.id().to_string();
    let backup_id = format!("backup-{id}");
    let sidecar_name = format!("{backup_id}.json");
    let object = format!("{backup_id}{}", options.format.extension());

    // Another live run? Whose are the unfinished uploads?
    let uploads = guard
        .run("looking for unfinished uploads", async {
            storage.list_uploads(&object).await.context(format!(
                "cannot list the unfinished uploads of `{}`",
                storage.url(&object)
            ))
        })
        .await?;
    let assessment = lease::assess(
        &found.mine,
        &found.others,
        &uploads,
        found.now,
        lease.timing(),
        options.timeout,
    );
    if let Some(live) = &assessment.live {
        return Err(conflict(
            storage,
            &object,
            &backup_id,
            live,
            &assessment.live_uploads,
            lease,
        ));
    }
    if let Some(upload) = assessment.unknown.first() {
        return Err(Error::usage(format!(
            "`{}` has an unfinished upload `{}` initiated at {} that no shipgate run marker claims and that is younger than the backup timeout ({}): a run of an older shipgate, or another tool, may still be writing it. Nothing was changed. If nothing is, remove it ({}) and re-run; once it is older than the backup timeout, a re-run aborts it by itself",
            storage.url(&object),
            upload.id,
            upload
                .initiated
                .map(lease::time)
                .unwrap_or_else(|| "an unknown time".into()),
            crate::util::format_duration(options.timeout),
            storage.abort_hint(&object, &upload.id)
        )));
    }
    // A run that finished between the first look and now.
    if let Some(sidecar) = read_sidecar(storage, &sidecar_name, guard).await? {
        return reuse(
            options, settings, state, log, guard, known, storage, sidecar, db, started, ran_at,
        )
        .await;
    }
    lease.start();
    guard.lease = Some(lease.watch());

    // A dump without its sidecar was never a backup (its run failed after uploading it, e.g.
    // S3 went away during verification): replace it.
    for name in [
        object.clone(),
        format!("{backup_id}{}", other_extension(options.format)),
    ] {
        let info = guard
            .run("looking for an earlier backup", async {
                storage
                    .head(&name)
                    .await
                    .context("cannot check the destination for an earlier backup")
            })
            .await?;
        let Some(info) = info else {
            continue;
        };
        if info.modified.is_some_and(|at| at > found.now) {
            return Err(Error::usage(format!(
                "`{}` appeared at {}, after this run started and without its sidecar: another run is publishing it right now. Nothing was changed; wait for that run, then re-run (it reuses that backup)",
                storage.url(&name),
                info.modified.map(lease::time).unwrap_or_default()
            )));
        }
        say(
            log,
            &format!(
                "`{}` ({}, stored {}) has no sidecar `{sidecar_name}`: an earlier attempt uploaded it and then failed before publishing it, so it was never a backup; deleting it and taking the backup again",
                storage.url(&name),
                archive::bytes(info.size),
                info.modified
                    .map(lease::time)
                    .unwrap_or_else(|| "at an unknown time".into())
            ),
        );
        guard
            .run("deleting a dump without its sidecar", async {
                storage
                    .delete_patiently(&name, ABORT_PATIENCE)
                    .await
                    .context(format!(
                        "cannot delete `{}`, an unpublished dump without its sidecar; delete it by hand and re-run",
                        storage.url(&name)
                    ))
            })
            .await?;
    }
    let mut all_aborted = true;
    for stale in &assessment.stale {
        say(
            log,
            &format!(
                "aborting the unfinished upload `{}` of `{}`{}: {}",
                stale.upload.id,
                storage.url(&object),
                stale
                    .upload
                    .initiated
                    .map(|at| format!(" (initiated at {})", lease::time(at)))
                    .unwrap_or_default(),
                stale.reason
            ),
        );
        if let Err(e) = storage.abort_upload(&object, &stale.upload.id).await {
            all_aborted = false;
            tracing::warn!(
                "cannot abort `{}` ({e}); continuing: it does not stand in the way of this run",
                stale.upload.id
            );
        }
    }
    if all_aborted {
        for name in &assessment.leftovers {
            if let Err(e) = storage.delete(name).await {
                tracing::debug!("cannot delete the old run marker `{name}`: {e}");
            }
        }
    }

    // Versions: pg_dump must not be older than the server.
    let group = actions::group("Check PostgreSQL versions");
    let pg_dump = db.program("pg_dump");
    let (client_version, client_major) = guard
        .run("checking pg_dump's version", async {
            postgres::client_version(&pg_dump)
                .await
                .map_err(Error::from)
        })
        .await?;
    let (server_version, server_major) = guard
        .run("connecting to the database", async {
            db.server_version()
                .await
                .context(format!("cannot connect to the database `{}`", db.display()))
        })
        .await?;
    if client_major < server_major {
        return Err(Error::usage(format!(
            "pg_dump {client_version} cannot dump PostgreSQL {server_version} (`{}`): pg_dump must be at least the server's major version; install the PostgreSQL {server_major} client tools or point `pg-bin-dir` at them",
            db.name()
        )));
    }
    let identity = guard
        .run("reading the database's identity", async {
            Ok(database_identity(db, log).await)
        })
        .await?;
    say(
        log,
        &format!(
            "database {} on PostgreSQL {server_version}, pg_dump {client_version}",
            identity.describe()
        ),
    );
    drop(group);

    // With `verify: restore`, the row counts must come from the dump's own snapshot.
    let mut snapshot = None;
    let mut source_counts = None;
    if options.verify == VerifyMode::Restore {
        let (session, name, counts) = guard
            .run("counting rows in the source", export_snapshot(db))
            .await?;
        say(
            log,
            &format!(
                "counted the rows of {} tables in snapshot `{name}`",
                counts.len()
            ),
        );
        snapshot = Some((session, name));
        source_counts = Some(counts);
    }

    // Dump → gzip → SHA-256 → upload.
    let group = actions::group(&format!(
        "Dump `{}` to `{}`",
        db.name(),
        storage.url(&object)
    ));
    let dump_started = crate::util::now_rfc3339();
    let mut argv = match options.format {
        DumpFormat::Plain => vec![
            "--format=plain".to_string(),
            "--clean".to_string(),
            "--if-exists".to_string(),
        ],
        DumpFormat::Custom => vec!["--format=custom".to_string(), "--compress=0".to_string()],
    };
    argv.push("--no-password".to_string());
    argv.push(format!(
        "--lock-wait-timeout={}",
        options.lock_wait.as_millis()
    ));
    if let Some((_, name)) = &snapshot {
        argv.push(format!("--snapshot={name}"));
    }
    argv.push(format!("--dbname={}", db.conninfo()));
    let spec = db.spec("pg_dump", "pg_dump", argv);
    log_line(log, &format!("$ {}", spec.display()));
    let mut upload = guard
        .run("starting the upload", async {
            storage
                .begin(&object, "application/gzip")
                .await
                .map_err(Error::from)
        })
        .await?;
    let progress = Arc::new(Progress::new());
    lease.note_upload(upload.id());
    let dumped = dump(&spec, options, &mut upload, &progress, guard, log, lease).await;
    let (compressed, finished) = match dumped {
        Ok(compressed) => {
            let finished = guard
                .run("publishing the backup", async {
                    upload.finish().await.map_err(Error::from)
                })
                .await;
            match finished {
                Ok(finished) => (compressed, finished),
                Err(error) => {
                    let error = abort(&mut upload, log, known, error).await;
                    return Err(error);
                }
            }
        }
        Err(error) => return Err(abort(&mut upload, log, known, error).await),
    };
    if let Some((session, _)) = snapshot.take() {
        session.close().await;
    }
    known.published = true;
    progress
        .uploaded
        .store(finished.size, std::sync::atomic::Ordering::Relaxed);
    say(log, &progress.line());
    if finished.size != compressed.compressed {
        withdraw(storage, &object, log, known).await;
        known.published = false;
        return Err(Error::dependency(format!(
            "`{}` holds {} bytes but {} were compressed; the destination lost data, so the object was withdrawn",
            storage.url(&object),
            finished.size,
            compressed.compressed
        )));
    }
    say(
        log,
        &format!(
            "uploaded `{}`: {} ({} dumped), {} part(s), SHA-256 {}",
            storage.url(&object),
            archive::bytes(finished.size),
            archive::bytes(compressed.dumped),
            finished.parts,
            compressed.sha256
        ),
    );
    drop(group);

    // Read it back before anyone relies on it; an unverifiable object is withdrawn.
    let verification = if options.verify == VerifyMode::None {
        tracing::warn!("verification is off (`verify: none`): the backup was not read back");
        None
    } else {
        let expected = Expected {
            object: object.clone(),
            sha256: compressed.sha256.clone(),
            size: finished.size,
            format: options.format,
        };
        let check = guard
            .run(
                "verifying the backup",
                verify(
                    storage,
                    &expected,
                    options.verify,
                    db,
                    source_counts.as_ref(),
                    log,
                ),
            )
            .await;
        match check {
            Ok(verification) => Some(verification),
            Err(error) => {
                withdraw(storage, &object, log, known).await;
                known.published = false;
                return Err(error);
            }
        }
    };

    let sidecar = Sidecar {
        schema_version: 1,
        backup_id: backup_id.clone(),
        deployment_id: id.clone(),
        location: storage.url(&object),
        sidecar_location: storage.url(&sidecar_name),
        object: object.clone(),
        timestamp: dump_started,
        completed_at: crate::util::now_rfc3339(),
        size: finished.size,
        uncompressed_size: compressed.dumped,
        sha256: compressed.sha256.clone(),
        compression: "gzip".into(),
        compression_level: options.level,
        format: options.format,
        database: db.name().to_string(),
        database_identity: Some(identity),
        server_version: server_version.clone(),
        client_version: client_version.clone(),
        duration_ms: started.elapsed().as_millis() as u64,
        parts: finished.parts,
        verified: verification.is_some(),
        verification: verification.clone(),
        row_counts: source_counts,
        environment: settings.environment.clone(),
        repository: settings.repository.clone(),
        created_by: format!("shipgate {}", env!("CARGO_PKG_VERSION")),
    };
    let body = serde_json::to_vec_pretty(&sidecar)
        .map_err(|e| Error::usage(format!("cannot serialize the sidecar: {e}")))?;
    let body = crate::secret::redact(&String::from_utf8_lossy(&body)).into_bytes();
    let written = guard
        .run("writing the sidecar", async {
            storage
                .put_new(&sidecar_name, body, "application/json")
                .await
                .map_err(Error::from)
        })
        .await;
    if let Err(error) = written {
        withdraw(storage, &object, log, known).await;
        known.published = false;
        return Err(error.context(format!(
            "the backup was uploaded but its sidecar `{}` could not be written, so it was withdrawn",
            storage.url(&sidecar_name)
        )));
    }
    say(
        log,
        &format!("wrote the sidecar `{}`", storage.url(&sidecar_name)),
    );
    finish(state, log, settings, &sidecar, false, started, ran_at)
}

fn other_extension(format: DumpFormat) -> &'static str {
    match format {
        DumpFormat::Plain => DumpFormat::Custom.extension(),
        DumpFormat::Custom => DumpFormat::Plain.extension(),
    }
}

/// What identifies `db` in a sidecar: host, port and name from `database-url`, and the server's
/// `system_identifier` (left out, with a warning, when the role may not read it).
async fn database_identity(db: &Database, log: &SharedLog) -> DatabaseIdentity {
    let url = url::Url::parse(db.conninfo()).ok();
    let query = |key: &str| {
        url.as_ref().and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.into_owned())
        })
    };
    let host = url
        .as_ref()
        .and_then(|u| u.host_str())
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .or_else(|| query("host"))
        .unwrap_or_default();
    let port = url
        .as_ref()
        .and_then(|u| u.port())
        .or_else(|| query("port").and_then(|p| p.parse().ok()))
        .unwrap_or(5432);
    let system_identifier = match db
        .scalar("SELECT system_identifier FROM pg_control_system()")
        .await
    {
        Ok(id) => id
            .map(|id| id.trim().to_string())
            .filter(|id| !id.is_empty()),
        Err(e) => {
            let message = format!(
                "cannot read the server's system identifier ({e}); the backup records the database by host, port and name only"
            );
            tracing::warn!("{message}");
            log_line(log, &message);
            None
        }
    };
    DatabaseIdentity {
        host,
        port,
        database: db.name().to_string(),
        system_identifier,
    }
}

/// Refuses to reuse `sidecar`'s backup for another database than `db` (a usage error naming
/// both). A sidecar written before shipgate recorded the identity is compared by database name
/// only, with a warning.
async fn check_same_database(
    sidecar: &Sidecar,
    db: &Database,
    guard: &mut Guard<'_>,
    log: &SharedLog,
) -> Result<()> {
    guard
        .run("connecting to the database", async {
            db.server_version().await.context(format!(
                "cannot connect to the database `{}` to check that the earlier backup is of it",
                db.display()
            ))
        })
        .await?;
    let current = guard
        .run("reading the database's identity", async {
            Ok(database_identity(db, log).await)
        })
        .await?;
    let recorded = sidecar.database_identity.clone();
    let verdict = match &recorded {
        Some(recorded) => recorded.same_as(&current),
        None if sidecar.database == current.database => Ok(Some(format!(
            "the sidecar `{}` was written by an older shipgate and records only the database name `{}`, which matches; the server could not be compared, so make sure `database-url` names the database that was backed up",
            sidecar.sidecar_location, sidecar.database
        ))),
        None => Err("the database names differ".to_string()),
    };
    match verdict {
        Ok(None) => Ok(()),
        Ok(Some(warning)) => {
            actions::annotate(actions::Level::Warning, Some("shipgate backup"), &warning);
            log_line(log, &warning);
            Ok(())
        }
        Err(why) => {
            let was = match &recorded {
                Some(recorded) => recorded.describe(),
                None => format!(
                    "`{}` (an older sidecar: no server recorded)",
                    sidecar.database
                ),
            };
            Err(Error::usage(format!(
                "this deployment's backup `{}` is of the database {was}, but `database-url` names {} ({why}); a re-run with the same deployment id must back up the same database: fix `database-url`, or use another deployment id for the other database. The earlier backup is left untouched",
                sidecar.location,
                current.describe()
            )))
        }
    }
}

/// Another run of the same backup is alive: what it is doing, and what to do.
fn conflict(
    storage: &Storage,
    object: &str,
    backup_id: &str,
    live: &lease::Marker,
    uploads: &[PendingUpload],
    lease: &Lease,
) -> Error {
    let doing = match (uploads.first(), &live.body.upload_id) {
        (Some(upload), _) => format!(
            "; its upload `{}` of `{}` was initiated at {}",
            upload.id,
            storage.url(object),
            upload
                .initiated
                .map(lease::time)
                .unwrap_or_else(|| "an unknown time".into())
        ),
        (None, Some(id)) => format!(
            "; its upload `{id}` of `{}` is complete and being verified",
            storage.url(object)
        ),
        (None, None) => "; it has not started uploading yet".to_string(),
    };
    Error::usage(format!(
        "another `shipgate backup` of `{backup_id}` is running ({}; its marker `{}` was renewed at {}){doing}. Refusing to start a second one, which could only abort its upload or race it to publish; nothing was changed. Wait for it to finish (a re-run afterwards reuses its backup), or, if that run is dead, re-run once its marker is older than {}. A `concurrency:` group on the deployment workflow prevents this",
        live.describe(),
        storage.url(&live.name),
        live.modified
            .map(lease::time)
            .unwrap_or_else(|| "an unknown time".into()),
        crate::util::format_duration(lease.timing().lease)
    ))
}

/// Aborts the upload after `error`, and says what could not be cleaned up.
async fn abort(upload: &mut Upload, log: &SharedLog, known: &mut Known, error: Error) -> Error {
    say(log, "aborting the upload: nothing will be published");
    match upload.abort(ABORT_PATIENCE).await {
        Ok(()) => Error::new(error.kind(), format!("{error}; nothing was published")),
        Err(left) => {
            actions::annotate(actions::Level::Warning, Some("shipgate backup"), &left);
            log_line(log, &left);
            known.left = Some(left.clone());
            Error::new(
                error.kind(),
                format!("{error}; nothing was published, but {left}"),
            )
        }
    }
}

/// Deletes an object this run uploaded but could not vouch for (not a backup anyone relies on:
/// it has no sidecar), trying again for a while when the destination is unreachable.
async fn withdraw(storage: &Storage, object: &str, log: &SharedLog, known: &mut Known) {
    say(
        log,
        &format!(
            "withdrawing `{}`: it failed verification or could not be completed",
            storage.url(object)
        ),
    );
    match storage.delete_patiently(object, ABORT_PATIENCE).await {
        Ok(()) => say(log, &format!("withdrew `{}`", storage.url(object))),
        Err(e) => {
            let message = format!(
                "`{}` failed verification or could not be completed and could not be deleted ({e}); it has no sidecar, so it is not a backup: the next `shipgate backup` with this deployment id replaces it, or delete it by hand",
                storage.url(object)
            );
            actions::annotate(actions::Level::Warning, Some("shipgate backup"), &message);
            log_line(log, &message);
            known.left = Some(message);
        }
    }
}

/// Runs pg_dump into the upload; on success every byte has been handed to the uploader (but
/// the upload is not finished). On failure pg_dump is stopped; the caller aborts the upload.
async fn dump(
    spec: &process::Spec,
    options: &Options,
    upload: &mut Upload,
    progress: &Arc<Progress>,
    guard: &mut Guard<'_>,
    log: &SharedLog,
    lease: &Lease,
) -> Result<archive::Compressed> {
    let mut child = spec.spawn_piped()?;
    let pid = child.id();
    let stdout = child
        .stdout
        .take()
        .and_then(|s| s.into_owned_fd().ok())
        .map(std::fs::File::from)
        .ok_or_else(|| Error::dependency("pg_dump has no output pipe"))?;
    // A bigger pipe means fewer wake-ups of pg_dump and of the compressor (Linux only; the
    // default 64 KiB works too).
    let _ = nix::fcntl::fcntl(&stdout, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
    let stderr = child
        .stderr
        .take()
        .map(|s| process::tail_lines(s, "pg_dump", Some(log.clone()), true));
    let (tx, mut rx) = mpsc::channel::<Bytes>(PART_QUEUE);
    let level = options.level;
    let thread_progress = progress.clone();
    let compressor =
        tokio::task::spawn_blocking(move || archive::compress(stdout, level, tx, &thread_progress));

    let work = async {
        pump(upload, &mut rx, progress, log, lease).await?;
        let compressed = compressor
            .await
            .map_err(|e| Error::dependency(format!("the compressor failed: {e}")))?
            .map_err(|e| Error::dependency(format!("cannot read pg_dump's output: {e}")))?;
        let status = child
            .wait()
            .await
            .map_err(|e| Error::dependency(format!("cannot wait for pg_dump: {e}")))?;
        let tail = match stderr {
            Some(handle) => handle.await.unwrap_or_default(),
            None => Vec::new(),
        };
        if !status.success() {
            use std::os::unix::process::ExitStatusExt as _;
            let how = match (status.code(), status.signal()) {
                (Some(code), _) => format!("exit code {code}"),
                (None, Some(signal)) => format!("killed by signal {signal}"),
                _ => "no exit status".into(),
            };
            let last = last_error(&tail)
                .map(|l| format!(": {l}"))
                .unwrap_or_default();
            return Err(Error::dependency(format!("pg_dump failed ({how}){last}")));
        }
        archive::looks_complete(options.format, &compressed.head, &compressed.tail)
            .map_err(|reason| Error::dependency(format!("pg_dump exited cleanly but {reason}")))?;
        Ok(compressed)
    };
    let result = guard.run("dumping and uploading", work).await;
    drop(rx);
    if result.is_err() {
        process::terminate_group(pid, &mut child).await;
    }
    result
}

/// pg_dump's last error line with the detail lines that follow it (`Query was: …`).
fn last_error(tail: &[String]) -> Option<String> {
    let at = tail
        .iter()
        .rposition(|l| l.contains("error"))
        .or(tail.len().checked_sub(1))?;
    let mut text = tail[at].clone();
    for line in tail[at + 1..].iter().take(3) {
        if let Some(detail) = line.split_once("detail: ").map(|(_, d)| d) {
            text.push_str(&format!(" ({detail})"));
        }
    }
    Some(text)
}

/// Moves compressed parts to the upload until the compressor is done, reporting progress.
async fn pump(
    upload: &mut Upload,
    rx: &mut mpsc::Receiver<Bytes>,
    progress: &Progress,
    log: &SharedLog,
    lease: &Lease,
) -> Result<()> {
    let mut ticker = tokio::time::interval(PROGRESS_EVERY);
    ticker.tick().await;
    loop {
        tokio::select! {
            part = rx.recv() => match part {
                Some(part) => {
                    upload.write_part(part).await?;
                    lease.note_upload(upload.id());
                    progress.uploaded.store(upload.uploaded(), std::sync::atomic::Ordering::Relaxed);
                }
                None => return Ok(()),
            },
            _ = ticker.tick() => {
                progress.uploaded.store(upload.uploaded(), std::sync::atomic::Ordering::Relaxed);
                say(log, &progress.line());
            }
        }
    }
}

/// Opens a repeatable-read transaction, exports its snapshot (for `pg_dump --snapshot`) and
/// counts every table's rows in it.
async fn export_snapshot(
    db: &Database,
) -> Result<(postgres::Session, String, BTreeMap<String, u64>)> {
    let what = || format!("cannot count the rows of `{}`", db.display());
    let mut session = db.session().await.context(what())?;
    let rows = session
        .query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SELECT pg_export_snapshot()")
        .await
        .context(what())?;
    let name = rows
        .first()
        .and_then(|r| r.first())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::dependency(format!("{}: no snapshot was exported", what())))?;
    let counts = session.row_counts().await.context(what())?;
    Ok((session, name, counts))
}

/// What a stored backup must be.
struct Expected {
    object: String,
    sha256: String,
    size: u64,
    format: DumpFormat,
}

/// Reads the backup back: SHA-256 and size, an intact gzip stream, a complete dump read in
/// full (custom archives by `pg_restore`); with `restore`, restored into a scratch database
/// whose row counts must equal `source_counts`.
async fn verify(
    storage: &Storage,
    expected: &Expected,
    mode: VerifyMode,
    db: &Database,
    source_counts: Option<&BTreeMap<String, u64>>,
    log: &SharedLog,
) -> Result<Verification> {
    let _group = actions::group(&format!("Verify `{}`", storage.url(&expected.object)));
    let url = storage.url(&expected.object);
    let progress = Arc::new(Progress::new());
    let source = || async {
        let download = storage
            .get(&expected.object)
            .await
            .context(format!("cannot read `{url}` back"))?
            .ok_or_else(|| {
                Error::gate(format!("`{url}` disappeared before it could be verified"))
            })?;
        Ok::<_, Error>(Source::Download(download))
    };
    let (read, tables) = match mode {
        VerifyMode::Restore => {
            let counts = source_counts.ok_or_else(|| {
                Error::usage("verification by restore needs the source row counts")
            })?;
            let source = source().await?;
            let (read, restored) =
                restore_into_scratch(db, expected.format, source, &progress, log).await?;
            compare_counts(counts, &restored).map_err(|diff| {
                Error::gate(format!(
                    "verification failed: `{url}` restored into a scratch database with different row counts than the source: {diff}"
                ))
            })?;
            (read, Some(restored.len()))
        }
        _ => {
            let source = source().await?;
            let read = match expected.format {
                DumpFormat::Plain => {
                    let (read, _) =
                        archive::unpack(source, Box::new(std::io::sink()), &progress).await;
                    read
                }
                DumpFormat::Custom => {
                    // pg_restore reading the whole archive (`--list` would pass a truncated one).
                    let spec = db.spec(
                        "pg_restore",
                        "pg_restore",
                        vec!["--file=/dev/null".to_string()],
                    );
                    let fed = archive::feed_tool(&spec, source, None, &progress, log).await?;
                    if fed.tool_failed() {
                        return Err(Error::gate(format!(
                            "verification failed: pg_restore could not read `{url}` in full ({})",
                            fed.tool_failure()
                        )));
                    }
                    fed.read
                }
            };
            (read.map_err(|e| unpack_failure(&url, e))?, None)
        }
    };
    if read.sha256 != expected.sha256 || read.size != expected.size {
        return Err(Error::gate(format!(
            "verification failed: `{url}` read back as {} bytes with SHA-256 {}, but {} bytes with SHA-256 {} were uploaded; the stored object is corrupted",
            read.size, read.sha256, expected.size, expected.sha256
        )));
    }
    archive::looks_complete(expected.format, &read.head, &read.tail)
        .map_err(|reason| Error::gate(format!("verification failed: `{url}`: {reason}")))?;
    say(
        log,
        &format!(
            "verified `{url}`: SHA-256 matches, {} decompressed and read in full{}",
            archive::bytes(read.uncompressed),
            match tables {
                Some(n) => format!(
                    ", restored into a scratch database with identical row counts in {n} tables"
                ),
                None => String::new(),
            }
        ),
    );
    Ok(Verification {
        mode: mode.name().to_string(),
        checked_at: crate::util::now_rfc3339(),
        read_bytes: read.uncompressed,
        tables,
    })
}

fn unpack_failure(url: &str, error: archive::UnpackError) -> Error {
    match error {
        archive::UnpackError::Storage(e) => {
            Error::from(e).context(format!("verification could not read `{url}` back"))
        }
        archive::UnpackError::Corrupt(reason) => Error::gate(format!(
            "verification failed: `{url}` is corrupted: {reason}"
        )),
        archive::UnpackError::Sink(reason) => Error::gate(format!(
            "verification failed: `{url}` could not be read in full: {reason}"
        )),
    }
}

/// The tool that restores a dump of `format` into `db` in one transaction.
pub(crate) fn restore_spec(db: &Database, format: DumpFormat) -> process::Spec {
    match format {
        DumpFormat::Plain => db.spec(
            "psql",
            "psql",
            vec![
                "--no-psqlrc".into(),
                "--quiet".into(),
                "--set=ON_ERROR_STOP=1".into(),
                "--single-transaction".into(),
                "--no-password".into(),
                "--file=-".into(),
                format!("--dbname={}", db.conninfo()),
            ],
        ),
        DumpFormat::Custom => db.spec(
            "pg_restore",
            "pg_restore",
            vec![
                "--clean".into(),
                "--if-exists".into(),
                "--single-transaction".into(),
                "--exit-on-error".into(),
                "--no-password".into(),
                format!("--dbname={}", db.conninfo()),
            ],
        ),
    }
}

/// Restores `source` into a new scratch database (on the `verify-database-url` server, else
/// the source's), counts its rows, and drops it whatever happened.
async fn restore_into_scratch(
    db: &Database,
    format: DumpFormat,
    source: Source,
    progress: &Arc<Progress>,
    log: &SharedLog,
) -> Result<(archive::ReadBack, BTreeMap<String, u64>)> {
    let server = match settings::secret("verify-database-url", &[]) {
        Some(url) => {
            Database::from_url("`verify-database-url`", &url)?.with_bin_dir(db.bin_dir().cloned())
        }
        None => db.clone(),
    };
    let name = format!("shipgate_verify_{}", crate::util::random_hex(6));
    server
        .query(&format!(
            "CREATE DATABASE {} TEMPLATE template0",
            postgres::identifier(&name)
        ))
        .await
        .context(format!(
            "cannot create the scratch database `{name}` on `{}` for verification; the role needs CREATEDB, or set `verify-database-url` to a server where it has it",
            server.display()
        ))?;
    say(
        log,
        &format!("restoring into the scratch database `{name}`"),
    );
    let scratch = server.with_database(&name);
    let result = async {
        let fed = archive::feed_tool(&restore_spec(&scratch, format), source, None, progress, log)
            .await?;
        if fed.tool_failed() {
            return Err(Error::gate(format!(
                "verification failed: the backup did not restore into a scratch database ({})",
                fed.tool_failure()
            )));
        }
        let read = fed.read.map_err(|e| unpack_failure("the backup", e))?;
        let counts = scratch
            .row_counts()
            .await
            .context("cannot count the rows of the scratch database")?;
        Ok((read, counts))
    }
    .await;
    let drop_sql = format!(
        "DROP DATABASE IF EXISTS {}{}",
        postgres::identifier(&name),
        if server.server_version_num().await.unwrap_or(0) >= 130_000 {
            " WITH (FORCE)"
        } else {
            ""
        }
    );
    if let Err(e) = server.query(&drop_sql).await {
        let message = format!("cannot drop the scratch database `{name}` ({e}); drop it by hand");
        actions::annotate(actions::Level::Warning, Some("shipgate backup"), &message);
        log_line(log, &message);
    }
    result
}

/// `Ok` when both sides have the same tables with the same counts; else the differences.
pub(crate) fn compare_counts(
    expected: &BTreeMap<String, u64>,
    actual: &BTreeMap<String, u64>,
) -> std::result::Result<(), String> {
    let mut diffs = Vec::new();
    for (table, rows) in expected {
        match actual.get(table) {
            Some(found) if found == rows => {}
            Some(found) => diffs.push(format!("`{table}` has {found} rows, expected {rows}")),
            None => diffs.push(format!("`{table}` is missing")),
        }
    }
    for table in actual.keys().filter(|t| !expected.contains_key(*t)) {
        diffs.push(format!("`{table}` is unexpected"));
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        let shown = diffs.len().min(10);
        let more = if diffs.len() > shown {
            format!(" (and {} more)", diffs.len() - shown)
        } else {
            String::new()
        };
        Err(format!("{}{more}", diffs[..shown].join("; ")))
    }
}

/// A backup with a sidecar already exists for this deployment id: check it and reuse it.
#[allow(clippy::too_many_arguments)]
async fn reuse(
    options: &Options,
    settings: &Settings,
    state: &StateDir,
    log: &SharedLog,
    guard: &mut Guard<'_>,
    known: &mut Known,
    storage: &Storage,
    sidecar: Sidecar,
    db: &Database,
    started: Instant,
    ran_at: &str,
) -> Result<Outcome> {
    known.location = Some(sidecar.location.clone());
    check_same_database(&sidecar, db, guard, log).await?;
    known.published = true;
    say(
        log,
        &format!(
            "`{}` already exists (taken {}): reusing it, not dumping again",
            sidecar.location, sidecar.timestamp
        ),
    );
    let head = guard
        .run("checking the earlier backup", async {
            storage
                .head(&sidecar.object)
                .await
                .context("cannot check the earlier backup")
        })
        .await?;
    match head {
        None => {
            return Err(Error::gate(format!(
                "the sidecar `{}` exists but its dump `{}` does not: the backup of this deployment is broken; investigate, then remove the sidecar or use another deployment id",
                sidecar.sidecar_location, sidecar.location
            )));
        }
        Some(info) if info.size != sidecar.size => {
            return Err(Error::gate(format!(
                "`{}` is {} bytes but its sidecar says {}: the stored backup changed after it was written; investigate before relying on it",
                sidecar.location, info.size, sidecar.size
            )));
        }
        Some(_) => {}
    }
    let mut verified = sidecar.clone();
    if options.verify != VerifyMode::None {
        let expected = Expected {
            object: sidecar.object.clone(),
            sha256: sidecar.sha256.clone(),
            size: sidecar.size,
            format: sidecar.format,
        };
        // Re-verified by reading it back; a restore check needs the original counts.
        let mode = if options.verify == VerifyMode::Restore && sidecar.row_counts.is_some() {
            VerifyMode::Restore
        } else {
            VerifyMode::Sha256
        };
        let verification = guard
            .run(
                "verifying the earlier backup",
                verify(storage, &expected, mode, db, sidecar.row_counts.as_ref(), log),
            )
            .await
            .map_err(|e| {
                e.context(format!(
                    "the earlier backup `{}` of this deployment no longer verifies; it is left untouched",
                    sidecar.location
                ))
            })?;
        verified.verified = true;
        verified.verification = Some(verification);
    }
    finish(state, log, settings, &verified, true, started, ran_at)
}

/// Writes `backup.json`, the outputs and the summary.
fn finish(
    state: &StateDir,
    log: &SharedLog,
    settings: &Settings,
    sidecar: &Sidecar,
    reused: bool,
    started: Instant,
    ran_at: &str,
) -> Result<Outcome> {
    let log_file = state
        .path(&format!("backup-logs-{}.log", state.id()))
        .display()
        .to_string();
    let mut header = Header::now::<BackupFile>("pass");
    header.timestamp = sidecar.timestamp.clone();
    header.duration_ms = Some(started.elapsed().as_millis() as u64);
    let taken = Taken {
        environment: settings.environment.clone(),
        backup_id: sidecar.backup_id.clone(),
        location: sidecar.location.clone(),
        sidecar_location: sidecar.sidecar_location.clone(),
        size: sidecar.size,
        uncompressed_size: sidecar.uncompressed_size,
        sha256: sidecar.sha256.clone(),
        compression: sidecar.compression.clone(),
        compression_level: sidecar.compression_level,
        format: sidecar.format,
        parts: sidecar.parts,
        verified: sidecar.verified,
        verification: sidecar.verification.clone(),
        reused,
        database: sidecar.database.clone(),
        server_version: sidecar.server_version.clone(),
        client_version: sidecar.client_version.clone(),
    };
    let file = BackupFile {
        header,
        ran_at: ran_at.to_string(),
        deployment_id: state.id().to_string(),
        log_file,
        outcome: BackupOutcome::Taken(Box::new(taken.clone())),
    };
    state.save(&file)?;
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
    actions::append_summary(&summary(&file, result))?;
    say(
        log,
        &format!(
            "backup `{}` {} at `{}` ({}, SHA-256 {})",
            result.backup_id,
            if reused { "reused" } else { "stored" },
            result.location,
            archive::bytes(result.size),
            result.sha256
        ),
    );
    let json = serde_json::to_value(&file).unwrap_or_else(|_| json!({}));
    Ok(Outcome::success(json))
}

fn summary(file: &BackupFile, result: &Taken) -> String {
    let mut table = Table::new(&["", ""]);
    table.row(&["Backup id", &format!("`{}`", result.backup_id)]);
    table.row(&["Location", &format!("`{}`", result.location)]);
    table.row(&[
        "Size",
        &format!(
            "{} (gzip level {}; {} dumped, {} format)",
            archive::bytes(result.size),
            result.compression_level,
            archive::bytes(result.uncompressed_size),
            result.format.name()
        ),
    ]);
    table.row(&["SHA-256", &format!("`{}`", result.sha256)]);
    let verified = match &result.verification {
        Some(v) if v.mode == "restore" => format!(
            "✅ read back, SHA-256 matched, restored into a scratch database: {} tables with identical row counts",
            v.tables.unwrap_or(0)
        ),
        Some(v) => format!(
            "✅ read back, SHA-256 matched, {} decompressed and read in full",
            archive::bytes(v.read_bytes)
        ),
        None => "⚠️ not verified (`verify: none`)".to_string(),
    };
    table.row(&["Verified", &verified]);
    table.row(&[
        "Database",
        &format!(
            "`{}` on PostgreSQL {} (pg_dump {})",
            result.database, result.server_version, result.client_version
        ),
    ]);
    table.row(&["Taken", &file.header.timestamp]);
    table.row(&[
        "Reused",
        if result.reused {
            "yes: this deployment's backup already existed, so it was not dumped again"
        } else {
            "no"
        },
    ]);
    format!(
        "### ✅ Database backup `{}`\n\n{}\nRestore with `shipgate restore --location {} --yes`, or by hand:\n\n```sh\n{}```\n",
        result.backup_id,
        table.render(),
        result.location,
        manual_restore(&result.location, result.format, Some(&result.sha256)).unwrap_or_default()
    )
}

// ---------------------------------------------------------------------------------------------
// prune

/// One backup found in the destination.
#[derive(Debug, Clone, Serialize)]
struct Found {
    backup_id: String,
    /// Seconds since the epoch: the sidecar's timestamp, else the object's.
    taken: i64,
    timestamp: String,
    size: u64,
    complete: bool,
    verified: bool,
    #[serde(skip)]
    names: Vec<String>,
    action: String,
    reason: String,
}

async fn prune(args: &PruneArgs, settings: &Settings) -> Result<Outcome> {
    let started = Instant::now();
    let file = file_config(settings);
    let location = destination(&args.store, settings)?.ok_or_else(|| {
        Error::usage(
            "no backup destination to prune: pass `--destination s3://bucket/prefix` (input `destination`)",
        )
    })?;
    let keep_days = settings.value("keep-days", args.keep_days, file.keep_days)?;
    let keep_last = settings.value("keep-last", args.keep_last, file.keep_last)?;
    if keep_days.is_none() && keep_last.is_none() {
        return Err(Error::usage(
            "prune needs a retention rule: pass `--keep-days N` and/or `--keep-last M` (inputs `keep-days`, `keep-last`)",
        ));
    }
    let dry_run = settings.switch("dry-run", args.dry_run, None, false)?;
    let storage = open_storage(&location, &args.store, settings).await?;
    let shutdown = Shutdown::listen();
    let listing = tokio::select! {
        listing = storage.list("backup-") => listing.context(format!("cannot list `{}`", location.display()))?,
        signal = shutdown.recv() => return Err(Error::timeout(format!("cancelled by {signal} while listing backups"))),
    };
    let mut groups: BTreeMap<String, Vec<crate::storage::ObjectInfo>> = BTreeMap::new();
    for object in listing {
        if let Some(stem) = backup_stem(&object.name) {
            groups.entry(stem.to_string()).or_default().push(object);
        }
    }
    let now = jiff::Timestamp::now().as_second();
    let mut found = Vec::new();
    for (stem, objects) in groups {
        let sidecar_name = format!("{stem}.json");
        let has_sidecar = objects.iter().any(|o| o.name == sidecar_name);
        let sidecar: Option<Sidecar> = if has_sidecar {
            storage
                .read_small(&sidecar_name, SIDECAR_LIMIT)
                .await
                .context(format!("cannot read `{}`", storage.url(&sidecar_name)))?
                .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        } else {
            None
        };
        let dump = objects
            .iter()
            .find(|o| o.name != sidecar_name && lease::marker_stem(&o.name).is_none());
        let complete = sidecar
            .as_ref()
            .is_some_and(|s| objects.iter().any(|o| o.name == s.object));
        let taken = sidecar
            .as_ref()
            .and_then(|s| s.timestamp.parse::<jiff::Timestamp>().ok())
            .map(|t| t.as_second())
            .or_else(|| objects.iter().filter_map(|o| o.modified).max())
            .unwrap_or(now);
        found.push(Found {
            backup_id: stem.clone(),
            taken,
            timestamp: jiff::Timestamp::from_second(taken)
                .map(|t| t.to_string())
                .unwrap_or_default(),
            size: dump.map(|d| d.size).unwrap_or(0),
            complete,
            verified: complete && sidecar.as_ref().is_some_and(|s| s.verified),
            names: objects.iter().map(|o| o.name.clone()).collect(),
            action: String::new(),
            reason: String::new(),
        });
    }
    // Newest first.
    found.sort_by(|a, b| b.taken.cmp(&a.taken).then(b.backup_id.cmp(&a.backup_id)));
    let newest_verified = found.iter().position(|f| f.verified);
    let mut complete_seen = 0u64;
    for (index, backup) in found.iter_mut().enumerate() {
        let age_days = (now - backup.taken).max(0) as f64 / 86_400.0;
        let reason = if Some(index) == newest_verified {
            Some("the newest verified backup is always kept".to_string())
        } else if backup.complete && keep_last.is_some_and(|m| complete_seen < m) {
            Some(format!(
                "one of the newest {} complete backups",
                keep_last.unwrap_or(0)
            ))
        } else if keep_days.is_some_and(|d| age_days < d as f64) {
            Some(format!("younger than {} days", keep_days.unwrap_or(0)))
        } else if !backup.complete && age_days < 1.0 {
            Some("incomplete and younger than a day: it may still be uploading".to_string())
        } else {
            None
        };
        if backup.complete {
            complete_seen += 1;
        }
        match reason {
            Some(reason) => {
                backup.action = "keep".into();
                backup.reason = reason;
            }
            None => {
                backup.action = if dry_run { "would delete" } else { "delete" }.into();
                backup.reason = if backup.complete {
                    "outside the retention rules".into()
                } else {
                    "incomplete (no sidecar) and outside the retention rules".into()
                };
            }
        }
    }
    let mut deleted = 0usize;
    for backup in found.iter().filter(|b| b.action == "delete") {
        // The sidecar first: a backup without one is incomplete, never a broken complete one.
        let mut names = backup.names.clone();
        names.sort_by_key(|n| !n.ends_with(".json"));
        for name in names {
            tokio::select! {
                result = storage.delete(&name) => result.context(format!("cannot delete `{}`", storage.url(&name)))?,
                signal = shutdown.recv() => return Err(Error::timeout(format!("cancelled by {signal} while deleting `{}`; {deleted} backup(s) were deleted", storage.url(&name)))),
            }
        }
        tracing::info!("deleted `{}` ({})", backup.backup_id, backup.timestamp);
        deleted += 1;
    }
    let kept = found.iter().filter(|b| b.action == "keep").count();
    let would = found.iter().filter(|b| b.action == "would delete").count();
    tracing::info!(
        "{} backups in `{}`: {kept} kept, {}",
        found.len(),
        location.display(),
        if dry_run {
            format!("{would} would be deleted (dry run)")
        } else {
            format!("{deleted} deleted")
        }
    );
    let result = json!({
        "schema_version": 1,
        "command": "backup-prune",
        "result": "pass",
        "timestamp": crate::util::now_rfc3339(),
        "duration_ms": started.elapsed().as_millis() as u64,
        "destination": location.display(),
        "keep_days": keep_days,
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

/// `backup-<id>` for `backup-<id>.sql.gz`, `.dump.gz`, `.json` and the run markers
/// `.run-<token>` (deleted with the backup they belong to).
fn backup_stem(name: &str) -> Option<&str> {
    [".sql.gz", ".dump.gz", ".json"]
        .iter()
        .find_map(|ext| name.strip_suffix(ext))
        .or_else(|| lease::marker_stem(name))
        .filter(|stem| stem.len() > "backup-".len() && stem.starts_with("backup-"))
}

fn prune_summary(found: &[Found], dry_run: bool, destination: &str) -> String {
    let mut table = Table::new(&["Backup", "Taken", "Size", "State", "Action", "Why"]);
    for backup in found {
        table.row(&[
            format!("`{}`", backup.backup_id),
            backup.timestamp.clone(),
            archive::bytes(backup.size),
            if backup.verified {
                "verified".to_string()
            } else if backup.complete {
                "complete".to_string()
            } else {
                "incomplete".to_string()
            },
            backup.action.clone(),
            backup.reason.clone(),
        ]);
    }
    format!(
        "### 🧹 Backup retention in `{destination}`{}\n\n{}",
        if dry_run { " (dry run)" } else { "" },
        table.render()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems() {
        assert_eq!(backup_stem("backup-1-abc.sql.gz"), Some("backup-1-abc"));
        assert_eq!(backup_stem("backup-1-abc.dump.gz"), Some("backup-1-abc"));
        assert_eq!(backup_stem("backup-1-abc.json"), Some("backup-1-abc"));
        assert_eq!(
            backup_stem("backup-1-abc.run-0123456789abcdef"),
            Some("backup-1-abc")
        );
        assert_eq!(backup_stem("backup-.json"), None);
        assert_eq!(backup_stem("other.json"), None);
        assert_eq!(backup_stem("backup-1.txt"), None);
    }

    #[test]
    fn counts_compare_both_ways() {
        let a: BTreeMap<String, u64> = [("public.a".to_string(), 3), ("public.b".to_string(), 0)]
            .into_iter()
            .collect();
        assert!(compare_counts(&a, &a).is_ok());
        let mut b = a.clone();
        b.insert("public.a".into(), 2);
        b.remove("public.b");
        b.insert("public.c".into(), 1);
        let diff = compare_counts(&a, &b).expect_err("differs");
        assert!(diff.contains("`public.a` has 2 rows, expected 3"), "{diff}");
        assert!(diff.contains("`public.b` is missing"), "{diff}");
        assert!(diff.contains("`public.c` is unexpected"), "{diff}");
    }

    #[test]
    fn verify_modes_parse() {
        assert_eq!("restore".parse::<VerifyMode>(), Ok(VerifyMode::Restore));
        assert_eq!("SHA256".parse::<VerifyMode>(), Ok(VerifyMode::Sha256));
        assert!("maybe".parse::<VerifyMode>().is_err());
    }
}
