//! Table-driven bad input through the legacy HTTP API, one rule of the contract's "Field rules"
//! (and of each action's fields) per row: the code, the HTTP status, a message naming the field,
//! no response token, and nothing changed in the database. The edges of each range are also
//! sent the other way, and must be accepted.

mod common;

use chrono::{Duration, Utc};
use common::{Backend, gateway::*};

on_both_backends! {
    register_field_rules => register_field_rules;
    client_field_rules => client_field_rules;
    developer_field_rules => developer_field_rules;
    licence_keys_ignore_whitespace_and_case => licence_keys_ignore_whitespace_and_case;
}

/// What a case sends for its field.
#[derive(Clone, Debug)]
enum Val {
    /// Percent-encoded from this text.
    Text(String),
    /// Sent exactly as written (e.g. invalid UTF-8 escapes).
    Raw(&'static str),
    /// The field is left out.
    Absent,
}

fn t(text: impl Into<String>) -> Val {
    Val::Text(text.into())
}

/// The base form with each edited field replaced (or removed, or added at the end).
fn edited(base: &[(&str, String)], edits: &[(&str, Val)]) -> String {
    let encode = |name: &str, val: &Val| match val {
        Val::Text(text) => Some(format!("{name}={}", enc(text))),
        Val::Raw(raw) => Some(format!("{name}={raw}")),
        Val::Absent => None,
    };
    let mut parts: Vec<String> = Vec::new();
    for (name, value) in base {
        match edits.iter().find(|(field, _)| field == name) {
            Some((_, val)) => parts.extend(encode(name, val)),
            None => parts.push(format!("{name}={}", enc(value))),
        }
    }
    for (field, val) in edits {
        if !base.iter().any(|(name, _)| name == field) {
            parts.extend(encode(field, val));
        }
    }
    parts.join("&")
}

fn body_with(base: &[(&str, String)], field: &str, val: &Val) -> String {
    edited(base, &[(field, val.clone())])
}

struct Refusal {
    action: &'static str,
    field: &'static str,
    val: Val,
    code: &'static str,
    /// What the message must mention: the field's name.
    named: &'static str,
}

fn missing(action: &'static str, field: &'static str, val: Val) -> Refusal {
    Refusal { action, field, val, code: "missing_field", named: field }
}

fn invalid(action: &'static str, field: &'static str, val: Val) -> Refusal {
    Refusal { action, field, val, code: "invalid_field", named: field }
}

/// Sends each refusal to `path` and checks the answer and that nothing changed.
async fn refuse_all(stack: &TestStack, path: &str, base: &[(&str, String)], cases: Vec<Refusal>) {
    let before = snapshot(&stack.core).await;
    for case in cases {
        let body = body_with(base, case.field, &case.val);
        let reply = stack.post(&format!("{path}?action={}", case.action), body).await;
        let what = format!("{} {}={:?}", case.action, case.field, case.val);
        assert_eq!(reply.status, 400, "{what}: {reply}");
        let json = reply.json();
        assert_eq!(json["status"], case.code, "{what}: {reply}");
        let message = expect_error(&reply, 400, case.code);
        assert!(message.contains(case.named), "{what}: the message names `{}`: {message}", case.named);
        if case.code == "missing_field" {
            // One wording, whether the gateway or the core noticed, on either endpoint.
            assert!(message.starts_with("missing field `") && message.ends_with('`'), "{what}: {message}");
        }
        assert_eq!(snapshot(&stack.core).await, before, "{what}: nothing changed");
    }
}

fn long_email(len: usize) -> String {
    let domain = "@example.com";
    format!("{}{domain}", "a".repeat(len - domain.len()))
}

/// An address of `len` characters, most of them two bytes long.
fn long_accented_email(len: usize) -> String {
    let domain = "@example.com";
    format!("{}{domain}", "é".repeat(len - domain.len()))
}

async fn register_field_rules(backend: Backend) {
    let stack = TestStack::start(backend).await;
    let fx = stack.fixture("dev-register-rules").await;
    let base = vec![
        ("username", "valid-name".to_owned()),
        ("email", "valid@example.com".to_owned()),
        ("password", "pw-123".to_owned()),
        ("app_secret", fx.secret.clone()),
    ];
    let r = "register";
    let cases = vec![
        missing(r, "username", Val::Absent),
        missing(r, "username", t("")),
        invalid(r, "username", t("ab")),
        invalid(r, "username", t("éé")),
        invalid(r, "username", t("x".repeat(65))),
        invalid(r, "username", t("é".repeat(65))),
        invalid(r, "username", t("tab\there")),
        invalid(r, "username", t("new\nline")),
        invalid(r, "username", t("nul\0byte")),
        invalid(r, "username", t("del\u{7f}x")),
        invalid(r, "username", t("c1\u{85}x")),
        invalid(r, "username", Val::Raw("%FF%FEabc")),
        missing(r, "password", Val::Absent),
        missing(r, "password", t("")),
        invalid(r, "password", t("p".repeat(257))),
        invalid(r, "password", t("é".repeat(129))),
        missing(r, "email", Val::Absent),
        missing(r, "email", t("")),
        invalid(r, "email", t("no-at-sign")),
        invalid(r, "email", t("two@@example.com")),
        invalid(r, "email", t("a@b@example.com")),
        invalid(r, "email", t("@example.com")),
        invalid(r, "email", t("user@")),
        invalid(r, "email", t(long_email(255))),
        invalid(r, "email", t(long_accented_email(255))),
        invalid(r, "hwid", t("h".repeat(257))),
        invalid(r, "hwid", t("é".repeat(257))),
        invalid(r, "nonce", t("n".repeat(129))),
        invalid(r, "nonce", t("é".repeat(129))),
        missing(r, "app_secret", Val::Absent),
        missing(r, "app_secret", t("")),
    ];
    refuse_all(&stack, ACTION, &base, cases).await;
    assert!(stack.users(&fx).await.is_empty(), "no user created");

    // The edges of each rule are accepted.
    let accepted: Vec<(&str, String)> = vec![
        ("username", "abc".into()),
        ("username", "ééé".into()),
        ("username", "x".repeat(64)),
        ("username", "é".repeat(64)),
        ("username", "名前です".into()),
        ("password", "p".into()),
        ("password", "p".repeat(256)),
        ("password", "é".repeat(128)),
        ("email", long_email(254)),
        ("email", "a@b".into()),
        ("email", long_accented_email(254)),
        ("hwid", "h".repeat(256)),
        ("hwid", "é".repeat(256)),
        ("nonce", "n".repeat(128)),
        ("nonce", "é".repeat(128)),
    ];
    let mut expected_users = Vec::new();
    for (i, (field, value)) in accepted.iter().enumerate() {
        let username = if *field == "username" { value.clone() } else { format!("edge-{i}") };
        let mut base = base.clone();
        base[0].1 = username.clone();
        let body = body_with(&base, field, &t(value.as_str()));
        let reply = stack.client("register", body).await;
        let nonce = if *field == "nonce" { value.as_str() } else { "" };
        let (_, claims) = expect_signed_ok(&reply, &fx, "register", nonce);
        assert_eq!(claims["sub"], username.as_str(), "{field}");
        if *field == "hwid" {
            assert_eq!(claims["hwid"], value.as_str(), "the whole HWID is bound");
        }
        if *field == "password" {
            // The whole password was kept: it logs in, and one byte less does not.
            let login = |password: &str| {
                format!(
                    "username={}&password={}&app_secret={}",
                    enc(&username),
                    enc(password),
                    enc(&fx.secret)
                )
            };
            expect_signed_ok(&stack.client("login", login(value)).await, &fx, "login", "");
            let mut shorter = value.clone();
            shorter.pop();
            if !shorter.is_empty() {
                let reply = stack.client("login", login(&shorter)).await;
                expect_signed_error(&reply, 401, "invalid_credentials", &fx, "login", "");
            }
        }
        expected_users.push(username);
    }
    assert_eq!(stack.usernames(&fx).await, expected_users);
    stack.stop().await;
}

async fn client_field_rules(backend: Backend) {
    let stack = TestStack::start(backend).await;
    let fx = stack.fixture("dev-client-rules").await;
    let key = stack.create_keys(&fx, 1, 1, &date_in(10)).await.remove(0);
    stack.register_ok(&fx, "alice", "hwid=HW-A").await;
    let base = vec![
        ("username", "alice".to_owned()),
        ("password", "alice-pw".to_owned()),
        ("app_secret", fx.secret.clone()),
        ("hwid", "HW-A".to_owned()),
        ("licence", key.clone()),
    ];
    let mut cases = Vec::new();
    for action in ["login", "connect", "download", "redeem"] {
        cases.extend([
            missing(action, "username", Val::Absent),
            missing(action, "username", t("")),
            invalid(action, "username", t("ab")),
            invalid(action, "username", t("x".repeat(65))),
            invalid(action, "username", t("ali\u{1}ce")),
            missing(action, "password", Val::Absent),
            missing(action, "password", t("")),
            invalid(action, "password", t("p".repeat(257))),
            invalid(action, "hwid", t("h".repeat(257))),
            invalid(action, "nonce", t("n".repeat(129))),
            missing(action, "app_secret", Val::Absent),
            missing(action, "app_secret", t("")),
        ]);
    }
    cases.push(missing("redeem", "licence", Val::Absent));
    cases.push(missing("redeem", "licence", t("")));
    cases.push(missing("redeem", "licence", t(" \t\r\n ")));
    refuse_all(&stack, ACTION, &base, cases).await;

    // The same base is accepted as it stands.
    let (_, claims) = expect_signed_ok(
        &stack.client("redeem", body_with(&base, "nonce", &t("ok"))).await,
        &fx,
        "redeem",
        "ok",
    );
    assert_eq!(claims["lic"], "active");
    stack.stop().await;
}

async fn developer_field_rules(backend: Backend) {
    let stack = TestStack::start(backend).await;
    let fx = stack.fixture("dev-admin-rules").await;
    let key = stack.create_keys(&fx, 1, 1, &date_in(10)).await.remove(0);
    stack.register_ok(&fx, "someone", "hwid=HW-S").await;
    let user_id = stack.users(&fx).await[0]["id"].as_i64().expect("id");
    let base = vec![
        ("developer_username", fx.developer.clone()),
        ("develoer_password", fx.password.clone()),
        ("app_secret", fx.secret.clone()),
        ("version", "3.1".to_owned()),
        ("status", "0".to_owned()),
        ("amount", "2".to_owned()),
        ("access", "3".to_owned()),
        ("expire_date", date_in(10)),
        ("user_id", user_id.to_string()),
        ("licence_key", key.clone()),
    ];
    let just_past = (Utc::now() - Duration::minutes(1)).format(DATE_FORMAT).to_string();
    let mut cases = vec![
        missing("get_app_data", "developer_username", Val::Absent),
        missing("get_app_data", "developer_username", t("")),
        invalid("get_app_data", "developer_username", t("ab")),
        invalid("get_app_data", "developer_username", t("d".repeat(65))),
        invalid("get_app_data", "developer_username", t("dev\tname")),
        Refusal { named: "password", ..missing("get_app_data", "develoer_password", Val::Absent) },
        Refusal { named: "password", ..missing("get_app_data", "develoer_password", t("")) },
        Refusal { named: "password", ..invalid("get_app_data", "develoer_password", t("p".repeat(257))) },
        missing("get_app_data", "app_secret", Val::Absent),
        missing("get_app_data", "app_secret", t("")),
        missing("change_version", "version", Val::Absent),
        missing("change_version", "version", t("")),
        invalid("change_version", "version", t("v".repeat(65))),
        invalid("change_version", "version", t("é".repeat(65))),
        missing("change_status", "status", Val::Absent),
        missing("change_status", "status", t("")),
    ];
    for bad in ["2", "-1", "on", "true", "yes", "0.0"] {
        cases.push(invalid("change_status", "status", t(bad)));
    }
    cases.extend([
        missing("create_licences", "amount", Val::Absent),
        missing("create_licences", "amount", t("")),
    ]);
    for bad in ["0", "501", "-1", "abc", "1.5", "99999999999", "1e2"] {
        cases.push(invalid("create_licences", "amount", t(bad)));
    }
    cases.extend([
        missing("create_licences", "access", Val::Absent),
        missing("create_licences", "access", t("")),
    ]);
    for bad in ["10", "-1", "x", "99", "2.5"] {
        cases.push(invalid("create_licences", "access", t(bad)));
    }
    cases.extend([
        missing("create_licences", "expire_date", Val::Absent),
        missing("create_licences", "expire_date", t("")),
    ]);
    for bad in [
        "2030-01-01",
        "2030-13-01 00:00:00",
        "2030-02-30 10:00:00",
        "2030-01-01 25:00:00",
        "2030-12-31 23:59:60",
        "2030-1-01 00:00:00",
        "+2030-01-01 00:00:00",
        "2030-01-01T00:00:00",
        "01/01/2030 00:00:00",
        "tomorrow",
        "2000-01-01 00:00:00",
        just_past.as_str(),
    ] {
        cases.push(invalid("create_licences", "expire_date", t(bad)));
    }
    for action in ["delete_user", "reset_hwid"] {
        cases.extend([missing(action, "user_id", Val::Absent), missing(action, "user_id", t(""))]);
        for bad in ["abc", "1.5", "1e3", "0x1", "one", "+1", " 1"] {
            cases.push(invalid(action, "user_id", t(bad)));
        }
    }
    for action in ["delete_licence", "ban_licence", "unban_licence"] {
        cases.extend([
            missing(action, "licence_key", Val::Absent),
            missing(action, "licence_key", t("")),
            missing(action, "licence_key", t("  \t ")),
        ]);
    }
    refuse_all(&stack, ADMIN, &base, cases).await;

    // The edges are accepted.
    let admin_url = |action: &str| format!("{ADMIN}?action={action}");
    for (amount, access) in [("1", "0"), ("500", "9")] {
        let body = edited(&base, &[("amount", t(amount)), ("access", t(access))]);
        let keys = expect_ok(&stack.post(&admin_url("create_licences"), body).await);
        assert_eq!(keys.as_array().expect("array").len(), amount.parse::<usize>().expect("n"));
    }
    let rows = stack.licences(&fx).await;
    assert_eq!(rows.len(), 1 + 1 + 500);
    assert_eq!(rows.iter().filter(|r| r["access"] == 9).count(), 500);
    let far = "9999-12-31 23:59:59";
    let body = body_with(&base, "expire_date", &t(far));
    let reply = stack.post(&admin_url("create_licences"), body).await;
    let new_keys = expect_ok(&reply);
    let new_key = new_keys[0].as_str().expect("key");
    assert_eq!(stack.licence_row(&fx, new_key).await["expire_time"], far);
    let version = "é".repeat(64);
    let body = body_with(&base, "version", &t(version.as_str()));
    expect_ok(&stack.post(&admin_url("change_version"), body).await);
    assert_eq!(expect_ok(&stack.admin(&fx, "get_app_data", "").await)["version"], version.as_str());
    stack.stop().await;
}

async fn licence_keys_ignore_whitespace_and_case(backend: Backend) {
    let stack = TestStack::start(backend).await;
    let fx = stack.fixture("dev-key-forms").await;
    let keys = stack.create_keys(&fx, 3, 2, &date_in(10)).await;
    for key in &keys {
        assert_eq!(key, &key.to_uppercase(), "keys are shown in upper case");
    }
    let mixed = |key: &str| -> String {
        key.chars().enumerate().map(|(i, c)| if i % 2 == 0 { c.to_ascii_lowercase() } else { c }).collect()
    };

    let typed = format!(" \t{}\r\n ", keys[0].to_lowercase());
    stack.register_ok(&fx, "kim", &format!("licence={}", enc(&typed))).await;
    let row = stack.licence_row(&fx, &keys[0]).await;
    assert_eq!(row["usedby"], "kim");
    let typed = format!("  {}  ", mixed(&keys[1]));
    let reply = stack.client("redeem", user_form(&fx, "kim", &format!("licence={}", enc(&typed)))).await;
    expect_signed_ok(&reply, &fx, "redeem", "");
    assert_eq!(stack.licence_row(&fx, &keys[1]).await["usedby"], "kim");

    let named = |key: String| format!("licence_key={}", enc(&key));
    expect_ok(&stack.admin(&fx, "ban_licence", &named(format!("  {}\n", keys[2].to_lowercase()))).await);
    assert_eq!(stack.licence_row(&fx, &keys[2]).await["banned"], 1);
    expect_ok(&stack.admin(&fx, "unban_licence", &named(format!("\t{}", mixed(&keys[2])))).await);
    assert_eq!(stack.licence_row(&fx, &keys[2]).await["banned"], 0);
    expect_ok(&stack.admin(&fx, "delete_licence", &named(keys[2].to_lowercase())).await);
    expect_error(&stack.admin(&fx, "delete_licence", &named(keys[2].clone())).await, 404, "not_found");
    let shown: Vec<String> =
        stack.licences(&fx).await.iter().map(|r| r["licence"].as_str().expect("key").to_owned()).collect();
    assert_eq!(shown, keys[..2].to_vec());
    stack.stop().await;
}
