//! The pipeline's domain: its stages and its `pipeline:` configuration.

pub(crate) mod config;
pub(crate) mod stage;
