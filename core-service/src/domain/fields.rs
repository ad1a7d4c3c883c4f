//! Parsed request fields: a value of these types has passed the contract's field rules.

use std::fmt;

use super::CoreError;

fn require<'a>(field: &'static str, raw: &'a str) -> Result<&'a str, CoreError> {
    if raw.is_empty() { Err(CoreError::MissingField { field }) } else { Ok(raw) }
}

fn has_control(raw: &str) -> bool {
    raw.chars().any(char::is_control)
}

/// A username (end user or developer): 3 to 64 code points, no control characters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Username(String);

impl Username {
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, CoreError> {
        let raw = require(field, raw)?;
        let len = raw.chars().count();
        if !(3..=64).contains(&len) {
            return Err(CoreError::invalid(field, format!("{field} must be 3 to 64 characters")));
        }
        if has_control(raw) {
            return Err(CoreError::invalid(field, format!("{field} must not contain control characters")));
        }
        Ok(Username(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password: 1 to 256 bytes. Never shown.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, CoreError> {
        let raw = require(field, raw)?;
        if raw.len() > 256 {
            return Err(CoreError::invalid(field, format!("{field} must be at most 256 bytes")));
        }
        Ok(Password(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// An e-mail address: at most 254 characters, exactly one `@` with text on both sides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, CoreError> {
        let raw = require("email", raw)?;
        if raw.chars().count() > 254 {
            return Err(CoreError::invalid("email", "email must be at most 254 characters"));
        }
        let mut parts = raw.split('@');
        let valid = matches!(
            (parts.next(), parts.next(), parts.next()),
            (Some(local), Some(domain), None) if !local.is_empty() && !domain.is_empty()
        );
        if !valid || has_control(raw) {
            return Err(CoreError::invalid(
                "email",
                "email must contain exactly one @ with text on both sides",
            ));
        }
        Ok(Email(raw.to_owned()))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// An optional HWID: at most 256 characters; empty means none presented.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hwid(String);

impl Hwid {
    pub fn parse_optional(raw: &str) -> Result<Option<Self>, CoreError> {
        if raw.is_empty() {
            return Ok(None);
        }
        if raw.chars().count() > 256 {
            return Err(CoreError::invalid("hwid", "hwid must be at most 256 characters"));
        }
        Ok(Some(Hwid(raw.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An optional nonce, echoed in response tokens: at most 128 characters.
pub fn parse_nonce(raw: &str) -> Result<String, CoreError> {
    if raw.chars().count() > 128 {
        return Err(CoreError::invalid("nonce", "nonce must be at most 128 characters"));
    }
    Ok(raw.to_owned())
}

/// A licence key as presented: surrounding whitespace ignored, letters upper-cased.
#[derive(Clone, PartialEq, Eq)]
pub struct LicenceKey(String);

impl LicenceKey {
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, CoreError> {
        // Keys are ASCII; ASCII case mapping never changes a string's length or round-trips
        // oddly the way Unicode case mapping can.
        let upper = require(field, raw.trim())?.to_ascii_uppercase();
        if upper.chars().count() > 64 || has_control(&upper) {
            return Err(CoreError::invalid(field, format!("{field} is not a licence key")));
        }
        Ok(LicenceKey(upper))
    }

    pub fn parse_optional(field: &'static str, raw: &str) -> Result<Option<Self>, CoreError> {
        if raw.trim().is_empty() { Ok(None) } else { Self::parse(field, raw).map(Some) }
    }

    pub fn from_generated(key: String) -> Self {
        LicenceKey(key)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for LicenceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LicenceKey({})", mask_key(&self.0))
    }
}

/// Shows only the start of a key or secret, for logs.
pub fn mask_key(key: &str) -> String {
    let shown: String = key.chars().take(5).collect();
    format!("{shown}***")
}

/// An app secret as presented. Never shown in full.
#[derive(Clone)]
pub struct AppSecret(String);

impl AppSecret {
    pub fn parse(raw: &str) -> Result<Self, CoreError> {
        let raw = require("app_secret", raw)?;
        if raw.len() > 256 {
            // Longer than any secret the service makes: no app can have it.
            return Err(CoreError::InvalidAppSecret);
        }
        Ok(AppSecret(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AppSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AppSecret({})", mask_key(&self.0))
    }
}

/// An app version string: 1 to 64 characters, no control characters.
pub fn parse_version(raw: &str) -> Result<String, CoreError> {
    let raw = require("version", raw)?;
    if raw.chars().count() > 64 || has_control(raw) {
        return Err(CoreError::invalid(
            "version",
            "version must be 1 to 64 characters without control characters",
        ));
    }
    Ok(raw.to_owned())
}

/// An app name: 1 to 128 characters, no control characters.
pub fn parse_app_name(raw: &str) -> Result<String, CoreError> {
    let raw = require("name", raw.trim())?;
    if raw.chars().count() > 128 || has_control(raw) {
        return Err(CoreError::invalid(
            "name",
            "name must be 1 to 128 characters without control characters",
        ));
    }
    Ok(raw.to_owned())
}

/// The file name a download announces: 1 to 255 characters, no path separators, no control
/// characters, not `.` or `..`.
pub fn parse_filename(raw: &str) -> Result<String, CoreError> {
    let raw = require("filename", raw)?;
    let bad = raw.chars().count() > 255
        || has_control(raw)
        || raw.contains(['/', '\\'])
        || raw == "."
        || raw == "..";
    if bad {
        return Err(CoreError::invalid(
            "filename",
            "filename must be 1 to 255 characters without path separators or control characters",
        ));
    }
    Ok(raw.to_owned())
}

#[cfg(test)]
mod tests {
    use licensing::ErrorCode;

    use super::*;

    fn code<T>(r: Result<T, CoreError>) -> Option<ErrorCode> {
        r.err().map(|e| e.code())
    }

    #[test]
    fn usernames_count_code_points_and_refuse_control_characters() {
        assert_eq!(code(Username::parse("username", "")), Some(ErrorCode::MissingField));
        assert_eq!(code(Username::parse("username", "ab")), Some(ErrorCode::InvalidField));
        assert!(Username::parse("username", "abc").is_ok());
        assert!(Username::parse("username", &"é".repeat(64)).is_ok());
        assert_eq!(code(Username::parse("username", &"a".repeat(65))), Some(ErrorCode::InvalidField));
        assert_eq!(code(Username::parse("username", "bo\nb")), Some(ErrorCode::InvalidField));
        assert_eq!(
            Username::parse("username", " Bob ").map(|u| u.as_str().to_owned()).ok(),
            Some(" Bob ".into())
        );
    }

    #[test]
    fn passwords_are_limited_in_bytes_and_never_shown() {
        assert_eq!(code(Password::parse("password", "")), Some(ErrorCode::MissingField));
        assert!(Password::parse("password", &"a".repeat(256)).is_ok());
        assert_eq!(code(Password::parse("password", &"é".repeat(129))), Some(ErrorCode::InvalidField));
        let p = Password::parse("password", "hunter2").expect("valid");
        assert!(!format!("{p:?}").contains("hunter2"));
    }

    #[test]
    fn emails_need_exactly_one_at_with_text_around_it() {
        for bad in ["a", "@b", "a@", "a@b@c"] {
            assert_eq!(code(Email::parse(bad)), Some(ErrorCode::InvalidField), "{bad}");
        }
        assert_eq!(code(Email::parse("")), Some(ErrorCode::MissingField));
        assert!(Email::parse("a@b").is_ok());
        let long = format!("{}@b.c", "a".repeat(251));
        assert!(Email::parse(&format!("{}@b.c", "a".repeat(250))).is_ok());
        assert_eq!(code(Email::parse(&long)), Some(ErrorCode::InvalidField));
    }

    #[test]
    fn licence_keys_ignore_whitespace_and_case() {
        let k = LicenceKey::parse("licence", "  abcde-fghij \n").expect("valid");
        assert_eq!(k.as_str(), "ABCDE-FGHIJ");
        assert_eq!(code(LicenceKey::parse("licence", "   ")), Some(ErrorCode::MissingField));
        assert!(LicenceKey::parse_optional("licence", " ").expect("valid").is_none());
        assert!(!format!("{k:?}").contains("FGHIJ"));
    }

    #[test]
    fn optional_fields_have_upper_bounds() {
        assert!(Hwid::parse_optional("").expect("valid").is_none());
        assert!(Hwid::parse_optional(&"h".repeat(256)).expect("valid").is_some());
        assert_eq!(code(Hwid::parse_optional(&"h".repeat(257))), Some(ErrorCode::InvalidField));
        assert!(parse_nonce(&"n".repeat(128)).is_ok());
        assert_eq!(code(parse_nonce(&"n".repeat(129))), Some(ErrorCode::InvalidField));
        assert_eq!(code(parse_version("")), Some(ErrorCode::MissingField));
        assert_eq!(code(parse_version(&"v".repeat(65))), Some(ErrorCode::InvalidField));
        assert!(parse_version(&"v".repeat(64)).is_ok());
    }

    #[test]
    fn filenames_cannot_name_paths() {
        for bad in ["a/b", "..", "a\\b", "a\u{0}"] {
            assert_eq!(code(parse_filename(bad)), Some(ErrorCode::InvalidField), "{bad:?}");
        }
        assert!(parse_filename("app-1.2.exe").is_ok());
    }
}
