//! `smoke.json`: each smoke test's outcome after the deploy.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Header, StateFile};

/// `smoke.json`, and `smoke`'s `--format json` object.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct SmokeFile {
    #[serde(flatten)]
    pub(crate) header: Header,
    pub(crate) deployment_id: String,
    pub(crate) environment: String,
    /// The suite file.
    pub(crate) suite: Option<String>,
    pub(crate) concurrency: usize,
    pub(crate) total: usize,
    pub(crate) passed: usize,
    pub(crate) failed: usize,
    pub(crate) skipped: usize,
    pub(crate) tests: Vec<TestResult>,
    /// The JUnit report.
    pub(crate) junit: String,
    pub(crate) log_file: String,
}

impl StateFile for SmokeFile {
    const FILE: &'static str = "smoke.json";
    const COMMAND: &'static str = "smoke";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    Passed,
    Failed,
    Skipped,
}

/// What a test calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    Http,
    Database,
    Tcp,
}

/// The result of one test, as `smoke.json` records it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct TestResult {
    pub(crate) name: String,
    pub(crate) kind: Kind,
    pub(crate) status: Status,
    /// What was called: `GET https://…/health`, a redacted database URL, `tcp host:port`.
    pub(crate) target: String,
    pub(crate) duration_ms: u64,
    /// With a readiness deadline: how long until the test first passed (`null` if it never did).
    pub(crate) time_to_ready_ms: Option<u64>,
    pub(crate) ready_timed_out: bool,
    pub(crate) attempts: u32,
    pub(crate) http_status: Option<u16>,
    /// One line per failed check: `status: expected == 200, got 503`.
    pub(crate) failures: Vec<String>,
    /// The same, structured.
    pub(crate) failed_checks: Vec<Failure>,
    /// Snapshot values recorded (`--snapshot`), by JSON location.
    #[serde(skip)]
    pub(crate) recorded: BTreeMap<String, Value>,
}

/// A failed assert: what was checked, expected and found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Failure {
    pub(crate) check: String,
    pub(crate) expected: String,
    pub(crate) actual: String,
}
