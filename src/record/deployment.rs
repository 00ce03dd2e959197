//! The record mirrored as a GitHub deployment: found again on a re-run (never a second one),
//! else created for the exact commit with the record's summary as payload; its statuses.

use super::assemble::{Options, StateFiles, required_contexts};
use super::model::{GitHubDeployment, Record};
use crate::text::truncate;
use serde_json::{Value, json};

use crate::actions::{self};
use crate::error::{Error, Result};
use crate::github::{GitHub, GitHubError, deployments};

/// Pages of this commit's deployments to the environment searched for this run's (100 a page).
const MAX_EXISTING_PAGES: usize = 10;

/// Finds this deployment's GitHub deployment (a re-run must not create a second one), else
/// creates it for the exact commit, then marks it `in_progress`.
pub(crate) async fn create_deployment(
    github: &GitHub,
    record: &Record,
    options: &Options,
    files: &StateFiles,
) -> Result<GitHubDeployment> {
    let sha = record.git_sha.clone().ok_or_else(|| {
        Error::usage(
            "a GitHub deployment needs the exact commit: run `shipgate validate` first (it records the SHA) or set GITHUB_SHA",
        )
    })?;
    if sha.len() != 40 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::usage(format!(
            "`{}` is not a full commit SHA; GitHub deployments are created for exact commits, never branches",
            actions::one_line(&sha)
        )));
    }
    let (required, reason) = required_contexts(&options.required_contexts, files);
    let existing = deployments::list(
        github,
        &record.environment,
        Some(&sha),
        100,
        MAX_EXISTING_PAGES,
    )
    .await
    .map_err(|e| Error::from(e).context("cannot list the commit's GitHub deployments"))?;
    let found = existing.iter().find(|d| {
        d.payload().get("deployment_id").and_then(Value::as_str)
            == Some(record.deployment_id.as_str())
    });
    let id = match found {
        Some(d) => {
            tracing::info!(
                "GitHub deployment {} already exists for `{}`: reusing it",
                d.id,
                record.deployment_id
            );
            d.id
        }
        None => {
            tracing::info!(
                "creating a GitHub deployment of {} to `{}` for commit {sha} (required contexts: {reason})",
                actions::quote(&record.version),
                record.environment
            );
            let description = truncate(
                &format!("shipgate {} ({})", record.version, record.deployment_id),
                140,
            );
            let new = deployments::NewDeployment {
                sha: &sha,
                environment: &record.environment,
                description: &description,
                required_contexts: &required,
                payload: payload(record),
            };
            match deployments::create(github, &new).await {
                Ok(id) => id,
                Err(GitHubError::Status {
                    status: 409,
                    message,
                    ..
                }) => {
                    return Err(Error::gate(format!(
                        "GitHub refused the deployment because required commit statuses are not green ({}): {message}; fix the checks, or set `required-contexts` (`none` to skip GitHub's check, the gate already ran)",
                        required.join(", ")
                    )));
                }
                Err(e) => {
                    return Err(Error::from(e).context("cannot create the GitHub deployment"));
                }
            }
        }
    };
    post_status(
        github,
        id,
        "in_progress",
        &format!("recording deployment {}", record.deployment_id),
        options.environment_url.as_deref(),
    )
    .await?;
    Ok(GitHubDeployment {
        id,
        environment: record.environment.clone(),
        required_contexts: required,
        required_contexts_reason: reason,
    })
}

/// The deployment payload: a summary of the record (what `validate` reads back as `version`).
pub(crate) fn payload(record: &Record) -> Value {
    json!({
        "deployment_id": record.deployment_id,
        "version": record.version,
        "status": record.status,
        "rollback_deadline": record.rollback_deadline,
        "backup_id": record.database_backup.as_ref().map(|b| b.backup_id.clone()),
        "migrations_applied": record.migrations_applied,
        "services": record.services_deployed,
        "generator": record.generator,
    })
}

/// Posts a deployment status with the run as `log_url`.
pub(crate) async fn post_status(
    github: &GitHub,
    id: u64,
    state: &str,
    description: &str,
    environment_url: Option<&str>,
) -> Result<()> {
    let description = truncate(description, 140);
    let log_url = crate::actions::run_url();
    let status = deployments::NewStatus {
        state,
        description: &description,
        log_url: log_url.as_deref(),
        environment_url,
    };
    deployments::post_status(github, id, &status)
        .await
        .map_err(|e| {
            Error::from(e).context(format!("cannot set GitHub deployment {id} to `{state}`"))
        })?;
    tracing::info!("GitHub deployment {id} is `{state}`");
    Ok(())
}

/// The deployment's final status once the audit trail is safe: `success`, else `failure` with
/// the failed stage; returns the state posted.
pub(crate) async fn finish_deployment(
    github: &GitHub,
    id: u64,
    record: &Record,
    environment_url: Option<&str>,
) -> Result<&'static str> {
    let state = if record.status == "success" {
        "success"
    } else {
        "failure"
    };
    let description = match &record.failure {
        Some(failure) => format!("{} failed at {}", record.version, failure.stage),
        None => format!(
            "{} deployed; rollback window until {}",
            record.version, record.rollback_deadline
        ),
    };
    post_status(github, id, state, &description, environment_url).await?;
    Ok(state)
}
