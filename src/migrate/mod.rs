//! The migration's domain: its `migrate:` configuration, the command to run, the lock, the
//! history tables, one run, and its summary. Imports the foundation, adapters and `state`; never
//! `settings` or `commands`.

pub(crate) mod command;
pub(crate) mod config;
pub(crate) mod history;
pub(crate) mod lock;
pub(crate) mod run;
pub(crate) mod summary;
