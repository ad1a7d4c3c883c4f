//! The client: requests, answers, verification, the lease.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use rand::{TryRng, rngs::SysRng};
use reqwest::{StatusCode, header::HeaderMap};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::{
    Action, Claims, Clock, Error, ErrorCode, Lease, LicenceStatus, PinnedKeys, Refusal, SystemClock,
    VerifyError,
    lease::unix_seconds,
    token::{Expected, check_status, verify_signature},
};

/// The header that carries the response token.
const TOKEN_HEADER: &str = "x-response-token";
/// Largest JSON answer read; the contract's are well under a kilobyte.
const MAX_JSON_ANSWER: usize = 1024 * 1024;
/// Default allowed difference between the client's clock and the service's.
const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(60);

/// A secret that never shows in `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// An end user's credentials and, optionally, the machine's HWID.
///
/// The password never shows in `Debug` output.
///
/// ```
/// use licensing_client::Credentials;
///
/// let me = Credentials::new("bob", "hunter22").with_hwid("HWID-1");
/// assert_eq!(me.username(), "bob");
/// assert_eq!(me.hwid(), Some("HWID-1"));
/// assert!(!format!("{me:?}").contains("hunter22"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    username: String,
    password: Secret,
    hwid: Option<String>,
}

impl Credentials {
    /// A username and password, without a HWID.
    ///
    /// ```
    /// let me = licensing_client::Credentials::new("bob", "hunter22");
    /// assert_eq!(me.hwid(), None);
    /// ```
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials { username: username.into(), password: Secret(password.into()), hwid: None }
    }

    /// The same credentials presenting `hwid` (an empty one means none). The first HWID a user
    /// presents binds the account to it.
    ///
    /// ```
    /// let me = licensing_client::Credentials::new("bob", "hunter22").with_hwid("HWID-1");
    /// assert_eq!(me.hwid(), Some("HWID-1"));
    /// ```
    pub fn with_hwid(mut self, hwid: impl Into<String>) -> Credentials {
        let hwid = hwid.into();
        self.hwid = (!hwid.is_empty()).then_some(hwid);
        self
    }

    /// The username.
    ///
    /// ```
    /// assert_eq!(licensing_client::Credentials::new("bob", "pw").username(), "bob");
    /// ```
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The HWID presented, if any.
    ///
    /// ```
    /// assert_eq!(licensing_client::Credentials::new("bob", "pw").hwid(), None);
    /// ```
    pub fn hwid(&self) -> Option<&str> {
        self.hwid.as_deref()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &self.password)
            .field("hwid", &self.hwid)
            .finish()
    }
}

/// What `register` sends: the new user's credentials, an e-mail address and, optionally, a
/// licence key to redeem at once.
///
/// ```
/// use licensing_client::{Credentials, Registration};
///
/// let new = Registration::new(Credentials::new("bob", "hunter22"), "bob@example.com")
///     .with_licence("K7QXM-4HZP2-WN8CT-R3DJA-9FLUE");
/// assert!(!format!("{new:?}").contains("K7QXM"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Registration {
    credentials: Credentials,
    email: String,
    licence: Option<Secret>,
}

impl Registration {
    /// A registration without a licence key.
    ///
    /// ```
    /// use licensing_client::{Credentials, Registration};
    ///
    /// let new = Registration::new(Credentials::new("bob", "hunter22").with_hwid("HWID-1"), "bob@example.com");
    /// # let _ = new;
    /// ```
    pub fn new(credentials: Credentials, email: impl Into<String>) -> Registration {
        Registration { credentials, email: email.into(), licence: None }
    }

    /// Also redeem `licence` (if it cannot be redeemed, no user is created).
    ///
    /// ```
    /// use licensing_client::{Credentials, Registration};
    ///
    /// let new = Registration::new(Credentials::new("bob", "pw"), "bob@example.com").with_licence("K7QXM-…");
    /// # let _ = new;
    /// ```
    pub fn with_licence(mut self, licence: impl Into<String>) -> Registration {
        self.licence = Some(Secret(licence.into()));
        self
    }

    /// The credentials of the new user.
    ///
    /// ```
    /// use licensing_client::{Credentials, Registration};
    ///
    /// let new = Registration::new(Credentials::new("bob", "pw"), "bob@example.com");
    /// assert_eq!(new.credentials().username(), "bob");
    /// ```
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("credentials", &self.credentials)
            .field("email", &self.email)
            .field("licence", &self.licence)
            .finish()
    }
}

/// A verified successful `register`.
///
/// ```no_run
/// # async fn run(client: licensing_client::Client) -> Result<(), licensing_client::Error> {
/// use licensing_client::{Credentials, Registration};
///
/// let done = client.register(&Registration::new(Credentials::new("bob", "pw"), "bob@example.com")).await?;
/// println!("registered; licence {:?}", done.claims.lic);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Registered {
    /// The verified claims.
    pub claims: Claims,
}

/// A verified successful `login`.
///
/// Take licence decisions from [`LoginInfo::claims`] (or [`LoginInfo::licence_active`]); the
/// other fields are the answer's unsigned details (those that the claims also carry are checked
/// against them).
///
/// ```no_run
/// # async fn run(client: licensing_client::Client) -> Result<(), licensing_client::Error> {
/// let login = client.login(&licensing_client::Credentials::new("bob", "pw")).await?;
/// if login.licence_active() {
///     println!("welcome; level {:?}, app version {:?}", login.claims.lvl, login.app_version);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LoginInfo {
    /// The verified claims.
    pub claims: Claims,
    /// Registration time, `YYYY-MM-DD HH:MM:SS` UTC (unsigned).
    pub joined: Option<String>,
    /// Whether the user ever redeemed a key (unsigned).
    pub has_licence: bool,
    /// Heartbeats counted so far (unsigned).
    pub total_pings: i64,
    /// The app's version as the developer set it (unsigned).
    pub app_version: Option<String>,
}

impl LoginInfo {
    /// Whether the verified `lic` claim is `active`.
    ///
    /// ```no_run
    /// # async fn run(client: licensing_client::Client) -> Result<(), licensing_client::Error> {
    /// let login = client.login(&licensing_client::Credentials::new("bob", "pw")).await?;
    /// assert!(login.licence_active());
    /// # Ok(())
    /// # }
    /// ```
    pub fn licence_active(&self) -> bool {
        self.claims.lic.as_ref().is_some_and(LicenceStatus::is_active)
    }
}

/// A verified successful `connect` (heartbeat).
///
/// ```no_run
/// # async fn run(client: licensing_client::Client) -> Result<(), licensing_client::Error> {
/// let beat = client.connect(&licensing_client::Credentials::new("bob", "pw")).await?;
/// println!("{} pings", beat.total_pings);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Heartbeat {
    /// The verified claims.
    pub claims: Claims,
    /// Heartbeats counted, this one included (the signed `pings` claim).
    pub total_pings: i64,
}

/// A verified successful `redeem`.
///
/// ```no_run
/// # async fn run(client: licensing_client::Client) -> Result<(), licensing_client::Error> {
/// let me = licensing_client::Credentials::new("bob", "pw");
/// let redeemed = client.redeem(&me, "K7QXM-4HZP2-WN8CT-R3DJA-9FLUE").await?;
/// println!("now {:?}, level {:?}", redeemed.claims.lic, redeemed.access);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Redeemed {
    /// The verified claims (`lic`: the status after redeeming).
    pub claims: Claims,
    /// Expiry of the redeemed key, `YYYY-MM-DD HH:MM:SS` UTC (unsigned).
    pub expire_time: Option<String>,
    /// Access level of the redeemed key (unsigned).
    pub access: Option<u32>,
}

/// A verified download: the bytes written are exactly those the service signed.
///
/// ```no_run
/// # async fn run(client: licensing_client::Client) -> Result<(), licensing_client::Error> {
/// let me = licensing_client::Credentials::new("bob", "pw");
/// let file = client.download_to_path(&me, "app.bin").await?;
/// println!("{} bytes, sha256 {}", file.size, file.sha256);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Downloaded {
    /// The verified claims.
    pub claims: Claims,
    /// Bytes received.
    pub size: u64,
    /// Lower-case hex SHA-256 of the bytes (equal to the signed `sha256` claim).
    pub sha256: String,
    /// The file name of `Content-Disposition` (unsigned; sanitise before using it as a path).
    pub filename: Option<String>,
}

/// What [`Client::connect_or_lease`] found.
///
/// ```no_run
/// # async fn run(client: licensing_client::Client) -> Result<(), licensing_client::Error> {
/// use licensing_client::Session;
///
/// match client.connect_or_lease(&licensing_client::Credentials::new("bob", "pw")).await? {
///     Session::Online(beat) => println!("online ({} pings)", beat.total_pings),
///     Session::Offline(lease) => println!("offline, allowed until {:?}", lease.expires()),
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub enum Session {
    /// The heartbeat was answered and verified.
    Online(Heartbeat),
    /// The service could not be reached, and this user's lease is still valid.
    Offline(Lease),
}

/// Sets up a [`Client`].
///
/// ```
/// use std::time::Duration;
/// use licensing_client::Client;
///
/// let client = Client::builder("https://licensing.example.com/api")
///     .app_secret("3f9c…")
///     .public_key("11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
///     .clock_skew(Duration::from_secs(30))
///     .build()?;
/// # let _ = client;
/// # Ok::<(), licensing_client::Error>(())
/// ```
pub struct ClientBuilder {
    api_url: String,
    app_secret: Option<Secret>,
    public_keys: Vec<String>,
    pinned: Option<PinnedKeys>,
    clock_skew: Duration,
    clock: Arc<dyn Clock>,
    http: Option<reqwest::Client>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("api_url", &self.api_url)
            .field("app_secret", &self.app_secret)
            .field("public_keys", &self.public_keys)
            .field("pinned", &self.pinned)
            .field("clock_skew", &self.clock_skew)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// The app's secret (`app_secret`). Required.
    ///
    /// ```
    /// let builder = licensing_client::Client::builder("https://licensing.example.com/api").app_secret("3f9c…");
    /// assert!(!format!("{builder:?}").contains("3f9c"));
    /// ```
    pub fn app_secret(mut self, secret: impl Into<String>) -> ClientBuilder {
        self.app_secret = Some(Secret(secret.into()));
        self
    }

    /// Pins one more public key of the app: standard base64 of its 32 raw bytes (`public` of
    /// `get_app_data`, or of an entry of its `keys`). At least one key is required; pin the next
    /// key too before a rotation.
    ///
    /// ```
    /// let builder = licensing_client::Client::builder("https://licensing.example.com/api")
    ///     .public_key("11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
    /// # let _ = builder;
    /// ```
    pub fn public_key(mut self, key: impl Into<String>) -> ClientBuilder {
        self.public_keys.push(key.into());
        self
    }

    /// Pins several public keys (see [`ClientBuilder::public_key`]).
    ///
    /// ```
    /// let builder = licensing_client::Client::builder("https://licensing.example.com/api")
    ///     .public_keys(["11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", "A3Zq…="]);
    /// # let _ = builder;
    /// ```
    pub fn public_keys<I, S>(mut self, keys: I) -> ClientBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.public_keys.extend(keys.into_iter().map(Into::into));
        self
    }

    /// Pins already parsed keys (in addition to those given as base64).
    ///
    /// ```
    /// use licensing_client::{Client, PinnedKeys};
    ///
    /// let keys = PinnedKeys::from_base64(["11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="])?;
    /// let client = Client::builder("https://licensing.example.com/api").app_secret("s").pinned_keys(keys).build()?;
    /// # let _ = client;
    /// # Ok::<(), licensing_client::Error>(())
    /// ```
    pub fn pinned_keys(mut self, keys: PinnedKeys) -> ClientBuilder {
        self.pinned = Some(keys);
        self
    }

    /// How far the client's clock may be from the service's when checking a token's `iat` and
    /// `exp` (default 60 seconds).
    ///
    /// ```
    /// let builder = licensing_client::Client::builder("https://licensing.example.com/api")
    ///     .clock_skew(std::time::Duration::from_secs(120));
    /// # let _ = builder;
    /// ```
    pub fn clock_skew(mut self, skew: Duration) -> ClientBuilder {
        self.clock_skew = skew;
        self
    }

    /// The clock to read (default: [`SystemClock`]).
    ///
    /// ```
    /// let builder = licensing_client::Client::builder("https://licensing.example.com/api")
    ///     .clock(licensing_client::SystemClock);
    /// # let _ = builder;
    /// ```
    pub fn clock(mut self, clock: impl Clock + 'static) -> ClientBuilder {
        self.clock = Arc::new(clock);
        self
    }

    /// The HTTP client to use (proxies, timeouts, extra root certificates, …). The default has a
    /// 10 s connect timeout and a 60 s read timeout.
    ///
    /// ```
    /// let http = reqwest::Client::builder().no_proxy().build().expect("http client");
    /// let builder = licensing_client::Client::builder("https://licensing.example.com/api").http_client(http);
    /// # let _ = builder;
    /// ```
    pub fn http_client(mut self, http: reqwest::Client) -> ClientBuilder {
        self.http = Some(http);
        self
    }

    /// Checks the settings and builds the client.
    ///
    /// ```
    /// use licensing_client::{Client, Error};
    ///
    /// let missing_key = Client::builder("https://licensing.example.com/api").app_secret("s").build();
    /// assert!(matches!(missing_key, Err(Error::Config(_))));
    /// ```
    pub fn build(self) -> Result<Client, Error> {
        let base = self.api_url.trim_end_matches('/');
        let action_url = reqwest::Url::parse(&format!("{base}/action.php"))
            .map_err(|e| Error::Config(format!("the API URL does not parse: {e}")))?;
        if !matches!(action_url.scheme(), "http" | "https") {
            return Err(Error::Config("the API URL must be http or https".into()));
        }
        let app_secret = self.app_secret.ok_or_else(|| Error::Config("the app secret is required".into()))?;
        let mut keys: Vec<[u8; 32]> = Vec::new();
        if !self.public_keys.is_empty() {
            keys.extend(PinnedKeys::from_base64(&self.public_keys)?.raw_keys());
        }
        if let Some(pinned) = &self.pinned {
            keys.extend(pinned.raw_keys());
        }
        let keys = PinnedKeys::from_bytes(keys)?;
        let http = match self.http {
            Some(http) => http,
            None => reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .read_timeout(Duration::from_secs(60))
                .build()
                .map_err(|e| Error::Config(format!("the HTTP client cannot be built: {e}")))?,
        };
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                action_url,
                app_secret,
                keys,
                clock_skew: i64::try_from(self.clock_skew.as_secs()).unwrap_or(i64::MAX),
                clock: self.clock,
                lease: Mutex::new(None),
            }),
        })
    }
}

struct Inner {
    http: reqwest::Client,
    action_url: reqwest::Url,
    app_secret: Secret,
    keys: PinnedKeys,
    clock_skew: i64,
    clock: Arc<dyn Clock>,
    lease: Mutex<Option<Lease>>,
}

/// The client of one app. Cheap to clone (clones share the lease); safe to use from many tasks.
///
/// ```no_run
/// use licensing_client::{Client, Credentials};
///
/// # async fn run() -> Result<(), licensing_client::Error> {
/// let client = Client::builder("https://licensing.example.com/api")
///     .app_secret(std::env::var("APP_SECRET").unwrap_or_default())
///     .public_key("11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
///     .build()?;
/// let login = client.login(&Credentials::new("bob", "hunter22").with_hwid("HWID-1")).await?;
/// println!("licence: {:?}", login.claims.lic);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("action_url", &self.inner.action_url.as_str())
            .field("app_secret", &self.inner.app_secret)
            .field("keys", &self.inner.keys)
            .field("clock_skew", &self.inner.clock_skew)
            .finish_non_exhaustive()
    }
}

/// One request about to be sent: its action, fields and fresh nonce.
struct Request<'a> {
    action: Action,
    credentials: &'a Credentials,
    extra: Vec<(&'static str, &'a str)>,
    nonce: String,
}

/// A verified JSON answer of success.
struct Answer {
    body: Map<String, Value>,
    claims: Claims,
    token: String,
}

impl Client {
    /// Starts setting up a client of the service at `api_url`: the gateway's base URL plus
    /// `/api` (the client posts to `{api_url}/action.php`).
    ///
    /// ```
    /// let builder = licensing_client::Client::builder("https://licensing.example.com/api");
    /// # let _ = builder;
    /// ```
    pub fn builder(api_url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            api_url: api_url.into(),
            app_secret: None,
            public_keys: Vec::new(),
            pinned: None,
            clock_skew: DEFAULT_CLOCK_SKEW,
            clock: Arc::new(SystemClock),
            http: None,
        }
    }

    /// The `kid`s of the pinned keys.
    ///
    /// ```
    /// let client = licensing_client::Client::builder("https://licensing.example.com/api")
    ///     .app_secret("s")
    ///     .public_key("11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
    ///     .build()?;
    /// assert_eq!(client.pinned_kids(), ["kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"]);
    /// # Ok::<(), licensing_client::Error>(())
    /// ```
    pub fn pinned_kids(&self) -> Vec<String> {
        self.inner.keys.kids().map(str::to_owned).collect()
    }

    /// Registers a new end user (redeeming a licence key too, if the registration has one).
    ///
    /// ```no_run
    /// # async fn run(client: licensing_client::Client) -> Result<(), licensing_client::Error> {
    /// use licensing_client::{Credentials, ErrorCode, Registration};
    ///
    /// let new = Registration::new(Credentials::new("bob", "hunter22").with_hwid("HWID-1"), "bob@example.com")
    ///     .with_licence("K7QXM-4HZP2-WN8CT-R3DJA-9FLUE");
    /// match client.register(&new).await {
    ///     Ok(_) => println!("welcome"),
    ///     Err(e) if e.code() == Some(&ErrorCode::UsernameTaken) => println!("pick another name"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn register(&self, registration: &Registration) -> Result<Registered, Error> {
        let mut extra = vec![("email", registration.email.as_str())];
        if let Some(licence) = &registration.licence {
            extra.push(("licence", licence.0.as_str()));
        }
        let request = self.request(Action::Register, &registration.credentials, extra)?;
        let answer = self.json_call(&request).await?;
        Ok(Registered { claims: answer.claims })
    }

    /// Logs in: checks the credentials and the HWID (binding the HWID on first use). A verified
    /// success of a user with an active licence renews the lease; any other verified answer about
    /// this user (but `unavailable`, `internal` and `rate_limited`) ends it.
    ///
    /// ```no_run
    /// # async fn run(client: licensing_client::Client) -> Result<(), licensing_client::Error> {
    /// let login = client.login(&licensing_client::Credentials::new("bob", "pw").with_hwid("HWID-1")).await?;
    /// assert_eq!(login.claims.sub.as_deref(), Some("bob"));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn login(&self, credentials: &Credentials) -> Result<LoginInfo, Error> {
        let request = self.request(Action::Login, credentials, Vec::new())?;
        let result = self.json_call(&request).await.and_then(|answer| {
            let body = &answer.body;
            let claims = &answer.claims;
            // The unsigned details the claims also carry must agree with them.
            if body.get("name").and_then(Value::as_str) != claims.sub.as_deref() {
                return Err(VerifyError::BodyMismatch { field: "name" }.into());
            }
            if optional_str(body, "hwid")? != claims.hwid.as_deref() {
                return Err(VerifyError::BodyMismatch { field: "hwid" }.into());
            }
            if body.get("licence_status").and_then(Value::as_str)
                != claims.lic.as_ref().map(LicenceStatus::as_str)
            {
                return Err(VerifyError::BodyMismatch { field: "licence_status" }.into());
            }
            let info = LoginInfo {
                joined: optional_str(body, "joined")?.map(str::to_owned),
                has_licence: body.get("has_licence").and_then(Value::as_bool).unwrap_or(false),
                total_pings: body.get("total_pings").and_then(Value::as_i64).unwrap_or(0),
                app_version: optional_str(body, "app_version")?.map(str::to_owned),
                claims: claims.clone(),
            };
            Ok((info, answer))
        });
        self.note_lease(credentials, result.as_ref().map(|(_, answer)| answer));
        result.map(|(info, _)| info)
    }

    /// Sends a heartbeat. Renews or ends the lease like [`Client::login`].
    ///
    /// ```no_run
    /// # async fn run(client: licensing_client::Client) -> Result<(), licensing_client::Error> {
    /// let beat = client.connect(&licensing_client::Credentials::new("bob", "pw")).await?;
    /// println!("{} pings", beat.total_pings);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect(&self, credentials: &Credentials) -> Result<Heartbeat, Error> {
        let request = self.request(Action::Connect, credentials, Vec::new())?;
        let result = self.json_call(&request).await.and_then(|answer| {
            let Some(pings) = answer.claims.pings else {
                return Err(VerifyError::MalformedToken("a successful connect without `pings`".into()).into());
            };
            if answer.body.get("total_pings").and_then(Value::as_i64) != Some(pings) {
                return Err(VerifyError::BodyMismatch { field: "total_pings" }.into());
            }
            Ok((Heartbeat { claims: answer.claims.clone(), total_pings: pings }, answer))
        });
        self.note_lease(credentials, result.as_ref().map(|(_, answer)| answer));
        result.map(|(beat, _)| beat)
    }

    /// Redeems a licence key for the user.
    ///
    /// ```no_run
    /// # async fn run(client: licensing_client::Client) -> Result<(), licensing_client::Error> {
    /// let me = licensing_client::Credentials::new("bob", "pw");
    /// let redeemed = client.redeem(&me, "K7QXM-4HZP2-WN8CT-R3DJA-9FLUE").await?;
    /// println!("licence status now {:?}", redeemed.claims.lic);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn redeem(&self, credentials: &Credentials, licence: &str) -> Result<Redeemed, Error> {
        let request = self.request(Action::Redeem, credentials, vec![("licence", licence)])?;
        let Answer { body, claims, .. } = self.json_call(&request).await?;
        if body.get("licence_status").and_then(Value::as_str)
            != claims.lic.as_ref().map(LicenceStatus::as_str)
        {
            return Err(VerifyError::BodyMismatch { field: "licence_status" }.into());
        }
        Ok(Redeemed {
            expire_time: optional_str(&body, "expire_time")?.map(str::to_owned),
            access: body.get("access").and_then(Value::as_u64).and_then(|a| u32::try_from(a).ok()),
            claims,
        })
    }

    /// Downloads the app's binary into `writer`, streaming (never holding the whole file), and
    /// verifies its SHA-256 against the token's `sha256` claim.
    ///
    /// The bytes reach `writer` before the digest can be checked: trust them only when this
    /// returns `Ok`, and discard them on any error. [`Client::download_to_path`] does that for
    /// files.
    ///
    /// ```no_run
    /// # async fn run(client: licensing_client::Client) -> Result<(), licensing_client::Error> {
    /// let me = licensing_client::Credentials::new("bob", "pw");
    /// let mut buffer = Vec::new();
    /// let file = client.download_to_writer(&me, &mut buffer).await?;
    /// assert_eq!(file.size, buffer.len() as u64);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn download_to_writer<W>(
        &self,
        credentials: &Credentials,
        writer: &mut W,
    ) -> Result<Downloaded, Error>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let request = self.request(Action::Download, credentials, Vec::new())?;
        let mut response = self.send(&request).await?;
        if response.status() != StatusCode::OK {
            // A refusal (JSON, with a token). A verified success cannot come with another status.
            self.read_json_answer(&request, response).await?;
            return Err(
                VerifyError::MalformedAnswer("a download answered success without a file".into()).into()
            );
        }
        let Some(token) = header_token(response.headers())? else {
            return Err(VerifyError::MissingToken { http_status: 200, status: None }.into());
        };
        let claims = self.verify(&request, &token)?;
        check_status(200, None, &claims.st)?;
        let Some(expected) = claims.sha256.clone() else {
            return Err(VerifyError::MalformedToken("a successful download without `sha256`".into()).into());
        };
        let filename = response
            .headers()
            .get(reqwest::header::CONTENT_DISPOSITION)
            .and_then(|v| v.to_str().ok())
            .and_then(disposition_filename);
        let announced = response.content_length();
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = response.chunk().await.map_err(Error::Transport)? {
            hasher.update(&chunk);
            size += chunk.len() as u64;
            writer.write_all(&chunk).await?;
        }
        writer.flush().await?;
        let actual = hex(&hasher.finalize());
        if actual != expected {
            return Err(VerifyError::DigestMismatch { expected, actual }.into());
        }
        if announced.is_some_and(|announced| announced != size) {
            return Err(VerifyError::MalformedAnswer("the body is not as long as announced".into()).into());
        }
        Ok(Downloaded { claims, size, sha256: actual, filename })
    }

    /// Downloads the app's binary to `path`. The bytes go to a temporary file beside it, which
    /// replaces `path` only once the download is complete and verified; on any error it is
    /// deleted and `path` is left as it was.
    ///
    /// ```no_run
    /// # async fn run(client: licensing_client::Client) -> Result<(), licensing_client::Error> {
    /// let me = licensing_client::Credentials::new("bob", "pw").with_hwid("HWID-1");
    /// let file = client.download_to_path(&me, "app-update.bin").await?;
    /// println!("{} verified bytes", file.size);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn download_to_path(
        &self,
        credentials: &Credentials,
        path: impl AsRef<Path>,
    ) -> Result<Downloaded, Error> {
        let path = path.as_ref();
        let partial = partial_path(path)?;
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&partial)
            .await
            .map_err(Error::Io)?;
        let result = async {
            let downloaded = self.download_to_writer(credentials, &mut file).await?;
            file.sync_all().await?;
            Ok::<_, Error>(downloaded)
        }
        .await;
        drop(file);
        let result = match result {
            Ok(downloaded) => tokio::fs::rename(&partial, path).await.map(|()| downloaded).map_err(Error::Io),
            Err(e) => Err(e),
        };
        if result.is_err() {
            let _ = tokio::fs::remove_file(&partial).await;
        }
        result
    }

    /// The last good lease, if any (even if expired: see [`Lease::valid_at`]).
    ///
    /// ```no_run
    /// # async fn run(client: licensing_client::Client) {
    /// match client.lease() {
    ///     Some(lease) => println!("lease until {:?}", lease.expires()),
    ///     None => println!("no lease: log in first"),
    /// }
    /// # }
    /// ```
    pub fn lease(&self) -> Option<Lease> {
        self.lease_slot().clone()
    }

    /// Whether the app may run offline at `now`: a lease exists and `now` is before its `exp`.
    ///
    /// ```no_run
    /// # async fn run(client: licensing_client::Client) {
    /// if !client.offline_allowed(std::time::SystemTime::now()) {
    ///     eprintln!("the service must be reached to go on");
    /// }
    /// # }
    /// ```
    pub fn offline_allowed(&self, now: std::time::SystemTime) -> bool {
        self.lease_slot().as_ref().is_some_and(|lease| lease.valid_at(now))
    }

    /// Forgets the lease (for example when the user logs out).
    ///
    /// ```no_run
    /// # async fn run(client: licensing_client::Client) {
    /// client.clear_lease();
    /// assert!(client.lease().is_none());
    /// # }
    /// ```
    pub fn clear_lease(&self) {
        *self.lease_slot() = None;
    }

    /// Sends a heartbeat; when the service cannot be reached (a transport error, or the gateway's
    /// unsigned `503 unavailable` while its core is down, and only then), falls back to this
    /// user's lease if it is still valid by the client's clock. A refusal or
    /// an answer failing verification is returned as the error it is, never replaced by the
    /// lease; so is the transport error when there is no valid lease.
    ///
    /// ```no_run
    /// # async fn run(client: licensing_client::Client) -> Result<(), licensing_client::Error> {
    /// use licensing_client::Session;
    ///
    /// let me = licensing_client::Credentials::new("bob", "pw").with_hwid("HWID-1");
    /// match client.connect_or_lease(&me).await {
    ///     Ok(Session::Online(_)) => println!("online"),
    ///     Ok(Session::Offline(lease)) => println!("offline until {:?}", lease.expires()),
    ///     Err(e) => {
    ///         eprintln!("stop: {e}");
    ///         std::process::exit(1);
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect_or_lease(&self, credentials: &Credentials) -> Result<Session, Error> {
        match self.connect(credentials).await {
            Ok(beat) => Ok(Session::Online(beat)),
            Err(error) if service_unreachable(&error) => {
                let now = self.inner.clock.now();
                let lease = self.lease_slot().clone().filter(|lease| {
                    lease.username == credentials.username
                        && credentials.hwid.as_ref().is_none_or(|hwid| lease.hwid.as_ref() == Some(hwid))
                        && lease.valid_at(now)
                });
                lease.map(Session::Offline).ok_or(error)
            }
            Err(other) => Err(other),
        }
    }

    /// Restores a lease kept from an earlier run ([`Lease::token`]), after verifying it again:
    /// signed by a pinned key, a successful `login` or `connect` of this user (and HWID) with an
    /// active licence, and not expired by the client's clock. It replaces the current lease.
    ///
    /// ```no_run
    /// # async fn run(client: licensing_client::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let me = licensing_client::Credentials::new("bob", "pw").with_hwid("HWID-1");
    /// let saved = tokio::fs::read_to_string("lease.jwt").await?;
    /// let lease = client.restore_lease(&me, saved.trim())?;
    /// println!("offline until {:?}", lease.expires());
    /// # Ok(())
    /// # }
    /// ```
    pub fn restore_lease(&self, credentials: &Credentials, token: &str) -> Result<Lease, Error> {
        let claims = verify_signature(token, &self.inner.keys)?;
        if claims.act != Action::Login.as_str() && claims.act != Action::Connect.as_str() {
            return Err(
                VerifyError::ActionMismatch { expected: "login or connect".into(), got: claims.act }.into()
            );
        }
        let expected = Expected {
            action: if claims.act == Action::Login.as_str() { Action::Login } else { Action::Connect },
            nonce: &claims.nonce,
            username: &credentials.username,
            hwid: credentials.hwid.as_deref(),
            now: unix_seconds(self.inner.clock.now()),
            skew: self.inner.clock_skew,
        };
        expected.check(&claims)?;
        let now = expected.now;
        // The lease itself is strict: no skew past `exp`.
        if claims.exp <= now {
            return Err(VerifyError::Expired { exp: claims.exp, now }.into());
        }
        let lease = Lease::from_claims(&claims, token)
            .ok_or_else(|| VerifyError::MalformedToken("the token grants no lease".into()))?;
        *self.lease_slot() = Some(lease.clone());
        Ok(lease)
    }

    // -----------------------------------------------------------------------------------------

    fn lease_slot(&self) -> MutexGuard<'_, Option<Lease>> {
        self.inner.lease.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keeps the lease of a fully verified success, and drops this user's lease on a verified
    /// refusal but the service's own trouble. An answer that failed verification, or a transport
    /// error, changes nothing.
    fn note_lease(&self, credentials: &Credentials, result: Result<&Answer, &Error>) {
        let mut slot = self.lease_slot();
        match result {
            Ok(answer) => *slot = Lease::from_claims(&answer.claims, &answer.token),
            Err(Error::Refused(refusal))
                if !matches!(
                    refusal.code,
                    ErrorCode::Unavailable | ErrorCode::Internal | ErrorCode::RateLimited
                ) =>
            {
                if slot.as_ref().is_some_and(|lease| lease.username == credentials.username) {
                    *slot = None;
                }
            }
            Err(_) => {}
        }
    }

    fn request<'a>(
        &self,
        action: Action,
        credentials: &'a Credentials,
        extra: Vec<(&'static str, &'a str)>,
    ) -> Result<Request<'a>, Error> {
        Ok(Request { action, credentials, extra, nonce: random_hex::<16>()? })
    }

    async fn send(&self, request: &Request<'_>) -> Result<reqwest::Response, Error> {
        let credentials = request.credentials;
        let mut fields: Vec<(&str, &str)> = vec![
            ("username", &credentials.username),
            ("password", &credentials.password.0),
            ("app_secret", &self.inner.app_secret.0),
            ("nonce", &request.nonce),
        ];
        if let Some(hwid) = &credentials.hwid {
            fields.push(("hwid", hwid));
        }
        fields.extend(request.extra.iter().copied());
        self.inner
            .http
            .post(self.inner.action_url.clone())
            .query(&[("action", request.action.as_str())])
            .form(&fields)
            .send()
            .await
            .map_err(Error::Transport)
    }

    async fn json_call(&self, request: &Request<'_>) -> Result<Answer, Error> {
        let response = self.send(request).await?;
        self.read_json_answer(request, response).await
    }

    /// Verifies a JSON answer: its token (header and field agreeing), the claims against the
    /// request, and the status against the HTTP status. A verified refusal is an
    /// [`Error::Refused`].
    async fn read_json_answer(
        &self,
        request: &Request<'_>,
        mut response: reqwest::Response,
    ) -> Result<Answer, Error> {
        let http_status = response.status().as_u16();
        let header = header_token(response.headers())?;
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let mut raw = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(Error::Transport)? {
            if raw.len() + chunk.len() > MAX_JSON_ANSWER {
                return Err(VerifyError::MalformedAnswer("the answer is too large".into()).into());
            }
            raw.extend_from_slice(&chunk);
        }
        let body = match serde_json::from_slice::<Value>(&raw) {
            Ok(Value::Object(body)) => Some(body),
            _ => None,
        };
        let field = match body.as_ref().and_then(|b| b.get("token")) {
            None => None,
            Some(Value::String(token)) => Some(token.clone()),
            Some(_) => return Err(VerifyError::MalformedAnswer("`token` is not a string".into()).into()),
        };
        let status = body.as_ref().and_then(|b| b.get("status")).and_then(Value::as_str).map(str::to_owned);
        let token = match (header, field) {
            (Some(header), Some(field)) if header != field => return Err(VerifyError::TokenConflict.into()),
            (Some(token), _) | (None, Some(token)) => token,
            (None, None) => return Err(VerifyError::MissingToken { http_status, status }.into()),
        };
        let claims = self.verify(request, &token)?;
        let (Some(body), Some(status)) = (body, status) else {
            return Err(VerifyError::MalformedAnswer("not a JSON object with a `status`".into()).into());
        };
        check_status(http_status, Some(&status), &claims.st)?;
        if !claims.is_success() {
            let message = body.get("message").and_then(Value::as_str).unwrap_or_default().to_owned();
            return Err(Error::Refused(Refusal {
                code: ErrorCode::parse(&claims.st),
                http_status,
                message,
                retry_after,
                claims: Box::new(claims),
            }));
        }
        Ok(Answer { body, claims, token })
    }

    /// The token's signature, then its claims against the request.
    fn verify(&self, request: &Request<'_>, token: &str) -> Result<Claims, VerifyError> {
        let claims = verify_signature(token, &self.inner.keys)?;
        Expected {
            action: request.action,
            nonce: &request.nonce,
            username: &request.credentials.username,
            hwid: request.credentials.hwid.as_deref(),
            now: unix_seconds(self.inner.clock.now()),
            skew: self.inner.clock_skew,
        }
        .check(&claims)?;
        Ok(claims)
    }
}

/// The `X-Response-Token` header, if present.
fn header_token(headers: &HeaderMap) -> Result<Option<String>, VerifyError> {
    let mut values = headers.get_all(TOKEN_HEADER).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(VerifyError::TokenConflict);
    }
    first
        .to_str()
        .map(|token| Some(token.to_owned()))
        .map_err(|_| VerifyError::MalformedToken("the X-Response-Token header is not ASCII".into()))
}

/// A string field that may be JSON null or absent; any other type is malformed.
fn optional_str<'a>(body: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, VerifyError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(VerifyError::MalformedAnswer(format!("`{field}` is not a string"))),
    }
}

/// `filename="…"` of a `Content-Disposition` value, unescaped.
fn disposition_filename(value: &str) -> Option<String> {
    let start = value.find("filename=\"")? + "filename=\"".len();
    let mut name = String::new();
    let mut chars = value[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(name),
            '\\' => name.push(chars.next()?),
            c => name.push(c),
        }
    }
    None
}

/// A fresh temporary name beside `path`, for a download in progress.
fn partial_path(path: &Path) -> Result<PathBuf, Error> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::Config(format!("{} names no file", path.display())))?
        .to_string_lossy();
    let partial = format!(".{name}.{}.part", random_hex::<8>()?);
    Ok(path.with_file_name(partial))
}

fn random_hex<const N: usize>() -> Result<String, Error> {
    let mut bytes = [0u8; N];
    SysRng.try_fill_bytes(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
    Ok(hex(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Whether an error means the service could not be reached: a transport failure, or the gateway's
/// own unsigned `503 unavailable` (its core is down). Falling back to a lease then is safe even if
/// the answer was forged: the lease itself was verified when it was granted, and an attacker able
/// to forge that answer could as well cut the connection.
fn service_unreachable(error: &Error) -> bool {
    match error {
        Error::Transport(_) => true,
        Error::Verify(VerifyError::MissingToken { http_status: 503, status }) => {
            status.as_deref().is_none_or(|s| s == "unavailable")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show() {
        let me = Credentials::new("bob", "hunter22").with_hwid("HW");
        let shown = format!("{me:?}");
        assert!(shown.contains("bob") && !shown.contains("hunter22"), "{shown}");
        let new = Registration::new(me, "bob@example.com").with_licence("KEY-SECRET");
        assert!(!format!("{new:?}").contains("KEY-SECRET"));
        let client = Client::builder("http://127.0.0.1:1/api")
            .app_secret("app-secret-value")
            .public_key("11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
            .build()
            .expect("client");
        assert!(!format!("{client:?}").contains("app-secret-value"));
        let builder = Client::builder("http://127.0.0.1:1/api").app_secret("app-secret-value");
        assert!(!format!("{builder:?}").contains("app-secret-value"));
    }

    #[test]
    fn builder_checks() {
        let key = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
        assert!(matches!(
            Client::builder("not a url").app_secret("s").public_key(key).build(),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            Client::builder("ftp://x/api").app_secret("s").public_key(key).build(),
            Err(Error::Config(_))
        ));
        assert!(matches!(Client::builder("http://x/api").public_key(key).build(), Err(Error::Config(_))));
        let client =
            Client::builder("http://x/api/").app_secret("s").public_key(key).build().expect("client");
        assert_eq!(client.inner.action_url.as_str(), "http://x/api/action.php");
    }

    #[test]
    fn content_disposition_names() {
        assert_eq!(disposition_filename(r#"attachment; filename="app.exe""#).as_deref(), Some("app.exe"));
        assert_eq!(
            disposition_filename(r#"attachment; filename="a \"b\" \\c""#).as_deref(),
            Some(r#"a "b" \c"#)
        );
        assert_eq!(disposition_filename("attachment"), None);
        assert_eq!(disposition_filename(r#"attachment; filename="open"#), None);
    }

    #[test]
    fn nonces_are_fresh() {
        let a = random_hex::<16>().expect("rng");
        let b = random_hex::<16>().expect("rng");
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
