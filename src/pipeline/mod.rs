//! The pipeline's domain: its stages (and how one runs), its `pipeline:` configuration and its
//! summary; the order and the failure path still live in `commands::pipeline`.

pub(crate) mod config;
pub(crate) mod report;
pub(crate) mod stage;
