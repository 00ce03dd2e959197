//! Self-tests of the fake GitHub: they talk to it over real HTTP with reqwest.

use serde_json::{Value, json};

use crate::support::fake_github::{FakeGitHub, Injected};

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const C: &str = "cccccccccccccccccccccccccccccccccccccccc";
const D: &str = "dddddddddddddddddddddddddddddddddddddddd";
const E: &str = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";
const TAG1: &str = "1111111111111111111111111111111111111111";
const TAG2: &str = "2222222222222222222222222222222222222222";
const TAG3: &str = "3333333333333333333333333333333333333333";

/// A blocking client over reqwest's async API (reqwest's `blocking` feature is not enabled).
struct Api {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    base: String,
    token: String,
}

struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).expect("JSON body")
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("missing header {name}"))
    }
}

impl Api {
    fn new(gh: &FakeGitHub) -> Api {
        Api {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            client: reqwest::Client::new(),
            base: gh.url(),
            token: gh.token(),
        }
    }

    /// `path` is relative to the base URL, or absolute (e.g. taken from a Link header).
    fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        auth: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Resp {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        };
        let mut request = self
            .client
            .request(method, url)
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28");
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        self.runtime.block_on(async {
            let response = request.send().await.expect("request to fake GitHub");
            Resp {
                status: response.status().as_u16(),
                headers: response.headers().clone(),
                text: response.text().await.expect("body"),
            }
        })
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    fn get(&self, path: &str) -> Resp {
        self.send(reqwest::Method::GET, path, Some(&self.bearer()), &[], None)
    }

    fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.send(
            reqwest::Method::GET,
            path,
            Some(&self.bearer()),
            headers,
            None,
        )
    }

    fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(
            reqwest::Method::POST,
            path,
            Some(&self.bearer()),
            &[],
            Some(body),
        )
    }
}

/// A ← B ← C (main), B ← D (feature); E is unrelated history.
fn world() -> FakeGitHub {
    let gh = FakeGitHub::start();
    gh.repo("acme", "app", "main")
        .commit(A, &[])
        .commit(B, &[A])
        .commit(C, &[B])
        .commit(D, &[B])
        .commit(E, &[])
        .branch("main", C)
        .branch("feature", D);
    gh
}

fn links(resp: &Resp) -> Vec<(String, String)> {
    resp.headers
        .get("link")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(", ")
        .filter(|s| !s.is_empty())
        .map(|part| {
            let (url, rel) = part.split_once("; ").expect("link part");
            (
                rel.trim_start_matches("rel=\"")
                    .trim_end_matches('"')
                    .to_owned(),
                url.trim_start_matches('<').trim_end_matches('>').to_owned(),
            )
        })
        .collect()
}

fn link(resp: &Resp, rel: &str) -> Option<String> {
    links(resp)
        .into_iter()
        .find(|(r, _)| r == rel)
        .map(|(_, url)| url)
}

#[test]
fn fake_github_requires_the_token() {
    let gh = world();
    let api = Api::new(&gh);

    let anonymous = api.send(reqwest::Method::GET, "/repos/acme/app", None, &[], None);
    assert_eq!(anonymous.status, 401);
    assert_eq!(
        anonymous.json(),
        json!({ "message": "Bad credentials", "documentation_url": "https://docs.github.com/rest" })
    );
    let wrong = api.send(
        reqwest::Method::GET,
        "/repos/acme/app",
        Some("Bearer nope"),
        &[],
        None,
    );
    assert_eq!(wrong.status, 401);

    let token_scheme = format!("token {}", gh.token());
    let ok = api.send(
        reqwest::Method::GET,
        "/repos/acme/app",
        Some(&token_scheme),
        &[],
        None,
    );
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("content-type"), "application/json; charset=utf-8");
    let repo = ok.json();
    assert_eq!(repo["full_name"], "acme/app");
    assert_eq!(repo["default_branch"], "main");
    assert_eq!(repo["private"], false);
    assert_eq!(repo["url"], format!("{}/repos/acme/app", gh.url()));

    let recorded = gh.requests();
    assert_eq!(recorded.len(), 3);
    assert!(!recorded[0].authorization_present);
    assert_eq!(recorded[0].status, 401);
    assert_eq!(recorded[2].path, "/repos/acme/app");
    assert_eq!(api.get("/repos/acme/nope").status, 404);
}

#[test]
fn fake_github_etag_304_is_not_charged() {
    let gh = world();
    let api = Api::new(&gh);

    let first = api.get("/repos/acme/app");
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-ratelimit-limit"), "5000");
    assert_eq!(first.header("x-ratelimit-remaining"), "4999");
    assert_eq!(first.header("x-ratelimit-used"), "1");
    assert_eq!(first.header("x-ratelimit-resource"), "core");
    assert!(first.header("x-ratelimit-reset").parse::<u64>().is_ok());
    assert!(!first.header("x-github-request-id").is_empty());
    let etag = first.header("etag").to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");

    let again = api.get_with("/repos/acme/app", &[("if-none-match", &etag)]);
    assert_eq!(again.status, 304);
    assert!(again.text.is_empty());
    assert_eq!(again.header("x-ratelimit-remaining"), "4999");
    assert_eq!(again.header("etag"), etag);

    let stale = api.get_with("/repos/acme/app", &[("if-none-match", "\"stale\"")]);
    assert_eq!(stale.status, 200);
    assert_eq!(stale.header("x-ratelimit-remaining"), "4998");

    assert_eq!(gh.total_count(), 3);
    assert_eq!(gh.charged_count(), 2);
    assert_eq!(
        gh.requests()[1].if_none_match.as_deref(),
        Some(etag.as_str())
    );
}

#[test]
fn fake_github_paginates_deployments_with_links() {
    let gh = world();
    let ids: Vec<u64> = (0..120)
        .map(|i| gh.deployment("production", "main", C, json!({ "n": i }), &["success"]))
        .collect();
    let api = Api::new(&gh);

    let first = api.get("/repos/acme/app/deployments?environment=production&per_page=100");
    assert_eq!(first.status, 200);
    let page1 = first.json();
    assert_eq!(page1.as_array().map(Vec::len), Some(100));
    assert_eq!(page1[0]["id"], ids[119], "newest first");
    assert_eq!(page1[0]["payload"], json!({ "n": 119 }));
    let next = link(&first, "next").expect("next link");
    assert_eq!(
        next,
        format!(
            "{}/repos/acme/app/deployments?environment=production&per_page=100&page=2",
            gh.url()
        )
    );
    assert_eq!(link(&first, "last"), Some(next.clone()));
    assert_eq!(link(&first, "prev"), None);

    let second = api.get(&next);
    let page2 = second.json();
    assert_eq!(page2.as_array().map(Vec::len), Some(20));
    assert_eq!(page2[19]["id"], ids[0]);
    assert_eq!(link(&second, "next"), None);
    assert!(link(&second, "prev").is_some_and(|u| u.ends_with("page=1")));
    assert!(link(&second, "first").is_some_and(|u| u.ends_with("page=1")));

    let default_page = api.get("/repos/acme/app/deployments");
    assert_eq!(default_page.json().as_array().map(Vec::len), Some(30));
    assert!(link(&default_page, "last").is_some_and(|u| u.ends_with("per_page=30&page=4")));
    // GitHub clamps `per_page` to 100; the description documents 100 as the maximum, so asking
    // for more is a violation the fake reports.
    let clamped = api.get("/repos/acme/app/deployments?per_page=500");
    assert_eq!(clamped.json().as_array().map(Vec::len), Some(100));
    let rules: Vec<String> = gh.take_violations().into_iter().map(|v| v.rule).collect();
    assert_eq!(
        rules,
        ["query parameter `per_page=500`: above the documented maximum 100"]
    );
    let none = api.get("/repos/acme/app/deployments?environment=staging");
    assert_eq!(none.json(), json!([]));
    assert!(none.headers.get("link").is_none());
}

#[test]
fn fake_github_compare_statuses() {
    let gh = world();
    let api = Api::new(&gh);
    let compare = |spec: &str| {
        let resp = api.get(&format!("/repos/acme/app/compare/{spec}"));
        assert_eq!(resp.status, 200, "{spec}: {}", resp.text);
        let body = resp.json();
        (
            body["status"].as_str().unwrap_or_default().to_owned(),
            body["ahead_by"].as_u64().unwrap_or(99),
            body["behind_by"].as_u64().unwrap_or(99),
            body["merge_base_commit"]["sha"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    };

    assert_eq!(
        compare(&format!("main...{B}")),
        ("behind".into(), 0, 1, B.into())
    );
    assert_eq!(
        compare(&format!("{B}...main")),
        ("ahead".into(), 1, 0, B.into())
    );
    assert_eq!(
        compare(&format!("main...{C}")),
        ("identical".into(), 0, 0, C.into())
    );
    assert_eq!(
        compare("main...feature"),
        ("diverged".into(), 1, 1, B.into())
    );
    assert_eq!(
        compare(&format!("{A}...{C}")),
        ("ahead".into(), 2, 0, A.into())
    );

    let full = api
        .get(&format!("/repos/acme/app/compare/{A}...main"))
        .json();
    assert_eq!(full["total_commits"], 2);
    assert_eq!(full["base_commit"]["sha"], A);
    assert_eq!(full["commits"][0]["sha"], B, "oldest first");
    assert_eq!(full["commits"][1]["sha"], C);
    assert_eq!(full["commits"][1]["parents"][0]["sha"], B);

    assert_eq!(api.get("/repos/acme/app/compare/main...nope").status, 404);
    assert_eq!(
        api.get(&format!("/repos/acme/app/compare/main...{E}"))
            .status,
        404
    );
    let commit = api.get("/repos/acme/app/commits/feature");
    assert_eq!(commit.status, 200);
    assert_eq!(commit.json()["sha"], D);
    assert_eq!(api.get("/repos/acme/app/commits/nope").status, 422);
}

#[test]
fn fake_github_peels_annotated_tags() {
    let gh = world();
    gh.lightweight_tag("v1.0.0", B)
        .annotated_tag("v1.1.0", TAG1, C, Some((true, "valid")))
        .annotated_tag("release/2.0", TAG2, D, None)
        .tag_object(TAG3, "inner", C, Some((false, "unknown_key")))
        .annotated_tag(
            "v1.2.0",
            "4444444444444444444444444444444444444444",
            TAG3,
            None,
        );
    let api = Api::new(&gh);

    let light = api.get("/repos/acme/app/git/ref/tags/v1.0.0").json();
    assert_eq!(light["ref"], "refs/tags/v1.0.0");
    assert_eq!(light["object"]["type"], "commit");
    assert_eq!(light["object"]["sha"], B);

    let annotated = api.get("/repos/acme/app/git/ref/tags/v1.1.0").json();
    assert_eq!(annotated["object"]["type"], "tag");
    assert_eq!(annotated["object"]["sha"], TAG1);
    let tag = api.get(&format!("/repos/acme/app/git/tags/{TAG1}")).json();
    assert_eq!(tag["tag"], "v1.1.0");
    assert_eq!(
        tag["object"],
        json!({
            "type": "commit", "sha": C, "url": format!("{}/repos/acme/app/git/commits/{C}", gh.url()),
        })
    );
    assert_eq!(tag["verification"]["verified"], true);
    assert_eq!(tag["verification"]["reason"], "valid");
    assert!(tag["verification"]["signature"].is_string());
    assert!(tag["verification"]["verified_at"].is_string());
    assert!(
        tag["tagger"]["date"]
            .as_str()
            .is_some_and(|d| d.ends_with('Z'))
    );

    for path in ["release/2.0", "release%2F2.0"] {
        let slashed = api.get(&format!("/repos/acme/app/git/ref/tags/{path}"));
        assert_eq!(slashed.status, 200, "{path}");
        assert_eq!(slashed.json()["object"]["sha"], TAG2);
    }
    let unsigned = api.get(&format!("/repos/acme/app/git/tags/{TAG2}")).json();
    assert_eq!(unsigned["verification"]["verified"], false);
    assert_eq!(unsigned["verification"]["reason"], "unsigned");

    // A tag of a tag: peel twice.
    let outer_ref = api.get("/repos/acme/app/git/ref/tags/v1.2.0").json();
    let outer = api
        .get(&format!(
            "/repos/acme/app/git/tags/{}",
            outer_ref["object"]["sha"].as_str().unwrap_or_default()
        ))
        .json();
    assert_eq!(outer["object"]["type"], "tag");
    assert_eq!(outer["object"]["sha"], TAG3);
    let inner = api.get(&format!("/repos/acme/app/git/tags/{TAG3}")).json();
    assert_eq!(inner["object"]["type"], "commit");
    assert_eq!(inner["object"]["sha"], C);
    assert_eq!(inner["verification"]["reason"], "unknown_key");

    let missing = api.get("/repos/acme/app/git/ref/tags/v9.9.9");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["message"], "Not Found");
    assert_eq!(
        api.get(&format!("/repos/acme/app/git/tags/{C}")).status,
        404
    );
}

#[test]
fn fake_github_injected_faults_come_first() {
    let gh = world();
    gh.inject(
        "GET",
        "/repos/acme/app",
        vec![Injected::retry_after(429, 2)],
    );
    let api = Api::new(&gh);

    let limited = api.get("/repos/acme/app");
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("retry-after"), "2");
    assert!(limited.json()["message"].is_string());
    let retried = api.get("/repos/acme/app");
    assert_eq!(retried.status, 200);

    let reset = 1_900_000_000;
    gh.inject(
        "*",
        "/repos/acme/app/deployments",
        vec![Injected::rate_limited_until(reset), Injected::status(502)],
    );
    let primary = api.get("/repos/acme/app/deployments");
    assert_eq!(primary.status, 403);
    assert_eq!(primary.header("x-ratelimit-remaining"), "0");
    assert_eq!(primary.header("x-ratelimit-reset"), reset.to_string());
    assert!(
        primary.json()["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("API rate limit exceeded"))
    );
    assert_eq!(
        api.post("/repos/acme/app/deployments", &json!({ "ref": C }))
            .status,
        502
    );
    assert_eq!(api.get("/repos/acme/app/deployments").status, 200);

    let statuses: Vec<(u16, bool)> = gh
        .requests()
        .iter()
        .map(|r| (r.status, r.injected))
        .collect();
    assert_eq!(
        statuses,
        [
            (429, true),
            (200, false),
            (403, true),
            (502, true),
            (200, false)
        ]
    );
}

#[test]
fn fake_github_creates_deployments_and_statuses() {
    let gh = world();
    gh.annotated_tag("v1.1.0", TAG1, C, None);
    let api = Api::new(&gh);

    let request = json!({
        "ref": "v1.1.0",
        "environment": "staging",
        "payload": { "version": "1.1.0" },
        "auto_merge": false,
        "required_contexts": [],
        "production_environment": false,
        "description": "Deploy v1.1.0",
    });
    let created = api.post("/repos/acme/app/deployments", &request);
    assert_eq!(created.status, 201, "{}", created.text);
    let deployment = created.json();
    let id = deployment["id"].as_u64().expect("id");
    assert_eq!(deployment["sha"], C, "the tag is peeled to its commit");
    assert_eq!(deployment["ref"], "v1.1.0");
    assert_eq!(deployment["task"], "deploy");
    assert_eq!(deployment["environment"], "staging");
    assert_eq!(deployment["transient_environment"], false);
    assert_eq!(deployment["production_environment"], false);
    assert_eq!(deployment["payload"], json!({ "version": "1.1.0" }));
    assert_eq!(gh.created_deployments(), vec![request]);

    for (state, log) in [
        ("in_progress", None),
        ("success", Some("https://ci.example/run/1")),
    ] {
        let mut body = json!({ "state": state, "environment_url": "https://staging.example" });
        if let Some(log) = log {
            body["log_url"] = json!(log);
        }
        let resp = api.post(&format!("/repos/acme/app/deployments/{id}/statuses"), &body);
        assert_eq!(resp.status, 201, "{}", resp.text);
        assert_eq!(resp.json()["state"], state);
    }
    let listed = api
        .get(&format!("/repos/acme/app/deployments/{id}/statuses"))
        .json();
    assert_eq!(listed[0]["state"], "success", "newest first");
    assert_eq!(listed[0]["log_url"], "https://ci.example/run/1");
    assert_eq!(listed[0]["target_url"], "https://ci.example/run/1");
    assert_eq!(listed[1]["state"], "in_progress");
    assert!(listed[0]["created_at"].as_str() > listed[1]["created_at"].as_str());
    assert_eq!(gh.deployment_states(id), ["in_progress", "success"]);
    assert_eq!(
        gh.deployment_statuses(id)[1]["environment_url"],
        "https://staging.example"
    );

    let filtered = api.get(&format!(
        "/repos/acme/app/deployments?sha={C}&environment=staging"
    ));
    assert_eq!(filtered.json()[0]["id"], id);
    assert_eq!(
        api.get(&format!("/repos/acme/app/deployments/{id}")).json()["id"],
        id
    );

    // auto_inactive: a second successful staging deployment retires the first.
    let second = api
        .post(
            "/repos/acme/app/deployments",
            &json!({ "ref": C, "environment": "staging", "production_environment": false,
                     "required_contexts": [] }),
        )
        .json();
    let second_id = second["id"].as_u64().expect("id");
    api.post(
        &format!("/repos/acme/app/deployments/{second_id}/statuses"),
        &json!({ "state": "success" }),
    );
    assert_eq!(
        gh.deployment_states(id),
        ["in_progress", "success", "inactive"]
    );
    assert_eq!(gh.deployment_states(second_id), ["success"]);

    // Rejections.
    assert_eq!(
        api.post("/repos/acme/app/deployments", &json!({ "ref": "nope" }))
            .status,
        422
    );
    assert_eq!(
        api.post(
            &format!("/repos/acme/app/deployments/{id}/statuses"),
            &json!({ "state": "done" })
        )
        .status,
        422
    );
    let violations = gh.take_violations();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].operation, "repos/create-deployment-status");
    assert!(
        violations[0]
            .rule
            .starts_with("request body: at `/state`: \"done\" is not one of"),
        "{violations:?}"
    );
    assert_eq!(gh.created_deployments().len(), 2);
}

#[test]
fn fake_github_deployment_rules_auto_merge_and_required_contexts() {
    let gh = world();
    gh.commit_status(D, "ci/test", "failure");
    let api = Api::new(&gh);

    // feature is behind main: auto_merge (default true) merges main in and answers 202.
    let merged = api.post("/repos/acme/app/deployments", &json!({ "ref": "feature" }));
    assert_eq!(merged.status, 202, "{}", merged.text);
    let feature = gh.branch_sha("feature").expect("feature");
    assert_ne!(feature, D);
    assert_eq!(
        api.get(&format!("/repos/acme/app/compare/main...{feature}"))
            .json()["status"],
        "ahead"
    );

    // A failing commit status blocks the deployment unless required_contexts bypasses it.
    let blocked = api.post("/repos/acme/app/deployments", &json!({ "ref": D }));
    assert_eq!(blocked.status, 409, "{}", blocked.text);
    assert_eq!(
        blocked.json()["errors"][0]["contexts"][0]["context"],
        "ci/test"
    );
    let bypassed = api.post(
        "/repos/acme/app/deployments",
        &json!({ "ref": D, "required_contexts": [], "payload": "{\"raw\":true}" }),
    );
    assert_eq!(bypassed.status, 201);
    assert_eq!(bypassed.json()["payload"], "{\"raw\":true}");
    assert_eq!(bypassed.json()["production_environment"], true);
    assert_eq!(gh.created_deployments().len(), 1);
}

/// The JSON shapes deserialize into octocrab's models (the product's client), and octocrab
/// follows the fake's Link headers.
#[test]
fn fake_github_shapes_fit_octocrab() {
    use octocrab::models::repos::{DeploymentStatusState, Object};
    use octocrab::params::repos::Reference;

    let gh = world();
    gh.annotated_tag("v1.1.0", TAG1, C, Some((true, "valid")));
    for i in 0..35 {
        gh.deployment(
            "production",
            "main",
            C,
            json!({ "n": i }),
            &["queued", "success"],
        );
    }
    let api = Api::new(&gh);

    api.runtime.block_on(async {
        // octocrab spawns its service onto the current runtime, so build it inside.
        let crab = octocrab::Octocrab::builder()
            .base_uri(gh.url())
            .expect("base uri")
            .personal_token(gh.token())
            // octocrab's typed API sends no `Accept` of its own; shipgate's client sends this one.
            .add_header(
                http::header::ACCEPT,
                "application/vnd.github+json".to_owned(),
            )
            .build()
            .expect("octocrab");
        let repos = crab.repos("acme", "app");
        let repo = repos.get().await.expect("repository");
        assert_eq!(repo.default_branch.as_deref(), Some("main"));

        let tag_ref = repos
            .get_ref(&Reference::Tag("v1.1.0".into()))
            .await
            .expect("ref");
        let Object::Tag { sha, .. } = tag_ref.object else {
            panic!("annotated tag ref should point at a tag object");
        };
        let tag = repos.get_tag(sha).await.expect("tag");
        assert_eq!(tag.object.expect("object").sha, C);
        assert!(tag.verification.expect("verification").verified);

        // Not `commits().compare()`: that builder repeats `base` and `head` as query parameters
        // the operation does not declare.
        let comparison: octocrab::models::commits::CommitComparison = crab
            .get(
                "/repos/acme/app/compare/main...feature?per_page=1",
                None::<&()>,
            )
            .await
            .expect("compare");
        assert!(matches!(
            comparison.status,
            octocrab::models::commits::GithubCommitStatus::Diverged
        ));
        assert_eq!(comparison.merge_base_commit.sha, B);
        let commit = crab
            .commits("acme", "app")
            .get("main")
            .await
            .expect("commit");
        assert_eq!(commit.sha, C);

        let deployments = repos.deployments();
        let page = deployments
            .list()
            .per_page(20u8)
            .send()
            .await
            .expect("list");
        assert_eq!(page.items.len(), 20);
        assert_eq!(page.number_of_pages(), Some(2));
        let rest: octocrab::Page<octocrab::models::repos::Deployment> = crab
            .get_page(&page.next)
            .await
            .expect("next page")
            .expect("a second page");
        assert_eq!(rest.items.len(), 15);

        let created = deployments
            .create(C)
            .environment("staging")
            .required_contexts(Vec::<String>::new())
            .send()
            .await
            .expect("create deployment");
        let status = deployments
            .statuses(created.id)
            .create(DeploymentStatusState::Success)
            .log_url("https://ci.example/1")
            .send()
            .await
            .expect("create status");
        assert_eq!(status.state, DeploymentStatusState::Success);
        let statuses = deployments
            .statuses(created.id)
            .list()
            .send()
            .await
            .expect("statuses");
        assert_eq!(statuses.items.len(), 1);
    });
}

/// A request GitHub's description does not allow fails the test that sent it, naming the
/// operation and the rule: here an undeclared query parameter, a doubled version header, a
/// `per_page` above 100, a body field of the wrong type, a path no operation has. The fake's
/// `Drop` would panic with these; the test takes them to look at them.
#[test]
fn fake_github_reports_requests_that_break_the_openapi_description() {
    let gh = world();
    let api = Api::new(&gh);

    api.get("/repos/acme/app/deployments?environment=production&sort=newest");
    api.send(
        reqwest::Method::GET,
        "/repos/acme/app",
        Some(&api.bearer()),
        &[("x-github-api-version", "2022-11-28")],
        None,
    );
    api.get("/repos/acme/app/deployments/1/statuses?per_page=1000");
    api.post(
        "/repos/acme/app/deployments",
        &json!({ "ref": C, "auto_merge": "no" }),
    );
    api.get("/repos/acme/app/deploymentz");

    let violations = gh.take_violations();
    let report: Vec<String> = violations.iter().map(ToString::to_string).collect();
    eprintln!("{}", report.join("\n"));
    let found: Vec<(&str, &str)> = violations
        .iter()
        .map(|v| (v.operation.as_str(), v.rule.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (
                "repos/list-deployments",
                "query parameter `sort` is not declared for this operation (declared: sha, ref, task, environment, per_page, page)"
            ),
            (
                "repos/get",
                "exactly one `X-GitHub-Api-Version: 2022-11-28` header expected, got [\"2022-11-28\", \"2022-11-28\"]"
            ),
            (
                "repos/list-deployment-statuses",
                "query parameter `per_page=1000`: above the documented maximum 100"
            ),
            (
                "repos/create-deployment",
                "request body: at `/auto_merge`: \"no\" is not of type \"boolean\""
            ),
            (
                "-",
                "no operation of GitHub's REST API is `GET /repos/acme/app/deploymentz`"
            ),
        ],
        "{report:#?}"
    );
    assert!(gh.take_violations().is_empty());
}

/// Whatever a test leaves unexamined fails it when the fake is dropped.
#[test]
#[should_panic(
    expected = "`repos/list-deployments` (GET /repos/acme/app/deployments?sort=newest): query parameter `sort` is not declared"
)]
fn fake_github_fails_the_test_when_dropped_with_violations() {
    let gh = world();
    let api = Api::new(&gh);
    api.get("/repos/acme/app/deployments?sort=newest");
}
