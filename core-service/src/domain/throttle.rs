//! Failed-attempt throttling over a sliding window, in process memory (the contract allows N
//! replicas to give an attacker N times the limit).

use std::{
    borrow::Cow,
    collections::{HashMap, VecDeque},
    net::{IpAddr, Ipv6Addr},
    sync::Mutex,
    time::{Duration, Instant},
};

use super::CoreError;

#[derive(Debug, Clone)]
pub struct ThrottleConfig {
    /// Failures allowed per (app or developer, username, address) in a window.
    pub per_username: u32,
    /// Failures allowed per address in a window.
    pub per_address: u32,
    pub window: Duration,
    /// Most keys tracked at once; the oldest are dropped past it.
    pub max_keys: usize,
    /// IPv6 clients are counted by network of this many leading bits: one home line holds a
    /// whole /64, so counting single IPv6 addresses would give it 2^64 fresh starts.
    pub ipv6_prefix: u8,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            per_username: 10,
            per_address: 100,
            window: Duration::from_secs(15 * 60),
            max_keys: 100_000,
            ipv6_prefix: 64,
        }
    }
}

/// What a counter is kept for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ThrottleKey {
    Address(String),
    User { app_id: i64, username: String, address: String },
    Developer { username: String, address: String },
}

pub struct Throttle {
    config: ThrottleConfig,
    failures: Mutex<HashMap<ThrottleKey, VecDeque<Instant>>>,
}

impl Throttle {
    pub fn new(config: ThrottleConfig) -> Self {
        Throttle { config, failures: Mutex::new(HashMap::new()) }
    }

    fn limit(&self, key: &ThrottleKey) -> usize {
        let limit = match key {
            ThrottleKey::Address(_) => self.config.per_address,
            _ => self.config.per_username,
        };
        // The flags refuse 0; a limit of 0 would also make no sense here.
        limit.max(1) as usize
    }

    /// The key as it is counted: its address reduced to the network a client controls.
    fn counted<'k>(&self, key: &'k ThrottleKey) -> Cow<'k, ThrottleKey> {
        let address = match key {
            ThrottleKey::Address(address)
            | ThrottleKey::User { address, .. }
            | ThrottleKey::Developer { address, .. } => address,
        };
        let Cow::Owned(network) = network_of(address, self.config.ipv6_prefix) else {
            return Cow::Borrowed(key);
        };
        Cow::Owned(match key.clone() {
            ThrottleKey::Address(_) => ThrottleKey::Address(network),
            ThrottleKey::User { app_id, username, .. } => {
                ThrottleKey::User { app_id, username, address: network }
            }
            ThrottleKey::Developer { username, .. } => ThrottleKey::Developer { username, address: network },
        })
    }

    /// Refuses with `rate_limited` when `key` has used up its failures in the window.
    pub fn check(&self, key: &ThrottleKey) -> Result<(), CoreError> {
        self.check_at(key, Instant::now())
    }

    /// Whether `key` is free to go on, without counting a refusal: for a path that, when it is
    /// not, hands the call to the one that refuses it.
    pub fn allows(&self, key: &ThrottleKey) -> bool {
        self.wait_at(key, Instant::now()).is_none()
    }

    fn check_at(&self, key: &ThrottleKey, now: Instant) -> Result<(), CoreError> {
        let Some(wait) = self.wait_at(key, now) else { return Ok(()) };
        let retry_after_secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        crate::metrics::metrics().throttle_refusals.inc();
        Err(CoreError::RateLimited { retry_after_secs: retry_after_secs.max(1) })
    }

    /// How long `key` must wait, if it is throttled.
    fn wait_at(&self, key: &ThrottleKey, now: Instant) -> Option<Duration> {
        let key = self.counted(key);
        let key = key.as_ref();
        let limit = self.limit(key);
        let mut map = self.lock();
        let times = map.get_mut(key)?;
        prune(times, now, self.config.window);
        if times.len() < limit {
            return None;
        }
        // The window frees a slot when the oldest failure that keeps it full ages out.
        let oldest = times[times.len() - limit];
        Some((oldest + self.config.window).saturating_duration_since(now))
    }

    /// Counts one failure against each key.
    pub fn record_failure(&self, keys: &[ThrottleKey]) {
        self.record_at(keys, Instant::now());
    }

    fn record_at(&self, keys: &[ThrottleKey], now: Instant) {
        let mut map = self.lock();
        for key in keys {
            let key = self.counted(key);
            let key = key.as_ref();
            if !map.contains_key(key) && map.len() >= self.config.max_keys {
                self.make_room(&mut map, now);
            }
            let limit = self.limit(key);
            let times = map.entry(key.clone()).or_default();
            prune(times, now, self.config.window);
            times.push_back(now);
            // Older failures than `limit` can never matter again.
            while times.len() > limit {
                times.pop_front();
            }
        }
    }

    fn make_room(&self, map: &mut HashMap<ThrottleKey, VecDeque<Instant>>, now: Instant) {
        let window = self.config.window;
        map.retain(|_, times| {
            prune(times, now, window);
            !times.is_empty()
        });
        if map.len() < self.config.max_keys {
            return;
        }
        // Still full of live keys: drop the least recently failed tenth.
        let mut last: Vec<(Instant, ThrottleKey)> =
            map.iter().filter_map(|(k, t)| t.back().map(|at| (*at, k.clone()))).collect();
        last.sort_by_key(|(at, _)| *at);
        for (_, key) in last.into_iter().take((self.config.max_keys / 10).max(1)) {
            map.remove(&key);
        }
    }

    pub fn tracked_keys(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ThrottleKey, VecDeque<Instant>>> {
        // A panic while holding the lock leaves plain counters behind: still usable.
        self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The part of a client address the throttle counts: an IPv4 address whole (also when written as
/// an IPv4-mapped IPv6 address), an IPv6 address by its first `ipv6_prefix` bits, as `net/len`.
/// Anything else (an empty, unknown address) is counted as it is.
pub fn network_of(address: &str, ipv6_prefix: u8) -> Cow<'_, str> {
    match address.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => Cow::Owned(v4.to_string()),
            None => {
                let prefix = u32::from(ipv6_prefix.clamp(1, 128));
                let mask = u128::MAX << (128 - prefix);
                Cow::Owned(format!("{}/{prefix}", Ipv6Addr::from(u128::from(v6) & mask)))
            }
        },
        _ => Cow::Borrowed(address),
    }
}

fn prune(times: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while times.front().is_some_and(|t| now.saturating_duration_since(*t) >= window) {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use licensing::ErrorCode;

    use super::*;

    fn user(name: &str, addr: &str) -> ThrottleKey {
        ThrottleKey::User { app_id: 1, username: name.into(), address: addr.into() }
    }

    #[test]
    fn refuses_after_the_limit_and_frees_as_the_window_slides() {
        let t = Throttle::new(ThrottleConfig::default());
        let start = Instant::now();
        let key = user("bob", "1.2.3.4");
        for i in 0..10 {
            assert!(t.check_at(&key, start).is_ok(), "attempt {i}");
            t.record_at(std::slice::from_ref(&key), start + Duration::from_secs(i));
        }
        let err = t.check_at(&key, start + Duration::from_secs(10)).expect_err("throttled");
        assert_eq!(err.code(), ErrorCode::RateLimited);
        match err {
            CoreError::RateLimited { retry_after_secs } => assert_eq!(retry_after_secs, 890),
            other => panic!("unexpected {other:?}"),
        }
        // Other addresses and other users are unaffected.
        assert!(t.check_at(&user("bob", "5.6.7.8"), start).is_ok());
        assert!(t.check_at(&user("alice", "1.2.3.4"), start).is_ok());
        // Once the first failure ages out, one slot frees.
        assert!(t.check_at(&key, start + Duration::from_secs(900)).is_ok());
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_usernames() {
        let config = ThrottleConfig { max_keys: 1_000, ..ThrottleConfig::default() };
        let t = Throttle::new(config);
        let now = Instant::now();
        for i in 0..10_000 {
            t.record_at(&[user(&format!("u{i}"), "9.9.9.9")], now);
        }
        assert!(t.tracked_keys() <= 1_000);
    }

    #[test]
    fn expired_entries_are_dropped_when_room_is_needed() {
        let config =
            ThrottleConfig { max_keys: 10, window: Duration::from_secs(1), ..ThrottleConfig::default() };
        let t = Throttle::new(config);
        let now = Instant::now();
        for i in 0..10 {
            t.record_at(&[user(&format!("u{i}"), "a")], now);
        }
        t.record_at(&[user("late", "a")], now + Duration::from_secs(2));
        assert_eq!(t.tracked_keys(), 1);
    }

    #[test]
    fn ipv6_counts_by_network_and_mapped_ipv4_as_ipv4() {
        assert_eq!(network_of("203.0.113.7", 64), "203.0.113.7");
        assert_eq!(network_of("::ffff:203.0.113.7", 64), "203.0.113.7");
        assert_eq!(network_of("2001:db8:1:2:aaaa::1", 64), "2001:db8:1:2::/64");
        assert_eq!(network_of("2001:db8:1:2:ffff:ffff:ffff:ffff", 64), "2001:db8:1:2::/64");
        assert_eq!(network_of("2001:db8:1:2::1", 48), "2001:db8:1::/48");
        assert_eq!(network_of("2001:db8::1", 128), "2001:db8::1/128");
        assert_eq!(network_of("", 64), "");
    }

    #[test]
    fn eleven_guesses_from_one_slash_64_are_throttled() {
        let throttle = Throttle::new(ThrottleConfig::default());
        for i in 1..=10u32 {
            let key = user("victim", &format!("2001:db8:7:7::{i:x}"));
            assert!(throttle.check(&key).is_ok(), "guess {i}");
            throttle.record_failure(&[key]);
        }
        let eleventh = user("victim", "2001:db8:7:7:ffff::11");
        assert!(throttle.check(&eleventh).is_err(), "the /64 used up its ten failures");
        // Another /64 is another client.
        assert!(throttle.check(&user("victim", "2001:db8:7:8::1")).is_ok());
    }
}
