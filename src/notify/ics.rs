//! The calendar invite: an RFC 5545 VCALENDAR with one VEVENT, as iTIP
//! (RFC 5546) wants it for `METHOD:REQUEST` and `METHOD:CANCEL`.
//!
//! Times are UTC (`20261201T143000Z`), lines end in CRLF and are folded at 75
//! octets (never inside a UTF-8 character), TEXT values are escaped. The UID is
//! stable per maintenance and SEQUENCE grows with each revision, so a calendar
//! moves the one entry when the maintenance moves, and drops it on CANCEL.

use std::fmt;

use chrono::{DateTime, TimeZone, Utc};

/// The iTIP method: a (new or changed) invitation, or its cancellation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Request,
    Cancel,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Request => "REQUEST",
            Method::Cancel => "CANCEL",
        }
    }
}

/// One maintenance as a calendar event; `Display` gives the folded `.ics` text.
#[derive(Debug, Clone, PartialEq)]
pub struct Invite {
    pub method: Method,
    /// Stable per maintenance: every revision replaces the same calendar entry.
    pub uid: String,
    /// Grows with each revision (see [`sequence_at`]).
    pub sequence: u32,
    /// When this revision was made (DTSTAMP).
    pub stamp: DateTime<Utc>,
    pub start: DateTime<Utc>,
    /// None: an event without length at `start`.
    pub end: Option<DateTime<Utc>>,
    pub summary: String,
    pub description: String,
    /// Bare email addresses.
    pub organizer: String,
    pub attendee: String,
}

/// The SEQUENCE of a revision made at `at`: seconds since 2024-01-01 UTC. It
/// needs no stored counter, and later revisions (reschedules, a cancellation)
/// get larger numbers; it fits a 32-bit integer until 2092.
pub fn sequence_at(at: DateTime<Utc>) -> u32 {
    let epoch = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).single().expect("a valid date");
    u32::try_from((at - epoch).num_seconds().max(0)).unwrap_or(u32::MAX)
}

/// `20261201T143000Z`
pub fn utc_stamp(at: DateTime<Utc>) -> String {
    at.format("%Y%m%dT%H%M%SZ").to_string()
}

/// Escapes a TEXT value: backslash, `;`, `,` and newlines (CR dropped).
pub fn escape_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// One content line, folded: at most 75 octets per physical line, continuation
/// lines start with a space, every line ends in CRLF.
pub fn fold_line(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + line.len() / 70 * 3 + 2);
    let mut width = 0; // octets on the current physical line
    for c in line.chars() {
        let len = c.len_utf8();
        if width + len > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += len;
    }
    out.push_str("\r\n");
    out
}

/// The METHOD of a calendar object, if it has one.
pub fn method_of(calendar: &str) -> Option<&str> {
    calendar.lines().find_map(|line| line.trim_end_matches('\r').strip_prefix("METHOD:"))
}

impl fmt::Display for Invite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match self.method {
            Method::Request => "CONFIRMED",
            Method::Cancel => "CANCELLED",
        };
        let mut lines = vec![
            "BEGIN:VCALENDAR".to_string(),
            "VERSION:2.0".to_string(),
            format!("PRODID:-//pgmaint//pgmaint {}//EN", env!("CARGO_PKG_VERSION")),
            "CALSCALE:GREGORIAN".to_string(),
            format!("METHOD:{}", self.method.as_str()),
            "BEGIN:VEVENT".to_string(),
            format!("UID:{}", escape_text(&self.uid)),
            format!("SEQUENCE:{}", self.sequence),
            format!("DTSTAMP:{}", utc_stamp(self.stamp)),
            format!("DTSTART:{}", utc_stamp(self.start)),
        ];
        if let Some(end) = self.end {
            lines.push(format!("DTEND:{}", utc_stamp(end)));
        }
        lines.extend([
            format!("SUMMARY:{}", escape_text(&self.summary)),
            format!("DESCRIPTION:{}", escape_text(&self.description)),
            format!("ORGANIZER;CN=pgmaint:mailto:{}", self.organizer),
            format!("ATTENDEE;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=FALSE:mailto:{}", self.attendee),
            format!("STATUS:{status}"),
            // The owners need not be free: the maintenance does not take their time.
            "TRANSP:TRANSPARENT".to_string(),
            "END:VEVENT".to_string(),
            "END:VCALENDAR".to_string(),
        ]);
        for line in lines {
            f.write_str(&fold_line(&line))?;
        }
        Ok(())
    }
}
