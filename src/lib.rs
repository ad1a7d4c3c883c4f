//! The licensing service's gRPC API (`proto/licensing/v1`) and the error vocabulary both programs
//! share: one [`ErrorCode`] enum knows its gRPC code and its HTTP status, so the core and the
//! gateway can never disagree.

pub mod v1 {
    #![allow(clippy::large_enum_variant, clippy::doc_lazy_continuation)]
    tonic::include_proto!("licensing.v1");

    /// Encoded file descriptor set of the API, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("licensing_descriptor");
}

#[cfg(feature = "allocator")]
pub mod allocator;
mod credential;
mod error_code;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "pem")]
pub mod pem;
#[cfg(feature = "shutdown")]
pub mod shutdown;
#[cfg(feature = "telemetry")]
pub mod telemetry;

pub use credential::{GATEWAY_CREDENTIAL_MIN_LEN, check_gateway_credential};
pub use error_code::{
    ERROR_DOMAIN, ErrorCode, GATEWAY_CREDENTIAL_METADATA, RESPONSE_TOKEN_METADATA, RETRY_AFTER_METADATA,
};

/// The legacy API's timestamps (`chrono` format): UTC, `YYYY-MM-DD HH:MM:SS`, zero-padded. The
/// deployed clients parse exactly this, in `expire_date` fields and in answers alike.
pub const DATE_FORMAT: &str = "%Y-%m-%d %H:%M:%S";
