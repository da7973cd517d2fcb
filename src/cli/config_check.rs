//! `pgmaint config check FILE [--json]`: parse and validate a configuration file
//! without starting anything, and say what it means.
//!
//! Exit status 0 when the file is valid, 2 when it is not (or cannot be read).
//! With `--json` the verdict goes to stdout as one JSON object either way; the
//! error is also printed on stderr.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use pgmaint::config::{Config, StateLocation};
use pgmaint::schedule::format_duration;
use serde_json::{json, Value};

use super::{Failure, Outcome};

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The configuration file to check (e.g. /etc/pgmaint/pgmaint.toml).
    pub file: PathBuf,
    /// Print the verdict as JSON: {"file", "ok", "summary"} or {"file", "ok": false, "error"}.
    #[arg(long)]
    pub json: bool,
}

pub fn check(args: CheckArgs) -> Outcome {
    let file = args.file.display().to_string();
    match Config::load(&args.file) {
        Ok(config) => {
            let warnings = warnings(&args.file, &config);
            if args.json {
                let verdict = json!({ "file": file, "ok": true, "summary": summary(&config), "warnings": warnings });
                println!("{verdict}");
            } else {
                println!("{file}: ok");
                print!("{}", summary_text(&config));
                for warning in &warnings {
                    eprintln!("pgmaint: warning: {warning}");
                }
            }
            Ok(())
        }
        Err(error) => {
            if args.json {
                println!("{}", json!({ "file": file, "ok": false, "error": error.to_string() }));
            }
            Err(Failure::usage(error))
        }
    }
}

fn durations(list: &[std::time::Duration]) -> Vec<String> {
    list.iter().map(|d| format_duration(*d)).collect()
}

/// The webhooks as logs show them: no userinfo, query or later path segments (their secrets).
fn webhooks(config: &Config) -> Vec<String> {
    config.notify.webhooks.iter().map(|url| url.redacted()).collect()
}

/// What the daemon would do with this configuration, for `--json`.
fn summary(config: &Config) -> Value {
    let (state, state_dir) = match &config.state {
        StateLocation::Embedded { dir } => ("embedded".to_string(), Some(dir.display().to_string())),
        StateLocation::External { .. } => (config.state.describe(), None),
    };
    json!({
        "node_name": config.daemon.node_name,
        "data_dir": config.daemon.data_dir,
        "tick": format_duration(config.daemon.tick),
        "lease": format_duration(config.daemon.lease),
        "state": state,
        "state_dir": state_dir,
        "api_socket": config.api.socket,
        "api_socket_group": config.api.socket_group,
        "api_socket_mode": if config.api.socket_group.is_some() { "0660" } else { "0600" },
        "api_tcp": config.api.tcp.map(|addr| addr.to_string()),
        "api_token_file": config.api.token_file,
        "smtp_host": config.smtp.as_ref().map(|s| s.host.clone()),
        "smtp_port": config.smtp.as_ref().map(|s| s.port),
        "smtp_tls": config.smtp.as_ref().map(|s| s.tls.as_str()),
        "smtp_username": config.smtp.as_ref().and_then(|s| s.credentials.as_ref()).map(|c| c.username.clone()),
        "mail_from": config.mail_from().to_string(),
        "mail_dir": config.smtp.is_none().then(|| config.notify.mail_dir.display().to_string()),
        "lead_times": durations(&config.notify.lead_times),
        "webhooks": webhooks(config),
        "endpoint_listen": config.endpoint.listen.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "endpoint_tls_sslmode": config.endpoint.tls.as_ref().map(|tls| tls.sslmode.clone()),
        "server_login_retry": format_duration(config.endpoint.server_login_retry),
        "periodic_interval": format_duration(config.maintenance.periodic_interval),
        "retire_grace": format_duration(config.maintenance.retire_grace),
        "default_window": config.maintenance.default_window,
        "before_maintenance": config.hooks.before_maintenance,
        "after_maintenance": config.hooks.after_maintenance,
        "hook_timeout": format_duration(config.hooks.hook_timeout),
        "patroni_pg_user": config.patroni.as_ref().map(|p| p.pg_user.clone()),
        "patroni_rest_user": config.patroni.as_ref().and_then(|p| p.rest_user.clone()),
        "patroni_host_hook": config.patroni.as_ref().and_then(|p| p.host_hook.clone()),
        "patroni_max_lag": config.patroni.as_ref().map(|p| p.max_lag),
        "patroni_member_timeout": config.patroni.as_ref().map(|p| format_duration(p.member_timeout)),
    })
}

fn summary_text(config: &Config) -> String {
    let d = &config.daemon;
    let node = match &d.node_name {
        Some(name) => name.clone(),
        None => "hostname-pid (default)".to_string(),
    };
    let socket_access = match &config.api.socket_group {
        Some(group) => format!("mode 0660, group {group}"),
        None => "mode 0600".to_string(),
    };
    let tcp = match (&config.api.tcp, &config.api.token_file) {
        (Some(addr), Some(token)) => format!("{addr} (token in {})", token.display()),
        _ => "off".to_string(),
    };
    let mail = match &config.smtp {
        Some(smtp) => {
            let login = match &smtp.credentials {
                Some(c) => format!(", login {}", c.username),
                None => String::new(),
            };
            format!("smtp {}:{} (tls {}{login}), from {}", smtp.host, smtp.port, smtp.tls, smtp.from)
        }
        None => format!("files in {} (no [smtp])", config.notify.mail_dir.display()),
    };
    let rows = [
        ("node", format!("{node}, data dir {}", d.data_dir.display())),
        ("loop", format!("tick {}, lease {}", format_duration(d.tick), format_duration(d.lease))),
        ("state", config.state.describe()),
        ("api socket", format!("{} ({socket_access})", config.api.socket.display())),
        ("api tcp", tcp),
        ("mail", mail),
        ("lead times", durations(&config.notify.lead_times).join(", ")),
        ("webhooks", if config.notify.webhooks.is_empty() { "none".to_string() } else { webhooks(config).join(", ") }),
        (
            "endpoint",
            format!(
                "PgBouncer on {} (tls {}), server_login_retry {}",
                config.endpoint.listen.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
                config.endpoint.tls.as_ref().map_or("off", |tls| tls.sslmode.as_str()),
                format_duration(config.endpoint.server_login_retry)
            ),
        ),
        (
            "maintenance",
            format!(
                "at least every {}, default window {}, retired servers kept {}",
                format_duration(config.maintenance.periodic_interval),
                config.maintenance.default_window,
                format_duration(config.maintenance.retire_grace)
            ),
        ),
        (
            "hooks",
            format!(
                "before {}, after {}, timeout {}",
                config.hooks.before_maintenance.as_deref().unwrap_or("none"),
                config.hooks.after_maintenance.as_deref().unwrap_or("none"),
                format_duration(config.hooks.hook_timeout)
            ),
        ),
        (
            "patroni",
            match &config.patroni {
                Some(p) => format!(
                    "as {}{}, host hook {}, max lag {} bytes, member timeout {}",
                    p.pg_user,
                    p.rest_user.as_ref().map(|user| format!(", REST as {user}")).unwrap_or_default(),
                    p.host_hook.as_deref().unwrap_or("none"),
                    p.max_lag,
                    format_duration(p.member_timeout)
                ),
                None => "off (no [patroni]: adoption refused)".to_string(),
            },
        ),
    ];
    rows.iter().map(|(name, value)| format!("  {:<12} {value}\n", format!("{name}:"))).collect()
}

/// Things that are valid but probably wrong on this host: secrets in a file
/// others can read, a token file or socket group that does not exist (yet).
fn warnings(path: &Path, config: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(token_file) = &config.api.token_file {
        if !token_file.exists() {
            warnings.push(format!("token_file {} does not exist on this host", token_file.display()));
        }
    }
    if let Some(patroni) = &config.patroni {
        for file in [&patroni.pg_password_file, &patroni.rest_password_file, &patroni.rest_ca_file].into_iter().flatten() {
            if !file.exists() {
                warnings.push(format!("[patroni] file {} does not exist on this host", file.display()));
            }
        }
    }
    if let Some(group) = &config.api.socket_group {
        if !matches!(nix::unistd::Group::from_name(group), Ok(Some(_))) {
            warnings.push(format!("socket_group {group} does not exist on this host"));
        }
    }
    let has_secret = config.smtp.as_ref().is_some_and(|s| s.credentials.is_some())
        || !config.notify.webhooks.is_empty()
        || matches!(&config.state, StateLocation::External { url } if config.state.describe() != *url);
    if has_secret {
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o004 != 0 {
                warnings.push(format!(
                    "{} holds a password or webhook URL and is readable by every user (chmod 0640 and chgrp pgmaint)",
                    path.display()
                ));
            }
        }
    }
    warnings
}
