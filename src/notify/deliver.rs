//! Delivering one notification: a POST with retries on transport errors, 429 and 5xx
//! (`retry-after` honoured), the URL never in an error.

use std::time::Duration;

use serde_json::Value;

use crate::actions;
use crate::secret::Secret;
use crate::state::notify::Delivery;

/// Attempts per destination (transport errors, 429, 5xx).
const ATTEMPTS: u32 = 4;
/// 2 s, 4 s, 8 s between attempts, or what the endpoint's `retry-after` asks.
const BACKOFF: crate::util::Backoff = crate::util::Backoff {
    first: Duration::from_secs(2),
    factor: 2.0,
    max: Duration::from_secs(60),
    jitter: false,
};

/// POSTs `payload` with retries; the URL never reaches an error message.
pub(crate) async fn deliver(
    http: &reqwest::Client,
    destination: &'static str,
    url: &Secret,
    payload: &Value,
) -> Delivery {
    let body = crate::secret::redact(&payload.to_string());
    let mut attempt = 0;
    loop {
        attempt += 1;
        let outcome = http
            .post(url.expose())
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        let (retry, after, error) = match outcome {
            Ok(response) if response.status().is_success() => {
                tracing::info!("{destination} notification delivered");
                return Delivery {
                    destination: destination.to_string(),
                    delivered: true,
                    attempts: attempt,
                    error: None,
                };
            }
            Ok(response) => {
                let status = response.status();
                let after: Option<u64> = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse().ok());
                let text = response.text().await.unwrap_or_default();
                let said = crate::text::truncate(
                    &actions::one_line(&crate::github::strip_urls(&text)),
                    200,
                );
                (
                    status.as_u16() == 429 || status.is_server_error(),
                    after,
                    format!(
                        "the {destination} endpoint answered {}{}",
                        status.as_u16(),
                        if said.is_empty() {
                            String::new()
                        } else {
                            format!(" `{said}`")
                        }
                    ),
                )
            }
            Err(e) => (
                true,
                None,
                format!(
                    "cannot reach the {destination} endpoint: {}",
                    crate::secret::redact(&e.without_url().to_string())
                ),
            ),
        };
        if !retry || attempt >= ATTEMPTS {
            return Delivery {
                destination: destination.to_string(),
                delivered: false,
                attempts: attempt,
                error: Some(format!("{error} (after {attempt} attempt(s))")),
            };
        }
        tracing::warn!("{error}; retrying (attempt {attempt} of {ATTEMPTS})");
        tokio::time::sleep(BACKOFF.pause(attempt, after.map(Duration::from_secs))).await;
    }
}
