//! Logging: the set-up both programs share.

pub use licensing::telemetry::{LogFormat, init};
