//! Property-based fuzzing of everything the gateway does with untrusted bytes: body parsing in
//! both encodings, the form-to-request translation of every action, typed fields, the caller's
//! address and the download header. Run longer with `PROPTEST_CASES=N cargo test -p http-gateway
//! --lib fuzz` (CI does, for about a minute).

use std::net::SocketAddr;

use bytes::Bytes;
use licensing::{ErrorCode, v1};
use proptest::prelude::*;
use warp::http::{HeaderMap, HeaderValue};

use crate::{
    client_addr::client_address,
    forms::{self, Caller, Form, FromForm},
    transfer::content_disposition,
};

const FIELDS: &[&str] = &[
    "action",
    "username",
    "password",
    "email",
    "hwid",
    "nonce",
    "app_secret",
    "licence",
    "licence_key",
    "developer_username",
    "develoer_password",
    "developer_password",
    "user_id",
    "status",
    "version",
    "amount",
    "access",
    "expire_date",
];

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().build().expect("runtime").block_on(f)
}

/// Runs every action's translation over a form; none may panic, whatever the form holds.
fn translate_all(form: &Form) {
    let caller = Caller { address: "192.0.2.1".into() };
    let _ = v1::RegisterRequest::from_form(form, &caller);
    let _ = v1::LoginRequest::from_form(form, &caller);
    let _ = v1::HeartbeatRequest::from_form(form, &caller);
    let _ = v1::DownloadRequest::from_form(form, &caller);
    let _ = v1::RedeemRequest::from_form(form, &caller);
    let _ = v1::GetAppRequest::from_form(form, &caller);
    let _ = v1::RenewSecretRequest::from_form(form, &caller);
    let _ = v1::SetAppOnlineRequest::from_form(form, &caller);
    let _ = v1::SetAppVersionRequest::from_form(form, &caller);
    let _ = v1::ListLicencesRequest::from_form(form, &caller);
    let _ = v1::ListUsersRequest::from_form(form, &caller);
    let _ = v1::CreateLicencesRequest::from_form(form, &caller);
    let _ = v1::DeleteLicenceRequest::from_form(form, &caller);
    let _ = v1::BanLicenceRequest::from_form(form, &caller);
    let _ = v1::UnbanLicenceRequest::from_form(form, &caller);
    let _ = v1::DeleteUserRequest::from_form(form, &caller);
    let _ = v1::ResetHwidRequest::from_form(form, &caller);
    let _ = v1::UploadFileHeader::from_form(form, &caller);
    let _ = forms::user_id(form);
    let _ = forms::online_status(form);
    let _ = forms::unsigned(form, "amount");
    let _ = forms::expire_date(form);
}

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![proptest::sample::select(FIELDS).prop_map(str::to_owned), ".{0,12}"]
}

fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

// ---------------------------------------------------------------------------------------------
// Oracles: each field rule as the contract words it, written out by hand (no chrono, no
// `str::parse`), so a parser that drifts from the contract disagrees with them.
// ---------------------------------------------------------------------------------------------

/// `expire_date` is `YYYY-MM-DD HH:MM:SS` in UTC: four digits, then two for each other part,
/// exactly those separators, a day that exists in that month, no leap second. Answers the Unix
/// time it names.
fn contract_expire_date(raw: &str) -> Option<i64> {
    let bytes = raw.as_bytes();
    if bytes.len() != 19 {
        return None;
    }
    for (i, &b) in bytes.iter().enumerate() {
        let expected = match i {
            4 | 7 => Some(b'-'),
            10 => Some(b' '),
            13 | 16 => Some(b':'),
            _ => None,
        };
        let fits = match expected {
            Some(separator) => b == separator,
            None => b.is_ascii_digit(),
        };
        if !fits {
            return None;
        }
    }
    let number =
        |from: usize, to: usize| bytes[from..to].iter().fold(0i64, |n, b| n * 10 + i64::from(b - b'0'));
    let (year, month, day) = (number(0, 4), number(5, 7), number(8, 10));
    let (hour, minute, second) = (number(11, 13), number(14, 16), number(17, 19));
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&month) || day < 1 || day > month_days[(month - 1) as usize] {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    // Days since 1970-01-01, counted the long way: whole years, then whole months.
    let mut days = 0i64;
    if year >= 1970 {
        days += (1970..year)
            .map(|y| if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) { 366 } else { 365 })
            .sum::<i64>();
    } else {
        days -= (year..1970)
            .map(|y| if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) { 366 } else { 365 })
            .sum::<i64>();
    }
    days += month_days[..(month - 1) as usize].iter().sum::<i64>() + day - 1;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// `user_id` is the id `get_users` shows: decimal digits, optionally negative (naming nobody, so
/// the core answers `not_found`), within a signed 64-bit integer.
fn contract_user_id(raw: &str) -> Option<i64> {
    let (negative, digits) = match raw.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, raw),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut value: i128 = 0;
    for b in digits.bytes() {
        value = value * 10 + i128::from(b - b'0');
        if value > i128::from(i64::MAX) + 1 {
            return None;
        }
    }
    let value = if negative { -value } else { value };
    i64::try_from(value).ok()
}

/// `amount` and `access` are whole numbers (the core checks their ranges): decimal digits only.
fn contract_whole_number(raw: &str) -> Option<u32> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.bytes().try_fold(0u32, |n, b| n.checked_mul(10)?.checked_add(u32::from(b - b'0')))
}

fn form_with(name: &str, value: &str) -> Form {
    Form::parse_urlencoded(format!("{}={}", urlencode(name), urlencode(value)).as_bytes())
}

/// Empty is `missing_field`; anything else the oracle refuses is `invalid_field`.
fn refusal(raw: &str) -> ErrorCode {
    if raw.is_empty() { ErrorCode::MissingField } else { ErrorCode::InvalidField }
}

/// Text shaped like a date or a number more often than chance would make it.
fn date_like() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u32..10_000, 0u32..14, 0u32..33, 0u32..25, 0u32..61, 0u32..62)
            .prop_map(|(y, mo, d, h, mi, s)| format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")),
        "[0-9]{1,5}-[0-9]{1,3}-[0-9]{1,3}[ T][0-9]{1,3}:[0-9]{1,3}:[0-9]{1,3}",
        "[0-9 :+-]{0,22}",
        ".{0,24}",
    ]
}

fn number_like() -> impl Strategy<Value = String> {
    prop_oneof!["[-+]?[0-9]{0,21}", "[0-9 +.e-]{0,6}", ".{0,8}", any::<i64>().prop_map(|n| n.to_string())]
}

proptest! {
    #[test]
    fn fuzz_expire_date_follows_the_contract(raw in date_like()) {
        let parsed = forms::expire_date(&form_with("expire_date", &raw));
        match contract_expire_date(&raw) {
            Some(seconds) => prop_assert_eq!(parsed.map(|t| (t.seconds, t.nanos)).ok(), Some((seconds, 0))),
            None => prop_assert_eq!(parsed.err().map(|e| e.code), Some(refusal(&raw))),
        }
    }

    #[test]
    fn fuzz_user_id_follows_the_contract(raw in number_like()) {
        let parsed = forms::user_id(&form_with("user_id", &raw));
        match contract_user_id(&raw) {
            Some(id) => prop_assert_eq!(parsed.ok(), Some(id)),
            None => prop_assert_eq!(parsed.err().map(|e| e.code), Some(refusal(&raw))),
        }
    }

    #[test]
    fn fuzz_whole_numbers_follow_the_contract(raw in number_like()) {
        let parsed = forms::unsigned(&form_with("amount", &raw), "amount");
        match contract_whole_number(&raw) {
            Some(n) => prop_assert_eq!(parsed.ok(), Some(n)),
            None => prop_assert_eq!(parsed.err().map(|e| e.code), Some(refusal(&raw))),
        }
    }

    #[test]
    fn fuzz_online_status_follows_the_contract(raw in prop_oneof!["[01]", number_like()]) {
        let parsed = forms::online_status(&form_with("status", &raw));
        match raw.as_str() {
            "0" => prop_assert_eq!(parsed.ok(), Some(false)),
            "1" => prop_assert_eq!(parsed.ok(), Some(true)),
            _ => prop_assert_eq!(parsed.err().map(|e| e.code), Some(refusal(&raw))),
        }
    }

    #[test]
    fn fuzz_arbitrary_bodies_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..2048),
        content_type in prop_oneof![
            Just(None),
            Just(Some("application/x-www-form-urlencoded".to_owned())),
            Just(Some("multipart/form-data; boundary=XyZ".to_owned())),
            Just(Some("multipart/form-data".to_owned())),
            ".{0,40}".prop_map(Some),
        ],
    ) {
        let result = block_on(Form::parse(content_type.as_deref(), Bytes::from(body)));
        if let Ok(form) = result {
            translate_all(&form);
        }
    }

    #[test]
    fn fuzz_multipart_bodies_never_panic(
        parts in proptest::collection::vec((field_name(), proptest::collection::vec(any::<u8>(), 0..64)), 0..8),
        junk in proptest::collection::vec(any::<u8>(), 0..32),
        truncate in any::<bool>(),
    ) {
        let mut body = Vec::new();
        for (name, value) in &parts {
            body.extend_from_slice(b"--XyZ\r\nContent-Disposition: form-data; name=\"");
            body.extend_from_slice(name.as_bytes());
            body.extend_from_slice(b"\"\r\n\r\n");
            body.extend_from_slice(value);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(&junk);
        if !truncate {
            body.extend_from_slice(b"--XyZ--\r\n");
        }
        let result = block_on(Form::parse(Some("multipart/form-data; boundary=XyZ"), Bytes::from(body)));
        if let Ok(form) = result {
            translate_all(&form);
        }
    }

    /// Encoding a form and parsing it back gives each field's last value, as PHP would.
    #[test]
    fn fuzz_urlencoded_round_trip_keeps_the_last_value(
        pairs in proptest::collection::vec((proptest::sample::select(FIELDS), ".{0,40}"), 1..12),
    ) {
        let body = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let form = Form::parse_urlencoded(body.as_bytes());
        for (name, _) in &pairs {
            let last = pairs.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone());
            prop_assert_eq!(form.text(name).ok(), last);
        }
        translate_all(&form);
    }

    #[test]
    fn fuzz_caller_address_never_panics(
        forwarded in proptest::collection::vec(".{0,60}", 0..3),
        trusted in any::<bool>(),
    ) {
        let mut headers = HeaderMap::new();
        for value in &forwarded {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.append("x-forwarded-for", v);
            }
        }
        let peer: SocketAddr = "127.0.0.1:4000".parse().expect("addr");
        let proxies = if trusted { vec!["127.0.0.1/32".parse().expect("net")] } else { Vec::new() };
        let address = client_address(Some(peer), &headers, &proxies);
        if !trusted {
            prop_assert_eq!(address, Some(peer.ip()));
        }
    }

    #[test]
    fn fuzz_download_filenames_make_valid_headers(name in ".{0,300}") {
        let header = content_disposition(&name);
        let text = header.to_str().expect("visible ASCII");
        prop_assert!(text.starts_with("attachment; filename=\""));
        prop_assert!(!text.chars().any(char::is_control));
    }
}
