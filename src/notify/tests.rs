use std::time::Duration;

use chrono::{TimeZone, Utc};

use super::ics::{self, fold_line};
use super::*;

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

fn context() -> MailContext {
    MailContext {
        maintenance_id: 42,
        database: "orders".into(),
        plan: "standard-2".into(),
        strategy: "switchover".into(),
        reason: "os-patch".into(),
        status_line: "Maintenance scheduled for 2026-12-01 14:30:00 +0000, required by 2026-12-04 21:00:00 +0000, \
                      replacement ready, window is Tuesdays 14:30 to 18:30 UTC"
            .into(),
        scheduled_for: Some(at(2026, 12, 1, 14, 30)),
        window_end: Some(at(2026, 12, 1, 18, 30)),
        required_by: at(2026, 12, 4, 21, 0),
        duration: None,
        write_pause_ms: None,
        error: None,
        forced_reason: None,
        rollout: None,
    }
}

/// Unfolds an .ics text into its content lines, checking the physical lines on the way.
fn content_lines(ics: &str) -> Vec<String> {
    assert!(ics.ends_with("\r\n"), "ends with CRLF");
    let body = &ics[..ics.len() - 2];
    let mut lines: Vec<String> = Vec::new();
    for physical in body.split("\r\n") {
        assert!(!physical.contains('\n') && !physical.contains('\r'), "bare LF or CR in {physical:?}");
        assert!(physical.len() <= 75, "{} octets: {physical:?}", physical.len());
        match physical.strip_prefix(' ') {
            Some(rest) => lines.last_mut().expect("a continuation follows a line").push_str(rest),
            None => lines.push(physical.to_string()),
        }
    }
    lines
}

fn property<'a>(lines: &'a [String], name: &str) -> Option<&'a str> {
    lines.iter().find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(':')))
}

#[test]
fn event_keys_are_stable() {
    assert_eq!(MailEvent::Scheduled.as_key(), "scheduled");
    assert_eq!(MailEvent::Rescheduled(at(2026, 12, 1, 14, 30)).as_key(), "rescheduled-2026-12-01T14:30:00Z");
    assert_eq!(MailEvent::Reminder(Duration::from_secs(7 * DAY)).as_key(), "reminder-168h");
    assert_eq!(MailEvent::Reminder(Duration::from_secs(DAY)).as_key(), "reminder-24h");
    assert_eq!(MailEvent::Reminder(Duration::from_secs(90 * 60)).as_key(), "reminder-90m");
    assert_eq!(MailEvent::Reminder(Duration::from_secs(45)).as_key(), "reminder-45s");
    assert_eq!(MailEvent::Reminder(Duration::from_millis(1500)).as_key(), "reminder-1500ms");
    for (event, key) in [
        (MailEvent::Started, "started"),
        (MailEvent::Completed, "completed"),
        (MailEvent::Failed, "failed"),
        (MailEvent::Postponed, "postponed"),
        (MailEvent::Forced, "forced"),
    ] {
        assert_eq!(event.as_key(), key);
    }
}

#[test]
fn outbox_keys_of_repeatable_events_name_the_time() {
    let first = Some(at(2026, 12, 1, 14, 30));
    let moved = Some(at(2026, 12, 8, 14, 30));
    let reminder = MailEvent::Reminder(Duration::from_secs(DAY));
    assert_eq!(reminder.outbox_key(first), "reminder-24h@2026-12-01T14:30:00Z");
    assert_ne!(reminder.outbox_key(first), reminder.outbox_key(moved), "a moved maintenance is reminded again");
    assert_eq!(reminder.outbox_key(None), "reminder-24h");
    assert_eq!(MailEvent::Started.outbox_key(first), "started@2026-12-01T14:30:00Z");
    assert_eq!(MailEvent::Scheduled.outbox_key(first), "scheduled");
    assert_eq!(MailEvent::Completed.outbox_key(first), "completed");
    assert_eq!(MailEvent::Failed.outbox_key(first), "failed");
    let rescheduled = MailEvent::Rescheduled(at(2026, 12, 8, 14, 30));
    assert_eq!(rescheduled.outbox_key(first), rescheduled.as_key());
    // The rendered mail carries the same key.
    let mail = render(&reminder, &context(), "dba@example.com");
    assert_eq!(mail.event, "reminder-24h@2026-12-01T14:30:00Z");
    assert_eq!((mail.maintenance_id, mail.channel), (Some(42), crate::store::Channel::Mail));
}

#[test]
fn folding_keeps_lines_within_75_octets_and_utf8_whole() {
    assert_eq!(fold_line("SHORT:x"), "SHORT:x\r\n");
    let exact = "X".repeat(75);
    assert_eq!(fold_line(&exact), format!("{exact}\r\n"));
    let long = format!("DESCRIPTION:{}", "a".repeat(200));
    let folded = fold_line(&long);
    assert_eq!(content_lines(&folded), vec![long.clone()]);
    assert!(folded.split("\r\n").all(|l| l.len() <= 75));
    assert_eq!(folded.split("\r\n").next().unwrap().len(), 75);
    // Multi-byte characters are never split: every physical line is valid UTF-8 on its own.
    let accents = format!("SUMMARY:{}", "é€😀".repeat(40));
    let folded = fold_line(&accents);
    for physical in folded.split("\r\n") {
        assert!(physical.len() <= 75);
        assert!(std::str::from_utf8(physical.as_bytes()).is_ok());
    }
    assert_eq!(content_lines(&folded), vec![accents]);
}

#[test]
fn text_values_are_escaped() {
    assert_eq!(ics::escape_text("a,b;c\\d\r\ne"), "a\\,b\\;c\\\\d\\ne");
}

#[test]
fn invite_is_rfc5545_with_utc_stamps_and_crlf() {
    let now = at(2026, 11, 20, 9, 15);
    let mail = render_at(&MailEvent::Scheduled, &context(), "DBA <dba@example.com>", "pgmaint@example.com", now);
    let calendar = mail.calendar.expect("a scheduled maintenance has an invite");
    assert!(!calendar.replace("\r\n", "").contains('\n'), "only CRLF line endings");
    let lines = content_lines(&calendar);
    assert_eq!(lines.first().map(String::as_str), Some("BEGIN:VCALENDAR"));
    assert_eq!(lines.last().map(String::as_str), Some("END:VCALENDAR"));
    assert_eq!(property(&lines, "VERSION"), Some("2.0"));
    assert_eq!(property(&lines, "METHOD"), Some("REQUEST"));
    assert_eq!(property(&lines, "UID"), Some("maintenance-42.orders@pgmaint"));
    assert_eq!(property(&lines, "DTSTART"), Some("20261201T143000Z"));
    assert_eq!(property(&lines, "DTEND"), Some("20261201T183000Z"));
    assert_eq!(property(&lines, "DTSTAMP"), Some("20261120T091500Z"));
    assert_eq!(property(&lines, "STATUS"), Some("CONFIRMED"));
    assert_eq!(property(&lines, "ORGANIZER;CN=pgmaint"), Some("mailto:pgmaint@example.com"));
    assert!(lines.iter().any(|l| l.starts_with("ATTENDEE;") && l.ends_with(":mailto:dba@example.com")));
    let description = property(&lines, "DESCRIPTION").unwrap();
    assert!(description.starts_with("Maintenance scheduled for 2026-12-01 14:30:00 +0000\\, required by"), "{description}");
    assert!(calendar.lines().any(|l| l.len() > 70), "the long description is folded");
    // BEGIN/END nest properly.
    let begins: Vec<_> = lines.iter().filter_map(|l| l.strip_prefix("BEGIN:")).collect();
    let ends: Vec<_> = lines.iter().rev().filter_map(|l| l.strip_prefix("END:")).collect();
    assert_eq!(begins, ["VCALENDAR", "VEVENT"]);
    assert_eq!(begins, ends);
    assert_eq!(ics::method_of(&calendar), Some("REQUEST"));
}

#[test]
fn reschedules_raise_the_sequence_and_failures_cancel() {
    let ctx = context();
    let first = render_at(&MailEvent::Scheduled, &ctx, "a@x.org", "p@x.org", at(2026, 11, 20, 9, 0));
    let moved_to = at(2026, 12, 8, 14, 30);
    let moved_ctx = MailContext { scheduled_for: Some(moved_to), window_end: Some(at(2026, 12, 8, 18, 30)), ..ctx.clone() };
    let moved = render_at(&MailEvent::Rescheduled(moved_to), &moved_ctx, "a@x.org", "p@x.org", at(2026, 11, 21, 9, 0));
    let first_lines = content_lines(first.calendar.as_deref().unwrap());
    let moved_lines = content_lines(moved.calendar.as_deref().unwrap());
    assert_eq!(property(&first_lines, "UID"), property(&moved_lines, "UID"), "one calendar entry per maintenance");
    let seq = |lines: &[String]| property(lines, "SEQUENCE").unwrap().parse::<u32>().unwrap();
    assert!(seq(&moved_lines) > seq(&first_lines));
    assert_eq!(property(&moved_lines, "DTSTART"), Some("20261208T143000Z"));
    assert_eq!(moved.event, "rescheduled-2026-12-08T14:30:00Z");

    let failed_ctx = MailContext { error: Some("candidate lacks WAL".into()), ..moved_ctx };
    let failed = render_at(&MailEvent::Failed, &failed_ctx, "a@x.org", "p@x.org", at(2026, 12, 8, 14, 40));
    let failed_lines = content_lines(failed.calendar.as_deref().unwrap());
    assert_eq!(property(&failed_lines, "METHOD"), Some("CANCEL"));
    assert_eq!(property(&failed_lines, "STATUS"), Some("CANCELLED"));
    assert!(seq(&failed_lines) > seq(&moved_lines));
    assert!(failed.body.contains("failed: candidate lacks WAL"));
}

#[test]
fn bodies_start_with_the_status_line_and_say_what_happened() {
    let ctx = context();
    let now = at(2026, 11, 24, 14, 30);
    for event in [
        MailEvent::Scheduled,
        MailEvent::Rescheduled(at(2026, 12, 1, 14, 30)),
        MailEvent::Reminder(Duration::from_secs(7 * DAY)),
        MailEvent::Started,
        MailEvent::Completed,
        MailEvent::Failed,
        MailEvent::Postponed,
        MailEvent::Forced,
    ] {
        let mail = render_at(&event, &ctx, "dba@example.com", DEFAULT_ORGANIZER, now);
        assert!(mail.body.starts_with(&ctx.status_line), "{event:?}: {}", mail.body);
        assert!(mail.subject.starts_with("[pgmaint] ") && mail.subject.contains("orders"), "{}", mail.subject);
        let has_calendar = !matches!(event, MailEvent::Started | MailEvent::Completed);
        assert_eq!(mail.calendar.is_some(), has_calendar, "{event:?}");
    }
    let reminder = render_at(&MailEvent::Reminder(Duration::from_secs(7 * DAY)), &ctx, "d@x.org", DEFAULT_ORGANIZER, now);
    assert!(reminder.body.contains("starts in 7 days, at 2026-12-01 14:30:00 +0000"), "{}", reminder.body);
    // A reminder sent late says the time actually left.
    let late = render_at(&MailEvent::Reminder(Duration::from_secs(7 * DAY)), &ctx, "d@x.org", DEFAULT_ORGANIZER, at(2026, 11, 29, 12, 0));
    assert!(late.subject.ends_with("in 2 days 2 hours"), "{}", late.subject);

    let done = MailContext { duration: Some(Duration::from_millis(42_500)), write_pause_ms: Some(840.0), ..ctx.clone() };
    let mail = render_at(&MailEvent::Completed, &done, "d@x.org", DEFAULT_ORGANIZER, now);
    assert!(mail.body.contains("completed in 42.5 seconds; writes were paused for 840 ms."), "{}", mail.body);

    let forced = MailContext { forced_reason: Some("no window ends before the deadline".into()), ..ctx.clone() };
    let mail = render_at(&MailEvent::Forced, &forced, "d@x.org", DEFAULT_ORGANIZER, now);
    assert!(mail.body.contains("OUTSIDE its window") && mail.body.contains("because no window ends before the deadline"));
    assert_eq!(ics::method_of(mail.calendar.as_deref().unwrap()), Some("REQUEST"));
}

#[test]
fn no_invite_without_a_time() {
    let ctx = MailContext { scheduled_for: None, window_end: None, ..context() };
    let mail = render_at(&MailEvent::Postponed, &ctx, "d@x.org", DEFAULT_ORGANIZER, Utc::now());
    assert!(mail.calendar.is_none());
    assert!(mail.body.contains("a time not yet set"));
    assert_eq!(mail.event, "postponed");
}

#[test]
fn backoff_doubles_to_the_cap() {
    let base = Duration::from_secs(5);
    let max = Duration::from_secs(600);
    let delays: Vec<u64> = (0..10).map(|n| backoff_delay(n, base, max).as_secs()).collect();
    assert_eq!(delays, [5, 10, 20, 40, 80, 160, 320, 600, 600, 600]);
    assert_eq!(backoff_delay(i32::MAX, base, max), max);
    assert_eq!(backoff_delay(-3, base, max), base);
}

#[test]
fn durations_read_naturally() {
    assert_eq!(human_duration(Duration::from_secs(7 * DAY)), "7 days");
    assert_eq!(human_duration(Duration::from_secs(DAY)), "1 day");
    assert_eq!(human_duration(Duration::from_secs(90 * 60)), "1 hour 30 minutes");
    assert_eq!(human_duration(Duration::from_secs(DAY + 5 * 60)), "1 day");
    assert_eq!(human_duration(Duration::from_secs(12)), "12 seconds");
    assert_eq!(human_duration(Duration::from_millis(1500)), "1.5 seconds");
}

#[test]
fn retries_back_off_with_at_most_a_fifth_of_jitter() {
    let base = Duration::from_secs(5);
    let max = Duration::from_secs(600);
    // Mail and webhooks alike: 5 s, 10 s, 20 s... each up to a fifth shorter.
    for attempts in 0..12 {
        let full = backoff_delay(attempts, base, max);
        assert_eq!(retry_delay(attempts, base, max, 0.0), full);
        assert_eq!(retry_delay(attempts, base, max, 1.0), full.mul_f64(0.8));
        let some = retry_delay(attempts, base, max, 0.5);
        assert!(some < full && some > full.mul_f64(0.8), "{attempts}: {some:?}");
    }
    assert_eq!(retry_delay(2, base, max, 7.0), Duration::from_secs(16), "jitter is clamped");
    assert_eq!(retry_delay(20, base, max, 0.0), max);
}

#[test]
fn webhook_events_are_named_without_their_time() {
    assert_eq!(MailEvent::Reminder(Duration::from_secs(DAY)).kind(), "reminder");
    assert_eq!(MailEvent::Rescheduled(at(2026, 12, 1, 14, 30)).kind(), "rescheduled");
    for event in [MailEvent::Scheduled, MailEvent::Started, MailEvent::Completed, MailEvent::Failed, MailEvent::Postponed, MailEvent::Forced, MailEvent::RolloutHalted] {
        assert_eq!(event.kind(), event.as_key(), "{event:?}");
    }
}
