//! The gate's domain (seed 004 §2, seed 002's promotion gate): reading a commit's check runs and
//! commit statuses ([`checks`], shapes in [`api`]), recognising the workflow run executing
//! shipgate ([`own_run`]), what a branch requires ([`required`]), the promotion gate over the
//! Deployments API ([`promotion`]), the pure judgement ([`verdict`]) and the poll loop
//! ([`poll`]). `commands::gate` resolves its options and reports; `gate.json`'s shape lives in
//! `state::gate`.

pub(crate) mod api;
pub(crate) mod checks;
pub(crate) mod config;
pub(crate) mod endpoint;
pub(crate) mod own_run;
pub(crate) mod poll;
pub(crate) mod preflight;
pub(crate) mod promotion;
pub(crate) mod report;
pub(crate) mod required;
pub(crate) mod security;
pub(crate) mod verdict;
pub(crate) mod window;
