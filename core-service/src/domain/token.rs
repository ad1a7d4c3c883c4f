//! Response tokens: JWS compact serialisation, `alg: EdDSA` (RFC 8037), signed with the app's key.

use std::{collections::HashMap, sync::Mutex};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::{Signer, SigningKey};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{CoreError, keyvault::KeyVault};

/// The claims of a response token. Times are Unix seconds.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Claims {
    pub act: &'static str,
    pub st: String,
    pub nonce: String,
    pub iat: i64,
    pub exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hwid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lic: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lvl: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lexp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pings: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// The `kid` of an Ed25519 public key: its RFC 7638 JWK thumbprint (base64url SHA-256 of the
/// canonical `{"crv","kty","x"}` JSON), which any client can recompute from the public key alone.
pub fn kid_of(public_key: &[u8]) -> String {
    let jwk = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, URL_SAFE_NO_PAD.encode(public_key));
    URL_SAFE_NO_PAD.encode(Sha256::digest(jwk.as_bytes()))
}

/// Expanded signing keys by their stored form. Expanding a seed costs a full scalar
/// multiplication, as much as the signature itself (and opening a sealed one an AEAD pass), and
/// every client answer is signed: keeping the expansion halves the signing cost of a heartbeat.
/// Keyed by the stored bytes themselves, so a key that changes in the database (on any replica)
/// is simply another entry; bounded by starting over when full.
pub struct SigningKeys {
    keys: Mutex<HashMap<Vec<u8>, SigningKey>>,
    vault: KeyVault,
    max_entries: usize,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys").finish_non_exhaustive()
    }
}

impl SigningKeys {
    pub fn new(vault: KeyVault) -> Self {
        SigningKeys { keys: Mutex::new(HashMap::new()), vault, max_entries: 10_000 }
    }

    fn get(&self, kid: &str, stored: &[u8]) -> Result<SigningKey, CoreError> {
        let mut keys = self.keys.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(key) = keys.get(stored) {
            return Ok(key.clone());
        }
        if keys.len() >= self.max_entries {
            keys.clear();
        }
        let key = SigningKey::from_bytes(&self.vault.open(kid, stored)?);
        keys.insert(stored.to_vec(), key.clone());
        Ok(key)
    }

    /// Signs `claims` with the key `kid` whose private half is stored as `stored`.
    pub fn sign(&self, kid: &str, stored: &[u8], claims: &Claims) -> Result<String, CoreError> {
        sign_with(kid, &self.get(kid, stored)?, claims)
    }
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    typ: &'static str,
    kid: &'a str,
}

fn sign_with(kid: &str, key: &SigningKey, claims: &Claims) -> Result<String, CoreError> {
    let header =
        serde_json::to_vec(&Header { alg: "EdDSA", typ: "JWT", kid }).map_err(CoreError::internal)?;
    let payload = serde_json::to_vec(claims).map_err(CoreError::internal)?;
    let signing_input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
    let signature = key.sign(signing_input.as_bytes());
    Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes())))
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};

    use super::*;

    #[test]
    fn tokens_verify_with_the_public_key_and_carry_the_claims() {
        let (seed, public) = crate::domain::secrets::new_signing_key().expect("rng");
        let claims = Claims {
            act: "login",
            st: "success".into(),
            nonce: "n-1".into(),
            iat: 1_700_000_000,
            exp: 1_700_000_060,
            sub: Some("bob".into()),
            hwid: None,
            lic: Some("active"),
            lvl: Some(3),
            lexp: Some(1_800_000_000),
            pings: None,
            sha256: None,
        };
        let kid = kid_of(&public);
        let token = sign_with(&kid, &SigningKey::from_bytes(&seed), &claims).expect("sign");
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("b64")).expect("json");
        assert_eq!(header, serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": kid}));
        let body: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
        assert_eq!(body["sub"], "bob");
        assert_eq!(body["lvl"], 3);
        assert!(body.get("hwid").is_none());
        let sig = Signature::from_slice(&URL_SAFE_NO_PAD.decode(parts[2]).expect("b64")).expect("sig");
        let key = VerifyingKey::from_bytes(&public).expect("key");
        key.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig).expect("valid signature");
        assert!(key.verify(b"tampered", &sig).is_err());

        // The cached expansion signs exactly as a fresh one does (Ed25519 is deterministic).
        let keys = SigningKeys::new(KeyVault::default());
        assert_eq!(keys.sign(&kid, &seed, &claims).expect("sign"), token);
        assert_eq!(keys.sign(&kid, &seed, &claims).expect("sign again"), token);
        assert!(keys.sign(&kid, &seed[..31], &claims).is_err(), "a bad stored key is an error, not a panic");
    }

    /// RFC 8037 appendix A.3 gives the thumbprint of its example key.
    #[test]
    fn kids_are_rfc_7638_thumbprints() {
        let x = URL_SAFE_NO_PAD.decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo").expect("b64");
        assert_eq!(kid_of(&x), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }
}
