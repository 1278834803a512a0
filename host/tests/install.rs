//! The binary carries its bundled plugins: a copy of it, run from an empty
//! directory, serves with the standard plugins loaded.

mod common;

use common::{free_port, spawn_serve, wait_ready};

const TOKEN: &str = "install-test-token";

#[tokio::test]
async fn a_copied_binary_serves_from_an_empty_directory() {
    let install = tempfile::tempdir().unwrap();
    let binary = install.path().join("airlift");
    std::fs::copy(env!("CARGO_BIN_EXE_airlift"), &binary).unwrap();
    let workdir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = spawn_serve(Some(&binary), port, workdir.path(), &[], TOKEN);
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&mut child, &http, &base).await.unwrap();
    let plugins: serde_json::Value = http.get(format!("{base}/api/plugins")).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap();
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
