//! The README's main job, `airlift-demo`, as a user runs it: redirected to
//! a file it writes readable lines (one per stage as it ends, no terminal
//! control characters); with `--json` one line whose figures hold, per
//! group too; the stored devices report the new firmware afterwards.

mod common;

use std::process::Command;

fn demo(args: &[&str]) -> String {
    let out = Command::new(common::demo_binary()).args(args).output().unwrap();
    assert!(out.status.success(), "demo {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_redirected_demo_writes_one_plain_line_per_stage() {
    // 5 % loss: every device gets through whatever the start time (the
    // demo starts its virtual clock at the real time).
    let out = demo(&["--devices", "20", "--groups", "2", "--networks", "2", "--loss", "0.05"]);
    assert!(!out.contains('\r') && !out.contains('\u{1b}'), "no carriage returns or escapes in a file:\n{out}");
    let stage_lines: Vec<&str> = out.lines().filter(|l| l.trim_start().split('/').next().is_some_and(|n| n.trim().parse::<u32>().is_ok())).collect();
    assert!(stage_lines.len() >= 10, "a line per stage:\n{out}");
    for name in ["McGroupSetup", "DataFragment", "FragSessionStatus", "DevVersion"] {
        assert!(stage_lines.iter().any(|l| l.contains(name)), "{name} shown:\n{out}");
    }
    assert!(out.contains("campaign SUCCEEDED: 20/20"), "{out}");
    assert_eq!(out.lines().filter(|l| l.trim_start().starts_with("group ")).count(), 2, "each group's figures:\n{out}");
}

#[test]
fn the_json_line_has_per_group_figures_and_the_inventory_follows() {
    let out = demo(&["--devices", "40", "--groups", "4", "--networks", "2", "--loss", "0.05", "--json"]);
    let summary: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(summary["campaign_status"], "SUCCEEDED", "{summary}");
    assert_eq!(summary["devices_holding_exact_file"], 40, "{summary}");
    assert_eq!(summary["devices_stored_with_new_firmware"], 40, "{summary}");
    let groups = summary["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 4);
    let instances: std::collections::BTreeSet<&str> = groups.iter().filter_map(|g| g["backend_instance"].as_str()).collect();
    assert_eq!(instances.len(), 2, "groups spread over two networks: {summary}");
    assert_eq!(groups.iter().map(|g| g["devices_total"].as_u64().unwrap()).sum::<u64>(), 40);
    assert_eq!(groups.iter().map(|g| g["fragments_sent"].as_u64().unwrap()).sum::<u64>(), summary["fragments_sent"].as_u64().unwrap());
}
