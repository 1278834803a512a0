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
use airlift_sim::fleet::{Behaviour, FleetConfig, SimFleet};
use airlift_sim::lns::SimLns;
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
async fn host_and_fleet(dir: &std::path::Path, devices: usize) -> (Server, SimLns, Vec<airlift_sim::fleet::Provisioned>) {
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
    // The device page: its last uplinks (from the network) and its
    // campaign history.
    go(c, &base, &format!("#/devices/{}", devices[0].dev_eui)).await;
    let history = wait_text(c, "#view", Duration::from_secs(10), |t| t.contains("meters to 2.0")).await;
    assert!(history.contains("meters to 2.0"), "the campaign is in the device's history");
    let uplinks = c.find_all(Locator::Css("#uplinks tbody tr")).await.unwrap();
    assert!(!uplinks.is_empty(), "the device's last uplinks are listed");

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

/// What the first test does not press: editing and archiving a device,
/// a delta key generated and exported, a plugin's capabilities, a plugin
/// loaded through the page (a 0.1.0 build), an instance edited with its
/// secret kept, and a campaign moved to another instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_edits_archives_exports_loads_and_moves() {
    let dir = tempfile::tempdir().unwrap();
    let (server, lns, _) = host_and_fleet(dir.path(), 1).await;
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    let get = |path: String| {
        let http = http.clone();
        async move { http.get(path).bearer_auth(ADMIN).send().await.unwrap().json::<serde_json::Value>().await.unwrap() }
    };
    let b = browser(1280, 900).await;
    let c = &b.client;
    sign_in(c, &base, ADMIN).await;

    // A device: created, renamed, archived.
    go(c, &base, "#/devices/new").await;
    fill(c, "#f-devEui", "70b3d57ed0000999").await;
    fill(c, "#f-name", "first name").await;
    submit(c, "#DeviceInput-submit").await;
    find(c, "#archive-device").await;
    fill(c, "#f-name", "second name").await;
    submit(c, "#DeviceInput-submit").await;
    let title = wait_text(c, "h1", Duration::from_secs(10), |t| t.contains("second name")).await;
    assert!(title.contains("second name"), "{title}");
    assert_eq!(get(format!("{base}/api/devices/70b3d57ed0000999")).await["name"], "second name");
    click(c, "#archive-device").await;
    wait_text(c, "h1", Duration::from_secs(10), |t| t.contains("ARCHIVED")).await;
    assert_eq!(get(format!("{base}/api/devices/70b3d57ed0000999")).await["archived"], true);

    // A Smart Delta key generated in the host, its public key exported.
    go(c, &base, "#/firmware").await;
    fill(c, "#key-name", "fleet signing").await;
    submit(c, "#SmartDeltaKeyInput-submit").await;
    wait_text(c, "#keys", Duration::from_secs(10), |t| t.contains("fleet signing")).await;
    click(c, "#keys button").await;
    let exported = wait_text(c, "#public-key", Duration::from_secs(10), |t| t.contains("PUBLIC KEY")).await;
    assert!(exported.contains("BEGIN PUBLIC KEY") && !exported.contains("PRIVATE"), "{exported}");

    // A plugin's capabilities, and a plugin loaded from the page.
    go(c, &base, "#/plugins").await;
    let rows = c.find_all(Locator::Css("#plugins tbody tr")).await.unwrap();
    let mut described = false;
    for row in rows {
        if row.text().await.unwrap().starts_with("simulated") {
            row.find(Locator::Css("button")).await.unwrap().click().await.unwrap();
            described = wait_text(c, "#describe", Duration::from_secs(10), |t| t.contains('{')).await.contains('{');
        }
    }
    assert!(described, "the simulated plugin described itself");
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/plugins-wit-0.1.0").canonicalize().unwrap();
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(fixtures.join("simulated.json")).unwrap()).unwrap();
    manifest["name"] = "simulated-first-contract".into();
    fill(c, "#plugin-manifest", &manifest.to_string()).await;
    find(c, "#plugin-wasm").await.send_keys(fixtures.join("simulated.wasm").to_str().unwrap()).await.unwrap();
    submit(c, "#plugin-load").await;
    let listed = wait_text(c, "#plugins", Duration::from_secs(60), |t| t.contains("simulated-first-contract")).await;
    assert!(listed.contains("simulated-first-contract"), "{listed}");

    // Two instances; the first edited without its secret, which is kept.
    for name in ["network one", "network two"] {
        go(c, &base, "#/plugins").await;
        fill(c, "#f-name", name).await;
        choose(c, "#f-plugin", "simulated").await;
        fill(c, "#f-settings", &format!("url={}", lns.url())).await;
        fill(c, "#f-secrets", &format!("token={NETWORK_TOKEN}")).await;
        fill(c, "#f-allowedHosts", &lns.url()).await;
        submit(c, "#BackendInstanceInput-submit").await;
        wait_text(c, "#instances", Duration::from_secs(10), |t| t.contains(name)).await;
    }
    let instances = get(format!("{base}/api/backend-instances")).await;
    let id_of = |name: &str| instances.as_array().unwrap().iter().find(|i| i["name"] == name).unwrap()["id"].as_str().unwrap().to_string();
    let (one, two) = (id_of("network one"), id_of("network two"));
    click(c, "#instances button").await;
    let editing = wait_text(c, "#instance-editor h2", Duration::from_secs(10), |t| t.contains("network one")).await;
    assert!(editing.contains("network one"), "{editing}");
    assert_eq!(find(c, "#f-secrets").await.prop("value").await.unwrap().unwrap_or_default(), "", "a secret is never shown");
    fill(c, "#f-settings", &format!("url={}\nnote=edited", lns.url())).await;
    submit(c, "#BackendInstanceInput-submit").await;
    let mut edited = serde_json::Value::Null;
    for _ in 0..50 {
        edited = get(format!("{base}/api/backend-instances/{one}")).await;
        if edited["settings"]["note"] == "edited" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(edited["settings"]["note"], "edited", "{edited}");
    assert_eq!(edited["secretsSet"], true, "the secret left empty is kept: {edited}");

    // A campaign moved to the other instance from its page.
    let post = |path: &str, body: serde_json::Value| http.post(format!("{base}{path}")).bearer_auth(ADMIN).json(&body).send();
    assert!(post("/api/devices", serde_json::json!({"devEui": "70b3d57ed0000998"})).await.unwrap().status().is_success());
    let set = post("/api/device-sets", serde_json::json!({"name": "one", "devices": ["70b3d57ed0000998"]})).await.unwrap().json::<serde_json::Value>().await.unwrap()["id"].clone();
    let group = serde_json::json!({"devEui": "70b3d57ed0ff0999", "ismBand": "EU868", "devAddr": "01ff0999", "frequency": 869525000, "dataRate": 5, "sessionClass": "C"});
    assert!(post("/api/multicast-groups", group).await.unwrap().status().is_success());
    let region = post("/api/regions", serde_json::json!({"name": "r", "multicastGroups": ["70b3d57ed0ff0999"]})).await.unwrap().json::<serde_json::Value>().await.unwrap()["id"].clone();
    let created = http
        .post(format!("{base}/api/campaigns"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"name": "setup only", "campaignType": "MULTICAST_SETUP", "maxDurationMinutes": 60, "successThreshold": 50, "deviceLibrary": "lorawan-v1", "backendInstance": one, "deviceSets": [set], "regions": [region]}))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{}", created.text().await.unwrap());
    let campaign = created.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    go(c, &base, &format!("#/campaigns/{campaign}")).await;
    choose(c, "#move-to", &two).await;
    click(c, "#move").await;
    let said = wait_text(c, "#campaign-message", Duration::from_secs(10), |t| !t.is_empty()).await;
    assert!(said.contains("done"), "{said}");
    assert_eq!(get(format!("{base}/api/campaigns/{campaign}")).await["backendInstance"], two.as_str());
    b.client.clone().close().await.unwrap();
    server.stop().await;
}
