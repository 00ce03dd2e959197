//! Benchmark for `shipgate gate` (run by `bench/gate.sh`, ignored in the normal test run):
//! 30 checks that finish one by one over a simulated 20 minutes, polled every simulated 10
//! seconds, by shipgate and by a naive poller (no `If-None-Match`, no backoff) — each against
//! its own fake GitHub with the same timeline. Counts requests sent and requests charged
//! against the rate limit (every answer but `304 Not Modified`).
//!
//! Time is scaled: one simulated second is one real millisecond (`SCALE`), so 20 minutes take
//! 1.2 s and a 10 s poll interval is 10 ms. The figures are request counts, not timings.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::fake_github::checks::{Change, When};
use crate::support::{FakeGitHub, Shipgate, read_tree};

const SHA: &str = "5555555555555555555555555555555555555555";
const CHECKS: u64 = 30;
const SIMULATED_WINDOW_SECS: u64 = 20 * 60;
const SIMULATED_INTERVAL_SECS: u64 = 10;

/// Real milliseconds per simulated second.
const MS_PER_SIMULATED_SECOND: u64 = 10;

/// Real time for `secs` simulated seconds.
fn simulated(secs: u64) -> Duration {
    Duration::from_millis(secs * MS_PER_SIMULATED_SECOND)
}

/// A fake with 30 running checks; check `i` finishes at `i × 40 s` (simulated).
fn world() -> FakeGitHub {
    let gh = FakeGitHub::start();
    gh.repo("octo", "app", "main")
        .commit(SHA, &[])
        .branch("main", SHA);
    let step = SIMULATED_WINDOW_SECS / CHECKS;
    for i in 1..=CHECKS {
        let id = gh.check(SHA, &format!("check {i:02}"), "in_progress");
        gh.schedule(
            When::after(simulated(i * step)),
            Change::check_run(id, "success"),
        );
    }
    gh
}

struct Figures {
    polls: u64,
    sent: usize,
    charged: usize,
}

/// GET `path` on the fake with HTTP/1.1 and no conditional headers; returns the JSON body.
fn naive_get(gh: &FakeGitHub, path: &str) -> Value {
    let host = gh.url().trim_start_matches("http://").to_string();
    let mut stream = TcpStream::connect(&host).expect("connect to the fake");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\nAccept: application/vnd.github+json\r\nUser-Agent: naive-poller\r\nConnection: close\r\n\r\n",
        gh.token()
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or(Value::Null)
}

/// What peers do: list the check runs and the statuses every interval, unconditionally,
/// until every check run has completed.
fn naive(gh: &FakeGitHub) -> Figures {
    let runs = format!("/repos/octo/app/commits/{SHA}/check-runs?per_page=100");
    let statuses = format!("/repos/octo/app/commits/{SHA}/statuses?per_page=100");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut polls = 0;
    loop {
        polls += 1;
        let listing = naive_get(gh, &runs);
        naive_get(gh, &statuses);
        let done = listing["check_runs"].as_array().is_some_and(|runs| {
            runs.len() == CHECKS as usize && runs.iter().all(|r| r["status"] == "completed")
        });
        if done || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(simulated(SIMULATED_INTERVAL_SECS));
    }
    Figures {
        polls,
        sent: gh.total_count(),
        charged: gh.charged_count(),
    }
}

fn shipgate(gh: &FakeGitHub) -> Figures {
    let dir = tempfile::tempdir().expect("workdir");
    let interval = format!("{}ms", simulated(SIMULATED_INTERVAL_SECS).as_millis());
    let run = Shipgate::new(dir.path())
        .env("GITHUB_API_URL", gh.url())
        .env("GITHUB_REPOSITORY", "octo/app")
        .input("github-token", &gh.token())
        .args([
            "gate",
            "--sha",
            SHA,
            "--interval",
            &interval,
            "--discovery-timeout",
            "1s",
            "--timeout",
            "60s",
        ])
        .run();
    run.expect_code(0);
    let state = read_tree(&dir.path().join(".shipgate"))
        .into_iter()
        .find(|(path, _)| path.ends_with("gate.json"))
        .map(|(_, text)| serde_json::from_str::<Value>(&text).expect("gate.json"))
        .expect("gate.json");
    Figures {
        polls: state["polls"].as_u64().unwrap_or(0),
        sent: gh.total_count(),
        charged: gh.charged_count(),
    }
}

#[test]
#[ignore = "benchmark: run `bash bench/gate.sh`"]
#[allow(clippy::print_stdout)] // the figures are this benchmark's output
fn gate_polling_cost() {
    let naive_gh = world();
    let naive = naive(&naive_gh);
    let gate_gh = world();
    let gate = shipgate(&gate_gh);

    println!(
        "gate benchmark: {CHECKS} checks finishing one by one over a simulated {}m, polled every simulated {}s (1 simulated s = {MS_PER_SIMULATED_SECOND} real ms)\n",
        SIMULATED_WINDOW_SECS / 60,
        SIMULATED_INTERVAL_SECS
    );
    println!(
        "{:<10} {:>6} {:>14} {:>18} {:>13}",
        "client", "polls", "requests sent", "charged (non-304)", "answered 304"
    );
    for (name, f) in [("naive", &naive), ("shipgate", &gate)] {
        println!(
            "{:<10} {:>6} {:>14} {:>18} {:>13}",
            name,
            f.polls,
            f.sent,
            f.charged,
            f.sent - f.charged
        );
    }
    // shipgate's first poll reads the check runs, the check-suite count and the statuses.
    let first_poll = 3;
    println!(
        "\nstate changes: {CHECKS}; shipgate charged {} = {first_poll} on the first poll + {} for {CHECKS} changes; unchanged polls charged 0",
        gate.charged,
        gate.charged.saturating_sub(first_poll)
    );
    assert!(
        gate.charged <= first_poll + CHECKS as usize,
        "at most one charged request per state change"
    );
    assert_eq!(
        naive.charged, naive.sent,
        "the naive poller pays for every request"
    );
}
