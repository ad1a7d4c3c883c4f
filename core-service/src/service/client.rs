//! End-user calls. Each checks, in order: fields; the per-address throttle; the app secret; the
//! app online; the per-username throttle; credentials; HWID; licence; then its own conditions.
//! Once the app is known, every outcome is signed into a response token.

use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;

use super::{Core, UserView, files::Download, standing_of, warm::SignedIn};
use crate::{
    domain::{
        AppSecret, CoreError, Email, HeldLicence, Hwid, LicenceKey, LicenceStatus, Password, Standing,
        Username, parse_nonce,
        secrets::constant_time_eq,
        throttle::ThrottleKey,
        token::{self, Claims},
    },
    storage::{
        self,
        entities::{app, licence, user},
        pings::Revisions,
        queries::{self, NewUser},
    },
};

/// Lifetime of every token but an active user's login or connect lease.
const SHORT_TOKEN_SECS: i64 = 60;

/// An outcome and, when the app was identified, its signed response token.
#[derive(Debug)]
pub struct Reply<T> {
    pub result: Result<T, CoreError>,
    pub token: Option<String>,
}

/// End-user credentials as received.
#[derive(Clone, Default)]
pub struct UserAuthInput {
    pub app_secret: String,
    pub username: String,
    pub password: String,
    pub hwid: String,
}

#[derive(Debug, Clone)]
pub struct LoginOutput {
    pub user: UserView,
    pub app_version: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RedeemOutput {
    pub status: LicenceStatus,
    pub expire_time: DateTime<Utc>,
    pub access: u8,
}

struct ParsedAuth {
    secret: AppSecret,
    username: Username,
    password: Password,
    hwid: Option<Hwid>,
}

impl ParsedAuth {
    fn parse(input: &UserAuthInput) -> Result<Self, CoreError> {
        Ok(ParsedAuth {
            username: Username::parse("username", &input.username)?,
            password: Password::parse("password", &input.password)?,
            hwid: Hwid::parse_optional(&input.hwid)?,
            secret: AppSecret::parse(&input.app_secret)?,
        })
    }
}

/// The identified app's signing key and lease rule.
struct SigningApp {
    kid: String,
    private_key: Vec<u8>,
    offline_grace_secs: i64,
}

/// What a response token will say, gathered as the call learns it.
struct TokenScope {
    act: &'static str,
    nonce: String,
    app: Option<SigningApp>,
    sub: Option<String>,
    hwid: Option<String>,
    standing: Option<Standing>,
    pings: Option<i64>,
    sha256: Option<String>,
    lease: bool,
}

impl TokenScope {
    fn new(act: &'static str) -> Self {
        TokenScope {
            act,
            nonce: String::new(),
            app: None,
            sub: None,
            hwid: None,
            standing: None,
            pings: None,
            sha256: None,
            lease: false,
        }
    }

    fn reply<T>(self, keys: &token::SigningKeys, result: Result<T, CoreError>) -> Reply<T> {
        let token = self.sign(keys, &result);
        Reply { result, token }
    }

    fn sign<T>(&self, keys: &token::SigningKeys, result: &Result<T, CoreError>) -> Option<String> {
        let app = self.app.as_ref()?;
        let grace_secs = &app.offline_grace_secs;
        let now = Utc::now().timestamp();
        let active = self.standing.filter(|s| s.status == LicenceStatus::Active);
        let mut exp = now + SHORT_TOKEN_SECS;
        if result.is_ok()
            && self.lease
            && let Some(lexp) = active.and_then(|s| s.latest_expiry)
        {
            exp = lexp.timestamp().min(now.saturating_add(*grace_secs));
        }
        let claims = Claims {
            act: self.act,
            st: match result {
                Ok(_) => "success".to_owned(),
                Err(e) => e.code().as_str().to_owned(),
            },
            nonce: self.nonce.clone(),
            iat: now,
            exp,
            sub: self.sub.clone(),
            hwid: self.hwid.clone(),
            lic: self.standing.map(|s| s.status.as_str()),
            lvl: active.and_then(|s| s.level),
            lexp: active.and_then(|s| s.latest_expiry).map(|t| t.timestamp()),
            pings: self.pings,
            sha256: self.sha256.clone(),
        };
        match keys.sign(&app.kid, &app.private_key, &claims) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!(error = %e, "cannot sign a response token");
                None
            }
        }
    }
}

/// A user who passed credentials and HWID, with their standing.
struct Authenticated {
    app: app::Model,
    user: user::Model,
    standing: Standing,
    held: Vec<HeldLicence>,
    /// The revisions the app and user were read at; `None` when this call changed the user
    /// (bound a HWID), so what was read is already out of date.
    revisions: Option<Revisions>,
}

impl Core {
    pub async fn register(
        &self,
        input: UserAuthInput,
        email: String,
        licence: String,
        address: String,
        nonce: String,
    ) -> Reply<UserView> {
        let mut scope = TokenScope::new("register");
        let result = self.register_inner(&mut scope, input, email, licence, address, nonce).await;
        scope.reply(&self.signing_keys, result)
    }

    async fn register_inner(
        &self,
        scope: &mut TokenScope,
        input: UserAuthInput,
        email: String,
        licence: String,
        address: String,
        nonce: String,
    ) -> Result<UserView, CoreError> {
        let username = Username::parse("username", &input.username)?;
        let email = Email::parse(&email)?;
        let password = Password::parse("password", &input.password)?;
        let hwid = Hwid::parse_optional(&input.hwid)?;
        let licence = LicenceKey::parse_optional("licence", &licence)?;
        let secret = AppSecret::parse(&input.app_secret)?;
        scope.nonce = parse_nonce(&nonce)?;

        self.throttle.check(&ThrottleKey::Address(address.clone()))?;
        let app = self.identify_app(scope, &secret, &address).await?;
        if !app.online {
            return Err(CoreError::AppOffline);
        }
        self.throttle.check(&user_key(app.id, &username, &address))?;
        // Cheap check first, so a taken name costs no Argon2 work; the unique index decides races.
        if queries::user_exists(self.db.reader(), app.id, username.as_str()).await? {
            return Err(CoreError::UsernameTaken);
        }
        let password_hash = self.hasher.hash(&password).await?;

        let txn = storage::begin(self.db.writer()).await?;
        let outcome = async {
            let user = queries::insert_user(
                &txn,
                NewUser {
                    app_id: app.id,
                    username: username.as_str().to_owned(),
                    email: email.into_inner(),
                    password_hash,
                    hwid: hwid.map(|h| h.as_str().to_owned()),
                },
            )
            .await
            .map_err(|e| e.or_duplicate(CoreError::UsernameTaken))?;
            if let Some(key) = &licence {
                redeem_in(&txn, app.id, user.id, key, Utc::now()).await?;
            }
            let standing = standing_of(&txn, user.id).await?;
            Ok::<_, CoreError>((user, standing))
        }
        .await;
        let (user, standing) = storage::settle(txn, outcome).await?;
        // The user exists only now that the transaction committed.
        let user = queries::find_user(self.db.reader(), app.id, &user.username).await?.unwrap_or(user);
        scope.sub = Some(user.username.clone());
        scope.hwid = user.hwid.clone();
        scope.standing = Some(standing);
        Ok(UserView::new(user, standing))
    }

    pub async fn login(&self, input: UserAuthInput, address: String, nonce: String) -> Reply<LoginOutput> {
        let mut scope = TokenScope::new("login");
        scope.lease = true;
        let result = async {
            let auth = ParsedAuth::parse(&input)?;
            scope.nonce = parse_nonce(&nonce)?;
            let done = self.authenticate(&mut scope, &auth, &address).await?;
            self.remember_warm(&auth, &done);
            Ok(LoginOutput {
                app_version: done.app.version.clone(),
                user: UserView::new(done.user, done.standing),
            })
        }
        .await;
        scope.reply(&self.signing_keys, result)
    }

    /// The heartbeat (`connect`): counts one ping. A client seen recently is answered from memory
    /// (`warm_heartbeat`); any other, and any refusal, takes the full path.
    pub async fn heartbeat(
        &self,
        input: UserAuthInput,
        address: String,
        nonce: String,
    ) -> Reply<(i64, LicenceStatus)> {
        let mut scope = TokenScope::new("connect");
        scope.lease = true;
        let result = async {
            let auth = ParsedAuth::parse(&input)?;
            scope.nonce = parse_nonce(&nonce)?;
            if let Some(answered) = self.warm_heartbeat(&mut scope, &auth, &address).await? {
                return Ok(answered);
            }
            let done = self.authenticate(&mut scope, &auth, &address).await?;
            if done.standing.status == LicenceStatus::Banned {
                return Err(CoreError::LicenceBanned);
            }
            self.remember_warm(&auth, &done);
            let pings = self
                .pings
                .count(done.user.id)
                .await?
                .ok_or(CoreError::NotFound("the user no longer exists"))?;
            scope.pings = Some(pings);
            Ok((pings, done.standing.status))
        }
        .await;
        scope.reply(&self.signing_keys, result)
    }

    /// A heartbeat from a client whose full sign-in this core remembers, if every check passes on
    /// what it remembers and the ping is counted while the app's and the user's revisions still
    /// hold: the answer is then exactly what the full path would give. `None` hands the call to
    /// the full path, which reads afresh and makes every refusal (nothing was counted).
    async fn warm_heartbeat(
        &self,
        scope: &mut TokenScope,
        auth: &ParsedAuth,
        address: &str,
    ) -> Result<Option<(i64, LicenceStatus)>, CoreError> {
        let Some(warm) = self.warm.get(auth.secret.expose(), auth.username.as_str(), auth.password.expose())
        else {
            return Ok(None);
        };
        let address_key = ThrottleKey::Address(address.to_owned());
        let user_key = user_key(warm.app_id, &auth.username, address);
        if !self.throttle.allows(&address_key) || !self.throttle.allows(&user_key) {
            return Ok(None);
        }
        let hwid_holds = match (&warm.hwid, &auth.hwid) {
            (Some(bound), Some(presented)) => bound == presented.as_str(),
            (None, None) => true,
            // A HWID to bind, or none presented for a bound one: the full path decides.
            _ => false,
        };
        let standing = Standing::derive(&warm.held, Utc::now());
        if !hwid_holds || standing.status == LicenceStatus::Banned {
            return Ok(None);
        }
        let Some(pings) = self.pings.count_if(warm.user_id, warm.revisions).await? else {
            self.warm.stale(auth.secret.expose(), auth.username.as_str());
            return Ok(None);
        };
        self.warm.answered();
        scope.app = Some(SigningApp {
            kid: warm.kid.clone(),
            private_key: warm.private_key.clone(),
            offline_grace_secs: warm.offline_grace_secs,
        });
        scope.sub = Some(warm.username.clone());
        scope.hwid = warm.hwid.clone();
        scope.standing = Some(standing);
        scope.pings = Some(pings);
        Ok(Some((pings, standing.status)))
    }

    /// Remembers a full sign-in that passed, for the client's next heartbeats.
    fn remember_warm(&self, auth: &ParsedAuth, done: &Authenticated) {
        let Some(revisions) = done.revisions else { return };
        self.warm.remember(SignedIn {
            secret: auth.secret.expose(),
            password: auth.password.expose(),
            revisions,
            app_id: done.app.id,
            kid: &done.app.signing_kid,
            private_key: &done.app.private_key,
            offline_grace_secs: done.app.offline_grace_secs,
            user_id: done.user.id,
            username: &done.user.username,
            hwid: done.user.hwid.as_deref(),
            held: &done.held,
        });
    }

    pub async fn redeem(
        &self,
        input: UserAuthInput,
        licence: String,
        address: String,
        nonce: String,
    ) -> Reply<RedeemOutput> {
        let mut scope = TokenScope::new("redeem");
        let result = async {
            let auth = ParsedAuth::parse(&input)?;
            let key = LicenceKey::parse("licence", &licence)?;
            scope.nonce = parse_nonce(&nonce)?;
            let done = self.authenticate(&mut scope, &auth, &address).await?;
            let txn = storage::begin(self.db.writer()).await?;
            let outcome = redeem_in(&txn, done.app.id, done.user.id, &key, Utc::now()).await;
            let redeemed = storage::settle(txn, outcome).await?;
            let standing = standing_of(self.db.reader(), done.user.id).await?;
            scope.standing = Some(standing);
            Ok(RedeemOutput {
                status: standing.status,
                expire_time: redeemed.expire_time,
                access: u8::try_from(redeemed.access).unwrap_or(0),
            })
        }
        .await;
        scope.reply(&self.signing_keys, result)
    }

    /// Opens the app's binary for a user with an active licence.
    pub async fn download(&self, input: UserAuthInput, address: String, nonce: String) -> Reply<Download> {
        let mut scope = TokenScope::new("download");
        let result = async {
            let auth = ParsedAuth::parse(&input)?;
            scope.nonce = parse_nonce(&nonce)?;
            let done = self.authenticate(&mut scope, &auth, &address).await?;
            match done.standing.status {
                LicenceStatus::Banned => return Err(CoreError::LicenceBanned),
                LicenceStatus::Active => {}
                LicenceStatus::None | LicenceStatus::Expired => return Err(CoreError::NoActiveLicence),
            }
            let file =
                queries::current_file(self.db.reader(), done.app.id).await?.ok_or(CoreError::NoFile)?;
            scope.sha256 = Some(file.sha256.clone());
            Ok(Download::new(self.db.reader().clone(), &file))
        }
        .await;
        scope.reply(&self.signing_keys, result)
    }

    /// Finds the app by secret, counting a miss against the address.
    async fn identify_app(
        &self,
        scope: &mut TokenScope,
        secret: &AppSecret,
        address: &str,
    ) -> Result<app::Model, CoreError> {
        let found = queries::find_app_by_secret(self.db.reader(), secret.expose()).await?;
        self.accept_app(scope, found, |app| app, secret, address)
    }

    /// Accepts what a lookup by app secret found. The index found it; the secret is compared
    /// again in constant time in case a backend collation matched loosely. A match lets the answer
    /// be signed with the app's key; a miss counts against the address.
    fn accept_app<T>(
        &self,
        scope: &mut TokenScope,
        found: Option<T>,
        app_of: impl Fn(&T) -> &app::Model,
        secret: &AppSecret,
        address: &str,
    ) -> Result<T, CoreError> {
        match found.filter(|f| constant_time_eq(app_of(f).secret.as_bytes(), secret.expose().as_bytes())) {
            Some(found) => {
                let app = app_of(&found);
                scope.app = Some(SigningApp {
                    kid: app.signing_kid.clone(),
                    private_key: app.private_key.clone(),
                    offline_grace_secs: app.offline_grace_secs,
                });
                Ok(found)
            }
            None => {
                self.throttle.record_failure(&[ThrottleKey::Address(address.to_owned())]);
                Err(CoreError::InvalidAppSecret)
            }
        }
    }

    async fn authenticate(
        &self,
        scope: &mut TokenScope,
        auth: &ParsedAuth,
        address: &str,
    ) -> Result<Authenticated, CoreError> {
        let address_key = ThrottleKey::Address(address.to_owned());
        self.throttle.check(&address_key)?;
        // The app, the user and their licences in one round trip; the checks below still run in
        // the contract's order.
        let found = self.sign_ins.sign_in(auth.secret.expose(), auth.username.as_str()).await?;
        let queries::SignIn { app, user, held, app_rev, user_rev } =
            self.accept_app(scope, found, |s| &s.app, &auth.secret, address)?;
        if !app.online {
            return Err(CoreError::AppOffline);
        }
        let user_key = user_key(app.id, &auth.username, address);
        self.throttle.check(&user_key)?;

        let verified =
            self.hasher.verify(&auth.password, user.as_ref().map(|u| u.password_hash.as_str())).await?;
        let Some(mut user) = user.filter(|_| verified) else {
            self.throttle.record_failure(&[user_key, address_key]);
            return Err(CoreError::InvalidCredentials);
        };
        scope.sub = Some(user.username.clone());

        let mut revisions = user_rev.map(|user| Revisions { user, app: app_rev });
        // The first HWID presented with a correct password binds, whatever later checks say.
        if user.hwid.is_none()
            && let Some(hwid) = &auth.hwid
        {
            user.hwid = queries::bind_hwid(self.db.writer(), user.id, hwid.as_str()).await?;
            revisions = None;
        }
        scope.hwid = user.hwid.clone();
        let standing = Standing::derive(&held, Utc::now());
        scope.standing = Some(standing);
        if let Some(bound) = &user.hwid
            && auth.hwid.as_ref().map(Hwid::as_str) != Some(bound.as_str())
        {
            self.throttle.record_failure(&[user_key, address_key]);
            return Err(CoreError::HwidMismatch);
        }
        Ok(Authenticated { app, user, standing, held, revisions })
    }
}

fn user_key(app_id: i64, username: &Username, address: &str) -> ThrottleKey {
    ThrottleKey::User { app_id, username: username.as_str().to_owned(), address: address.to_owned() }
}

/// Redeems `key` for the user inside the caller's transaction. First match wins: unknown,
/// already redeemed, banned, expired.
async fn redeem_in(
    c: &impl ConnectionTrait,
    app_id: i64,
    user_id: i64,
    key: &LicenceKey,
    now: DateTime<Utc>,
) -> Result<licence::Model, CoreError> {
    let lic = queries::find_licence(c, app_id, key.as_str()).await?.ok_or(CoreError::InvalidLicence)?;
    if lic.redeemed {
        return Err(CoreError::LicenceUsed);
    }
    if lic.banned {
        return Err(CoreError::LicenceBanned);
    }
    if lic.expire_time <= now {
        return Err(CoreError::LicenceExpired);
    }
    if !queries::claim_licence(c, lic.id, user_id, now).await? {
        return Err(CoreError::LicenceUsed);
    }
    Ok(lic)
}
