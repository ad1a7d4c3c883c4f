//! The licensing core: domain rules, storage over sea-orm, and the gRPC services.

pub mod cli;
pub mod config;
pub mod domain;
pub mod grpc;
pub mod metrics;
pub mod service;
pub mod startup;
pub mod storage;
pub mod telemetry;

pub use startup::{Application, CoreConfig, StartupError};
