//! The one error type of `schedule`: every way an input can be malformed or a
//! computation can leave chrono's range, each variant naming the bad part so a
//! caller can print it on one line as is.

/// Why a window, duration, time stamp or blackout was rejected, or why a
/// computation could not produce an instant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("empty window (expected \"<day> <HH:MM> [<zone>]\", e.g. \"Sunday 14:30 Europe/Berlin\")")]
    EmptyWindow,
    #[error("unknown day \"{0}\"")]
    UnknownDay(String),
    #[error("window \"{0}\" has no start time (expected \"<day> <HH:MM> [<zone>]\")")]
    MissingTime(String),
    #[error("invalid time \"{0}\"")]
    InvalidTime(String),
    #[error("unknown time zone \"{0}\"")]
    UnknownZone(String),
    #[error("unexpected \"{0}\" after the time zone (expected \"<day> <HH:MM> [<zone>]\")")]
    TrailingWords(String),
    #[error("invalid duration \"{0}\" (expected a positive duration like 4h, 90m, 1h30m, 2d or 45s)")]
    InvalidDuration(String),
    #[error("window length {0} is out of range (1m to 7d)")]
    LengthOutOfRange(String),
    #[error("invalid time stamp \"{0}\" (expected RFC 3339, e.g. 2027-03-14T07:30:00Z)")]
    InvalidTimestamp(String),
    #[error("invalid blackout \"{0}\" (expected START/END, two RFC 3339 time stamps)")]
    InvalidBlackout(String),
    #[error("blackout \"{0}\" ends before it starts")]
    BlackoutEndsBeforeStart(String),
    #[error("invalid cron expression \"{expr}\": {reason}")]
    InvalidCron { expr: String, reason: String },
    #[error("recurring blackout \"{0}\" fires more than {1} times in the planned range")]
    TooManyBlackouts(String, usize),
    #[error("no occurrence of the window is representable after {0}")]
    OutOfRange(String),
}
