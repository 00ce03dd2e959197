//! Realistic state files, as the other commands write them per the state-file contract in
//! ARCHITECTURE.md, for tests of the commands that read them (`record`, `rollback`, `notify`).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

pub const SHA: &str = "9f8e7d6c5b4a39281706f5e4d3c2b1a098765432";
pub const BACKUP_SHA256: &str = "5d41402abc4b2a76b9719d911017c592aa5d41402abc4b2a76b9719d911017c5";

/// RFC 3339 UTC for `now - minutes_ago`.
pub fn ago(minutes_ago: i64) -> String {
    jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_mins(minutes_ago))
        .expect("time")
        .round(jiff::Unit::Second)
        .expect("round")
        .to_string()
}

pub fn dir(root: &Path, id: &str) -> PathBuf {
    let dir = root.join(id);
    std::fs::create_dir_all(&dir).expect("state dir");
    std::fs::write(root.join("latest"), format!("{id}\n")).expect("latest");
    dir
}

/// Validates a hand-written state file against the schema generated from the type that reads it
/// (`schema/<file>.schema.json`), so fixtures cannot drift from what the commands write.
pub fn assert_conforms(name: &str, value: &Value) {
    let schema_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schema")
        .join(format!("{}.schema.json", name.trim_end_matches(".json")));
    let Ok(text) = std::fs::read_to_string(&schema_path) else {
        return; // not yet part of the typed contract
    };
    let schema: Value = serde_json::from_str(&text).expect("schema JSON");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "fixture `{name}` does not match {}:\n{}",
        schema_path.display(),
        errors.join("\n")
    );
}

pub fn write(root: &Path, id: &str, name: &str, value: &Value) {
    assert_conforms(name, value);
    std::fs::write(
        dir(root, id).join(name),
        serde_json::to_string_pretty(value).expect("json"),
    )
    .expect("state file");
}

pub fn validate(id: &str, minutes_ago: i64) -> Value {
    json!({
        "schema_version": 1, "command": "validate", "result": "pass", "timestamp": ago(minutes_ago),
        "duration_ms": 812, "deployment_id": id, "environment": "production",
        "repository": "octo/app", "version": "1.4.0", "major": 1, "minor": 4, "patch": 0,
        "prerelease": "", "build": "", "tag": "v1.4.0", "sha": SHA, "tag_type": "annotated",
        "tag_message": "Release 1.4.0", "signature": { "signed": false, "verified": null, "reason": "unsigned" },
        "default_branch": "main", "reachable_from_default_branch": true,
        "previous": { "version": "1.3.2", "deployment_id": 998, "sha": "1111111111111111111111111111111111111111", "created_at": "2026-01-01T00:00:00Z" },
        "downgrade_allowed": false, "source": "git_ref", "checked_with": "github-api"
    })
}

/// `gate.json` as `gate` writes it: `ci/build` a commit status, `test` a check run.
pub fn gate(minutes_ago: i64, result: &str) -> Value {
    let passed = result == "pass";
    let check = |name: &str,
                 source: &str,
                 status: &str,
                 conclusion: Option<&str>,
                 outcome: &str| {
        json!({
            "name": name, "source": source, "app": if source == "check_run" { json!("github-actions") } else { Value::Null },
            "status": status, "conclusion": conclusion, "result": outcome, "required": true,
            "started_at": ago(minutes_ago + 5), "completed_at": ago(minutes_ago + 1),
            "duration_seconds": 240, "url": null, "attempts": 1
        })
    };
    let listed =
        |name: &str| json!({ "name": name, "app_id": null, "origins": [{ "kind": "listed" }] });
    json!({
        "schema_version": 1, "command": "gate", "result": result, "timestamp": ago(minutes_ago),
        "reason": if passed { "2 required check(s) passed" } else { "required check `test` failed" },
        "deployment_id": "x", "environment": "production", "repository": "octo/app", "sha": SHA,
        "sha_source": "validate",
        "required": { "mode": "listed", "branch": null, "checks": [listed("ci/build"), listed("test")] },
        "allowed_conclusions": ["success", "neutral", "skipped"],
        "checks": [
            check("ci/build", "status", "success", None, "passed"),
            check("test", "check_run", "completed", Some(if passed { "success" } else { "failure" }), if passed { "passed" } else { "failed" }),
        ],
        "failed": if passed { json!([]) } else { json!(["test"]) },
        "pending": [], "missing": [], "ignored": [],
        "own_run": { "run_id": 4242, "attempt": 1, "method": "jobs-api", "job_check_run_ids": [], "job_names": ["gate"] },
        "promotion": null, "polls": 3, "waited_seconds": 64,
        "requests": { "sent": 7, "not_modified": 2, "charged": 5, "rate_limit_remaining": 4990 }
    })
}

pub fn backup(id: &str, minutes_ago: i64) -> Value {
    json!({
        "schema_version": 1, "command": "backup", "result": "pass", "timestamp": ago(minutes_ago),
        "duration_ms": 95_000, "ran_at": ago(minutes_ago + 2), "deployment_id": id,
        "log_file": format!(".shipgate/{id}/backup-logs-{id}.log"),
        "environment": "production", "backup_id": format!("backup-{id}"),
        "location": format!("s3://acme-backups/prod/backup-{id}.sql.gz"),
        "sidecar_location": format!("s3://acme-backups/prod/backup-{id}.sql.gz.json"),
        "size": 48_213_344, "uncompressed_size": 312_000_000, "sha256": BACKUP_SHA256,
        "compression": "gzip", "compression_level": 6, "format": "plain", "parts": 3,
        "verified": true,
        "verification": { "mode": "sha256", "checked_at": ago(minutes_ago), "read_bytes": 312_000_000 },
        "reused": false, "database": "app", "server_version": "17.2", "client_version": "17.2"
    })
}

/// `migrate.json` as `migrate` writes it: Prisma, three migrations applied (one on failure).
pub fn migrate(result: &str, minutes_ago: i64, log: &str) -> Value {
    let passed = result == "pass";
    let applied = if passed {
        json!(["20260101_users", "20260102_orders", "20260103_index"])
    } else {
        json!(["20260101_users"])
    };
    json!({
        "schema_version": 1, "command": "migrate", "result": result, "timestamp": ago(minutes_ago),
        "duration_ms": 12_500, "deployment_id": "x", "environment": "production",
        "repository": "octo/app", "database": "postgres://app@db.internal:5432/app",
        "tool": "prisma", "applied_count": if passed { 3 } else { 1 }, "applied": applied,
        "failed": if passed { json!([]) } else { json!(["20260102_orders"]) },
        "history_tables": [{
            "schema": "public", "table": "_prisma_migrations", "tool": "prisma",
            "rows_before": 12, "rows_after": if passed { 15 } else { 13 }
        }],
        "migration_command": "npx prisma migrate deploy", "shell": false,
        "exit_code": if passed { 0 } else { 1 }, "signal": null, "timed_out": false,
        "cancelled": false, "command_duration_ms": 11_900, "timeout_ms": 1_800_000,
        "lock_key": "7235198311", "lock_key_source": "default", "lock_wait_ms": 15,
        "lock_holders": [], "lock_lost": false, "application_name": "shipgate migrate x",
        "left_processes": false, "warning": null, "backup_required": true,
        "backup": { "backup_id": "backup-x", "location": "s3://acme-backups/prod/backup-x.sql.gz", "verified": true },
        "log_file": log,
        "error": if passed { Value::Null } else { json!("prisma migrate deploy exited with code 1: relation \"orders\" already exists") }
    })
}

/// `rollout.json` as `rollout` writes it after passing its three stages.
pub fn rollout(minutes_ago: i64) -> Value {
    let stage = |name: &str, weight: u64, minutes: u64| {
        let summary = json!({
            "samples": minutes * 6, "failures": 0, "success_rate": 100.0, "p50_ms": 91.0,
            "p95_ms": 182.5, "timed": minutes * 6, "degraded": 0
        });
        let verdict = |gate: &str, value: f64, measured: &str, threshold: &str| {
            json!({
                "gate": gate, "status": "pass", "value": value, "measured": measured,
                "threshold": threshold, "message": format!("{gate} {measured} ({threshold})")
            })
        };
        json!({
            "name": name, "weight": weight, "planned_duration_ms": minutes * 60_000,
            "elapsed_ms": minutes * 60_000 + 1_200, "status": "passed", "samples": minutes * 6,
            "success_rate": 100.0, "p95_ms": 182.5, "p50_ms": 91.0, "failures": 0, "degraded": 0,
            "interval_ms": 10_000,
            "thresholds": {
                "success_rate": 99.0, "max_p95_ms": 250, "consecutive_failures": 3,
                "min_samples": 10, "window_ms": 300_000, "baseline_ratio": 2.0, "degraded": "fail"
            },
            "window": summary, "baseline": null, "causes": [],
            "verdicts": [
                verdict("success-rate", 100.0, "100%", "≥ 99%"),
                verdict("p95-latency", 182.5, "182.5ms", "< 250ms"),
            ],
            "reason": null, "approval": null
        })
    };
    let hook = |name: &str, weight: u64| {
        json!({
            "hook": "stage hook", "kind": "command", "command": "./shift-traffic.sh",
            "event": "stage", "stage": name, "weight": weight, "ok": true, "cancelled": false,
            "started_at": ago(minutes_ago + 30), "duration_ms": 850,
            "attempts": [{
                "exit_code": 0, "signal": null, "http_status": null, "timed_out": false,
                "duration_ms": 850, "error": null, "left_processes": false, "warning": null
            }]
        })
    };
    json!({
        "schema_version": 1, "command": "rollout", "result": "pass", "timestamp": ago(minutes_ago),
        "duration_ms": 1_800_000, "deployment_id": "x", "environment": "production",
        // As the real rollout writes them: validate's SemVer, not the tag.
        "version": "1.4.0", "previous_version": "1.3.2", "expect_version": null,
        "failed_stage": null, "reason": null, "cause": null, "failed_gate": null,
        "current_stage": "full", "current_weight": 100,
        "stages": [stage("canary", 5, 5), stage("progressive", 50, 10), stage("full", 100, 15)],
        "rollback": {
            "ran": false, "ok": false, "reason": null, "hook": null, "hook_ok": null,
            "error": null, "stage_hook_reused": false, "verification": null
        },
        "hooks": [hook("canary", 5), hook("progressive", 50), hook("full", 100)],
        "endpoints": { "canary": ["https://canary.example/health"], "baseline": [], "verify": ["https://app.example/health"] },
        "log_file": "rollout-logs.log"
    })
}

/// `smoke.json` as `smoke` writes it: four HTTP tests passed.
pub fn smoke(minutes_ago: i64) -> Value {
    let test = |name: &str| {
        json!({
            "name": name, "kind": "http", "status": "passed",
            "target": "GET https://app.example/health", "duration_ms": 140,
            "time_to_ready_ms": 0, "ready_timed_out": false, "attempts": 1, "http_status": 200,
            "failures": [], "failed_checks": []
        })
    };
    json!({
        "schema_version": 1, "command": "smoke", "result": "pass", "timestamp": ago(minutes_ago),
        "duration_ms": 4_100, "deployment_id": "x", "environment": "production",
        "suite": "smoke.yml", "concurrency": 4, "total": 4, "passed": 4, "failed": 0,
        "skipped": 0,
        "tests": [test("API Gateway"), test("Auth Service"), test("Database"), test("Marketplace Service")],
        "junit": "smoke-junit.xml", "log_file": "smoke-test-logs.log"
    })
}

/// Every stage ran and passed; logs beside the state files. The deployment completed
/// `minutes_ago` minutes ago.
pub fn full(root: &Path, id: &str, minutes_ago: i64) -> PathBuf {
    let dir = dir(root, id);
    write(root, id, "validate.json", &validate(id, minutes_ago + 40));
    write(root, id, "gate.json", &gate(minutes_ago + 38, "pass"));
    write(root, id, "backup.json", &backup(id, minutes_ago + 36));
    write(
        root,
        id,
        "migrate.json",
        &migrate(
            "pass",
            minutes_ago + 34,
            &format!("migration-logs-{id}.log"),
        ),
    );
    write(root, id, "rollout.json", &rollout(minutes_ago + 1));
    write(root, id, "smoke.json", &smoke(minutes_ago));
    std::fs::write(
        dir.join(format!("backup-logs-{id}.log")),
        "[2026] pg_dump started\n[2026] uploaded 48213344 bytes\n",
    )
    .expect("log");
    std::fs::write(
        dir.join(format!("migration-logs-{id}.log")),
        "[stdout] 3 migrations applied\n",
    )
    .expect("log");
    std::fs::write(
        dir.join(format!("rollout-logs-{id}.log")),
        "[canary] 5% healthy\n[progressive] 50% healthy\n[full] 100% healthy\n",
    )
    .expect("log");
    std::fs::write(
        dir.join(format!("smoke-test-logs-{id}.log")),
        "GET /api/health 200\n",
    )
    .expect("log");
    std::fs::write(
        dir.join("smoke-junit.xml"),
        "<testsuites tests=\"4\" failures=\"0\"/>\n",
    )
    .expect("junit");
    dir
}
