//! `shipgate notify` end to end: Slack Block Kit and a generic webhook received by loopback
//! servers, retries, undeliverable messages, and the webhook URL kept out of every output.

use std::path::Path;

use serde_json::Value;

use crate::support::state_files;
use crate::support::stub_http::{Outgoing, StubServer};
use crate::support::{Shipgate, assert_no_secret, read_tree};

const ID: &str = "5151-9f8e7d6";

fn record(work: &Path, status: Option<&str>) {
    let root = work.join(".shipgate");
    state_files::full(&root, ID, 1);
    let mut cmd = Shipgate::new(work);
    cmd.input("deployment-id", ID)
        .env("GITHUB_SERVER_URL", "https://github.example")
        .env("GITHUB_REPOSITORY", "octo/app")
        .env("GITHUB_RUN_ID", "5151")
        .input("environment-url", "https://azora.world")
        .args(["record"]);
    if let Some(status) = status {
        cmd.input("status", status).input("failed-stage", "rollout");
    }
    cmd.run().expect_code(0);
}

fn notify(work: &Path) -> Shipgate {
    let mut cmd = Shipgate::new(work);
    cmd.actions()
        .input("deployment-id", ID)
        .env("GITHUB_SERVER_URL", "https://github.example")
        .env("GITHUB_REPOSITORY", "octo/app")
        .env("GITHUB_RUN_ID", "5151");
    cmd
}

fn all_text(blocks: &Value) -> String {
    blocks.to_string()
}

#[test]
fn slack_receives_the_success_message_and_the_url_appears_nowhere() {
    let slack = StubServer::start(Outgoing::new(200, "ok"));
    let webhook_url = format!(
        "{}/services/T0FAKE/B0FAKE/xoxWebhookSecretPart9731",
        slack.url()
    );
    let work = tempfile::tempdir().expect("workdir");
    record(work.path(), None);
    let run = notify(work.path())
        .input("slack-webhook-url", &webhook_url)
        .args(["notify"])
        .run();
    run.expect_code(0);
    assert_eq!(run.outputs["result"], "pass");
    assert_eq!(run.outputs["delivered"], "slack");

    let requests = slack.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].path,
        "/services/T0FAKE/B0FAKE/xoxWebhookSecretPart9731"
    );
    assert_eq!(requests[0].header("content-type"), Some("application/json"));
    let payload = requests[0].json();
    assert!(
        payload["text"]
            .as_str()
            .expect("fallback text")
            .contains("Production deployment successful")
    );
    let blocks = &payload["blocks"];
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(
        blocks[0]["text"]["text"],
        "✅ Production deployment successful"
    );
    let text = all_text(blocks);
    for needle in [
        "*Version:*\\nv1.4.0",
        &format!("*Deployment ID:*\\n`{ID}`"),
        "<https://azora.world|production>",
        "All services healthy and operational",
        "Rollback available for 60 minutes, until <!date^",
        "<https://github.example/octo/app/actions/runs/5151|Workflow run>",
    ] {
        assert!(text.contains(needle), "`{needle}` missing from {text}");
    }

    let mut places = run.everything();
    places.extend(read_tree(&work.path().join(".shipgate")));
    assert_no_secret(
        &webhook_url,
        places.iter().map(|(n, t)| (n.clone(), t.as_str())),
    );
    assert_no_secret(
        "/services/T0FAKE/B0FAKE/xoxWebhookSecretPart9731",
        places.iter().map(|(n, t)| (n.clone(), t.as_str())),
    );
    assert!(
        run.stderr.contains("::add-mask::"),
        "the runner must be told to mask the URL"
    );
}

#[test]
fn failures_reach_slack_and_the_json_webhook_with_retries() {
    let slack = StubServer::start(Outgoing::new(200, "ok"));
    slack.then(vec![
        Outgoing::new(503, "busy"),
        Outgoing::new(429, "slow down").header("retry-after", "1"),
    ]);
    let hook = StubServer::start(Outgoing::new(204, ""));
    let work = tempfile::tempdir().expect("workdir");
    record(work.path(), Some("failure"));
    let run = notify(work.path())
        .env(
            "SLACK_WEBHOOK_URL",
            format!("{}/services/T1/B1/secretSlackTokenA", slack.url()),
        )
        .input(
            "webhook-url",
            &format!("{}/hooks/deploy?token=secretHookToken42", hook.url()),
        )
        .args(["notify"])
        .run();
    run.expect_code(0);
    assert_eq!(run.outputs["delivered"], "slack,webhook");
    assert_eq!(slack.requests().len(), 3, "two retries before the delivery");
    let text = all_text(&slack.requests()[2].json());
    for needle in [
        "🚨 Production deployment FAILED",
        "ACTION REQUIRED",
        "Failed stage: `rollout`",
        &format!("Database backup `backup-{ID}` available for rollback"),
        "Check workflow logs",
    ] {
        assert!(text.contains(needle), "`{needle}` missing from {text}");
    }
    let event = hook.requests()[0].json();
    assert_eq!(event["event"], "deployment");
    assert_eq!(event["status"], "failure");
    assert_eq!(event["deployment_id"], ID);
    assert_eq!(event["version"], "v1.4.0");
    assert_eq!(event["failed_stage"], "rollout");
    assert_eq!(event["record"]["deployment_id"], ID);
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(work.path().join(".shipgate").join(ID).join("notify.json"))
            .expect("notify.json"),
    )
    .expect("json");
    assert_eq!(state["deliveries"][0]["attempts"], 3);
    let places = run.everything();
    for secret in ["secretSlackTokenA", "secretHookToken42"] {
        assert_no_secret(secret, places.iter().map(|(n, t)| (n.clone(), t.as_str())));
    }
}

#[test]
fn an_undeliverable_notification_warns_unless_required() {
    let slack = StubServer::start(Outgoing::new(404, "no_service"));
    let url = format!("{}/services/T2/B2/deadSecretWebhook77", slack.url());
    let work = tempfile::tempdir().expect("workdir");
    record(work.path(), None);
    let run = notify(work.path())
        .input("slack-webhook-url", &url)
        .args(["notify"])
        .run();
    run.expect_code(0);
    assert_eq!(run.outputs["result"], "fail");
    assert!(run.stderr.contains("::warning title=shipgate notify::the slack notification was not delivered: the slack endpoint answered 404 `no_service`"), "{}", run.stderr);
    assert_eq!(slack.requests().len(), 1, "a 404 is not retried");

    let run = notify(work.path())
        .input("slack-webhook-url", &url)
        .input("notify-required", "true")
        .args(["notify"])
        .run();
    run.expect_code(3);
    let places = run.everything();
    assert_no_secret(&url, places.iter().map(|(n, t)| (n.clone(), t.as_str())));

    let run = notify(work.path())
        .input("slack-webhook-url", "not a url")
        .args(["notify"])
        .run();
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("the `slack-webhook-url` input is not an http(s) URL (value hidden"),
        "{}",
        run.stderr
    );
}
