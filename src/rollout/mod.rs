//! The parts of `shipgate rollout` (the command itself, its flags and its reporting, is
//! `commands/rollout.rs`): the `rollout:` configuration, the plan, the probes, rolling windows,
//! gates, metric gates (Prometheus queries and alerts), the statistical canary judge (`judge`,
//! its tests in `stats`), stage monitoring, manual approvals, the stage state machine (`engine`) and the step
//! summaries (`report`).

pub(crate) mod approval;
pub(crate) mod config;
pub(crate) mod engine;
pub(crate) mod gates;
pub(crate) mod judge;
pub(crate) mod metric;
pub(crate) mod monitor;
pub(crate) mod plan;
pub(crate) mod probe;
pub(crate) mod report;
pub(crate) mod stats;
pub(crate) mod window;
