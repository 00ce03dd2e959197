//! Shared test harness: scrubbed command runner, fake GitHub, PostgreSQL and S3 fixtures.
#![allow(dead_code)]

pub mod postgres;
pub mod s3;
pub mod watchdog;
