//! The deployment record (seed 004 §8): its shape lives in the state contract
//! (`state::deployment_record`, which `schema/deployment-record.schema.json` is generated from);
//! here is what the record's readers and writers add to it.

pub(crate) use crate::state::deployment_record::*;

/// The run's page: `$GITHUB_SERVER_URL/$GITHUB_REPOSITORY/actions/runs/$GITHUB_RUN_ID`.
pub(crate) fn log_url() -> Option<String> {
    let server = crate::inputs::env("GITHUB_SERVER_URL")?;
    let repo = crate::inputs::env("GITHUB_REPOSITORY")?;
    let run = crate::inputs::env("GITHUB_RUN_ID")?;
    Some(format!(
        "{}/{repo}/actions/runs/{run}",
        server.trim_end_matches('/')
    ))
}
