//! The deployment lease (one deployment per environment at a time, across runners): the real
//! binary against SeaweedFS (which honours `If-None-Match` and `If-Match`) and a directory.
//! Outcomes only, never durations: expiry is made fast with a small `--lease-ttl`.

use std::path::Path;

use serde_json::Value;

use crate::backup::{Case, s3, wait_for};
use crate::support::cli::Run;
use crate::support::s3::S3Server;
use crate::support::{Shipgate, assert_no_secret};

/// `shipgate` in `case`'s workdir as deployment `id` of `production`, with `server`'s S3
/// credentials.
fn shipgate(case: &Case, server: &S3Server, id: &str) -> Shipgate {
    let mut cmd = Shipgate::new(case.path());
    for (key, value) in server.aws_env() {
        cmd.env(key, value);
    }
    cmd.input("deployment-id", id)
        .input("environment", "production");
    cmd
}

fn lease_object(server: &S3Server, bucket: &str) -> Option<Value> {
    server
        .get(bucket, "deploys/lease-production.json")
        .map(|body| serde_json::from_slice(&body).expect("the lease is JSON"))
}

/// Spawns one `lease take` per id at once; the runs, in the order of `ids`.
fn race(case: &Case, server: &S3Server, destination: &str, ids: &[&str]) -> Vec<Run> {
    let running: Vec<_> = ids
        .iter()
        .map(|id| {
            shipgate(case, server, id)
                .args(["lease", "take", "--destination", destination])
                .spawn()
        })
        .collect();
    running.into_iter().map(|r| r.wait()).collect()
}

/// Exactly one of the racers holds the lease; every other one was refused (exit 1) naming the
/// winner, and wrote nothing.
fn exactly_one_wins(case: &Case, ids: &[&str], runs: &[Run]) -> String {
    let winners: Vec<&str> = ids
        .iter()
        .zip(runs)
        .filter(|(_, run)| run.code == 0)
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one taker wins: {:?}",
        runs.iter()
            .map(|r| (r.code, r.stderr.clone()))
            .collect::<Vec<_>>()
    );
    let winner = winners[0];
    for (id, run) in ids.iter().zip(runs) {
        if *id == winner {
            continue;
        }
        run.expect_code(1);
        let stderr = run.visible_stderr();
        assert!(
            stderr.contains(&format!(
                "another deployment holds the environment `production`: deployment `{winner}`"
            )),
            "{stderr}"
        );
        assert!(stderr.contains("nothing was changed"), "{stderr}");
        assert!(
            !case.path().join(".shipgate").join(id).exists(),
            "a refused taker writes no state"
        );
    }
    winner.to_string()
}

fn lease_json(case: &Case, id: &str) -> Value {
    let path = case.path().join(".shipgate").join(id).join("lease.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("lease.json")).expect("JSON")
}

#[test]
fn two_takers_race_on_s3_exactly_one_holds_the_other_is_refused_naming_it() {
    let bucket = s3().create_bucket();
    let case = Case::new();
    let destination = format!("s3://{bucket}/deploys");
    let ids = ["race-a", "race-b", "race-c"];
    let runs = race(&case, s3(), &destination, &ids);
    let winner = exactly_one_wins(&case, &ids, &runs);
    let lease = lease_object(s3(), &bucket).expect("the lease object");
    assert_eq!(lease["holder"]["deployment_id"], winner.as_str());
    assert_eq!(lease_json(&case, &winner)["status"], "held");
    for run in &runs {
        assert_no_secret(
            s3().secret_key(),
            run.everything()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str())),
        );
    }
    // `lease show` names the holder.
    let show = shipgate(&case, s3(), "someone")
        .args([
            "--format",
            "json",
            "lease",
            "show",
            "--destination",
            &destination,
        ])
        .run();
    show.expect_code(0);
    assert_eq!(show.json()["state"], "held");
    assert_eq!(
        show.json()["lease"]["holder"]["deployment_id"],
        winner.as_str()
    );
    // The winner releases it; the next taker proceeds.
    shipgate(&case, s3(), &winner)
        .args(["lease", "release"])
        .run()
        .expect_code(0);
    assert_eq!(lease_json(&case, &winner)["status"], "released");
    assert!(lease_object(s3(), &bucket).is_none());
    shipgate(&case, s3(), "race-next")
        .args(["lease", "take", "--destination", &destination])
        .run()
        .expect_code(0);
}

#[test]
fn two_takers_race_on_a_directory_exactly_one_holds() {
    let case = Case::new();
    let dir = tempfile::tempdir().expect("destination");
    let destination = format!("file://{}", dir.path().display());
    let ids = ["dir-a", "dir-b", "dir-c", "dir-d"];
    let runs = race(&case, s3(), &destination, &ids);
    let winner = exactly_one_wins(&case, &ids, &runs);
    let lease: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("lease-production.json")).expect("the lease file"),
    )
    .expect("JSON");
    assert_eq!(lease["holder"]["deployment_id"], winner.as_str());
    // Another deployment cannot release it; its holder can.
    shipgate(&case, s3(), &winner)
        .args(["lease", "release"])
        .run()
        .expect_code(0);
    assert!(!dir.path().join("lease-production.json").exists());
}

/// Waits until the holder's renewals have started (its lease exists).
fn wait_for_lease(server: &S3Server, bucket: &str, id: &str) -> Value {
    let mut found = None;
    wait_for("the holder to take the lease", || {
        found = lease_object(server, bucket).filter(|l| l["holder"]["deployment_id"] == id);
        found.is_some()
    });
    found.expect("lease")
}

#[test]
fn a_holder_killed_with_sigkill_lets_its_lease_expire_and_the_next_takes_it_over() {
    let bucket = s3().create_bucket();
    let case = Case::new();
    let destination = format!("s3://{bucket}/deploys");
    let mut holder = shipgate(&case, s3(), "killed")
        .args([
            "lease",
            "take",
            "--destination",
            &destination,
            "--lease-ttl",
            "4s",
            "--hold",
            "10m",
        ])
        .spawn();
    wait_for_lease(s3(), &bucket, "killed");
    // While it lives (and renews), another deployment is refused at once.
    let refused = shipgate(&case, s3(), "next")
        .args(["lease", "take", "--destination", &destination])
        .run();
    refused.expect_code(1);
    assert!(
        refused.visible_stderr().contains("deployment `killed`"),
        "{}",
        refused.stderr
    );
    holder.kill();
    let _ = holder.wait();
    // Two waiting takers: each waits for the dead holder's lease to expire; exactly one takes
    // it over from `killed` (the other's `If-Match` on the same version fails), and the other
    // takes it over later from the first (whose lease, never renewed, expires in turn).
    let waiters: Vec<_> = ["next-1", "next-2"]
        .iter()
        .map(|id| {
            shipgate(&case, s3(), id)
                .actions()
                .args([
                    "lease",
                    "take",
                    "--destination",
                    &destination,
                    "--lease-ttl",
                    "4s",
                    "--lease-wait",
                    "10m",
                ])
                .spawn()
        })
        .collect();
    let runs: Vec<Run> = waiters.into_iter().map(|w| w.wait()).collect();
    let mut from = Vec::new();
    for run in &runs {
        run.expect_code(0);
        let stderr = run.visible_stderr();
        assert!(
            stderr.contains("waiting up to 10m for the lease of `production`"),
            "{stderr}"
        );
        let took = stderr
            .lines()
            .find_map(|l| {
                l.split_once(
                    "::warning title=deployment lease::took over the expired lease of `production` from deployment `",
                )
            })
            .map(|(_, rest)| rest.split('`').next().unwrap_or_default().to_string())
            .unwrap_or_else(|| panic!("the takeover is logged: {stderr}"));
        from.push(took);
    }
    from.sort();
    assert!(
        from == ["killed", "next-1"] || from == ["killed", "next-2"],
        "one took over from the dead holder, the other from the first: {from:?}"
    );
    let last = if from[1] == "next-1" {
        "next-2"
    } else {
        "next-1"
    };
    let lease = lease_object(s3(), &bucket).expect("lease");
    assert_eq!(lease["holder"]["deployment_id"], last);
    assert_eq!(lease["takeover_of"]["deployment_id"], from[1].as_str());
    let first = from[1].as_str();
    assert_eq!(
        lease_json(&case, first)["takeover_of"]["deployment_id"],
        "killed"
    );
}

/// The fixture's promise the lease relies on: a stale `If-Match` is refused, on a write and on
/// a delete.
#[test]
fn seaweedfs_refuses_a_put_or_delete_with_a_stale_if_match() {
    let bucket = s3().create_bucket();
    s3().put(&bucket, "k", b"one");
    let status = s3().block_on(async {
        let client = s3().client();
        client
            .put_object()
            .bucket(&bucket)
            .key("k")
            .if_match("\"0123456789abcdef0123456789abcdef\"")
            .body(b"two".to_vec().into())
            .send()
            .await
            .err()
            .and_then(|e| e.raw_response().map(|r| r.status().as_u16()))
    });
    assert_eq!(status, Some(412));
    assert_eq!(s3().get(&bucket, "k").as_deref(), Some(&b"one"[..]));
    let delete = s3().block_on(async {
        s3().client()
            .delete_object()
            .bucket(&bucket)
            .key("k")
            .if_match("\"0123456789abcdef0123456789abcdef\"")
            .send()
            .await
            .err()
            .and_then(|e| e.raw_response().map(|r| r.status().as_u16()))
    });
    assert_eq!(delete, Some(412));
    assert_eq!(s3().get(&bucket, "k").as_deref(), Some(&b"one"[..]));
}

#[test]
fn renewals_survive_a_transient_s3_outage() {
    let mut server = S3Server::start();
    let bucket = server.create_bucket();
    let case = Case::new();
    let destination = format!("s3://{bucket}/deploys");
    let mut holder = shipgate(&case, &server, "steady")
        .args([
            "lease",
            "take",
            "--destination",
            &destination,
            "--lease-ttl",
            "3s",
            "--hold",
            "10m",
        ])
        .spawn();
    let first = wait_for_lease(&server, &bucket, "steady");
    wait_for("a first renewal", || {
        lease_object(&server, &bucket).is_some_and(|l| l["renewed_at"] != first["renewed_at"])
    });
    server.kill();
    wait_for("a renewal to fail", || {
        holder
            .stderr()
            .contains("cannot renew the deployment lease")
    });
    server.restart();
    let before = lease_object(&server, &bucket).expect("the lease survives the restart");
    wait_for("a renewal after the restart", || {
        lease_object(&server, &bucket).is_some_and(|l| l["renewed_at"] != before["renewed_at"])
    });
    assert!(
        !holder.exited(),
        "the holder keeps its lease: {}",
        holder.stderr()
    );
    let lease = lease_object(&server, &bucket).expect("lease");
    assert_eq!(lease["holder"]["deployment_id"], "steady");
    assert_eq!(lease["token"], first["token"], "the same lease, renewed");
    // Still held: another deployment is refused.
    shipgate(&case, &server, "other")
        .args(["lease", "take", "--destination", &destination])
        .run()
        .expect_code(1);
    holder.kill();
    let _ = holder.wait();
}

#[test]
fn lease_break_needs_a_reason_logs_who_and_why_and_lets_the_next_taker_in() {
    let case = Case::new();
    let dir = tempfile::tempdir().expect("destination");
    let destination = format!("file://{}", dir.path().display());
    shipgate(&case, s3(), "stuck")
        .args(["lease", "take", "--destination", &destination])
        .run()
        .expect_code(0);
    let before = snapshot(dir.path());
    let no_reason = shipgate(&case, s3(), "operator")
        .args(["lease", "break", "--destination", &destination])
        .run();
    no_reason.expect_code(2);
    assert!(
        no_reason.visible_stderr().contains("--reason"),
        "{}",
        no_reason.stderr
    );
    assert_eq!(
        snapshot(dir.path()),
        before,
        "a usage error changes nothing"
    );
    let broken = shipgate(&case, s3(), "operator")
        .actions()
        .env("GITHUB_ACTOR", "oncall-ana")
        .args([
            "lease",
            "break",
            "--destination",
            &destination,
            "--reason",
            "runner lost in the outage",
        ])
        .run();
    broken.expect_code(0);
    let stderr = broken.visible_stderr();
    assert!(
        stderr.contains("`oncall-ana` broke the lease of `production`")
            && stderr.contains("deployment `stuck`")
            && stderr.contains("runner lost in the outage"),
        "{stderr}"
    );
    assert!(broken.summary.contains("runner lost in the outage"));
    shipgate(&case, s3(), "after")
        .args(["lease", "take", "--destination", &destination])
        .run()
        .expect_code(0);
    // The broken holder's release finds another holder and says so, without deleting it.
    let release = shipgate(&case, s3(), "stuck")
        .args(["lease", "release"])
        .run();
    release.expect_code(0);
    assert_eq!(lease_json(&case, "stuck")["status"], "lost");
    assert!(dir.path().join("lease-production.json").exists());
}

fn snapshot(dir: &Path) -> Vec<(String, String)> {
    crate::support::read_tree(dir)
}

/// `shipgate pipeline` (one step) against a lease another deployment holds: refused at the
/// backup naming the holder, nothing of the holder's touched; once released, the pipeline takes
/// it at the backup, the record lists it, and it is released at the end.
#[test]
fn a_pipeline_is_refused_while_another_deployment_holds_the_environment_then_proceeds() {
    let db = crate::backup::seeded("lease_pipeline");
    let case = Case::new();
    let dir = tempfile::tempdir().expect("destination");
    let destination = format!("file://{}", dir.path().display());
    let lease_file = dir.path().join("lease-production.json");
    shipgate(&case, s3(), "holder")
        .args(["lease", "take", "--destination", &destination])
        .run()
        .expect_code(0);
    let held = std::fs::read(&lease_file).expect("the holder's lease");
    let pipeline = |id: &str| {
        let mut cmd = shipgate(&case, s3(), id);
        cmd.actions()
            .env("GITHUB_SERVER_URL", "https://github.example")
            .env("GITHUB_REPOSITORY", "octo/app")
            .env("GITHUB_RUN_ID", "4242")
            .env("GITHUB_ACTOR", "release-engineer")
            .input("database-url", &crate::backup::pg().url(&db))
            .input("destination", &destination)
            .input("version", "v1.0.0")
            .args(["pipeline", "--stages", "backup,record"]);
        cmd.run()
    };
    let refused = pipeline("second");
    refused.expect_code(1);
    let stderr = refused.visible_stderr();
    assert!(
        stderr
            .contains("another deployment holds the environment `production`: deployment `holder`"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&lease_file).expect("lease"),
        held,
        "untouched"
    );
    let state = case.path().join(".shipgate").join("second");
    assert!(!state.join("lease.json").exists());
    assert!(
        !state.join("backup.json").exists(),
        "the backup did not start"
    );
    // The holder is done; the next pipeline proceeds and frees the environment at its end.
    shipgate(&case, s3(), "holder")
        .args(["lease", "release"])
        .run()
        .expect_code(0);
    let run = pipeline("third");
    run.expect_code(0);
    assert!(!lease_file.exists(), "released at the end");
    let state = case.path().join(".shipgate").join("third");
    let record: Value = serde_json::from_str(
        &std::fs::read_to_string(state.join("deployment-record-third.json")).expect("record"),
    )
    .expect("JSON");
    let lease = &record["lease"];
    assert_eq!(lease["status"], "released", "{record:#}");
    assert_eq!(lease["taken_by"], "backup");
    assert_eq!(lease["holder"]["deployment_id"], "third");
    assert_eq!(lease["holder"]["actor"], "release-engineer");
    assert_eq!(
        lease["holder"]["run_url"],
        "https://github.example/octo/app/actions/runs/4242"
    );
    assert!(lease["released_at"].is_string());
    assert!(
        run.summary
            .contains("Deployment lease of `production`: held by deployment `third`"),
        "{}",
        run.summary
    );
}

/// Two `shipgate pipeline` runs of one environment race on S3: exactly one gets past its
/// backup; the other is refused there (exit 1) naming the winner, while the winner still works
/// (its migration waits for a file this test creates only after the loser has finished). Then
/// the winner completes and releases the lease.
#[test]
fn two_pipelines_race_for_one_environment_and_exactly_one_proceeds() {
    let db = crate::backup::seeded("lease_race");
    let bucket = s3().create_bucket();
    let case = Case::new();
    let destination = format!("s3://{bucket}/deploys");
    let ids = ["pipe-a", "pipe-b"];
    let mut running: Vec<_> = ids
        .iter()
        .map(|id| {
            shipgate(&case, s3(), id)
                .env("DATABASE_URL", crate::backup::pg().url(&db))
                .input("destination", &destination)
                .input("version", "v1.0.0")
                .input(
                    "migration-command",
                    "sh -c 'until [ -e go ]; do sleep 0.05; done'",
                )
                .args(["pipeline", "--stages", "backup,migrate,record"])
                .spawn()
        })
        .collect();
    let mut loser = None;
    wait_for("one pipeline to be refused", || {
        loser = running.iter_mut().position(|r| r.exited());
        loser.is_some()
    });
    let loser = loser.expect("loser");
    let winner = 1 - loser;
    std::fs::write(case.path().join("go"), b"").expect("go");
    let mut runs: Vec<Option<Run>> = running.into_iter().map(|r| Some(r.wait())).collect();
    let lost = runs[loser].take().expect("run");
    let won = runs[winner].take().expect("run");
    lost.expect_code(1);
    let stderr = lost.visible_stderr();
    assert!(
        stderr.contains(&format!(
            "another deployment holds the environment `production`: deployment `{}`",
            ids[winner]
        )),
        "{stderr}"
    );
    won.expect_code(0);
    let record: Value = serde_json::from_str(
        &std::fs::read_to_string(
            case.path()
                .join(".shipgate")
                .join(ids[winner])
                .join(format!("deployment-record-{}.json", ids[winner])),
        )
        .expect("the winner's record"),
    )
    .expect("JSON");
    assert_eq!(record["lease"]["status"], "released");
    assert!(lease_object(s3(), &bucket).is_none(), "released at the end");
    // The loser never started a backup.
    assert!(
        !s3()
            .list_keys(&bucket)
            .iter()
            .any(|k| k.contains(ids[loser])),
        "{:?}",
        s3().list_keys(&bucket)
    );
}

/// A live holder whose lease is broken notices at its next renewal: it stops renewing, says so
/// (an error annotation), and `lease.json` records the loss; it never re-creates the lease.
#[test]
fn a_holder_whose_lease_is_broken_notices_and_says_so() {
    let case = Case::new();
    let dir = tempfile::tempdir().expect("destination");
    let destination = format!("file://{}", dir.path().display());
    let holder = shipgate(&case, s3(), "live")
        .actions()
        .args([
            "lease",
            "take",
            "--destination",
            &destination,
            "--lease-ttl",
            "3s",
            "--hold",
            "10m",
        ])
        .spawn();
    let lease_file = dir.path().join("lease-production.json");
    wait_for("the holder to take the lease", || lease_file.exists());
    shipgate(&case, s3(), "operator")
        .args([
            "lease",
            "break",
            "--destination",
            &destination,
            "--reason",
            "testing a live holder",
        ])
        .run()
        .expect_code(0);
    let run = holder.wait();
    run.expect_code(1);
    let stderr = run.visible_stderr();
    assert!(
        stderr.contains("::error title=deployment lease::lost the deployment lease"),
        "{stderr}"
    );
    assert_eq!(lease_json(&case, "live")["status"], "lost");
    assert!(!lease_file.exists(), "the holder does not take it back");
}
