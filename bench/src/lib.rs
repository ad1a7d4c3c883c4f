//! What the floor programs of `scripts/bench` share: an answer shaped like the gateway's answer to
//! `connect`, so the floors move the same bytes as the real stack.

/// A response token of the real one's shape and size: a compact JWS (`alg: EdDSA`) whose claims
/// are those of a successful `connect` by an active user. The signature is filler: nobody checks it.
pub const RESPONSE_TOKEN: &str = concat!(
    "eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9.",
    "eyJhY3QiOiJjb25uZWN0Iiwic3QiOiJzdWNjZXNzIiwibm9uY2UiOiIiLCJpYXQiOjE3OTYxMTIwMDAsImV4cCI6MTc5NjE5",
    "ODQwMCwic3ViIjoiYmVuY2gtdXNlci0xIiwiaHdpZCI6IkhXIiwibGljIjoiYWN0aXZlIiwibHZsIjozLCJsZXhwIjoxODkz",
    "NDU2MDAwLCJwaW5ncyI6MX0.",
    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0-Pw",
);

/// The gateway's Content-Type for every JSON answer.
pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// The gateway's body for a successful `connect`: the ping count and the token.
pub fn connect_body() -> String {
    format!(r#"{{"status":"success","total_pings":1,"token":"{RESPONSE_TOKEN}"}}"#)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_a_three_part_compact_jws() {
        assert_eq!(RESPONSE_TOKEN.split('.').count(), 3);
        assert!(RESPONSE_TOKEN.len() > 300);
        assert!(connect_body().starts_with(r#"{"status":"success""#));
    }
}
