//! `validate.json`: the release being deployed.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Header, StateFile};

/// `validate.json`, and `validate`'s `--format json` object.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct ValidateFile {
    #[serde(flatten)]
    pub(crate) header: Header,
    pub(crate) deployment_id: String,
    pub(crate) environment: String,
    pub(crate) repository: Option<String>,
    /// The version without its prefix, e.g. `1.4.0`.
    pub(crate) version: String,
    pub(crate) major: u64,
    pub(crate) minor: u64,
    pub(crate) patch: u64,
    pub(crate) prerelease: String,
    pub(crate) build: String,
    /// The tag as named, e.g. `v1.4.0`.
    pub(crate) tag: String,
    /// The commit the tag resolves to.
    pub(crate) sha: String,
    pub(crate) tag_type: TagType,
    pub(crate) tag_message: Option<String>,
    pub(crate) signature: Signature,
    pub(crate) default_branch: Option<String>,
    pub(crate) reachable_from_default_branch: Option<bool>,
    /// The environment's newest successful deployment, when GitHub was asked.
    pub(crate) previous: Option<Previous>,
    pub(crate) downgrade_allowed: bool,
    pub(crate) source: VersionSource,
    /// `github-api` or `local-git`.
    pub(crate) checked_with: String,
}

impl StateFile for ValidateFile {
    const FILE: &'static str = "validate.json";
    const COMMAND: &'static str = "validate";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TagType {
    Annotated,
    Lightweight,
}

impl std::fmt::Display for TagType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TagType::Annotated => "annotated",
            TagType::Lightweight => "lightweight",
        })
    }
}

/// Where the version came from, for the summary and the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum VersionSource {
    Flag,
    Input,
    WorkflowDispatch,
    GitRef,
}

/// The tag's signature, as GitHub (or local git) reports it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Signature {
    pub(crate) signed: bool,
    pub(crate) verified: Option<bool>,
    pub(crate) reason: Option<String>,
}

/// The environment's newest successful deployment.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Previous {
    pub(crate) version: String,
    pub(crate) deployment_id: u64,
    pub(crate) sha: String,
    pub(crate) created_at: String,
}
