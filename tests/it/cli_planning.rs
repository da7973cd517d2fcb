//! The planning verbs through the real binary: exact JSON, exit statuses and
//! one-line messages for bad input, the fleet calendar and the benchmark. They
//! need no servers and no clock (every instant is given).

use std::path::PathBuf;
use std::process::{Command, Output};

fn pgmaint(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgmaint")).args(args).output().expect("run pgmaint")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs a verb that must succeed and returns its standard output.
fn ok(args: &[&str]) -> String {
    let output = pgmaint(args);
    assert!(output.status.success(), "pgmaint {args:?} failed: {}", stderr(&output));
    stdout(&output)
}

/// Runs a verb that must fail with status 2 and one `pgmaint: ...` line; returns that line.
fn usage_error(args: &[&str]) -> String {
    let output = pgmaint(args);
    assert_eq!(output.status.code(), Some(2), "pgmaint {args:?}: {}{}", stdout(&output), stderr(&output));
    let err = stderr(&output);
    assert_eq!(err.lines().count(), 1, "not one line: {err:?}");
    assert!(err.starts_with("pgmaint: "), "{err:?}");
    err.trim_end().to_string()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

/// A file in a fresh directory that is removed when the returned guard drops.
fn temp_file(name: &str, contents: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, contents).unwrap();
    (dir, path)
}

#[test]
fn window_next_new_york_gap_json() {
    let out = ok(&["window", "next", "Sunday 02:30 America/New_York", "--after", "2027-03-10T00:00:00Z", "--json"]);
    assert_eq!(
        out,
        "{\"start\":\"2027-03-14T07:30:00Z\",\"end\":\"2027-03-14T11:30:00Z\",\"window\":\"Sundays 02:30 to 06:30 America/New_York\"}\n"
    );
}

#[test]
fn window_next_variants() {
    // A start equal to --after counts; a length moves the end; words may be separate.
    let out = json(&ok(&["window", "next", "sun", "7:30", "--after", "2027-03-14T07:30:00Z", "--length", "1h30m", "--json"]));
    assert_eq!(out["start"], "2027-03-14T07:30:00Z");
    assert_eq!(out["end"], "2027-03-14T09:00:00Z");
    assert_eq!(out["window"], "Sundays 07:30 to 09:00 UTC");
    // The fall-back ambiguity takes the earlier instant.
    let out = json(&ok(&["window", "next", "Sunday 01:30 america/new_york", "--after", "2026-10-30T00:00:00-04:00", "--json"]));
    assert_eq!(out["start"], "2026-11-01T05:30:00Z");
    // Human output mentions the window and the start.
    let out = ok(&["window", "next", "Sunday 02:30 America/New_York", "--after", "2027-03-10T00:00:00Z"]);
    assert!(out.contains("Sundays 02:30 to 06:30 America/New_York") && out.contains("2027-03-14T07:30:00Z"), "{out}");
}

#[test]
fn window_next_bad_input() {
    let after = "2027-03-10T00:00:00Z";
    assert!(usage_error(&["window", "next", "Sundy 02:30", "--after", after]).contains("unknown day \"Sundy\""));
    assert!(usage_error(&["window", "next", "Sunday 24:00", "--after", after]).contains("invalid time \"24:00\""));
    assert!(usage_error(&["window", "next", "Sunday 02:30 Mars/Base", "--after", after]).contains("unknown time zone \"Mars/Base\""));
    assert!(usage_error(&["window", "next", "Sunday 02:30", "--after", "next tuesday"]).contains("--after"));
    assert!(usage_error(&["window", "next", "Sunday 02:30", "--after", after, "--length", "8d"]).contains("--length"));
    assert!(usage_error(&["window", "next", "Sunday 02:30", "--after", after, "--length", "soon"]).contains("--length"));
    // clap's own errors (missing --after) are exit 2 too.
    assert_eq!(pgmaint(&["window", "next", "Sunday 02:30"]).status.code(), Some(2));
}

#[test]
fn plan_in_a_window_json() {
    let out = ok(&[
        "plan", "--window", "Sunday 02:30 America/New_York", "--required-by", "2027-04-01T00:00:00Z", "--now", "2027-03-10T00:00:00Z", "--json",
    ]);
    assert_eq!(out, "{\"scheduled_for\":\"2027-03-14T07:30:00Z\",\"window_end\":\"2027-03-14T11:30:00Z\",\"forced\":false,\"reason\":null}\n");
}

#[test]
fn plan_blackouts_and_readiness() {
    let base = ["plan", "--window", "Sunday 10:00", "--required-by", "2027-04-01T00:00:00Z", "--now", "2027-03-10T00:00:00Z", "--json"];
    let with = |extra: &[&str]| json(&ok(&[&base[..], extra].concat()));
    assert_eq!(with(&["--blackout", "2027-03-14T12:00:00Z/2027-03-21T10:30:00Z"])["scheduled_for"], "2027-03-28T10:00:00Z");
    assert_eq!(with(&["--ready-at", "2027-03-14T10:00:01Z"])["scheduled_for"], "2027-03-21T10:00:00Z");
    let out = with(&["--blackout", "2027-03-01T00:00:00Z/2027-04-01T00:00:00Z"]);
    assert_eq!(out["forced"], true);
    assert_eq!(out["window_end"], serde_json::Value::Null);
    assert_eq!(out["scheduled_for"], "2027-03-31T20:00:00Z");
    assert!(out["reason"].as_str().unwrap().contains("blackout"), "{out}");
}

#[test]
fn plan_forced_when_no_window_ends_in_time() {
    let out = json(&ok(&["plan", "--window", "Sunday 10:00", "--required-by", "2027-03-12T00:00:00Z", "--now", "2027-03-10T00:00:00Z", "--json"]));
    assert_eq!(out["forced"], true);
    assert_eq!(out["scheduled_for"], "2027-03-11T20:00:00Z");
    assert!(out["reason"].as_str().unwrap().contains("required-by"), "{out}");
    // A deadline already past: forced, now.
    let out = json(&ok(&["plan", "--window", "Sunday 10:00", "--required-by", "2027-01-01T00:00:00Z", "--now", "2027-03-10T00:00:00Z", "--json"]));
    assert_eq!((out["forced"].as_bool(), out["scheduled_for"].as_str()), (Some(true), Some("2027-03-10T00:00:00Z")));
}

#[test]
fn plan_bad_input() {
    let good = ["--window", "Sunday 10:00", "--required-by", "2027-04-01T00:00:00Z", "--now", "2027-03-10T00:00:00Z"];
    let run = |extra: &[&str]| usage_error(&[&["plan"][..], &good[..], extra].concat());
    let err = run(&["--blackout", "2027-03-20T00:00:00Z/2027-03-10T00:00:00Z"]);
    assert!(err.contains("--blackout") && err.contains("ends before it starts"), "{err}");
    assert!(run(&["--blackout", "2027-03-20T00:00:00Z"]).contains("--blackout"));
    assert!(run(&["--ready-at", "2027-02-30T00:00:00Z"]).contains("--ready-at"));
    assert!(usage_error(&["plan", "--window", "Sunday 10:00", "--required-by", "tomorrow"]).contains("--required-by"));
    assert!(usage_error(&["plan", "--window", "Sundays 10:00 Mars/Base", "--required-by", "2027-04-01T00:00:00Z"]).contains("Mars/Base"));
    // Modes: clap says what is missing or conflicting, with status 2.
    for args in [
        &["plan"][..],
        &["plan", "--window", "Sunday 10:00"],
        &["plan", "--fleet", "fleet.toml"],
        &["plan", "--fleet", "fleet.toml", "--from", "2027-01-01T00:00:00Z", "--to", "2027-02-01T00:00:00Z", "--window", "Sunday 10:00"],
        &["plan", "--from", "2027-01-01T00:00:00Z", "--window", "Sunday 10:00", "--required-by", "2027-04-01T00:00:00Z"],
    ] {
        let output = pgmaint(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(!stderr(&output).is_empty());
    }
}

const FLEET: &str = r#"
# Two databases.
[[database]]
name = "orders"
window = "Sunday 02:30 America/New_York"
length = "4h"
required_by = "2027-01-20T00:00:00Z"
every = "90d"
blackouts = ["2027-01-01T00:00:00Z/2027-01-05T00:00:00Z"]
recurring_blackouts = [{ cron = "0 0 0 24 12 *", length = "72h" }]

[[database]]
name = "billing"
window = "Sunday 10:00"
required_by = "2026-12-10T00:00:00Z"
blackouts = ["2026-12-01T00:00:00Z/2026-12-09T00:00:00Z"]
"#;

#[test]
fn plan_fleet_json() {
    let (_path_dir, path) = temp_file("fleet.toml", FLEET);
    let out = json(&ok(&["plan", "--fleet", path.to_str().unwrap(), "--from", "2026-12-01T00:00:00Z", "--to", "2026-12-21T00:00:00Z", "--json"]));
    assert_eq!(out["from"], "2026-12-01T00:00:00Z");
    assert_eq!(out["to"], "2026-12-21T00:00:00Z");
    let expected = serde_json::json!([
        {"database": "orders", "window": "Sundays 02:30 to 06:30 America/New_York", "required_by": "2027-01-20T00:00:00Z",
         "scheduled_for": "2026-12-06T07:30:00Z", "window_end": "2026-12-06T11:30:00Z", "forced": false, "reason": null},
        // billing's Sundays before its deadline are blacked out: forced to end at the deadline.
        {"database": "billing", "window": "Sundays 10:00 to 14:00 UTC", "required_by": "2026-12-10T00:00:00Z",
         "scheduled_for": "2026-12-09T20:00:00Z", "window_end": null, "forced": true,
         "reason": "every window before the required-by time overlaps a blackout"},
    ]);
    assert_eq!(out["maintenances"], expected);
    // Key order in the JSON objects is as documented.
    let raw = ok(&["plan", "--fleet", path.to_str().unwrap(), "--from", "2026-12-01T00:00:00Z", "--to", "2026-12-07T00:00:00Z", "--json"]);
    assert!(raw.starts_with("{\"from\":\"2026-12-01T00:00:00Z\",\"to\":\"2026-12-07T00:00:00Z\",\"maintenances\":[{\"database\":\"orders\",\"window\":"), "{raw}");
}

#[test]
fn plan_fleet_example_file_and_table() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/fleet.toml");
    let out = json(&ok(&["plan", "--fleet", example, "--from", "2027-01-01T00:00:00Z", "--to", "2028-01-01T00:00:00Z", "--json"]));
    let maintenances = out["maintenances"].as_array().unwrap();
    // Each database at least every `every` (90d, 30d, 90d), planned shortly before each deadline.
    for (name, least, most) in [("orders", 4, 5), ("billing", 12, 18), ("analytics", 4, 5)] {
        let count = maintenances.iter().filter(|m| m["database"] == name).count();
        assert!((least..=most).contains(&count), "{name}: {count} maintenances in a year");
    }
    let keys: Vec<_> = maintenances.iter().map(|m| (m["scheduled_for"].as_str().unwrap(), m["database"].as_str().unwrap())).collect();
    assert!(keys.windows(2).all(|w| w[0] <= w[1]), "not sorted by scheduled_for then database");
    // The human table has a header and one aligned row per maintenance.
    let table = ok(&["plan", "--fleet", example, "--from", "2027-01-01T00:00:00Z", "--to", "2027-02-01T00:00:00Z"]);
    let lines: Vec<_> = table.lines().collect();
    assert!(lines[1].starts_with("SCHEDULED FOR"), "{table}");
    let column = lines[1].find("DATABASE").unwrap();
    assert!(lines[2..].iter().all(|l| l[column..].starts_with(|c: char| c.is_alphanumeric())), "{table}");
}

#[test]
fn plan_fleet_errors_name_file_database_and_key() {
    let (_bad_day_dir, bad_day) = temp_file("bad-day.toml", &FLEET.replace("Sunday 10:00", "Sundy 10:00"));
    let err = usage_error(&["plan", "--fleet", bad_day.to_str().unwrap(), "--from", "2027-01-01T00:00:00Z", "--to", "2027-02-01T00:00:00Z"]);
    assert!(err.contains("bad-day.toml:14:") && err.contains("\"billing\"") && err.contains("window") && err.contains("unknown day \"Sundy\""), "{err}");
    let (_unknown_key_dir, unknown_key) = temp_file("unknown-key.toml", &FLEET.replace("every = \"90d\"", "evrey = \"90d\""));
    let err = usage_error(&["plan", "--fleet", unknown_key.to_str().unwrap(), "--from", "2027-01-01T00:00:00Z", "--to", "2027-02-01T00:00:00Z"]);
    assert!(err.contains("unknown-key.toml:8:") && err.contains("\"orders\"") && err.contains("evrey"), "{err}");
    let (_broken_dir, broken) = temp_file("broken.toml", "[[database]\nname = ");
    let err = usage_error(&["plan", "--fleet", broken.to_str().unwrap(), "--from", "2027-01-01T00:00:00Z", "--to", "2027-02-01T00:00:00Z"]);
    assert!(err.contains("broken.toml:1:"), "{err}");
    let err = usage_error(&["plan", "--fleet", "/nonexistent/fleet.toml", "--from", "2027-01-01T00:00:00Z", "--to", "2027-02-01T00:00:00Z"]);
    assert!(err.contains("/nonexistent/fleet.toml"), "{err}");
    let (_path_dir, path) = temp_file("fleet.toml", FLEET);
    assert!(usage_error(&["plan", "--fleet", path.to_str().unwrap(), "--from", "2027-02-01T00:00:00Z", "--to", "2027-01-01T00:00:00Z"]).contains("--to"));
    assert!(usage_error(&["plan", "--fleet", path.to_str().unwrap(), "--from", "2027-02-01", "--to", "2027-03-01T00:00:00Z"]).contains("--from"));
}

#[test]
fn bench_planner_small() {
    let out = json(&ok(&["bench", "planner", "--databases", "500", "--json"]));
    assert_eq!(out["databases"], 500);
    let seconds = out["seconds"].as_f64().unwrap();
    let ns = out["ns_per_database"].as_f64().unwrap();
    assert!(seconds > 0.0 && ns > 0.0, "{out}");
    assert_eq!(out.as_object().unwrap().len(), 3, "{out}");
    assert!(ok(&["bench", "planner", "--databases", "10"]).contains("10 databases"));
    assert!(usage_error(&["bench", "planner", "--databases", "0"]).contains("--databases"));
    assert_eq!(pgmaint(&["bench", "planner", "--databases", "many"]).status.code(), Some(2));
}
