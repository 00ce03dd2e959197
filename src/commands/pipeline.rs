//! `shipgate pipeline`: the whole plan from one config, for a local rehearsal or a single-job
//! deploy. Each stage is the same subcommand a workflow step would run (this executable, as a
//! child process sharing the state dir and the runner's file-command files), so a rehearsal
//! exercises exactly what production runs. The failure path is the workflow's: a failed stage
//! → rollback (per policy; a failed rollout has already rolled itself back) → record (with the
//! failure report) → notify.

use std::time::Instant;

use serde_json::json;

use super::Outcome;
use crate::actions;
use crate::error::{Error, Result};
use crate::exit::Status;
use crate::lease::Held;
use crate::pipeline::report;
use crate::pipeline::stage::{self, Stage};
use crate::process;
use crate::settings::{self, Settings};
use crate::state::pipeline::{PipelineFile, StageRun};
use crate::state::{Header, StateDir};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Stages to run, comma-separated, in pipeline order (input `pipeline-stages`)
    /// [default: validate, every stage with a section in shipgate.yml, record]
    #[arg(long, value_delimiter = ',', value_enum)]
    pub(crate) stages: Option<Vec<Stage>>,
    /// Do not run `shipgate rollback` when a stage after the rollout fails
    /// (input `rollback-on-failure: false`)
    #[arg(long)]
    pub(crate) no_rollback: bool,
    /// When rolling back after a failed stage, also restore the database from this deployment's
    /// backup (input `restore-database`); writes made since the backup are lost
    #[arg(long)]
    pub(crate) restore_database: bool,
}

pub(crate) async fn run(args: &Args, settings: &Settings) -> Result<Outcome> {
    let started = Instant::now();
    let file = settings.file.pipeline.as_ref();
    let from_input = match settings::input("pipeline-stages") {
        Some(text) => Some(
            crate::text::split_list(&text)
                .iter()
                .map(|s| {
                    <Stage as clap::ValueEnum>::from_str(s, true).map_err(|_| {
                        Error::usage(format!(
                            "input `pipeline-stages` names the unknown stage {}; use validate, gate, backup, migrate, rollout, smoke, record, notify",
                            actions::quote(s)
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?,
        ),
        None => None,
    };
    let stages = match args
        .stages
        .clone()
        .or(from_input)
        .or_else(|| file.and_then(|f| f.stages.clone()))
    {
        Some(stages) => stages,
        None => default_stages(settings),
    };
    let mut stages = stages;
    stages.sort();
    stages.dedup();
    let rollback_on_failure = settings.switch(
        "rollback-on-failure",
        false,
        file.and_then(|f| f.rollback_on_failure),
        true,
    )? && !args.no_rollback;
    let restore_database = settings.switch(
        "restore-database",
        args.restore_database,
        file.and_then(|f| f.restore_database),
        false,
    )?;

    let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        process::shutdown_signal().await;
        let _ = cancel_tx.send(true);
    });
    let cancelled = || {
        let mut rx = cancel_rx.clone();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    };

    let mut deployment_id = settings.deployment_id.clone();
    let mut runs: Vec<StageRun> = Vec::new();
    let mut failure: Option<(Stage, i32)> = None;
    // Once a stage took the deployment lease (`backup`, or `rollout`), this process renews it
    // too, so it does not lapse during stages that do not (`migrate`, `smoke`).
    let mut keeper: Option<Held> = None;
    for &stage in stages.iter().filter(|s| !s.is_final()) {
        let outcome = run_stage(
            stage.name(),
            settings,
            deployment_id.as_deref(),
            &[],
            cancelled(),
        )
        .await?;
        let code = outcome
            .exit_code
            .unwrap_or(i32::from(Status::Dependency.code()));
        runs.push(outcome);
        if stage == Stage::Validate && code == 0 {
            deployment_id = latest_id(settings);
        }
        if keeper.is_none() {
            keeper = keep_lease(settings, deployment_id.as_deref()).await;
        }
        if code != 0 {
            failure = Some((stage, code));
            break;
        }
        if *cancel_rx.borrow() {
            failure = Some((stage, i32::from(Status::GateFailed.code())));
            break;
        }
    }

    // The record always runs (it derives the status from the state files), then — when a stage
    // after the rollout said no — the rollback (it reads the record and marks it rolled back),
    // then the notification.
    let cancelled_run = *cancel_rx.borrow();
    let mut exit_code = failure.map_or(0, |(_, code)| code);
    let mut rolled_back = false;
    let Some(id) = deployment_id.clone() else {
        stop_keeping(keeper).await;
        if stages.iter().any(|s| s.is_final()) {
            tracing::warn!(
                "no deployment id (validate did not pass): record and notify were skipped"
            );
        }
        return finish(settings, started, None, failure, false, runs, exit_code);
    };
    // A stage after the rollout said no: the rollback (or restore) follows the record, and the
    // lease is held through it (the record leaves it; this process releases it at the end).
    let rollout_ran = runs.iter().any(|r| r.stage == "rollout");
    let needs_rollback = match failure {
        Some((Stage::Rollout, _)) => restore_database,
        Some((stage, _)) => stage > Stage::Rollout && stage != Stage::Record,
        None => false,
    };
    let rollback_follows = needs_rollback && rollback_on_failure && rollout_ran;
    if stages.contains(&Stage::Record) {
        let mut extra: Vec<String> = Vec::new();
        if let Some((stage, _)) = failure {
            extra.extend(["--failed-stage".to_string(), stage.name().to_string()]);
        }
        if cancelled_run {
            extra.extend(["--status".to_string(), "cancelled".to_string()]);
        }
        if rollback_follows {
            extra.push("--keep-lease".to_string());
        } else {
            // The record releases it: stop renewing first.
            keeper = stop_keeping(keeper).await;
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let outcome = run_stage("record", settings, Some(&id), &extra, cancelled()).await?;
        if failure.is_none() && outcome.exit_code != Some(0) {
            failure = Some((Stage::Record, outcome.exit_code.unwrap_or(1)));
            exit_code = outcome.exit_code.unwrap_or(1);
        }
        runs.push(outcome);
    }
    // Roll the release back. The rollout rolled itself back already when it failed; then only
    // the database (when the policy says so) is left to undo.
    if let Some((stage, _)) = failure
        && needs_rollback
        && rollback_on_failure
        && rollout_ran
    {
        // After a failed rollout the traffic is back already: only the database is left, so
        // restore it directly; after a later stage, the whole rollback (hook, optional restore).
        let reason = format!("pipeline: `{}` failed", stage.name());
        let (command, extra): (&str, Vec<&str>) = if stage == Stage::Rollout {
            tracing::warn!("`rollout` failed and rolled back: restoring the database");
            ("restore", vec!["--yes"])
        } else {
            tracing::warn!("`{}` failed: rolling back", stage.name());
            let mut extra = vec!["--reason", reason.as_str()];
            if restore_database {
                extra.push("--restore-database");
            }
            ("rollback", extra)
        };
        let outcome = run_stage(command, settings, Some(&id), &extra, cancelled()).await?;
        rolled_back = outcome.exit_code == Some(0);
        if !rolled_back {
            exit_code = i32::from(Status::RollbackFailed.code());
            actions::annotate(
                actions::Level::Error,
                Some(&format!("{command} failed")),
                &format!(
                    "`shipgate {command}` after the failed `{}` did not succeed: production may not be back where it was; act now",
                    stage.name()
                ),
            );
        }
        runs.push(outcome);
    }
    // A failed rollout exits 1 once it has rolled itself back (5 when that failed).
    if matches!(failure, Some((Stage::Rollout, 1)))
        && exit_code != i32::from(Status::RollbackFailed.code())
    {
        rolled_back = true;
    }
    // The end of the pipeline: whatever did not release the lease (no record stage, a record
    // that failed, the rollback after it), this does.
    stop_keeping(keeper).await;
    if let Ok(state) = StateDir::at(&settings.state_root, &id) {
        super::lease::release_in(settings, &state).await;
    }
    if stages.contains(&Stage::Notify) {
        let outcome = run_stage("notify", settings, Some(&id), &[], cancelled()).await?;
        runs.push(outcome);
    }
    finish(
        settings,
        started,
        Some(id),
        failure,
        rolled_back,
        runs,
        exit_code,
    )
}

/// Starts renewing the deployment lease deployment `id` holds, if it holds one.
async fn keep_lease(settings: &Settings, id: Option<&str>) -> Option<Held> {
    let state = StateDir::at(&settings.state_root, id?).ok()?;
    let s3 = super::backup::s3_options(&super::backup::StoreArgs::default(), settings).ok()?;
    super::lease::hold::keep_held(&s3, &state).await
}

/// Stops renewing; `None`, for the caller's slot.
async fn stop_keeping(keeper: Option<Held>) -> Option<Held> {
    if let Some(held) = keeper {
        held.stop().await;
    }
    None
}

/// Writes `pipeline.json`, the output and the summary; returns the pipeline's outcome.
fn finish(
    settings: &Settings,
    started: Instant,
    deployment_id: Option<String>,
    failure: Option<(Stage, i32)>,
    rolled_back: bool,
    runs: Vec<StageRun>,
    exit_code: i32,
) -> Result<Outcome> {
    let result = PipelineFile {
        header: Header {
            duration_ms: Some(started.elapsed().as_millis() as u64),
            ..Header::now::<PipelineFile>(if exit_code == 0 { "pass" } else { "fail" })
        },
        deployment_id: deployment_id.clone(),
        failed_stage: failure.map(|(stage, _)| stage.name().to_string()),
        rolled_back,
        stages: runs,
    };
    if let Some(id) = &deployment_id {
        let state = StateDir::create(&settings.state_root, id)?;
        let path = state.save(&result)?;
        tracing::info!("pipeline result in `{}`", path.display());
    }
    actions::set_output("result", &result.header.result)?;
    actions::append_summary(&report::summary(&result))?;
    let json = serde_json::to_value(&result).unwrap_or_else(|_| json!({}));
    Ok(Outcome {
        json,
        // A child that ended outside the table (a panic, a signal) is a failed dependency.
        status: Status::from_code(exit_code).unwrap_or(Status::Dependency),
        text: None,
    })
}

async fn run_stage(
    name: &str,
    settings: &Settings,
    deployment_id: Option<&str>,
    extra: &[&str],
    cancel: impl std::future::Future<Output = ()>,
) -> Result<StageRun> {
    let mut command = vec![name];
    command.extend_from_slice(extra);
    let argv = settings.shipgate_argv(deployment_id, &command)?;
    stage::run(name, argv, cancel).await
}

/// Validate, every stage `shipgate.yml` configures, and the record.
fn default_stages(settings: &Settings) -> Vec<Stage> {
    let file = &settings.file;
    let mut stages = vec![Stage::Validate];
    let configured = [
        (Stage::Gate, file.gate.is_some()),
        (Stage::Backup, file.backup.is_some()),
        (Stage::Migrate, file.migrate.is_some()),
        (Stage::Rollout, file.rollout.is_some()),
        (Stage::Smoke, file.smoke.is_some()),
        (Stage::Notify, file.notify.is_some()),
    ];
    stages.extend(configured.iter().filter(|(_, on)| *on).map(|(s, _)| *s));
    stages.push(Stage::Record);
    stages
}

fn latest_id(settings: &Settings) -> Option<String> {
    std::fs::read_to_string(settings.state_root.join("latest"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}
