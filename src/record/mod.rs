//! The deployment record and what reads it (seed 004 §8–10): today the `record:` and `notify:`
//! configuration; the record model, its assembly and its rendered texts move here from
//! `commands::record` next.

pub(crate) mod config;
pub(crate) mod notify_config;
