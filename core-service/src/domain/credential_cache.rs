//! A short-lived memory of passwords that verified, so a heartbeat every few seconds does not pay
//! a full Argon2 verification each time.
//!
//! Entries are keyed by a keyed SHA-256 of the stored hash and the presented password: the key is
//! random per process and never leaves it, a wrong password is never remembered, and a changed
//! hash (a new account under the same name) never matches an old entry. Each core replica keeps
//! its own cache; no rule depends on it, only the cost of a call.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use sha2::{Digest, Sha256};

use super::{CoreError, secrets::random_bytes};

pub struct CredentialCache {
    key: [u8; 32],
    ttl: Duration,
    max_entries: usize,
    entries: Mutex<HashMap<[u8; 32], Instant>>,
}

impl CredentialCache {
    /// A `ttl` of zero disables the cache.
    pub fn new(ttl: Duration, max_entries: usize) -> Result<Self, CoreError> {
        Ok(CredentialCache { key: random_bytes()?, ttl, max_entries, entries: Mutex::new(HashMap::new()) })
    }

    fn fingerprint(&self, stored_hash: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update((stored_hash.len() as u64).to_le_bytes());
        h.update(stored_hash.as_bytes());
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// Whether this password verified against this stored hash within the last `ttl`.
    pub fn verified_recently(&self, stored_hash: &str, password: &str) -> bool {
        if self.ttl.is_zero() {
            return false;
        }
        let print = self.fingerprint(stored_hash, password);
        let entries = self.lock();
        entries.get(&print).is_some_and(|at| at.elapsed() < self.ttl)
    }

    /// Remembers a successful verification.
    pub fn remember(&self, stored_hash: &str, password: &str) {
        if self.ttl.is_zero() {
            return;
        }
        let print = self.fingerprint(stored_hash, password);
        let mut entries = self.lock();
        if entries.len() >= self.max_entries {
            let ttl = self.ttl;
            entries.retain(|_, at| at.elapsed() < ttl);
            // Still full of live entries: start over rather than grow; misses only cost time.
            if entries.len() >= self.max_entries {
                entries.clear();
            }
        }
        entries.insert(print, Instant::now());
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Instant>> {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_only_the_exact_pair_and_forgets_after_the_ttl() {
        let cache = CredentialCache::new(Duration::from_millis(50), 10).expect("cache");
        assert!(!cache.verified_recently("$hash1", "pw"));
        cache.remember("$hash1", "pw");
        assert!(cache.verified_recently("$hash1", "pw"));
        assert!(!cache.verified_recently("$hash1", "pw2"), "another password");
        assert!(!cache.verified_recently("$hash2", "pw"), "another stored hash");
        std::thread::sleep(Duration::from_millis(60));
        assert!(!cache.verified_recently("$hash1", "pw"), "expired");
    }

    #[test]
    fn stays_bounded_and_can_be_disabled() {
        let cache = CredentialCache::new(Duration::from_secs(60), 100).expect("cache");
        for i in 0..1000 {
            cache.remember(&format!("$h{i}"), "pw");
        }
        assert!(cache.len() <= 100);
        let off = CredentialCache::new(Duration::ZERO, 100).expect("cache");
        off.remember("$h", "pw");
        assert!(!off.verified_recently("$h", "pw"));
        assert!(off.is_empty());
    }
}
