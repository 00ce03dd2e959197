//! Shared test harness: scrubbed command runner, fake GitHub, PostgreSQL and S3 fixtures.
#![allow(dead_code)]

pub mod axum_server;
pub mod cli;
pub mod fake_github;
pub mod file_commands;
pub mod git_repo;
pub mod health_server;
pub mod http_server;
pub mod postgres;
pub mod prometheus;
pub mod s3;
pub mod watchdog;

pub use cli::{Run, Shipgate, assert_no_secret, read_tree};
pub use fake_github::FakeGitHub;
pub use git_repo::GitRepo;
pub mod fake_artifacts;
pub mod state_files;
pub mod stub_http;
