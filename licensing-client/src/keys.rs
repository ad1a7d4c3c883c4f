//! The app's pinned public keys, each known by its RFC 7638 JWK thumbprint (`kid`).

use std::fmt;

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};

use crate::Error;

/// The RFC 7638 JWK thumbprint of an Ed25519 public key: base64url (no padding) of the SHA-256
/// of `{"crv":"Ed25519","kty":"OKP","x":"<base64url of the 32 key bytes>"}`, exactly those
/// bytes. This is the `kid` the service puts in the header of the tokens it signs with that key.
///
/// ```
/// use licensing_client::jwk_thumbprint;
///
/// // RFC 8037, appendix A.3: the thumbprint of its example key.
/// let x = [
///     0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07,
///     0x3a, 0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07,
///     0x51, 0x1a,
/// ];
/// assert_eq!(jwk_thumbprint(&x), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
/// ```
pub fn jwk_thumbprint(public_key: &[u8; 32]) -> String {
    let jwk = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, URL_SAFE_NO_PAD.encode(public_key));
    URL_SAFE_NO_PAD.encode(Sha256::digest(jwk.as_bytes()))
}

/// One pinned public key and its `kid`.
#[derive(Clone)]
pub(crate) struct PinnedKey {
    pub(crate) kid: String,
    pub(crate) key: VerifyingKey,
}

/// The public keys a client accepts tokens from, built into the app.
///
/// Give it the app's keys as the service shows them (`public` of `get_app_data`, or `public` of
/// each entry of its `keys`: standard base64 of the 32 raw bytes). It computes each key's `kid`
/// itself and, for each token, verifies the signature with the key the token's `kid` names. A
/// token naming another key (or none) is refused.
///
/// During a key rotation, ship clients that pin both the current and the next key: they keep
/// working when the service promotes the next key.
///
/// ```
/// use licensing_client::PinnedKeys;
///
/// let keys = PinnedKeys::from_base64(["11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="])?;
/// assert_eq!(keys.kids().collect::<Vec<_>>(), ["kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"]);
/// # Ok::<(), licensing_client::Error>(())
/// ```
#[derive(Clone)]
pub struct PinnedKeys {
    keys: Vec<PinnedKey>,
}

impl PinnedKeys {
    /// Pins the given keys (standard base64, padded, of 32 raw bytes each). At least one is
    /// needed; a malformed key is a configuration error.
    ///
    /// ```
    /// use licensing_client::PinnedKeys;
    ///
    /// assert!(PinnedKeys::from_base64(["not a key"]).is_err());
    /// assert!(PinnedKeys::from_base64(Vec::<String>::new()).is_err());
    /// ```
    pub fn from_base64<I, S>(keys: I) -> Result<PinnedKeys, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut pinned = Vec::new();
        for (i, text) in keys.into_iter().enumerate() {
            let bytes = STANDARD
                .decode(text.as_ref().trim())
                .map_err(|e| Error::Config(format!("pinned key #{i} is not standard base64: {e}")))?;
            let bytes: [u8; 32] = bytes.try_into().map_err(|bytes: Vec<u8>| {
                Error::Config(format!("pinned key #{i} has {} bytes, not 32", bytes.len()))
            })?;
            pinned.push(Self::key(&bytes).map_err(|e| Error::Config(format!("pinned key #{i}: {e}")))?);
        }
        Self::from_keys(pinned)
    }

    /// Pins the given raw 32-byte keys.
    ///
    /// ```
    /// use licensing_client::PinnedKeys;
    ///
    /// let raw = [
    ///     0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07,
    ///     0x3a, 0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07,
    ///     0x51, 0x1a,
    /// ];
    /// let keys = PinnedKeys::from_bytes([raw])?;
    /// assert_eq!(keys.len(), 1);
    /// # Ok::<(), licensing_client::Error>(())
    /// ```
    pub fn from_bytes<I>(keys: I) -> Result<PinnedKeys, Error>
    where
        I: IntoIterator<Item = [u8; 32]>,
    {
        let pinned = keys
            .into_iter()
            .enumerate()
            .map(|(i, bytes)| Self::key(&bytes).map_err(|e| Error::Config(format!("pinned key #{i}: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_keys(pinned)
    }

    fn key(bytes: &[u8; 32]) -> Result<PinnedKey, String> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| "not an Ed25519 public key".to_owned())?;
        if key.is_weak() {
            return Err("a weak (small-order) Ed25519 key".into());
        }
        Ok(PinnedKey { kid: jwk_thumbprint(bytes), key })
    }

    fn from_keys(mut keys: Vec<PinnedKey>) -> Result<PinnedKeys, Error> {
        if keys.is_empty() {
            return Err(Error::Config("at least one public key must be pinned".into()));
        }
        let mut seen: Vec<String> = Vec::with_capacity(keys.len());
        keys.retain(|k| {
            let new = !seen.contains(&k.kid);
            seen.push(k.kid.clone());
            new
        });
        Ok(PinnedKeys { keys })
    }

    /// The `kid`s of the pinned keys, in the order given.
    ///
    /// ```
    /// # let keys = licensing_client::PinnedKeys::from_base64(["11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="])?;
    /// for kid in keys.kids() {
    ///     println!("pinned {kid}");
    /// }
    /// # Ok::<(), licensing_client::Error>(())
    /// ```
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.kid.as_str())
    }

    /// How many keys are pinned.
    ///
    /// ```
    /// # let keys = licensing_client::PinnedKeys::from_base64(["11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="])?;
    /// assert_eq!(keys.len(), 1);
    /// # Ok::<(), licensing_client::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Never true: at least one key is always pinned.
    ///
    /// ```
    /// # let keys = licensing_client::PinnedKeys::from_base64(["11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="])?;
    /// assert!(!keys.is_empty());
    /// # Ok::<(), licensing_client::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The raw bytes of every pinned key.
    pub(crate) fn raw_keys(&self) -> impl Iterator<Item = [u8; 32]> + '_ {
        self.keys.iter().map(|k| k.key.to_bytes())
    }

    /// The pinned key named `kid`.
    pub(crate) fn get(&self, kid: &str) -> Option<&VerifyingKey> {
        self.keys.iter().find(|k| k.kid == kid).map(|k| &k.key)
    }
}

impl fmt::Debug for PinnedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinnedKeys").field("kids", &self.kids().collect::<Vec<_>>()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_of_the_rfc_8037_example_key() {
        let x = URL_SAFE_NO_PAD.decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo").expect("b64");
        let x: [u8; 32] = x.try_into().expect("32 bytes");
        assert_eq!(jwk_thumbprint(&x), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }

    #[test]
    fn duplicate_keys_are_pinned_once() {
        let key = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
        assert_eq!(PinnedKeys::from_base64([key, key]).expect("keys").len(), 1);
    }

    #[test]
    fn malformed_keys_are_configuration_errors() {
        for bad in ["", "AAAA", "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHUR", "%%%"] {
            assert!(matches!(PinnedKeys::from_base64([bad]), Err(Error::Config(_))), "{bad:?}");
        }
        // The identity point: a weak key that would accept forged signatures.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(matches!(PinnedKeys::from_bytes([identity]), Err(Error::Config(_))));
    }
}
