//! The binary carries its bundled plugins: a copy of it, run from an empty
//! directory, serves with the standard plugins loaded.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "install-test-token";

#[tokio::test]
async fn a_copied_binary_serves_from_an_empty_directory() {
    let install = tempfile::tempdir().unwrap();
    let binary = install.path().join("airlift");
    std::fs::copy(env!("CARGO_BIN_EXE_airlift"), &binary).unwrap();
    let workdir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(&binary)
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .current_dir(workdir.path())
        .env_remove("AIRLIFT_DATA_DIR")
        .env("AIRLIFT_API_TOKENS", format!("test:admin:{TOKEN}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let until = Instant::now() + Duration::from_secs(120);
    let plugins = loop {
        assert!(child.try_wait().unwrap().is_none(), "airlift serve exited early");
        assert!(Instant::now() < until, "airlift serve did not come up");
        if let Ok(r) = http.get(format!("{base}/api/plugins")).bearer_auth(TOKEN).send().await {
            if r.status().is_success() {
                break r.json::<serde_json::Value>().await.unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let names: Vec<&str> = plugins.as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
    for expected in ["lorawan-v1", "lorawan-v2", "simulated", "thingpark", "chirpstack", "gateway-rest", "plain", "lz4dict"] {
        assert!(names.contains(&expected), "{expected} loaded: {names:?}");
    }
    assert!(!names.iter().any(|n| n.starts_with("fixture")), "test fixtures stay out: {names:?}");
    // Its data directory is where it was started.
    assert!(workdir.path().join("airlift-data").is_dir());
}
