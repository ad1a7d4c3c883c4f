//! Random values from the operating system's CSPRNG, and constant-time comparison.

use base64::Engine;
use rand::{TryRng, rngs::SysRng};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::CoreError;

/// Unambiguous upper-case alphabet of 32 symbols: 5 bits a character.
const KEY_ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

pub fn random_bytes<const N: usize>() -> Result<[u8; N], CoreError> {
    let mut buf = [0u8; N];
    SysRng
        .try_fill_bytes(&mut buf)
        .map_err(|e| CoreError::internal(format!("OS random source failed: {e}")))?;
    Ok(buf)
}

/// A new app secret: 256 random bits, hex (safe in every form encoding).
pub fn new_app_secret() -> Result<String, CoreError> {
    Ok(hex(&random_bytes::<32>()?))
}

/// A new licence key: 25 symbols of 5 bits (125 bits), as `XXXXX-XXXXX-XXXXX-XXXXX-XXXXX`.
pub fn new_licence_key() -> Result<String, CoreError> {
    let bytes = random_bytes::<25>()?;
    let mut key = String::with_capacity(29);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 && i % 5 == 0 {
            key.push('-');
        }
        // 256 is a multiple of 32, so masking keeps every symbol equally likely.
        key.push(KEY_ALPHABET[usize::from(b & 31)] as char);
    }
    Ok(key)
}

/// A new API token: 256 random bits, URL-safe base64, with a recognisable prefix.
pub fn new_api_token() -> Result<String, CoreError> {
    let bytes = random_bytes::<32>()?;
    Ok(format!("lic_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)))
}

/// A new Ed25519 key pair: (private seed, public key).
pub fn new_signing_key() -> Result<([u8; 32], [u8; 32]), CoreError> {
    let seed = random_bytes::<32>()?;
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    Ok((seed, key.verifying_key().to_bytes()))
}

/// What an app is looked up by: the lowercase hex SHA-256 of its secret.
pub fn app_secret_hash(secret: &str) -> String {
    hex(&sha256(secret.as_bytes()))
}

pub fn sha256(data: &[u8]) -> Vec<u8> {
    Sha256::digest(data).to_vec()
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn licence_keys_have_the_documented_shape_and_differ() {
        let keys: HashSet<String> = (0..200).map(|_| new_licence_key().expect("rng")).collect();
        assert_eq!(keys.len(), 200);
        for key in &keys {
            let groups: Vec<&str> = key.split('-').collect();
            assert_eq!(groups.len(), 5);
            assert!(groups.iter().all(|g| g.len() == 5));
            assert!(key.chars().all(|c| c == '-' || KEY_ALPHABET.contains(&(c as u8))));
        }
    }

    #[test]
    fn secrets_and_tokens_carry_256_bits() {
        let s = new_app_secret().expect("rng");
        assert_eq!(s.len(), 64);
        assert_ne!(s, new_app_secret().expect("rng"));
        let t = new_api_token().expect("rng");
        assert!(t.starts_with("lic_"));
        assert_eq!(t.len(), 4 + 43);
    }

    #[test]
    fn constant_time_eq_compares_contents() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
