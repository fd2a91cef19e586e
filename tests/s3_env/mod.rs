//! The S3 test server's endpoint and credentials, shared by the S3 test binaries.
//! `scripts/test.sh` starts moto and sets `APPRD_TEST_S3_ENDPOINT`; with
//! `APPRD_REQUIRE_S3=1` a missing endpoint fails instead of skipping.

use std::sync::Once;

use apprd::store::s3::{client, S3Backend};

pub fn endpoint() -> Option<String> {
    match std::env::var("APPRD_TEST_S3_ENDPOINT") {
        Ok(e) if !e.is_empty() => Some(e),
        _ if std::env::var("APPRD_REQUIRE_S3").as_deref() == Ok("1") => {
            panic!("APPRD_REQUIRE_S3=1 but APPRD_TEST_S3_ENDPOINT is not set")
        }
        _ => {
            eprintln!("skipped: set APPRD_TEST_S3_ENDPOINT to run the S3 tests");
            None
        }
    }
}

static ENV: Once = Once::new();

/// Point the AWS chain at the test server (once, before any client reads it).
pub fn setup(endpoint: &str) {
    ENV.call_once(|| {
        std::env::set_var("AWS_ENDPOINT_URL", endpoint);
        for (k, v) in [
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
        ] {
            if std::env::var_os(k).is_none() {
                std::env::set_var(k, v);
            }
        }
    });
}

/// A fresh bucket, and a backend on it under a prefix; `None` (skipped)
/// without a test server.
pub async fn backend(part_size: u64) -> Option<(S3Backend, String)> {
    setup(&endpoint()?);
    let sdk = client(true).await;
    let bucket = format!("apprd-test-{}", uuid::Uuid::new_v4().simple());
    sdk.client
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let b = S3Backend::new(sdk.client, sdk.credentials, &bucket, "/pfx/", part_size);
    Some((b, bucket))
}

/// A backend on `bucket` under `prefix` (5 MiB parts) whose requests go to
/// `url` instead of the test server (a forwarder, or nothing at all).
#[allow(dead_code)] // not every test binary sends requests elsewhere
pub async fn backend_at(url: &str, bucket: &str, prefix: &str) -> S3Backend {
    let sdk = client(true).await;
    let conf = sdk.client.config().to_builder().endpoint_url(url).build();
    let c = aws_sdk_s3::Client::from_conf(conf);
    S3Backend::new(c, sdk.credentials, bucket, prefix, 5 * 1024 * 1024)
}
