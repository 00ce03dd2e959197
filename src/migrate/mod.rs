//! The migration's domain: today its `migrate:` configuration; history tables and the lock move
//! here from `commands::migrate` next.

pub(crate) mod config;
