//! What `shipgate pipeline` tells its reader: the step summary.

use crate::actions::Table;
use crate::state::pipeline::PipelineFile;
use crate::ui::mark::{FAIL, PASS, ROLLED_BACK};

/// The step summary: every stage run, and how the pipeline ended.
pub(crate) fn summary(result: &PipelineFile) -> String {
    let mut table = Table::new(&["Stage", "Result", "Exit code", "Duration"]);
    for run in &result.stages {
        table.row(&[
            format!("`{}`", run.stage),
            if run.result == "pass" {
                format!("{PASS} pass")
            } else {
                format!("{FAIL} fail")
            },
            run.exit_code
                .map_or_else(|| "signal".to_string(), |c| c.to_string()),
            crate::ui::format_duration(std::time::Duration::from_millis(run.duration_ms)),
        ]);
    }
    let heading = match (&result.failed_stage, result.rolled_back) {
        (None, _) => format!("### {PASS} Pipeline passed"),
        (Some(stage), true) => {
            format!("### {ROLLED_BACK} Pipeline failed at `{stage}` and was rolled back")
        }
        (Some(stage), false) => format!("### {FAIL} Pipeline failed at `{stage}`"),
    };
    format!("{heading}\n\n{}\n", table.render())
}
