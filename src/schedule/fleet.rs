//! A fleet file (TOML: one `[[database]]` table per database, with its window,
//! first deadline, cadence and blackouts) and the calendar it implies: every
//! maintenance of every database between two instants. Parsing takes the
//! file's text, not its path, so this stays pure; errors carry the line,
//! database and key so the caller can name the file and print one line.

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use toml::Spanned;

use super::{
    normalize_blackouts, parse_duration, parse_timestamp, parse_window_length, plan, Blackout, Plan, RecurringBlackout, ScheduleError, Window,
    DEFAULT_WINDOW_LENGTH,
};

/// The cadence when a database names none: 90 days.
pub const DEFAULT_EVERY: TimeDelta = TimeDelta::days(90);
/// The most maintenances one database may have in one calendar.
/// A periodic maintenance becomes known (and planned) this long before its
/// required-by time, so it can be put into a window ahead of the deadline.
pub const PERIODIC_NOTICE: TimeDelta = TimeDelta::days(14);

pub const MAX_MAINTENANCES_PER_DATABASE: usize = 100_000;

/// A parsed, validated fleet file.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub databases: Vec<FleetDatabase>,
}

/// One `[[database]]` of a fleet file.
#[derive(Debug, Clone)]
pub struct FleetDatabase {
    pub name: String,
    pub window: Window,
    pub length: TimeDelta,
    /// The first deadline.
    pub required_by: DateTime<Utc>,
    /// Each next deadline is the previous `scheduled_for` plus this.
    pub every: TimeDelta,
    pub blackouts: Vec<Blackout>,
    /// Read in the window's zone.
    pub recurring_blackouts: Vec<RecurringBlackout>,
}

/// A maintenance on a fleet's calendar.
#[derive(Debug, Clone, Copy)]
pub struct PlannedMaintenance<'a> {
    pub database: &'a FleetDatabase,
    pub required_by: DateTime<Utc>,
    pub plan: Plan,
}

/// A fleet file that could not be read or planned: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetError {
    /// 1-based line and column in the file, when known.
    pub position: Option<(usize, usize)>,
    pub database: Option<String>,
    pub key: Option<String>,
    pub message: String,
}

impl FleetError {
    /// The error as one line naming the file: `fleet.toml:3:10: database "orders", window: unknown day "Sundy"`.
    pub fn in_file(&self, file: &str) -> String {
        format!("{file}:{self}")
    }
}

impl fmt::Display for FleetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((line, column)) = self.position {
            write!(f, "{line}:{column}:")?;
        }
        f.write_str(" ")?;
        match (&self.database, &self.key) {
            (Some(db), Some(key)) => write!(f, "database \"{db}\", {key}: ")?,
            (Some(db), None) => write!(f, "database \"{db}\": ")?,
            (None, Some(key)) => write!(f, "{key}: ")?,
            (None, None) => {}
        }
        // Messages from toml may span lines; keep to one.
        let mut lines = self.message.lines().map(str::trim).filter(|l| !l.is_empty());
        f.write_str(lines.next().unwrap_or(""))?;
        for more in lines {
            write!(f, " {more}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FleetError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFleet {
    #[serde(default)]
    database: Vec<RawDatabase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    name: Spanned<String>,
    window: Spanned<String>,
    length: Option<Spanned<String>>,
    required_by: Spanned<String>,
    every: Option<Spanned<String>>,
    #[serde(default)]
    blackouts: Vec<Spanned<String>>,
    #[serde(default)]
    recurring_blackouts: Vec<Spanned<RawRecurring>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecurring {
    cron: Spanned<String>,
    length: Spanned<String>,
}

impl Fleet {
    /// Parses and validates a fleet file's text.
    pub fn from_toml(text: &str) -> Result<Fleet, FleetError> {
        let raw: RawFleet = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        let mut names = HashSet::new();
        let mut databases = Vec::with_capacity(raw.database.len());
        for db in raw.database {
            let name = db.name.get_ref().trim().to_string();
            let fail = |key: &str, span: Range<usize>, message: String| FleetError {
                position: Some(position(text, span.start)),
                database: Some(name.clone()).filter(|n| !n.is_empty()),
                key: Some(key.to_string()),
                message,
            };
            if name.is_empty() {
                return Err(fail("name", db.name.span(), "must not be empty".to_string()));
            }
            if !names.insert(name.clone()) {
                return Err(fail("name", db.name.span(), "another database has the same name".to_string()));
            }
            let window: Window = db.window.get_ref().parse().map_err(|e: ScheduleError| fail("window", db.window.span(), e.to_string()))?;
            let length = match &db.length {
                Some(l) => parse_window_length(l.get_ref()).map_err(|e| fail("length", l.span(), e.to_string()))?,
                None => DEFAULT_WINDOW_LENGTH,
            };
            let required_by = parse_timestamp(db.required_by.get_ref()).map_err(|e| fail("required_by", db.required_by.span(), e.to_string()))?;
            let every = match &db.every {
                Some(e) => parse_duration(e.get_ref()).map_err(|err| fail("every", e.span(), err.to_string()))?,
                None => DEFAULT_EVERY,
            };
            let blackouts = db
                .blackouts
                .iter()
                .map(|b| b.get_ref().parse::<Blackout>().map_err(|e| fail("blackouts", b.span(), e.to_string())))
                .collect::<Result<Vec<_>, _>>()?;
            let recurring_blackouts = db
                .recurring_blackouts
                .iter()
                .map(|r| {
                    let r = r.get_ref();
                    let length = parse_duration(r.length.get_ref()).map_err(|e| fail("recurring_blackouts.length", r.length.span(), e.to_string()))?;
                    RecurringBlackout::new(r.cron.get_ref(), length).map_err(|e| fail("recurring_blackouts.cron", r.cron.span(), e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            databases.push(FleetDatabase { name, window, length, required_by, every, blackouts, recurring_blackouts });
        }
        Ok(Fleet { databases })
    }

    /// Every planned maintenance with `scheduled_for` in `[from, to)`, sorted
    /// by `scheduled_for` then database name.
    ///
    /// For each database the first maintenance is planned with now = `from`
    /// and the file's `required_by`; each next one is required by the previous
    /// `scheduled_for` + `every` and becomes known (is planned from)
    /// [`PERIODIC_NOTICE`] before that, as the daemon does, but never before
    /// the previous one ended; while `scheduled_for` < `to`.
    pub fn plan(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<PlannedMaintenance<'_>>, FleetError> {
        let mut out = Vec::new();
        let mut blackouts = Vec::new();
        for db in &self.databases {
            let fail = |message: String| FleetError { position: None, database: Some(db.name.clone()), key: None, message };
            let (mut now, mut required_by, mut count) = (from, db.required_by, 0);
            loop {
                blackouts.clear();
                blackouts.extend_from_slice(&db.blackouts);
                // Only blackouts overlapping [now, required_by) can touch a window the planner may pick.
                for recurring in &db.recurring_blackouts {
                    recurring.expand_into(db.window.zone(), now, required_by, &mut blackouts).map_err(|e| fail(e.to_string()))?;
                }
                normalize_blackouts(&mut blackouts);
                let planned = plan(&db.window, db.length, required_by, now, None, &blackouts).map_err(|e| fail(e.to_string()))?;
                if planned.scheduled_for >= to {
                    break;
                }
                count += 1;
                if count > MAX_MAINTENANCES_PER_DATABASE {
                    return Err(fail(format!("more than {MAX_MAINTENANCES_PER_DATABASE} maintenances in the range; is `every` too short?")));
                }
                out.push(PlannedMaintenance { database: db, required_by, plan: planned });
                let (Some(previous_end), Some(next_required_by)) =
                    (planned.scheduled_for.checked_add_signed(db.length), planned.scheduled_for.checked_add_signed(db.every))
                else {
                    break;
                };
                let known_from = next_required_by.checked_sub_signed(PERIODIC_NOTICE).unwrap_or(previous_end);
                (now, required_by) = (previous_end.max(known_from), next_required_by);
            }
        }
        out.sort_by(|a, b| (a.plan.scheduled_for, &a.database.name).cmp(&(b.plan.scheduled_for, &b.database.name)));
        Ok(out)
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (before.matches('\n').count() + 1, before[line_start..].chars().count() + 1)
}

/// A toml error as a [`FleetError`]: its line and column, and the database
/// whose `[[database]]` table it is in when that can be told.
fn toml_error(text: &str, error: &toml::de::Error) -> FleetError {
    let offset = error.span().map(|s| s.start);
    let database = offset.and_then(|offset| {
        // Which `[[database]]` header comes last before the error?
        let mut index = None;
        let mut at = 0;
        for line in text.split_inclusive('\n') {
            if at > offset {
                break;
            }
            let compact: String = line.chars().filter(|c| !c.is_whitespace()).collect();
            if compact.starts_with("[[database]]") {
                index = Some(index.map_or(0, |i| i + 1));
            }
            at += line.len();
        }
        let index = index?;
        // Its name, if the file is at least valid TOML.
        let name = toml::from_str::<toml::Table>(text)
            .ok()
            .and_then(|t| t.get("database")?.as_array()?.get(index)?.get("name")?.as_str().map(str::to_string));
        Some(name.unwrap_or_else(|| format!("#{}", index + 1)))
    });
    FleetError { position: offset.map(|o| position(text, o)), database, key: None, message: error.message().to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::format_timestamp;

    const EXAMPLE: &str = r#"
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
window = "wed 22:00"
required_by = "2027-01-01T00:00:00Z"
"#;

    fn ts(text: &str) -> DateTime<Utc> {
        parse_timestamp(text).unwrap()
    }

    #[test]
    fn parses_with_defaults() {
        let fleet = Fleet::from_toml(EXAMPLE).unwrap();
        assert_eq!(fleet.databases.len(), 2);
        let billing = &fleet.databases[1];
        assert_eq!((billing.length, billing.every), (DEFAULT_WINDOW_LENGTH, DEFAULT_EVERY));
        assert_eq!(fleet.databases[0].recurring_blackouts.len(), 1);
        assert!(Fleet::from_toml("").unwrap().databases.is_empty());
    }

    #[test]
    fn plans_a_calendar() {
        let fleet = Fleet::from_toml(EXAMPLE).unwrap();
        let got: Vec<_> = fleet
            .plan(ts("2026-12-01T00:00:00Z"), ts("2027-12-01T00:00:00Z"))
            .unwrap()
            .iter()
            .map(|m| (m.database.name.as_str(), format_timestamp(m.required_by), format_timestamp(m.plan.scheduled_for), m.plan.is_forced()))
            .collect();
        let expected = [
            ("billing", "2027-01-01T00:00:00Z", "2026-12-02T22:00:00Z", false),
            // Sunday 2026-12-06 02:30 EST = 07:30Z.
            ("orders", "2027-01-20T00:00:00Z", "2026-12-06T07:30:00Z", false),
            // The next ones are known 14 days before their deadline (previous + 90 days)
            // and go into the first window after that.
            ("billing", "2027-03-02T22:00:00Z", "2027-02-17T22:00:00Z", false),
            ("orders", "2027-03-06T07:30:00Z", "2027-02-21T07:30:00Z", false),
        ];
        assert_eq!(&got[..4], &expected.map(|(a, b, c, d)| (a, b.to_string(), c.to_string(), d)));
        // Every 90 days at most, and never much earlier than needed: 4 to 5 a year each.
        for name in ["orders", "billing"] {
            let count = got.iter().filter(|m| m.0 == name).count();
            assert!((4..=5).contains(&count), "{name}: {count} maintenances in a year");
        }
        assert!(got.windows(2).all(|w| (&w[0].2, w[0].0) <= (&w[1].2, w[1].0)));
    }

    #[test]
    fn blackouts_are_honoured_in_the_calendar() {
        let text = r#"
[[database]]
name = "orders"
window = "Sunday 10:00"
required_by = "2027-01-31T00:00:00Z"
every = "1000d"
blackouts = ["2026-12-01T00:00:00Z/2026-12-14T00:00:00Z"]
recurring_blackouts = [{ cron = "0 0 0 * * Sun", length = "24h" }]
"#;
        let fleet = Fleet::from_toml(text).unwrap();
        let plans = fleet.plan(ts("2026-12-01T00:00:00Z"), ts("2027-02-01T00:00:00Z")).unwrap();
        // Every Sunday is blacked out: forced, finishing at the deadline.
        assert_eq!(plans.len(), 1);
        assert_eq!(format_timestamp(plans[0].plan.scheduled_for), "2027-01-30T20:00:00Z");
        assert_eq!(plans[0].plan.forced, Some(crate::schedule::ForcedReason::AllWindowsBlackedOut));
    }

    #[test]
    fn errors_name_the_line_database_and_key() {
        let err = Fleet::from_toml(&EXAMPLE.replace("wed 22:00", "Wendsday 22:00")).unwrap_err();
        assert_eq!(err.in_file("fleet.toml"), "fleet.toml:13:10: database \"billing\", window: unknown day \"Wendsday\"");
        let err = Fleet::from_toml(&EXAMPLE.replace("every = \"90d\"", "colour = \"blue\"")).unwrap_err();
        assert_eq!(err.position.map(|p| p.0), Some(7));
        assert_eq!(err.database.as_deref(), Some("orders"));
        assert!(err.message.contains("unknown field `colour`"), "{err}");
        assert!(!err.in_file("f").contains('\n'));
        let err = Fleet::from_toml(&EXAMPLE.replace("required_by = \"2027-01-01T00:00:00Z\"", "")).unwrap_err();
        assert_eq!(err.database.as_deref(), Some("billing"));
        assert!(err.message.contains("missing field `required_by`"), "{err}");
        let err = Fleet::from_toml(&EXAMPLE.replace("\"72h\"", "\"soon\"")).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("recurring_blackouts.length"));
        let err = Fleet::from_toml(&EXAMPLE.replace("billing", "orders")).unwrap_err();
        assert!(err.to_string().contains("same name"), "{err}");
        let err = Fleet::from_toml("[[database]\nname = 1").unwrap_err();
        assert_eq!(err.position.map(|p| p.0), Some(1));
        let err = Fleet::from_toml(&EXAMPLE.replace("2027-01-05T00:00:00Z\"]", "2026-01-05T00:00:00Z\"]")).unwrap_err();
        assert!(err.to_string().contains("ends before it starts"), "{err}");
    }
}
