//! The offline lease, and the clock the client reads.

use std::{
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::{Claims, LicenceStatus};

/// Where the client reads the time: token expiry checks and the lease use it.
///
/// The default is [`SystemClock`]. Tests (or apps with a trusted time source) supply their own.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use licensing_client::Clock;
///
/// /// A clock running an hour ahead.
/// #[derive(Debug)]
/// struct Ahead;
///
/// impl Clock for Ahead {
///     fn now(&self) -> SystemTime {
///         SystemTime::now() + Duration::from_secs(3600)
///     }
/// }
///
/// let client = licensing_client::Client::builder("https://licensing.example.com/api")
///     .app_secret("3f9c…")
///     .public_key("11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
///     .clock(Ahead)
///     .build()?;
/// # let _ = client;
/// # Ok::<(), licensing_client::Error>(())
/// ```
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    ///
    /// ```
    /// use licensing_client::{Clock, SystemClock};
    ///
    /// assert!(SystemClock.now() > std::time::UNIX_EPOCH);
    /// ```
    fn now(&self) -> SystemTime;
}

/// The operating system's clock.
///
/// ```
/// use licensing_client::{Clock, SystemClock};
///
/// let now = SystemClock.now();
/// # let _ = now;
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Unix seconds of a time (negative before 1970).
pub(crate) fn unix_seconds(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map(|s| -s).unwrap_or(i64::MIN),
    }
}

fn system_time(unix: i64) -> SystemTime {
    match u64::try_from(unix) {
        Ok(secs) => UNIX_EPOCH + Duration::from_secs(secs),
        Err(_) => UNIX_EPOCH - Duration::from_secs(unix.unsigned_abs()),
    }
}

/// The last good lease: from the verified token of a successful `login` or `connect` by a user
/// whose licence is active. The app may keep running without the service until
/// [`expires_at`](Lease::expires_at) (the token's `exp`: the earlier of the licence's expiry and
/// the app's offline grace).
///
/// ```no_run
/// # async fn run(client: licensing_client::Client) {
/// if let Some(lease) = client.lease() {
///     println!("{} may run offline until {:?}", lease.username, lease.expires());
/// }
/// # }
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lease {
    /// The user (the token's `sub`).
    pub username: String,
    /// The HWID bound to the account (the token's `hwid`).
    pub hwid: Option<String>,
    /// When the token was signed, Unix seconds.
    pub issued_at: i64,
    /// Until when the app may run offline, Unix seconds (the token's `exp`).
    pub expires_at: i64,
    /// The highest access level among the user's active licences (`lvl`).
    pub level: Option<u32>,
    /// The latest expiry among the user's active licences, Unix seconds (`lexp`).
    pub licence_expires_at: Option<i64>,
    token: String,
}

impl Lease {
    /// The lease of a verified successful `login`/`connect` token, if it grants one.
    pub(crate) fn from_claims(claims: &Claims, token: &str) -> Option<Lease> {
        if !claims.is_success() || claims.lic != Some(LicenceStatus::Active) {
            return None;
        }
        Some(Lease {
            username: claims.sub.clone()?,
            hwid: claims.hwid.clone(),
            issued_at: claims.iat,
            expires_at: claims.exp,
            level: claims.lvl,
            licence_expires_at: claims.lexp,
            token: token.to_owned(),
        })
    }

    /// Whether the app may run offline at `now` (strictly before [`Lease::expires_at`]).
    ///
    /// ```no_run
    /// # async fn run(client: licensing_client::Client) {
    /// let lease = client.lease().expect("logged in");
    /// assert!(lease.valid_at(std::time::SystemTime::now()));
    /// # }
    /// ```
    pub fn valid_at(&self, now: SystemTime) -> bool {
        unix_seconds(now) < self.expires_at
    }

    /// [`Lease::expires_at`] as a `SystemTime`.
    ///
    /// ```no_run
    /// # async fn run(client: licensing_client::Client) {
    /// let lease = client.lease().expect("logged in");
    /// println!("offline until {:?}", lease.expires());
    /// # }
    /// ```
    pub fn expires(&self) -> SystemTime {
        system_time(self.expires_at)
    }

    /// The signed token the lease comes from. Store it to keep the lease across restarts of the
    /// app, and give it back with [`Client::restore_lease`](crate::Client::restore_lease), which
    /// verifies it again.
    ///
    /// ```no_run
    /// # async fn run(client: licensing_client::Client) -> std::io::Result<()> {
    /// if let Some(lease) = client.lease() {
    ///     tokio::fs::write("lease.jwt", lease.token()).await?;
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn token(&self) -> &str {
        &self.token
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("username", &self.username)
            .field("hwid", &self.hwid)
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .field("level", &self.level)
            .field("licence_expires_at", &self.licence_expires_at)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_seconds_round_trip() {
        for unix in [-86_400, -1, 0, 1, 1_900_000_000] {
            assert_eq!(unix_seconds(system_time(unix)), unix);
        }
    }
}
