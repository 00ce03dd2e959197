//! Shared test harness: scrubbed command runner, fake GitHub, PostgreSQL and S3 fixtures.
#![allow(dead_code)]

pub mod fake_github;
