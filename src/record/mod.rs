//! The deployment record and what reads it (seed 004 §8–10): the `record:` and `notify:`
//! configuration, the record's shape (`model`), building it from the state files
//! (`assemble`), the texts people read (`render`) and its GitHub deployment (`deployment`).
//! Imports the foundation, adapters and `state`; never `settings` or `commands`.

pub(crate) mod assemble;
pub(crate) mod config;
pub(crate) mod deployment;
pub(crate) mod model;
pub(crate) mod render;
