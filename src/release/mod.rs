//! The release being deployed (seed 004 §1): today its `validate:` configuration; the version
//! rules and tag resolution move here from `commands::validate` next.

pub(crate) mod config;
