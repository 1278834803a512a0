//! REST API: every object's create/read/update/archive round trip, field
//! validation errors, auth roles, file upload limits.

mod common;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const DEV: &str = "70b3d57ed0000001";
const GROUP: &str = "70b3d57ed00000f0";
/// A throwaway P-256 key generated for these tests.
const PEM: &str = include_str!("data/smart-delta-test-key.pem");

async fn host() -> (TestHost, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (TestHost::start(dir.path()).await.unwrap(), dir)
}

fn assert_field_error(resp: (StatusCode, Value), field: &str) {
    assert_eq!(resp.0, StatusCode::BAD_REQUEST, "{}", resp.1);
    assert_eq!(resp.1["status"], "fail");
    assert_eq!(resp.1["code"], 400);
    assert_eq!(resp.1["field"], field, "{}", resp.1);
    assert!(resp.1["error"].as_str().unwrap().starts_with(field), "{}", resp.1);
}

/// Create, read, list, update, archive; archived objects leave lists but stay.
async fn round_trip(h: &TestHost, kind: &str, create: Value, update: Value, changed: (&str, Value)) -> String {
    let (status, created) = h.post(&format!("/api/{kind}"), create).await;
    assert_eq!(status, StatusCode::CREATED, "{kind}: {created}");
    let id = created.get("id").or(created.get("devEui")).and_then(Value::as_str).unwrap().to_string();

    let (status, read) = h.get(&format!("/api/{kind}/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read, created);
    let (_, list) = h.get(&format!("/api/{kind}")).await;
    assert!(list.as_array().unwrap().iter().any(|o| o == &created));

    let (status, updated) = h.put(&format!("/api/{kind}/{id}"), update).await;
    assert_eq!(status, StatusCode::OK, "{kind}: {updated}");
    assert_eq!(updated[changed.0], changed.1, "{kind}: {updated}");
    assert_eq!(h.get(&format!("/api/{kind}/{id}")).await.1, updated);

    let (status, archived) = h.delete(&format!("/api/{kind}/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(archived["archived"], true);
    let (_, list) = h.get(&format!("/api/{kind}")).await;
    assert!(!list.as_array().unwrap().iter().any(|o| o.get("id").or(o.get("devEui")) == Some(&json!(id))));
    let (_, all) = h.get(&format!("/api/{kind}?archived=true")).await;
    assert!(all.as_array().unwrap().iter().any(|o| o.get("id").or(o.get("devEui")) == Some(&json!(id))));
    assert_eq!(h.get(&format!("/api/{kind}/{id}")).await.0, StatusCode::OK, "archived objects stay readable");
    id
}

fn device(eui: &str) -> Value {
    json!({"devEui": eui, "name": "meter", "lorawanVersion": "1.0", "multicastClasses": ["C"], "deviceKey": "000102030405060708090a0b0c0d0e0f"})
}

fn group(eui: &str) -> Value {
    json!({"devEui": eui, "name": "g", "ismBand": "EU868", "devAddr": "01020304", "groupId": 1, "frequency": 869525000, "dataRate": 5, "sessionClass": "C"})
}

#[tokio::test]
async fn every_object_round_trips() {
    let (h, _dir) = host().await;
    round_trip(&h, "devices", device(DEV), json!({"devEui": DEV, "name": "meter 2"}), ("name", json!("meter 2"))).await;
    round_trip(&h, "multicast-groups", group(GROUP), json!({"devEui": GROUP, "ismBand": "EU868", "devAddr": "01020304", "frequency": 869525000, "dataRate": 3, "sessionClass": "B"}), ("dataRate", json!(3))).await;

    // Live references for the kinds that point at others.
    h.post("/api/devices", device("70b3d57ed0000002")).await;
    h.post("/api/multicast-groups", group("70b3d57ed00000f1")).await;
    round_trip(&h, "device-sets", json!({"name": "s", "devices": ["70-b3-d5-7e-d0-00-00-02"]}), json!({"name": "s2", "devices": []}), ("name", json!("s2"))).await;
    round_trip(&h, "regions", json!({"name": "r", "multicastGroups": ["70b3d57ed00000f1"]}), json!({"name": "r", "description": "north"}), ("description", json!("north"))).await;
    let key = round_trip(&h, "smart-delta-keys", json!({"name": "k", "privateKey": PEM}), json!({"name": "k2"}), ("name", json!("k2"))).await;
    round_trip(&h, "device-profiles", json!({"name": "p", "producerId": "acme"}), json!({"name": "p", "mcuType": "STM32L0", "fports": {"fragmentation": 30}}), ("fports", json!({"fragmentation": 30}))).await;
    assert_eq!(h.load_plugin("simulated").await.0, StatusCode::CREATED);
    let mut moved = sim_instance();
    moved["settings"]["url"] = json!("http://127.0.0.1:10");
    round_trip(&h, "backend-instances", sim_instance(), moved, ("settings", json!({"url": "http://127.0.0.1:10"}))).await;

    // The archived key's public part is still exportable for device builds.
    let (status, public) = h.get(&format!("/api/smart-delta-keys/{key}/public-key")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(public["raw"].as_str().unwrap().len(), 128);
    assert!(public["pem"].as_str().unwrap().starts_with("-----BEGIN PUBLIC KEY-----"));

    // Without a PEM the host makes a key; only its public part ever shows.
    let (status, made) = h.post("/api/smart-delta-keys", json!({"name": "generated"})).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert!(made.get("privateKey").is_none() && made["privateKeySet"] == true, "{made}");
    let id = made["id"].as_str().unwrap();
    let (_, public2) = h.get(&format!("/api/smart-delta-keys/{id}/public-key")).await;
    assert_eq!(public2["raw"].as_str().unwrap().len(), 128);
    assert_ne!(public2["raw"], public["raw"], "a fresh key");
}

#[tokio::test]
async fn campaigns_round_trip_with_live_references() {
    let (h, _dir) = host().await;
    assert_eq!(h.load_plugin("fixture-echo-v1").await.0, StatusCode::CREATED);
    h.post("/api/devices", device(DEV)).await;
    h.post("/api/multicast-groups", group(GROUP)).await;
    let set = h.post("/api/device-sets", json!({"name": "s", "devices": [DEV]})).await.1["id"].clone();
    let region = h.post("/api/regions", json!({"name": "r", "multicastGroups": [GROUP]})).await.1["id"].clone();
    assert_eq!(h.load_plugin("simulated").await.0, StatusCode::CREATED);
    let backend = h.post("/api/backend-instances", sim_instance()).await.1["id"].clone();
    let campaign = json!({"name": "c", "campaignType": "MULTICAST_SETUP", "deviceSets": [set], "regions": [region],
        "maxDurationMinutes": 60, "successThreshold": 90, "deviceLibrary": "fixture-echo", "backendInstance": backend});
    let mut changed = campaign.clone();
    changed["successThreshold"] = json!(75);
    round_trip(&h, "campaigns", campaign.clone(), changed, ("successThreshold", json!(75))).await;

    let (_, created) = h.post("/api/campaigns", campaign.clone()).await;
    assert_eq!(created["status"], "CONFIGURED");
    let mut bad = campaign.clone();
    bad["deviceLibrary"] = json!("no-such-library");
    assert_field_error(h.post("/api/campaigns", bad).await, "deviceLibrary");
    let mut bad = campaign.clone();
    bad["successThreshold"] = json!(101);
    assert_field_error(h.post("/api/campaigns", bad).await, "successThreshold");
    let mut bad = campaign.clone();
    bad["campaignType"] = json!("FIRMWARE_UPDATE");
    assert_field_error(h.post("/api/campaigns", bad).await, "file");
    let mut bad = campaign.clone();
    bad["deviceSets"] = json!(["999"]);
    assert_field_error(h.post("/api/campaigns", bad).await, "deviceSets");

    // Message campaigns: the message is required, checked, and only theirs.
    let mut message = campaign.clone();
    message["campaignType"] = json!("MESSAGE");
    assert_field_error(h.post("/api/campaigns", message.clone()).await, "message");
    for (bad, field) in [
        (json!({"messageFormat": "Hexadecimal", "messagePayload": "zz", "messagePort": 10, "multicastSessionTimeout": 5}), "message.messagePayload"),
        (json!({"messageFormat": "Base64", "messagePayload": "SGk=", "messagePort": 221, "multicastSessionTimeout": 5}), "message.messagePort"),
        (json!({"messageFormat": "Base64", "messagePayload": "SGk=", "messagePort": 10, "multicastSessionTimeout": 16}), "message.multicastSessionTimeout"),
    ] {
        message["message"] = bad;
        assert_field_error(h.post("/api/campaigns", message.clone()).await, field);
    }
    message["message"] = json!({"messageFormat": "Hexadecimal", "messagePayload": "48656c6c6f", "messagePort": 10, "multicastSessionTimeout": 5});
    assert_eq!(h.post("/api/campaigns", message.clone()).await.0, StatusCode::CREATED);
    let mut not_a_message = campaign;
    not_a_message["message"] = message["message"].clone();
    assert_field_error(h.post("/api/campaigns", not_a_message).await, "message");
}

#[tokio::test]
async fn validation_errors_name_the_field() {
    let (h, _dir) = host().await;
    // An instance may be granted https hosts, plain http only on loopback,
    // and never link-local or metadata addresses.
    for refused in ["http://*", "http://lns.example.com", "https://169.254.169.254"] {
        let instance = json!({"name": "x", "plugin": "p", "allowedHosts": [refused]});
        assert_field_error(h.post("/api/backend-instances", instance).await, "allowedHosts");
    }
    // The plugin must be a loaded backend, and its `validate` must pass.
    let granted = json!({"name": "x", "plugin": "p", "allowedHosts": ["https://lns.example.com", "http://127.0.0.1:8080"]});
    assert_field_error(h.post("/api/backend-instances", granted).await, "settings");
    assert_eq!(h.load_plugin("simulated").await.0, StatusCode::CREATED);
    let mut no_token = sim_instance();
    no_token["secrets"] = json!({});
    assert_field_error(h.post("/api/backend-instances", no_token).await, "settings");
    let mut granted = sim_instance();
    granted["allowedHosts"] = json!(["https://lns.example.com", "http://127.0.0.1:8080"]);
    assert_eq!(h.post("/api/backend-instances", granted).await.0, StatusCode::CREATED);
    let mut d = device("not-an-eui");
    assert_field_error(h.post("/api/devices", d.clone()).await, "devEui");
    d = device(DEV);
    d["deviceKey"] = json!("0011");
    assert_field_error(h.post("/api/devices", d.clone()).await, "deviceKey");
    d = device(DEV);
    d["multicastClasses"] = json!([]);
    assert_field_error(h.post("/api/devices", d).await, "multicastClasses");
    d = device(DEV);
    d["lorawanVersion"] = json!("1.2");
    assert_field_error(h.post("/api/devices", d).await, "lorawanVersion");
    d = device(DEV);
    d["bogus"] = json!(1);
    let (status, body) = h.post("/api/devices", d).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("bogus"), "{body}");

    let mut g = group(GROUP);
    g["groupId"] = json!(4);
    let resp = h.post("/api/multicast-groups", g).await;
    assert!(resp.1["error"].as_str().unwrap().contains("0-3"));
    assert_field_error(resp, "groupId");
    g = group(GROUP);
    g["devAddr"] = json!("xyz");
    assert_field_error(h.post("/api/multicast-groups", g).await, "devAddr");
    g = group(GROUP);
    g["dlDwellTime"] = json!(true);
    assert_field_error(h.post("/api/multicast-groups", g).await, "dlDwellTime");

    assert_field_error(h.post("/api/device-sets", json!({"name": "s", "devices": [DEV]})).await, "devices");
    assert_field_error(h.post("/api/device-profiles", json!({"name": "p", "fports": {"fragmentation": 0}})).await, "fports");
    assert_field_error(h.post("/api/smart-delta-keys", json!({"name": "k", "privateKey": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"})).await, "privateKey");
    assert_field_error(h.post("/api/backend-instances", json!({"name": "x", "plugin": "p", "allowedHosts": ["ftp://x"]})).await, "allowedHosts");

    // Duplicates and unknown ids.
    assert_eq!(h.post("/api/devices", device(DEV)).await.0, StatusCode::CREATED);
    assert_eq!(h.post("/api/devices", device(DEV)).await.0, StatusCode::CONFLICT);
    assert_eq!(h.get("/api/devices/0000000000000099").await.0, StatusCode::NOT_FOUND);
    let (status, body) = h.call(Some(ADMIN), Method::POST, "/api/devices", Value::String("{".into())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn tokens_and_roles_are_enforced() {
    let (h, _dir) = host().await;
    assert_eq!(h.call(None, Method::GET, "/api/devices", Value::Null).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(h.call(Some("wrong"), Method::GET, "/api/devices", Value::Null).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(h.call(Some(VIEWER), Method::GET, "/api/devices", Value::Null).await.0, StatusCode::OK);
    let (status, body) = h.call(Some(VIEWER), Method::POST, "/api/devices", device(DEV)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["code"], 403);
    assert_eq!(h.call(Some(OPERATOR), Method::POST, "/api/devices", device(DEV)).await.0, StatusCode::CREATED);
    assert_eq!(h.load_plugin("simulated").await.0, StatusCode::CREATED);
    let instance = sim_instance();
    assert_eq!(h.call(Some(OPERATOR), Method::POST, "/api/backend-instances", instance.clone()).await.0, StatusCode::FORBIDDEN);
    assert_eq!(h.call(Some(ADMIN), Method::POST, "/api/backend-instances", instance).await.0, StatusCode::CREATED);
    assert_eq!(h.call(Some(OPERATOR), Method::POST, "/api/plugins", Value::Null).await.0, StatusCode::FORBIDDEN);
    assert_eq!(h.call(None, Method::GET, "/api/health", Value::Null).await.0, StatusCode::OK);
    // Errors the framework answers itself are JSON too.
    for (method, path) in [(Method::GET, "/api/devices?archived=maybe"), (Method::GET, "/api/no-such-thing"), (Method::DELETE, "/api/health")] {
        let (status, body) = h.call(Some(ADMIN), method.clone(), path, Value::Null).await;
        assert!(status.is_client_error(), "{method} {path}: {status}");
        assert_eq!(body["code"], status.as_u16(), "{method} {path}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{method} {path}: {body}");
    }
    // Names are bounded, and so are object bodies.
    let mut long = device("70b3d57ed0000099");
    long["name"] = Value::String("n".repeat(300));
    assert_field_error(h.call(Some(ADMIN), Method::POST, "/api/devices", long).await, "name");
    let mut huge = device("70b3d57ed0000098");
    huge["name"] = Value::String("n".repeat(10 * 1024 * 1024));
    assert_eq!(h.call(Some(ADMIN), Method::POST, "/api/devices", huge).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    // Anyone may post uplinks: a body over 1 MiB is refused (JSON 413), not taken.
    let big = h.http.post(h.url("/backends/any-instance/uplink")).body(vec![b'x'; 2 * 1024 * 1024]).send().await.unwrap();
    assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(big.json::<Value>().await.unwrap()["code"], 413);
    // The scheme is case-insensitive.
    let lower = h.http.get(h.url("/api/devices")).header("authorization", format!("bearer {VIEWER}")).send().await.unwrap();
    assert_eq!(lower.status(), StatusCode::OK);
}

#[tokio::test]
async fn files_upload_by_hash_with_a_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let h = TestHost::start_with(dir.path(), |c| c.upload_limit = 1024).await.unwrap();
    let upload = |bytes: Vec<u8>, metadata: Option<Value>| {
        let mut form = reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(bytes).file_name("fw.bin"));
        if let Some(m) = metadata {
            form = form.text("metadata", m.to_string());
        }
        h.http.post(h.url("/api/files")).bearer_auth(OPERATOR).multipart(form).send()
    };
    let image: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
    let resp = upload(image.clone(), Some(json!({"firmwareVersion": "1.2.0.0"}))).await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let file: Value = resp.json().await.unwrap();
    assert_eq!(file["size"], 1000);
    assert_eq!(file["fileType"], "firmware");
    assert_eq!(file["name"], "fw.bin");
    let id = file["id"].as_str().unwrap();
    assert_eq!(id.len(), 64);
    let content = h.http.get(h.url(&format!("/api/files/{id}/content"))).bearer_auth(VIEWER).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(content.as_ref(), image.as_slice());
    // Metadata update keeps the content.
    let (status, updated) = h.put(&format!("/api/files/{id}"), json!({"firmwareVersion": "1.3.0.0", "description": "fix"})).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["size"], 1000);
    // The same bytes again are the same file: as they are, or a conflict
    // rather than metadata quietly rewritten under a campaign.
    let resp = upload(image.clone(), Some(json!({"firmwareVersion": "1.3.0.0", "description": "fix"}))).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = upload(image.clone(), Some(json!({"description": "just a binary"}))).await.unwrap();
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    let (_, kept) = h.get(&format!("/api/files/{id}")).await;
    assert_eq!(kept["firmwareVersion"], "1.3.0.0", "{kept}");

    let resp = upload(vec![0u8; 1025], None).await.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let resp = upload(image.clone(), Some(json!({"firmwareVersion": "1.2.x"}))).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(resp.json::<Value>().await.unwrap()["field"], "firmwareVersion");
    let resp = upload(vec![], None).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    // Nothing partial was kept.
    assert_eq!(std::fs::read_dir(dir.path().join("blobs/tmp")).unwrap().count(), 0);
    let (_, files) = h.get("/api/files").await;
    assert_eq!(files.as_array().unwrap().len(), 1);
    assert!(h.healthy().await);

    // A refused upload streamed its content to disk first: the orphan
    // goes when the host starts again; the stored file and plugins stay.
    let orphan: Vec<u8> = (0..900u32).map(|i| (i * 13) as u8).collect();
    let resp = upload(orphan, Some(json!({"firmwareVersion": "bad"}))).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let blobs = || std::fs::read_dir(dir.path().join("blobs")).unwrap().filter(|e| e.as_ref().unwrap().path().is_file()).count();
    let before = blobs();
    let (_, plugins) = h.get("/api/plugins").await;
    h.server.stop().await;
    let h = TestHost::start_with(dir.path(), |c| c.upload_limit = 1024).await.unwrap();
    assert_eq!(blobs(), before - 2, "the orphans of the refused uploads (this one, and the empty file) removed");
    let content = h.http.get(h.url(&format!("/api/files/{id}/content"))).bearer_auth(VIEWER).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(content.as_ref(), image.as_slice());
    assert_eq!(h.get("/api/plugins").await.1, plugins, "every plugin still loads");
}

#[tokio::test]
async fn lists_come_in_pages() {
    let (h, _dir) = host().await;
    let euis: Vec<String> = (1..=7).map(|i| format!("70b3d57ed00001{i:02x}")).collect();
    for eui in &euis {
        assert_eq!(h.post("/api/devices", device(eui)).await.0, StatusCode::CREATED);
    }
    let (mut seen, mut after) = (Vec::new(), None::<String>);
    for _ in 0..10 {
        let path = match &after {
            Some(a) => format!("/api/devices?limit=3&after={a}"),
            None => "/api/devices?limit=3".to_string(),
        };
        let resp = h.http.get(h.url(&path)).bearer_auth(ADMIN).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        after = resp.headers().get("x-next-after").map(|v| v.to_str().unwrap().to_string());
        let page: Vec<Value> = resp.json().await.unwrap();
        assert!(page.len() <= 3, "a page holds at most the limit");
        seen.extend(page.iter().map(|d| d["devEui"].as_str().unwrap().to_string()));
        if after.is_none() {
            break;
        }
    }
    let mut expected: Vec<String> = euis.iter().map(|e| e.parse::<airlift::model::Eui>().unwrap().to_string()).collect();
    expected.sort();
    seen.sort();
    assert_eq!(seen, expected, "every device once, over three pages");
    // Without a limit a page holds up to the maximum.
    assert_eq!(h.get("/api/devices").await.1.as_array().unwrap().len(), 7);
}

/// Random JSON shaped like what a careless or hostile client sends: the
/// right field names with wrong types and sizes, and noise.
/// An instance of the `simulated` backend its `validate` accepts.
fn sim_instance() -> Value {
    json!({"name": "sim", "plugin": "simulated", "settings": {"url": "http://127.0.0.1:9"}, "secrets": {"token": "t"}, "allowedHosts": ["http://127.0.0.1:9"]})
}

fn random_json(rng: &mut impl rand::Rng, depth: u32) -> Value {
    const NAMES: [&str; 16] = ["name", "devEui", "devices", "deviceKey", "groupId", "frequency", "plugin", "settings", "secrets", "allowedHosts", "transport", "campaignType", "message", "multicastGroups", "fports", "firmware"];
    match rng.gen_range(0..if depth == 0 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => json!(rng.gen::<bool>()),
        2 => json!(rng.gen::<i64>() >> rng.gen_range(0..63)),
        3 => json!(rng.gen::<f64>() * 1e12),
        4 => {
            let len = [0, 1, 16, 300, 5000][rng.gen_range(0..5)];
            json!((0..len).map(|_| rng.gen_range(b' '..=b'~') as char).collect::<String>())
        }
        5 => Value::Array((0..rng.gen_range(0..5)).map(|_| random_json(rng, depth - 1)).collect()),
        _ => Value::Object((0..rng.gen_range(0..6)).map(|_| (NAMES[rng.gen_range(0..NAMES.len())].to_string(), random_json(rng, depth - 1))).collect()),
    }
}

#[tokio::test]
async fn no_body_gets_a_server_error() {
    use rand::SeedableRng;
    let (h, _dir) = host().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(16);
    let routes = ["devices", "device-sets", "multicast-groups", "regions", "device-profiles", "campaigns", "smart-delta-keys", "backend-instances"];
    for round in 0..60 {
        for kind in routes {
            let body = random_json(&mut rng, 3);
            let (status, answer) = h.call(Some(ADMIN), Method::POST, &format!("/api/{kind}"), body.clone()).await;
            assert!(status.as_u16() < 500, "round {round}: POST /api/{kind} {body} → {status} {answer}");
            assert!(status.is_success() || answer["error"].is_string(), "errors are JSON with `error`: {answer}");
        }
    }
    assert!(h.healthy().await);
}

#[tokio::test]
async fn admins_create_and_revoke_tokens_that_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // Tokens kept in the data directory (the first start makes an admin).
    let h = TestHost::start_with(dir.path(), |c| c.auth = None).await.unwrap();
    let admin = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    let (status, created) = h.call(Some(&admin), Method::POST, "/api/tokens", json!({"name": "dashboard", "role": "viewer"})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let viewer = created["token"].as_str().unwrap().to_string();
    assert_eq!(h.call(Some(&viewer), Method::GET, "/api/devices", Value::Null).await.0, StatusCode::OK);
    assert_eq!(h.call(Some(&viewer), Method::POST, "/api/devices", device(DEV)).await.0, StatusCode::FORBIDDEN);
    assert_eq!(h.call(Some(&viewer), Method::GET, "/api/tokens", Value::Null).await.0, StatusCode::FORBIDDEN, "only admins see tokens");
    let (_, listed) = h.call(Some(&admin), Method::GET, "/api/tokens", Value::Null).await;
    assert!(!listed.to_string().contains(&viewer), "a token is shown once: {listed}");
    assert_eq!(h.call(Some(&admin), Method::POST, "/api/tokens", json!({"name": "dashboard", "role": "admin"})).await.0, StatusCode::CONFLICT);
    assert_field_error(h.call(Some(&admin), Method::POST, "/api/tokens", json!({"name": "a b/c", "role": "viewer"})).await, "name");

    // The file holds them: a restart keeps the new token.
    h.server.stop().await;
    let h = TestHost::start_with(dir.path(), |c| c.auth = None).await.unwrap();
    assert_eq!(h.call(Some(&viewer), Method::GET, "/api/devices", Value::Null).await.0, StatusCode::OK);
    assert_eq!(h.call(Some(&admin), Method::DELETE, "/api/tokens/dashboard", Value::Null).await.0, StatusCode::OK);
    assert_eq!(h.call(Some(&viewer), Method::GET, "/api/devices", Value::Null).await.0, StatusCode::UNAUTHORIZED, "revoked");
    assert_eq!(h.call(Some(&admin), Method::DELETE, "/api/tokens/admin", Value::Null).await.0, StatusCode::CONFLICT, "the last admin stays");

    // Tokens given from outside (the environment, here the test's) are fixed.
    let (fixed, _dir2) = host().await;
    assert_eq!(fixed.call(Some(ADMIN), Method::POST, "/api/tokens", json!({"name": "x", "role": "viewer"})).await.0, StatusCode::CONFLICT);
}

#[tokio::test]
async fn a_token_over_its_rate_limit_is_told_to_wait_and_others_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let h = TestHost::start_with(dir.path(), |c| c.rate_limit_per_token = std::num::NonZeroU32::new(5)).await.unwrap();
    let mut refused = None;
    for _ in 0..50 {
        let r = h.http.get(h.url("/api/devices")).bearer_auth(VIEWER).send().await.unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(r);
            break;
        }
        assert_eq!(r.status(), StatusCode::OK);
    }
    let refused = refused.expect("50 requests at once went past a limit of 5 a second");
    assert!(refused.headers().get("retry-after").is_some());
    assert_eq!(refused.json::<Value>().await.unwrap()["code"], 429);
    assert_eq!(h.get("/api/devices").await.0, StatusCode::OK, "the admin token has its own budget");
}

#[tokio::test]
async fn devices_are_found_by_tag_set_firmware_and_profile() {
    let (h, _dir) = host().await;
    let (_, profile) = h.post("/api/device-profiles", json!({"name": "meters"})).await;
    let profile = profile["id"].as_str().unwrap().to_string();
    for i in 1..=6u8 {
        let mut d = device(&format!("70b3d57ed00002{i:02x}"));
        d["tag"] = json!(if i % 2 == 0 { "north" } else { "south" });
        d["firmware"] = json!(if i <= 3 { "1.0.0.0" } else { "1.1.0.0" });
        if i == 6 {
            d["deviceProfile"] = json!(profile);
        }
        assert_eq!(h.post("/api/devices", d).await.0, StatusCode::CREATED);
    }
    let mut bad = device("70b3d57ed00002ff");
    bad["firmware"] = json!("1.2.x");
    let (status, refused) = h.post("/api/devices", bad).await;
    assert_eq!((status, refused["field"].as_str()), (StatusCode::BAD_REQUEST, Some("firmware")), "{refused}");
    let (_, set) = h.post("/api/device-sets", json!({"name": "s", "devices": ["70b3d57ed0000201", "70b3d57ed0000204"]})).await;
    let set = set["id"].as_str().unwrap().to_string();
    let found = |query: String| {
        let h = &h;
        async move {
            let (status, list) = h.get(&format!("/api/devices?{query}")).await;
            assert_eq!(status, StatusCode::OK, "{query}: {list}");
            list.as_array().unwrap().iter().map(|d| d["devEui"].as_str().unwrap()[14..].to_string()).collect::<Vec<_>>()
        }
    };
    assert_eq!(found("tag=north".into()).await, ["02", "04", "06"]);
    assert_eq!(found("tag=north&firmware=1.1.0.0".into()).await, ["04", "06"]);
    assert_eq!(found(format!("deviceSet={set}")).await, ["01", "04"]);
    assert_eq!(found(format!("deviceProfile={profile}")).await, ["06"]);
    assert_eq!(found("tag=north&limit=2".into()).await, ["02", "04"], "filtered lists come in pages too");
    assert_eq!(found("tag=north&after=70b3d57ed0000204".into()).await, ["06"]);
    assert_eq!(h.get("/api/devices?campaignState=failed").await.0, StatusCode::BAD_REQUEST, "a state needs a campaign");
}

/// `/api/openapi.json`: an OpenAPI 3.1 document another parser reads, with
/// every route the router serves, each answering (no route documented that
/// the router lacks, none served that is not documented).
#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let (h, _dir) = host().await;
    // Served without a token.
    let r = reqwest::get(h.url("/api/openapi.json")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    let spec = oas3::from_json(&text).expect("the document parses as OpenAPI 3.1");
    assert!(spec.openapi.starts_with("3.1"), "{}", spec.openapi);
    let doc: Value = serde_json::from_str(&text).unwrap();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for input in ["DeviceInput", "CampaignInput", "MulticastGroupInput", "BackendInstanceInput", "FileInput"] {
        assert!(schemas.contains_key(input), "{input} described");
    }
    assert!(doc["components"]["schemas"]["DeviceInput"]["properties"]["mcGroup"].is_object(), "fields as the API names them");
    // Every `$ref` resolves: forms (the console's among them) are built
    // from these schemas, enums included.
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => m.iter().for_each(|(k, v)| if k == "$ref" { out.push(v.as_str().unwrap_or_default().to_string()) } else { refs(v, out) }),
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(found.iter().any(|r| r == "#/components/schemas/CampaignType"), "nested schemas are referred to");
    for r in found {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{r} is not a schema reference"));
        assert!(schemas.contains_key(name), "{r} does not resolve");
    }

    // Every documented operation is served: none falls through to the
    // fallback or gets 405, whatever it answers to a made-up id.
    let paths = doc["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, item) in paths {
        let concrete = path.split('/').map(|seg| if seg.starts_with('{') { "x" } else { seg }).collect::<Vec<_>>().join("/");
        for method in item.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let (status, body) = h.call(Some(ADMIN), method.clone(), &concrete, json!({})).await;
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert_ne!(body["error"], "no such route", "{method} {path} is documented but not served");
            operations += 1;
        }
    }
    assert!(operations >= 45, "{operations} operations");
    // And every route is registered with its documentation: no module adds
    // one to the router directly.
    let api_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    for entry in std::fs::read_dir(&api_dir).unwrap() {
        let path = entry.unwrap().path();
        let source = std::fs::read_to_string(&path).unwrap();
        let direct = source.lines().filter(|l| l.contains(".route(\"") || l.contains("Router::new().route(") || l.contains(".nest(")).count();
        assert_eq!(direct, 0, "{} adds routes without their documentation", path.display());
    }
}

/// What a GET answers can be PUT back changed: the fields an object only
/// shows (archived, a secret's `…Set` flag, a campaign's dates and status)
/// are dropped, while a misspelt field is still refused.
#[tokio::test]
async fn an_object_read_can_be_written_back() {
    let (h, _dir) = host().await;
    assert_eq!(h.post("/api/multicast-groups", group(GROUP)).await.0, StatusCode::CREATED);
    let (_, mut shown) = h.get(&format!("/api/multicast-groups/{GROUP}")).await;
    assert_eq!(shown["mcKeySet"], true, "{shown}");
    shown["name"] = json!("renamed");
    let (status, changed) = h.put(&format!("/api/multicast-groups/{GROUP}"), shown.clone()).await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["name"], "renamed");
    assert_eq!(changed["mcKeySet"], true, "the key is kept");
    shown["nmae"] = json!("typo");
    assert_field_error(h.put(&format!("/api/multicast-groups/{GROUP}"), shown).await, "nmae");
}
