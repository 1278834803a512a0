//! The web console in a real browser: headless Chromium driven through
//! chromedriver (WebDriver). An operator signs in, creates every object of
//! a campaign through the forms, starts it on a simulated fleet and
//! watches the stage timeline and the device grid reach the end; a
//! read-only token cannot press start.

mod common;

use airlift::api::{Auth, Role};
use airlift::clock::{Clock, ScaledClock, SystemClock};
use airlift::keys::Vault;
use airlift::server::{Server, ServerConfig};
use airlift::sim::fleet::{Behaviour, FleetConfig, SimFleet};
use airlift::sim::lns::SimLns;
use common::{free_port, NETWORK_TOKEN, SPEED};
use fantoccini::{elements::Element, Client, ClientBuilder, Locator};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ADMIN: &str = "console-admin-token";
const VIEWER: &str = "console-viewer-token";

/// chromedriver and the browser session it drives; the driver (and with
/// it the browser) ends when this is dropped.
struct Browser {
    driver: Child,
    client: Client,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Debian's chromium and chromium-driver (`.ci/run` installs them).
async fn browser(width: u32, height: u32) -> Browser {
    let port = free_port();
    let driver = Command::new("chromedriver")
        .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver is installed (apt-get install chromium-driver)");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", format!("--window-size={width},{height}")]}),
    );
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector).capabilities(caps.clone()).connect(&format!("http://127.0.0.1:{port}")).await {
            Ok(client) => return Browser { driver, client },
            Err(e) if Instant::now() < until => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!("no WebDriver session: {e}"),
        }
    }
}

/// A host with an admin and a viewer token on a sped-up clock, and a
/// simulated network server with `devices` devices, no object provisioned.
async fn host_and_fleet(dir: &std::path::Path, devices: usize) -> (Server, SimLns, Vec<airlift::sim::fleet::Provisioned>) {
    let clock: Arc<dyn Clock> = Arc::new(ScaledClock::new(SystemClock.now_unix_ms(), SPEED));
    let vault = Arc::new(Vault::open(dir).unwrap());
    let fleet = FleetConfig { uplink_period_s: 15, ..FleetConfig::default() };
    let (fleet, provisioned) = SimFleet::new(fleet, clock.clone(), vault, 0x70b3_d57e_d000_0100, &vec![Behaviour::Normal; devices]);
    let lns = SimLns::start(Arc::new(fleet), "127.0.0.1:0".parse().unwrap(), NETWORK_TOKEN).await.unwrap();
    let mut config = ServerConfig::new(dir.to_path_buf());
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.clock = clock;
    config.uplink_window = airlift::api::UplinkWindow::for_clock_speed(SPEED);
    config.auth = Some(Auth::with_tokens(&[("ops", Role::Admin, ADMIN), ("auditor", Role::Viewer, VIEWER)]));
    (Server::start(config).await.unwrap(), lns, provisioned)
}

async fn find(c: &Client, css: &str) -> Element {
    c.wait().at_most(Duration::from_secs(20)).for_element(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"))
}

async fn fill(c: &Client, css: &str, text: &str) {
    let el = find(c, css).await;
    el.clear().await.unwrap();
    el.send_keys(text).await.unwrap();
}

/// Choose the option with `value` in a select (toggles it in a multiple one).
async fn choose(c: &Client, select: &str, value: &str) {
    find(c, &format!("{select} option[value=\"{value}\"]")).await.click().await.unwrap();
}

async fn click(c: &Client, css: &str) {
    find(c, css).await.click().await.unwrap();
}

async fn text_of(c: &Client, css: &str) -> String {
    find(c, css).await.text().await.unwrap()
}

/// Wait, at most `limit`, until the element's text satisfies `ok`.
async fn wait_text(c: &Client, css: &str, limit: Duration, ok: impl Fn(&str) -> bool) -> String {
    let until = Instant::now() + limit;
    loop {
        let text = match c.find(Locator::Css(css)).await {
            Ok(el) => el.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if ok(&text) || Instant::now() > until {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Save a screenshot as a test artifact (under the target directory).
async fn screenshot(c: &Client, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// Controls without an accessible name (label, aria-label, text or title).
async fn unnamed_controls(c: &Client) -> Vec<String> {
    let found = c
        .execute(
            "return [...document.querySelectorAll('button, input, select, textarea, a[href]')].filter(e => e.offsetParent !== null && e.type !== 'hidden')
               .filter(e => !(e.getAttribute('aria-label') || (e.labels && e.labels.length) || e.textContent.trim() || e.title || e.getAttribute('aria-labelledby')))
               .map(e => e.outerHTML.slice(0, 80));",
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(found).unwrap()
}

/// Whether the page is wider than the window (a horizontal scroll).
async fn overflows(c: &Client) -> bool {
    c.execute("return document.documentElement.scrollWidth > window.innerWidth + 1", vec![]).await.unwrap() == serde_json::json!(true)
}

async fn go(c: &Client, base: &str, hash: &str) {
    // Through a blank page: a new hash alone would keep the old view
    // around while the new one loads.
    c.goto("about:blank").await.unwrap();
    c.goto(&format!("{base}/{hash}")).await.unwrap();
    // The page renders after its schemas load: wait for the section.
    find(c, "#view > div").await;
}

async fn sign_in(c: &Client, base: &str, token: &str) {
    c.goto(&format!("{base}/")).await.unwrap();
    fill(c, "#token", token).await;
    click(c, "#sign-in").await;
    let who = wait_text(c, "#who", Duration::from_secs(20), |t| !t.is_empty()).await;
    assert!(!who.is_empty(), "signed in");
}

/// Submit a form and wait for the page to re-render (its list updated).
async fn submit(c: &Client, button: &str) {
    click(c, button).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_runs_a_campaign_from_the_console_and_a_viewer_cannot_start_one() {
    let dir = tempfile::tempdir().unwrap();
    let (server, lns, devices) = host_and_fleet(dir.path(), 3).await;
    let base = format!("http://{}", server.addr);
    let b = browser(1280, 900).await;
    let c = &b.client;

    // Without a session the page is the sign-in form, and a wrong token is told so.
    c.goto(&format!("{base}/")).await.unwrap();
    fill(c, "#token", "not-a-token").await;
    click(c, "#sign-in").await;
    assert!(text_of(c, ".error").await.contains("not valid"), "a wrong token is refused on the form");
    sign_in(c, &base, ADMIN).await;
    assert_eq!(text_of(c, "#who").await, "ops (admin)");
    // The session cookie is HttpOnly: the page's script cannot read it.
    let visible = c.execute("return document.cookie", vec![]).await.unwrap();
    assert_eq!(visible, serde_json::json!(""), "no cookie visible to scripts");

    // A backend instance on the simulated network (secrets write-only).
    go(c, &base, "#/plugins").await;
    fill(c, "#f-name", "simulated network").await;
    choose(c, "#f-plugin", "simulated").await;
    fill(c, "#f-settings", &format!("url={}", lns.url())).await;
    fill(c, "#f-secrets", &format!("token={NETWORK_TOKEN}")).await;
    fill(c, "#f-allowedHosts", &lns.url()).await;
    submit(c, "#BackendInstanceInput-submit").await;
    let instance = wait_text(c, "#instances td.mono", Duration::from_secs(10), |t| !t.is_empty()).await;
    assert!(!instance.is_empty(), "the instance is listed");
    let listed = text_of(c, "#instances").await;
    assert!(listed.contains("secrets set") && !listed.contains(NETWORK_TOKEN), "the secret is shown as set, never its value: {listed}");
    lns.post_uplinks_to(&format!("{base}/backends/{instance}/uplink"));

    // The firmware file, uploaded with its metadata.
    let image: Vec<u8> = (0..12_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
    let path = dir.path().join("firmware-2.0.0.0.bin");
    std::fs::write(&path, &image).unwrap();
    go(c, &base, "#/firmware").await;
    find(c, "#upload-file").await.send_keys(path.to_str().unwrap()).await.unwrap();
    fill(c, "#f-name", "firmware 2.0.0.0").await;
    fill(c, "#f-firmwareVersion", "2.0.0.0").await;
    submit(c, "#FileInput-submit").await;
    let files = wait_text(c, "#files tbody", Duration::from_secs(10), |t| t.contains("firmware 2.0.0.0")).await;
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&image));
    assert!(files.contains(&sha), "the file is listed with its SHA-256: {files}");

    // The multicast group, devices, set and region.
    go(c, &base, "#/fleet/multicast-groups").await;
    let group = "70b3d57ed0ff0100";
    fill(c, "#f-devEui", group).await;
    fill(c, "#f-name", "group one").await;
    choose(c, "#f-ismBand", "EU868").await;
    fill(c, "#f-devAddr", "01ff0100").await;
    fill(c, "#f-frequency", "869525000").await;
    fill(c, "#f-dataRate", "5").await;
    choose(c, "#f-sessionClass", "C").await;
    submit(c, "#MulticastGroupInput-submit").await;
    wait_text(c, "#list-multicast-groups", Duration::from_secs(10), |t| t.contains("group one")).await;

    for d in &devices {
        go(c, &base, "#/devices/new").await;
        fill(c, "#f-devEui", &d.dev_eui.to_string()).await;
        fill(c, "#f-name", &format!("meter {}", d.dev_eui)).await;
        fill(c, "#f-tag", "meters").await;
        fill(c, "#f-deviceKey", &hex::encode(d.server_key)).await;
        fill(c, "#f-firmware", "1.0.0.0").await;
        fill(c, "#f-multicastClasses", "C").await;
        submit(c, "#DeviceInput-submit").await;
        let shown = wait_text(c, "#device-firmware", Duration::from_secs(10), |t| t == "1.0.0.0").await;
        assert_eq!(shown, "1.0.0.0", "device {} created", d.dev_eui);
    }
    // The device list filters by tag.
    go(c, &base, "#/devices").await;
    fill(c, "#filter-tag", "meters").await;
    let rows = wait_text(c, "#view tbody", Duration::from_secs(10), |t| devices.iter().all(|d| t.contains(&d.dev_eui.to_string()))).await;
    assert!(devices.iter().all(|d| rows.contains(&d.dev_eui.to_string())), "{rows}");
    screenshot(c, "devices").await;
    assert_eq!(unnamed_controls(c).await, Vec::<String>::new(), "every control on the device list has a name");
    fill(c, "#filter-tag", "nothing-tagged-so").await;
    let rows = wait_text(c, "#view tbody", Duration::from_secs(10), |t| t.is_empty()).await;
    assert!(rows.is_empty(), "the filter leaves out other tags: {rows}");

    go(c, &base, "#/fleet/device-sets").await;
    fill(c, "#f-name", "meters").await;
    fill(c, "#f-devices", &devices.iter().map(|d| d.dev_eui.to_string()).collect::<Vec<_>>().join("\n")).await;
    submit(c, "#DeviceSetInput-submit").await;
    wait_text(c, "#list-device-sets", Duration::from_secs(10), |t| t.contains("meters")).await;
    go(c, &base, "#/fleet/regions").await;
    fill(c, "#f-name", "city").await;
    choose(c, "#f-multicastGroups", group).await;
    submit(c, "#RegionInput-submit").await;
    wait_text(c, "#list-regions", Duration::from_secs(10), |t| t.contains("city")).await;

    // The campaign form: a refused field is shown next to it.
    go(c, &base, "#/campaigns/new").await;
    fill(c, "#f-name", "meters to 2.0").await;
    let set_id = find(c, "#f-deviceSets option").await.attr("value").await.unwrap().unwrap();
    choose(c, "#f-deviceSets", &set_id).await;
    let region_id = find(c, "#f-regions option").await.attr("value").await.unwrap().unwrap();
    choose(c, "#f-regions", &region_id).await;
    choose(c, "#f-file", &sha).await;
    choose(c, "#f-deviceLibrary", "lorawan-v1").await;
    choose(c, "#f-backendInstance", &instance).await;
    fill(c, "#f-successThreshold", "250").await;
    click(c, "#CampaignInput-submit").await;
    let refused = wait_text(c, "#err-f-successThreshold", Duration::from_secs(10), |t| !t.is_empty()).await;
    assert!(!refused.is_empty(), "the threshold's error is next to it");
    fill(c, "#f-successThreshold", "100").await;
    // The group's fragmentation and session options, and the estimate.
    let options = wait_text(c, "#group-options", Duration::from_secs(10), |t| t.contains("group one")).await;
    assert!(options.contains("closed loop"), "{options}");
    let estimate = wait_text(c, "#estimate", Duration::from_secs(10), |t| t.contains("about")).await;
    assert!(estimate.contains("about"), "the duration estimate shows: {estimate}");
    screenshot(c, "campaign-form").await;
    assert_eq!(unnamed_controls(c).await, Vec::<String>::new(), "every control on the campaign form has a name");
    click(c, "#CampaignInput-submit").await;

    // The campaign page: start, and watch it to the end.
    find(c, "#start").await;
    let campaign_url = c.current_url().await.unwrap().to_string();
    assert!(campaign_url.contains("#/campaigns/"), "{campaign_url}");
    assert!(find(c, "#start").await.is_enabled().await.unwrap(), "an admin may start");
    click(c, "#start").await;
    // While fragments go out: a screenshot, and from here on nothing on
    // the page may move as progress updates arrive.
    let running = wait_text(c, "#campaign-status", Duration::from_secs(60), |t| t == "RUNNING").await;
    assert_eq!(running, "RUNNING");
    find(c, "#timeline li.done").await;
    // Start is for a configured campaign only; stop for a running one.
    assert!(!find(c, "#start").await.is_enabled().await.unwrap(), "a running campaign cannot be started again");
    assert!(find(c, "#stop").await.is_enabled().await.unwrap(), "a running campaign can be stopped");
    wait_text(c, "#fig-fragments", Duration::from_secs(60), |t| t.parse::<u32>().is_ok_and(|n| n > 0)).await;
    screenshot(c, "campaign-running").await;
    c.execute("window.shifted = 0; new PerformanceObserver(l => { for (const e of l.getEntries()) if (!e.hadRecentInput) window.shifted += e.value; }).observe({type: 'layout-shift'});", vec![])
        .await
        .unwrap();
    let status = wait_text(c, "#campaign-status", Duration::from_secs(180), |t| t == "COMPLETED" || t == "ERROR" || t == "STOPPED").await;
    assert_eq!(status, "COMPLETED", "the campaign completes");
    // Every stage of the timeline done, every device green.
    let stages = c.find_all(Locator::Css("#timeline li")).await.unwrap();
    assert!(stages.len() >= 5, "{} stages shown", stages.len());
    for li in &stages {
        let class = li.attr("class").await.unwrap().unwrap_or_default();
        assert!(class.contains("done"), "stage {:?} is {class}", li.attr("data-stage").await.unwrap());
    }
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let cells = c.find_all(Locator::Css("#device-grid .cell")).await.unwrap();
        let mut statuses = Vec::new();
        for cell in &cells {
            statuses.push(cell.attr("data-status").await.unwrap().unwrap_or_default());
        }
        if statuses.len() == devices.len() && statuses.iter().all(|s| s == "COMPLETED") {
            break;
        }
        assert!(Instant::now() < until, "device grid: {statuses:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let shifted = c.execute("return window.shifted", vec![]).await.unwrap().as_f64().unwrap();
    assert!(shifted < 0.01, "layout shift while progress updated: {shifted}");
    assert_eq!(unnamed_controls(c).await, Vec::<String>::new(), "every control on the campaign page has a name");
    let fragments = text_of(c, "#fig-fragments").await;
    assert!(fragments.parse::<u32>().unwrap_or(0) > 0, "fragments sent: {fragments}");
    assert!(find(c, "#sent-line").await.attr("points").await.unwrap().is_some_and(|p| !p.is_empty()), "the chart drew the fragments sent");
    for d in &devices {
        assert_eq!(lns.fleet.received_file(d.dev_eui).as_deref(), Some(image.as_slice()), "device {} holds the exact file", d.dev_eui);
    }
    // At a phone's width no page scrolls sideways.
    c.set_window_size(390, 844).await.unwrap();
    for page in [campaign_url.clone(), format!("{base}/#/devices"), format!("{base}/#/campaigns/new"), format!("{base}/#/plugins"), format!("{base}/#/firmware")] {
        c.goto("about:blank").await.unwrap();
        c.goto(&page).await.unwrap();
        find(c, "#view > div").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!overflows(c).await, "{page} scrolls sideways at 390 px");
    }
    screenshot(c, "campaign-phone").await;
    c.set_window_size(1280, 900).await.unwrap();
    // The device page: its campaign history.
    go(c, &base, &format!("#/devices/{}", devices[0].dev_eui)).await;
    let history = wait_text(c, "#view", Duration::from_secs(10), |t| t.contains("meters to 2.0")).await;
    assert!(history.contains("meters to 2.0"), "the campaign is in the device's history");

    // Sign out; a viewer sees the campaign but cannot start it.
    click(c, "#sign-out").await;
    find(c, "#token").await;
    sign_in(c, &base, VIEWER).await;
    c.goto(&campaign_url).await.unwrap();
    let start = find(c, "#start").await;
    assert!(!start.is_enabled().await.unwrap(), "a viewer's start button is disabled");
    // And the API refuses the viewer's session even when the button is forced.
    let answer = c
        .execute_async(
            "const done = arguments[arguments.length - 1]; fetch('/api/campaigns', {method: 'POST', headers: {'x-airlift-console': '1', 'content-type': 'application/json'}, body: '{}'}).then(r => done(r.status));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(answer, serde_json::json!(403), "the viewer's session may not write");
    // A write with the session cookie but without the console's header
    // (what a cross-site form could send) is refused too.
    click(c, "#sign-out").await;
    find(c, "#token").await;
    sign_in(c, &base, ADMIN).await;
    let answer = c
        .execute_async("const done = arguments[arguments.length - 1]; fetch('/api/device-sets', {method: 'POST', headers: {'content-type': 'application/json'}, body: JSON.stringify({name: 'x'})}).then(r => done(r.status));", vec![])
        .await
        .unwrap();
    assert_eq!(answer, serde_json::json!(403), "a write without the console's header is refused");
    b.client.clone().close().await.unwrap();
    server.stop().await;
}
