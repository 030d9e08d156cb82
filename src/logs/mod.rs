//! Servers' log files: reading them back (the last lines and the live tail), merging several
//! in time order, and rotating them while the child keeps writing. tend's own log is
//! [`crate::logger`], a different thing.

pub mod merge;
pub mod paths;
pub mod rotate;
pub mod tail;
pub mod times;
