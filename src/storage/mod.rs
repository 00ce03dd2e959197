//! Where backups live: one API over `s3://bucket/prefix` (aws-sdk-s3) and `file:///dir`.
//!
//! Both backends keep the same layout (`<prefix>/<name>`) and the same promises:
//! - an upload is streamed in parts and becomes visible only when finished, all at once;
//! - nothing is ever overwritten: finishing an upload (or [`Storage::put_new`]) fails with
//!   [`StorageError::Exists`] when the name is taken (S3 `If-None-Match: *`, a hard link
//!   locally);
//! - an aborted upload leaves nothing behind (S3 `AbortMultipartUpload`, temp file removed);
//! - unfinished uploads can be listed with their start time and aborted one by one, so a run
//!   aborts only those no live run owns ([`lease`]: each run's marker, renewed while it runs).

mod file;
pub(crate) mod lease;
mod s3;

use std::time::Duration;

use bytes::Bytes;

use crate::error::{Classify, Kind};

pub(crate) use s3::{Checksum, S3Options, Sse};

/// Parts of at most this many bytes are kept in flight (being uploaded) at once; at least one.
/// With the part being filled and the one queued, a backup holds at most about 32 MiB of parts
/// while parts are 8 MiB.
const IN_FLIGHT_BUDGET: usize = 16 * 1024 * 1024;
/// The first part size; it doubles every [`PARTS_PER_TIER`] parts so that 10,000 parts hold
/// more than 1 TiB while small backups use little memory.
const FIRST_PART_SIZE: usize = 8 * 1024 * 1024;
const PARTS_PER_TIER: u32 = 1000;
/// S3's limits: 5 GiB per part, 10,000 parts.
const MAX_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;
pub(crate) const MAX_PARTS: u32 = 10_000;
/// How long one chunk of a download may take to arrive.
pub(crate) const CHUNK_TIMEOUT: Duration = Duration::from_secs(120);

/// The size of part `number` (1-based): 8 MiB for parts 1–1,000, 16 MiB for 1,001–2,000, …,
/// capped at 5 GiB. 10,000 parts hold about 8 TiB.
pub(crate) fn part_size(number: u32) -> usize {
    let tier = number.saturating_sub(1) / PARTS_PER_TIER;
    FIRST_PART_SIZE
        .checked_shl(tier)
        .unwrap_or(MAX_PART_SIZE)
        .min(MAX_PART_SIZE)
}

/// How many parts of `size` bytes may be uploading at once.
fn parts_in_flight(size: usize) -> usize {
    (IN_FLIGHT_BUDGET / size.max(1)).max(1)
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum StorageError {
    #[error("{location} is not a backup destination: {reason}")]
    BadLocation { location: String, reason: String },
    #[error("`{location}` already exists; shipgate never overwrites a backup")]
    Exists { location: String },
    #[error("cannot reach {target} to {op}: {detail}; check the endpoint and the network")]
    Unreachable {
        op: String,
        target: String,
        detail: String,
    },
    #[error(
        "S3 refused to {op} `{target}` ({code}: {detail}); check the AWS credentials (environment, profile or web identity role) and that they allow this action"
    )]
    Denied {
        op: String,
        target: String,
        code: String,
        detail: String,
    },
    #[error("bucket `{bucket}` does not exist (NoSuchBucket); create it or fix the destination")]
    NoBucket { bucket: String },
    #[error("cannot {op} `{target}`: S3 answered {code}: {detail}")]
    Service {
        op: String,
        target: String,
        code: String,
        detail: String,
    },
    #[error(
        "no AWS credentials to {op} `{target}` ({detail}); provide them through AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, or a web identity role (OIDC, e.g. aws-actions/configure-aws-credentials)"
    )]
    Credentials {
        op: String,
        target: String,
        detail: String,
    },
    #[error("cannot {op} `{target}`: {detail}")]
    Io {
        op: String,
        target: String,
        detail: String,
    },
    #[error("`{target}` did not answer within {} while trying to {op}", crate::ui::format_duration(*after))]
    Timeout {
        op: String,
        target: String,
        after: Duration,
    },
    #[error("a backup needs more than {MAX_PARTS} parts; it is larger than S3 allows")]
    TooManyParts,
    /// A compare-and-swap found something else than it expected (S3 412 on `If-Match` or
    /// `If-None-Match`, 409 `ConditionalRequestConflict`; another content locally).
    #[error("`{location}` changed since it was read (another writer got there first)")]
    Changed { location: String },
}

impl Classify for StorageError {
    fn kind(&self) -> Kind {
        match self {
            StorageError::BadLocation { .. } => Kind::Usage,
            StorageError::Exists { .. } | StorageError::Changed { .. } => Kind::Gate,
            _ => Kind::Dependency,
        }
    }
}

/// A parsed destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    /// `s3://bucket/prefix`: keys are `prefix/<name>` (no leading or trailing `/`).
    S3 { bucket: String, prefix: String },
    /// `file:///dir`: files are `dir/<name>`.
    File { dir: std::path::PathBuf },
}

impl Location {
    /// Parses `s3://bucket[/prefix]` or `file:///absolute/dir`.
    pub(crate) fn parse(text: &str) -> Result<Location, StorageError> {
        let bad = |reason: &str| StorageError::BadLocation {
            location: crate::actions::quote(text),
            reason: reason.to_string(),
        };
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let bucket_ok = (3..=63).contains(&bucket.len())
                && bucket.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '_')
                })
                && !bucket.starts_with(['-', '.'])
                && !bucket.ends_with(['-', '.']);
            if !bucket_ok {
                return Err(bad(
                    "the bucket name must be 3-63 lowercase letters, digits, `-`, `.` or `_` (`s3://bucket/prefix`)",
                ));
            }
            let prefix = prefix.trim_matches('/');
            if prefix.split('/').any(|p| p == "." || p == "..")
                || prefix.contains("//")
                || prefix.chars().any(|c| c.is_control() || c == '\\')
            {
                return Err(bad(
                    "the prefix must be plain path segments without `.`, `..`, `//` or control characters",
                ));
            }
            return Ok(Location::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
            });
        }
        if let Some(rest) = text.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return Err(bad(
                    "use an absolute directory with three slashes, e.g. `file:///var/backups/app`",
                ));
            }
            let decoded = crate::secret::percent_decode(rest).unwrap_or_else(|| rest.to_string());
            let dir = std::path::PathBuf::from(decoded.trim_end_matches('/'));
            if dir
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err(bad("the directory must not contain `..`"));
            }
            let dir = if dir.as_os_str().is_empty() {
                std::path::PathBuf::from("/")
            } else {
                dir
            };
            return Ok(Location::File { dir });
        }
        Err(bad("use `s3://bucket/prefix` or `file:///absolute/dir`"))
    }

    /// The destination itself, as a URL.
    pub(crate) fn display(&self) -> String {
        match self {
            Location::S3 { bucket, prefix } if prefix.is_empty() => format!("s3://{bucket}"),
            Location::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}"),
            Location::File { dir } => format!("file://{}", dir.display()),
        }
    }

    /// Splits the URL of an object into its destination and name:
    /// `s3://b/p/backup-1.sql.gz` → (`s3://b/p`, `backup-1.sql.gz`).
    pub(crate) fn split_object(url: &str) -> Result<(Location, String), StorageError> {
        let bad = |reason: &str| StorageError::BadLocation {
            location: crate::actions::quote(url),
            reason: reason.to_string(),
        };
        let (parent, name) = url
            .rsplit_once('/')
            .filter(|(_, name)| !name.is_empty())
            .ok_or_else(|| {
                bad("it names no object; use `s3://bucket/prefix/backup-<id>.sql.gz`")
            })?;
        // `s3://bucket/name`: the parent is `s3:/` + `/bucket`.
        let parent = if parent.ends_with(':') || parent.ends_with(":/") {
            return Err(bad("it names no object"));
        } else {
            parent
        };
        Ok((Location::parse(parent)?, name.to_string()))
    }
}

/// What a HEAD or a listing says about one object.
#[derive(Debug, Clone)]
pub(crate) struct ObjectInfo {
    pub(crate) name: String,
    pub(crate) size: u64,
    /// Seconds since the Unix epoch, when known.
    pub(crate) modified: Option<i64>,
}

/// What a compare-and-swap write expects at the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect<'a> {
    /// Nothing (S3 `If-None-Match: *`; locally, a hard link that fails when the name exists).
    Absent,
    /// The version read earlier (S3 `If-Match` on its ETag; locally, the SHA-256 of its
    /// content, compared under an exclusive lock).
    Tag(&'a str),
}

/// A small object read with its version, for a compare-and-swap.
#[derive(Debug, Clone)]
pub(crate) struct Versioned {
    pub(crate) body: Vec<u8>,
    /// The S3 ETag, or the SHA-256 of a local file's content.
    pub(crate) tag: String,
    /// Last written, seconds since the epoch on the destination's clock.
    pub(crate) modified: Option<i64>,
    /// The destination's clock when it answered (S3's `Date` header; the local clock for a
    /// directory), seconds since the epoch.
    pub(crate) now: Option<i64>,
}

/// An unfinished upload (an S3 multipart upload, or a local temporary file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PendingUpload {
    /// The S3 upload id, or the temporary file's random part.
    pub(crate) id: String,
    /// When it was started, seconds since the Unix epoch (the server's clock), when known.
    pub(crate) initiated: Option<i64>,
}

/// A finished upload.
#[derive(Debug, Clone)]
pub(crate) struct Finished {
    pub(crate) parts: u32,
    pub(crate) size: u64,
}

/// An open destination (cheap to clone: clones share the S3 client).
#[derive(Clone)]
pub(crate) enum Storage {
    S3(s3::S3Store),
    File(file::FileStore),
}

impl Storage {
    /// Opens `location`; S3 clients take credentials from the default AWS chain.
    pub(crate) async fn open(location: &Location, options: &S3Options) -> Storage {
        match location {
            Location::S3 { bucket, prefix } => {
                Storage::S3(s3::S3Store::new(bucket, prefix, options).await)
            }
            Location::File { dir } => Storage::File(file::FileStore::new(dir)),
        }
    }

    /// A local directory (tests).
    #[cfg(test)]
    pub(crate) fn local(dir: &std::path::Path) -> Storage {
        Storage::File(file::FileStore::new(dir))
    }

    /// The URL of `name`.
    pub(crate) fn url(&self, name: &str) -> String {
        match self {
            Storage::S3(s) => s.url(name),
            Storage::File(f) => f.url(name),
        }
    }

    /// The destination `name` inside this one (`prefix/name` on S3, a subdirectory locally):
    /// where the objects of a directory-format backup live.
    pub(crate) fn child(&self, name: &str) -> Storage {
        match self {
            Storage::S3(s) => Storage::S3(s.child(name)),
            Storage::File(f) => Storage::File(f.child(name)),
        }
    }

    /// Every unfinished upload directly in this destination, with its object's name.
    pub(crate) async fn list_all_uploads(
        &self,
    ) -> Result<Vec<(String, PendingUpload)>, StorageError> {
        match self {
            Storage::S3(s) => s.list_all_uploads().await,
            Storage::File(f) => f.list_all_uploads().await,
        }
    }

    /// The file behind `name` for a local destination (read in place, not downloaded).
    pub(crate) fn local_path(&self, name: &str) -> Option<std::path::PathBuf> {
        match self {
            Storage::S3(_) => None,
            Storage::File(f) => Some(f.path(name)),
        }
    }

    /// A small object's bytes (at most `limit`), or `None` when it does not exist.
    pub(crate) async fn read_small(
        &self,
        name: &str,
        limit: usize,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        match self {
            Storage::S3(s) => s.read_small(name, limit).await,
            Storage::File(f) => f.read_small(name, limit).await,
        }
    }

    /// The object's size and time, or `None` when it does not exist.
    pub(crate) async fn head(&self, name: &str) -> Result<Option<ObjectInfo>, StorageError> {
        match self {
            Storage::S3(s) => s.head(name).await,
            Storage::File(f) => f.head(name).await,
        }
    }

    /// Stores `body` at `name` unless something is already there.
    pub(crate) async fn put_new(
        &self,
        name: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), StorageError> {
        match self {
            Storage::S3(s) => s.put_new(name, body, content_type).await,
            Storage::File(f) => f.put_new(name, &body).await,
        }
    }

    /// A small object (at most `limit` bytes) with its version, or `None` when it does not
    /// exist.
    pub(crate) async fn read_versioned(
        &self,
        name: &str,
        limit: usize,
    ) -> Result<Option<Versioned>, StorageError> {
        match self {
            Storage::S3(s) => s.read_versioned(name, limit).await,
            Storage::File(f) => f.read_versioned(name, limit).await,
        }
    }

    /// Stores `body` at `name` only if what is there is what `expect` says (compare-and-swap);
    /// [`StorageError::Changed`] (or [`StorageError::Exists`] for [`Expect::Absent`]) when it
    /// is not. Returns the new version. Only for shipgate's own bookkeeping (the deployment
    /// lease), never for a backup.
    pub(crate) async fn put_if(
        &self,
        name: &str,
        body: Vec<u8>,
        content_type: &str,
        expect: Expect<'_>,
    ) -> Result<String, StorageError> {
        match self {
            Storage::S3(s) => s.put_if(name, body, content_type, expect).await,
            Storage::File(f) => f.put_if(name, body, expect).await,
        }
    }

    /// Deletes `name` only if its version is still `tag`; [`StorageError::Changed`] when it
    /// is not, nothing when it is already gone.
    pub(crate) async fn delete_if(&self, name: &str, tag: &str) -> Result<(), StorageError> {
        match self {
            Storage::S3(s) => s.delete_if(name, tag).await,
            Storage::File(f) => f.delete_if(name, tag).await,
        }
    }

    /// Starts a streamed upload to `name`; nothing is visible at `name` until
    /// [`Upload::finish`].
    pub(crate) async fn begin(
        &self,
        name: &str,
        content_type: &str,
    ) -> Result<Upload, StorageError> {
        Ok(match self {
            Storage::S3(s) => Upload::S3(s.begin(name, content_type)),
            Storage::File(f) => Upload::File(f.begin(name).await?),
        })
    }

    /// The unfinished uploads to `name` (whoever started them).
    pub(crate) async fn list_uploads(
        &self,
        name: &str,
    ) -> Result<Vec<PendingUpload>, StorageError> {
        match self {
            Storage::S3(s) => s.list_uploads(name).await,
            Storage::File(f) => f.list_uploads(name).await,
        }
    }

    /// Aborts one unfinished upload to `name`; one that is already gone is fine.
    pub(crate) async fn abort_upload(&self, name: &str, id: &str) -> Result<(), StorageError> {
        match self {
            Storage::S3(s) => s.abort_upload(name, id).await,
            Storage::File(f) => f.abort_upload(name, id).await,
        }
    }

    /// How to remove an unfinished upload by hand, for messages.
    pub(crate) fn abort_hint(&self, name: &str, id: &str) -> String {
        match self {
            Storage::S3(s) => s.abort_hint(name, id),
            Storage::File(f) => f.abort_hint(name, id),
        }
    }

    /// Stores `body` at `name`, replacing what is there. Only for shipgate's own bookkeeping
    /// (run markers, see [`lease`]), never for a backup or a sidecar.
    pub(crate) async fn put_replace(
        &self,
        name: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), StorageError> {
        match self {
            Storage::S3(s) => s.put_replace(name, body, content_type).await,
            Storage::File(f) => f.put_replace(name, &body).await,
        }
    }

    /// Opens `name` for reading in chunks; `None` when it does not exist.
    pub(crate) async fn get(&self, name: &str) -> Result<Option<Download>, StorageError> {
        match self {
            Storage::S3(s) => Ok(s.get(name).await?.map(Download::S3)),
            Storage::File(f) => Ok(f.get(name).await?.map(Download::File)),
        }
    }

    /// Every object whose name starts with `start` (directly in the destination).
    pub(crate) async fn list(&self, start: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        match self {
            Storage::S3(s) => s.list(start).await,
            Storage::File(f) => f.list(start).await,
        }
    }

    pub(crate) async fn delete(&self, name: &str) -> Result<(), StorageError> {
        match self {
            Storage::S3(s) => s.delete(name).await,
            Storage::File(f) => f.delete(name).await,
        }
    }

    /// Once every object under this destination is deleted: on `file://`, removes its now empty
    /// directory (a directory backup's `backup-<id>/`); nothing to do on S3, where a prefix is
    /// only a part of object names.
    pub(crate) async fn remove_if_empty(&self) -> Result<(), StorageError> {
        match self {
            Storage::S3(_) => Ok(()),
            Storage::File(f) => f.remove_if_empty().await,
        }
    }

    /// Deletes `name`, trying again for `patience` while the destination fails (as
    /// [`Upload::abort`] does); the last error when it never worked.
    pub(crate) async fn delete_patiently(
        &self,
        name: &str,
        patience: Duration,
    ) -> Result<(), StorageError> {
        let started = std::time::Instant::now();
        loop {
            let error = match self.delete(name).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if started.elapsed() >= patience {
                return Err(error);
            }
            tracing::warn!("{error}; retrying");
            tokio::time::sleep(
                crate::util::retry_delay(Duration::from_secs(2)).max(Duration::from_millis(200)),
            )
            .await;
        }
    }
}

/// A streamed upload in progress. Dropping it without [`Upload::finish`] or [`Upload::abort`]
/// leaves cleanup to a later run (see [`lease`]); always call one of them.
pub(crate) enum Upload {
    S3(s3::S3Upload),
    File(file::FileUpload),
}

impl Upload {
    /// Sends the next part (S3 parts other than the last must be at least 5 MiB; callers cut
    /// them with [`part_size`]). Returns once the part is sent or queued within the memory
    /// budget; an error from any earlier part surfaces here.
    pub(crate) async fn write_part(&mut self, data: Bytes) -> Result<(), StorageError> {
        match self {
            Upload::S3(u) => u.write_part(data).await,
            Upload::File(u) => u.write_part(&data).await,
        }
    }

    /// The id of the unfinished upload at the destination, once there is one (an S3 multipart
    /// upload is created with the second part).
    pub(crate) fn id(&self) -> Option<String> {
        match self {
            Upload::S3(u) => u.id(),
            Upload::File(u) => Some(u.id()),
        }
    }

    /// Bytes acknowledged by the destination so far.
    pub(crate) fn uploaded(&self) -> u64 {
        match self {
            Upload::S3(u) => u.uploaded(),
            Upload::File(u) => u.uploaded(),
        }
    }

    /// Publishes the object, unless something already exists at its name.
    pub(crate) async fn finish(&mut self) -> Result<Finished, StorageError> {
        match self {
            Upload::S3(u) => u.finish().await,
            Upload::File(u) => u.finish().await,
        }
    }

    /// Throws the upload away. Keeps trying for `patience` when the destination is
    /// unreachable; on failure returns what is left behind and how to remove it.
    pub(crate) async fn abort(&mut self, patience: Duration) -> Result<(), String> {
        match self {
            Upload::S3(u) => u.abort(patience).await,
            Upload::File(u) => u.abort().await,
        }
    }
}

/// An object being read.
pub(crate) enum Download {
    S3(s3::S3Download),
    File(file::FileDownload),
}

impl Download {
    /// The next chunk, `None` at the end. Each chunk has [`CHUNK_TIMEOUT`] to arrive.
    pub(crate) async fn next(&mut self) -> Result<Option<Bytes>, StorageError> {
        match self {
            Download::S3(d) => d.next().await,
            Download::File(d) => d.next().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_thousand_parts_hold_more_than_a_tebibyte() {
        let total: u64 = (1..=MAX_PARTS).map(|n| part_size(n) as u64).sum();
        assert!(total >= 1 << 40, "{total}");
        assert_eq!(part_size(1), 8 << 20);
        assert_eq!(part_size(1000), 8 << 20);
        assert_eq!(part_size(1001), 16 << 20);
        assert!((1..=MAX_PARTS).all(|n| part_size(n) >= 5 << 20 && part_size(n) <= MAX_PART_SIZE));
        assert_eq!(parts_in_flight(8 << 20), 2);
        assert_eq!(parts_in_flight(1 << 30), 1);
    }

    #[test]
    fn destinations_parse() {
        assert_eq!(
            Location::parse("s3://my-bucket/prod/db/").ok(),
            Some(Location::S3 {
                bucket: "my-bucket".into(),
                prefix: "prod/db".into()
            })
        );
        assert_eq!(
            Location::parse("s3://my-bucket").ok(),
            Some(Location::S3 {
                bucket: "my-bucket".into(),
                prefix: String::new()
            })
        );
        assert_eq!(
            Location::parse("file:///var/backups/").ok(),
            Some(Location::File {
                dir: "/var/backups".into()
            })
        );
        for bad in [
            "s3://B/x",
            "s3://bucket/../x",
            "s3://bucket/a//b",
            "file://relative/dir",
            "file:///a/../b",
            "/var/backups",
            "http://x",
        ] {
            assert!(Location::parse(bad).is_err(), "{bad}");
        }
        let s3 = Location::parse("s3://bkt/prod").expect("valid");
        assert_eq!(s3.display(), "s3://bkt/prod");
        let (loc, name) = Location::split_object("s3://bkt/prod/backup-1.sql.gz").expect("valid");
        assert_eq!((loc, name.as_str()), (s3, "backup-1.sql.gz"));
        let (loc, name) = Location::split_object("s3://bkt/backup-1.sql.gz").expect("valid");
        assert_eq!(
            (loc.display(), name.as_str()),
            ("s3://bkt".into(), "backup-1.sql.gz")
        );
        let (loc, name) = Location::split_object("file:///srv/b/backup-1.sql.gz").expect("valid");
        assert_eq!(
            (loc.display(), name.as_str()),
            ("file:///srv/b".into(), "backup-1.sql.gz")
        );
        assert!(Location::split_object("s3://bkt").is_err());
    }

    #[tokio::test]
    async fn a_directory_compares_and_swaps_by_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Storage::local(dir.path());
        let first = storage
            .put_if(
                "l.json",
                b"one".to_vec(),
                "application/json",
                Expect::Absent,
            )
            .await
            .expect("new");
        assert!(matches!(
            storage
                .put_if(
                    "l.json",
                    b"two".to_vec(),
                    "application/json",
                    Expect::Absent
                )
                .await,
            Err(StorageError::Exists { .. })
        ));
        assert!(matches!(
            storage
                .put_if("l.json", b"two".to_vec(), "", Expect::Tag("stale"))
                .await,
            Err(StorageError::Changed { .. })
        ));
        let read = storage
            .read_versioned("l.json", 1024)
            .await
            .expect("read")
            .expect("there");
        assert_eq!(
            (read.body.as_slice(), read.tag.as_str()),
            (&b"one"[..], first.as_str())
        );
        let second = storage
            .put_if("l.json", b"two".to_vec(), "", Expect::Tag(&first))
            .await
            .expect("swap");
        assert_ne!(first, second);
        assert!(matches!(
            storage.delete_if("l.json", &first).await,
            Err(StorageError::Changed { .. })
        ));
        storage.delete_if("l.json", &second).await.expect("delete");
        assert!(
            storage
                .read_versioned("l.json", 1024)
                .await
                .expect("read")
                .is_none()
        );
        // Gone already: fine.
        storage.delete_if("l.json", &second).await.expect("gone");
        // A name that does not exist cannot be swapped.
        assert!(matches!(
            storage
                .put_if("l.json", b"x".to_vec(), "", Expect::Tag(&second))
                .await,
            Err(StorageError::Changed { .. })
        ));
    }
}
