//! The HTTP API reference that ships with the project (`docs/http-api.md`) covers the whole API:
//! every action, every error code with its HTTP status, and every claim of the response token.

use core_service::domain::token::Claims;
use licensing::ErrorCode;

fn reference() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/http-api.md"))
        .expect("docs/http-api.md")
}

const ACTIONS: &[&str] = &[
    "register",
    "login",
    "connect",
    "download",
    "redeem",
    "get_app_data",
    "get_licences",
    "get_users",
    "create_licences",
    "delete_licence",
    "ban_licence",
    "unban_licence",
    "delete_user",
    "reset_hwid",
    "change_status",
    "change_version",
    "renew_secret",
    "upload_file",
];

#[test]
fn every_action_has_a_section() {
    let doc = reference();
    let missing: Vec<&&str> = ACTIONS
        .iter()
        .filter(|action| !doc.lines().any(|l| l.starts_with('#') && l.contains(&format!("`{action}`"))))
        .collect();
    assert!(missing.is_empty(), "actions without a heading in docs/http-api.md: {missing:?}");
}

#[test]
fn every_error_code_is_listed_with_its_http_status() {
    let doc = reference();
    for code in ErrorCode::ALL {
        let (name, status) = (code.as_str(), code.http_status().to_string());
        assert!(
            doc.lines()
                .any(|l| l.starts_with('|') && l.contains(&format!("`{name}`")) && l.contains(&status)),
            "docs/http-api.md has no table row for `{name}` with HTTP {status}"
        );
    }
}

#[test]
fn every_token_claim_is_explained() {
    let full = Claims {
        act: "login",
        st: "success".into(),
        nonce: String::new(),
        iat: 0,
        exp: 0,
        sub: Some(String::new()),
        hwid: Some(String::new()),
        lic: Some("active"),
        lvl: Some(0),
        lexp: Some(0),
        pings: Some(0),
        sha256: Some(String::new()),
    };
    let claims = serde_json::to_value(&full).expect("claims serialise");
    let doc = reference();
    let names: Vec<&String> = claims.as_object().expect("an object").keys().collect();
    let missing: Vec<&&String> = names.iter().filter(|name| !doc.contains(&format!("`{name}`"))).collect();
    assert!(missing.is_empty(), "claims docs/http-api.md does not explain: {missing:?}");
}
