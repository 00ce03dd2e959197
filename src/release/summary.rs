//! The job summary of a validated release.

use crate::actions::Table;
use crate::state::validate::ValidateFile;
use crate::ui::mark::PASS;

pub(crate) fn summary(result: &ValidateFile) -> String {
    let mut table = Table::new(&["Check", "Result"]);
    table.row(&["Version", &format!("`{}`", result.version)]);
    let signature = match (result.signature.signed, result.signature.verified) {
        (_, Some(true)) => "signature verified",
        (true, _) => "signed, not verified",
        (false, _) => "unsigned",
    };
    table.row(&[
        "Tag",
        &format!("`{}` ({}, {signature})", result.tag, result.tag_type),
    ]);
    let commit = match (crate::inputs::env("GITHUB_SERVER_URL"), &result.repository) {
        (Some(server), Some(repo)) => format!(
            "[`{}`]({server}/{repo}/commit/{})",
            crate::text::short_sha(&result.sha),
            result.sha
        ),
        _ => format!("`{}`", result.sha),
    };
    table.row(&["Commit", &commit]);
    table.row(&[
        "On the default branch",
        &match (&result.default_branch, result.reachable_from_default_branch) {
            (Some(branch), Some(true)) => format!("yes (`{branch}`)"),
            _ => "not checked (`allow-any-branch`)".to_string(),
        },
    ]);
    table.row(&[
        &format!("Running in `{}`", result.environment),
        &match &result.previous {
            Some(previous) => format!(
                "`{}` (deployment {})",
                previous.version, previous.deployment_id
            ),
            None if result.checked_with == "local-git" => {
                "not checked (no GitHub token)".to_string()
            }
            None => "no successful deployment yet".to_string(),
        },
    ]);
    table.row(&["Deployment id", &format!("`{}`", result.deployment_id)]);
    table.row(&["Checked with", &result.checked_with]);
    format!(
        "### {PASS} Release `{}` validated\n\n{}\n",
        result.tag,
        table.render()
    )
}
