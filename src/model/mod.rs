//! Plain domain types shared by every layer: no I/O, no SQL, no formatting of output.

mod lsn;

pub use lsn::Lsn;
