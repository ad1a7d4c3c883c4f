//! Argon2id hashing on a bounded pool of dedicated threads, so a login flood queues instead of
//! stalling the async workers that serve health checks and cheap calls.
//!
//! Each worker keeps its Argon2 memory (19 MiB at the default parameters) from one computation to
//! the next while work is queued. Allocating it afresh for every verification cost more than a
//! third of a cold login under load: the kernel had to map, fault in, zero and unmap every page
//! each time. A worker that finds the queue empty releases it, so an idle core stays small.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Condvar, Mutex, MutexGuard,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, PasswordHasher as _, Version};
use tokio::sync::oneshot;

use super::{CoreError, Password, credential_cache::CredentialCache};

#[derive(Clone)]
pub struct PasswordHasher {
    inner: Arc<Inner>,
}

type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// The jobs waiting for a worker, behind a condition variable, so a worker can look at the queue
/// and release its memory before it sleeps.
#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
    ready: Condvar,
}

#[derive(Default)]
struct QueueState {
    jobs: VecDeque<Job>,
    closed: bool,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // A job never runs under the lock, so a poisoned lock still guards a consistent queue.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

struct Inner {
    queue: Arc<Queue>,
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
        let queue = Arc::new(Queue::default());
        for n in 0..workers.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || work(&queue))
                .map_err(|e| CoreError::internal(format!("cannot start an Argon2 worker: {e}")))?;
        }
        Ok(PasswordHasher {
            inner: Arc::new(Inner {
                queue,
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
        self.run(move |_| hash_now(password.expose())).await?
    }

    /// Verifies `password` against `hash`, or against a dummy hash when there is none.
    pub async fn verify(&self, password: &Password, hash: Option<&str>) -> Result<bool, CoreError> {
        if let Some(h) = hash {
            let hit = self.inner.recent.verified_recently(h, password.expose());
            let m = crate::metrics::metrics();
            if hit { &m.credential_cache_hits } else { &m.credential_cache_misses }.inc();
            if hit {
                return Ok(true);
            }
        }
        let pw = password.clone();
        let (stored, real) = match hash {
            Some(h) => (h.to_owned(), true),
            None => (self.inner.dummy_hash.clone(), false),
        };
        let checked = stored.clone();
        let ok = self.run(move |memory| verify_now(pw.expose(), &checked, memory)).await? && real;
        if ok {
            self.inner.recent.remember(&stored, password.expose());
        }
        Ok(ok)
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, CoreError> {
        let queued = self.inner.queued.fetch_add(1, Ordering::SeqCst);
        let guard = QueueGuard(self.inner.clone());
        if queued >= self.inner.max_queued {
            crate::metrics::metrics().argon2_rejections.inc();
            return Err(CoreError::Unavailable("password hashing queue is full".into()));
        }
        self.inner.computed.fetch_add(1, Ordering::SeqCst);
        crate::metrics::metrics().argon2_computations.inc();
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |memory| {
            let _ = reply.send(work(memory));
            // Counted until its computation ends, even if the caller has gone: the bound is on
            // Argon2 work in the process, waiting or running.
            drop(guard);
        });
        self.inner.queue.lock().jobs.push_back(job);
        self.inner.queue.ready.notify_one();
        answer.await.map_err(|_| CoreError::internal("password hasher stopped"))
    }

    /// How many Argon2 computations were started so far.
    pub fn computed(&self) -> u64 {
        self.inner.computed.load(Ordering::SeqCst)
    }

    /// Argon2 computations waiting for a worker or running now.
    pub fn queued(&self) -> usize {
        self.inner.queued.load(Ordering::SeqCst)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.queue.lock().closed = true;
        self.queue.ready.notify_all();
    }
}

enum Next {
    Job(Job),
    Idle,
    Closed,
}

/// One worker: takes jobs until the hasher is dropped, keeping its memory while busy.
fn work(queue: &Queue) {
    let mut memory: Vec<Block> = Vec::new();
    loop {
        let next = {
            let mut state = queue.lock();
            loop {
                if let Some(job) = state.jobs.pop_front() {
                    break Next::Job(job);
                }
                if state.closed {
                    break Next::Closed;
                }
                if !memory.is_empty() {
                    break Next::Idle;
                }
                state = queue.ready.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
            }
        };
        match next {
            Next::Job(job) => job(&mut memory),
            // Nothing queued: give the memory back, outside the lock (unmapping 19 MiB takes a while).
            Next::Idle => memory = Vec::new(),
            Next::Closed => return,
        }
    }
}

struct QueueGuard(Arc<Inner>);

impl Drop for QueueGuard {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::SeqCst);
    }
}

fn hash_now(password: &str) -> Result<String, CoreError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| CoreError::internal(format!("argon2 hashing failed: {e}")))
}

/// Verifies in the worker's own memory. Any stored hash that is not a well-formed Argon2 PHC
/// string never verifies.
fn verify_now(password: &str, stored: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else { return false };
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else { return false };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm.as_str()) else { return false };
    let version = match parsed.version {
        Some(v) => match Version::try_from(v) {
            Ok(v) => v,
            Err(_) => return false,
        },
        None => Version::default(),
    };
    let Ok(params) = Params::try_from(&parsed) else { return false };
    let blocks = params.block_count();
    if memory.len() < blocks {
        *memory = vec![Block::default(); blocks];
    }
    let mut out = vec![0u8; expected.len()];
    let argon2 = Argon2::new(algorithm, version, params);
    if argon2
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..blocks])
        .is_err()
    {
        return false;
    }
    super::secrets::constant_time_eq(&out, expected.as_bytes())
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
