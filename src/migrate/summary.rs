//! The job summary of a migration run.

use std::time::Duration;

use super::run::{Options, how_it_ended};
use crate::actions::{self, Table};
use crate::state::migrate::MigrateFile;
use crate::ui::format_duration;
use crate::ui::mark::{FAIL, PASS};

/// Names listed in the summary before "and N more".
const SUMMARY_NAMES: usize = 50;

/// A code fence that the text inside cannot close.
pub(crate) fn fenced(text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        if c == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    let fence = "`".repeat((longest + 1).max(3));
    format!("{fence}text\n{text}\n{fence}\n")
}

pub(crate) fn summary(result: &MigrateFile, options: &Options) -> String {
    let count = result
        .applied_count
        .map_or_else(|| "unknown".to_string(), |n| n.to_string());
    let heading = if result.header.result == "pass" {
        format!(
            "### {PASS} Migrations: {count} applied{}",
            result
                .tool
                .as_deref()
                .map_or_else(String::new, |t| format!(" ({t})"))
        )
    } else if result.timed_out {
        format!("### {FAIL} Migration command timed out")
    } else if result.cancelled {
        format!("### {FAIL} Migration command stopped (cancelled)")
    } else {
        let how = match (result.exit_code, result.signal) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(signal)) => format!("signal {signal}"),
            _ => "no status".to_string(),
        };
        format!("### {FAIL} Migration command failed ({how})")
    };
    let mut table = Table::new(&["Migration", "Result"]);
    let tool = if result.history_tables.is_empty() {
        "none detected (set `history-table` to count)".to_string()
    } else {
        result
            .history_tables
            .iter()
            .map(|t| {
                let created = if t.rows_before.is_none() {
                    ", created by this run"
                } else {
                    ""
                };
                format!("{} (`{}.{}`{created})", t.tool, t.schema, t.table)
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    table.row(&["Tool", &tool]);
    table.row(&["Applied", &count]);
    if !result.applied.is_empty() {
        table.row(&["New", &list_names(&result.applied)]);
    }
    for t in &result.history_tables {
        if let (Some(before), Some(after)) = (&t.versions_before, &t.versions_after)
            && before != after
        {
            table.row(&[
                "Version",
                &format!(
                    "{} → {}",
                    if before.is_empty() {
                        "none".to_string()
                    } else {
                        list_names(before)
                    },
                    list_names(after)
                ),
            ]);
        }
    }
    if !result.failed.is_empty() {
        table.row(&["Failed", &list_names(&result.failed)]);
    }
    let ended = match (result.exit_code, result.header.result.as_str()) {
        (Some(0), "pass") => "exit code 0".to_string(),
        _ => how_it_ended(result),
    };
    table.row(&[
        "Command",
        &format!("`{}`: {ended}", result.migration_command.replace('`', "'")),
    ]);
    table.row(&[
        "Duration",
        &format_duration(Duration::from_millis(
            result.command_duration_ms.unwrap_or(0),
        )),
    ]);
    let holders = if result.lock_holders.is_empty() {
        String::new()
    } else {
        format!(
            ", behind {}",
            result
                .lock_holders
                .iter()
                .map(|h| h
                    .pid
                    .map_or_else(|| "?".to_string(), |p| format!("pid {p}")))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    table.row(&[
        "Lock wait",
        &format!(
            "{} (advisory lock `{}`{holders})",
            format_duration(Duration::from_millis(result.lock_wait_ms)),
            result.lock_key
        ),
    ]);
    let backup = match &result.backup {
        Some(b) => format!(
            "{} ({})",
            b.backup_id
                .as_deref()
                .map_or_else(|| "unnamed".to_string(), |id| format!("`{id}`")),
            if b.verified {
                "verified"
            } else {
                "not verified"
            }
        ),
        None if !options.backup_required => "not required (`backup-required: false`)".into(),
        None => "none".into(),
    };
    table.row(&["Backup", &backup]);
    table.row(&["Log", &crate::actions::log_reference(&result.log_file)]);
    let mut out = format!("{heading}\n\n{}", table.render());
    if !result.output_tail.is_empty() {
        out.push_str(&format!(
            "\nLast lines of output:\n\n{}",
            fenced(&result.output_tail.join("\n"))
        ));
    }
    if result.lock_lost {
        out.push_str("\n> [!WARNING]\n> The connection holding the migration lock was lost during the run; another run may have overlapped this one.\n");
    }
    if let Some(warning) = &result.warning {
        out.push_str(&format!(
            "\n> [!WARNING]\n> {}\n",
            actions::one_line(warning)
        ));
    }
    out
}

pub(crate) fn list_names(names: &[String]) -> String {
    let mut shown: Vec<String> = names
        .iter()
        .take(SUMMARY_NAMES)
        .map(|n| format!("`{}`", n.replace('`', "'")))
        .collect();
    if names.len() > SUMMARY_NAMES {
        shown.push(format!(
            "… and {} more (see `migrate.json`)",
            names.len() - SUMMARY_NAMES
        ));
    }
    shown.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fences_outlast_the_text() {
        assert!(fenced("a ``` b").starts_with("````text\n"));
        assert!(fenced("plain").starts_with("```text\n"));
    }
}
