//! The rollback's domain: its `rollback:` configuration, the window, the steps that act (hook,
//! restore), the health check after them and the summary; the run itself still lives in
//! `commands::rollback` (it reads and writes the deployment record).

pub(crate) mod config;
pub(crate) mod health;
pub(crate) mod report;
pub(crate) mod steps;
pub(crate) mod window;
