//! The health check after `shipgate rollback`: each URL polled until it reads healthy.

use std::time::Duration;

use crate::actions;
use crate::process::LogFile;
use crate::state::rollback::Health;

const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// Polls each URL until it reads healthy (degraded is not healthy) or the timeout passes.
pub(crate) async fn verify_health(
    urls: &[String],
    timeout: Duration,
    log: &mut LogFile,
) -> Vec<Health> {
    let http = match reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(http) => http,
        Err(e) => {
            let reason = e.without_url().to_string();
            return urls
                .iter()
                .map(|url| Health {
                    url: crate::secret::redact_url(url),
                    state: "unknown".into(),
                    detail: reason.clone(),
                    attempts: 0,
                })
                .collect();
        }
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let mut out = Vec::new();
    for url in urls {
        let shown = crate::secret::redact_url(url);
        let mut attempts = 0;
        let reading = loop {
            attempts += 1;
            let (state, detail) = match http.get(url).send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let content_type = response
                        .headers()
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let body = response.bytes().await.unwrap_or_default();
                    let reading = crate::health::read(
                        status,
                        content_type.as_deref(),
                        &body,
                        &crate::health::Rule::default(),
                    );
                    let state = serde_json::to_value(reading.state)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_else(|| "unknown".into());
                    (state, reading.detail)
                }
                Err(e) => ("unreachable".to_string(), e.without_url().to_string()),
            };
            log.line(&format!(
                "[{}] health {shown}: {state} ({detail})",
                crate::util::now_rfc3339()
            ));
            if state == "healthy" || tokio::time::Instant::now() >= deadline {
                break (state, detail);
            }
            tokio::time::sleep(crate::util::retry_delay(HEALTH_INTERVAL)).await;
        };
        tracing::info!("health of {shown}: {} ({})", reading.0, reading.1);
        out.push(Health {
            url: shown,
            state: reading.0,
            detail: actions::one_line(&reading.1),
            attempts,
        });
    }
    out
}
