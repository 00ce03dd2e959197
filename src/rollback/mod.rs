//! The rollback's domain: today its `rollback:` configuration.

pub(crate) mod config;
