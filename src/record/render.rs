//! What people read: the rollback instructions (seed 004 §9), the failure report (§10) and the
//! job summary; writing the texts, and saying what became of the artifacts.

use std::path::{Path, PathBuf};

use super::model::{Backup, Record, failure_file, instructions_file};
use crate::actions::{self, Table};
use crate::artifacts::Publication;
use crate::error::{Error, Result};
use crate::state::StateDir;
use crate::state::lease::LeaseStatus;
use crate::ui::mark::{ALARM, PASS, ROLLED_BACK};

/// Seed 004 §9: what a person on call reads.
pub(crate) fn rollback_instructions(record: &Record, on_call: Option<&str>) -> String {
    let id = &record.deployment_id;
    let mut out = format!("# Rollback instructions: deployment `{id}`\n\n");
    let mut table = Table::new(&["", ""]);
    table.row(&["Deployment ID", &format!("`{id}`")]);
    table.row(&["Version", &format!("`{}`", record.version)]);
    table.row(&["Environment", &format!("`{}`", record.environment)]);
    table.row(&["Status", &format!("`{}`", record.status)]);
    if let Some(sha) = &record.git_sha {
        table.row(&["Commit", &format!("`{sha}`")]);
    }
    if let Some(previous) = &record.previous_version {
        table.row(&["Previous version", &format!("`{previous}`")]);
    }
    table.row(&[
        "Rollback window",
        &format!(
            "{} minutes from completion (`{}`)",
            record.rollback_window_minutes, record.completed_at
        ),
    ]);
    table.row(&[
        "Rollback deadline",
        &format!("**`{}`**", record.rollback_deadline),
    ]);
    out.push_str(&table.render());
    out.push_str("\n## When to roll back\n\n");
    out.push_str("- Critical service failures not caught by the smoke tests\n");
    out.push_str("- Data corruption or integrity issues\n");
    out.push_str("- Performance degradation beyond acceptable thresholds\n");
    out.push_str("- Security vulnerabilities discovered after the deployment\n");
    out.push_str("\n## Procedure\n\n");
    out.push_str("1. **Confirm the rollback is needed** with the team lead.\n");
    out.push_str(&format!(
        "2. **Roll back** (runs the rollback hook, verifies health, marks the record and the GitHub deployment):\n\n   ```sh\n   shipgate --deployment-id {id} --environment {} rollback --reason \"<why>\"\n   ```\n\n   From GitHub: run the deployment workflow's rollback job (`workflow_dispatch`) with `deployment-id: {id}`. After `{}` the command refuses; add `--force` (input `force: true`) to roll back anyway.\n",
        record.environment, record.rollback_deadline
    ));
    match &record.database_backup {
        Some(backup) => {
            out.push_str(&format!(
                "3. **Restore the database** only if the data must go back to before this deployment (writes since then are lost). Together with the rollback:\n\n   ```sh\n   shipgate --deployment-id {id} rollback --restore-database --reason \"<why>\"\n   ```\n\n   or on its own:\n\n   ```sh\n   shipgate restore --backup-id {} --yes\n   ```\n\n",
                backup.backup_id
            ));
            out.push_str(&format!(
                "   Backup `{}` at `{}` (taken `{}`{}{}).\n",
                backup.backup_id,
                backup.location,
                backup.timestamp,
                backup
                    .sha256
                    .as_ref()
                    .map(|s| format!(", sha256 `{s}`"))
                    .unwrap_or_default(),
                backup
                    .size
                    .map(|s| format!(", {s} bytes"))
                    .unwrap_or_default()
            ));
            if let Some(manual) = manual_restore(backup) {
                out.push_str(&format!(
                    "   By hand, without shipgate (check the SHA-256 first):\n\n   ```sh\n{manual}   ```\n"
                ));
            }
        }
        None => out.push_str(
            "3. **Database**: no backup was recorded for this deployment; a database rollback needs the team's own recovery plan (point-in-time recovery).\n",
        ),
    }
    out.push_str("4. **Verify the services**: health checks on the previous version (the rollback command does this when health URLs are configured).\n");
    out.push_str("5. **Document the incident**: `shipgate rollback` writes an incident stub (`incident-<id>.md`); complete it.\n");
    out.push_str(&format!(
        "\n## After the deadline, or to redeploy a known-good version\n\nRun the deployment workflow by `workflow_dispatch` with `version: {}` (the previous version) — `validate` allows the downgrade with `allow-downgrade: true` — or roll back with `--force`.\n",
        record.previous_version.as_deref().unwrap_or("<previous version>")
    ));
    if let Some(on_call) = on_call {
        out.push_str(&format!("\n## On call\n\n{on_call}\n"));
    }
    out
}

/// The backup's manual restore (the one text, `backup::restore::manual_restore`), indented for the
/// instructions' list.
pub(crate) fn manual_restore(backup: &Backup) -> Option<String> {
    let format = crate::state::backup::DumpFormat::of(backup.format.as_deref(), &backup.location);
    let text =
        crate::backup::restore::manual_restore(&backup.location, format, backup.sha256.as_deref())?;
    Some(text.lines().map(|line| format!("   {line}\n")).collect())
}

/// Seed 004 §10: the failure report.
pub(crate) fn failure_report(record: &Record) -> String {
    let Some(failure) = &record.failure else {
        return String::new();
    };
    let mut out = format!(
        "# Deployment failure report: `{}`\n\n",
        record.deployment_id
    );
    let mut table = Table::new(&["", ""]);
    table.row(&["Deployment ID", &format!("`{}`", record.deployment_id)]);
    table.row(&["Version", &format!("`{}`", record.version)]);
    table.row(&["Environment", &format!("`{}`", record.environment)]);
    table.row(&["Status", &format!("`{}`", record.status)]);
    table.row(&["Failed stage", &format!("`{}`", failure.stage)]);
    table.row(&["Error", &failure.error]);
    table.row(&[
        "Backup available",
        &match &record.database_backup {
            Some(b) => format!("yes: `{}` at `{}`", b.backup_id, b.location),
            None => "no".to_string(),
        },
    ]);
    if let Some(url) = record.run.as_ref().and_then(|r| r.url.as_ref()) {
        table.row(&["Workflow run", url]);
    }
    out.push_str(&table.render());
    out.push_str(&format!(
        "\n## Action required\n\n{}\n",
        failure.action_required
    ));
    out.push_str("\n## Stages\n\n");
    let mut stages = Table::new(&["Stage", "Result", "Duration"]);
    for stage in &record.pipeline {
        stages.row(&[
            stage.stage.as_str(),
            stage.result.as_str(),
            &stage
                .duration_ms
                .map(|ms| crate::ui::format_duration(std::time::Duration::from_millis(ms)))
                .unwrap_or_else(|| "—".into()),
        ]);
    }
    out.push_str(&stages.render());
    out.push_str(&format!(
        "\nRollback instructions: artifact `rollback-instructions-{}`.\n",
        record.deployment_id
    ));
    out
}

pub(crate) fn summary(record: &Record, publication: &Publication) -> String {
    let icon = match record.status.as_str() {
        "success" => PASS,
        "rolled_back" => ROLLED_BACK,
        _ => ALARM,
    };
    let mut out = format!(
        "### {icon} Deployment record `{}`: {} of `{}` to `{}`\n\n",
        record.deployment_id, record.status, record.version, record.environment
    );
    let mut table = Table::new(&["Stage", "Result", "Duration"]);
    for stage in &record.pipeline {
        table.row(&[
            stage.stage.as_str(),
            if stage.result == "not_run" {
                "did not run"
            } else {
                stage.result.as_str()
            },
            &stage
                .duration_ms
                .map(|ms| crate::ui::format_duration(std::time::Duration::from_millis(ms)))
                .unwrap_or_else(|| "—".into()),
        ]);
    }
    out.push_str(&table.render());
    if let Some(gate) = record.gate.as_ref().filter(|g| !g.preflight.is_empty()) {
        // Seed 004 §2 "Pre-Deployment Validation", row by row.
        let mut preflight = Table::new(&["Pre-deployment gate", "Verdict", "Why"]);
        for row in &gate.preflight {
            preflight.row(&[
                format!("`{}`", row.gate),
                row.verdict.word().to_string(),
                row.reason.clone(),
            ]);
        }
        out.push('\n');
        out.push_str(&preflight.render());
    }
    if let Some(failure) = &record.failure {
        out.push_str(&format!(
            "\n**Failed at `{}`**: {}\n\n**Action required**: {}\n",
            failure.stage, failure.error, failure.action_required
        ));
    }
    out.push_str(&format!(
        "\nRollback window: {} minutes, until **`{}`**{}.\n",
        record.rollback_window_minutes,
        record.rollback_deadline,
        match &record.database_backup {
            Some(b) => format!("; database backup `{}`", b.backup_id),
            None => String::new(),
        }
    ));
    if let Some(lease) = &record.lease {
        out.push_str(&format!(
            "\nDeployment lease of `{}`: held by {}, taken at `{}` by `{}`, {}.\n",
            record.environment,
            crate::text::one_line(&lease.holder.describe()),
            lease.taken_at,
            lease.taken_by,
            match (lease.status, &lease.released_at) {
                (LeaseStatus::Released, Some(at)) => format!("released at `{at}`"),
                (LeaseStatus::Released, None) => "released".to_string(),
                (LeaseStatus::Held, _) => format!(
                    "**not released** (it expires {} after its last renewal, `{}`)",
                    crate::ui::format_duration(std::time::Duration::from_secs(lease.ttl_seconds)),
                    lease.renewed_at
                ),
                (LeaseStatus::Lost, _) => format!(
                    "**lost**: {}",
                    crate::text::one_line(
                        lease
                            .note
                            .as_deref()
                            .unwrap_or("another deployment holds it now")
                    )
                ),
            }
        ));
    }
    let mut artifacts = Table::new(&["Artifact", "State", "Size"]);
    for artifact in &publication.artifacts {
        artifacts.row(&[
            format!("`{}`", artifact.name),
            artifact.state.to_string(),
            artifact.size.map(|s| format!("{s} B")).unwrap_or_default(),
        ]);
    }
    out.push_str(&format!(
        "\n{}\nRetention: {}.{}\n",
        artifacts.render(),
        match (publication.retention_days, &publication.expires_at) {
            (Some(days), Some(_)) => format!("{days} days"),
            (Some(days), None) => format!("{days} days (the repository's setting)"),
            (None, _) => "the repository's setting".to_string(),
        },
        if publication.service {
            String::new()
        } else {
            format!(
                " No artifact service here: the files are in `{}` for `actions/upload-artifact`.",
                publication.dir
            )
        }
    ));
    if let Some(deployment) = &record.github_deployment {
        out.push_str(&format!(
            "\nGitHub deployment {} (required contexts: {}).\n",
            deployment.id, deployment.required_contexts_reason
        ));
    }
    out
}

/// Writes the rollback instructions and, for a failed deployment, the failure report into the
/// state dir (redacted); returns their paths.
pub(crate) fn write_texts(
    state: &StateDir,
    record: &Record,
    on_call: Option<&str>,
) -> Result<(PathBuf, Option<PathBuf>)> {
    let write = |path: &Path, text: String| {
        crate::util::write_atomic(path, crate::secret::redact(&text).as_bytes())
            .map_err(|e| Error::usage(format!("cannot write `{}`: {e}", path.display())))
    };
    let instructions = state.path(&instructions_file(&record.deployment_id));
    write(&instructions, rollback_instructions(record, on_call))?;
    let failure = match &record.failure {
        Some(_) => {
            let path = state.path(&failure_file(&record.deployment_id));
            write(&path, failure_report(record))?;
            Some(path)
        }
        None => None,
    };
    Ok((instructions, failure))
}

/// Says what became of the artifacts: a notice when there is no artifact service, and a
/// warning (an error when they are required) per artifact not uploaded; each also goes into
/// `warnings`.
pub(crate) fn report_publication(
    publication: &Publication,
    required: bool,
    warnings: &mut Vec<String>,
) {
    if !publication.service {
        let message = format!(
            "the Actions artifact service is not available here (no ACTIONS_RESULTS_URL / ACTIONS_RUNTIME_TOKEN: a local run, GHES, or a `run:` step); the artifacts are in `{}`, one directory per artifact: upload each with `actions/upload-artifact` (`path: {}/<name>/`)",
            publication.dir, publication.dir
        );
        actions::annotate(actions::Level::Notice, Some("shipgate record"), &message);
        warnings.push(message);
        return;
    }
    for failure in publication.failures() {
        let message = format!(
            "artifact `{}` was not uploaded: {}; its files are in `{}` for `actions/upload-artifact`",
            failure.name,
            failure.error.as_deref().unwrap_or("unknown error"),
            failure.dir
        );
        let level = if required {
            actions::Level::Error
        } else {
            actions::Level::Warning
        };
        actions::annotate(level, Some("shipgate record"), &message);
        warnings.push(message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_restore_follows_the_format() {
        let backup = Backup {
            backup_id: "b1".into(),
            location: "s3://bk/prod/backup-1.sql.gz".into(),
            timestamp: "2026-01-01T00:00:00Z".into(),
            sha256: Some("ab".into()),
            format: Some("plain".into()),
            compression: Some("gzip".into()),
            ..Backup::default()
        };
        let text = manual_restore(&backup).expect("command");
        assert!(
            text.contains("aws s3 cp 's3://bk/prod/backup-1.sql.gz' - | gunzip | psql"),
            "{text}"
        );
        assert!(text.contains("sha256sum   # expect ab"), "{text}");
        let custom = Backup {
            format: Some("custom".into()),
            compression: None,
            location: "file:///var/bk/b1.dump".into(),
            ..backup
        };
        let text = manual_restore(&custom).expect("command");
        assert!(
            text.contains("cat '/var/bk/b1.dump' | pg_restore"),
            "{text}"
        );
    }
}
