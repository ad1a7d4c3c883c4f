//! Response tokens: JWS compact serialisation, `alg: EdDSA` (RFC 8037), signed with the app's key.

use std::{collections::HashMap, sync::Mutex};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::{Signer, SigningKey};
use serde::Serialize;

use super::CoreError;

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

/// Expanded signing keys by their seed. Expanding a seed costs a full scalar multiplication, as
/// much as the signature itself, and every client answer is signed: keeping the expansion halves
/// the signing cost of a heartbeat. Keyed by the seed itself, so a key that changes in the
/// database (on any replica) is simply another entry; bounded by starting over when full.
pub struct SigningKeys {
    keys: Mutex<HashMap<[u8; 32], SigningKey>>,
    max_entries: usize,
}

impl Default for SigningKeys {
    fn default() -> Self {
        SigningKeys { keys: Mutex::new(HashMap::new()), max_entries: 10_000 }
    }
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys").finish_non_exhaustive()
    }
}

impl SigningKeys {
    fn get(&self, seed: &[u8]) -> Result<SigningKey, CoreError> {
        let seed: [u8; 32] =
            seed.try_into().map_err(|_| CoreError::internal("stored app signing key is not 32 bytes"))?;
        let mut keys = self.keys.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(key) = keys.get(&seed) {
            return Ok(key.clone());
        }
        if keys.len() >= self.max_entries {
            keys.clear();
        }
        let key = SigningKey::from_bytes(&seed);
        keys.insert(seed, key.clone());
        Ok(key)
    }

    /// Signs `claims` with the app's Ed25519 private key (its 32-byte seed).
    pub fn sign(&self, seed: &[u8], claims: &Claims) -> Result<String, CoreError> {
        sign_with(&self.get(seed)?, claims)
    }
}

fn sign_with(key: &SigningKey, claims: &Claims) -> Result<String, CoreError> {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA","typ":"JWT"}"#);
    let payload = serde_json::to_vec(claims).map_err(CoreError::internal)?;
    let signing_input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(payload));
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
        let token = sign_with(&SigningKey::from_bytes(&seed), &claims).expect("sign");
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("b64")).expect("json");
        assert_eq!(header["alg"], "EdDSA");
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
        let keys = SigningKeys::default();
        assert_eq!(keys.sign(&seed, &claims).expect("sign"), token);
        assert_eq!(keys.sign(&seed, &claims).expect("sign again"), token);
        assert!(keys.sign(&seed[..31], &claims).is_err(), "a bad stored key is an error, not a panic");
    }
}
