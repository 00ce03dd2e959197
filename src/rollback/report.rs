//! What `shipgate rollback` tells its reader: the step summary.

use std::time::Duration;

use crate::actions::Table;
use crate::state::rollback::RollbackFile;

/// The step summary of a rollback; `status` is the record's status after it.
pub(crate) fn summary(result: &RollbackFile, status: &str) -> String {
    let heading = if result.already_rolled_back {
        format!(
            "### ↩️ Deployment `{}` was already rolled back",
            result.deployment_id
        )
    } else if result.refused {
        format!(
            "### ⛔ Rollback of `{}` refused: the window closed at `{}`",
            result.deployment_id, result.rollback_deadline
        )
    } else if result.header.result == "pass" {
        format!(
            "### ↩️ Deployment `{}` (`{}`) rolled back",
            result.deployment_id, result.version
        )
    } else {
        format!("### 🚨 Rollback of `{}` FAILED", result.deployment_id)
    };
    let mut out = format!("{heading}\n\n");
    if !result.steps.is_empty() {
        let mut table = Table::new(&["Step", "Command", "Outcome", "Duration"]);
        for step in &result.steps {
            table.row(&[
                step.name.clone(),
                format!("`{}`", step.command),
                step.outcome.clone(),
                crate::util::format_duration(Duration::from_millis(step.duration_ms)),
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
