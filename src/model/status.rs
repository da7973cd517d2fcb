//! The one-line maintenance status in the reference's exact wording
//! (`pg:maintenance`, `pg:info`), shared by the CLI, the API and owner mail.

use chrono::{DateTime, Utc};

use super::Strategy;

/// Where a switchover's replacement stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Replacement {
    BeingPrepared,
    Ready,
}

/// What the status line says about a pending maintenance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingStatus {
    pub scheduled_for: Option<DateTime<Utc>>,
    pub required_by: DateTime<Utc>,
    pub strategy: Strategy,
    pub replacement: Option<Replacement>,
    /// `Tuesdays 14:30 to 18:30 UTC`.
    pub window: String,
}

/// `2018-05-04 21:00:00 +0000`, the reference's time format.
pub fn reference_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S +0000").to_string()
}

impl PendingStatus {
    /// `Maintenance scheduled for <ts>, required by <ts>, replacement ready, window is Tuesdays 14:30 to 18:30 UTC`.
    /// The replacement phrase appears only for a switchover.
    pub fn line(&self) -> String {
        let mut parts = Vec::new();
        match self.scheduled_for {
            Some(at) => parts.push(format!("Maintenance scheduled for {}, required by {}", reference_time(at), reference_time(self.required_by))),
            None => parts.push(format!("Maintenance required by {}", reference_time(self.required_by))),
        }
        if self.strategy == Strategy::Switchover {
            match self.replacement {
                Some(Replacement::Ready) => parts.push("replacement ready".into()),
                _ => parts.push("replacement currently being prepared".into()),
            }
        }
        parts.push(format!("window is {}", self.window));
        parts.join(", ")
    }

    /// The `Maintenance:` field of `info`: the same facts without the window.
    pub fn info_field(&self) -> String {
        let mut text = match self.scheduled_for {
            Some(at) => format!("scheduled for {}, required by {}", reference_time(at), reference_time(self.required_by)),
            None => format!("required by {}", reference_time(self.required_by)),
        };
        if self.strategy == Strategy::Switchover {
            text.push_str(match self.replacement {
                Some(Replacement::Ready) => ", replacement ready",
                _ => ", replacement currently being prepared",
            });
        }
        text
    }
}

/// How far a maintenance's long preparation has got, as its runner last saw it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Progress {
    /// The replacement's base backup: bytes streamed of an estimated total.
    BaseBackup { plan: String, done_bytes: i64, total_bytes: Option<i64> },
    /// The replacement streams from the primary and replays; this far behind.
    CatchingUp { plan: String, behind_bytes: i64 },
    /// The replacement is caught up and waits for the switch.
    Ready { plan: String },
    /// An essential-tier plan change copying the data into the new server.
    Copying { plan: String, done_bytes: u64, total_bytes: u64, tables_done: usize, tables_total: usize, eta_seconds: Option<f64> },
}

impl Progress {
    /// `replacement on standard-4: base backup 45% (117.2 MB of 260.0 MB)`.
    pub fn describe(&self) -> String {
        let percent = |done: f64, total: f64| if total > 0.0 { (done / total * 100.0).clamp(0.0, 100.0) } else { 0.0 };
        match self {
            Progress::BaseBackup { plan, done_bytes, total_bytes: Some(total) } if *total > 0 => format!(
                "replacement on {plan}: base backup {:.0}% ({} of {})",
                percent(*done_bytes as f64, *total as f64),
                human_size(*done_bytes),
                human_size(*total)
            ),
            Progress::BaseBackup { plan, done_bytes, .. } => format!("replacement on {plan}: base backup, {} copied", human_size(*done_bytes)),
            Progress::CatchingUp { plan, behind_bytes } => format!("replacement on {plan}: catching up, {} behind", human_size(*behind_bytes)),
            Progress::Ready { plan } => format!("replacement on {plan} ready"),
            Progress::Copying { plan, done_bytes, total_bytes, tables_done, tables_total, eta_seconds } => {
                let mut text = format!(
                    "copying into the new {plan} server: {:.0}% ({} of about {}), {tables_done} of {tables_total} tables",
                    percent(*done_bytes as f64, *total_bytes as f64),
                    human_size(i64::try_from(*done_bytes).unwrap_or(i64::MAX)),
                    human_size(i64::try_from(*total_bytes).unwrap_or(i64::MAX))
                );
                if let Some(eta) = eta_seconds {
                    text.push_str(&format!(", about {eta:.0} s left"));
                }
                text
            }
        }
    }
}

/// `7.6 MB`: bytes in binary units with one decimal, as `pg:info` shows sizes.
pub fn human_size(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The line `maintenance show` prints when nothing is pending.
pub const NO_MAINTENANCE: &str = "No maintenance required";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_progress() {
        assert_eq!(human_size(512), "512 bytes");
        assert_eq!(human_size(7_969_177), "7.6 MB");
        assert_eq!(human_size(3 * 1024 * 1024 * 1024), "3.0 GB");
        let plan = "standard-4".to_string();
        let backup = Progress::BaseBackup { plan: plan.clone(), done_bytes: 45 << 20, total_bytes: Some(100 << 20) };
        assert_eq!(backup.describe(), "replacement on standard-4: base backup 45% (45.0 MB of 100.0 MB)");
        assert_eq!(Progress::CatchingUp { plan: plan.clone(), behind_bytes: 3 << 20 }.describe(), "replacement on standard-4: catching up, 3.0 MB behind");
        let copying = Progress::Copying { plan, done_bytes: 1 << 30, total_bytes: 4 << 30, tables_done: 3, tables_total: 8, eta_seconds: Some(12.4) };
        assert_eq!(copying.describe(), "copying into the new standard-4 server: 25% (1.0 GB of about 4.0 GB), 3 of 8 tables, about 12 s left");
        let json = serde_json::to_string(&backup).unwrap();
        assert_eq!(serde_json::from_str::<Progress>(&json).unwrap(), backup);
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn reference_wording() {
        let mut status = PendingStatus {
            scheduled_for: Some(at("2018-05-01T14:30:00Z")),
            required_by: at("2018-05-04T21:00:00Z"),
            strategy: Strategy::Switchover,
            replacement: Some(Replacement::BeingPrepared),
            window: "Tuesdays 14:30 to 18:30 UTC".into(),
        };
        assert_eq!(
            status.line(),
            "Maintenance scheduled for 2018-05-01 14:30:00 +0000, required by 2018-05-04 21:00:00 +0000, replacement currently being prepared, window is Tuesdays 14:30 to 18:30 UTC"
        );
        status.replacement = Some(Replacement::Ready);
        assert!(status.line().contains(", replacement ready, window is"));
        assert_eq!(status.info_field(), "scheduled for 2018-05-01 14:30:00 +0000, required by 2018-05-04 21:00:00 +0000, replacement ready");
        status.strategy = Strategy::Restart;
        status.scheduled_for = None;
        assert_eq!(status.line(), "Maintenance required by 2018-05-04 21:00:00 +0000, window is Tuesdays 14:30 to 18:30 UTC");
        assert_eq!(status.info_field(), "required by 2018-05-04 21:00:00 +0000");
    }
}
