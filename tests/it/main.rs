//! The one integration-test binary: every test runs the real `shipgate` executable or talks to
//! real servers on loopback started by the test itself.

mod fixtures;
mod support;

mod artifacts_official;
mod backup;
mod backup_directory;
mod bad_input;
mod drill;
mod e2e;
mod fake_github_selftest;
mod gate;
mod gate_bench;
mod hooks;
mod image;
mod judge;
mod lease;
mod metrics;
mod migrate;
mod notify;
mod preflight;
mod progress;
mod record;
mod restore;
mod rollback;
mod rollout;
mod setup_action;
mod smoke;
mod templates;
mod validate;
mod watch;
mod web_metric;
mod workflow_run;
