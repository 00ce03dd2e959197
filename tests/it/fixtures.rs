//! Proof that the real-service fixtures work, and that they can fail: a real PostgreSQL
//! cluster with password auth, and a real SeaweedFS S3 server with enforced credentials and
//! conditional writes.

use std::net::TcpStream;
use std::process::Command;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use crate::support::postgres::PgCluster;
use crate::support::s3::{S3Server, unsigned_get_status};

// --- PostgreSQL --------------------------------------------------------------------------------

#[test]
fn pg_create_table_insert_and_count() {
    let pg = PgCluster::shared();
    let db = pg.create_database("fixture_count");
    pg.psql(
        &db,
        "CREATE TABLE t (id int PRIMARY KEY, name text NOT NULL);
         INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c');",
    );
    assert_eq!(pg.psql(&db, "SELECT count(*) FROM t"), "3");
    assert_eq!(
        pg.psql(&db, "SELECT id, name FROM t ORDER BY id"),
        "1|a\n2|b\n3|c"
    );
    // A failing statement stops the script and surfaces psql's error.
    let err = pg
        .try_psql(
            &db,
            "INSERT INTO t VALUES (1, 'dup'); SELECT 'not reached';",
        )
        .expect_err("duplicate key must fail");
    assert!(err.contains("duplicate key"), "{err}");
    assert_eq!(pg.psql(&db, "SELECT count(*) FROM t"), "3");
    assert!(pg.server_version_num() >= 100_000);
}

#[test]
fn pg_wrong_password_is_refused() {
    let pg = PgCluster::shared();
    let err = pg
        .try_psql_with_password("not-the-password", "postgres", "SELECT 1")
        .expect_err("wrong password must be refused");
    assert!(
        err.contains("password authentication failed for user \"postgres\""),
        "{err}"
    );
    assert_eq!(pg.psql("postgres", "SELECT 1"), "1");
}

#[test]
fn pg_url_carries_an_encoded_password_that_libpq_accepts() {
    let pg = PgCluster::shared();
    let db = pg.create_database("fixture-url");
    let url = pg.url(&db);
    let encoded = pg.password_url_encoded();
    assert!(pg.password().contains("p@ss:w/rd%"));
    assert_ne!(encoded, pg.password());
    assert!(
        url.contains(&encoded) && !url.contains(pg.password()),
        "{url}"
    );
    let parsed = url::Url::parse(&url).expect("fixture URL parses");
    assert_eq!(parsed.password(), Some(encoded.as_str()));
    assert_eq!(parsed.port(), Some(pg.port()));
    // libpq itself decodes the URL (argv exposure is fine for a throwaway cluster).
    let out = Command::new(PgCluster::bin_dir().join("psql"))
        .env_remove("PGPASSWORD")
        .args([
            "-X",
            "-A",
            "-t",
            "-d",
            &url,
            "-c",
            "SELECT current_database()",
        ])
        .output()
        .expect("run psql with URL");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), db);
}

#[test]
fn pg_owned_cluster_is_gone_after_drop() {
    let pg = PgCluster::start();
    eprintln!("PgCluster::start took {:?}", pg.started_in());
    let dir = pg.dir().to_path_buf();
    let port = pg.port();
    assert!(dir.join("data").is_dir());
    assert_eq!(pg.psql("postgres", "SELECT 40 + 2"), "42");
    drop(pg);
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still accepts connections"
    );
}

// --- S3 ----------------------------------------------------------------------------------------

#[test]
fn s3_put_get_list() {
    let s3 = S3Server::shared();
    eprintln!("S3Server::shared started in {:?}", s3.started_in());
    let bucket = s3.create_bucket();
    assert!(s3.list_keys(&bucket).is_empty());

    let client = s3.client();
    s3.block_on(
        client
            .put_object()
            .bucket(&bucket)
            .key("dir/hello.txt")
            .body(ByteStream::from_static(b"hello, world"))
            .send(),
    )
    .expect("put_object");
    let body = s3.block_on(async {
        let out = client
            .get_object()
            .bucket(&bucket)
            .key("dir/hello.txt")
            .send()
            .await
            .expect("get_object");
        out.body.collect().await.expect("read body").into_bytes()
    });
    assert_eq!(&body[..], b"hello, world");

    assert_eq!(
        s3.get(&bucket, "dir/hello.txt").as_deref(),
        Some(&b"hello, world"[..])
    );
    assert_eq!(s3.get(&bucket, "missing"), None);
    s3.put(&bucket, "a", b"1");
    assert_eq!(s3.list_keys(&bucket), vec!["a", "dir/hello.txt"]);
    assert!(s3.list_multipart_uploads(&bucket).is_empty());
}

/// SeaweedFS 4.48 (seen here): unsigned → 403 AccessDenied; wrong secret → 403
/// SignatureDoesNotMatch; unknown access key → 403 InvalidAccessKeyId.
#[test]
fn s3_bad_credentials_are_refused() {
    let s3 = S3Server::shared();
    let bucket = s3.create_bucket();
    s3.put(&bucket, "secret", b"data");

    assert_eq!(unsigned_get_status(s3.s3_port(), "/"), 403);
    assert_eq!(
        unsigned_get_status(s3.s3_port(), &format!("/{bucket}/secret")),
        403
    );

    let wrong_secret = s3.client_with_keys(s3.access_key(), "0123456789abcdef0123456789abcdef");
    let err = s3
        .block_on(
            wrong_secret
                .get_object()
                .bucket(&bucket)
                .key("secret")
                .send(),
        )
        .expect_err("wrong secret must be refused");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(403));
    assert_eq!(err.code(), Some("SignatureDoesNotMatch"));

    let wrong_key = s3.client_with_keys("AKIAWRONGWRONGWRONG", s3.secret_key());
    let err = s3
        .block_on(
            wrong_key
                .put_object()
                .bucket(&bucket)
                .key("new")
                .body(ByteStream::from_static(b"x"))
                .send(),
        )
        .expect_err("unknown key must be refused");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(403));
    assert_eq!(err.code(), Some("InvalidAccessKeyId"));
    assert_eq!(s3.list_keys(&bucket), vec!["secret"]);
}

/// SeaweedFS 4.48 (seen here): `If-None-Match: *` on an existing key is refused with
/// 412 PreconditionFailed both on PutObject and on CompleteMultipartUpload; the object is
/// left unchanged and the refused multipart upload stays listed until aborted.
#[test]
fn s3_if_none_match_star_refuses_overwrite() {
    let s3 = S3Server::shared();
    let bucket = s3.create_bucket();
    let client = s3.client();

    s3.block_on(
        client
            .put_object()
            .bucket(&bucket)
            .key("k")
            .if_none_match("*")
            .body(ByteStream::from_static(b"first"))
            .send(),
    )
    .expect("first conditional put on a new key succeeds");

    let err = s3
        .block_on(
            client
                .put_object()
                .bucket(&bucket)
                .key("k")
                .if_none_match("*")
                .body(ByteStream::from_static(b"second"))
                .send(),
        )
        .expect_err("conditional put over an existing key must fail");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(412));
    assert_eq!(err.code(), Some("PreconditionFailed"));

    // The same through a (single, small final) multipart upload.
    let upload_id = s3
        .block_on(
            client
                .create_multipart_upload()
                .bucket(&bucket)
                .key("k")
                .send(),
        )
        .expect("create multipart upload")
        .upload_id()
        .expect("upload id")
        .to_owned();
    let part = s3
        .block_on(
            client
                .upload_part()
                .bucket(&bucket)
                .key("k")
                .upload_id(&upload_id)
                .part_number(1)
                .body(ByteStream::from_static(b"third"))
                .send(),
        )
        .expect("upload part");
    let completed = CompletedMultipartUpload::builder()
        .parts(
            CompletedPart::builder()
                .part_number(1)
                .set_e_tag(part.e_tag().map(str::to_owned))
                .build(),
        )
        .build();
    let err = s3
        .block_on(
            client
                .complete_multipart_upload()
                .bucket(&bucket)
                .key("k")
                .upload_id(&upload_id)
                .multipart_upload(completed)
                .if_none_match("*")
                .send(),
        )
        .expect_err("conditional complete over an existing key must fail");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(412));
    assert_eq!(err.code(), Some("PreconditionFailed"));

    assert_eq!(s3.get(&bucket, "k").as_deref(), Some(&b"first"[..]));
    let pending = s3.list_multipart_uploads(&bucket);
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0].key, "k");
    assert_eq!(pending[0].upload_id, upload_id);
    s3.block_on(
        client
            .abort_multipart_upload()
            .bucket(&bucket)
            .key("k")
            .upload_id(&upload_id)
            .send(),
    )
    .expect("abort multipart upload");
    assert!(s3.list_multipart_uploads(&bucket).is_empty());
}

#[test]
fn s3_owned_server_can_be_killed_and_is_gone_after_drop() {
    let s3 = S3Server::start();
    eprintln!("S3Server::start took {:?}", s3.started_in());
    let dir = s3.dir().to_path_buf();
    let port = s3.s3_port();
    let bucket = s3.create_bucket();
    s3.put(&bucket, "k", b"v");
    assert_eq!(s3.get(&bucket, "k").as_deref(), Some(&b"v"[..]));

    assert!(s3.is_running());
    s3.kill();
    assert!(!s3.is_running());
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "S3 port {port} still accepts connections after kill"
    );
    let client = s3.client_with_keys(s3.access_key(), s3.secret_key());
    assert!(s3.block_on(client.list_buckets().send()).is_err());

    drop(s3);
    assert!(!dir.exists(), "{} still exists", dir.display());
}
