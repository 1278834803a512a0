//! The API under load, on 127.0.0.1 with an embedded store: device creates
//! (each acknowledged on disk) from several clients, pages of 100 devices
//! read by 20 clients at once, and the process's memory while 150 clients
//! post oversized uplink bodies at the same time. Prints requests per
//! second, p50/p99 latencies and resident memory.
//!
//!     cargo run --release -p airlift-examples --bin load-bench -- [DEVICES]

use airlift::api::{Auth, Role};
use airlift::server::{Server, ServerConfig};
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "load-bench-admin";

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:").and_then(|v| v.trim().trim_end_matches(" kB").parse::<f64>().ok()))
        .unwrap_or(0.0)
        / 1024.0
}

/// Requests per second, p50 and p99 of a set of latencies.
fn report(what: &str, mut latencies: Vec<Duration>, wall: Duration) {
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)].as_secs_f64() * 1000.0;
    println!("{what:<44} {:>8.0} req/s   p50 {:>7.1} ms   p99 {:>7.1} ms   ({} requests)", latencies.len() as f64 / wall.as_secs_f64(), at(0.5), at(0.99), latencies.len());
}

/// Run `total` requests from `clients` concurrent clients; request `i` is `make(i)`.
async fn load(clients: usize, total: usize, make: impl Fn(usize) -> reqwest::RequestBuilder + Send + Sync + 'static) -> (Vec<Duration>, Duration, usize) {
    let make = Arc::new(make);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let make = make.clone();
            tokio::spawn(async move {
                let (mut latencies, mut failed) = (Vec::new(), 0);
                for i in (c..total).step_by(clients) {
                    let t = Instant::now();
                    match make(i).send().await {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            latencies.push(t.elapsed());
                        }
                        _ => failed += 1,
                    }
                }
                (latencies, failed)
            })
        })
        .collect();
    let (mut all, mut failed) = (Vec::new(), 0);
    for t in tasks {
        let (l, f) = t.await.expect("client task");
        all.extend(l);
        failed += f;
    }
    (all, started.elapsed(), failed)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let devices: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let dir = tempfile::tempdir()?;
    let mut config = ServerConfig::new(dir.path().to_path_buf());
    config.bind = "127.0.0.1:0".parse()?;
    config.load_bundled = false;
    config.run_campaigns = false;
    config.auth = Some(Auth::with_tokens(&[("admin", Role::Admin, TOKEN)]));
    let server = Server::start(config).await?;
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    println!("load-bench: {devices} devices, server on {base}, RSS at start {:.0} MiB", rss_mib());

    // Creates: every answer means the device is on disk.
    let (h, b) = (http.clone(), base.clone());
    let (latencies, wall, failed) = load(8, devices, move |i| {
        let body = serde_json::json!({"devEui": format!("{:016x}", 0x70b3_d57e_0000_0000u64 + i as u64), "name": format!("meter {i}"),
            "lorawanVersion": "1.0", "multicastClasses": ["C"], "deviceKey": "000102030405060708090a0b0c0d0e0f"});
        h.post(format!("{b}/api/devices")).bearer_auth(TOKEN).json(&body)
    })
    .await;
    report("create device (8 clients)", latencies, wall);
    anyhow::ensure!(failed == 0, "{failed} creates failed");

    // Pages of 100, from all over the list.
    let (h, b) = (http.clone(), base.clone());
    let (latencies, wall, failed) = load(20, 2_000, move |i| {
        let after = format!("{:016x}", 0x70b3_d57e_0000_0000u64 + (i * 7919 % devices) as u64);
        h.get(format!("{b}/api/devices?limit=100&after={after}")).bearer_auth(TOKEN)
    })
    .await;
    report("list a page of 100 devices (20 clients)", latencies, wall);
    anyhow::ensure!(failed == 0, "{failed} lists failed");
    let (h, b) = (http.clone(), base.clone());
    let (latencies, wall, _) = load(4, 40, move |_| h.get(format!("{b}/api/devices")).bearer_auth(TOKEN)).await;
    report("list the first 1000 devices (4 clients)", latencies, wall);

    // 150 clients post 16 MiB uplink bodies at once, streamed in 64 KiB
    // chunks: the server must refuse them while they stream in.
    let before = rss_mib();
    let peak = Arc::new(std::sync::Mutex::new(before));
    let sampling = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                let now = rss_mib();
                {
                    let mut p = peak.lock().unwrap();
                    *p = p.max(now);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let started = Instant::now();
    let posts: Vec<_> = (0..150)
        .map(|_| {
            let (h, b) = (http.clone(), base.clone());
            tokio::spawn(async move {
                let chunks = futures_util::stream::iter((0..256).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 64 * 1024])));
                h.post(format!("{b}/backends/none/uplink")).body(reqwest::Body::wrap_stream(chunks.boxed())).send().await.map(|r| r.status().as_u16()).unwrap_or(0)
            })
        })
        .collect();
    let mut statuses = std::collections::BTreeMap::new();
    for p in posts {
        *statuses.entry(p.await?).or_insert(0) += 1;
    }
    sampling.abort();
    let peak = *peak.lock().unwrap();
    println!(
        "150 oversized uplinks (16 MiB each)               answered in {:.1} s with {statuses:?} (0: connection closed early); RSS {before:.0} MiB before, peak {peak:.0} MiB",
        started.elapsed().as_secs_f64()
    );
    println!("RSS at the end {:.0} MiB; aims: p99 of a page of 100 under 200 ms, RSS under 300 MiB", rss_mib());
    server.stop().await;
    Ok(())
}
