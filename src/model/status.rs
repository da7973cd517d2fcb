//! The one-line maintenance status in the reference's exact wording
//! (`pg:maintenance`, `pg:info`), shared by the CLI, the API and owner mail.

use chrono::{DateTime, Utc};

use super::Strategy;

/// Where a switchover's replacement stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
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

/// The line `maintenance show` prints when nothing is pending.
pub const NO_MAINTENANCE: &str = "No maintenance required";

#[cfg(test)]
mod tests {
    use super::*;

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
