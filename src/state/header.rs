//! The fields every state file starts with.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `schema_version`, `command`, `result`, `timestamp` and (where the command measures it)
/// `duration_ms`: flattened into every state file. Readers rely on these names; they never change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Header {
    pub(crate) schema_version: u32,
    /// The command that wrote the file.
    pub(crate) command: String,
    /// `pass` or `fail`, plus what a command documents (`rolled_back`, `in_progress`, …).
    pub(crate) result: String,
    /// RFC 3339, UTC: when the file was written.
    pub(crate) timestamp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) duration_ms: Option<u64>,
}

impl Header {
    /// A header for state file `T`, written now.
    pub(crate) fn now<T: super::StateFile>(result: &str) -> Header {
        Header {
            schema_version: T::SCHEMA_VERSION,
            command: T::COMMAND.to_string(),
            result: result.to_string(),
            timestamp: crate::util::now_rfc3339(),
            duration_ms: None,
        }
    }
}
