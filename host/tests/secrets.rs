//! Keys never appear in API responses, log lines, or the store in clear.

mod common;
use common::*;
use reqwest::StatusCode;
use serde_json::json;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Everything logged, at every level, into one buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const DEVICE_KEY: &str = "8e3b1f0c5a7d92e4b6c1d0f3a2e5b7c9";
const MC_KEY: &str = "d41d8cd98f00b204e9800998ecf8427e";
const AS_KEY: &str = "46ab678cd45df4a4e4b375eacd096acc";

fn leaks(haystack: &[u8]) -> Vec<&'static str> {
    let text = String::from_utf8_lossy(haystack).to_lowercase();
    let mut found = vec![];
    for key in [DEVICE_KEY, MC_KEY, AS_KEY] {
        let raw = hex_bytes(key);
        let b64 = base64_of(&raw);
        if text.contains(key) || text.contains(&b64.to_lowercase()) || haystack.windows(16).any(|w| w == raw.as_slice()) {
            found.push(key);
        }
    }
    found
}

fn hex_bytes(h: &str) -> Vec<u8> {
    (0..h.len()).step_by(2).map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap()).collect()
}

fn base64_of(bytes: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..=c.len() {
            out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
        }
    }
    out
}

#[tokio::test]
async fn keys_never_leave_in_responses_logs_or_cleartext_storage() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber_init(move || writer.clone());

    let dir = tempfile::tempdir().unwrap();
    let h = TestHost::start(dir.path()).await.unwrap();
    let mut bodies = Vec::new();
    let dev = json!({"devEui": "0000000000000001", "deviceKey": DEVICE_KEY, "multicastClasses": ["C"]});
    let (status, created) = h.post("/api/devices", dev).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(created["deviceKeySet"], true);
    bodies.push(created);
    let group = json!({"devEui": "00000000000000f0", "ismBand": "EU868", "devAddr": "01020304", "frequency": 869525000, "dataRate": 5, "sessionClass": "C", "mcKey": MC_KEY});
    let (_, g) = h.post("/api/multicast-groups", group).await;
    assert_eq!(g["mcKeySet"], true);
    bodies.push(g);
    assert_eq!(h.load_plugin("thingpark").await.0, reqwest::StatusCode::CREATED);
    let (status, b) = h.post("/api/backend-instances", json!({"name": "tp", "plugin": "thingpark", "settings": {"url": "https://lrc.example.com", "as_id": "a"}, "secrets": {"as_key": AS_KEY}})).await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{b}");
    bodies.push(b);
    // A rejected update that echoes input must not echo the key either.
    let (status, bad) = h.put("/api/devices/0000000000000001", json!({"devEui": "0000000000000002", "deviceKey": DEVICE_KEY})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    bodies.push(bad);
    for path in ["/api/devices", "/api/multicast-groups", "/api/backend-instances", "/api/devices/0000000000000001", "/api/multicast-groups/00000000000000f0"] {
        bodies.push(h.get(path).await.1);
    }
    for body in &bodies {
        assert_eq!(leaks(body.to_string().as_bytes()), Vec::<&str>::new(), "API response leaked a key: {body}");
    }

    h.server.stop().await;
    let logged = captured.0.lock().unwrap().clone();
    assert!(!logged.is_empty(), "log capture is not working");
    assert_eq!(leaks(&logged), Vec::<&str>::new(), "a log line leaked a key");

    // The store on disk holds only sealed values.
    let mut on_disk = Vec::new();
    for entry in walk(dir.path()) {
        if !entry.to_string_lossy().contains("master.key") {
            on_disk.extend(std::fs::read(&entry).unwrap());
        }
    }
    assert!(on_disk.len() > 1000, "store files not found");
    assert_eq!(leaks(&on_disk), Vec::<&str>::new(), "a key is stored in clear");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn tracing_subscriber_init<W: Write + 'static>(make: impl Fn() -> W + Send + Sync + 'static) {
    tracing_subscriber::fmt().with_max_level(tracing::Level::TRACE).with_ansi(false).with_writer(make).init();
}
