//! The steps of `shipgate rollback` that act: the rollback hook and the restore.

use crate::actions;
use crate::error::Result;
use crate::hooks::{self, Context, Hook, HookRun};
use crate::process::{self, LogFile, Shutdown, Spec};
use crate::state::rollback::Step;

/// Runs the rollback hook through `hooks::run` (retries, timeout per attempt, every attempt in
/// the log) and annotates a failure.
pub(crate) async fn run_hook(
    hook: &Hook,
    stage_hook_reused: bool,
    context: &Context,
    log: &mut LogFile,
    shutdown: &Shutdown,
) -> Result<HookRun> {
    if stage_hook_reused {
        tracing::info!(
            "no rollback hook configured: running the stage hook with SHIPGATE_EVENT=rollback and SHIPGATE_WEIGHT=0"
        );
    }
    tracing::info!(
        "running the rollback hook ({}): {} (timeout {} per attempt, {} retries)",
        hook.kind(),
        actions::quote(&hook.display()),
        crate::ui::format_duration(hook.timeout),
        hook.retries
    );
    let http = hooks::http_client(hook.timeout)?;
    let run = hooks::run(hook, context, &http, log, shutdown).await;
    if !run.ok {
        actions::annotate(
            actions::Level::Error,
            Some("shipgate rollback"),
            &format!(
                "the rollback hook `{}` failed: {}",
                hook.display(),
                run.describe()
            ),
        );
    }
    Ok(run)
}

/// Runs one step of the rollback (the restore) with its output in the log, and annotates a
/// failure.
pub(crate) async fn run_step(
    name: &str,
    spec: &Spec,
    log: &mut LogFile,
    shutdown: &Shutdown,
) -> Result<Step> {
    tracing::info!("running the {name}: {}", actions::quote(&spec.display()));
    let finished = process::run_logged(spec, Some(log), shutdown.wait()).await?;
    if !finished.success() {
        actions::annotate(
            actions::Level::Error,
            Some("shipgate rollback"),
            &format!(
                "the {name} `{}` failed: {}{}",
                spec.display(),
                finished.describe(),
                finished
                    .tail
                    .last()
                    .map(|l| format!("; last line: {}", actions::quote(l)))
                    .unwrap_or_default()
            ),
        );
    }
    Ok(Step {
        name: name.to_string(),
        command: spec.display(),
        ok: finished.success(),
        outcome: finished.describe(),
        duration_ms: finished.duration_ms,
    })
}
