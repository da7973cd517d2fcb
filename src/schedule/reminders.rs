//! Owner reminders: which lead-time reminders are due at a given moment.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The lead-time reminders due at `now` for a maintenance at `scheduled_for`:
/// every lead with `scheduled_for - lead <= now < scheduled_for`, in the order
/// given. A reminder whose moment passed while the maintenance was planned late
/// (or the daemon was down) is still due; the outbox sends each one once.
pub fn reminders_due(scheduled_for: DateTime<Utc>, now: DateTime<Utc>, lead_times: &[Duration]) -> Vec<Duration> {
    if now >= scheduled_for {
        return Vec::new();
    }
    lead_times
        .iter()
        .copied()
        .filter(|lead| match chrono::Duration::from_std(*lead) {
            Ok(lead) => scheduled_for.checked_sub_signed(lead).is_none_or(|moment| now >= moment),
            Err(_) => true, // longer than chrono can express: due since forever
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    #[test]
    fn reminders_due_between_lead_and_start() {
        let leads = [Duration::from_secs(7 * DAY), Duration::from_secs(DAY)];
        let start: DateTime<Utc> = "2026-12-01T14:30:00Z".parse().unwrap();
        let secs = |s: i64| chrono::Duration::seconds(s);
        assert!(reminders_due(start, start - secs(7 * DAY as i64 + 1), &leads).is_empty(), "too early");
        assert_eq!(reminders_due(start, start - secs(7 * DAY as i64), &leads), [leads[0]], "exactly at the lead");
        assert_eq!(reminders_due(start, start - secs(3 * DAY as i64), &leads), [leads[0]]);
        assert_eq!(reminders_due(start, start - secs(DAY as i64), &leads), leads);
        assert_eq!(reminders_due(start, start - secs(1), &leads), leads);
        assert!(reminders_due(start, start, &leads).is_empty(), "at the start it is no longer a reminder");
        assert!(reminders_due(start, start + secs(60), &leads).is_empty());
        assert!(reminders_due(start, start - secs(60), &[]).is_empty());
        assert_eq!(reminders_due(start, start - secs(60), &[Duration::MAX]), [Duration::MAX]);
    }
}
