//! pg (being written)
