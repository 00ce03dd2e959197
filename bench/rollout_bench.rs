//! Helper for `bench/rollout.sh`: a loopback health server to probe (`serve`) and the bare
//! reqwest loop shipgate's probes are compared with (`bare`). The script runs `shipgate
//! rollout` itself against the same server; this program only provides the two references.
//!
//!   rollout-bench serve                    prints `PORT <n>`, then serves healthy answers
//!   rollout-bench serve-prometheus         prints `PORT <n>`, then answers every request with
//!                                          a Prometheus instant-query vector of one series
//!                                          (for `bench/metrics.sh`)
//!   rollout-bench bare URL LANES SECONDS [PACE_MS]
//!                                          GETs URL in LANES concurrent loops (paced every
//!                                          PACE_MS when given) and prints one JSON line:
//!                                          {"probes","seconds","rate","p50_ms"}

#![allow(clippy::print_stdout)]

#[path = "../tests/it/support/health_server.rs"]
mod health_server;

use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve(health_server::Reply::healthy("bench")),
        Some("serve-prometheus") => serve(health_server::Reply::json(
            200,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"version":"bench"},"value":[1700000000.123,"0.0125"]}]}}"#,
        )),
        Some("bare") if args.len() >= 4 => {
            let lanes: usize = args[2].parse().expect("LANES is a number");
            let seconds: f64 = args[3].parse().expect("SECONDS is a number");
            let pace = args
                .get(4)
                .map(|ms| Duration::from_millis(ms.parse().expect("PACE_MS is a number")));
            bare(&args[1], lanes, Duration::from_secs_f64(seconds), pace);
        }
        _ => {
            eprintln!(
                "usage: rollout-bench serve | rollout-bench serve-prometheus | rollout-bench bare URL LANES SECONDS [PACE_MS]"
            );
            std::process::exit(2);
        }
    }
}

fn serve(reply: health_server::Reply) {
    let server = health_server::HealthServer::start(vec![reply]);
    server.no_recording();
    println!("PORT {}", server.port());
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// The same runtime shape and client limits as shipgate's probes, and nothing else: no body
/// parsing, no window, no gates, no log.
fn bare(url: &str, lanes: usize, length: Duration, pace: Option<Duration>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        let started = Instant::now();
        let deadline = started + length;
        let mut tasks = Vec::new();
        for _ in 0..lanes {
            let (client, url) = (client.clone(), url.to_string());
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut ticker = pace.map(tokio::time::interval);
                while Instant::now() < deadline {
                    if let Some(ticker) = ticker.as_mut() {
                        ticker.tick().await;
                    }
                    let sent = Instant::now();
                    if let Ok(response) = client.get(&url).send().await {
                        let _ = response.bytes().await;
                    }
                    latencies.push(sent.elapsed());
                }
                latencies
            }));
        }
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task.await.expect("lane"));
        }
        let seconds = started.elapsed().as_secs_f64();
        latencies.sort();
        let p50 = latencies
            .get(latencies.len().saturating_sub(1) / 2)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        println!(
            "{{\"probes\":{},\"seconds\":{seconds:.3},\"rate\":{:.1},\"p50_ms\":{p50:.3}}}",
            latencies.len(),
            latencies.len() as f64 / seconds
        );
    });
}
