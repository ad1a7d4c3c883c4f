//! The gateway credential: a secret the core and its gateways share, which a gateway presents (as
//! `x-gateway-credential` metadata) so the core believes the client addresses it reports.

/// Shortest credential accepted: an attacker on the network may guess at it.
pub const GATEWAY_CREDENTIAL_MIN_LEN: usize = 32;

/// Checks a configured credential: at least [`GATEWAY_CREDENTIAL_MIN_LEN`] visible ASCII
/// characters (it travels as gRPC metadata). Both programs refuse anything else at start.
pub fn check_gateway_credential(value: &str) -> Result<(), String> {
    if value.len() < GATEWAY_CREDENTIAL_MIN_LEN {
        return Err(format!(
            "a gateway credential needs at least {GATEWAY_CREDENTIAL_MIN_LEN} characters (e.g. `openssl rand -hex 32`)"
        ));
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("a gateway credential may hold visible ASCII characters only".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_or_invisible_credentials_are_refused() {
        assert!(check_gateway_credential(&"a".repeat(31)).is_err());
        assert!(check_gateway_credential(&format!("{} ", "a".repeat(32))).is_err());
        assert!(check_gateway_credential(&"é".repeat(32)).is_err());
        assert!(check_gateway_credential(&"0123456789abcdef".repeat(4)).is_ok());
    }
}
