//! What a core remembers of a client that passed a full sign-in, so its next heartbeats skip the
//! database read: the app's signing key and lease rule, the user, their HWID and the licences they
//! hold, with the revisions of the app and the user they were read at.
//!
//! Nothing here decides on its own. A heartbeat answered from memory is counted only if both
//! revisions still hold when its ping is written (see `storage::pings`), and any other outcome
//! (a refusal of any kind, a HWID to bind, a throttled caller) goes the full way. A change made
//! anywhere, through any core or straight in the database, moves a revision (database triggers),
//! so it applies to the next heartbeat on every core.
//!
//! Passwords are remembered as a keyed SHA-256 only, under the same rule as the credential cache:
//! for `ttl` after their last use, with the key random per process. Slots are found by a keyed
//! hash of the app secret and the username, and the secret is compared again in constant time.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use sha2::{Digest, Sha256};

use crate::{
    domain::{CoreError, HeldLicence, secrets::constant_time_eq, secrets::random_bytes},
    storage::pings::Revisions,
};

/// One remembered sign-in.
pub(super) struct Warm {
    secret: String,
    password: [u8; 32],
    pub revisions: Revisions,
    pub app_id: i64,
    pub kid: String,
    pub private_key: Vec<u8>,
    pub offline_grace_secs: i64,
    pub user_id: i64,
    pub username: String,
    pub hwid: Option<String>,
    pub held: Vec<HeldLicence>,
}

/// A sign-in to remember, as the full path read it.
pub(super) struct SignedIn<'a> {
    pub secret: &'a str,
    pub password: &'a str,
    pub revisions: Revisions,
    pub app_id: i64,
    pub kid: &'a str,
    pub private_key: &'a [u8],
    pub offline_grace_secs: i64,
    pub user_id: i64,
    pub username: &'a str,
    pub hwid: Option<&'a str>,
    pub held: &'a [HeldLicence],
}

struct Slot {
    used: Instant,
    warm: Arc<Warm>,
}

pub(super) struct WarmCache {
    key: [u8; 32],
    ttl: Duration,
    max_entries: usize,
    slots: Mutex<HashMap<[u8; 32], Slot>>,
    answered: AtomicU64,
    stale: AtomicU64,
}

/// How often remembered sign-ins answered, and how often they were found out of date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WarmStats {
    pub answered: u64,
    pub stale: u64,
}

impl WarmCache {
    /// A `ttl` of zero remembers nothing (as it does for the credential cache).
    pub fn new(ttl: Duration, max_entries: usize) -> Result<Self, CoreError> {
        Ok(WarmCache {
            key: random_bytes()?,
            ttl,
            max_entries,
            slots: Mutex::new(HashMap::new()),
            answered: AtomicU64::new(0),
            stale: AtomicU64::new(0),
        })
    }

    fn slot_of(&self, secret: &str, username: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update(b"slot");
        h.update((secret.len() as u64).to_le_bytes());
        h.update(secret.as_bytes());
        h.update(username.as_bytes());
        h.finalize().into()
    }

    fn password_print(&self, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update(b"password");
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// The remembered sign-in of this user of this app, if the same password signed in within
    /// `ttl` of now; a hit counts as a use.
    pub fn get(&self, secret: &str, username: &str, password: &str) -> Option<Arc<Warm>> {
        if self.ttl.is_zero() {
            return None;
        }
        let slot = self.slot_of(secret, username);
        let print = self.password_print(password);
        let mut slots = self.lock();
        let found = slots.get_mut(&slot)?;
        if found.used.elapsed() >= self.ttl {
            slots.remove(&slot);
            return None;
        }
        let warm = &found.warm;
        let same = constant_time_eq(&warm.password, &print)
            & constant_time_eq(warm.secret.as_bytes(), secret.as_bytes())
            & (warm.username == username);
        if !same {
            return None;
        }
        found.used = Instant::now();
        Some(found.warm.clone())
    }

    /// Remembers a sign-in that passed every check of the full path.
    pub fn remember(&self, s: SignedIn<'_>) {
        if self.ttl.is_zero() {
            return;
        }
        let warm = Warm {
            secret: s.secret.to_owned(),
            password: self.password_print(s.password),
            revisions: s.revisions,
            app_id: s.app_id,
            kid: s.kid.to_owned(),
            private_key: s.private_key.to_owned(),
            offline_grace_secs: s.offline_grace_secs,
            user_id: s.user_id,
            username: s.username.to_owned(),
            hwid: s.hwid.map(str::to_owned),
            held: s.held.to_vec(),
        };
        let slot = self.slot_of(s.secret, s.username);
        let mut slots = self.lock();
        if slots.len() >= self.max_entries && !slots.contains_key(&slot) {
            let ttl = self.ttl;
            slots.retain(|_, s| s.used.elapsed() < ttl);
            // Still full of live slots: start over rather than grow; a miss only costs a read.
            if slots.len() >= self.max_entries {
                slots.clear();
            }
        }
        slots.insert(slot, Slot { used: Instant::now(), warm: Arc::new(warm) });
    }

    /// Counts a heartbeat answered from memory.
    pub fn answered(&self) {
        self.answered.fetch_add(1, Ordering::Relaxed);
        crate::metrics::metrics().warm_heartbeats.inc();
    }

    /// Drops what is remembered of this user of this app: it no longer matched the database.
    pub fn stale(&self, secret: &str, username: &str) {
        self.stale.fetch_add(1, Ordering::Relaxed);
        crate::metrics::metrics().warm_heartbeats_stale.inc();
        let slot = self.slot_of(secret, username);
        self.lock().remove(&slot);
    }

    pub fn stats(&self) -> WarmStats {
        WarmStats {
            answered: self.answered.load(Ordering::Relaxed),
            stale: self.stale.load(Ordering::Relaxed),
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Slot>> {
        // The map stays consistent whatever a panicking holder did; keep serving.
        self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELD: [HeldLicence; 0] = [];

    fn signed_in<'a>(secret: &'a str, username: &'a str, password: &'a str) -> SignedIn<'a> {
        SignedIn {
            secret,
            password,
            revisions: Revisions { user: 3, app: 7 },
            app_id: 1,
            kid: "kid",
            private_key: b"seed",
            offline_grace_secs: 60,
            user_id: 42,
            username,
            hwid: Some("HW"),
            held: &HELD,
        }
    }

    #[test]
    fn only_the_same_secret_user_and_password_find_a_sign_in() {
        let cache = WarmCache::new(Duration::from_secs(60), 10).expect("cache");
        cache.remember(signed_in("secret-a", "carol", "pw-1"));
        let warm = cache.get("secret-a", "carol", "pw-1").expect("remembered");
        assert_eq!((warm.user_id, warm.revisions), (42, Revisions { user: 3, app: 7 }));
        assert!(cache.get("secret-a", "carol", "pw-2").is_none(), "another password");
        assert!(cache.get("secret-b", "carol", "pw-1").is_none(), "another app");
        assert!(cache.get("secret-a", "dave", "pw-1").is_none(), "another user");
        assert!(cache.get("secret-a", "carol", "pw-1").is_some(), "a wrong guess forgets nothing");
        cache.stale("secret-a", "carol");
        assert_eq!(cache.stats().stale, 1);
        assert!(cache.get("secret-a", "carol", "pw-1").is_none());
    }

    #[test]
    fn a_sign_in_is_forgotten_ttl_after_its_last_use_and_never_kept_without_a_ttl() {
        let cache = WarmCache::new(Duration::from_millis(150), 10).expect("cache");
        cache.remember(signed_in("s", "carol", "pw"));
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(60));
            assert!(cache.get("s", "carol", "pw").is_some(), "each use keeps it");
        }
        std::thread::sleep(Duration::from_millis(200));
        assert!(cache.get("s", "carol", "pw").is_none());

        let off = WarmCache::new(Duration::ZERO, 10).expect("cache");
        off.remember(signed_in("s", "carol", "pw"));
        assert_eq!(off.len(), 0);
        assert!(off.get("s", "carol", "pw").is_none());
    }

    #[test]
    fn a_full_cache_starts_over_instead_of_growing() {
        let cache = WarmCache::new(Duration::from_secs(60), 3).expect("cache");
        let names: Vec<String> = (0..7).map(|i| format!("user-{i}")).collect();
        for name in &names {
            cache.remember(signed_in("s", name, "pw"));
            assert!(cache.len() <= 3);
        }
        assert!(cache.get("s", "user-6", "pw").is_some(), "the latest is kept");
    }
}
