//! Response tokens: EdDSA compact JWS, verified against the pinned keys, then checked against the
//! request they answer.

use std::fmt;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::Signature;
use serde::Deserialize;

use crate::{ErrorCode, PinnedKeys, VerifyError};

/// Longest token accepted; real ones are a few hundred bytes.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The client actions of `/api/action.php`.
///
/// ```
/// use licensing_client::Action;
///
/// assert_eq!(Action::Connect.as_str(), "connect");
/// assert_eq!(Action::Download.to_string(), "download");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `register`: create an end user.
    Register,
    /// `login`: check the credentials and describe the user.
    Login,
    /// `connect`: the heartbeat.
    Connect,
    /// `download`: the app's binary.
    Download,
    /// `redeem`: redeem a licence key.
    Redeem,
}

impl Action {
    /// The action's name in the API.
    ///
    /// ```
    /// assert_eq!(licensing_client::Action::Redeem.as_str(), "redeem");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Register => "register",
            Action::Login => "login",
            Action::Connect => "connect",
            Action::Download => "download",
            Action::Redeem => "redeem",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user's licence status (the `lic` claim).
///
/// ```
/// use licensing_client::LicenceStatus;
///
/// assert_eq!(LicenceStatus::from("active".to_owned()), LicenceStatus::Active);
/// assert!(LicenceStatus::Active.is_active());
/// assert_eq!(LicenceStatus::Banned.as_str(), "banned");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(from = "String")]
pub enum LicenceStatus {
    /// At least one held licence is unexpired, none banned.
    Active,
    /// Every held licence has expired.
    Expired,
    /// A held licence is banned.
    Banned,
    /// No licence held.
    None,
    /// A status this client does not know.
    Other(String),
}

impl LicenceStatus {
    /// Whether the licence status is `active`.
    ///
    /// ```
    /// assert!(!licensing_client::LicenceStatus::Expired.is_active());
    /// ```
    pub fn is_active(&self) -> bool {
        *self == LicenceStatus::Active
    }

    /// The status as the API spells it.
    ///
    /// ```
    /// assert_eq!(licensing_client::LicenceStatus::None.as_str(), "none");
    /// ```
    pub fn as_str(&self) -> &str {
        match self {
            LicenceStatus::Active => "active",
            LicenceStatus::Expired => "expired",
            LicenceStatus::Banned => "banned",
            LicenceStatus::None => "none",
            LicenceStatus::Other(text) => text,
        }
    }
}

impl From<String> for LicenceStatus {
    fn from(text: String) -> Self {
        match text.as_str() {
            "active" => LicenceStatus::Active,
            "expired" => LicenceStatus::Expired,
            "banned" => LicenceStatus::Banned,
            "none" => LicenceStatus::None,
            _ => LicenceStatus::Other(text),
        }
    }
}

impl fmt::Display for LicenceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verified claims of a response token (`docs/http-api.md`, section 6). Times are Unix
/// seconds. Take licence decisions from these, never from the unsigned fields of an answer.
///
/// ```
/// # fn show(claims: &licensing_client::Claims) {
/// if claims.lic.as_ref().is_some_and(|lic| lic.is_active()) {
///     println!("licensed at level {:?} until {:?}", claims.lvl, claims.lexp);
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Claims {
    /// The action answered.
    pub act: String,
    /// `success`, or the error code of the answer.
    pub st: String,
    /// The request's nonce, echoed.
    pub nonce: String,
    /// When the token was signed.
    pub iat: i64,
    /// When the token stops being valid (for a lease: until when the app may run offline).
    pub exp: i64,
    /// The username, once the user is identified.
    pub sub: Option<String>,
    /// The HWID bound to the account.
    pub hwid: Option<String>,
    /// The user's licence status.
    pub lic: Option<LicenceStatus>,
    /// The highest access level among the user's active licences.
    pub lvl: Option<u32>,
    /// The latest expiry among the user's active licences.
    pub lexp: Option<i64>,
    /// `total_pings` after this heartbeat (successful `connect`).
    pub pings: Option<i64>,
    /// Lower-case hex SHA-256 of the file served (successful `download`).
    pub sha256: Option<String>,
    /// The `kid` of the pinned key that signed the token (from its header).
    #[serde(skip)]
    pub kid: String,
}

impl Claims {
    /// Whether the token reports success.
    ///
    /// ```
    /// # fn show(claims: &licensing_client::Claims) {
    /// assert!(claims.is_success());
    /// # }
    /// ```
    pub fn is_success(&self) -> bool {
        self.st == "success"
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    crit: Option<serde_json::Value>,
}

fn malformed(what: impl Into<String>) -> VerifyError {
    VerifyError::MalformedToken(what.into())
}

/// Checks the token's form, picks the pinned key its `kid` names and verifies the signature;
/// answers the claims.
pub(crate) fn verify_signature(token: &str, keys: &PinnedKeys) -> Result<Claims, VerifyError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(malformed("longer than any token the service signs"));
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("not three dot-separated parts"));
    };
    let header = URL_SAFE_NO_PAD.decode(header_b64).map_err(|_| malformed("header is not base64url"))?;
    let header: Header =
        serde_json::from_slice(&header).map_err(|_| malformed("header is not a JWS header"))?;
    if header.alg != "EdDSA" {
        return Err(malformed(format!("alg is {:?}, not EdDSA", header.alg)));
    }
    if header.crit.is_some() {
        return Err(malformed("critical header extensions are not understood"));
    }
    let Some(kid) = header.kid else {
        return Err(VerifyError::UnknownKid { kid: None });
    };
    let Some(key) = keys.get(&kid) else {
        return Err(VerifyError::UnknownKid { kid: Some(kid) });
    };
    let signature = URL_SAFE_NO_PAD.decode(signature_b64).map_err(|_| VerifyError::BadSignature)?;
    let signature = Signature::from_slice(&signature).map_err(|_| VerifyError::BadSignature)?;
    let signing_input = &token[..header_b64.len() + 1 + claims_b64.len()];
    key.verify_strict(signing_input.as_bytes(), &signature).map_err(|_| VerifyError::BadSignature)?;
    let claims = URL_SAFE_NO_PAD.decode(claims_b64).map_err(|_| malformed("claims are not base64url"))?;
    let mut claims: Claims =
        serde_json::from_slice(&claims).map_err(|e| malformed(format!("claims do not parse: {e}")))?;
    claims.kid = kid;
    Ok(claims)
}

/// What a token must say to answer one request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expected<'a> {
    pub action: Action,
    pub nonce: &'a str,
    pub username: &'a str,
    pub hwid: Option<&'a str>,
    /// The client's time, Unix seconds.
    pub now: i64,
    /// Allowed clock skew, seconds.
    pub skew: i64,
}

impl Expected<'_> {
    /// The checks that need nothing but the claims: action, nonce, subject, HWID, times.
    pub(crate) fn check(&self, claims: &Claims) -> Result<(), VerifyError> {
        if claims.act != self.action.as_str() {
            return Err(VerifyError::ActionMismatch {
                expected: self.action.as_str().to_owned(),
                got: claims.act.clone(),
            });
        }
        if claims.nonce != self.nonce {
            return Err(VerifyError::NonceMismatch {
                sent: self.nonce.to_owned(),
                got: claims.nonce.clone(),
            });
        }
        let success = claims.is_success();
        match &claims.sub {
            Some(sub) if sub == self.username => {}
            None if !success => {}
            got => {
                return Err(VerifyError::SubjectMismatch {
                    expected: self.username.to_owned(),
                    got: got.clone(),
                });
            }
        }
        // On `hwid_mismatch` the token names the bound HWID, which is by definition not the one
        // sent. Otherwise a success binds (or matches) the HWID sent, and names none when none
        // was sent; a refusal that names one names the one sent.
        let hwid_consistent = claims.st == ErrorCode::HwidMismatch.as_str()
            || match (self.hwid, claims.hwid.as_deref()) {
                (Some(sent), Some(got)) => sent == got,
                (Some(_), None) | (None, Some(_)) => !success,
                (None, None) => true,
            };
        if !hwid_consistent {
            return Err(VerifyError::HwidMismatch {
                sent: self.hwid.map(str::to_owned),
                got: claims.hwid.clone(),
            });
        }
        check_times(claims, self.now, self.skew)
    }
}

/// `iat` not in the future and `exp` not past, each beyond `skew` seconds.
pub(crate) fn check_times(claims: &Claims, now: i64, skew: i64) -> Result<(), VerifyError> {
    if claims.iat > now.saturating_add(skew) {
        return Err(VerifyError::NotYetValid { iat: claims.iat, now });
    }
    if claims.exp.saturating_add(skew) <= now {
        return Err(VerifyError::Expired { exp: claims.exp, now });
    }
    Ok(())
}

/// The token's `st`, the answer's `status` (absent for a file) and its HTTP status agree:
/// `success` exactly on HTTP 200, and an error code on the HTTP status the contract gives it.
pub(crate) fn check_status(http_status: u16, status: Option<&str>, st: &str) -> Result<(), VerifyError> {
    let mismatch =
        || VerifyError::StatusMismatch { http_status, status: status.map(str::to_owned), st: st.to_owned() };
    if status.is_some_and(|status| status != st) {
        return Err(mismatch());
    }
    let success = st == "success";
    if (http_status == 200) != success {
        return Err(mismatch());
    }
    if !success && ErrorCode::parse(st).http_status().is_some_and(|expected| expected != http_status) {
        return Err(mismatch());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD;
    use ed25519_dalek::{Signer, SigningKey};

    use super::*;
    use crate::jwk_thumbprint;

    fn signing_key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn pinned(keys: &[&SigningKey]) -> PinnedKeys {
        PinnedKeys::from_base64(keys.iter().map(|k| STANDARD.encode(k.verifying_key().to_bytes())))
            .expect("keys")
    }

    fn kid(key: &SigningKey) -> String {
        jwk_thumbprint(&key.verifying_key().to_bytes())
    }

    fn sign(key: &SigningKey, header: &str, claims: &str) -> String {
        let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
        let signature = key.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }

    fn header(kid: &str) -> String {
        format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"{kid}"}}"#)
    }

    const CLAIMS: &str = r#"{"act":"login","st":"success","nonce":"n1","iat":1000,"exp":1060,"sub":"bob","hwid":"HW","lic":"active","lvl":3,"lexp":2000}"#;

    fn expected(hwid: Option<&str>) -> Expected<'_> {
        Expected { action: Action::Login, nonce: "n1", username: "bob", hwid, now: 1010, skew: 60 }
    }

    #[test]
    fn a_token_signed_by_a_pinned_key_verifies() {
        let (a, b) = (signing_key(1), signing_key(2));
        let token = sign(&b, &header(&kid(&b)), CLAIMS);
        let claims = verify_signature(&token, &pinned(&[&a, &b])).expect("verifies");
        assert_eq!(claims.kid, kid(&b));
        assert_eq!(claims.lic, Some(LicenceStatus::Active));
        assert_eq!(claims.lvl, Some(3));
        expected(Some("HW")).check(&claims).expect("answers the request");
    }

    #[test]
    fn unknown_or_missing_kid() {
        let (a, b) = (signing_key(1), signing_key(2));
        let token = sign(&b, &header(&kid(&b)), CLAIMS);
        assert_eq!(
            verify_signature(&token, &pinned(&[&a])),
            Err(VerifyError::UnknownKid { kid: Some(kid(&b)) })
        );
        let token = sign(&a, r#"{"alg":"EdDSA","typ":"JWT"}"#, CLAIMS);
        assert_eq!(verify_signature(&token, &pinned(&[&a])), Err(VerifyError::UnknownKid { kid: None }));
    }

    #[test]
    fn a_signature_by_another_key_under_a_pinned_kid_is_bad() {
        let (a, b) = (signing_key(1), signing_key(2));
        let token = sign(&b, &header(&kid(&a)), CLAIMS);
        assert_eq!(verify_signature(&token, &pinned(&[&a])), Err(VerifyError::BadSignature));
    }

    #[test]
    fn altered_claims_break_the_signature() {
        let a = signing_key(1);
        let token = sign(&a, &header(&kid(&a)), CLAIMS);
        let parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(CLAIMS.replace("\"lvl\":3", "\"lvl\":9"));
        let forged = format!("{}.{forged}.{}", parts[0], parts[2]);
        assert_eq!(verify_signature(&forged, &pinned(&[&a])), Err(VerifyError::BadSignature));
    }

    #[test]
    fn malformed_tokens() {
        let a = signing_key(1);
        let keys = pinned(&[&a]);
        for bad in ["", "a.b", "a.b.c.d", "!!.b.c", &"x".repeat(MAX_TOKEN_LEN + 1)] {
            assert!(matches!(verify_signature(bad, &keys), Err(VerifyError::MalformedToken(_))), "{bad:.20}");
        }
        let token = sign(&a, &format!(r#"{{"alg":"none","kid":"{}"}}"#, kid(&a)), CLAIMS);
        assert!(matches!(verify_signature(&token, &keys), Err(VerifyError::MalformedToken(_))));
        let token = sign(&a, &format!(r#"{{"alg":"EdDSA","kid":"{}","crit":["x"]}}"#, kid(&a)), CLAIMS);
        assert!(matches!(verify_signature(&token, &keys), Err(VerifyError::MalformedToken(_))));
        let token = sign(&a, &header(&kid(&a)), r#"{"act":"login"}"#);
        assert!(matches!(verify_signature(&token, &keys), Err(VerifyError::MalformedToken(_))));
    }

    fn claims(edit: impl FnOnce(&mut Claims)) -> Claims {
        let mut claims: Claims = serde_json::from_str(CLAIMS).expect("claims");
        edit(&mut claims);
        claims
    }

    #[test]
    fn the_claims_must_answer_this_request() {
        let check = |c: Claims, hwid: Option<&str>| expected(hwid).check(&c);
        assert!(matches!(
            check(claims(|c| c.act = "connect".into()), Some("HW")),
            Err(VerifyError::ActionMismatch { .. })
        ));
        assert!(matches!(
            check(claims(|c| c.nonce = "n0".into()), Some("HW")),
            Err(VerifyError::NonceMismatch { .. })
        ));
        assert!(matches!(
            check(claims(|c| c.sub = Some("eve".into())), Some("HW")),
            Err(VerifyError::SubjectMismatch { .. })
        ));
        assert!(matches!(
            check(claims(|c| c.sub = None), Some("HW")),
            Err(VerifyError::SubjectMismatch { .. })
        ));
        // A refusal before the user is known names nobody.
        check(
            claims(|c| {
                c.st = "invalid_credentials".into();
                c.sub = None;
                c.hwid = None;
            }),
            Some("HW"),
        )
        .expect("no subject on an anonymous refusal");
        assert!(matches!(check(claims(|_| {}), Some("HW2")), Err(VerifyError::HwidMismatch { .. })));
        assert!(matches!(check(claims(|_| {}), None), Err(VerifyError::HwidMismatch { .. })));
        assert!(matches!(
            check(claims(|c| c.hwid = None), Some("HW")),
            Err(VerifyError::HwidMismatch { .. })
        ));
        check(claims(|c| c.st = "hwid_mismatch".into()), Some("HW2")).expect("names the bound HWID");
        assert!(matches!(
            check(claims(|c| c.exp = 1010 - 60), Some("HW")),
            Err(VerifyError::Expired { exp: 950, now: 1010 })
        ));
        check(claims(|c| c.exp = 1010 - 59), Some("HW")).expect("within the skew");
        assert!(matches!(
            check(claims(|c| c.iat = 1010 + 61), Some("HW")),
            Err(VerifyError::NotYetValid { .. })
        ));
        check(claims(|c| c.iat = 1010 + 60), Some("HW")).expect("within the skew");
    }

    #[test]
    fn status_agreement() {
        check_status(200, Some("success"), "success").expect("success");
        check_status(200, None, "success").expect("a file");
        check_status(403, Some("licence_banned"), "licence_banned").expect("a refusal");
        check_status(418, Some("teapot"), "teapot").expect("an unknown code on any failure status");
        for (http, status, st) in [
            (200, Some("success"), "licence_banned"),
            (403, Some("licence_banned"), "success"),
            (403, Some("success"), "success"),
            (200, Some("licence_banned"), "licence_banned"),
            (403, Some("success"), "licence_banned"),
            (500, Some("licence_banned"), "licence_banned"),
            (200, None, "no_file"),
        ] {
            assert!(
                matches!(check_status(http, status, st), Err(VerifyError::StatusMismatch { .. })),
                "{http} {status:?} {st}"
            );
        }
    }
}
