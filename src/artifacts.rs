//! Workflow artifacts, uploaded straight from the container through the Actions results service
//! the runner exposes (`ACTIONS_RESULTS_URL`, `ACTIONS_RUNTIME_TOKEN`), the way
//! `actions/upload-artifact` v4+ does it:
//!
//! 1. the backend ids come from the runtime token's claims (`scp` holds
//!    `Actions.Results:<workflow run backend id>:<workflow job run backend id>`);
//! 2. `ListArtifacts` first, so a name that already exists (a re-run) is never uploaded twice;
//! 3. Twirp `CreateArtifact` returns a signed Azure blob URL (its `sig` is masked);
//! 4. the zip goes up as Put Block (8 MiB blocks) then Put Block List;
//! 5. Twirp `FinalizeArtifact` with the size (a string, as int64 is in proto3 JSON) and
//!    `sha256:<hex>` of the uploaded bytes.
//!
//! The requests are the ones the current toolkit (`@actions/artifact` 6.2, behind
//! `actions/upload-artifact@v4+`) sends, and `tests/it/artifacts_official.rs` holds them to it: the
//! official client runs against the same fake and downloads what shipgate uploaded.
//!
//! - CreateArtifact `version: 7` with `mime_type: "application/zip"`: each artifact is a **zip**
//!   (the blob's content type says so too), which every `actions/download-artifact` release
//!   unpacks. It also makes both paths produce the same thing: when the service is absent (local
//!   runs, a `run:` step), the same files are left in `<state>/artifacts/<name>/`, and
//!   `actions/upload-artifact` with that directory as `path` produces an artifact with the very
//!   same entries.
//! - `expires_at` only when a retention is set (else the repository's setting applies), capped by
//!   `GITHUB_RETENTION_DAYS` with a warning, as the toolkit does; more than GitHub keeps any
//!   artifact ([`MAX_RETENTION_DAYS`]) is a usage error ([`check_retention`]).
//! - Twirp calls are retried on exactly the statuses the toolkit retries (429, 500, 502, 503,
//!   504) and on transport errors: 5 attempts, 3 s then ×1.5; a refusal for `insufficient usage`
//!   (storage quota) is final. Blob requests are retried like the Azure SDK does it: 500 and 503
//!   (and transport errors), 4 attempts.
//! - The signed URL's `sig` is masked raw and URL-encoded (`encodeURIComponent`).
//! - On GitHub Enterprise Server (`GITHUB_SERVER_URL` neither github.com nor `*.ghe.com`), where
//!   this protocol does not exist, nothing is uploaded: a notice says so, like the toolkit's
//!   `GHESNotSupportedError`, and the files are staged for `actions/upload-artifact@v3`.
//!
//! Every request has a timeout; errors never carry a URL.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::error::{Classify, Kind};
use crate::secret::Secret;
pub(crate) use crate::state::record::{Publication, Uploaded};

/// The Twirp service path, after the results service origin.
const SERVICE: &str = "/twirp/github.actions.results.api.v1.ArtifactService";
/// Attempts per Twirp call (the toolkit's `maxAttempts`).
const MAX_ATTEMPTS: u32 = 5;
/// Attempts per blob request (the Azure SDK's `maxTries`).
const MAX_BLOB_ATTEMPTS: u32 = 4;
/// Twirp statuses worth another attempt (the toolkit's `isRetryableHttpStatusCode`).
const RETRY_STATUSES: [u16; 5] = [429, 500, 502, 503, 504];
/// Blob statuses worth another attempt (the Azure SDK's storage retry policy).
const BLOB_RETRY_STATUSES: [u16; 2] = [500, 503];
/// CreateArtifact `version` the current toolkit sends.
const CREATE_VERSION: u32 = 7;
/// The content type of a zipped artifact (CreateArtifact `mime_type`, the blob's content type).
const ZIP_MIME_TYPE: &str = "application/zip";
/// First pause between attempts (the toolkit's `baseRetryIntervalMilliseconds`), then ×1.5.
const FIRST_RETRY: Duration = Duration::from_secs(3);
/// Azure block size, as `actions/upload-artifact` uses.
pub(crate) const BLOCK_SIZE: usize = 8 * 1024 * 1024;
/// One zip is built in memory; past this the files belong in `actions/upload-artifact`.
const MAX_ARTIFACT_BYTES: u64 = 1024 * 1024 * 1024;
/// Storage REST version sent with blob requests.
const AZURE_VERSION: &str = "2023-11-03";
/// The longest retention GitHub lets any repository set (private repositories: 400 days; public
/// ones: 90); `GITHUB_RETENTION_DAYS` is the repository's own limit.
pub(crate) const MAX_RETENTION_DAYS: u32 = 400;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ArtifactError {
    #[error(
        "the runtime token (ACTIONS_RUNTIME_TOKEN) is not what the results service issues: {reason}"
    )]
    Token { reason: String },
    #[error("artifact name `{name}` is not valid: {reason}")]
    Name { name: String, reason: String },
    #[error("cannot read `{}` for artifact `{name}`: {reason}", path.display())]
    Read {
        name: String,
        path: PathBuf,
        reason: String,
    },
    #[error(
        "artifact `{name}` would be {size} bytes, over the {max} bytes shipgate uploads itself; upload it with `actions/upload-artifact`"
    )]
    TooLarge { name: String, size: u64, max: u64 },
    #[error("the artifact service refused `{method}` ({status}): {message}")]
    Refused {
        method: String,
        status: u16,
        message: String,
    },
    #[error(
        "cannot reach the artifact service for `{method}` after {attempts} attempt(s): {reason}"
    )]
    Unreachable {
        method: String,
        attempts: u32,
        reason: String,
    },
    #[error("the artifact service answered `{method}` with something unexpected: {reason}")]
    Protocol { method: String, reason: String },
    #[error(
        "`retention-days` `{days}` is out of range: GitHub keeps artifacts 1 to {MAX_RETENTION_DAYS} days (and the repository's setting, GITHUB_RETENTION_DAYS, may cap it lower); use a number in that range, or none for the repository's setting"
    )]
    Retention { days: u64 },
    #[error("the blob store refused the upload of `{name}` ({status}) after {attempts} attempt(s)")]
    Blob {
        name: String,
        status: u16,
        attempts: u32,
    },
}

impl Classify for ArtifactError {
    fn kind(&self) -> Kind {
        match self {
            ArtifactError::Token { .. }
            | ArtifactError::Name { .. }
            | ArtifactError::TooLarge { .. }
            | ArtifactError::Retention { .. } => Kind::Usage,
            _ => Kind::Dependency,
        }
    }
}

/// One artifact: a name (`deployment-record-<id>`) and the files it holds.
#[derive(Debug, Clone)]
pub(crate) struct Artifact {
    pub(crate) name: String,
    /// `(path on disk, name inside the zip)`.
    pub(crate) files: Vec<(PathBuf, String)>,
}

/// The backend ids the results service keys artifacts by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BackendIds {
    pub(crate) run: String,
    pub(crate) job: String,
}

/// Reads the backend ids from the runtime token's claims, without verifying the token (only the
/// service can; it will refuse a bad one).
pub(crate) fn backend_ids(token: &str) -> Result<BackendIds, ArtifactError> {
    let bad = |reason: &str| ArtifactError::Token {
        reason: reason.to_string(),
    };
    let mut parts = token.split('.');
    let (Some(_header), Some(claims), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("it is not a JWT (three dot-separated parts)"));
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD_INDIFFERENT
        .decode(claims)
        .map_err(|_| bad("its claims are not base64url"))?;
    let claims: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|_| bad("its claims are not JSON"))?;
    let scp = claims
        .get("scp")
        .and_then(|v| v.as_str())
        .ok_or_else(|| bad("it has no `scp` claim"))?;
    for scope in scp.split(' ') {
        let parts: Vec<&str> = scope.split(':').collect();
        if parts.first() != Some(&"Actions.Results") {
            continue;
        }
        if parts.len() != 3 || parts[1].is_empty() || parts[2].is_empty() {
            return Err(bad(
                "its `Actions.Results` scope is not `Actions.Results:<run>:<job>`",
            ));
        }
        return Ok(BackendIds {
            run: parts[1].to_string(),
            job: parts[2].to_string(),
        });
    }
    Err(bad("its `scp` claim has no `Actions.Results` scope"))
}

/// Artifact names the service accepts: not empty, none of `" : < > | * ? \r \n \ /`.
pub(crate) fn check_name(name: &str) -> Result<(), ArtifactError> {
    const FORBIDDEN: &[char] = &['"', ':', '<', '>', '|', '*', '?', '\r', '\n', '\\', '/'];
    if name.trim().is_empty() || name.contains(FORBIDDEN) {
        return Err(ArtifactError::Name {
            name: crate::actions::one_line(name),
            reason: "use no `\" : < > | * ? \\ /`, carriage returns or line breaks".into(),
        });
    }
    Ok(())
}

/// A retention asked for (`retention-days`): 1 to [`MAX_RETENTION_DAYS`] days, else a usage
/// error naming the value.
pub(crate) fn check_retention(days: u64) -> Result<u32, ArtifactError> {
    u32::try_from(days)
        .ok()
        .filter(|d| (1..=MAX_RETENTION_DAYS).contains(d))
        .ok_or(ArtifactError::Retention { days })
}

/// Expiry for `days` of retention, capped by the repository's `GITHUB_RETENTION_DAYS` (as the
/// toolkit does); returns the days actually used and the RFC 3339 timestamp.
pub(crate) fn expiry(days: u32, repository_max: Option<u32>) -> (u32, String) {
    let days = match repository_max {
        Some(max) if max > 0 && max < days => max,
        _ => days,
    }
    .clamp(1, MAX_RETENTION_DAYS);
    let now = jiff::Timestamp::now().round(jiff::Unit::Second);
    let now = now.unwrap_or_else(|_| jiff::Timestamp::now());
    // At most 400 days from now: always representable.
    let at = now
        .checked_add(jiff::SignedDuration::from_hours(24 * i64::from(days)))
        .unwrap_or(now);
    (days, at.to_string())
}

/// Whether `GITHUB_SERVER_URL` names GitHub Enterprise Server, where the results service does
/// not exist (the toolkit's `isGhes`: anything but github.com, `*.ghe.com` and `*.localhost`).
pub(crate) fn is_ghes(server_url: Option<&str>) -> bool {
    let Some(host) = server_url
        .and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
    else {
        return false;
    };
    let host = host.trim_end();
    host != "github.com" && !host.ends_with(".ghe.com") && !host.ends_with(".localhost")
}

/// The results service client.
pub(crate) struct Service {
    http: reqwest::Client,
    origin: String,
    token: Secret,
    ids: BackendIds,
}

#[derive(Debug, Deserialize)]
struct CreateResponse {
    #[serde(default)]
    ok: bool,
    #[serde(default, alias = "signedUploadUrl")]
    signed_upload_url: String,
}

#[derive(Debug, Deserialize)]
struct FinalizeResponse {
    #[serde(default)]
    ok: bool,
    #[serde(default, alias = "artifactId")]
    artifact_id: serde_json::Value,
}

#[derive(Debug, Deserialize)]
struct ListResponse {
    #[serde(default)]
    artifacts: Vec<Listed>,
}

#[derive(Debug, Deserialize)]
struct Listed {
    #[serde(default)]
    name: String,
    #[serde(default, alias = "databaseId")]
    database_id: serde_json::Value,
}

/// A service call that failed, and whether trying again may help.
struct Failure {
    retry: bool,
    error: ArtifactError,
    /// `retry-after` seconds, when the service said.
    after: Option<u64>,
}

impl Service {
    /// The service from the runner's environment: `None` when either variable is missing (a
    /// local run, GHES, or a `run:` step, which never gets the runtime token).
    pub(crate) fn from_env() -> Result<Option<Service>, ArtifactError> {
        let (Some(url), Some(token)) = (
            crate::inputs::env("ACTIONS_RESULTS_URL"),
            crate::inputs::env("ACTIONS_RUNTIME_TOKEN"),
        ) else {
            return Ok(None);
        };
        let token = Secret::new(token);
        let ids = backend_ids(token.expose())?;
        let parsed = url::Url::parse(&url).map_err(|e| ArtifactError::Token {
            reason: format!(
                "ACTIONS_RESULTS_URL {} is not a URL ({e})",
                crate::actions::quote(&url)
            ),
        })?;
        let origin = parsed.origin().ascii_serialization();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .user_agent(concat!("shipgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ArtifactError::Unreachable {
                method: "setup".into(),
                attempts: 0,
                reason: e.without_url().to_string(),
            })?;
        Ok(Some(Service {
            http,
            origin,
            token,
            ids,
        }))
    }

    /// Names of the artifacts this workflow run already has.
    pub(crate) async fn list(&self) -> Result<Vec<(String, String)>, ArtifactError> {
        let body = json!({
            "workflow_run_backend_id": self.ids.run,
            "workflow_job_run_backend_id": self.ids.job,
        });
        let answer: ListResponse = self.call("ListArtifacts", &body).await?;
        Ok(answer
            .artifacts
            .into_iter()
            .map(|a| (a.name, id_text(&a.database_id)))
            .collect())
    }

    /// Create → upload → finalize one zip; returns the artifact id.
    pub(crate) async fn upload(
        &self,
        name: &str,
        zip: &[u8],
        expires_at: Option<&str>,
    ) -> Result<String, ArtifactError> {
        let mut create = json!({
            "workflow_run_backend_id": self.ids.run,
            "workflow_job_run_backend_id": self.ids.job,
            "name": name,
            "version": CREATE_VERSION,
            "mime_type": ZIP_MIME_TYPE,
        });
        if let (Some(at), Some(object)) = (expires_at, create.as_object_mut()) {
            object.insert("expires_at".into(), json!(at));
        }
        let created: CreateResponse = self.call("CreateArtifact", &create).await?;
        if !created.ok || created.signed_upload_url.is_empty() {
            return Err(ArtifactError::Protocol {
                method: "CreateArtifact".into(),
                reason: "`ok` is false or there is no signed upload URL".into(),
            });
        }
        mask_signature(&created.signed_upload_url);
        let signed = Secret::new(created.signed_upload_url);
        self.put_blob(name, &signed, zip).await?;
        let finalize = json!({
            "workflow_run_backend_id": self.ids.run,
            "workflow_job_run_backend_id": self.ids.job,
            "name": name,
            "size": zip.len().to_string(),
            "hash": format!("sha256:{}", sha256_hex(zip)),
        });
        let finalized: FinalizeResponse = self.call("FinalizeArtifact", &finalize).await?;
        if !finalized.ok {
            return Err(ArtifactError::Protocol {
                method: "FinalizeArtifact".into(),
                reason: "`ok` is false".into(),
            });
        }
        Ok(id_text(&finalized.artifact_id))
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        body: &serde_json::Value,
    ) -> Result<T, ArtifactError> {
        let url = format!("{}{SERVICE}/{method}", self.origin);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.call_once(method, &url, body).await {
                Ok(text) => {
                    return serde_json::from_str(&text).map_err(|e| ArtifactError::Protocol {
                        method: method.to_string(),
                        reason: format!("the answer is not the expected JSON ({e})"),
                    });
                }
                Err(failure) if failure.retry && attempt < MAX_ATTEMPTS => {
                    tracing::warn!(
                        "artifact service `{method}`: {}; retrying (attempt {attempt} of {MAX_ATTEMPTS})",
                        failure.error
                    );
                    tokio::time::sleep(pause(attempt, failure.after)).await;
                }
                Err(failure) => {
                    return Err(match failure.error {
                        ArtifactError::Unreachable { method, reason, .. } => {
                            ArtifactError::Unreachable {
                                method,
                                attempts: attempt,
                                reason,
                            }
                        }
                        other => other,
                    });
                }
            }
        }
    }

    async fn call_once(
        &self,
        method: &str,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<String, Failure> {
        let unreachable = |reason: String| Failure {
            retry: true,
            after: None,
            error: ArtifactError::Unreachable {
                method: method.to_string(),
                attempts: 1,
                reason,
            },
        };
        let response = self
            .http
            .post(url)
            .bearer_auth(self.token.expose())
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| unreachable(e.without_url().to_string()))?;
        let status = response.status();
        let after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let text = response
            .text()
            .await
            .map_err(|e| unreachable(e.without_url().to_string()))?;
        if status.is_success() {
            return Ok(text);
        }
        // Twirp errors are `{"code": "...", "msg": "..."}`.
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| {
                let code = v.get("code").and_then(|c| c.as_str()).unwrap_or("");
                let msg = v.get("msg").and_then(|m| m.as_str()).unwrap_or("");
                (!code.is_empty() || !msg.is_empty()).then(|| format!("{code}: {msg}"))
            })
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
        // The toolkit stops at once on a quota refusal, whatever the status.
        let quota = message.contains("insufficient usage");
        Err(Failure {
            retry: RETRY_STATUSES.contains(&status.as_u16()) && !quota,
            after,
            error: ArtifactError::Refused {
                method: method.to_string(),
                status: status.as_u16(),
                message: crate::actions::one_line(&crate::github::strip_urls(&message)),
            },
        })
    }

    /// Put Block for each 8 MiB block, then Put Block List.
    async fn put_blob(&self, name: &str, signed: &Secret, zip: &[u8]) -> Result<(), ArtifactError> {
        let mut ids = Vec::new();
        for (index, block) in zip.chunks(BLOCK_SIZE).enumerate() {
            let id = base64::engine::general_purpose::STANDARD
                .encode(format!("shipgate-block-{index:08}"));
            let url = with_query(signed.expose(), &[("comp", "block"), ("blockid", &id)]);
            self.put(name, &url, block.to_vec(), None).await?;
            ids.push(id);
        }
        let mut list = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
        for id in &ids {
            list.push_str(&format!("<Latest>{id}</Latest>"));
        }
        list.push_str("</BlockList>");
        let url = with_query(signed.expose(), &[("comp", "blocklist")]);
        self.put(name, &url, list.into_bytes(), Some(ZIP_MIME_TYPE))
            .await
    }

    async fn put(
        &self,
        name: &str,
        url: &str,
        body: Vec<u8>,
        blob_type: Option<&str>,
    ) -> Result<(), ArtifactError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self
                .http
                .put(url)
                .header("x-ms-version", AZURE_VERSION)
                .body(body.clone());
            if let Some(content_type) = blob_type {
                request = request
                    .header("content-type", "application/xml")
                    .header("x-ms-blob-content-type", content_type);
            }
            let (retry, failure) = match request.send().await {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => {
                    let status = response.status();
                    (
                        BLOB_RETRY_STATUSES.contains(&status.as_u16()),
                        ArtifactError::Blob {
                            name: name.to_string(),
                            status: status.as_u16(),
                            attempts: attempt,
                        },
                    )
                }
                Err(e) => (
                    true,
                    ArtifactError::Unreachable {
                        method: "blob upload".into(),
                        attempts: attempt,
                        reason: e.without_url().to_string(),
                    },
                ),
            };
            if !retry || attempt >= MAX_BLOB_ATTEMPTS {
                return Err(failure);
            }
            tracing::warn!(
                "uploading `{name}`: {failure}; retrying (attempt {attempt} of {MAX_BLOB_ATTEMPTS})"
            );
            tokio::time::sleep(pause(attempt, None)).await;
        }
    }
}

impl Publication {
    /// The artifacts that neither were uploaded nor already existed, with why.
    pub(crate) fn failures(&self) -> Vec<&Uploaded> {
        self.artifacts
            .iter()
            .filter(|a| a.state == "failed")
            .collect()
    }
}

/// Stages every artifact under `root` and, when the results service is there, uploads each one
/// that this run does not already have. Never fails as a whole: each artifact reports its state.
/// `retention_days` is what was asked for (checked by [`check_retention`]); `None` leaves the
/// repository's setting to the service.
pub(crate) async fn publish(
    root: &Path,
    artifacts: &[Artifact],
    retention_days: Option<u32>,
) -> Publication {
    let repository_max = crate::inputs::env("GITHUB_RETENTION_DAYS").and_then(|d| d.parse().ok());
    let (retention_days, expires_at) = match retention_days {
        Some(asked) => {
            let (days, at) = expiry(asked, repository_max);
            if days < asked {
                // An annotation, as the toolkit's `core.warning`.
                crate::actions::annotate(
                    crate::actions::Level::Warning,
                    Some("shipgate artifacts"),
                    &format!(
                        "artifact retention `{asked}` days is more than the repository allows; using {days} days (GITHUB_RETENTION_DAYS)"
                    ),
                );
            }
            (Some(days), Some(at))
        }
        None => (repository_max.filter(|d| *d > 0), None),
    };
    let mut publication = Publication {
        service: false,
        retention_days,
        expires_at,
        dir: root.display().to_string(),
        artifacts: Vec::new(),
    };
    let mut staged = Vec::new();
    for artifact in artifacts {
        let files = artifact
            .files
            .iter()
            .map(|(_, entry)| entry.clone())
            .collect();
        let mut entry = Uploaded {
            name: artifact.name.clone(),
            state: "written".to_string(),
            files,
            size: None,
            sha256: None,
            artifact_id: None,
            dir: root.join(&artifact.name).display().to_string(),
            error: None,
        };
        match stage(root, artifact) {
            Ok((_, zip)) => {
                entry.size = Some(zip.len() as u64);
                entry.sha256 = Some(format!("sha256:{}", sha256_hex(&zip)));
                staged.push(Some(zip));
            }
            Err(e) => {
                entry.state = "failed".to_string();
                entry.error = Some(e.to_string());
                staged.push(None);
            }
        }
        publication.artifacts.push(entry);
    }
    let server_url = crate::inputs::env("GITHUB_SERVER_URL");
    if is_ghes(server_url.as_deref()) {
        if crate::inputs::env("ACTIONS_RESULTS_URL").is_some() {
            crate::actions::annotate(
                crate::actions::Level::Notice,
                Some("shipgate artifacts"),
                &format!(
                    "artifacts are not uploaded: the artifact service of actions/upload-artifact@v4+ is not supported on GitHub Enterprise Server ({}); the files are in `{}` for actions/upload-artifact@v3",
                    crate::actions::one_line(server_url.as_deref().unwrap_or_default()),
                    publication.dir
                ),
            );
        }
        return publication;
    }
    let service = match Service::from_env() {
        Ok(Some(service)) => service,
        Ok(None) => return publication,
        Err(e) => {
            publication.service = true;
            fail_all(&mut publication, &e);
            return publication;
        }
    };
    publication.service = true;
    let existing = match service.list().await {
        Ok(existing) => existing,
        Err(e) => {
            fail_all(&mut publication, &e);
            return publication;
        }
    };
    let expires_at = publication.expires_at.clone();
    for (entry, zip) in publication.artifacts.iter_mut().zip(staged) {
        let Some(zip) = zip else { continue };
        if let Some((_, id)) = existing.iter().find(|(name, _)| *name == entry.name) {
            tracing::info!(
                "artifact `{}` already exists (id {id}): not uploading it twice",
                entry.name
            );
            entry.state = "exists".to_string();
            entry.artifact_id = Some(id.clone()).filter(|id| !id.is_empty());
            continue;
        }
        match service
            .upload(&entry.name, &zip, expires_at.as_deref())
            .await
        {
            Ok(id) => {
                tracing::info!(
                    "uploaded artifact `{}` ({} bytes, id {id})",
                    entry.name,
                    zip.len()
                );
                entry.state = "uploaded".to_string();
                entry.artifact_id = Some(id).filter(|id| !id.is_empty());
            }
            Err(e) => {
                entry.state = "failed".to_string();
                entry.error = Some(e.to_string());
            }
        }
    }
    publication
}

/// Marks every artifact not already failed as failed with `error`.
fn fail_all(publication: &mut Publication, error: &ArtifactError) {
    for entry in publication
        .artifacts
        .iter_mut()
        .filter(|e| e.state != "failed")
    {
        entry.state = "failed".to_string();
        entry.error = Some(error.to_string());
    }
}

/// The toolkit's backoff: 3 s, then ×1.5 per attempt (or what `retry-after` asks), scaled.
const BACKOFF: crate::util::Backoff = crate::util::Backoff {
    first: FIRST_RETRY,
    factor: 1.5,
    max: Duration::from_secs(60),
    jitter: false,
};

fn pause(attempt: u32, after: Option<u64>) -> Duration {
    BACKOFF.pause(attempt, after.map(Duration::from_secs))
}

/// Registers the signed URL's `sig`, raw and as JavaScript's `encodeURIComponent` writes it (the
/// toolkit's `maskSigUrl`), so neither can reach a log.
fn mask_signature(signed_url: &str) {
    if let Ok(url) = url::Url::parse(signed_url) {
        for (key, value) in url.query_pairs() {
            if key == "sig" && !value.is_empty() {
                crate::secret::register(&value);
                crate::secret::register(&encode_uri_component(&value));
            }
        }
    }
}

/// JavaScript's `encodeURIComponent`: everything but `A-Z a-z 0-9 - _ . ! ~ * ' ( )` as `%XX`.
fn encode_uri_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn with_query(url: &str, pairs: &[(&str, &str)]) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            {
                let mut query = parsed.query_pairs_mut();
                for (key, value) in pairs {
                    query.append_pair(key, value);
                }
            }
            parsed.to_string()
        }
        Err(_) => url.to_string(),
    }
}

fn id_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Copies the artifact's files into `<root>/<name>/` (the directory `actions/upload-artifact`
/// can take when the service is absent) and returns the zip of exactly those files. Text is
/// redacted once more on the way (the writers already redacted; this is the last gate).
pub(crate) fn stage(root: &Path, artifact: &Artifact) -> Result<(PathBuf, Vec<u8>), ArtifactError> {
    check_name(&artifact.name)?;
    let dir = root.join(&artifact.name);
    let read_error = |path: &Path, reason: String| ArtifactError::Read {
        name: artifact.name.clone(),
        path: path.to_path_buf(),
        reason,
    };
    std::fs::create_dir_all(&dir).map_err(|e| read_error(&dir, e.to_string()))?;
    let mut entries = Vec::new();
    let mut total = 0u64;
    for (path, entry) in &artifact.files {
        let bytes = std::fs::read(path).map_err(|e| read_error(path, e.to_string()))?;
        let bytes = match String::from_utf8(bytes) {
            Ok(text) => crate::secret::redact(&text).into_bytes(),
            Err(raw) => raw.into_bytes(),
        };
        total += bytes.len() as u64;
        if total > MAX_ARTIFACT_BYTES {
            return Err(ArtifactError::TooLarge {
                name: artifact.name.clone(),
                size: total,
                max: MAX_ARTIFACT_BYTES,
            });
        }
        let target = dir.join(entry);
        crate::util::write_atomic(&target, &bytes)
            .map_err(|e| read_error(&target, e.to_string()))?;
        entries.push((entry.clone(), bytes));
    }
    let zip = zip(&entries).map_err(|e| read_error(&dir, e.to_string()))?;
    Ok((dir, zip))
}

/// A zip archive (deflate, UTF-8 names, no zip64: each artifact stays under 1 GiB) of
/// `(name, bytes)` entries, as `unzip` and `actions/download-artifact` read it.
pub(crate) fn zip(entries: &[(String, Vec<u8>)]) -> std::io::Result<Vec<u8>> {
    let (time, date) = dos_time(jiff::Timestamp::now());
    let mut out: Vec<u8> = Vec::new();
    let mut central: Vec<u8> = Vec::new();
    for (name, bytes) in entries {
        let mut encoder =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(6));
        encoder.write_all(bytes)?;
        let compressed = encoder.finish()?;
        let mut crc = flate2::Crc::new();
        crc.update(bytes);
        let crc = crc.sum();
        let offset = u32::try_from(out.len()).map_err(|_| too_big())?;
        let size = u32::try_from(bytes.len()).map_err(|_| too_big())?;
        let packed = u32::try_from(compressed.len()).map_err(|_| too_big())?;
        let name_len = u16::try_from(name.len()).map_err(|_| too_big())?;
        // Local file header.
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes()); // version needed: 2.0
        out.extend_from_slice(&0x0800u16.to_le_bytes()); // flags: UTF-8 names
        out.extend_from_slice(&8u16.to_le_bytes()); // deflate
        out.extend_from_slice(&time.to_le_bytes());
        out.extend_from_slice(&date.to_le_bytes());
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&packed.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&name_len.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&compressed);
        // Central directory record.
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&((3u16 << 8) | 20).to_le_bytes()); // made by: Unix, 2.0
        central.extend_from_slice(&20u16.to_le_bytes());
        central.extend_from_slice(&0x0800u16.to_le_bytes());
        central.extend_from_slice(&8u16.to_le_bytes());
        central.extend_from_slice(&time.to_le_bytes());
        central.extend_from_slice(&date.to_le_bytes());
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&packed.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&name_len.to_le_bytes());
        central.extend_from_slice(&[0; 8]); // extra, comment, disk, internal attributes
        central.extend_from_slice(&(0o100_644u32 << 16).to_le_bytes()); // -rw-r--r--
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let count = u16::try_from(entries.len()).map_err(|_| too_big())?;
    let central_offset = u32::try_from(out.len()).map_err(|_| too_big())?;
    let central_size = u32::try_from(central.len()).map_err(|_| too_big())?;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // this disk, disk with the central directory
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&central_size.to_le_bytes());
    out.extend_from_slice(&central_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    Ok(out)
}

fn too_big() -> std::io::Error {
    std::io::Error::other("too large for a zip without zip64")
}

/// MS-DOS time and date (UTC) of `at`.
fn dos_time(at: jiff::Timestamp) -> (u16, u16) {
    let dt = at.to_zoned(jiff::tz::TimeZone::UTC).datetime();
    let year = (dt.year().clamp(1980, 2107) - 1980) as u16;
    let date = (year << 9) | ((dt.month() as u16) << 5) | dt.day() as u16;
    let time = ((dt.hour() as u16) << 11) | ((dt.minute() as u16) << 5) | (dt.second() as u16 / 2);
    (time, date)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(claims: &serde_json::Value) -> String {
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.c2ln",
            engine.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
            engine.encode(claims.to_string())
        )
    }

    #[test]
    fn backend_ids_come_from_the_scope() {
        let t = token(&json!({"scp": "Actions.ExampleScope Actions.Results:run-1:job-2"}));
        assert_eq!(
            backend_ids(&t).expect("ids"),
            BackendIds {
                run: "run-1".into(),
                job: "job-2".into()
            }
        );
        let none = token(&json!({"scp": "Actions.GenericRead:1"}));
        assert!(backend_ids(&none).is_err());
        let short = token(&json!({"scp": "Actions.Results:only"}));
        assert!(backend_ids(&short).is_err());
        assert!(backend_ids("not-a-jwt").is_err());
    }

    #[test]
    fn names_follow_the_service_rules() {
        assert!(check_name("deployment-record-123-abc").is_ok());
        assert!(check_name("a/b").is_err());
        assert!(check_name("a:b").is_err());
        assert!(check_name(" ").is_err());
    }

    #[test]
    fn retention_is_capped_by_the_repository() {
        assert_eq!(expiry(365, Some(90)).0, 90);
        assert_eq!(expiry(30, Some(90)).0, 30);
        assert_eq!(expiry(365, None).0, 365);
        let (_, at) = expiry(1, None);
        let at: jiff::Timestamp = at.parse().expect("RFC 3339");
        let days = (at.as_second() - jiff::Timestamp::now().as_second()) / 86_400;
        assert!((0..=1).contains(&days), "{at}");
    }

    #[test]
    fn an_out_of_range_retention_is_a_usage_error_naming_it() {
        assert_eq!(check_retention(1).expect("1 day"), 1);
        assert_eq!(check_retention(400).expect("400 days"), 400);
        for days in [0, 401, u64::from(u32::MAX)] {
            let error = check_retention(days).expect_err("out of range");
            assert_eq!(error.kind(), Kind::Usage);
            assert!(error.to_string().contains(&format!("`{days}`")), "{error}");
        }
    }

    #[test]
    fn enterprise_server_is_recognised_like_the_toolkit() {
        assert!(!is_ghes(None));
        assert!(!is_ghes(Some("https://github.com")));
        assert!(!is_ghes(Some("https://GitHub.com/")));
        assert!(!is_ghes(Some("https://octo.ghe.com")));
        assert!(!is_ghes(Some("http://github.localhost")));
        assert!(is_ghes(Some("https://github.example")));
        assert!(is_ghes(Some("https://ghe.corp.internal")));
    }

    #[test]
    fn the_signature_is_masked_raw_and_as_encode_uri_component_writes_it() {
        // `(`/`)` are kept by encodeURIComponent: a form the generic percent-encoding misses.
        mask_signature("https://blob.example/c/b?sv=1&sig=Zq%2B9%2F%28x%29%3Dunit");
        for form in [
            "Zq+9/(x)=unit",
            "Zq%2B9%2F(x)%3Dunit",
            "Zq%2B9%2F%28x%29%3Dunit",
        ] {
            assert_eq!(crate::secret::redact(form), "***", "{form}");
        }
        assert_eq!(encode_uri_component("a b+c/(d)!*'~"), "a%20b%2Bc%2F(d)!*'~");
    }

    #[test]
    fn the_backoff_grows_like_the_toolkit() {
        // SAFETY of the assertion: SHIPGATE_RETRY_SCALE is unset in unit tests.
        if std::env::var_os("SHIPGATE_RETRY_SCALE").is_none() {
            assert_eq!(pause(1, None), Duration::from_secs(3));
            assert_eq!(pause(2, None), Duration::from_millis(4500));
            assert_eq!(pause(1, Some(7)), Duration::from_secs(7));
        }
    }

    #[test]
    fn zip_layout_is_readable() {
        let zip = zip(&[
            ("a.json".into(), b"{\"x\":1}".to_vec()),
            ("b.log".into(), vec![b'z'; 100_000]),
        ])
        .expect("zip");
        assert_eq!(&zip[..4], b"PK\x03\x04");
        let end = zip.len() - 22;
        assert_eq!(&zip[end..end + 4], b"PK\x05\x06");
        assert_eq!(u16::from_le_bytes([zip[end + 10], zip[end + 11]]), 2);
        // 100 kB of one byte deflates to almost nothing.
        assert!(zip.len() < 2_000, "{}", zip.len());
    }
}
