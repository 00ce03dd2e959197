//! The drill report: Markdown for people (the step summary and the `drill-report-<id>.md`
//! artifact), beside the same `drill.json` as JSON.

use crate::actions::Table;
use crate::state::drill::DrillFile;
use crate::ui::mark::{FAIL, NOT_APPLICABLE, PASS};

/// Per-table rows shown in the report.
const REPORT_TABLES: usize = 100;

fn icon(verdict: &str) -> &'static str {
    match verdict {
        "pass" => PASS,
        "fail" => FAIL,
        _ => NOT_APPLICABLE,
    }
}

/// The report of `drill`, Markdown.
pub(crate) fn markdown(drill: &DrillFile) -> String {
    let heading = if drill.header.result == "pass" {
        format!("### {PASS} Restore drill of `{}` passed", drill.backup_id)
    } else {
        format!("### {FAIL} Restore drill of `{}` failed", drill.backup_id)
    };
    let mut about = Table::new(&["", ""]);
    about.row(&[
        "Backup",
        &format!("`{}` (taken {})", drill.location, drill.backup_timestamp),
    ]);
    about.row(&[
        "RTO",
        &format!(
            "{} (target {})",
            crate::ui::took_seconds(drill.rto_seconds),
            crate::ui::took_seconds(drill.max_rto_seconds)
        ),
    ]);
    about.row(&[
        "RPO",
        &format!(
            "{} (target {})",
            crate::ui::took_seconds(drill.rpo_seconds),
            crate::ui::took_seconds(drill.max_rpo_seconds)
        ),
    ]);
    about.row(&[
        "Scratch database",
        &format!(
            "`{}` ({})",
            drill.scratch_database,
            if drill.scratch_dropped {
                "dropped"
            } else {
                "kept: drop it when done"
            }
        ),
    ]);
    about.row(&[
        "Restored",
        &format!("{} tables, {} rows", drill.tables, drill.rows),
    ]);
    let mut checks = Table::new(&["Check", "Verdict", "Detail"]);
    for check in &drill.checks {
        checks.row(&[
            format!("`{}`", check.name),
            format!("{} {}", icon(&check.verdict), check.verdict),
            check.detail.clone(),
        ]);
    }
    let mut text = format!("{heading}\n\n{}\n{}", about.render(), checks.render());
    if let Some(reason) = &drill.reason {
        text.push_str(&format!("\n**Why it failed:** {reason}\n"));
    }
    if !drill.row_counts.is_empty() {
        let mut tables = Table::new(&["Table", "Rows after the restore"]);
        for (name, rows) in drill.row_counts.iter().take(REPORT_TABLES) {
            tables.row(&[format!("`{name}`"), rows.to_string()]);
        }
        text.push_str(&format!("\n{}", tables.render()));
        if drill.row_counts.len() > REPORT_TABLES {
            text.push_str(&format!(
                "\n{} more tables in `drill.json`.\n",
                drill.row_counts.len() - REPORT_TABLES
            ));
        }
    }
    text
}
