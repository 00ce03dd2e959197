//! The rollback's domain: its `rollback:` configuration, the window, the steps that act (hook,
//! restore), the health check after them, the run (`run`: one rollback end to end, updating the
//! deployment record) and the texts (`report`: summary, incident stub).

pub(crate) mod config;
pub(crate) mod health;
pub(crate) mod report;
pub(crate) mod run;
pub(crate) mod steps;
pub(crate) mod window;
