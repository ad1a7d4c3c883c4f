//! How apps' private signing keys are stored. With a key-encryption key (KEK) from the operator
//! each 32-byte Ed25519 seed is sealed with ChaCha20-Poly1305 before it reaches the database, so a
//! dump of the database alone does not reveal it; without one the seed is stored as it is.
//!
//! Sealed form: `b"lks1"`, a random 96-bit nonce, then the ciphertext and its tag (64 bytes in
//! all). The key's `kid` is the associated data: a sealed seed copied onto another key's row
//! does not open.

use std::{path::Path, sync::Arc};

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};

use super::{CoreError, secrets::random_bytes};

const MAGIC: &[u8; 4] = b"lks1";
const SEED: usize = 32;
const NONCE: usize = 12;
const SEALED: usize = MAGIC.len() + NONCE + SEED + 16;

/// The operator's key-encryption key, if any. Cheap to clone; never printed.
#[derive(Clone, Default)]
pub struct KeyVault {
    kek: Option<Arc<LessSafeKey>>,
}

impl std::fmt::Debug for KeyVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.kek.is_some() { "KeyVault(sealed)" } else { "KeyVault(plain)" })
    }
}

impl KeyVault {
    /// Reads a KEK: a file of exactly 32 bytes, or 64 hexadecimal digits (surrounding whitespace
    /// ignored), as `head -c 32 /dev/urandom` or `openssl rand -hex 32` make them.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let bytes = std::fs::read(path)
            .map_err(|e| format!("cannot read the key-encryption key {}: {e}", path.display()))?;
        Self::from_bytes(&bytes)
            .map_err(|e| format!("the key-encryption key {} is not usable: {e}", path.display()))
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let key: Vec<u8> = if bytes.len() == 32 {
            bytes.to_vec()
        } else {
            let text = std::str::from_utf8(bytes).map_err(|_| "expected 32 bytes or 64 hex digits")?.trim();
            if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err("expected 32 bytes or 64 hex digits".into());
            }
            (0..32).map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap_or(0)).collect()
        };
        if key.iter().all(|&b| b == 0) {
            return Err("it is all zeros".into());
        }
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, &key).map_err(|_| "not a 256-bit key")?;
        Ok(KeyVault { kek: Some(Arc::new(LessSafeKey::new(unbound))) })
    }

    pub fn seals(&self) -> bool {
        self.kek.is_some()
    }

    /// Whether a stored private key is sealed (as opposed to a plain seed).
    pub fn is_sealed(stored: &[u8]) -> bool {
        stored.len() == SEALED && stored.starts_with(MAGIC)
    }

    /// What to store for `seed`: sealed when there is a KEK, else the seed itself.
    pub fn seal(&self, kid: &str, seed: &[u8; SEED]) -> Result<Vec<u8>, CoreError> {
        let Some(kek) = &self.kek else { return Ok(seed.to_vec()) };
        let nonce = random_bytes::<NONCE>()?;
        let mut sealed = Vec::with_capacity(SEALED);
        sealed.extend_from_slice(MAGIC);
        sealed.extend_from_slice(&nonce);
        let mut body = seed.to_vec();
        kek.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(kid.as_bytes()),
            &mut body,
        )
        .map_err(|_| CoreError::internal("sealing a signing key failed"))?;
        sealed.extend_from_slice(&body);
        Ok(sealed)
    }

    /// The seed of a stored private key.
    pub fn open(&self, kid: &str, stored: &[u8]) -> Result<[u8; SEED], CoreError> {
        if !Self::is_sealed(stored) {
            return stored
                .try_into()
                .map_err(|_| CoreError::internal("a stored signing key is not 32 bytes"));
        }
        let Some(kek) = &self.kek else {
            return Err(CoreError::internal("a signing key is sealed and no key-encryption key was given"));
        };
        let nonce: [u8; NONCE] = stored[MAGIC.len()..MAGIC.len() + NONCE]
            .try_into()
            .map_err(|_| CoreError::internal("a sealed signing key is truncated"))?;
        let mut body = stored[MAGIC.len() + NONCE..].to_vec();
        let seed = kek
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(kid.as_bytes()), &mut body)
            .map_err(|_| {
                CoreError::internal("a sealed signing key does not open with this key-encryption key")
            })?;
        seed.try_into().map_err(|_| CoreError::internal("a sealed signing key is not 32 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault(byte: u8) -> KeyVault {
        KeyVault::from_bytes(&[byte; 32]).expect("kek")
    }

    #[test]
    fn sealed_seeds_open_only_with_their_kek_and_kid() {
        let seed = [7u8; 32];
        let sealed = vault(1).seal("kid-a", &seed).expect("seal");
        assert!(KeyVault::is_sealed(&sealed));
        assert!(!sealed.windows(32).any(|w| w == seed), "the seed is not in the sealed bytes");
        assert_eq!(vault(1).open("kid-a", &sealed).expect("open"), seed);
        assert!(vault(2).open("kid-a", &sealed).is_err(), "another KEK");
        assert!(vault(1).open("kid-b", &sealed).is_err(), "another key's row");
        assert!(KeyVault::default().open("kid-a", &sealed).is_err(), "no KEK");
        let mut tampered = sealed.clone();
        tampered[20] ^= 1;
        assert!(vault(1).open("kid-a", &tampered).is_err(), "altered ciphertext");
    }

    #[test]
    fn without_a_kek_seeds_are_stored_as_they_are() {
        let seed = [9u8; 32];
        let stored = KeyVault::default().seal("kid", &seed).expect("seal");
        assert_eq!(stored, seed.to_vec());
        assert!(!KeyVault::is_sealed(&stored));
        assert_eq!(vault(1).open("kid", &stored).expect("plain opens under any vault"), seed);
    }

    #[test]
    fn kek_files_are_raw_or_hex_and_nothing_else() {
        assert!(KeyVault::from_bytes(&[3u8; 32]).is_ok());
        assert!(KeyVault::from_bytes(format!("{}\n", "ab".repeat(32)).as_bytes()).is_ok());
        assert!(KeyVault::from_bytes(b"short").is_err());
        assert!(KeyVault::from_bytes("zz".repeat(32).as_bytes()).is_err());
        assert!(KeyVault::from_bytes(&[0u8; 32]).is_err());
        assert_eq!(format!("{:?}", vault(5)), "KeyVault(sealed)");
    }
}
