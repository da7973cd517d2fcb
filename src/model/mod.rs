//! Plain domain types shared by every layer: no I/O, no SQL, no formatting of output.

mod lsn;
mod maintenance;
mod plan;
mod status;

pub use lsn::Lsn;
pub use maintenance::{Kind, Reason, Strategy};
pub use plan::{Plan, Tier};
pub use status::{human_size, reference_time, PendingStatus, Progress, Replacement, NO_MAINTENANCE};
