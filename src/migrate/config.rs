//! The `migrate:` section of `shipgate.yml`, read by `shipgate migrate`.

use serde::Deserialize;

use crate::util::HumanDuration;

/// The `migrate:` section of `shipgate.yml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct FileConfig {
    /// A list of argv strings, or one line (split into words; a script with `shell: true`).
    pub(crate) command: Option<CommandConfig>,
    pub(crate) shell: Option<bool>,
    pub(crate) timeout: Option<HumanDuration>,
    pub(crate) lock_timeout: Option<HumanDuration>,
    pub(crate) lock_key: Option<Scalar>,
    pub(crate) history_table: Option<String>,
    pub(crate) backup_required: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "a command: a list of words (`[npx, prisma, migrate, deploy]`) or one line"
)]
pub(crate) enum CommandConfig {
    Argv(Vec<String>),
    Line(String),
}

/// A YAML scalar read as text (`lock-key: 42` and `lock-key: deploy` both work).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged, expecting = "a number or a word, such as `42` or `deploy`")]
pub(crate) enum Scalar {
    Text(String),
    Integer(i64),
}

impl Scalar {
    pub(crate) fn text(&self) -> String {
        match self {
            Scalar::Text(text) => text.clone(),
            Scalar::Integer(n) => n.to_string(),
        }
    }
}
