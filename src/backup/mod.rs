//! The backup's domain: its `backup:` configuration; dump, archive, verification, sidecar,
//! prune and restore move here from `commands::backup` and `commands::restore` next.

pub(crate) mod archive;
pub(crate) mod config;
pub(crate) mod restore;
pub(crate) mod sidecar;
