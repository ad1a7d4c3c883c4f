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

    /// Whether this password verified against this stored hash and was last used within `ttl`.
    /// A hit counts as a use: with a fixed lifetime, every client that logged in around the same
    /// time (all of them, after a restart) would need Argon2 again in the same moment, and every
    /// steady heartbeat would pay one Argon2 per `ttl`. Nothing a rule needs is kept here: a
    /// changed password has a new stored hash and never matches.
    pub fn verified_recently(&self, stored_hash: &str, password: &str) -> bool {
        if self.ttl.is_zero() {
            return false;
        }
        let print = self.fingerprint(stored_hash, password);
        let mut entries = self.lock();
        match entries.get_mut(&print) {
            Some(at) if at.elapsed() < self.ttl => {
                *at = Instant::now();
                true
            }
            _ => false,
        }
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
    fn each_use_extends_the_entry() {
        let cache = CredentialCache::new(Duration::from_millis(200), 10).expect("cache");
        cache.remember("$hash", "pw");
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(100));
            assert!(cache.verified_recently("$hash", "pw"), "used within the TTL: still remembered");
        }
        // 400 ms after it was remembered, longer than the TTL: kept alive by use alone.
        std::thread::sleep(Duration::from_millis(250));
        assert!(!cache.verified_recently("$hash", "pw"), "unused for longer than the TTL");
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
