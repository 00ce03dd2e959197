//! The shapes of GitHub's check runs and commit statuses that the gate reads (the fields it
//! uses), shared by the reader ([`super::checks`]) and the own-run recogniser ([`super::own_run`]).

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct App {
    pub(crate) id: u64,
    #[serde(default)]
    pub(crate) slug: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct SuiteRef {
    pub(crate) id: u64,
}

/// A check run as the REST API returns it (the fields the gate reads).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct CheckRun {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) status: String,
    pub(crate) conclusion: Option<String>,
    pub(crate) started_at: Option<String>,
    pub(crate) completed_at: Option<String>,
    pub(crate) html_url: Option<String>,
    pub(crate) details_url: Option<String>,
    pub(crate) check_suite: Option<SuiteRef>,
    pub(crate) app: Option<App>,
}

/// A commit status.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Status {
    pub(crate) id: u64,
    pub(crate) context: String,
    pub(crate) state: String,
    pub(crate) target_url: Option<String>,
    pub(crate) created_at: Option<String>,
}
