//! The destination: the S3 settings given for it, checked, and the one way a backup's
//! destination is opened, however the backup is named (`--destination`, `--backup-id`,
//! `--location`, `--record` or the state directory's `backup.json`).

use crate::actions;
use crate::error::{Error, Result};
use crate::storage::{Checksum, Location, S3Options, Sse, Storage};

/// The S3 settings as given (flag > input > `backup:` in shipgate.yml), before they are checked.
pub(crate) struct S3Given {
    pub(crate) endpoint_url: Option<String>,
    pub(crate) region: Option<String>,
    pub(crate) path_style: Option<bool>,
    pub(crate) checksum: Checksum,
    /// `s3-sse`: `AES256`, `aws:kms` or `none`.
    pub(crate) sse: Option<String>,
    pub(crate) sse_kms_key_id: Option<String>,
}

/// How to reach S3 (endpoint URL, region, path-style, SSE, checksum; credentials come from the
/// default AWS chain): `given`, checked.
pub(crate) fn s3_options(given: S3Given) -> Result<S3Options> {
    let S3Given {
        endpoint_url,
        region,
        path_style,
        checksum,
        sse: sse_mode,
        sse_kms_key_id: kms_key,
    } = given;
    if let Some(url) = &endpoint_url {
        let ok = url::Url::parse(url)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
        if !ok {
            return Err(Error::usage(format!(
                "S3 endpoint {} is not an `http://` or `https://` URL",
                actions::quote(&crate::secret::redact_url(url))
            )));
        }
    }
    let sse = match (
        sse_mode.as_deref().map(str::to_ascii_lowercase).as_deref(),
        kms_key,
    ) {
        (None | Some("none"), None) => None,
        (Some("aes256"), None) => Some(Sse::Aes256),
        (Some("aws:kms") | None, key) => Some(Sse::Kms(key)),
        (Some("aes256") | Some("none"), Some(_)) => {
            return Err(Error::usage(
                "`s3-sse-kms-key-id` needs `s3-sse: aws:kms`; remove the key id or switch to SSE-KMS",
            ));
        }
        (Some(other), _) => {
            return Err(Error::usage(format!(
                "server-side encryption {} is not known; use `AES256` (SSE-S3) or `aws:kms` (SSE-KMS)",
                actions::quote(other)
            )));
        }
    };
    Ok(S3Options {
        endpoint_url,
        region,
        path_style,
        sse,
        checksum,
    })
}

/// Opens `location` with `s3` (see [`s3_options`]).
pub(crate) async fn open_storage(location: &Location, s3: &S3Options) -> Storage {
    if s3.sse.is_some() && matches!(location, Location::File { .. }) {
        tracing::warn!("`s3-sse` has no effect on a `file://` destination");
    }
    Storage::open(location, s3).await
}
