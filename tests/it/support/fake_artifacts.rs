//! A fake of the Actions results service (Twirp `ArtifactService`) and of the Azure blob store
//! its signed URLs point at, on loopback. It checks what the real service checks — the bearer
//! token, Twirp bodies parsed as protojson (proto or JSON field names, each field's kind, unknown
//! fields refused), the backend ids from the token's `scp`, one artifact per name, a signed URL
//! with the right `sig`, Put Block (base64 ids of one length, at most 64 bytes) / Put Block List,
//! and at finalize the size and `sha256:` of what was committed — answers `ListArtifacts` (with
//! `name_filter`/`id_filter`, sizes and digests) and `GetSignedArtifactURL`, serves the blob back
//! with its content type, and keeps everything for the test to inspect
//! ([`FakeArtifacts::artifacts`], [`FakeArtifacts::calls`], [`unzip`]). GitHub's own client
//! (`@actions/artifact`, `tests/it/artifacts_official.rs`) uploads to it and downloads from it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Read as _;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::stub_http::{self, Incoming, Outgoing, Server};

const SERVICE: &str = "/twirp/github.actions.results.api.v1.ArtifactService/";
pub const RUN_BACKEND_ID: &str = "c4d5e6f7-run-backend-0001";
pub const JOB_BACKEND_ID: &str = "a1b2c3d4-job-backend-0002";

/// An artifact as the service holds it.
#[derive(Clone, Debug)]
pub struct Stored {
    pub id: u64,
    pub name: String,
    pub version: i64,
    pub mime_type: Option<String>,
    pub expires_at: Option<String>,
    pub finalized: bool,
    /// `size` and `hash` as FinalizeArtifact sent them.
    pub size: Option<String>,
    pub hash: Option<String>,
    /// The committed blob.
    pub content: Vec<u8>,
    pub blob_content_type: Option<String>,
}

/// One call: a Twirp method name, or `PutBlock` / `PutBlockList`.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    pub status: u16,
    pub body: Value,
    /// Request headers (lower-case names).
    pub headers: Vec<(String, String)>,
}

#[derive(Default)]
struct Blob {
    blocks: HashMap<String, Vec<u8>>,
    committed: Option<Vec<u8>>,
    content_type: Option<String>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    artifacts: Vec<Stored>,
    blobs: BTreeMap<u64, Blob>,
    calls: Vec<Call>,
    faults: HashMap<String, VecDeque<u16>>,
}

pub struct FakeArtifacts {
    server: Server,
    token: String,
    sig: String,
    state: Arc<Mutex<State>>,
}

impl FakeArtifacts {
    pub fn start() -> FakeArtifacts {
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let token = format!(
            "{}.{}.{}",
            engine.encode(r#"{"typ":"JWT","alg":"RS256","x5t":"fake"}"#),
            engine.encode(
                json!({
                    "nameid": "dddddddd-dddd-dddd-dddd-dddddddddddd",
                    "scp": format!("Actions.ExampleScope Actions.Results:{RUN_BACKEND_ID}:{JOB_BACKEND_ID}"),
                    "iss": "vstoken.actions.githubusercontent.com",
                })
                .to_string()
            ),
            engine.encode("fake-signature-runtime-token-7Qz")
        );
        let sig = "FakeSasSig%2Bq9V7rW3xY5zA1bC4dE6fG8hJ0kL%3D".to_string();
        let state: Arc<Mutex<State>> = Arc::default();
        let (s, t, g) = (Arc::clone(&state), token.clone(), sig.clone());
        let base: Arc<Mutex<String>> = Arc::default();
        let b = Arc::clone(&base);
        let server = stub_http::serve(move |req| {
            let base = b.lock().expect("base").clone();
            handle(&mut s.lock().expect("state"), &t, &g, &base, &req)
        });
        *base.lock().expect("base") = server.url.clone();
        FakeArtifacts {
            server,
            token,
            sig,
            state,
        }
    }

    /// `ACTIONS_RESULTS_URL` (with a path, as the runner passes it: the client keeps the origin).
    pub fn results_url(&self) -> String {
        format!("{}/some/runner/path/", self.server.url)
    }

    /// `ACTIONS_RUNTIME_TOKEN`.
    pub fn token(&self) -> String {
        self.token.clone()
    }

    /// The signed URL's `sig` (decoded), a secret.
    pub fn sig(&self) -> String {
        url::form_urlencoded::parse(format!("sig={}", self.sig).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    }

    /// The next `count` calls of `method` (a Twirp method, `PutBlock` or `PutBlockList`)
    /// answer `status`.
    pub fn fail_next(&self, method: &str, count: usize, status: u16) {
        let mut state = self.state.lock().expect("state");
        let queue = state.faults.entry(method.to_string()).or_default();
        for _ in 0..count {
            queue.push_back(status);
        }
    }

    pub fn artifacts(&self) -> Vec<Stored> {
        self.state.lock().expect("state").artifacts.clone()
    }

    pub fn artifact(&self, name: &str) -> Stored {
        self.artifacts()
            .into_iter()
            .find(|a| a.name == name)
            .unwrap_or_else(|| panic!("no artifact `{name}` in {:?}", self.names()))
    }

    pub fn names(&self) -> Vec<String> {
        self.artifacts().into_iter().map(|a| a.name).collect()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().expect("state").calls.clone()
    }

    pub fn count(&self, method: &str) -> usize {
        self.calls().iter().filter(|c| c.method == method).count()
    }
}

fn twirp_error(status: u16, code: &str, msg: &str) -> Outgoing {
    Outgoing::json(status, &json!({ "code": code, "msg": msg }))
}

fn handle(state: &mut State, token: &str, sig: &str, base: &str, req: &Incoming) -> Outgoing {
    let method = if let Some(method) = req.path.strip_prefix(SERVICE) {
        method.to_string()
    } else if req.path.starts_with("/blob/") && req.method == "GET" {
        "GetBlob".to_string()
    } else if req.path.starts_with("/blob/") && req.method == "PUT" {
        let comp = req.query_param("comp").unwrap_or_default();
        if comp == "blocklist" {
            "PutBlockList"
        } else {
            "PutBlock"
        }
        .to_string()
    } else {
        "other".to_string()
    };
    // A fault answers instead of the service (nothing is processed) but still counts.
    let reply = match state.faults.get_mut(&method).and_then(VecDeque::pop_front) {
        Some(status) => twirp_error(status, "unavailable", "injected fault"),
        None if method == "GetBlob" => get_blob(state, sig, req),
        None if method.starts_with("Put") => blob(state, sig, req),
        None if method != "other" => twirp(state, token, sig, base, &method, req),
        None => Outgoing::new(404, "not found"),
    };
    let body = if method == "PutBlockList" {
        json!({ "query": req.query, "length": req.body.len(), "xml": req.text() })
    } else if method.starts_with("Put") || method == "GetBlob" {
        json!({ "query": req.query, "length": req.body.len() })
    } else {
        req.json()
    };
    state.calls.push(Call {
        method,
        status: reply.status,
        body,
        headers: req.headers.clone(),
    });
    reply
}

fn twirp(
    state: &mut State,
    token: &str,
    sig: &str,
    base: &str,
    method: &str,
    req: &Incoming,
) -> Outgoing {
    if req.method != "POST" {
        return twirp_error(405, "bad_route", "POST only");
    }
    if req.header("authorization") != Some(&format!("Bearer {token}")) {
        return twirp_error(401, "unauthenticated", "invalid token");
    }
    if !req
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/json"))
    {
        return twirp_error(415, "bad_route", "content-type must be application/json");
    }
    let body = match proto_fields(method, &req.body) {
        Ok(body) => body,
        Err(message) => return twirp_error(400, "malformed", &message),
    };
    if body["workflow_run_backend_id"] != RUN_BACKEND_ID
        || body["workflow_job_run_backend_id"] != JOB_BACKEND_ID
    {
        return twirp_error(
            400,
            "invalid_argument",
            "backend ids do not match the token",
        );
    }
    let name = body["name"].as_str().unwrap_or("").to_string();
    match method {
        "CreateArtifact" => {
            if name.is_empty() {
                return twirp_error(400, "invalid_argument", "name is required");
            }
            if state.artifacts.iter().any(|a| a.name == name) {
                return twirp_error(
                    409,
                    "already_exists",
                    "an artifact with this name already exists on the workflow run",
                );
            }
            state.next_id += 1;
            let id = state.next_id;
            state.artifacts.push(Stored {
                id,
                name: name.clone(),
                version: body["version"].as_i64().unwrap_or(0),
                mime_type: body["mime_type"].as_str().map(str::to_string),
                expires_at: body["expires_at"].as_str().map(str::to_string),
                finalized: false,
                size: None,
                hash: None,
                content: Vec::new(),
                blob_content_type: None,
            });
            state.blobs.insert(id, Blob::default());
            Outgoing::json(
                200,
                &json!({
                    "ok": true,
                    "signed_upload_url": format!(
                        "{base}/blob/{RUN_BACKEND_ID}/{id}?sv=2023-11-03&se=2099-01-01T00%3A00%3A00Z&sr=b&sp=cw&sig={sig}"
                    ),
                }),
            )
        }
        "FinalizeArtifact" => {
            let Some(index) = state
                .artifacts
                .iter()
                .position(|a| a.name == name && !a.finalized)
            else {
                return twirp_error(404, "not_found", "no artifact in progress with this name");
            };
            let id = state.artifacts[index].id;
            let Some(content) = state.blobs.get(&id).and_then(|b| b.committed.clone()) else {
                return twirp_error(400, "failed_precondition", "the blob was not committed");
            };
            let size = body["size"].as_str().map(str::to_string);
            let hash = body["hash"].as_str().map(str::to_string);
            if size.as_deref() != Some(content.len().to_string().as_str()) {
                return twirp_error(
                    400,
                    "invalid_argument",
                    "size (a string) does not match the blob",
                );
            }
            let expected = format!("sha256:{}", hex(&Sha256::digest(&content)));
            if hash.as_deref() != Some(expected.as_str()) {
                return twirp_error(400, "invalid_argument", "hash does not match the blob");
            }
            let content_type = state.blobs.get(&id).and_then(|b| b.content_type.clone());
            let artifact = &mut state.artifacts[index];
            artifact.finalized = true;
            artifact.size = size;
            artifact.hash = hash;
            artifact.content = content;
            artifact.blob_content_type = content_type;
            Outgoing::json(200, &json!({ "ok": true, "artifact_id": id.to_string() }))
        }
        "ListArtifacts" => {
            let artifacts: Vec<Value> = state
                .artifacts
                .iter()
                .filter(|a| a.finalized)
                .filter(|a| body["name_filter"].as_str().is_none_or(|f| f == a.name))
                .filter(|a| {
                    body["id_filter"]
                        .as_str()
                        .is_none_or(|f| f == a.id.to_string())
                })
                .map(|a| {
                    let mut listed = json!({
                        "workflow_run_backend_id": RUN_BACKEND_ID,
                        "workflow_job_run_backend_id": JOB_BACKEND_ID,
                        "database_id": a.id.to_string(),
                        "name": a.name,
                        "size": a.content.len().to_string(),
                        "created_at": "2026-01-01T00:00:00Z",
                    });
                    if let Some(hash) = &a.hash {
                        listed["digest"] = json!(hash);
                    }
                    listed
                })
                .collect();
            Outgoing::json(200, &json!({ "artifacts": artifacts }))
        }
        "GetSignedArtifactURL" => {
            let Some(artifact) = state
                .artifacts
                .iter()
                .find(|a| a.name == name && a.finalized)
            else {
                return twirp_error(404, "not_found", "no artifact with this name");
            };
            Outgoing::json(
                200,
                &json!({
                    "signed_url": format!(
                        "{base}/blob/{RUN_BACKEND_ID}/{}?sv=2023-11-03&se=2099-01-01T00%3A00%3A00Z&sr=b&sp=r&sig={sig}",
                        artifact.id
                    ),
                }),
            )
        }
        _ => twirp_error(404, "bad_route", "no such method"),
    }
}

/// The request fields of each method, as `results/api/v1/artifact.proto` declares them (proto
/// name, JSON name, kind).
fn fields(method: &str) -> Option<&'static [(&'static str, &'static str, Kind)]> {
    use Kind::*;
    const IDS: [(&str, &str, Kind); 2] = [
        ("workflow_run_backend_id", "workflowRunBackendId", Text),
        (
            "workflow_job_run_backend_id",
            "workflowJobRunBackendId",
            Text,
        ),
    ];
    Some(match method {
        "CreateArtifact" => &[
            IDS[0],
            IDS[1],
            ("name", "name", Text),
            ("expires_at", "expiresAt", Timestamp),
            ("version", "version", Int32),
            ("mime_type", "mimeType", Text),
        ],
        "FinalizeArtifact" => &[
            IDS[0],
            IDS[1],
            ("name", "name", Text),
            ("size", "size", Int64),
            ("hash", "hash", Text),
        ],
        "ListArtifacts" => &[
            IDS[0],
            IDS[1],
            ("name_filter", "nameFilter", Text),
            ("id_filter", "idFilter", Int64),
        ],
        "GetSignedArtifactURL" | "DeleteArtifact" => &[IDS[0], IDS[1], ("name", "name", Text)],
        _ => return None,
    })
}

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Int32,
    /// proto3 JSON: a decimal string (a number is accepted too).
    Int64,
    /// proto3 JSON: an RFC 3339 string in UTC (`Z`).
    Timestamp,
}

/// Parses a Twirp JSON body as protojson does: every field known to the method (proto or JSON
/// name) and of its JSON kind, nothing else. Returns the body keyed by proto names, with int64
/// values as strings.
fn proto_fields(method: &str, body: &[u8]) -> Result<Value, String> {
    let Some(fields) = fields(method) else {
        return Ok(Value::Null);
    };
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) else {
        return Err("the body is not a JSON object".into());
    };
    let mut out = serde_json::Map::new();
    for (key, value) in object {
        let Some((proto, _, kind)) = fields.iter().find(|(p, j, _)| *p == key || *j == key) else {
            return Err(format!("unknown field `{key}` for {method}"));
        };
        if value.is_null() {
            continue;
        }
        let value = match (kind, &value) {
            (Kind::Text, Value::String(_)) => value,
            (Kind::Int32, Value::Number(n))
                if n.as_i64().is_some_and(|v| i32::try_from(v).is_ok()) =>
            {
                value
            }
            (Kind::Int64, Value::String(text)) if text.parse::<i64>().is_ok() => value,
            (Kind::Int64, Value::Number(n)) if n.as_i64().is_some() => json!(n.to_string()),
            (Kind::Timestamp, Value::String(text))
                if text.ends_with('Z') && text.parse::<jiff::Timestamp>().is_ok() =>
            {
                value
            }
            _ => {
                return Err(format!(
                    "field `{key}` of {method} has the wrong type: {value}"
                ));
            }
        };
        out.insert(proto.to_string(), value);
    }
    Ok(Value::Object(out))
}

fn blob(state: &mut State, sig: &str, req: &Incoming) -> Outgoing {
    let expected = url::form_urlencoded::parse(format!("sig={sig}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned());
    if req.query_param("sig") != expected {
        return Outgoing::new(403, "<Error><Code>AuthenticationFailed</Code></Error>");
    }
    let Some(id) = req
        .path
        .rsplit('/')
        .next()
        .and_then(|s| s.parse::<u64>().ok())
    else {
        return Outgoing::new(404, "<Error><Code>BlobNotFound</Code></Error>");
    };
    let Some(blob) = state.blobs.get_mut(&id) else {
        return Outgoing::new(404, "<Error><Code>BlobNotFound</Code></Error>");
    };
    match req.query_param("comp").as_deref() {
        Some("block") => {
            let Some(block_id) = req.query_param("blockid") else {
                return Outgoing::new(
                    400,
                    "<Error><Code>MissingRequiredQueryParameter</Code></Error>",
                );
            };
            // Azure: valid base64, at most 64 bytes before encoding, all of one length.
            if base64::engine::general_purpose::STANDARD
                .decode(&block_id)
                .map_or(true, |raw| raw.len() > 64)
            {
                return Outgoing::new(
                    400,
                    "<Error><Code>InvalidQueryParameterValue</Code></Error>",
                );
            }
            if let Some(other) = blob.blocks.keys().next()
                && other.len() != block_id.len()
            {
                return Outgoing::new(400, "<Error><Code>InvalidBlobOrBlock</Code></Error>");
            }
            blob.blocks.insert(block_id, req.body.clone());
            Outgoing::new(201, "")
        }
        Some("blocklist") => {
            let text = req.text();
            let mut content = Vec::new();
            for part in text.split("<Latest>").skip(1) {
                let Some((id, _)) = part.split_once("</Latest>") else {
                    return Outgoing::new(400, "<Error><Code>InvalidXmlDocument</Code></Error>");
                };
                let Some(block) = blob.blocks.get(id) else {
                    return Outgoing::new(400, "<Error><Code>InvalidBlockList</Code></Error>");
                };
                content.extend_from_slice(block);
            }
            blob.committed = Some(content);
            blob.content_type = req.header("x-ms-blob-content-type").map(str::to_string);
            Outgoing::new(201, "")
        }
        _ => Outgoing::new(
            400,
            "<Error><Code>InvalidQueryParameterValue</Code></Error>",
        ),
    }
}

/// A download through a signed URL from `GetSignedArtifactURL`: the finalized blob, with the
/// content type its upload set (which is how the official client tells a zip to unpack).
fn get_blob(state: &State, sig: &str, req: &Incoming) -> Outgoing {
    let expected = url::form_urlencoded::parse(format!("sig={sig}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned());
    if req.query_param("sig") != expected {
        return Outgoing::new(403, "<Error><Code>AuthenticationFailed</Code></Error>");
    }
    let id = req
        .path
        .rsplit('/')
        .next()
        .and_then(|s| s.parse::<u64>().ok());
    let Some(artifact) = state
        .artifacts
        .iter()
        .find(|a| Some(a.id) == id && a.finalized)
    else {
        return Outgoing::new(404, "<Error><Code>BlobNotFound</Code></Error>");
    };
    Outgoing::new(200, artifact.content.clone()).header(
        "content-type",
        artifact
            .blob_content_type
            .as_deref()
            .unwrap_or("application/octet-stream"),
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Reads a zip through its central directory (stored or deflated entries), checking each CRC:
/// an independent reader of what shipgate writes.
pub fn unzip(zip: &[u8]) -> Vec<(String, Vec<u8>)> {
    let u16_at = |i: usize| u16::from_le_bytes([zip[i], zip[i + 1]]) as usize;
    let u32_at =
        |i: usize| u32::from_le_bytes([zip[i], zip[i + 1], zip[i + 2], zip[i + 3]]) as usize;
    let end = (0..=zip.len().saturating_sub(22))
        .rev()
        .find(|&i| zip[i..i + 4] == [0x50, 0x4b, 0x05, 0x06])
        .expect("end of central directory");
    let count = u16_at(end + 10);
    let mut at = u32_at(end + 16);
    let mut out = Vec::new();
    for _ in 0..count {
        assert_eq!(
            zip[at..at + 4],
            [0x50, 0x4b, 0x01, 0x02],
            "central directory header"
        );
        let method = u16_at(at + 10);
        let crc = u32_at(at + 16) as u32;
        let packed = u32_at(at + 20);
        let size = u32_at(at + 24);
        let name_len = u16_at(at + 28);
        let extra = u16_at(at + 30);
        let comment = u16_at(at + 32);
        let local = u32_at(at + 42);
        let name =
            String::from_utf8(zip[at + 46..at + 46 + name_len].to_vec()).expect("UTF-8 name");
        assert_eq!(
            zip[local..local + 4],
            [0x50, 0x4b, 0x03, 0x04],
            "local header"
        );
        let data = local + 30 + u16_at(local + 26) + u16_at(local + 28);
        let raw = &zip[data..data + packed];
        let bytes = match method {
            0 => raw.to_vec(),
            8 => {
                let mut out = Vec::new();
                flate2::read::DeflateDecoder::new(raw)
                    .read_to_end(&mut out)
                    .expect("inflate");
                out
            }
            other => panic!("unexpected compression method {other}"),
        };
        assert_eq!(bytes.len(), size, "size of {name}");
        let mut check = flate2::Crc::new();
        check.update(&bytes);
        assert_eq!(check.sum(), crc, "CRC of {name}");
        out.push((name, bytes));
        at += 46 + name_len + extra + comment;
    }
    out
}
