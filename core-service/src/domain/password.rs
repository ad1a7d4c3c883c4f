//! Argon2id hashing on a bounded pool of blocking threads, so a login flood queues instead of
//! stalling the async workers that serve health checks and cheap calls.

use std::sync::{
    Arc,
    atomic::{AtomicU64, AtomicUsize, Ordering},
};

use argon2::{Argon2, PasswordHash, PasswordHasher as _, PasswordVerifier};
use tokio::sync::Semaphore;

use super::{CoreError, Password, credential_cache::CredentialCache};

#[derive(Clone)]
pub struct PasswordHasher {
    inner: Arc<Inner>,
}

struct Inner {
    permits: Semaphore,
    /// Argon2 computations started (hashes and verifications), for tests and metrics.
    computed: AtomicU64,
    queued: AtomicUsize,
    max_queued: usize,
    /// Verified against when the user does not exist, so an unknown username costs the same
    /// Argon2 work as a wrong password.
    dummy_hash: String,
    recent: CredentialCache,
}

impl PasswordHasher {
    /// `workers` hashes run at once; up to `max_queued` more wait; past that, calls are refused
    /// with `unavailable`.
    pub fn new(workers: usize, max_queued: usize) -> Result<Self, CoreError> {
        Self::with_cache(workers, max_queued, std::time::Duration::ZERO)
    }

    /// Like `new`, remembering successful verifications for `cache_ttl` (zero: never).
    pub fn with_cache(
        workers: usize,
        max_queued: usize,
        cache_ttl: std::time::Duration,
    ) -> Result<Self, CoreError> {
        let dummy_hash = hash_now("not a real password")?;
        Ok(PasswordHasher {
            inner: Arc::new(Inner {
                permits: Semaphore::new(workers.max(1)),
                computed: AtomicU64::new(0),
                queued: AtomicUsize::new(0),
                max_queued,
                dummy_hash,
                recent: CredentialCache::new(cache_ttl, 100_000)?,
            }),
        })
    }

    pub async fn hash(&self, password: &Password) -> Result<String, CoreError> {
        let password = password.clone();
        self.run(move || hash_now(password.expose())).await?
    }

    /// Verifies `password` against `hash`, or against a dummy hash when there is none.
    pub async fn verify(&self, password: &Password, hash: Option<&str>) -> Result<bool, CoreError> {
        if let Some(h) = hash
            && self.inner.recent.verified_recently(h, password.expose())
        {
            return Ok(true);
        }
        let pw = password.clone();
        let (stored, real) = match hash {
            Some(h) => (h.to_owned(), true),
            None => (self.inner.dummy_hash.clone(), false),
        };
        let checked = stored.clone();
        let ok = self.run(move || verify_now(pw.expose(), &checked)).await? && real;
        if ok {
            self.inner.recent.remember(&stored, password.expose());
        }
        Ok(ok)
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, CoreError> {
        let queued = self.inner.queued.fetch_add(1, Ordering::SeqCst);
        let _guard = QueueGuard(&self.inner.queued);
        if queued >= self.inner.max_queued {
            return Err(CoreError::Unavailable("password hashing queue is full".into()));
        }
        let _permit =
            self.inner.permits.acquire().await.map_err(|_| CoreError::internal("password hasher closed"))?;
        self.inner.computed.fetch_add(1, Ordering::SeqCst);
        tokio::task::spawn_blocking(work).await.map_err(CoreError::internal)
    }

    /// How many Argon2 computations were started so far.
    pub fn computed(&self) -> u64 {
        self.inner.computed.load(Ordering::SeqCst)
    }
}

struct QueueGuard<'a>(&'a AtomicUsize);

impl Drop for QueueGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn hash_now(password: &str) -> Result<String, CoreError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| CoreError::internal(format!("argon2 hashing failed: {e}")))
}

fn verify_now(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_recent_success_skips_argon2_but_a_wrong_password_never_does() {
        let hasher = PasswordHasher::with_cache(1, 16, std::time::Duration::from_secs(60)).expect("hasher");
        let pw = Password::parse("password", "right").expect("valid");
        let hash = hasher.hash(&pw).await.expect("hash");
        let start = hasher.computed();
        assert!(hasher.verify(&pw, Some(&hash)).await.expect("verify"));
        assert!(hasher.verify(&pw, Some(&hash)).await.expect("verify"));
        assert_eq!(hasher.computed() - start, 1, "the second check came from the cache");
        let wrong = Password::parse("password", "wrong").expect("valid");
        for _ in 0..2 {
            assert!(!hasher.verify(&wrong, Some(&hash)).await.expect("verify"));
        }
        assert_eq!(hasher.computed() - start, 3, "wrong passwords always cost the full work");
    }

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let hasher = PasswordHasher::new(2, 16).expect("hasher");
        let pw = Password::parse("password", "correct horse").expect("valid");
        let hash = hasher.hash(&pw).await.expect("hash");
        assert!(hash.starts_with("$argon2id$"));
        assert!(!hash.contains("correct horse"));
        assert!(hasher.verify(&pw, Some(&hash)).await.expect("verify"));
        let wrong = Password::parse("password", "wrong").expect("valid");
        assert!(!hasher.verify(&wrong, Some(&hash)).await.expect("verify"));
        // No stored hash: never verifies, even for the dummy's own password.
        let dummy = Password::parse("password", "not a real password").expect("valid");
        assert!(!hasher.verify(&dummy, None).await.expect("verify"));
    }
}
