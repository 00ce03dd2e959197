//! The backup's domain: today its `backup:` configuration; dump, archive, verification, sidecar,
//! prune and restore move here from `commands::backup` and `commands::restore` next.

pub(crate) mod config;
