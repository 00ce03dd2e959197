//! The `backup:` section of `shipgate.yml`, read by `shipgate backup`, `backup prune` and
//! `restore`.

use std::path::PathBuf;

use serde::Deserialize;

use crate::util::HumanDuration;

/// The `backup:` section of `shipgate.yml` (also read by `restore` for the destination).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct FileConfig {
    pub(crate) destination: Option<String>,
    pub(crate) s3_endpoint_url: Option<String>,
    pub(crate) s3_region: Option<String>,
    pub(crate) s3_path_style: Option<bool>,
    pub(crate) s3_sse: Option<String>,
    pub(crate) s3_sse_kms_key_id: Option<String>,
    pub(crate) s3_checksum: Option<String>,
    pub(crate) dump_format: Option<String>,
    pub(crate) compression: Option<String>,
    pub(crate) compression_level: Option<u32>,
    pub(crate) jobs: Option<u32>,
    pub(crate) verify: Option<String>,
    pub(crate) lock_wait_timeout: Option<HumanDuration>,
    pub(crate) timeout: Option<HumanDuration>,
    pub(crate) pg_bin_dir: Option<PathBuf>,
    pub(crate) keep_days: Option<u64>,
    pub(crate) keep_last: Option<u64>,
}
