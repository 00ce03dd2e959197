//! What `shipgate rollback` tells its reader: the step summary.

use crate::state::deployment_record::Record;
use std::time::Duration;

use crate::actions::Table;
use crate::state::rollback::RollbackFile;
use crate::ui::mark::{ALARM, REFUSED, ROLLED_BACK};

/// The step summary of a rollback; `status` is the record's status after it.
pub(crate) fn summary(result: &RollbackFile, status: &str) -> String {
    let heading = if result.already_rolled_back {
        format!(
            "### {ROLLED_BACK} Deployment `{}` was already rolled back",
            result.deployment_id
        )
    } else if result.refused {
        format!(
            "### {REFUSED} Rollback of `{}` refused: the window closed at `{}`",
            result.deployment_id, result.rollback_deadline
        )
    } else if result.header.result == "pass" {
        format!(
            "### {ROLLED_BACK} Deployment `{}` (`{}`) rolled back",
            result.deployment_id, result.version
        )
    } else {
        format!("### {ALARM} Rollback of `{}` FAILED", result.deployment_id)
    };
    let mut out = format!("{heading}\n\n");
    if !result.steps.is_empty() {
        let mut table = Table::new(&["Step", "Command", "Outcome", "Duration"]);
        for step in &result.steps {
            table.row(&[
                step.name.clone(),
                format!("`{}`", step.command),
                step.outcome.clone(),
                crate::ui::format_duration(Duration::from_millis(step.duration_ms)),
            ]);
        }
        out.push_str(&table.render());
    }
    if !result.health.is_empty() {
        let mut table = Table::new(&["Health", "State", "Detail"]);
        for health in &result.health {
            table.row(&[
                health.url.as_str(),
                health.state.as_str(),
                health.detail.as_str(),
            ]);
        }
        out.push('\n');
        out.push_str(&table.render());
    }
    if let Some(error) = &result.error {
        out.push_str(&format!("\n{error}\n"));
    }
    out.push_str(&format!(
        "\nReason: {}. Record status: `{}`.\n",
        result.reason, status
    ));
    out
}

/// The incident stub: the facts shipgate knows, and the sections a person completes.
pub(crate) fn incident(record: &Record, result: &RollbackFile) -> String {
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
    if let Some(url) = crate::actions::run_url() {
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
