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

use super::{Outcome, set_outputs};
use crate::actions;
use crate::error::{Error, Result};
use crate::hooks;
use crate::inputs::check_http_url;
use crate::record::model::{Record, load};
use crate::rollback::config::FileConfig;
use crate::rollback::{report, run as rolling};
use crate::settings::{self, Settings};
use crate::state::StateDir;
use crate::state::rollback::RollbackFile;
use crate::text::split_list;
use crate::util::HumanDuration;

const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Default, clap::Args)]
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
    pub(crate) health_timeout: Option<HumanDuration>,
}

/// The resolved options: the record to roll back and the run's options (`watch` resolves its
/// rollback through here too).
pub(crate) struct Options {
    pub(crate) record: Option<PathBuf>,
    pub(crate) run: rolling::Options,
}

impl Options {
    pub(crate) fn resolve(args: &Args, settings: &Settings) -> Result<Options> {
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
            Some(list) => split_list(&list),
            None => file.health_urls.clone().unwrap_or_default(),
        };
        for url in &health_urls {
            check_http_url("health-urls", url)?;
        }
        let restore_database =
            settings.switch("restore-database", args.restore_database, None, false)?;
        let health_timeout = settings.duration(
            "health-timeout",
            args.health_timeout,
            file.health_timeout,
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
            run: rolling::Options {
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
            },
        })
    }
}

pub(crate) async fn run(args: &Args, settings: &Settings) -> Result<Outcome> {
    let started = Instant::now();
    let options = Options::resolve(args, settings)?;
    let (state, mut record, record_path) = open(settings, options.record.as_deref())?;
    let actor = settings::actor();
    let restore_argv = |id: &str, location: &str| {
        settings.shipgate_argv(Some(id), &["restore", "--location", location, "--yes"])
    };
    let github = || settings.github("marking the GitHub deployment");
    let outside = rolling::Outside {
        restore_argv: &restore_argv,
        github: &github,
        actor,
    };
    let finished = rolling::run(&state, &mut record, &record_path, &options.run, &outside).await?;
    let outcome = finish(
        &state,
        finished.result,
        started,
        &finished.status,
        finished.incident.as_deref(),
    )?;
    match finished.error {
        Some(error) => Err(error),
        None => Ok(outcome),
    }
}

/// The record and its state dir: from `--record` (its deployment id) or the state dir.
pub(crate) fn open(
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
            let (record, path) = load(&state, Some(path))?;
            Ok((state, record, path))
        }
        None => {
            let state = StateDir::existing(settings)?;
            let (record, path) = load(&state, None)?;
            Ok((state, record, path))
        }
    }
}

/// Saves `rollback.json`, sets the outputs and the summary of a rollback.
pub(crate) fn finish(
    state: &StateDir,
    mut result: RollbackFile,
    started: Instant,
    status: &str,
    incident: Option<&std::path::Path>,
) -> Result<Outcome> {
    result.header.duration_ms = Some(started.elapsed().as_millis() as u64);
    state.save(&result)?;
    set_outputs(&[
        ("result", result.header.result.clone()),
        ("status", status.to_string()),
        (
            "incident-path",
            incident
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        ),
    ])?;
    actions::append_summary(&report::summary(&result, status))?;
    let json = serde_json::to_value(&result).unwrap_or_else(|_| json!({}));
    Ok(Outcome::success(json))
}
