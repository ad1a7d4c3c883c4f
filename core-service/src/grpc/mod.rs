//! The gRPC transport: service implementations, protobuf <-> domain conversions, and the one
//! mapping of `CoreError` onto `tonic::Status`.

mod client;
mod convert;
mod developer;

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

pub use client::ClientApi;
pub use developer::DeveloperApi;
use licensing::{ERROR_DOMAIN, RESPONSE_TOKEN_METADATA, RETRY_AFTER_METADATA, v1::Origin};
use tonic::{
    Status,
    metadata::{MetadataMap, MetadataValue},
};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::CoreError;

/// Turns an error into a status: the stable code as `ErrorInfo.reason`, field violations as
/// `BadRequest`, the wait as `RetryInfo` and `retry-after`, and the response token if any.
/// Internal causes are logged here and never sent.
pub fn to_status(err: &CoreError, token: Option<&str>) -> Status {
    let code = err.code();
    crate::metrics::metrics().errors.with_label_values(&[code.as_str()]).inc();
    let message = match err {
        CoreError::Internal(cause) => {
            tracing::error!(error = %cause, "internal error");
            err.to_string()
        }
        CoreError::Unavailable(cause) => {
            tracing::warn!(error = %cause, "dependency unavailable");
            err.to_string()
        }
        _ => err.to_string(),
    };
    let mut details = ErrorDetails::with_error_info(code.as_str(), ERROR_DOMAIN, HashMap::new());
    if let Some(field) = err.field() {
        details.add_bad_request_violation(field, message.clone());
    }
    let mut metadata = MetadataMap::new();
    if let CoreError::RateLimited { retry_after_secs } = err {
        details.set_retry_info(Some(Duration::from_secs(*retry_after_secs)));
        metadata.insert(RETRY_AFTER_METADATA, MetadataValue::from(*retry_after_secs));
    }
    if let Some(value) = token.and_then(|t| MetadataValue::try_from(t).ok()) {
        metadata.insert(RESPONSE_TOKEN_METADATA, value);
    }
    Status::with_error_details_and_metadata(code.grpc_code(), message, details, metadata)
}

/// Bounds a call's own work: past `limit` it is abandoned (its transaction rolls back) and the
/// caller gets `unavailable`, so a stuck database cannot pile calls up without end. The client's
/// own gRPC deadline, when shorter, applies as well.
async fn within<T>(
    limit: Duration,
    call: impl std::future::Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result,
        Err(_) => {
            Err(to_status(&CoreError::Unavailable("the call exceeded the request timeout".into()), None))
        }
    }
}

/// The end user's address: the one the edge reported, else the gRPC peer.
fn client_address(peer: Option<SocketAddr>, origin: Option<&Origin>) -> Result<String, CoreError> {
    match origin.map(|o| o.client_address.as_str()).filter(|a| !a.is_empty()) {
        Some(reported) => reported
            .parse::<IpAddr>()
            .map(|ip| ip.to_string())
            .map_err(|_| CoreError::invalid("client_address", "client_address must be an IP address")),
        None => Ok(peer.map(|a| a.ip().to_string()).unwrap_or_default()),
    }
}

fn nonce(origin: Option<&Origin>) -> String {
    origin.map(|o| o.nonce.clone()).unwrap_or_default()
}
