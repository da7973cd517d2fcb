//! The error types of `schedule`: [`ScheduleError`], every way an input can be
//! malformed or a computation can leave chrono's range, and [`DurationError`],
//! why the duration grammar refused a text (the configuration reports it as
//! is). Each variant names the bad part so a caller can print it on one line.

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
    #[error("invalid duration: {0}")]
    InvalidDuration(#[from] DurationError),
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

/// Why a text is not a duration (see [`super::parse_std_duration`]); each
/// message quotes the text, trimmed, and says how to write it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration (write e.g. \"10s\", \"24h\" or \"1h30m\")")]
    Empty,
    #[error("\"{0}\" is not a duration (write e.g. \"10s\", \"24h\" or \"1h30m\")")]
    NotADuration(String),
    #[error("\"{text}\" has no unit (add one of ms, s, m, h, d, w: e.g. \"{number}s\")")]
    NoUnit { text: String, number: u64 },
    #[error("\"{0}\": fractions are not supported (write e.g. \"1h30m\" or \"1500ms\")")]
    Fraction(String),
    #[error("\"{text}\": unknown unit \"{unit}\" (use ms, s, m, h, d or w)")]
    UnknownUnit { text: String, unit: String },
    #[error("\"{0}\": write each unit once, largest first (e.g. \"1h30m\")")]
    OutOfOrder(String),
    #[error("\"{0}\" is too long a duration")]
    TooLong(String),
    /// Zero, where only a positive duration will do.
    #[error("\"{0}\" is not longer than zero")]
    NotPositive(String),
}
