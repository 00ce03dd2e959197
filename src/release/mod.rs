//! The release being deployed (seed 004 §1): its `validate:` configuration, resolving its tag
//! (`resolve`), the deployment id (`id`) and the summary. Imports the foundation, adapters and
//! `state`; never `settings` or `commands`.

pub(crate) mod config;
pub(crate) mod id;
pub(crate) mod resolve;
pub(crate) mod summary;
