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

use crate::{
    domain::CoreError,
    service::{Core, GatewayCredential},
};

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

/// Who is on the other end of a call, as far as the client address is concerned.
#[derive(Debug, Clone, Copy)]
struct Caller {
    peer: Option<SocketAddr>,
    /// A gateway the core believes about its clients' addresses.
    trusted: bool,
}

/// Judges the caller once per call: with a gateway credential configured, only callers that
/// present it are gateways; without one, only loopback callers (the local stack) are.
fn caller<T>(core: &Core, req: &tonic::Request<T>) -> Caller {
    let peer = req.remote_addr();
    let settings = core.settings();
    // Only present when the client CA verified the caller's certificate chain.
    let certified = req.peer_certs().is_some_and(|chain| !chain.is_empty());
    let rule = GatewayRule {
        credential: settings.gateway_credential.as_ref(),
        by_certificate: settings.gateways_by_certificate,
    };
    Caller { peer, trusted: rule.admits(req.metadata(), peer, certified) }
}

/// How the core recognises a gateway.
#[derive(Clone, Copy)]
struct GatewayRule<'a> {
    credential: Option<&'a GatewayCredential>,
    by_certificate: bool,
}

impl GatewayRule<'_> {
    /// A verified client certificate, or the credential, when configured; loopback when neither is.
    fn admits(&self, metadata: &MetadataMap, peer: Option<SocketAddr>, certified: bool) -> bool {
        if self.by_certificate && certified {
            return true;
        }
        match self.credential {
            Some(credential) => metadata
                .get(licensing::GATEWAY_CREDENTIAL_METADATA)
                .is_some_and(|presented| credential.matches(presented.as_bytes())),
            None => !self.by_certificate && peer.is_some_and(|p| p.ip().to_canonical().is_loopback()),
        }
    }
}

/// The end user's address: the one a trusted gateway reported, else the caller's own. Anyone
/// else who names an address would choose which address the throttle counts their guesses on.
fn client_address(caller: Caller, origin: Option<&Origin>) -> Result<String, CoreError> {
    let own = || caller.peer.map(|a| a.ip().to_canonical().to_string()).unwrap_or_default();
    match origin.map(|o| o.client_address.as_str()).filter(|a| !a.is_empty()) {
        Some(reported) if caller.trusted => reported
            .parse::<IpAddr>()
            .map(|ip| ip.to_string())
            .map_err(|_| CoreError::invalid("client_address", "client_address must be an IP address")),
        Some(_) => {
            tracing::debug!(peer = ?caller.peer, "ignoring a client address reported by a caller that is not a gateway");
            Ok(own())
        }
        None => Ok(own()),
    }
}

fn nonce(origin: Option<&Origin>) -> String {
    origin.map(|o| o.nonce.clone()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_counts_as_a_gateway() {
        let loopback = Some(SocketAddr::from(([127, 0, 0, 1], 4000)));
        let mapped_loopback = Some("[::ffff:127.0.0.1]:4000".parse().expect("addr"));
        let remote = Some(SocketAddr::from(([10, 1, 2, 3], 4000)));
        let none = MetadataMap::new();
        // Nothing configured: loopback callers only.
        let open = GatewayRule { credential: None, by_certificate: false };
        assert!(open.admits(&none, loopback, false));
        assert!(open.admits(&none, mapped_loopback, false));
        assert!(!open.admits(&none, remote, false));
        assert!(!open.admits(&none, None, false));
        // A credential: whoever presents it, from anywhere; nobody else, loopback included.
        let secret = "s".repeat(40);
        let credential = GatewayCredential::parse(&secret).expect("credential");
        let mut presented = MetadataMap::new();
        presented.insert(licensing::GATEWAY_CREDENTIAL_METADATA, secret.parse().expect("ascii"));
        let mut wrong = MetadataMap::new();
        wrong.insert(licensing::GATEWAY_CREDENTIAL_METADATA, "t".repeat(40).parse().expect("ascii"));
        let shared = GatewayRule { credential: Some(&credential), by_certificate: false };
        assert!(shared.admits(&presented, remote, false));
        assert!(!shared.admits(&wrong, remote, false));
        assert!(!shared.admits(&none, loopback, false));
        // Client certificates: a verified one from anywhere; loopback alone no longer.
        let mtls = GatewayRule { credential: None, by_certificate: true };
        assert!(mtls.admits(&none, remote, true));
        assert!(!mtls.admits(&none, loopback, false));
        // Both: either proof will do.
        let both = GatewayRule { credential: Some(&credential), by_certificate: true };
        assert!(both.admits(&none, remote, true));
        assert!(both.admits(&presented, remote, false));
        assert!(!both.admits(&none, loopback, false));
    }

    #[test]
    fn an_untrusted_caller_is_counted_on_its_own_address() {
        let origin = Origin { client_address: "203.0.113.9".into(), nonce: String::new() };
        let peer = Some(SocketAddr::from(([10, 1, 2, 3], 4000)));
        let outsider = Caller { peer, trusted: false };
        assert_eq!(client_address(outsider, Some(&origin)).expect("address"), "10.1.2.3");
        let gateway = Caller { peer, trusted: true };
        assert_eq!(client_address(gateway, Some(&origin)).expect("address"), "203.0.113.9");
        assert_eq!(client_address(gateway, None).expect("address"), "10.1.2.3");
    }
}
