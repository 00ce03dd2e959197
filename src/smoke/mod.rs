//! The parts of `shipgate smoke`: the suite file and its checks (`suite`), `{{name}}` templates
//! (`template`), asserts (`assert`), the concurrent runner with
//! readiness retries and captures (`runner`), and its reports (`report`).

pub(crate) mod assert;
pub(crate) mod config;
pub(crate) mod report;
pub(crate) mod runner;
pub(crate) mod scalar;
pub(crate) mod snapshot;
pub(crate) mod suite;
pub(crate) mod template;
