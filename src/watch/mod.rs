//! `watch`'s domain: the `watch:` section (`config`) and one watch end to end (`run`): the
//! rollout's probes and metric gates over the post-deploy window through the rollout's own
//! monitor, and on a breach the rollback through `rollback::run`, the record and the
//! notification.

pub(crate) mod config;
pub(crate) mod run;
