//! Bad input is refused at once, naming it, and changes nothing: input files that are devices,
//! FIFOs or too large are read with a bound, never waited on or swallowed whole.

use std::time::Duration;

use crate::support::Shipgate;

/// A refusal comes at once: a hang would be caught here (a watchdog, not a timing assertion).
const WATCHDOG: Duration = Duration::from_secs(60);

fn refused(run: &crate::support::cli::Run, names: &[&str]) {
    assert_eq!(run.code, 2, "{}", run.stderr);
    for name in names {
        assert!(run.stderr.contains(name), "`{name}` not in: {}", run.stderr);
    }
}

#[test]
fn a_config_that_is_a_device_or_fifo_is_a_usage_error_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fifo = dir.path().join("shipgate.yml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    let run = Shipgate::new(dir.path())
        .args(["--config", "/dev/zero", "validate", "--version", "v1.0.0"])
        .spawn()
        .wait_at_most(WATCHDOG);
    refused(&run, &["/dev/zero", "a device"]);
    let run = Shipgate::new(dir.path())
        .args(["--config"])
        .args([&fifo])
        .args(["validate", "--version", "v1.0.0"])
        .spawn()
        .wait_at_most(WATCHDOG);
    refused(&run, &["shipgate.yml", "FIFO"]);
}

#[test]
fn an_oversized_smoke_suite_is_refused_without_reading_it_all() {
    let dir = tempfile::tempdir().expect("temp dir");
    let suite = dir.path().join("smoke.yml");
    let file = std::fs::File::create(&suite).expect("suite");
    // Sparse: 4 GiB that take no disk.
    file.set_len(4 << 30).expect("set_len");
    let run = Shipgate::new(dir.path())
        .args(["smoke", "--deployment-id", "1-abcdef0", "--suite"])
        .args([&suite])
        .spawn()
        .wait_at_most(WATCHDOG);
    refused(&run, &["smoke.yml", "the most shipgate reads"]);
    let run = Shipgate::new(dir.path())
        .args([
            "smoke",
            "--deployment-id",
            "1-abcdef0",
            "--suite",
            "/dev/zero",
        ])
        .spawn()
        .wait_at_most(WATCHDOG);
    refused(&run, &["/dev/zero", "a device"]);
}

#[test]
fn an_event_payload_that_is_a_device_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = Shipgate::new(dir.path())
        .args(["validate"])
        .env("GITHUB_EVENT_NAME", "workflow_dispatch")
        .env("GITHUB_EVENT_PATH", "/dev/zero")
        .spawn()
        .wait_at_most(WATCHDOG);
    refused(&run, &["/dev/zero", "event payload"]);
}

#[test]
fn a_log_placed_as_a_link_to_a_file_elsewhere_is_never_written_through() {
    let dir = tempfile::tempdir().expect("temp dir");
    let outside = tempfile::tempdir().expect("outside");
    let victim = outside.path().join("victim.txt");
    std::fs::write(&victim, "precious\n").expect("victim");
    let state = dir.path().join(".shipgate/1-abcdef0");
    std::fs::create_dir_all(&state).expect("state dir");
    let log = state.join("smoke-test-logs-1-abcdef0.log");
    std::os::unix::fs::symlink(&victim, &log).expect("symlink");
    let run = Shipgate::new(dir.path())
        .args([
            "smoke",
            "--deployment-id",
            "1-abcdef0",
            "--url",
            "http://127.0.0.1:9/health",
        ])
        .spawn()
        .wait_at_most(WATCHDOG);
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("symbolic link")
            && run.stderr.contains("smoke-test-logs-1-abcdef0.log"),
        "{}",
        run.stderr
    );
    assert_eq!(
        std::fs::read_to_string(&victim).expect("victim"),
        "precious\n"
    );
}

#[test]
fn a_deployment_directory_that_is_a_link_is_refused_and_nothing_lands_elsewhere() {
    let dir = tempfile::tempdir().expect("temp dir");
    let outside = tempfile::tempdir().expect("outside");
    std::fs::create_dir_all(dir.path().join(".shipgate")).expect("root");
    std::os::unix::fs::symlink(outside.path(), dir.path().join(".shipgate/1-abcdef0"))
        .expect("symlink");
    let run = Shipgate::new(dir.path())
        .args([
            "smoke",
            "--deployment-id",
            "1-abcdef0",
            "--url",
            "http://127.0.0.1:9/health",
        ])
        .spawn()
        .wait_at_most(WATCHDOG);
    refused(&run, &[".shipgate/1-abcdef0", "symbolic link"]);
    assert_eq!(
        std::fs::read_dir(outside.path()).expect("outside").count(),
        0,
        "something was written through the link"
    );
}
