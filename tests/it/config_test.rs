//! The shipped configurations parse, they agree with the systemd unit, and
//! `pgmaint config check` accepts a good file (printing its durations in the
//! one canonical form) and points at the line of a bad one.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pgmaint::config::{Config, StateLocation};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `examples/*.toml` except the fleet files (`fleet*.toml` describe databases,
/// not the daemon), and the configuration the systemd unit uses.
fn shipped_configs() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("examples"))
        .expect("examples/")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .filter(|path| !path.file_name().unwrap().to_string_lossy().starts_with("fleet"))
        .collect();
    files.sort();
    files.push(repo().join("deploy/pgmaint.toml"));
    files
}

fn pgmaint(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgmaint")).args(args).output().expect("run pgmaint")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn shipped_configs_parse() {
    let files = shipped_configs();
    assert!(files.iter().any(|f| f.ends_with("examples/pgmaint.toml")), "{files:?}");
    for file in &files {
        if let Err(e) = Config::load(file) {
            panic!("{e}");
        }
    }
}

#[test]
fn example_config_spells_out_the_defaults() {
    // The example documents every default: what it sets must be what an empty file means,
    // except the choices it makes on purpose (a socket in /run, a group, a local relay).
    let mut example = Config::load(repo().join("examples/pgmaint.toml")).unwrap();
    let defaults = Config::default();
    assert_eq!(example.api.socket, PathBuf::from("/run/pgmaint/pgmaint.sock"));
    assert_eq!(example.api.socket_group.as_deref(), Some("pgmaint"));
    assert!(example.smtp.is_some());
    example.api = defaults.api.clone();
    example.smtp = None;
    assert_eq!(example, defaults);
}

#[test]
fn deploy_config_fits_the_unit() {
    let unit = std::fs::read_to_string(repo().join("deploy/pgmaint.service")).unwrap();
    let directive = |name: &str| -> Vec<String> {
        unit.lines().filter_map(|line| line.trim().strip_prefix(&format!("{name}="))).map(str::to_string).collect()
    };
    assert_eq!(directive("ExecStart"), ["/usr/bin/pgmaint daemon --config /etc/pgmaint/pgmaint.toml"]);
    assert_eq!(directive("User"), ["pgmaint"]);
    assert_eq!(directive("KillMode"), ["process"]);

    let config = Config::load(repo().join("deploy/pgmaint.toml")).unwrap();
    // Everything the daemon writes must be writable under ProtectSystem=strict.
    let state_dir = Path::new("/var/lib").join(directive("StateDirectory").concat());
    let runtime_dir = Path::new("/run").join(directive("RuntimeDirectory").concat());
    let writable: Vec<PathBuf> =
        directive("ReadWritePaths").iter().map(PathBuf::from).chain([state_dir.clone(), runtime_dir.clone()]).collect();
    let is_writable = |path: &Path| writable.iter().any(|dir| path.starts_with(dir));
    assert_eq!(config.daemon.data_dir, state_dir);
    assert!(is_writable(&config.daemon.data_dir));
    assert!(is_writable(&config.notify.mail_dir), "{:?}", config.notify.mail_dir);
    assert!(config.api.socket.starts_with(&runtime_dir), "{:?}", config.api.socket);
    assert!(matches!(&config.state, StateLocation::Embedded { dir } if is_writable(dir)));
    // The sysusers/tmpfiles snippets create that user and directory.
    let sysusers = std::fs::read_to_string(repo().join("deploy/pgmaint.sysusers")).unwrap();
    assert!(sysusers.lines().any(|l| l.starts_with("u pgmaint - ") && l.ends_with(" /var/lib/pgmaint")), "{sysusers}");
    let tmpfiles = std::fs::read_to_string(repo().join("deploy/pgmaint.tmpfiles")).unwrap();
    assert!(tmpfiles
        .lines()
        .any(|l| l.split_whitespace().collect::<Vec<_>>()
            == ["d", "/var/lib/pgmaint", "0750", "pgmaint", "pgmaint", "-"]));
    assert!(tmpfiles.lines().any(|l| l.starts_with("d /etc/pgmaint ")));
}

#[test]
fn config_check_accepts_a_good_file() {
    for file in shipped_configs() {
        let file = file.to_str().unwrap();
        let out = pgmaint(&["config", "check", file]);
        assert!(out.status.success(), "{file}: {out:?}");
        let stdout = text(&out.stdout);
        assert!(stdout.starts_with(&format!("{file}: ok\n")), "{stdout}");
        assert!(stdout.contains("lead times:"), "{stdout}");

        let out = pgmaint(&["config", "check", "--json", file]);
        assert!(out.status.success(), "{file}: {out:?}");
        let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
        assert_eq!(verdict["file"], file);
        assert_eq!(verdict["ok"], true);
        assert_eq!(verdict["summary"]["state"], "embedded");
        assert_eq!(verdict["summary"]["lead_times"], serde_json::json!(["7d", "24h"]));
    }
}

#[test]
fn config_check_points_at_the_bad_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "# pgmaint\n[daemon]\ntick = \"10s\"\n\n[smtp]\nhost = \"127.0.0.1\"\nhots = \"127.0.0.2\"\nfrom = \"pgmaint@example.com\"\n",
    )
    .unwrap();
    let bad = bad.to_str().unwrap();
    let expected =
        format!("{bad}:7: unknown key \"hots\" in [smtp] (expected one of host, port, tls, username, password, from)");

    let out = pgmaint(&["config", "check", bad]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(text(&out.stderr).trim(), format!("pgmaint: {expected}"));
    assert!(out.stdout.is_empty(), "{out:?}");

    let out = pgmaint(&["config", "check", bad, "--json"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(verdict, serde_json::json!({ "file": bad, "ok": false, "error": expected }));

    // A validation error (after parsing) names its line and key too.
    std::fs::write(dir.path().join("tcp.toml"), "[api]\nsocket_group = \"pgmaint\"\ntcp = \"127.0.0.1:7070\"\n")
        .unwrap();
    let tcp = dir.path().join("tcp.toml");
    let out = pgmaint(&["config", "check", tcp.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&format!("{}:3: bad value for \"tcp\" in [api]", tcp.display())), "{stderr}");
    assert!(stderr.contains("token_file"), "{stderr}");

    let missing = dir.path().join("missing.toml");
    let out = pgmaint(&["config", "check", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(text(&out.stderr).contains("cannot read"), "{out:?}");
}

#[test]
fn config_check_never_prints_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret.toml");
    std::fs::write(
        &file,
        "[state]\nurl = \"postgresql://pgmaint:Sup3rSecret@state.example.com/pgmaint\"\n\
         [smtp]\nhost = \"mx\"\ntls = \"tls\"\nusername = \"u\"\npassword = \"Sm7pSecret\"\nfrom = \"a@example.com\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let file = file.to_str().unwrap();
    for args in [vec!["config", "check", file], vec!["config", "check", "--json", file]] {
        let out = pgmaint(&args);
        assert!(out.status.success(), "{out:?}");
        let all = text(&out.stdout) + &text(&out.stderr);
        assert!(!all.contains("Sup3rSecret") && !all.contains("Sm7pSecret"), "{all}");
        assert!(all.contains("postgresql://pgmaint:***@state.example.com/pgmaint"), "{all}");
        assert!(all.contains("readable by every user"), "{all}");
    }
}

#[test]
fn config_check_shows_webhooks_redacted_and_refuses_other_schemes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hooks.toml");
    std::fs::write(&file, "[notify]\nwebhooks = [\"https://hooks.example.com/services/T0/B0/s3cret\", \"http://u:s3cret@127.0.0.1:20001/hook?token=s3cret\"]\n").unwrap();
    let file = file.to_str().unwrap();
    let out = pgmaint(&["config", "check", file]);
    assert!(out.status.success(), "{out:?}");
    let stdout = text(&out.stdout);
    assert!(stdout.contains("webhooks:    https://hooks.example.com/services/…, http://127.0.0.1:20001/hook\n"), "{stdout}");
    let out = pgmaint(&["config", "check", "--json", file]);
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(verdict["summary"]["webhooks"], serde_json::json!(["https://hooks.example.com/services/…", "http://127.0.0.1:20001/hook"]));
    for out in [pgmaint(&["config", "check", file]), pgmaint(&["config", "check", "--json", file])] {
        assert!(!text(&out.stdout).contains("s3cret") && !text(&out.stderr).contains("s3cret"), "{out:?}");
    }

    std::fs::write(file, "[notify]\nlead_times = [\"24h\"]\nwebhooks = [\"ftp://files.example.com/drop?key=s3cret\"]\n").unwrap();
    let out = pgmaint(&["config", "check", file]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(
        text(&out.stderr).trim(),
        format!("pgmaint: {file}:3: bad value for \"webhooks\" in [notify]: item 1: the scheme is \"ftp\", not http or https")
    );
}

#[test]
fn config_check_prints_durations_in_the_one_canonical_form() {
    // Durations and the window are read by the grammar the command line uses:
    // any unit case, spaces, weeks and milliseconds; they print back canonically.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spelled.toml");
    std::fs::write(
        &file,
        "[daemon]\ntick = \"1M 30S\"\nlease = \"3m\"\n\
         [notify]\nlead_times = [\"36h\", \"2w\", \"1h 30m\"]\n\
         [endpoint]\nserver_login_retry = \"1s500ms\"\n\
         [maintenance]\nperiodic_interval = \"1w 2d\"\nretire_grace = \"0s\"\ndefault_window = \"sun 2:00 europe/paris\"\n",
    )
    .unwrap();
    let out = pgmaint(&["config", "check", "--json", file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let summary = &verdict["summary"];
    assert_eq!(summary["tick"], "1m30s");
    assert_eq!(summary["lease"], "3m");
    assert_eq!(summary["lead_times"], serde_json::json!(["14d", "36h", "1h30m"]));
    assert_eq!(summary["server_login_retry"], "1s500ms");
    assert_eq!(summary["periodic_interval"], "9d");
    assert_eq!(summary["retire_grace"], "0s");
    assert_eq!(summary["default_window"], "sun 2:00 europe/paris");

    // A duration the grammar refuses is placed at its line and key, with the grammar's reason.
    std::fs::write(&file, "[daemon]\ntick = \"10s\"\nlease = \"1h30\"\n").unwrap();
    let out = pgmaint(&["config", "check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(
        text(&out.stderr).trim(),
        format!(
            "pgmaint: {}:3: bad value for \"lease\" in [daemon]: \"1h30\" has no unit (add one of ms, s, m, h, d, w: e.g. \"30s\")",
            file.display()
        )
    );
}
