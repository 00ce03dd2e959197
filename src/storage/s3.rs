//! The S3 backend (aws-sdk-s3), tuned to work unchanged on AWS, MinIO, Cloudflare R2 and
//! SeaweedFS:
//! - credentials and region from the default AWS chain (environment, shared config, web
//!   identity / OIDC, ECS, IMDS); `endpoint-url` + path-style addressing for S3-compatible
//!   servers;
//! - no checksum the server did not ask for (`WhenRequired`: the SDK's default CRC32 breaks R2
//!   and others), and, by default, one explicit SHA-256 per part computed by shipgate over an
//!   in-memory body (so no `aws-chunked` trailer, which several servers reject);
//! - multipart upload created only once a second part exists (a small backup is one
//!   `PutObject`), parts uploaded concurrently within a memory budget, completion conditional
//!   on `If-None-Match: *`, and an abort on any failure.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::interceptors::BeforeDeserializationInterceptorContextRef;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::error::BoxError;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, DateTime, DateTimeFormat};
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ServerSideEncryption,
};
use base64::Engine as _;
use bytes::Bytes;
use sha2::Digest as _;
use tokio::task::JoinSet;

use super::{
    CHUNK_TIMEOUT, Expect, Finished, MAX_PARTS, ObjectInfo, PendingUpload, StorageError, Versioned,
    parts_in_flight,
};
use crate::secret::redact;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Every request but a part upload must be answered within this.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(300);
/// A part upload gets this plus one second per MiB (so a slow 1 MiB/s link still works).
const PART_TIMEOUT_BASE: Duration = Duration::from_secs(60);
const MAX_ATTEMPTS: u32 = 4;
/// Without any region configured, requests are signed for this one (S3-compatible servers
/// usually accept any).
const FALLBACK_REGION: &str = "us-east-1";

/// Server-side encryption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sse {
    /// SSE-S3 (`AES256`).
    Aes256,
    /// SSE-KMS (`aws:kms`), with the bucket's default key when `None`.
    Kms(Option<String>),
}

/// Integrity headers sent with each part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Checksum {
    /// `x-amz-checksum-sha256` per part (AWS, MinIO, R2, SeaweedFS verify it).
    Sha256,
    /// None (for servers that reject checksum headers); shipgate's own SHA-256 of the whole
    /// stream is still checked by reading the object back.
    None,
}

impl std::str::FromStr for Checksum {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "sha256" => Ok(Checksum::Sha256),
            "none" => Ok(Checksum::None),
            other => Err(format!(
                "`{other}` is not a checksum mode; use `sha256` or `none`"
            )),
        }
    }
}

/// How to reach S3. Built only by `backup::storage::s3_options` (no `Default`: a client
/// built from defaults would ignore `--endpoint-url` and go to AWS).
#[derive(Debug, Clone)]
pub(crate) struct S3Options {
    /// `--endpoint-url`; else the default chain (`AWS_ENDPOINT_URL[_S3]`, shared config).
    pub(crate) endpoint_url: Option<String>,
    pub(crate) region: Option<String>,
    /// Path-style addressing; default: on when a custom endpoint is configured.
    pub(crate) path_style: Option<bool>,
    pub(crate) sse: Option<Sse>,
    pub(crate) checksum: Checksum,
}

/// What every request of one destination shares.
#[derive(Clone)]
struct Ctx {
    client: Client,
    bucket: String,
    prefix: String,
    /// For messages: the endpoint, or `S3` when AWS's own is used.
    endpoint: String,
    sse: Option<Sse>,
    checksum: Checksum,
    /// Cleared when the server answers `If-None-Match` with 501: a HEAD check is used instead.
    conditional: Arc<AtomicBool>,
}

impl Ctx {
    fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    fn url(&self, name: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.key(name))
    }

    fn error<E>(&self, op: &str, name: &str, err: SdkError<E, HttpResponse>) -> StorageError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        classify(op, &self.url(name), &self.bucket, &self.endpoint, err)
    }
}

#[derive(Clone)]
pub(crate) struct S3Store {
    ctx: Ctx,
}

impl S3Store {
    pub(crate) async fn new(bucket: &str, prefix: &str, options: &S3Options) -> S3Store {
        let endpoint = options.endpoint_url.clone().or_else(|| {
            crate::inputs::env("AWS_ENDPOINT_URL_S3")
                .or_else(|| crate::inputs::env("AWS_ENDPOINT_URL"))
        });
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
            .build();
        let retries = RetryConfig::standard()
            .with_max_attempts(MAX_ATTEMPTS)
            .with_initial_backoff(
                crate::util::retry_delay(Duration::from_secs(1)).max(Duration::from_millis(1)),
            );
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(timeouts)
            .retry_config(retries);
        if let Some(region) = &options.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = &options.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let shared = loader.load().await;
        let mut config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(options.path_style.unwrap_or(endpoint.is_some()))
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if shared.region().is_none() {
            config = config.region(Region::new(FALLBACK_REGION));
        }
        S3Store {
            ctx: Ctx {
                client: Client::from_conf(config.build()),
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
                endpoint: endpoint
                    .map(|e| format!("the S3 endpoint `{}`", crate::secret::redact_url(&e)))
                    .unwrap_or_else(|| "S3".to_string()),
                sse: options.sse.clone(),
                checksum: options.checksum,
                conditional: Arc::new(AtomicBool::new(true)),
            },
        }
    }

    pub(crate) fn url(&self, name: &str) -> String {
        self.ctx.url(name)
    }

    /// The same bucket and client, with `name` appended to the prefix.
    pub(crate) fn child(&self, name: &str) -> S3Store {
        let mut ctx = self.ctx.clone();
        ctx.prefix = ctx.key(name);
        S3Store { ctx }
    }

    /// Every unfinished upload directly under the prefix, with its object's name.
    pub(crate) async fn list_all_uploads(
        &self,
    ) -> Result<Vec<(String, PendingUpload)>, StorageError> {
        let prefix = self.ctx.key("");
        Ok(self
            .uploads_under(&prefix, "")
            .await?
            .into_iter()
            .filter_map(|(key, upload)| {
                let name = key.strip_prefix(prefix.as_str())?;
                (!name.is_empty() && !name.contains('/')).then(|| (name.to_string(), upload))
            })
            .collect())
    }

    /// Every unfinished upload whose key starts with `key_prefix`, with its key, page by page;
    /// `name` is for errors.
    async fn uploads_under(
        &self,
        key_prefix: &str,
        name: &str,
    ) -> Result<Vec<(String, PendingUpload)>, StorageError> {
        let ctx = &self.ctx;
        let mut found = Vec::new();
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        loop {
            let out = ctx
                .client
                .list_multipart_uploads()
                .bucket(&ctx.bucket)
                .prefix(key_prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(|e| ctx.error("list the unfinished uploads of", name, e))?;
            found.extend(out.uploads().iter().filter_map(|u| {
                Some((
                    u.key()?.to_string(),
                    PendingUpload {
                        id: u.upload_id()?.to_string(),
                        initiated: u.initiated().map(|t| t.secs()),
                    },
                ))
            }));
            key_marker = out.next_key_marker().map(str::to_string);
            id_marker = out.next_upload_id_marker().map(str::to_string);
            if out.is_truncated() != Some(true) || (key_marker.is_none() && id_marker.is_none()) {
                break;
            }
        }
        Ok(found)
    }

    pub(crate) async fn read_small(
        &self,
        name: &str,
        limit: usize,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        let Some(mut download) = self.get(name).await? else {
            return Ok(None);
        };
        let mut body = Vec::new();
        while let Some(chunk) = download.next().await? {
            body.extend_from_slice(&chunk);
            if body.len() > limit {
                return Err(StorageError::Io {
                    op: "read".into(),
                    target: self.url(name),
                    detail: format!("it is larger than {limit} bytes; it is not a shipgate file"),
                });
            }
        }
        Ok(Some(body))
    }

    pub(crate) async fn head(&self, name: &str) -> Result<Option<ObjectInfo>, StorageError> {
        let ctx = &self.ctx;
        match ctx
            .client
            .head_object()
            .bucket(&ctx.bucket)
            .key(ctx.key(name))
            .send()
            .await
        {
            Ok(out) => Ok(Some(ObjectInfo {
                name: name.to_string(),
                size: out.content_length().unwrap_or(0).max(0) as u64,
                modified: out.last_modified().map(|t| t.secs()),
            })),
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(ctx.error("read", name, e)),
        }
    }

    pub(crate) async fn put_new(
        &self,
        name: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), StorageError> {
        put(&self.ctx, name, Bytes::from(body), content_type, Cond::New)
            .await
            .map(|_| ())
    }

    pub(crate) fn begin(&self, name: &str, content_type: &str) -> S3Upload {
        S3Upload {
            ctx: self.ctx.clone(),
            name: name.to_string(),
            content_type: content_type.to_string(),
            first: None,
            upload_id: None,
            next_part: 1,
            in_flight: JoinSet::new(),
            done: Vec::new(),
            uploaded: Arc::new(AtomicU64::new(0)),
            total: 0,
        }
    }

    pub(crate) async fn list_uploads(
        &self,
        name: &str,
    ) -> Result<Vec<PendingUpload>, StorageError> {
        let key = self.ctx.key(name);
        Ok(self
            .uploads_under(&key, name)
            .await?
            .into_iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, upload)| upload)
            .collect())
    }

    pub(crate) async fn abort_upload(
        &self,
        name: &str,
        upload_id: &str,
    ) -> Result<(), StorageError> {
        let ctx = &self.ctx;
        match ctx
            .client
            .abort_multipart_upload()
            .bucket(&ctx.bucket)
            .key(ctx.key(name))
            .upload_id(upload_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if status(&e) == Some(404) => Ok(()),
            Err(e) => Err(ctx.error("abort an unfinished upload of", name, e)),
        }
    }

    pub(crate) fn abort_hint(&self, name: &str, upload_id: &str) -> String {
        format!(
            "`aws s3api abort-multipart-upload --bucket {} --key {} --upload-id {upload_id}`",
            self.ctx.bucket,
            self.ctx.key(name)
        )
    }

    pub(crate) async fn put_replace(
        &self,
        name: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), StorageError> {
        put(
            &self.ctx,
            name,
            Bytes::from(body),
            content_type,
            Cond::Replace,
        )
        .await
        .map(|_| ())
    }

    pub(crate) async fn get(&self, name: &str) -> Result<Option<S3Download>, StorageError> {
        let ctx = &self.ctx;
        match ctx
            .client
            .get_object()
            .bucket(&ctx.bucket)
            .key(ctx.key(name))
            .send()
            .await
        {
            Ok(out) => Ok(Some(S3Download {
                body: out.body,
                url: self.url(name),
            })),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(ctx.error("read", name, e)),
        }
    }

    pub(crate) async fn list(&self, start: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let ctx = &self.ctx;
        let prefix = ctx.key(start);
        let strip = ctx.key("");
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = ctx
                .client
                .list_objects_v2()
                .bucket(&ctx.bucket)
                .prefix(&prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| ctx.error("list", "", e))?;
            for object in out.contents() {
                let Some(name) = object.key().and_then(|k| k.strip_prefix(strip.as_str())) else {
                    continue;
                };
                if name.contains('/') {
                    continue;
                }
                found.push(ObjectInfo {
                    name: name.to_string(),
                    size: object.size().unwrap_or(0).max(0) as u64,
                    modified: object.last_modified().map(|t| t.secs()),
                });
            }
            match out.next_continuation_token() {
                Some(next) if out.is_truncated() == Some(true) => token = Some(next.to_string()),
                _ => return Ok(found),
            }
        }
    }

    pub(crate) async fn read_versioned(
        &self,
        name: &str,
        limit: usize,
    ) -> Result<Option<Versioned>, StorageError> {
        let ctx = &self.ctx;
        let date = ServerDate::default();
        let out = match ctx
            .client
            .get_object()
            .bucket(&ctx.bucket)
            .key(ctx.key(name))
            .customize()
            .interceptor(date.clone())
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(ctx.error("read", name, e)),
        };
        let too_big = || StorageError::Io {
            op: "read".into(),
            target: self.url(name),
            detail: format!("it is larger than {limit} bytes; it is not a shipgate file"),
        };
        if out.content_length().unwrap_or(0) > limit as i64 {
            return Err(too_big());
        }
        let tag = out.e_tag().unwrap_or_default().to_string();
        let modified = out.last_modified().map(|t| t.secs());
        let mut download = S3Download {
            body: out.body,
            url: self.url(name),
        };
        let mut body = Vec::new();
        while let Some(chunk) = download.next().await? {
            body.extend_from_slice(&chunk);
            if body.len() > limit {
                return Err(too_big());
            }
        }
        Ok(Some(Versioned {
            body,
            tag,
            modified,
            now: date.get(),
        }))
    }

    pub(crate) async fn put_if(
        &self,
        name: &str,
        body: Vec<u8>,
        content_type: &str,
        expect: Expect<'_>,
    ) -> Result<String, StorageError> {
        let cond = match expect {
            Expect::Absent => Cond::New,
            Expect::Tag(tag) => Cond::Match(tag),
        };
        let tag = put(&self.ctx, name, Bytes::from(body), content_type, cond).await?;
        match tag {
            Some(tag) => Ok(tag),
            // No ETag in the answer: read it back (a later `If-Match` needs it).
            None => Ok(self
                .read_versioned(name, usize::MAX)
                .await?
                .map(|v| v.tag)
                .unwrap_or_default()),
        }
    }

    pub(crate) async fn delete_if(&self, name: &str, tag: &str) -> Result<(), StorageError> {
        let ctx = &self.ctx;
        match ctx
            .client
            .delete_object()
            .bucket(&ctx.bucket)
            .key(ctx.key(name))
            .if_match(tag)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if status(&e) == Some(404) => Ok(()),
            Err(e) if precondition_failed(&e) || conflict(&e) => Err(StorageError::Changed {
                location: ctx.url(name),
            }),
            Err(e) => Err(ctx.error("delete", name, e)),
        }
    }

    pub(crate) async fn delete(&self, name: &str) -> Result<(), StorageError> {
        let ctx = &self.ctx;
        ctx.client
            .delete_object()
            .bucket(&ctx.bucket)
            .key(ctx.key(name))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| ctx.error("delete", name, e))
    }
}

/// What a `PutObject` requires of the name.
#[derive(Debug, Clone, Copy)]
enum Cond<'a> {
    /// Anything: replace what is there.
    Replace,
    /// Nothing there: `If-None-Match: *` (or a HEAD check where the server lacks it).
    New,
    /// The version read earlier: `If-Match` (no fallback: without it there is no lease).
    Match(&'a str),
}

/// `PutObject` under `cond`; the new object's ETag when the server gives one.
async fn put(
    ctx: &Ctx,
    name: &str,
    body: Bytes,
    content_type: &str,
    cond: Cond<'_>,
) -> Result<Option<String>, StorageError> {
    let new = matches!(cond, Cond::New);
    let conditional = new && ctx.conditional.load(Ordering::Relaxed);
    if new && !conditional {
        refuse_if_exists(ctx, name).await?;
    }
    let mut request = ctx
        .client
        .put_object()
        .bucket(&ctx.bucket)
        .key(ctx.key(name))
        .content_type(content_type)
        .content_length(body.len() as i64);
    if ctx.checksum == Checksum::Sha256 {
        request = request.checksum_sha256(sha256_b64(&body));
    }
    request = match &ctx.sse {
        Some(Sse::Aes256) => request.server_side_encryption(ServerSideEncryption::Aes256),
        Some(Sse::Kms(key)) => request
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .set_ssekms_key_id(key.clone()),
        None => request,
    };
    if conditional {
        request = request.if_none_match("*");
    }
    if let Cond::Match(tag) = cond {
        request = request.if_match(tag);
    }
    match request.body(ByteStream::from(body.clone())).send().await {
        Ok(out) => Ok(out.e_tag().map(str::to_string)),
        Err(e) if new && precondition_failed(&e) => Err(StorageError::Exists {
            location: ctx.url(name),
        }),
        Err(e) if precondition_failed(&e) || conflict(&e) => Err(StorageError::Changed {
            location: ctx.url(name),
        }),
        Err(e) if conditional && not_implemented(&e) => {
            no_conditional_writes(ctx);
            Box::pin(put(ctx, name, body, content_type, cond)).await
        }
        Err(e) if not_implemented(&e) => Err(StorageError::Service {
            op: "write (conditionally, `If-Match`)".into(),
            target: ctx.url(name),
            code: "NotImplemented".into(),
            detail: format!(
                "{} does not support conditional writes, which the deployment lease needs; use a server that does (AWS S3, MinIO, R2, SeaweedFS) or set `lease: false`",
                ctx.endpoint
            ),
        }),
        Err(e) => Err(ctx.error("write", name, e)),
    }
}

fn no_conditional_writes(ctx: &Ctx) {
    if ctx.conditional.swap(false, Ordering::Relaxed) {
        tracing::warn!(
            "{} does not support conditional writes (`If-None-Match: *`); checking that the name is free with a HEAD request instead, which cannot rule out a concurrent writer",
            ctx.endpoint
        );
    }
}

async fn refuse_if_exists(ctx: &Ctx, name: &str) -> Result<(), StorageError> {
    match ctx
        .client
        .head_object()
        .bucket(&ctx.bucket)
        .key(ctx.key(name))
        .send()
        .await
    {
        Ok(_) => Err(StorageError::Exists {
            location: ctx.url(name),
        }),
        Err(e) if status(&e) == Some(404) => Ok(()),
        Err(e) => Err(ctx.error("read", name, e)),
    }
}

/// A streamed upload: the first part is held back until a second one exists, so a small
/// backup becomes one conditional `PutObject`; otherwise a multipart upload.
pub(crate) struct S3Upload {
    ctx: Ctx,
    name: String,
    content_type: String,
    first: Option<Bytes>,
    upload_id: Option<String>,
    next_part: i32,
    in_flight: JoinSet<Result<CompletedPart, StorageError>>,
    done: Vec<CompletedPart>,
    uploaded: Arc<AtomicU64>,
    total: u64,
}

impl S3Upload {
    pub(crate) fn id(&self) -> Option<String> {
        self.upload_id.clone()
    }

    pub(crate) fn uploaded(&self) -> u64 {
        self.uploaded.load(Ordering::Relaxed)
    }

    pub(crate) async fn write_part(&mut self, data: Bytes) -> Result<(), StorageError> {
        self.total += data.len() as u64;
        if self.upload_id.is_none() {
            match self.first.take() {
                None => {
                    self.first = Some(data);
                    return Ok(());
                }
                Some(first) => {
                    self.create().await?;
                    self.send(first).await?;
                }
            }
        }
        self.send(data).await
    }

    async fn create(&mut self) -> Result<(), StorageError> {
        let ctx = &self.ctx;
        let mut request = ctx
            .client
            .create_multipart_upload()
            .bucket(&ctx.bucket)
            .key(ctx.key(&self.name))
            .content_type(&self.content_type);
        if ctx.checksum == Checksum::Sha256 {
            request = request.checksum_algorithm(ChecksumAlgorithm::Sha256);
        }
        request = match &ctx.sse {
            Some(Sse::Aes256) => request.server_side_encryption(ServerSideEncryption::Aes256),
            Some(Sse::Kms(key)) => request
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .set_ssekms_key_id(key.clone()),
            None => request,
        };
        let out = request
            .send()
            .await
            .map_err(|e| ctx.error("start a multipart upload to", &self.name, e))?;
        let id = out
            .upload_id()
            .map(str::to_string)
            .ok_or_else(|| StorageError::Service {
                op: "start a multipart upload to".into(),
                target: ctx.url(&self.name),
                code: "NoUploadId".into(),
                detail: "the answer had no upload id".into(),
            })?;
        tracing::debug!(
            "multipart upload `{id}` started for `{}`",
            ctx.url(&self.name)
        );
        self.upload_id = Some(id);
        Ok(())
    }

    /// Queues one part, first waiting for earlier parts while the memory budget is used up.
    async fn send(&mut self, data: Bytes) -> Result<(), StorageError> {
        let number = self.next_part;
        if number as u32 > MAX_PARTS {
            return Err(StorageError::TooManyParts);
        }
        self.next_part += 1;
        while self.in_flight.len() >= parts_in_flight(data.len()) {
            self.collect_one().await?;
        }
        let ctx = self.ctx.clone();
        let name = self.name.clone();
        let upload_id = self.upload_id.clone().unwrap_or_default();
        let uploaded = self.uploaded.clone();
        self.in_flight.spawn(async move {
            let part = upload_part(&ctx, &name, &upload_id, number, data.clone()).await?;
            uploaded.fetch_add(data.len() as u64, Ordering::Relaxed);
            Ok(part)
        });
        Ok(())
    }

    async fn collect_one(&mut self) -> Result<(), StorageError> {
        match self.in_flight.join_next().await {
            Some(Ok(Ok(part))) => {
                self.done.push(part);
                Ok(())
            }
            Some(Ok(Err(e))) => Err(e),
            Some(Err(e)) => Err(StorageError::Io {
                op: "upload a part of".into(),
                target: self.ctx.url(&self.name),
                detail: format!("the upload task failed: {e}"),
            }),
            None => Ok(()),
        }
    }

    pub(crate) async fn finish(&mut self) -> Result<Finished, StorageError> {
        let Some(upload_id) = self.upload_id.clone() else {
            let body = self.first.take().unwrap_or_default();
            let size = body.len() as u64;
            put(&self.ctx, &self.name, body, &self.content_type, Cond::New).await?;
            self.uploaded.fetch_add(size, Ordering::Relaxed);
            return Ok(Finished { parts: 1, size });
        };
        while !self.in_flight.is_empty() {
            self.collect_one().await?;
        }
        let mut parts = std::mem::take(&mut self.done);
        parts.sort_by_key(|p| p.part_number());
        let count = parts.len() as u32;
        let ctx = self.ctx.clone();
        loop {
            let conditional = ctx.conditional.load(Ordering::Relaxed);
            if !conditional {
                refuse_if_exists(&ctx, &self.name).await?;
            }
            let mut request = ctx
                .client
                .complete_multipart_upload()
                .bucket(&ctx.bucket)
                .key(ctx.key(&self.name))
                .upload_id(&upload_id)
                .mpu_object_size(self.total as i64)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts.clone()))
                        .build(),
                );
            if conditional {
                request = request.if_none_match("*");
            }
            match request.send().await {
                Ok(_) => break,
                Err(e) if precondition_failed(&e) => {
                    return Err(StorageError::Exists {
                        location: ctx.url(&self.name),
                    });
                }
                Err(e) if conditional && not_implemented(&e) => no_conditional_writes(&ctx),
                Err(e) => return Err(ctx.error("complete the multipart upload of", &self.name, e)),
            }
        }
        self.upload_id = None;
        Ok(Finished {
            parts: count,
            size: self.total,
        })
    }

    pub(crate) async fn abort(&mut self, patience: Duration) -> Result<(), String> {
        self.first = None;
        self.in_flight.abort_all();
        while self.in_flight.join_next().await.is_some() {}
        let Some(upload_id) = self.upload_id.take() else {
            return Ok(());
        };
        let ctx = &self.ctx;
        let started = Instant::now();
        let mut last;
        loop {
            match ctx
                .client
                .abort_multipart_upload()
                .bucket(&ctx.bucket)
                .key(ctx.key(&self.name))
                .upload_id(&upload_id)
                .send()
                .await
            {
                Ok(_) => {
                    tracing::info!(
                        "aborted the multipart upload `{upload_id}`: nothing was published at `{}`",
                        ctx.url(&self.name)
                    );
                    return Ok(());
                }
                Err(e) if status(&e) == Some(404) => return Ok(()),
                Err(e) => {
                    last = ctx
                        .error("abort the multipart upload of", &self.name, e)
                        .to_string();
                }
            }
            if started.elapsed() >= patience {
                break;
            }
            tracing::warn!("{last}; retrying");
            tokio::time::sleep(
                crate::util::retry_delay(Duration::from_secs(2)).max(Duration::from_millis(200)),
            )
            .await;
        }
        Err(format!(
            "the unfinished multipart upload `{upload_id}` of `{}` could not be aborted ({last}); a later `shipgate backup` with this deployment id aborts it (its run marker says this run ended, or has expired), or run `aws s3api abort-multipart-upload --bucket {} --key {} --upload-id {upload_id}` (an `AbortIncompleteMultipartUpload` lifecycle rule also removes it)",
            ctx.url(&self.name),
            ctx.bucket,
            ctx.key(&self.name)
        ))
    }
}

async fn upload_part(
    ctx: &Ctx,
    name: &str,
    upload_id: &str,
    number: i32,
    data: Bytes,
) -> Result<CompletedPart, StorageError> {
    let len = data.len();
    let checksum = (ctx.checksum == Checksum::Sha256).then(|| sha256_b64(&data));
    let attempt_timeout = PART_TIMEOUT_BASE + Duration::from_secs((len >> 20) as u64);
    let out = ctx
        .client
        .upload_part()
        .bucket(&ctx.bucket)
        .key(ctx.key(name))
        .upload_id(upload_id)
        .part_number(number)
        .content_length(len as i64)
        .set_checksum_sha256(checksum.clone())
        .body(ByteStream::from(data))
        .customize()
        .config_override(
            aws_sdk_s3::config::Builder::default().timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(attempt_timeout)
                    .build(),
            ),
        )
        .send()
        .await
        .map_err(|e| ctx.error(&format!("upload part {number} of"), name, e))?;
    Ok(CompletedPart::builder()
        .part_number(number)
        .set_e_tag(out.e_tag().map(str::to_string))
        .set_checksum_sha256(out.checksum_sha256().map(str::to_string).or(checksum))
        .build())
}

/// An object being read.
pub(crate) struct S3Download {
    body: ByteStream,
    url: String,
}

impl S3Download {
    pub(crate) async fn next(&mut self) -> Result<Option<Bytes>, StorageError> {
        match tokio::time::timeout(CHUNK_TIMEOUT, self.body.next()).await {
            Err(_) => Err(StorageError::Timeout {
                op: "read".into(),
                target: self.url.clone(),
                after: CHUNK_TIMEOUT,
            }),
            Ok(None) => Ok(None),
            Ok(Some(Ok(chunk))) => Ok(Some(chunk)),
            Ok(Some(Err(e))) => Err(StorageError::Unreachable {
                op: "read".into(),
                target: format!("`{}`", self.url),
                detail: chain(&e),
            }),
        }
    }
}

/// Remembers the `Date` header of a response: the destination's clock, so a lease's age is
/// judged on one clock (the server's) whatever the reader's clock says.
#[derive(Debug, Clone, Default)]
struct ServerDate(Arc<std::sync::Mutex<Option<i64>>>);

impl ServerDate {
    fn get(&self) -> Option<i64> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Intercept for ServerDate {
    fn name(&self) -> &'static str {
        "ServerDate"
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let date = context
            .response()
            .headers()
            .get("date")
            .and_then(|d| DateTime::from_str(d, DateTimeFormat::HttpDate).ok())
            .map(|d| d.secs());
        if date.is_some() {
            *self.0.lock().unwrap_or_else(|p| p.into_inner()) = date;
        }
        Ok(())
    }
}

/// An error and its causes as one redacted line, `outer: inner: innermost`, without the SDK's
/// Debug dumps.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    crate::actions::one_line(&redact(&parts.join(": ")))
}

fn sha256_b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(data))
}

fn status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    match err {
        SdkError::ServiceError(s) => Some(s.raw().status().as_u16()),
        _ => None,
    }
}

fn precondition_failed<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    status(err) == Some(412)
        || matches!(err, SdkError::ServiceError(s) if s.err().code() == Some("PreconditionFailed"))
}

fn conflict<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    status(err) == Some(409)
        && matches!(err, SdkError::ServiceError(s) if s.err().code() == Some("ConditionalRequestConflict"))
}

fn not_implemented<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    status(err) == Some(501)
        || matches!(err, SdkError::ServiceError(s) if s.err().code() == Some("NotImplemented"))
}

/// One S3 failure as a [`StorageError`] that says what to do.
fn classify<E>(
    op: &str,
    target: &str,
    bucket: &str,
    endpoint: &str,
    err: SdkError<E, HttpResponse>,
) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let target = target.to_string();
    let op = op.to_string();
    match &err {
        SdkError::TimeoutError(_) => StorageError::Timeout {
            op,
            target,
            after: ATTEMPT_TIMEOUT,
        },
        SdkError::DispatchFailure(failure) => {
            let detail = chain(&err);
            if failure.is_timeout() {
                StorageError::Timeout {
                    op,
                    target,
                    after: CONNECT_TIMEOUT,
                }
            } else if !failure.is_io()
                && (detail.contains("credentials") || detail.contains("identity"))
            {
                StorageError::Credentials { op, target, detail }
            } else {
                // Name the object too: "cannot reach <endpoint> to abort the multipart
                // upload of `s3://…`", never an operation without its object.
                StorageError::Unreachable {
                    op: format!("{op} `{target}`"),
                    target: endpoint.to_string(),
                    detail,
                }
            }
        }
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = service
                .err()
                .code()
                .map(str::to_string)
                .unwrap_or_else(|| format!("HTTP {status}"));
            let detail = redact(service.err().message().filter(|m| !m.is_empty()).unwrap_or(
                match status {
                    403 => "access denied",
                    404 => "not found",
                    _ => "no message",
                },
            ));
            match code.as_str() {
                "NoSuchBucket" => StorageError::NoBucket {
                    bucket: bucket.to_string(),
                },
                "AccessDenied"
                | "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "ExpiredToken"
                | "InvalidToken"
                | "TokenRefreshRequired"
                | "AllAccessDisabled" => StorageError::Denied {
                    op,
                    target,
                    code,
                    detail,
                },
                _ if status == 403 => StorageError::Denied {
                    op,
                    target,
                    code,
                    detail,
                },
                _ => StorageError::Service {
                    op,
                    target,
                    code,
                    detail,
                },
            }
        }
        _ => {
            let detail = chain(&err);
            if detail.contains("credentials") || detail.contains("identity") {
                StorageError::Credentials { op, target, detail }
            } else {
                StorageError::Io { op, target, detail }
            }
        }
    }
}
