//! Metric backends for the rollout's metric gates: the Prometheus HTTP API (`prometheus`, which
//! Thanos, Mimir, VictoriaMetrics and Grafana Cloud serve too), firing alerts from Prometheus or
//! Alertmanager (`alerts`), any JSON endpoint and a location in its answer (`web`, Argo's `web`
//! provider), conditions on a value (`condition`) and query templates (`template`).

pub(crate) mod alerts;
pub(crate) mod condition;
pub(crate) mod json_path;
pub(crate) mod prometheus;
pub(crate) mod template;
pub(crate) mod web;

use crate::error::{Classify, Kind};

/// What can go wrong talking to a metric backend. Messages name the backend by its address
/// (never a credential) and quote its own error text as one redacted line.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// Unreachable, 5xx, 429 or timed out, on every attempt.
    #[error("{backend} did not answer after {attempts} attempt(s): {detail}")]
    Unavailable {
        backend: String,
        attempts: u32,
        detail: String,
    },
    /// A 4xx answer or a `"status":"error"` body.
    #[error("{backend} refused the request (HTTP {status}): {detail}")]
    Refused {
        backend: String,
        status: u16,
        detail: String,
    },
    /// An answer that is not what the API documents.
    #[error("{backend} answered something unexpected: {detail}")]
    Malformed { backend: String, detail: String },
    /// Bad settings: the address, a header.
    #[error("{0}")]
    Setup(String),
}

impl Classify for Error {
    fn kind(&self) -> Kind {
        match self {
            // A query Prometheus cannot parse: fix the configuration.
            Error::Refused { status: 400, .. } | Error::Setup(_) => Kind::Usage,
            _ => Kind::Dependency,
        }
    }
}
