//! `shipgate rollback` (seed 004 "Rollback Procedure"): inside the rollback window recorded by
//! `record`, runs the rollback hook, optionally restores the database from the deployment's backup
//! (through `shipgate restore`), verifies health, marks the record and the GitHub deployment as
//! rolled back, and writes an incident stub. After the deadline it refuses unless `--force`.
//!
//! The hook is `rollout`'s rollback hook (`src/hooks.rs`: a command or a webhook, timeout per
//! attempt, retries), configured by the same inputs and `shipgate.yml` keys, so the automatic
//! rollback and the manual one run the same thing: `rollback-hook` / `rollback-hook-url`, else
//! the stage hook `hook` / `hook-url` at weight 0, exactly as `rollout` falls back. In
//! `shipgate.yml` the `rollback:` section's hook keys win key by key over the `rollout:`
//! section's, so a file that configures `rollout` configures this command too.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::json;

use super::record::{self, Record, RecordRollback};
use super::{Outcome, set_outputs};
use crate::actions::{self, Table};
use crate::artifacts::{self, Artifact};
use crate::error::{Error, Kind, Result};
use crate::hooks::{self, Context, Hook};
use crate::process::{LogFile, Shutdown, Spec};
use crate::rollback::config::FileConfig;
use crate::rollback::{health, report, steps, window};
use crate::settings::{self, Settings};
use crate::state::backup::BackupFile;
use crate::state::rollback::{MarkedDeployment, RollbackFile, Step};
use crate::state::{Header, StateDir};
use crate::util::HumanDuration;

const DEFAULT_RESTORE_TIMEOUT: Duration = Duration::from_secs(60 * 60);
const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The deployment record (input `record`) [default: the state dir's
    /// `deployment-record-<id>.json`]
    #[arg(long, value_name = "FILE")]
    pub(crate) record: Option<PathBuf>,
    /// Roll back even after the rollback deadline (input `force`)
    #[arg(long)]
    pub(crate) force: bool,
    /// Why, for the record, the GitHub deployment and the incident stub (input `reason`)
    #[arg(long, value_name = "TEXT")]
    pub(crate) reason: Option<String>,
    /// The rollback hook, the one `rollout` runs: a command run without a shell, with
    /// SHIPGATE_EVENT=rollback, SHIPGATE_STAGE=rollback, SHIPGATE_WEIGHT=0, SHIPGATE_VERSION,
    /// SHIPGATE_PREVIOUS_VERSION, SHIPGATE_DEPLOYMENT_ID, SHIPGATE_ENVIRONMENT, SHIPGATE_REASON
    /// (input `rollback-hook`; webhook: `rollback-hook-url` input or SHIPGATE_ROLLBACK_HOOK_URL)
    /// [default: `rollback-hook` in shipgate.yml's `rollback:`, else `rollout:` section; else the
    /// stage hook (input `hook`/`hook-url`, `rollout.hook`)]
    #[arg(long, value_name = "COMMAND")]
    pub(crate) rollback_hook: Option<String>,
    /// Run the hook command with `sh -c` (input `hook-shell`)
    #[arg(long)]
    pub(crate) hook_shell: bool,
    /// Time limit of one hook attempt (input `hook-timeout`) [default: 2m]
    #[arg(long, value_name = "DURATION")]
    pub(crate) hook_timeout: Option<HumanDuration>,
    /// Attempts after the first when the hook fails (input `hook-retries`) [default: 2]
    #[arg(long, value_name = "N")]
    pub(crate) hook_retries: Option<u32>,
    /// Also restore the database from the deployment's backup (input `restore-database`); writes
    /// made since the backup are lost
    #[arg(long)]
    pub(crate) restore_database: bool,
    /// Restore with this script (`sh -c`, SHIPGATE_BACKUP_* in its environment) instead of
    /// `shipgate restore --location <the backup's location> --yes` (input `restore-command`)
    #[arg(long, value_name = "SCRIPT")]
    pub(crate) restore_command: Option<String>,
    /// Health endpoint to verify after the rollback; repeat for several (input `health-urls`,
    /// one per line or comma-separated)
    #[arg(long = "health-url", value_name = "URL")]
    pub(crate) health_urls: Vec<String>,
    /// How long health may take to come back (input `health-timeout`) [default: 5m]
    #[arg(long, value_name = "DURATION")]
    pub(crate) health_timeout: Option<String>,
}

struct Options {
    record: Option<PathBuf>,
    force: bool,
    reason: String,
    /// `rollback-hook`, else the stage hook (as `rollout` falls back).
    hook: Option<Hook>,
    /// The hook is the stage hook: no rollback hook is configured.
    stage_hook_reused: bool,
    restore_database: bool,
    restore_command: Option<String>,
    health_urls: Vec<String>,
    health_timeout: Duration,
}

fn duration(input: &str, raw: Option<String>, default: Duration) -> Result<Duration> {
    match raw {
        Some(text) => {
            crate::util::parse_duration(&text).map_err(|e| Error::usage(format!("`{input}`: {e}")))
        }
        None => Ok(default),
    }
}

impl Options {
    fn resolve(args: &Args, settings: &Settings) -> Result<Options> {
        let default = FileConfig::default();
        let file = settings.file.rollback.as_ref().unwrap_or(&default);
        let own = hooks::FileKeys {
            hook: None,
            rollback_hook: file.rollback_hook.as_ref(),
            shell: file.hook_shell,
            timeout: file.hook_timeout,
            retries: file.hook_retries,
        };
        let rollout = settings
            .file
            .rollout
            .as_ref()
            .map(crate::rollout::config::FileConfig::hook_keys)
            .unwrap_or_default();
        let configured = settings.hooks(
            &hooks::Flags {
                hook: None,
                rollback_hook: args.rollback_hook.as_deref(),
                shell: args.hook_shell,
                timeout: args.hook_timeout,
                retries: args.hook_retries,
            },
            own.or(rollout),
        )?;
        let (hook, stage_hook_reused) = match (configured.rollback, configured.stage) {
            (Some(hook), _) => (Some(hook), false),
            (None, Some(stage)) => (Some(stage.as_rollback()), true),
            (None, None) => (None, false),
        };
        if let Some(hook) = &hook {
            hook.check().map_err(Error::usage)?;
        }
        let health_urls = match settings.text("health-urls", None, None) {
            _ if !args.health_urls.is_empty() => args.health_urls.clone(),
            Some(list) => record::split_list(&list),
            None => file.health_urls.clone().unwrap_or_default(),
        };
        for url in &health_urls {
            record::check_http_url("health-urls", url)?;
        }
        let restore_database =
            settings.switch("restore-database", args.restore_database, None, false)?;
        let health_timeout = duration(
            "health-timeout",
            settings.text(
                "health-timeout",
                args.health_timeout.clone(),
                file.health_timeout.as_ref(),
            ),
            DEFAULT_HEALTH_TIMEOUT,
        )?;
        Ok(Options {
            record: settings
                .text(
                    "record",
                    args.record.as_ref().map(|p| p.display().to_string()),
                    None,
                )
                .map(PathBuf::from),
            // `--force` is a decision for one run: never a standing setting in the file.
            force: settings.switch("force", args.force, None, false)?,
            reason: settings
                .text("reason", args.reason.clone(), None)
                .map(|r| actions::one_line(&r))
                .unwrap_or_else(|| "no reason given".to_string()),
            hook,
            stage_hook_reused,
            restore_database,
            restore_command: settings.text(
                "restore-command",
                args.restore_command.clone(),
                file.restore_command.as_ref(),
            ),
            health_urls,
            health_timeout,
        })
    }
}

pub(crate) async fn run(args: &Args, settings: &Settings) -> Result<Outcome> {
    let started = Instant::now();
    let options = Options::resolve(args, settings)?;
    let (state, mut record, record_path) = open(settings, options.record.as_deref())?;
    let id = record.deployment_id.clone();
    let mut result = RollbackFile {
        header: Header {
            duration_ms: Some(0),
            ..Header::now::<RollbackFile>("fail")
        },
        deployment_id: id.clone(),
        version: record.version.clone(),
        previous_version: record.previous_version.clone(),
        reason: options.reason.clone(),
        rollback_deadline: record.rollback_deadline.clone(),
        forced: false,
        refused: false,
        already_rolled_back: false,
        steps: Vec::new(),
        hook: None,
        stage_hook_reused: options.stage_hook_reused,
        database_restored: None,
        health: Vec::new(),
        github_deployment: None,
        incident: None,
        record: Some(record_path.display().to_string()),
        artifacts: None,
        error: None,
    };

    if record.status == "rolled_back" {
        tracing::info!(
            "deployment `{id}` is already rolled back (see `{}`); nothing to do",
            record_path.display()
        );
        result.header.result = "pass".to_string();
        result.already_rolled_back = true;
        return finish(&state, result, started, &record, None);
    }

    // The window.
    match window::closed_since(&record.rollback_deadline, jiff::Timestamp::now()) {
        Ok(Some(closed)) => {
            let ago = crate::util::format_duration(closed);
            if !options.force {
                result.refused = true;
                let message = format!(
                    "the rollback window of deployment `{id}` closed at {} ({ago} ago, {} minutes after completion); pass `--force` (input `force: true`) to roll back anyway, or redeploy the previous version{}",
                    record.rollback_deadline,
                    record.rollback_window_minutes,
                    record
                        .previous_version
                        .as_ref()
                        .map(|v| format!(" (`{v}`) by workflow_dispatch"))
                        .unwrap_or_default()
                );
                result.error = Some(message.clone());
                finish(&state, result, started, &record, None)?;
                return Err(Error::gate(message));
            }
            result.forced = true;
            actions::annotate(
                actions::Level::Warning,
                Some("shipgate rollback"),
                &format!(
                    "rolling back deployment `{id}` {ago} after its deadline ({}) because `--force` was given",
                    record.rollback_deadline
                ),
            );
        }
        Ok(None) => {}
        Err(e) if !options.force => return Err(e),
        Err(_) => result.forced = true,
    }

    let backup = if options.restore_database {
        Some(backup_of(&state, &record)?)
    } else {
        None
    };
    if options.hook.is_none() && backup.is_none() {
        return Err(Error::usage(
            "nothing to roll back with: set the rollback hook (input `rollback-hook`, or `rollback-hook-url` for a webhook; `--rollback-hook`; or `rollback-hook` in the `rollback:` or `rollout:` section of shipgate.yml — the stage hook `hook` serves too, as in `rollout`) and/or `--restore-database`",
        ));
    }
    tracing::info!(
        "rolling back deployment `{id}` ({}{}): {}",
        actions::quote(&record.version),
        record
            .previous_version
            .as_ref()
            .map(|v| format!(" → `{v}`"))
            .unwrap_or_default(),
        options.reason
    );

    let mut log = LogFile::append(&state.path(&format!("rollback-logs-{id}.log")))?;
    // A cancelled run stops its hook and restore (and is reported as a failed rollback).
    let shutdown = Shutdown::listen();
    let context = Context {
        event: "rollback",
        stage: "rollback".to_string(),
        weight: 0,
        version: record.version.clone(),
        deployment_id: id.clone(),
        previous_version: record.previous_version.clone(),
        environment: record.environment.clone(),
        failed_stage: None,
        reason: Some(options.reason.clone()),
    };

    // 1. The hook.
    if let Some(hook) = &options.hook {
        let _group = actions::group("Rollback hook");
        let run = steps::run_hook(
            hook,
            options.stage_hook_reused,
            &context,
            &mut log,
            &shutdown,
        )
        .await?;
        let (ok, cancelled) = (run.ok, run.cancelled);
        result.steps.push(Step {
            name: "hook".to_string(),
            command: hook.display(),
            ok,
            outcome: run.describe(),
            duration_ms: run.duration_ms,
        });
        result.hook = Some(run);
        if !ok {
            let what = match shutdown.received() {
                Some(signal) if cancelled => format!("the rollback hook was stopped by {signal}"),
                _ => "the rollback hook failed".to_string(),
            };
            return fail(state, result, started, &record, &what);
        }
    }

    // 2. The database.
    if let Some(backup) = &backup {
        let _group = actions::group(&format!("Restore database backup `{}`", backup.backup_id));
        let spec = restore_spec(settings, &state, &options, backup, &context)?;
        let step = steps::run_step("restore", &spec, &mut log, &shutdown).await?;
        let ok = step.ok;
        result.steps.push(step);
        result.database_restored = Some(ok);
        if !ok {
            return fail(
                state,
                result,
                started,
                &record,
                &format!(
                    "restoring the database from backup `{}` failed",
                    backup.backup_id
                ),
            );
        }
    }

    // 3. Health.
    if options.health_urls.is_empty() {
        actions::annotate(
            actions::Level::Warning,
            Some("shipgate rollback"),
            "health was not verified after the rollback: no `health-urls` configured; check the services by hand",
        );
    } else {
        let _group = actions::group("Verify health");
        result.health =
            health::verify_health(&options.health_urls, options.health_timeout, &mut log).await;
        if result.health.iter().any(|h| h.state != "healthy") {
            return fail(
                state,
                result,
                started,
                &record,
                "the services are not healthy after the rollback",
            );
        }
    }

    // 4. Mark the record and the GitHub deployment.
    let rolled_back_at = crate::util::now_rfc3339();
    record.status = "rolled_back".to_string();
    record.rollback_available = false;
    record.rollback = Some(RecordRollback {
        timestamp: rolled_back_at,
        by: settings::env("GITHUB_TRIGGERING_ACTOR")
            .or_else(|| settings::env("GITHUB_ACTOR"))
            .or_else(|| settings::env("USER"))
            .unwrap_or_else(|| "unknown".into()),
        reason: options.reason.clone(),
        forced: result.forced,
        steps: result.steps.clone(),
        database_restored: result.database_restored,
        health: result.health.clone(),
        run_url: record::log_url(),
    });
    let written = state.write_json(&record::record_file(&id), &record)?;
    result.record = Some(written.display().to_string());
    if let Some(deployment) = &record.github_deployment {
        result.github_deployment = Some(
            mark_github(
                settings,
                deployment.id,
                &options.reason,
                record.environment_url.as_deref(),
            )
            .await,
        );
    }

    // 5. The incident stub, and both files as artifacts of this run.
    let incident_path = state.path(&format!("incident-{id}.md"));
    crate::util::write_atomic(
        &incident_path,
        crate::secret::redact(&incident(&record, &result)).as_bytes(),
    )
    .map_err(|e| Error::usage(format!("cannot write `{}`: {e}", incident_path.display())))?;
    result.incident = Some(incident_path.display().to_string());
    let list = vec![
        Artifact {
            name: format!("incident-{id}"),
            files: vec![
                (incident_path.clone(), format!("incident-{id}.md")),
                (log.path().to_path_buf(), format!("rollback-logs-{id}.log")),
            ],
        },
        Artifact {
            name: format!("deployment-record-{id}-rolled-back"),
            files: vec![(written.clone(), record::record_file(&id))],
        },
    ];
    let publication = artifacts::publish(&state.path("artifacts"), &list, None).await;
    for failure in publication.failures() {
        actions::annotate(
            actions::Level::Warning,
            Some("shipgate rollback"),
            &format!(
                "artifact `{}` was not uploaded: {}; its files are in `{}`",
                failure.name,
                failure.error.as_deref().unwrap_or("unknown error"),
                failure.dir
            ),
        );
    }
    result.artifacts = Some(publication);
    result.header.result = "pass".to_string();
    tracing::info!(
        "deployment `{id}` rolled back; incident stub `{}`",
        incident_path.display()
    );
    finish(&state, result, started, &record, Some(&incident_path))
}

/// The record and its state dir: from `--record` (its deployment id) or the state dir.
fn open(
    settings: &Settings,
    path: Option<&std::path::Path>,
) -> Result<(StateDir, Record, PathBuf)> {
    match path {
        Some(path) => {
            let text = crate::inputs::read_text_file(path).map_err(|e| {
                Error::usage(format!(
                    "cannot read the deployment record `{}`: {e}",
                    path.display()
                ))
            })?;
            /// Only the id, read before the whole record to find its state dir.
            #[derive(Deserialize)]
            struct Id {
                deployment_id: String,
            }
            let id = serde_json::from_str::<Id>(&text)
                .ok()
                .map(|r| r.deployment_id)
                .ok_or_else(|| {
                    Error::usage(format!(
                        "`{}` is not a deployment record (no `deployment_id`)",
                        path.display()
                    ))
                })?;
            if let Some(given) = &settings.deployment_id
                && given != &id
            {
                return Err(Error::usage(format!(
                    "the record `{}` is of deployment `{id}`, not `{given}`; pass the matching record or deployment id",
                    path.display()
                )));
            }
            let state = StateDir::create(&settings.state_root, &id)?;
            let (record, path) = record::load(&state, Some(path))?;
            Ok((state, record, path))
        }
        None => {
            let state = StateDir::existing(settings)?;
            let (record, path) = record::load(&state, None)?;
            Ok((state, record, path))
        }
    }
}

/// The backup to restore: the record's, else `backup.json`'s.
fn backup_of(state: &StateDir, record: &Record) -> Result<record::Backup> {
    if let Some(backup) = &record.database_backup {
        return Ok(backup.clone());
    }
    let from_state = state
        .load::<BackupFile>()?
        .as_ref()
        .and_then(record::Backup::of);
    from_state.ok_or_else(|| {
        Error::usage(format!(
            "`--restore-database` was given but deployment `{}` has no database backup (none in the record, no `backup.json`); roll back without it or restore from your own recovery point",
            record.deployment_id
        ))
    })
}

/// The restore: the user's script, or this very executable's `restore --location <location> --yes`,
/// run as a plain CLI child (no runner files, so its outputs and annotations do not mix with
/// ours; its output is streamed, redacted, into this step's log). Its environment is the hook's
/// (`SHIPGATE_*` of the rollback) plus `SHIPGATE_BACKUP_ID`, `SHIPGATE_BACKUP_LOCATION` and
/// `SHIPGATE_BACKUP_SHA256`.
fn restore_spec(
    settings: &Settings,
    state: &StateDir,
    options: &Options,
    backup: &record::Backup,
    context: &Context,
) -> Result<Spec> {
    let mut spec = match &options.restore_command {
        Some(script) => Spec::shell("restore", script),
        None => Spec::new(
            "restore",
            settings.shipgate_argv(
                Some(state.id()),
                &["restore", "--location", &backup.location, "--yes"],
            )?,
        )
        .shipgate_child(),
    };
    for var in [
        "GITHUB_OUTPUT",
        "GITHUB_ENV",
        "GITHUB_STEP_SUMMARY",
        "GITHUB_STATE",
        "GITHUB_PATH",
        "GITHUB_ACTIONS",
    ] {
        spec = spec.env_remove(var);
    }
    for (key, value) in context.env() {
        spec = spec.env(key, value);
    }
    spec = spec
        .env("SHIPGATE_BACKUP_ID", backup.backup_id.clone())
        .env("SHIPGATE_BACKUP_LOCATION", backup.location.clone());
    if let Some(sha) = &backup.sha256 {
        spec = spec.env("SHIPGATE_BACKUP_SHA256", sha.clone());
    }
    Ok(spec.timeout(Some(DEFAULT_RESTORE_TIMEOUT)))
}

async fn mark_github(
    settings: &Settings,
    id: u64,
    reason: &str,
    environment_url: Option<&str>,
) -> MarkedDeployment {
    let outcome = async {
        let github = settings.github("marking the GitHub deployment")?;
        record::post_status(
            &github,
            id,
            "inactive",
            &format!("rolled back by shipgate: {reason}"),
            environment_url,
        )
        .await
    }
    .await;
    match outcome {
        Ok(()) => MarkedDeployment {
            id,
            state: Some("inactive".to_string()),
            error: None,
        },
        Err(e) => {
            actions::annotate(
                actions::Level::Warning,
                Some("shipgate rollback"),
                &format!(
                    "production is rolled back, but GitHub deployment {id} could not be marked inactive: {e}"
                ),
            );
            MarkedDeployment {
                id,
                state: None,
                error: Some(e.to_string()),
            }
        }
    }
}

fn fail(
    state: StateDir,
    mut result: RollbackFile,
    started: Instant,
    record: &Record,
    what: &str,
) -> Result<Outcome> {
    let message = format!(
        "{what}; deployment `{}` is NOT rolled back cleanly: production may be in between versions — act now (log: `rollback-logs-{}.log` in the state dir)",
        record.deployment_id, record.deployment_id
    );
    result.error = Some(message.clone());
    finish(&state, result, started, record, None)?;
    Err(Error::new(Kind::RollbackFailed, message))
}

fn finish(
    state: &StateDir,
    mut result: RollbackFile,
    started: Instant,
    record: &Record,
    incident: Option<&std::path::Path>,
) -> Result<Outcome> {
    result.header.duration_ms = Some(started.elapsed().as_millis() as u64);
    state.save(&result)?;
    set_outputs(&[
        ("result", result.header.result.clone()),
        ("status", record.status.clone()),
        (
            "incident-path",
            incident
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        ),
    ])?;
    actions::append_summary(&report::summary(&result, &record.status))?;
    let json = serde_json::to_value(&result).unwrap_or_else(|_| json!({}));
    Ok(Outcome::success(json))
}

/// The incident stub: the facts shipgate knows, and the sections a person completes.
fn incident(record: &Record, result: &RollbackFile) -> String {
    let id = &record.deployment_id;
    let mut out = format!("# Incident: rollback of deployment `{id}`\n\n");
    let mut table = Table::new(&["", ""]);
    table.row(&["Deployment ID", &format!("`{id}`")]);
    table.row(&["Version rolled back", &format!("`{}`", record.version)]);
    table.row(&[
        "Back to",
        &record
            .previous_version
            .as_ref()
            .map(|v| format!("`{v}`"))
            .unwrap_or_else(|| "the previous version (not recorded)".into()),
    ]);
    table.row(&["Environment", &format!("`{}`", record.environment)]);
    table.row(&[
        "Deployed (completed)",
        &format!("`{}`", record.completed_at),
    ]);
    if let Some(rollback) = &record.rollback {
        table.row(&[
            "Rolled back",
            &format!("`{}` by `{}`", rollback.timestamp, rollback.by),
        ]);
    }
    table.row(&[
        "Rollback deadline",
        &format!(
            "`{}`{}",
            record.rollback_deadline,
            if result.forced {
                " (passed: forced)"
            } else {
                ""
            }
        ),
    ]);
    table.row(&["Reason", &result.reason]);
    table.row(&[
        "Database restored",
        &match (result.database_restored, &record.database_backup) {
            (Some(true), Some(b)) => format!("yes, from `{}`", b.backup_id),
            (Some(true), None) => "yes".into(),
            (Some(false), _) => "FAILED".into(),
            (None, _) => "no".into(),
        },
    ]);
    table.row(&[
        "Health after rollback",
        &if result.health.is_empty() {
            "not verified (no health URLs)".to_string()
        } else {
            result
                .health
                .iter()
                .map(|h| format!("{}: {}", h.url, h.state))
                .collect::<Vec<_>>()
                .join("; ")
        },
    ]);
    if let Some(url) = record::log_url() {
        table.row(&["Rollback run", &url]);
    }
    out.push_str(&table.render());
    out.push_str("\n## Timeline\n\n");
    for stage in &record.pipeline {
        if let Some(at) = &stage.timestamp {
            out.push_str(&format!("- `{at}` {}: {}\n", stage.stage, stage.result));
        }
    }
    if let Some(rollback) = &record.rollback {
        out.push_str(&format!("- `{}` rollback: done\n", rollback.timestamp));
    }
    out.push_str("\n## Impact\n\n_Who and what was affected, and for how long._\n");
    out.push_str("\n## Root cause\n\n_What went wrong, and why checks did not catch it._\n");
    out.push_str("\n## Follow-ups\n\n- [ ] _Fix_\n- [ ] _A check that would have caught it_\n");
    out
}
