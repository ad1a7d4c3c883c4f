//! The legacy developer API (`/api/admin.php`) end to end: the real gateway in front of the
//! real core, on SQLite and on PostgreSQL. Every action's success shape and JSON types, the
//! developer-side error codes, and `upload_file` followed by `download`.

mod common;

use base64::Engine;
use common::{Backend, Fixture, gateway::*};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

on_both_backends! {
    app_data_and_settings => app_data_and_settings;
    developer_errors => developer_errors;
    licences => licences;
    users => users;
    other_apps_are_out_of_reach => other_apps_are_out_of_reach;
    upload_then_download => upload_then_download;
    oversized_upload_sent_eagerly => oversized_upload_sent_eagerly;
}

const LICENCE_KEYS: &[&str] = &[
    "id",
    "licence",
    "usedby",
    "isused",
    "expire_time",
    "created",
    "access",
    "redeemed",
    "redeemed_at",
    "banned",
];
const USER_KEYS: &[&str] =
    &["id", "username", "email", "hwid", "joined", "total_pings", "last_seen", "licence_status"];

fn success() -> Value {
    json!({"status": "success"})
}

async fn app_data_and_settings(backend: Backend) {
    let stack = TestStack::start(backend).await;
    let fx = stack.fixture("dev-admin").await;
    stack.register_ok(&fx, "user1", "").await;

    let body = expect_ok(&stack.admin(&fx, "get_app_data", "").await);
    assert_keys(&body, &["status", "appname", "secret", "public", "online", "version", "keys"]);
    assert_eq!(
        body["keys"],
        serde_json::json!([{"kid": kid_of(&fx.public_key), "public": fx.public_key, "state": "signing"}]),
        "one published key, the signing one"
    );
    assert_eq!(body["status"], "success");
    assert_eq!(body["appname"], "dev-admin's app");
    assert_eq!(body["secret"], fx.secret.as_str());
    assert_eq!(body["public"], fx.public_key.as_str());
    let public = body["public"].as_str().expect("public is a string");
    let raw = base64::engine::general_purpose::STANDARD.decode(public).expect("standard, padded base64");
    assert_eq!(raw.len(), 32, "the raw Ed25519 public key");
    assert_eq!(public.len(), 44, "padded");
    assert_eq!(int(&body["online"]), 1);
    assert!(body["version"].is_null(), "{body}");

    // change_version: answered {"status": "success"}, seen by get_app_data and by login.
    assert_eq!(expect_ok(&stack.admin(&fx, "change_version", "version=2.0.1").await), success());
    assert_eq!(expect_ok(&stack.admin(&fx, "get_app_data", "").await)["version"], "2.0.1");
    let reply = stack.client("login", user_form(&fx, "user1", "")).await;
    assert_eq!(expect_signed_ok(&reply, &fx, "login", "").0["app_version"], "2.0.1");
    let long = "é".repeat(64);
    assert_eq!(
        expect_ok(&stack.admin(&fx, "change_version", &format!("version={}", enc(&long))).await),
        success()
    );
    assert_eq!(expect_ok(&stack.admin(&fx, "get_app_data", "").await)["version"], long.as_str());

    // change_status: online is the integer 0 or 1.
    assert_eq!(expect_ok(&stack.admin(&fx, "change_status", "status=0").await), success());
    assert_eq!(int(&expect_ok(&stack.admin(&fx, "get_app_data", "").await)["online"]), 0);
    assert_eq!(expect_ok(&stack.admin(&fx, "change_status", "status=0").await), success(), "idempotent");
    assert_eq!(expect_ok(&stack.admin(&fx, "change_status", "status=1").await), success());
    assert_eq!(int(&expect_ok(&stack.admin(&fx, "get_app_data", "").await)["online"]), 1);

    // renew_secret: the new secret is answered; the old one stops working at once.
    let body = expect_ok(&stack.admin(&fx, "renew_secret", "").await);
    assert_keys(&body, &["status", "secret"]);
    assert_eq!(body["status"], "success");
    let new_secret = body["secret"].as_str().expect("secret is a string").to_owned();
    assert!(!new_secret.is_empty());
    assert_ne!(new_secret, fx.secret);
    expect_error(&stack.admin(&fx, "get_app_data", "").await, 401, "invalid_app_secret");
    expect_error(&stack.client("login", user_form(&fx, "user1", "")).await, 401, "invalid_app_secret");
    let renewed = Fixture { secret: new_secret.clone(), ..fx.clone() };
    let body = expect_ok(&stack.admin(&renewed, "get_app_data", "").await);
    assert_eq!(body["secret"], new_secret.as_str());
    assert_eq!(body["public"], fx.public_key.as_str(), "the signing key stays");
    let reply = stack.client("login", user_form(&renewed, "user1", "")).await;
    expect_signed_ok(&reply, &renewed, "login", "");
    stack.stop().await;
}

async fn developer_errors(backend: Backend) {
    // Each action is tried from its own address, so the failures stay under the throttle.
    let stack = TestStack::trusting_loopback_proxy(backend, |_| {}).await;
    let fx = stack.fixture("dev-owner").await;
    let other = stack.fixture("dev-stranger").await;
    let keys = stack.create_keys(&fx, 1, 1, &date_in(5)).await;
    stack.register_ok(&fx, "victim", "").await;
    let before = snapshot(&stack.core).await;

    let wrong_password = Fixture { password: "not-the-password".into(), ..fx.clone() };
    let unknown = Fixture { developer: "nobody-at-all".into(), ..fx.clone() };
    let bad_secret = Fixture { secret: "f".repeat(64), ..fx.clone() };
    let stolen = Fixture { secret: fx.secret.clone(), ..other.clone() };
    let actions: Vec<(&str, String)> = vec![
        ("get_app_data", String::new()),
        ("get_licences", String::new()),
        ("get_users", String::new()),
        ("delete_user", "user_id=1".into()),
        ("delete_licence", format!("licence_key={}", keys[0])),
        ("change_status", "status=0".into()),
        ("change_version", "version=9.9".into()),
        ("renew_secret", String::new()),
        ("create_licences", format!("amount=1&access=1&expire_date={}", enc(&date_in(3)))),
        ("reset_hwid", "user_id=1".into()),
        ("ban_licence", format!("licence_key={}", keys[0])),
        ("unban_licence", format!("licence_key={}", keys[0])),
    ];
    for (i, (action, extra)) in actions.iter().enumerate() {
        let from = format!("192.0.2.{}", i + 1);
        for (who, http, code) in [
            (&wrong_password, 401, "invalid_developer"),
            (&unknown, 401, "invalid_developer"),
            (&bad_secret, 401, "invalid_app_secret"),
            (&stolen, 403, "forbidden"),
        ] {
            let body = format!("{}&{extra}", dev_form(who));
            let reply = stack.post_from(&from, &format!("{ADMIN}?action={action}"), body).await;
            expect_error(&reply, http, code);
        }
    }
    // Developer credentials are checked before the app secret.
    let both_wrong = Fixture { secret: "f".repeat(64), ..wrong_password.clone() };
    let reply =
        stack.post_from("192.0.2.100", &format!("{ADMIN}?action=get_app_data"), dev_form(&both_wrong)).await;
    expect_error(&reply, 401, "invalid_developer");
    // Fields are checked before anything else.
    let body = format!("{}&user_id=abc", dev_form(&both_wrong));
    let reply = stack.post_from("192.0.2.100", &format!("{ADMIN}?action=delete_user"), body).await;
    expect_error(&reply, 400, "invalid_field");
    assert_eq!(snapshot(&stack.core).await, before, "no refused call changed anything");
    stack.stop().await;
}

async fn licences(backend: Backend) {
    let stack = TestStack::start(backend).await;
    let fx = stack.fixture("dev-keys").await;
    assert_eq!(stack.licences(&fx).await, Vec::<Value>::new(), "a bare empty array");

    let expire = date_in(10);
    let reply =
        stack.admin(&fx, "create_licences", &format!("amount=3&access=4&expire_date={}", enc(&expire))).await;
    let body = expect_ok(&reply);
    let keys: Vec<String> = body
        .as_array()
        .expect("a bare array")
        .iter()
        .map(|k| k.as_str().expect("a string").to_owned())
        .collect();
    assert_eq!(keys.len(), 3);
    for key in &keys {
        let groups: Vec<&str> = key.split('-').collect();
        assert!(groups.len() >= 2 && groups.iter().all(|g| !g.is_empty()), "grouped: {key}");
        assert!(
            groups.iter().all(|g| g.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())),
            "upper case: {key}"
        );
        let symbols: usize = groups.iter().map(|g| g.len()).sum();
        assert!(symbols >= 20, "at least 100 bits at 5 bits a symbol: {key}");
    }
    let mut distinct = keys.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3);

    let rows = stack.licences(&fx).await;
    assert_eq!(rows.len(), 3);
    let ids: Vec<i64> = rows.iter().map(|r| int(&r["id"])).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ordered by id: {ids:?}");
    for row in &rows {
        assert_keys(row, LICENCE_KEYS);
        assert!(keys.contains(&row["licence"].as_str().expect("licence").to_owned()), "{row}");
        assert!(row["usedby"].is_null(), "{row}");
        assert!(!flag(&row["isused"]) && !flag(&row["redeemed"]) && !flag(&row["banned"]), "{row}");
        assert_eq!(timestamp(&row["expire_time"]).format(DATE_FORMAT).to_string(), expire);
        recent_timestamp(&row["created"]);
        assert_eq!(int(&row["access"]), 4);
        assert!(row["redeemed_at"].is_null(), "{row}");
    }
    assert_eq!(rows.iter().map(|r| r["licence"].as_str().expect("key").to_owned()).collect::<Vec<_>>(), keys);

    // Access levels 0 and 9 are the ends of the range.
    let zero = stack.create_keys(&fx, 1, 0, &expire).await.remove(0);
    let nine = stack.create_keys(&fx, 1, 9, &expire).await.remove(0);
    assert_eq!(int(&stack.licence_row(&fx, &zero).await["access"]), 0);
    assert_eq!(int(&stack.licence_row(&fx, &nine).await["access"]), 9);

    // Redeemed: bound, redeemed, with a time.
    stack.register_ok(&fx, "holder", &format!("licence={}", keys[0])).await;
    let row = stack.licence_row(&fx, &keys[0]).await;
    assert_eq!(row["usedby"], "holder");
    assert!(flag(&row["isused"]) && flag(&row["redeemed"]) && !flag(&row["banned"]), "{row}");
    recent_timestamp(&row["redeemed_at"]);

    // ban / unban, naming the key in any case with whitespace around it.
    let typed = enc(&format!(" {}\n", keys[1].to_lowercase()));
    assert_eq!(expect_ok(&stack.admin(&fx, "ban_licence", &format!("licence_key={typed}")).await), success());
    assert!(flag(&stack.licence_row(&fx, &keys[1]).await["banned"]));
    assert_eq!(
        expect_ok(&stack.admin(&fx, "unban_licence", &format!("licence_key={typed}")).await),
        success()
    );
    assert!(!flag(&stack.licence_row(&fx, &keys[1]).await["banned"]));
    assert_eq!(
        expect_ok(&stack.admin(&fx, "ban_licence", &format!("licence_key={}", keys[0])).await),
        success()
    );
    let row = stack.licence_row(&fx, &keys[0]).await;
    assert!(flag(&row["banned"]) && flag(&row["isused"]), "{row}");
    let users = stack.users(&fx).await;
    assert_eq!(users[0]["licence_status"], "banned");

    // delete_licence removes the key; the holder's status follows.
    assert_eq!(
        expect_ok(&stack.admin(&fx, "delete_licence", &format!("licence_key={}", keys[0])).await),
        success()
    );
    assert!(stack.licences(&fx).await.iter().all(|r| r["licence"] != keys[0].as_str()));
    assert_eq!(stack.users(&fx).await[0]["licence_status"], "none");
    let reply = stack.client("login", user_form(&fx, "holder", "")).await;
    let (body, _) = expect_signed_ok(&reply, &fx, "login", "");
    assert_eq!(body["has_licence"], Value::Bool(true), "has_licence is a flag on the user");

    // Naming nothing of this app: not_found.
    let gone = format!("licence_key={}", keys[0]);
    for action in ["delete_licence", "ban_licence", "unban_licence"] {
        expect_error(&stack.admin(&fx, action, &gone).await, 404, "not_found");
        expect_error(
            &stack.admin(&fx, action, "licence_key=NOPE0-NOPE0-NOPE0-NOPE0-NOPE0").await,
            404,
            "not_found",
        );
    }
    assert_eq!(stack.licences(&fx).await.len(), 4);

    // get_licences answers every key, however many (beyond any page size of the core).
    for _ in 0..3 {
        stack.create_keys(&fx, 500, 1, &expire).await;
    }
    let rows = stack.licences(&fx).await;
    assert_eq!(rows.len(), 1504);
    let ids: Vec<i64> = rows.iter().map(|r| int(&r["id"])).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ordered by id, each once");
    stack.stop().await;
}

async fn users(backend: Backend) {
    let stack = TestStack::start(backend).await;
    let fx = stack.fixture("dev-users").await;
    assert_eq!(stack.users(&fx).await, Vec::<Value>::new(), "a bare empty array");
    let key = stack.create_keys(&fx, 1, 2, &date_in(10)).await.remove(0);
    stack.register_ok(&fx, "user1", &format!("hwid=HW-1&licence={key}")).await;
    stack.register_ok(&fx, "user2", "").await;
    stack.register_ok(&fx, "user3", "hwid=HW-3").await;

    let rows = stack.users(&fx).await;
    assert_eq!(rows.len(), 3);
    let ids: Vec<i64> = rows.iter().map(|r| int(&r["id"])).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ordered by id: {ids:?}");
    for row in &rows {
        assert_keys(row, USER_KEYS);
        recent_timestamp(&row["joined"]);
        assert_eq!(int(&row["total_pings"]), 0);
        assert!(row["last_seen"].is_null(), "{row}");
    }
    assert_eq!(rows[0]["username"], "user1");
    assert_eq!(rows[0]["email"], "user1@example.com");
    assert_eq!(rows[0]["hwid"], "HW-1");
    assert_eq!(rows[0]["licence_status"], "active");
    assert_eq!(rows[1]["username"], "user2");
    assert!(rows[1]["hwid"].is_null(), "{}", rows[1]);
    assert_eq!(rows[1]["licence_status"], "none");

    // A heartbeat shows as total_pings and last_seen.
    expect_signed_ok(&stack.client("connect", user_form(&fx, "user2", "")).await, &fx, "connect", "");
    let row = &stack.users(&fx).await[1];
    assert_eq!(int(&row["total_pings"]), 1);
    recent_timestamp(&row["last_seen"]);

    // reset_hwid: unbound; the next HWID presented binds.
    let u1 = int(&rows[0]["id"]);
    assert_eq!(expect_ok(&stack.admin(&fx, "reset_hwid", &format!("user_id={u1}")).await), success());
    assert!(stack.users(&fx).await[0]["hwid"].is_null());
    let reply = stack.client("login", user_form(&fx, "user1", "hwid=HW-NEW")).await;
    assert_eq!(expect_signed_ok(&reply, &fx, "login", "").0["hwid"], "HW-NEW");
    assert_eq!(stack.users(&fx).await[0]["hwid"], "HW-NEW");

    // delete_user: gone; the licence stays listed, unbound but redeemed, and cannot be redeemed again.
    assert_eq!(expect_ok(&stack.admin(&fx, "delete_user", &format!("user_id={u1}")).await), success());
    assert_eq!(stack.usernames(&fx).await, ["user2", "user3"]);
    let row = stack.licence_row(&fx, &key).await;
    assert!(row["usedby"].is_null(), "{row}");
    assert!(!flag(&row["isused"]) && flag(&row["redeemed"]), "{row}");
    recent_timestamp(&row["redeemed_at"]);
    let reply = stack.client("register", register_form(&fx, "user4", &format!("licence={key}"))).await;
    expect_signed_error(&reply, 409, "licence_used", &fx, "register", "");
    let reply = stack.client("login", user_form(&fx, "user1", "hwid=HW-NEW")).await;
    expect_signed_error(&reply, 401, "invalid_credentials", &fx, "login", "");

    // Naming no user of this app: not_found.
    for action in ["delete_user", "reset_hwid"] {
        expect_error(&stack.admin(&fx, action, &format!("user_id={u1}")).await, 404, "not_found");
        expect_error(&stack.admin(&fx, action, "user_id=999999").await, 404, "not_found");
    }
    assert_eq!(stack.usernames(&fx).await, ["user2", "user3"]);
    stack.stop().await;
}

async fn other_apps_are_out_of_reach(backend: Backend) {
    let stack = TestStack::start(backend).await;
    let alice = stack.fixture("alice").await;
    let mallory = stack.fixture("mallory").await;
    let key = stack.create_keys(&alice, 1, 1, &date_in(5)).await.remove(0);
    stack.register_ok(&alice, "victim", "hwid=HW-V").await;
    let victim = int(&stack.users(&alice).await[0]["id"]);
    let before = snapshot(&stack.core).await;

    // Through her own app, Mallory names nothing of Alice's.
    for action in ["delete_user", "reset_hwid"] {
        expect_error(&stack.admin(&mallory, action, &format!("user_id={victim}")).await, 404, "not_found");
    }
    for action in ["delete_licence", "ban_licence", "unban_licence"] {
        expect_error(&stack.admin(&mallory, action, &format!("licence_key={key}")).await, 404, "not_found");
    }
    assert_eq!(stack.users(&mallory).await, Vec::<Value>::new());
    assert_eq!(stack.licences(&mallory).await, Vec::<Value>::new());
    // With Alice's secret, she is forbidden.
    let stolen = Fixture { secret: alice.secret.clone(), ..mallory.clone() };
    expect_error(&stack.admin(&stolen, "delete_user", &format!("user_id={victim}")).await, 403, "forbidden");
    expect_error(&stack.admin(&stolen, "get_users", "").await, 403, "forbidden");
    assert_eq!(snapshot(&stack.core).await, before);
    stack.stop().await;
}

fn upload_form(fx: &Fixture, password_field: &'static str, filename: &str, data: Vec<u8>) -> Form {
    Form::new()
        .text("developer_username", fx.developer.clone())
        .text(password_field, fx.password.clone())
        .text("app_secret", fx.secret.clone())
        .part(
            "file",
            Part::bytes(data)
                .file_name(filename.to_owned())
                .mime_str("application/octet-stream")
                .expect("mime"),
        )
}

async fn upload(stack: &TestStack, form: Form) -> Http {
    stack
        .send(stack.request(reqwest::Method::POST, &format!("{ADMIN}?action=upload_file")).multipart(form))
        .await
}

/// A download that must succeed: checks the binary answer and its token; returns the bytes.
async fn download_ok(stack: &TestStack, fx: &Fixture, user: &str, filename: &str, nonce: &str) -> Vec<u8> {
    let reply = stack.client("download", user_form(fx, user, &format!("nonce={nonce}"))).await;
    assert_eq!(reply.status, 200, "{reply}");
    assert_eq!(reply.content_type(), Some("application/octet-stream"));
    assert_eq!(reply.header("content-length"), Some(reply.body.len().to_string().as_str()));
    assert_eq!(
        reply.header("content-disposition"),
        Some(format!("attachment; filename=\"{filename}\"").as_str())
    );
    let claims = signed_claims(&reply, &Value::Null, fx, "download", "success", nonce);
    assert_eq!(claims["sha256"], sha256_hex(&reply.body), "sha256 of the bytes served");
    assert_eq!(claims["sub"], user);
    assert_eq!(claims["lic"], "active");
    reply.body
}

async fn upload_then_download(backend: Backend) {
    const MAX: u64 = 6 * 1024 * 1024;
    let stack = TestStack::start_with(backend, |_| {}, |g| g.max_upload_bytes = MAX).await;
    let fx = stack.fixture("dev-files").await;
    let key = stack.create_keys(&fx, 1, 1, &date_in(5)).await.remove(0);
    stack.register_ok(&fx, "payer", &format!("licence={key}")).await;

    let small: Vec<u8> = (0..1_000_003u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let reply = upload(&stack, upload_form(&fx, "develoer_password", "app-1.0.exe", small.clone())).await;
    assert_eq!(expect_ok(&reply), success());
    let got = download_ok(&stack, &fx, "payer", "app-1.0.exe", "dl-1").await;
    assert!(got == small, "identical bytes");
    assert_eq!(sha256_hex(&got), sha256_hex(&small));

    // Several MiB, far beyond the 64 KiB form limit, with the other password spelling.
    let big: Vec<u8> = (0..5 * 1024 * 1024 + 17u32).map(|i| (i.wrapping_mul(40_503) >> 7) as u8).collect();
    let reply = upload(&stack, upload_form(&fx, "developer_password", "big build.bin", big.clone())).await;
    assert_eq!(expect_ok(&reply), success());
    let got = download_ok(&stack, &fx, "payer", "big build.bin", "dl-2").await;
    assert_eq!(got.len(), big.len());
    assert!(got == big, "identical bytes");

    // Refused uploads leave the binary as it was.
    // Over the maximum, announced with `Expect: 100-continue` (curl, .NET): refused at once.
    let reply = stack
        .post_head_expecting_continue(
            &format!("{ADMIN}?action=upload_file"),
            "multipart/form-data; boundary=XyZ",
            MAX + 1,
        )
        .await;
    expect_error(&reply, 413, "payload_too_large");
    let no_file = Form::new()
        .text("developer_username", fx.developer.clone())
        .text("develoer_password", fx.password.clone())
        .text("app_secret", fx.secret.clone());
    let message = expect_error(&upload(&stack, no_file).await, 400, "missing_field");
    assert!(message.contains("file"), "names the field: {message}");
    let wrong = Fixture { password: "wrong-password".into(), ..fx.clone() };
    let reply = upload(&stack, upload_form(&wrong, "develoer_password", "evil.bin", b"evil".to_vec())).await;
    expect_error(&reply, 401, "invalid_developer");
    let other = stack.fixture("dev-intruder").await;
    let stolen = Fixture { secret: fx.secret.clone(), ..other };
    let reply = upload(&stack, upload_form(&stolen, "develoer_password", "evil.bin", b"evil".to_vec())).await;
    expect_error(&reply, 403, "forbidden");
    let bogus = Fixture { secret: "0".repeat(64), ..fx.clone() };
    let reply = upload(&stack, upload_form(&bogus, "develoer_password", "evil.bin", b"evil".to_vec())).await;
    expect_error(&reply, 401, "invalid_app_secret");
    let got = download_ok(&stack, &fx, "payer", "big build.bin", "dl-3").await;
    assert!(got == big, "the binary is unchanged");

    // A new upload replaces the old one.
    let reply = upload(&stack, upload_form(&fx, "develoer_password", "app-1.1.exe", b"tiny".to_vec())).await;
    assert_eq!(expect_ok(&reply), success());
    assert_eq!(download_ok(&stack, &fx, "payer", "app-1.1.exe", "dl-4").await, b"tiny");
    stack.stop().await;
}

/// An upload over the maximum, streamed straight away (no `Expect: 100-continue`): the client
/// must get to read the 413 answer, every time, and the binary stays as it was.
async fn oversized_upload_sent_eagerly(backend: Backend) {
    const MAX: u64 = 1024 * 1024;
    const SENT: u64 = 24 * 1024 * 1024;
    let stack = TestStack::start_with(backend, |_| {}, |g| g.max_upload_bytes = MAX).await;
    let fx = stack.fixture("dev-eager-upload").await;
    let key = stack.create_keys(&fx, 1, 1, &date_in(5)).await.remove(0);
    stack.register_ok(&fx, "payer", &format!("licence={key}")).await;
    let reply = upload(&stack, upload_form(&fx, "develoer_password", "ok.bin", b"fits".to_vec())).await;
    assert_eq!(expect_ok(&reply), success());

    for attempt in 1..=8 {
        let chunks = (0..SENT / 65_536).map(|_| Ok::<_, std::io::Error>(vec![9u8; 65_536]));
        let file =
            Part::stream_with_length(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)), SENT)
                .file_name("huge.bin");
        let form = Form::new()
            .text("developer_username", fx.developer.clone())
            .text("develoer_password", fx.password.clone())
            .text("app_secret", fx.secret.clone())
            .part("file", file);
        let request =
            stack.request(reqwest::Method::POST, &format!("{ADMIN}?action=upload_file")).multipart(form);
        let reply = match request.send().await {
            Ok(response) => Http {
                status: response.status().as_u16(),
                headers: response.headers().clone(),
                body: response
                    .bytes()
                    .await
                    .map(|b| b.to_vec())
                    .unwrap_or_else(|e| panic!("attempt {attempt}: the 413 answer was cut off: {e:?}")),
            },
            Err(error) => panic!(
                "attempt {attempt}: a 24 MiB upload over a 1 MiB maximum got no answer, the connection \
                 was torn down under the client instead of answering 413 payload_too_large: {error:?}"
            ),
        };
        expect_error(&reply, 413, "payload_too_large");
    }
    assert_eq!(download_ok(&stack, &fx, "payer", "ok.bin", "after").await, b"fits");
    stack.stop().await;
}
