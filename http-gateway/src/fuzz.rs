//! Property-based fuzzing of everything the gateway does with untrusted bytes: body parsing in
//! both encodings, the form-to-request translation of every action, typed fields, the caller's
//! address and the download header. Run longer with `PROPTEST_CASES=N cargo test -p http-gateway
//! --lib fuzz` (CI does, for about a minute).

use std::net::SocketAddr;

use bytes::Bytes;
use licensing::v1;
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

proptest! {
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
