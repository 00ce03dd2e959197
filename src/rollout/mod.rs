//! The parts of `shipgate rollout` (the command itself is `commands/rollout.rs`): the plan, the
//! probes, rolling windows, gates, stage monitoring and manual approvals.

pub(crate) mod approval;
pub(crate) mod config;
pub(crate) mod engine;
pub(crate) mod gates;
pub(crate) mod monitor;
pub(crate) mod plan;
pub(crate) mod probe;
pub(crate) mod report;
pub(crate) mod window;
