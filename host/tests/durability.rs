//! A 2xx means the write is on disk: several clients create devices, the
//! server is killed with SIGKILL mid-stream, and after a restart every
//! device it had answered 201 for is there.

mod common;

use common::{free_port, spawn_serve, wait_ready};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TOKEN: &str = "durability-test-token";
const CLIENTS: u64 = 6;

fn spawn(data_dir: &std::path::Path, port: u16) -> std::process::Child {
    spawn_serve(None, port, data_dir, &["--data-dir".as_ref(), data_dir.as_os_str()], TOKEN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_write_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = spawn(dir.path(), port);
    wait_ready(&mut server, &http, &base).await.unwrap();

    // Clients create devices as fast as they are answered, until the kill.
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let (http, base, acknowledged) = (http.clone(), base.clone(), acknowledged.clone());
        clients.push(tokio::spawn(async move {
            for n in 0u64.. {
                let eui = format!("{:016x}", 0x70b3_d57e_0000_0000u64 + (client << 24) + n);
                let body = json!({"devEui": eui, "name": "meter", "lorawanVersion": "1.0", "multicastClasses": ["C"], "deviceKey": "000102030405060708090a0b0c0d0e0f"});
                match http.post(format!("{base}/api/devices")).bearer_auth(TOKEN).json(&body).send().await {
                    Ok(r) if r.status() == reqwest::StatusCode::CREATED => acknowledged.lock().unwrap().push(eui),
                    Ok(r) => panic!("create answered {}", r.status()),
                    Err(_) => return, // the server is gone
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    for c in clients {
        c.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 20, "the clients got going: {} created", acknowledged.len());

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = spawn(dir.path(), port);
    wait_ready(&mut server, &http, &base).await.unwrap();
    let mut lost = Vec::new();
    for eui in &acknowledged {
        let r = http.get(format!("{base}/api/devices/{eui}")).bearer_auth(TOKEN).send().await.unwrap();
        if r.status() != reqwest::StatusCode::OK {
            lost.push(eui.clone());
        }
    }
    server.kill().unwrap();
    server.wait().unwrap();
    assert!(lost.is_empty(), "{} of {} acknowledged devices lost: {:?}", lost.len(), acknowledged.len(), &lost[..lost.len().min(5)]);
    eprintln!("{} acknowledged devices, all there after SIGKILL", acknowledged.len());
}
