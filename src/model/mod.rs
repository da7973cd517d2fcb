//! Plain domain types shared by every layer: no I/O, no SQL, no formatting of output.

mod label;
mod lsn;
mod maintenance;
mod plan;
mod status;
mod waves;

pub use label::{check_label_key, check_labels, describe_labels, parse_label, parse_labels, Labels};
pub use lsn::Lsn;
pub use maintenance::{Kind, Reason, Strategy};
pub use plan::{Plan, Tier};
pub use waves::WaveSpec;
pub use status::{human_size, reference_time, PendingStatus, Progress, Replacement, NO_MAINTENANCE};
