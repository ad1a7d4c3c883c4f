//! The dashboard's session as the browser holds it: one cookie carrying the core's `ses_...`
//! token, and a CSRF token derived from it. The gateway stores nothing: the core knows the
//! session (hashed), and the CSRF token can be recomputed from the cookie on every request.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::metadata::AsciiMetadataValue;
use warp::http::{HeaderMap, HeaderValue, header};

/// The cookie over plain HTTP: scoped to the dashboard's paths.
const PLAIN_COOKIE: &str = "session";
/// The cookie over HTTPS: the `__Host-` prefix makes browsers insist on `Secure`, `Path=/` and no
/// `Domain`, so no sibling host or plain-HTTP page can plant or overwrite it.
const TLS_COOKIE: &str = "__Host-session";
/// Session tokens the core issues start with this.
const TOKEN_PREFIX: &str = "ses_";
/// Far longer than any token the core issues; a longer cookie is not one of ours.
const MAX_TOKEN_LEN: usize = 256;

/// How the session cookie is named and scoped: it depends on whether the gateway serves TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookiePolicy {
    pub secure: bool,
}

impl CookiePolicy {
    pub fn name(self) -> &'static str {
        if self.secure { TLS_COOKIE } else { PLAIN_COOKIE }
    }

    fn attributes(self) -> &'static str {
        if self.secure {
            "Path=/; Secure; HttpOnly; SameSite=Strict"
        } else {
            "Path=/dashboard; HttpOnly; SameSite=Strict"
        }
    }

    /// The `Set-Cookie` value that opens a session for `max_age_secs`.
    pub fn open(self, session: &Session, max_age_secs: i64) -> Option<HeaderValue> {
        let value = format!(
            "{}={}; {}; Max-Age={}",
            self.name(),
            session.token,
            self.attributes(),
            max_age_secs.max(0)
        );
        HeaderValue::from_str(&value).ok()
    }

    /// The `Set-Cookie` value that makes the browser forget the session.
    pub fn clear(self) -> HeaderValue {
        let value = format!("{}=; {}; Max-Age=0", self.name(), self.attributes());
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("session=; Max-Age=0"))
    }

    /// The session the request's cookie names, if it holds something shaped like a session token.
    /// Whether the core still knows it is the core's call, on first use.
    pub fn session(self, headers: &HeaderMap) -> Option<Session> {
        let name = self.name();
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|line| line.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(key, _)| *key == name)
            .and_then(|(_, value)| Session::from_token(value.trim().trim_matches('"')))
    }
}

/// A session token as the browser presented it.
#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    token: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Session(***)")
    }
}

impl Session {
    /// Accepts only what could be a token of the core: its prefix and URL-safe characters, so the
    /// value is a valid cookie, header and metadata value whatever the browser sent.
    pub fn from_token(token: &str) -> Option<Session> {
        let shaped = token.starts_with(TOKEN_PREFIX)
            && token.len() > TOKEN_PREFIX.len()
            && token.len() <= MAX_TOKEN_LEN
            && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        shaped.then(|| Session { token: token.to_owned() })
    }

    /// The `authorization` metadata that names the session to the core.
    pub fn bearer(&self) -> Option<AsciiMetadataValue> {
        let mut value = AsciiMetadataValue::try_from(format!("Bearer {}", self.token)).ok()?;
        value.set_sensitive(true);
        Some(value)
    }

    /// The CSRF token of this session: base64url(SHA-256("csrf:" + token)). Only a page served to
    /// the session's holder shows it; another site can neither read it nor compute it.
    pub fn csrf(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(b"csrf:");
        hasher.update(self.token.as_bytes());
        URL_SAFE_NO_PAD.encode(hasher.finalize())
    }

    /// Whether a submitted CSRF token is this session's, compared in constant time.
    pub fn csrf_matches(&self, submitted: &[u8]) -> bool {
        let expected = self.csrf();
        expected.len() == submitted.len() && bool::from(expected.as_bytes().ct_eq(submitted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookies: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for cookie in cookies {
            headers.append(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
        }
        headers
    }

    const PLAIN: CookiePolicy = CookiePolicy { secure: false };
    const TLS: CookiePolicy = CookiePolicy { secure: true };

    #[test]
    fn the_cookie_is_found_by_its_exact_name() {
        let found = PLAIN.session(&headers(&["a=b; session=ses_abc-1_Z; other=x"])).unwrap();
        assert_eq!(found, Session::from_token("ses_abc-1_Z").unwrap());
        assert!(PLAIN.session(&headers(&["xsession=ses_abc"])).is_none());
        assert!(PLAIN.session(&headers(&["__Host-session=ses_abc"])).is_none());
        assert!(TLS.session(&headers(&["session=ses_abc"])).is_none());
        assert!(TLS.session(&headers(&["x=1", "__Host-session=ses_abc"])).is_some());
    }

    #[test]
    fn only_token_shaped_values_count() {
        for bad in [
            "",
            "ses_",
            "lic_abc",
            "ses_a b",
            "ses_a;b",
            "ses_é",
            "ses_a\"",
            &format!("ses_{}", "a".repeat(300)),
        ] {
            assert!(Session::from_token(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn csrf_is_derived_and_checked() {
        let one = Session::from_token("ses_one").unwrap();
        let two = Session::from_token("ses_two").unwrap();
        assert_eq!(one.csrf(), one.csrf());
        assert_ne!(one.csrf(), two.csrf());
        assert_eq!(one.csrf().len(), 43);
        assert!(one.csrf_matches(one.csrf().as_bytes()));
        assert!(!one.csrf_matches(two.csrf().as_bytes()));
        assert!(!one.csrf_matches(b""));
        assert!(!one.csrf_matches(&one.csrf().as_bytes()[1..]));
        assert!(!format!("{one:?}").contains("one"));
    }

    #[test]
    fn cookies_carry_their_attributes() {
        let session = Session::from_token("ses_x").unwrap();
        assert_eq!(
            PLAIN.open(&session, 60).unwrap(),
            "session=ses_x; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age=60"
        );
        assert_eq!(
            TLS.open(&session, 60).unwrap(),
            "__Host-session=ses_x; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=60"
        );
        assert_eq!(PLAIN.clear(), "session=; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age=0");
    }
}
