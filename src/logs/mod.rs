//! Servers' log files: reading them back (the last lines and the live tail) and rotating them
//! while the child keeps writing. tend's own log is [`crate::logger`], a different thing.

pub mod rotate;
pub mod tail;
