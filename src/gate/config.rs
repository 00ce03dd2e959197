//! The `gate:` section of `shipgate.yml`, read by `shipgate gate`.

use serde::Deserialize;

use crate::util::HumanDuration;

/// The `gate:` section of `shipgate.yml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct FileConfig {
    pub(crate) require: Option<Vec<String>>,
    pub(crate) required_from: Option<String>,
    pub(crate) ignore: Option<Vec<String>>,
    pub(crate) allowed_conclusions: Option<Vec<String>>,
    pub(crate) interval: Option<HumanDuration>,
    pub(crate) timeout: Option<HumanDuration>,
    pub(crate) discovery_timeout: Option<HumanDuration>,
    pub(crate) require_environment: Option<String>,
    pub(crate) soak: Option<HumanDuration>,
    pub(crate) allow_no_checks: Option<bool>,
    /// When deployments may start (see `gate::window`).
    pub(crate) change_window: Option<super::window::WindowConfig>,
    /// The newest backup at the destination must be younger than this, and verified.
    pub(crate) max_backup_age: Option<HumanDuration>,
    /// Security-alerts gate: the highest severity allowed to stay open (`none`…`critical`).
    pub(crate) max_severity: Option<String>,
    /// Where alerts are read: `code-scanning`, `dependabot` [default: both].
    pub(crate) security_sources: Option<Vec<String>>,
    /// `fail` (default) or `warn` when a source is not enabled or not readable.
    pub(crate) security_not_enabled: Option<String>,
    /// No-firing-alerts gate: refuse while an alert matching this selector fires (the backend
    /// is `rollout.alerts`' or `rollout.prometheus`').
    pub(crate) no_firing_alerts: Option<String>,
    /// JSON endpoint gates: a status page or an incident tool's API, a JSON path and a
    /// condition each (see `gate::endpoint`).
    pub(crate) endpoints: Option<Vec<super::endpoint::EndpointConfig>>,
}
