//! Property-based fuzzing of the core's validation: every parser accepts exactly what the
//! contract's field rules allow, and nothing panics on any input. Run longer with
//! `PROPTEST_CASES=N cargo test -p core-service --lib fuzz` (CI does, for about a minute).

use licensing::ErrorCode;
use proptest::prelude::*;

use super::*;

fn code<T>(r: Result<T, CoreError>) -> Option<ErrorCode> {
    r.err().map(|e| e.code())
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![".{0,80}", "[a-zA-Z0-9@ .\\-\\t\\n]{0,300}", "\\PC{0,70}"]
}

proptest! {
    #[test]
    fn fuzz_usernames(raw in any_text()) {
        let chars = raw.chars().count();
        let expected = if raw.is_empty() {
            Some(ErrorCode::MissingField)
        } else if !(3..=64).contains(&chars) || raw.chars().any(char::is_control) {
            Some(ErrorCode::InvalidField)
        } else {
            None
        };
        let parsed = Username::parse("username", &raw);
        if let Ok(u) = &parsed {
            prop_assert_eq!(u.as_str(), raw.as_str(), "compared exactly, never normalised");
        }
        prop_assert_eq!(code(parsed), expected);
    }

    #[test]
    fn fuzz_passwords(raw in any_text()) {
        let expected = match raw.len() {
            0 => Some(ErrorCode::MissingField),
            1..=256 => None,
            _ => Some(ErrorCode::InvalidField),
        };
        let parsed = Password::parse("password", &raw);
        if let Ok(p) = &parsed {
            let shown = format!("{:?}", p);
            prop_assert_eq!(shown.as_str(), "Password(***)");
        }
        prop_assert_eq!(code(parsed), expected);
    }

    #[test]
    fn fuzz_emails(raw in any_text()) {
        let parts: Vec<&str> = raw.split('@').collect();
        let valid = raw.chars().count() <= 254
            && parts.len() == 2
            && !parts[0].is_empty()
            && !parts[1].is_empty()
            && !raw.chars().any(char::is_control);
        let expected = if raw.is_empty() { Some(ErrorCode::MissingField) } else if valid { None } else { Some(ErrorCode::InvalidField) };
        prop_assert_eq!(code(Email::parse(&raw)), expected);
    }

    #[test]
    fn fuzz_optional_fields(raw in any_text()) {
        let chars = raw.chars().count();
        prop_assert_eq!(Hwid::parse_optional(&raw).is_ok(), chars <= 256);
        prop_assert_eq!(parse_nonce(&raw).is_ok(), chars <= 128);
        let version = parse_version(&raw);
        prop_assert_eq!(version.is_ok(), (1..=64).contains(&chars) && !raw.chars().any(char::is_control));
        let _ = parse_filename(&raw);
        let _ = parse_app_name(&raw);
        let _ = AppSecret::parse(&raw);
    }

    /// Keys ignore surrounding whitespace and case: parsing is idempotent and upper-cases.
    #[test]
    fn fuzz_licence_keys(raw in any_text()) {
        if let Ok(Some(key)) = LicenceKey::parse_optional("licence", &raw) {
            prop_assert_eq!(key.as_str(), raw.trim().to_ascii_uppercase());
            let again = LicenceKey::parse("licence", key.as_str()).expect("a parsed key parses again");
            prop_assert_eq!(again.as_str(), key.as_str());
            let lower = LicenceKey::parse("licence", &format!("  {}\t", raw.trim().to_ascii_lowercase()))
                .expect("the lower-case spelling parses too");
            prop_assert_eq!(lower.as_str(), key.as_str());
        }
    }
}
