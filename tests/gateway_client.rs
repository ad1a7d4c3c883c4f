//! The legacy client API (`/api/action.php`) end to end: the real gateway in front of the real
//! core, on SQLite and on PostgreSQL, driven with bodies written the way deployed clients write
//! them. Checks success shapes and JSON types, response tokens, every client-side error code
//! with its HTTP status, the transport quirks of the contract, and throttling.

mod common;

use chrono::{Duration, NaiveDateTime, Utc};
use common::{Backend, TestCore, gateway::*};
use futures_util::future::join_all;
use reqwest::Method;
use serde_json::Value;

on_both_backends! {
    register_and_login => register_and_login;
    hwid_lock => hwid_lock;
    connect_counts_every_ping => connect_counts_every_ping;
    licence_redemption => licence_redemption;
    licence_status_follows_the_licences => licence_status_follows_the_licences;
    offline_lease => offline_lease;
    download_refusals_and_offline_app => download_refusals_and_offline_app;
    transport_quirks => transport_quirks;
    body_size_limit => body_size_limit;
    oversized_body_sent_eagerly => oversized_body_sent_eagerly;
    paths_methods_and_actions => paths_methods_and_actions;
    throttling_per_username => throttling_per_username;
    throttling_per_address => throttling_per_address;
    throttle_window_slides => throttle_window_slides;
    throttling_by_ipv6_network => throttling_by_ipv6_network;
    the_gateway_credential_carries_client_addresses => the_gateway_credential_carries_client_addresses;
    core_going_away_is_unavailable => core_going_away_is_unavailable;
}

const LOGIN_KEYS: &[&str] = &[
    "status",
    "name",
    "hwid",
    "joined",
    "has_licence",
    "licence_status",
    "total_pings",
    "app_version",
    "token",
];

fn unix(date: &str) -> i64 {
    NaiveDateTime::parse_from_str(date, DATE_FORMAT).expect("date").and_utc().timestamp()
}

fn lifetime(claims: &Value) -> i64 {
    int(&claims["exp"]) - int(&claims["iat"])
}

async fn register_and_login(backend: Backend) {
    let stack = TestStack::start(backend).await;
    let fx = stack.fixture("dev-client").await;
    let secret = enc(&fx.secret);

    // register, hand-written as a PHP client would post it.
    let reply = stack
        .client(
            "register",
            format!("username=bob&email=bob%40example.com&password=bob-pw&app_secret={secret}&nonce=reg-1"),
        )
        .await;
    let (body, claims) = expect_signed_ok(&reply, &fx, "register", "reg-1");
    assert_keys(&body, &["status", "token"]);
    assert_eq!(claims["sub"], "bob");
    assert_eq!(claims["lic"], "none");
    assert!(claims.get("hwid").is_none(), "no HWID bound: {claims}");
    assert_eq!(lifetime(&claims), 60);

    // login without a HWID: nothing bound yet.
    let reply = stack.client("login", format!("username=bob&password=bob-pw&app_secret={secret}")).await;
    let (body, claims) = expect_signed_ok(&reply, &fx, "login", "");
    assert_keys(&body, LOGIN_KEYS);
    assert_eq!(body["name"], "bob");
    assert!(body["hwid"].is_null(), "{body}");
    recent_timestamp(&body["joined"]);
    assert_eq!(body["has_licence"], Value::Bool(false));
    assert_eq!(body["licence_status"], "none");
    assert_eq!(int(&body["total_pings"]), 0);
    assert!(body["app_version"].is_null(), "{body}");
    assert_eq!(claims["sub"], "bob");
    assert_eq!(claims["lic"], "none");
    assert!(claims.get("lvl").is_none() && claims.get("lexp").is_none(), "{claims}");
    assert_eq!(lifetime(&claims), 60, "no lease without an active licence");

    // The first HWID presented binds.
    let reply = stack.client("login", user_form(&fx, "bob", "hwid=HW-1&nonce=n-1")).await;
    let (body, claims) = expect_signed_ok(&reply, &fx, "login", "n-1");
    assert_eq!(body["hwid"], "HW-1");
    assert_eq!(claims["hwid"], "HW-1");

    // Afterwards a different or a missing HWID is refused, on every action.
    let reply = stack.client("login", user_form(&fx, "bob", "hwid=HW-2&nonce=mm-1")).await;
    let claims = expect_signed_error(&reply, 403, "hwid_mismatch", &fx, "login", "mm-1");
    assert_eq!(claims["hwid"], "HW-1");
    assert_eq!(claims["sub"], "bob");
    assert_eq!(lifetime(&claims), 60);
    let reply = stack.client("login", user_form(&fx, "bob", "")).await;
    expect_signed_error(&reply, 403, "hwid_mismatch", &fx, "login", "");
    let reply = stack.client("connect", user_form(&fx, "bob", "hwid=HW-2")).await;
    expect_signed_error(&reply, 403, "hwid_mismatch", &fx, "connect", "");
    let reply = stack.client("download", user_form(&fx, "bob", "nonce=d")).await;
    expect_signed_error(&reply, 403, "hwid_mismatch", &fx, "download", "d");
    let reply = stack
        .client("redeem", user_form(&fx, "bob", "hwid=HW-3&licence=AAAAA-BBBBB-CCCCC-DDDDD-EEEEE"))
        .await;
    expect_signed_error(&reply, 403, "hwid_mismatch", &fx, "redeem", "");
    let reply = stack.client("login", user_form(&fx, "bob", "hwid=HW-1")).await;
    expect_signed_ok(&reply, &fx, "login", "");

    // Wrong password and unknown user: one code, one message, and no hint of who exists.
    let reply =
        stack.client("login", format!("username=bob&password=nope&hwid=HW-1&app_secret={secret}")).await;
    let claims = expect_signed_error(&reply, 401, "invalid_credentials", &fx, "login", "");
    assert!(claims.get("sub").is_none(), "no user identified: {claims}");
    let wrong_password = reply.json()["message"].clone();
    let reply =
        stack.client("login", format!("username=nobody&password=nope&hwid=HW-1&app_secret={secret}")).await;
    let claims = expect_signed_error(&reply, 401, "invalid_credentials", &fx, "login", "");
    assert!(claims.get("sub").is_none(), "no user identified: {claims}");
    assert_eq!(reply.json()["message"], wrong_password, "the same message for both");
    let reply = stack.client("connect", format!("username=nobody&password=x&app_secret={secret}")).await;
    expect_signed_error(&reply, 401, "invalid_credentials", &fx, "connect", "");

    // A taken name.
    let reply = stack.client("register", register_form(&fx, "bob", "nonce=again")).await;
    expect_signed_error(&reply, 409, "username_taken", &fx, "register", "again");

    // A HWID sent at register binds at once.
    stack.register_ok(&fx, "carol", "hwid=HW-C").await;
    let reply = stack.client("login", user_form(&fx, "carol", "hwid=HW-X")).await;
    expect_signed_error(&reply, 403, "hwid_mismatch", &fx, "login", "");
    let reply = stack.client("login", user_form(&fx, "carol", "hwid=HW-C")).await;
    assert_eq!(expect_signed_ok(&reply, &fx, "login", "").0["hwid"], "HW-C");

    // Unicode names, percent-encoded as UTF-8.
    let reply = stack
        .client(
            "register",
            format!(
                "username=%C3%A9%C3%A9%C3%A9&email=e%40example.com&password=accent-pw&app_secret={secret}"
            ),
        )
        .await;
    expect_signed_ok(&reply, &fx, "register", "");
    let reply = stack
        .client("login", format!("username=%C3%A9%C3%A9%C3%A9&password=accent-pw&app_secret={secret}"))
        .await;
    assert_eq!(expect_signed_ok(&reply, &fx, "login", "").0["name"], "ééé");

    // Usernames are unique per app: another app may have its own bob.
    let other = stack.fixture("dev-other").await;
    stack.register_ok(&other, "bob", "").await;
    let reply = stack.client("login", user_form(&other, "bob", "")).await;
    let (body, _) = expect_signed_ok(&reply, &other, "login", "");
    assert!(body["hwid"].is_null(), "another app's bob is another user: {body}");

    // An unknown app secret is refused before the app is known: no token.
    let reply = stack.client("login", "username=bob&password=bob-pw&app_secret=not-a-secret&hwid=HW-1").await;
    expect_error(&reply, 401, "invalid_app_secret");
    let reply = stack.client("register", "username=zed&password=pw&email=z%40x.y&app_secret=nope").await;
    expect_error(&reply, 401, "invalid_app_secret");

    // Usernames compare exactly: no case folding, no trimming, no Unicode normalisation.
    for (name, password) in [("Bob", "Bob-pw"), ("bob ", "bob -pw"), ("caf\u{e9}", "nfc-pw")] {
        let reply = stack
            .client("login", format!("username={}&password=bob-pw&app_secret={secret}", enc(name)))
            .await;
        expect_signed_error(&reply, 401, "invalid_credentials", &fx, "login", "");
        let body =
            format!("username={}&password={}&email=x%40y.z&app_secret={secret}", enc(name), enc(password));
        expect_signed_ok(&stack.client("register", body).await, &fx, "register", "");
    }
    let reply = stack
        .client("login", format!("username={}&password=nfc-pw&app_secret={secret}", enc("cafe\u{301}")))
        .await;
    expect_signed_error(&reply, 401, "invalid_credentials", &fx, "login", "");

    assert_eq!(stack.usernames(&fx).await, ["bob", "carol", "ééé", "Bob", "bob ", "caf\u{e9}"]);
    // Passwords are stored only as Argon2id PHC strings.
    {
        use core_service::storage::entities::user;
        use sea_orm::EntityTrait;
        for row in user::Entity::find().all(stack.core.core.db()).await.expect("users") {
            assert!(row.password_hash.starts_with("$argon2id$"), "{}: {}", row.username, row.password_hash);
            assert!(!row.password_hash.contains("-pw"), "no plain password in {}", row.password_hash);
        }
    }
    stack.stop().await;
}

async fn hwid_lock(backend: Backend) {
    let stack = TestStack::start(backend).await;
    let fx = stack.fixture("dev-hwid").await;
    stack.register_ok(&fx, "nolic", "").await;
    stack.register_ok(&fx, "redeemer", "").await;
    let secret = enc(&fx.secret);

    // A wrong password binds nothing.
    let reply =
        stack.client("login", format!("username=nolic&password=wrong&hwid=HW-Q&app_secret={secret}")).await;
    expect_signed_error(&reply, 401, "invalid_credentials", &fx, "login", "");
    let reply = stack.client("login", user_form(&fx, "nolic", "")).await;
    assert!(expect_signed_ok(&reply, &fx, "login", "").0["hwid"].is_null());

    // The right password binds, whatever the later checks say.
    let reply = stack.client("download", user_form(&fx, "nolic", "hwid=HW-Z")).await;
    let claims = expect_signed_error(&reply, 403, "no_active_licence", &fx, "download", "");
    assert_eq!(claims["hwid"], "HW-Z");
    let reply = stack.client("login", user_form(&fx, "nolic", "hwid=HW-Y")).await;
    expect_signed_error(&reply, 403, "hwid_mismatch", &fx, "login", "");
    let reply = stack.client("login", user_form(&fx, "nolic", "hwid=HW-Z")).await;
    assert_eq!(expect_signed_ok(&reply, &fx, "login", "").0["hwid"], "HW-Z");

    let reply = stack.client("redeem", user_form(&fx, "redeemer", "hwid=HW-R&licence=NO-SUCH-KEY")).await;
    let claims = expect_signed_error(&reply, 400, "invalid_licence", &fx, "redeem", "");
    assert_eq!(claims["hwid"], "HW-R");
    let reply = stack.client("connect", user_form(&fx, "redeemer", "hwid=HW-S")).await;
    expect_signed_error(&reply, 403, "hwid_mismatch", &fx, "connect", "");
    let reply = stack.client("connect", user_form(&fx, "redeemer", "hwid=HW-R")).await;
    expect_signed_ok(&reply, &fx, "connect", "");

    // Until the developer clears it; then the next HWID presented binds.
    let users = stack.users(&fx).await;
    assert_eq!(users[1]["hwid"], "HW-R");
    let id = int(&users[1]["id"]);
    expect_ok(&stack.admin(&fx, "reset_hwid", &format!("user_id={id}")).await);
    let reply = stack.client("login", user_form(&fx, "redeemer", "hwid=HW-NEW")).await;
    assert_eq!(expect_signed_ok(&reply, &fx, "login", "").0["hwid"], "HW-NEW");
    let reply = stack.client("login", user_form(&fx, "redeemer", "hwid=HW-R")).await;
    expect_signed_error(&reply, 403, "hwid_mismatch", &fx, "login", "");
    stack.stop().await;
}

async fn connect_counts_every_ping(backend: Backend) {
    let stack = TestStack::start(backend).await;
    let fx = stack.fixture("dev-pings").await;
    stack.register_ok(&fx, "pinger", "hwid=HW-P").await;
    let users = stack.users(&fx).await;
    assert!(users[0]["last_seen"].is_null(), "never seen yet: {users:?}");

    for n in 1..=3 {
        let reply =
            stack.client("connect", user_form(&fx, "pinger", &format!("hwid=HW-P&nonce=c-{n}"))).await;
        let (body, claims) = expect_signed_ok(&reply, &fx, "connect", &format!("c-{n}"));
        assert_keys(&body, &["status", "total_pings", "token"]);
        assert_eq!(int(&body["total_pings"]), n);
        assert_eq!(claims["pings"], n);
        assert_eq!(claims["sub"], "pinger");
        assert_eq!(claims["hwid"], "HW-P");
        assert_eq!(claims["lic"], "none");
        assert_eq!(lifetime(&claims), 60);
    }
    let users = stack.users(&fx).await;
    assert_eq!(int(&users[0]["total_pings"]), 3);
    recent_timestamp(&users[0]["last_seen"]);

    // Concurrent heartbeats: each counted once, none lost.
    let calls = 16;
    let body = user_form(&fx, "pinger", "hwid=HW-P");
    let replies = join_all((0..calls).map(|_| stack.client("connect", body.clone()))).await;
    let mut seen: Vec<i64> =
        replies.iter().map(|r| int(&expect_signed_ok(r, &fx, "connect", "").0["total_pings"])).collect();
    seen.sort_unstable();
    assert_eq!(seen, (4..4 + calls).collect::<Vec<i64>>());
    let reply = stack.client("login", user_form(&fx, "pinger", "hwid=HW-P")).await;
    assert_eq!(int(&expect_signed_ok(&reply, &fx, "login", "").0["total_pings"]), 3 + calls);
    stack.stop().await;
}

async fn licence_redemption(backend: Backend) {
    let stack = TestStack::start(backend).await;
    let fx = stack.fixture("dev-redeem").await;
    let expire = date_in(30);
    let keys = stack.create_keys(&fx, 6, 3, &expire).await;

    // register redeeming a key typed in lower case, with whitespace around it.
    let typed = enc(&format!("  {}\t\n", keys[0].to_lowercase()));
    let reply =
        stack.client("register", register_form(&fx, "dave", &format!("licence={typed}&nonce=r0"))).await;
    let (_, claims) = expect_signed_ok(&reply, &fx, "register", "r0");
    assert_eq!(claims["lic"], "active");
    let reply = stack.client("login", user_form(&fx, "dave", "")).await;
    let (body, claims) = expect_signed_ok(&reply, &fx, "login", "");
    assert_eq!(body["has_licence"], Value::Bool(true));
    assert_eq!(body["licence_status"], "active");
    assert_eq!(claims["lic"], "active");
    assert_eq!(claims["lvl"], 3);
    assert_eq!(int(&claims["lexp"]), unix(&expire));
    let row = stack.licence_row(&fx, &keys[0]).await;
    assert_eq!(row["usedby"], "dave");
    assert!(flag(&row["isused"]) && flag(&row["redeemed"]));
    recent_timestamp(&row["redeemed_at"]);

    // redeem a second key, in lower case.
    let reply = stack
        .client("redeem", user_form(&fx, "dave", &format!("licence={}&nonce=r1", keys[1].to_lowercase())))
        .await;
    let (body, claims) = expect_signed_ok(&reply, &fx, "redeem", "r1");
    assert_keys(&body, &["status", "licence_status", "expire_time", "access", "token"]);
    assert_eq!(body["licence_status"], "active");
    assert_eq!(timestamp(&body["expire_time"]).format(DATE_FORMAT).to_string(), expire);
    assert_eq!(int(&body["access"]), 3);
    assert_eq!(claims["sub"], "dave");
    assert_eq!(claims["lic"], "active");

    // Redemption errors, for redeem and for register; a failed register creates no user.
    let reply = stack.client("redeem", user_form(&fx, "dave", &format!("licence={}&nonce=u", keys[1]))).await;
    expect_signed_error(&reply, 409, "licence_used", &fx, "redeem", "u");
    let reply = stack.client("redeem", user_form(&fx, "dave", "licence=AAAAA-BBBBB-CCCCC-DDDDD-EEEEE")).await;
    expect_signed_error(&reply, 400, "invalid_licence", &fx, "redeem", "");
    let reply = stack.client("register", register_form(&fx, "frank", &format!("licence={}", keys[1]))).await;
    expect_signed_error(&reply, 409, "licence_used", &fx, "register", "");
    let reply = stack.client("register", register_form(&fx, "frank", "licence=NO-SUCH-KEY&nonce=x")).await;
    expect_signed_error(&reply, 400, "invalid_licence", &fx, "register", "x");
    // username_taken is checked before the licence.
    let reply = stack.client("register", register_form(&fx, "dave", "licence=NO-SUCH-KEY")).await;
    expect_signed_error(&reply, 409, "username_taken", &fx, "register", "");

    // A banned key cannot be redeemed.
    expect_ok(&stack.admin(&fx, "ban_licence", &format!("licence_key={}", keys[2])).await);
    let reply = stack.client("register", register_form(&fx, "frank", &format!("licence={}", keys[2]))).await;
    expect_signed_error(&reply, 403, "licence_banned", &fx, "register", "");
    let reply = stack.client("redeem", user_form(&fx, "dave", &format!("licence={}", keys[2]))).await;
    expect_signed_error(&reply, 403, "licence_banned", &fx, "redeem", "");

    // Nor one past its expiry.
    set_licence_expiry(&stack.core, &keys[3], Utc::now() - Duration::hours(1)).await;
    let reply = stack.client("register", register_form(&fx, "frank", &format!("licence={}", keys[3]))).await;
    expect_signed_error(&reply, 410, "licence_expired", &fx, "register", "");
    let reply = stack.client("redeem", user_form(&fx, "dave", &format!("licence={}&nonce=e", keys[3]))).await;
    expect_signed_error(&reply, 410, "licence_expired", &fx, "redeem", "e");

    // First match wins: used before banned, banned before expired.
    expect_ok(&stack.admin(&fx, "ban_licence", &format!("licence_key={}", keys[1])).await);
    let reply = stack.client("register", register_form(&fx, "frank", &format!("licence={}", keys[1]))).await;
    expect_signed_error(&reply, 409, "licence_used", &fx, "register", "");
    expect_ok(&stack.admin(&fx, "unban_licence", &format!("licence_key={}", keys[1])).await);
    expect_ok(&stack.admin(&fx, "ban_licence", &format!("licence_key={}", keys[3])).await);
    let reply = stack.client("register", register_form(&fx, "frank", &format!("licence={}", keys[3]))).await;
    expect_signed_error(&reply, 403, "licence_banned", &fx, "register", "");

    // Nothing above created frank, or bound a refused key to anyone.
    assert_eq!(stack.usernames(&fx).await, ["dave"]);
    for key in &keys[2..] {
        let row = stack.licence_row(&fx, key).await;
        assert!(row["usedby"].is_null() && !flag(&row["isused"]) && !flag(&row["redeemed"]), "{row}");
        assert!(row["redeemed_at"].is_null(), "{row}");
    }
    // A clean registration with a fresh key still works.
    stack.register_ok(&fx, "frank", &format!("licence={}", keys[4])).await;
    stack.stop().await;
}

async fn licence_status_follows_the_licences(backend: Backend) {
    let stack = TestStack::start(backend).await;
    let fx = stack.fixture("dev-status").await;
    let late = date_in(60);
    let early = date_in(30);
    let low = stack.create_keys(&fx, 1, 2, &late).await.remove(0);
    let high = stack.create_keys(&fx, 1, 5, &early).await.remove(0);
    stack.register_ok(&fx, "gina", &format!("licence={low}")).await;
    expect_signed_ok(
        &stack.client("redeem", user_form(&fx, "gina", &format!("licence={high}"))).await,
        &fx,
        "redeem",
        "",
    );

    let login = || stack.client("login", user_form(&fx, "gina", ""));
    let (body, claims) = expect_signed_ok(&login().await, &fx, "login", "");
    assert_eq!(body["licence_status"], "active");
    assert_eq!(claims["lvl"], 5, "highest access of an active licence");
    assert_eq!(int(&claims["lexp"]), unix(&late), "latest expiry of an active licence");

    // One banned key bans the user; login still works, connect and download do not.
    expect_ok(&stack.admin(&fx, "ban_licence", &format!("licence_key={high}")).await);
    let (body, claims) = expect_signed_ok(&login().await, &fx, "login", "");
    assert_eq!(body["licence_status"], "banned");
    assert_eq!(claims["lic"], "banned");
    assert!(claims.get("lvl").is_none() && claims.get("lexp").is_none(), "{claims}");
    assert_eq!(lifetime(&claims), 60);
    let reply = stack.client("connect", user_form(&fx, "gina", "nonce=b")).await;
    let claims = expect_signed_error(&reply, 403, "licence_banned", &fx, "connect", "b");
    assert_eq!(claims["lic"], "banned");
    let reply = stack.client("download", user_form(&fx, "gina", "")).await;
    expect_signed_error(&reply, 403, "licence_banned", &fx, "download", "");
    assert_eq!(int(&stack.users(&fx).await[0]["total_pings"]), 0, "a refused connect counts nothing");

    expect_ok(&stack.admin(&fx, "unban_licence", &format!("licence_key={high}")).await);
    assert_eq!(expect_signed_ok(&login().await, &fx, "login", "").0["licence_status"], "active");
    expect_signed_ok(&stack.client("connect", user_form(&fx, "gina", "")).await, &fx, "connect", "");

    // Every key expired: expired, still able to log in and connect, not to download.
    set_licence_expiry(&stack.core, &low, Utc::now() - Duration::hours(2)).await;
    set_licence_expiry(&stack.core, &high, Utc::now() - Duration::hours(1)).await;
    let (body, claims) = expect_signed_ok(&login().await, &fx, "login", "");
    assert_eq!(body["licence_status"], "expired");
    assert_eq!(body["has_licence"], Value::Bool(true));
    assert_eq!(claims["lic"], "expired");
    let (body, claims) =
        expect_signed_ok(&stack.client("connect", user_form(&fx, "gina", "")).await, &fx, "connect", "");
    assert_eq!(int(&body["total_pings"]), 2);
    assert_eq!(lifetime(&claims), 60);
    let reply = stack.client("download", user_form(&fx, "gina", "")).await;
    expect_signed_error(&reply, 403, "no_active_licence", &fx, "download", "");
    assert_eq!(stack.users(&fx).await[0]["licence_status"], "expired");

    // A ban stands even on an expired key, until lifted or the key is deleted.
    expect_ok(&stack.admin(&fx, "ban_licence", &format!("licence_key={low}")).await);
    assert_eq!(expect_signed_ok(&login().await, &fx, "login", "").0["licence_status"], "banned");
    let reply = stack.client("connect", user_form(&fx, "gina", "")).await;
    expect_signed_error(&reply, 403, "licence_banned", &fx, "connect", "");
    expect_ok(&stack.admin(&fx, "delete_licence", &format!("licence_key={low}")).await);
    assert_eq!(expect_signed_ok(&login().await, &fx, "login", "").0["licence_status"], "expired");

    // No key left: none, yet has_licence stays true.
    expect_ok(&stack.admin(&fx, "delete_licence", &format!("licence_key={high}")).await);
    let (body, claims) = expect_signed_ok(&login().await, &fx, "login", "");
    assert_eq!(body["licence_status"], "none");
    assert_eq!(body["has_licence"], Value::Bool(true));
    assert_eq!(claims["lic"], "none");
    stack.stop().await;
}

async fn offline_lease(backend: Backend) {
    let stack = TestStack::start(backend).await;
    let fx = stack.fixture("dev-lease").await;
    // A key running out in two hours: the lease ends with it, not 24 hours from now.
    let soon = (Utc::now() + Duration::hours(2)).format(DATE_FORMAT).to_string();
    let key = stack.create_keys(&fx, 1, 7, &soon).await.remove(0);
    stack.register_ok(&fx, "hal", &format!("licence={key}")).await;
    for action in ["login", "connect"] {
        let reply = stack.client(action, user_form(&fx, "hal", "")).await;
        let (_, claims) = expect_signed_ok(&reply, &fx, action, "");
        assert_eq!(claims["lic"], "active");
        assert_eq!(claims["lvl"], 7);
        assert_eq!(int(&claims["lexp"]), unix(&soon));
        assert_eq!(int(&claims["exp"]), unix(&soon), "{action}: the lease ends with the licence");
    }
    // A key lasting a month: the lease is the 24-hour offline grace.
    let later = stack.create_keys(&fx, 1, 1, &date_in(30)).await.remove(0);
    expect_signed_ok(
        &stack.client("redeem", user_form(&fx, "hal", &format!("licence={later}"))).await,
        &fx,
        "redeem",
        "",
    );
    for action in ["login", "connect"] {
        let (_, claims) =
            expect_signed_ok(&stack.client(action, user_form(&fx, "hal", "")).await, &fx, action, "");
        assert_eq!(claims["lvl"], 7);
        let lease = lifetime(&claims);
        assert!((86_390..=86_400).contains(&lease), "{action}: lease of {lease} s");
    }
    // Only active licences count for the level: with the level-7 key expired, it is 1.
    set_licence_expiry(&stack.core, &key, Utc::now() - Duration::minutes(5)).await;
    let (body, claims) =
        expect_signed_ok(&stack.client("login", user_form(&fx, "hal", "")).await, &fx, "login", "");
    assert_eq!(body["licence_status"], "active");
    assert_eq!(claims["lvl"], 1);
    // Other tokens of an active user still last 60 seconds.
    let extra = stack.create_keys(&fx, 1, 1, &date_in(30)).await.remove(0);
    let reply = stack.client("redeem", user_form(&fx, "hal", &format!("licence={extra}"))).await;
    assert_eq!(lifetime(&expect_signed_ok(&reply, &fx, "redeem", "").1), 60);
    let reply =
        stack.client("login", format!("username=hal&password=wrong&app_secret={}", enc(&fx.secret))).await;
    assert_eq!(lifetime(&expect_signed_error(&reply, 401, "invalid_credentials", &fx, "login", "")), 60);
    stack.stop().await;
}

async fn download_refusals_and_offline_app(backend: Backend) {
    let stack = TestStack::start(backend).await;
    let fx = stack.fixture("dev-offline").await;
    let keys = stack.create_keys(&fx, 2, 1, &date_in(10)).await;
    stack.register_ok(&fx, "payer", &format!("licence={}", keys[0])).await;
    stack.register_ok(&fx, "freeloader", "").await;

    // The licence is checked before the file.
    let reply = stack.client("download", user_form(&fx, "freeloader", "nonce=f")).await;
    let claims = expect_signed_error(&reply, 403, "no_active_licence", &fx, "download", "f");
    assert_eq!(claims["lic"], "none");
    let reply = stack.client("download", user_form(&fx, "payer", "nonce=p")).await;
    let claims = expect_signed_error(&reply, 404, "no_file", &fx, "download", "p");
    assert_eq!(claims["lic"], "active");

    // Offline: every client action refuses, signed; developer actions go on.
    let reply = stack.admin(&fx, "change_status", "status=0").await;
    assert_eq!(expect_ok(&reply), serde_json::json!({"status": "success"}));
    let app = expect_ok(&stack.admin(&fx, "get_app_data", "").await);
    assert_eq!(int(&app["online"]), 0);
    let cases = [
        ("login", user_form(&fx, "payer", "nonce=o1")),
        ("connect", user_form(&fx, "payer", "nonce=o1")),
        ("download", user_form(&fx, "payer", "nonce=o1")),
        ("redeem", user_form(&fx, "payer", &format!("licence={}&nonce=o1", keys[1]))),
        ("register", register_form(&fx, "newbie", "nonce=o1")),
    ];
    for (action, body) in &cases {
        let reply = stack.client(action, body.clone()).await;
        expect_signed_error(&reply, 503, "app_offline", &fx, action, "o1");
    }
    // The app's status is checked before the credentials: a wrong password is not even looked at.
    let reply =
        stack.client("login", format!("username=payer&password=wrong&app_secret={}", enc(&fx.secret))).await;
    expect_signed_error(&reply, 503, "app_offline", &fx, "login", "");
    let reply =
        stack.client("login", format!("username=ghost&password=x&app_secret={}", enc(&fx.secret))).await;
    let claims = expect_signed_error(&reply, 503, "app_offline", &fx, "login", "");
    assert!(claims.get("sub").is_none(), "{claims}");
    // ... and after the fields and the secret.
    expect_error(
        &stack.client("login", format!("username=ab&password=x&app_secret={}", enc(&fx.secret))).await,
        400,
        "invalid_field",
    );
    expect_error(
        &stack.client("login", user_form(&fx, "payer", "app_secret=bogus")).await,
        401,
        "invalid_app_secret",
    );
    let more = stack.create_keys(&fx, 1, 1, &date_in(10)).await;
    assert_eq!(more.len(), 1, "developer actions work while offline");
    assert_eq!(stack.usernames(&fx).await, ["payer", "freeloader"]);
    assert!(!flag(&stack.licence_row(&fx, &keys[1]).await["redeemed"]));
    assert_eq!(int(&stack.users(&fx).await[0]["total_pings"]), 0);

    expect_ok(&stack.admin(&fx, "change_status", "status=1").await);
    assert_eq!(int(&expect_ok(&stack.admin(&fx, "get_app_data", "").await)["online"]), 1);
    expect_signed_ok(&stack.client("login", user_form(&fx, "payer", "")).await, &fx, "login", "");
    stack.stop().await;
}

async fn transport_quirks(backend: Backend) {
    let stack = TestStack::start(backend).await;
    let fx = stack.fixture("dev-quirks").await;
    let secret = enc(&fx.secret);
    stack.register_ok(&fx, "bob", "").await;
    let login_ok = |reply: &Http| {
        let (body, _) = expect_signed_ok(reply, &fx, "login", "");
        assert_eq!(body["name"], "bob", "{reply}");
    };

    // `action` in the body when the query has none ($_REQUEST).
    login_ok(
        &stack.post(ACTION, format!("action=login&username=bob&password=bob-pw&app_secret={secret}")).await,
    );
    login_ok(
        &stack
            .post(
                &format!("{ACTION}?action="),
                format!("username=bob&password=bob-pw&app_secret={secret}&action=login"),
            )
            .await,
    );
    // The query string wins over the body.
    let reply = stack
        .post(
            &format!("{ACTION}?action=login"),
            format!("action=register&username=bob&password=bob-pw&email=b%40x.y&app_secret={secret}"),
        )
        .await;
    login_ok(&reply);
    // `action` sent twice takes its last value too, in the query and in the body; and it is
    // percent-decoded like any value.
    login_ok(
        &stack
            .post(
                &format!("{ACTION}?action=register&action=login"),
                format!("username=bob&password=bob-pw&app_secret={secret}"),
            )
            .await,
    );
    login_ok(
        &stack
            .post(
                ACTION,
                format!("action=register&username=bob&password=bob-pw&app_secret={secret}&action=login"),
            )
            .await,
    );
    login_ok(
        &stack
            .post(
                &format!("{ACTION}?action=log%69n"),
                format!("username=bob&password=bob-pw&app_secret={secret}"),
            )
            .await,
    );
    // A field sent twice takes its last value.
    login_ok(
        &stack
            .client(
                "login",
                format!("username=nobody&password=wrong&username=bob&app_secret=x&password=bob-pw&app_secret={secret}"),
            )
            .await,
    );
    // Unknown extra fields are ignored.
    login_ok(
        &stack
            .client(
                "login",
                format!("submit=Log+in&username=bob&lang=en&password=bob-pw&app_secret={secret}&x="),
            )
            .await,
    );
    // A missing content type, or another one, is read as urlencoded.
    let body = format!("username=bob&password=bob-pw&app_secret={secret}");
    login_ok(&stack.post_as(&format!("{ACTION}?action=login"), None, body.clone().into_bytes()).await);
    login_ok(
        &stack
            .post_as(&format!("{ACTION}?action=login"), Some("text/plain"), body.clone().into_bytes())
            .await,
    );
    login_ok(
        &stack
            .post_as(
                &format!("{ACTION}?action=login"),
                Some("application/x-www-form-urlencoded; charset=UTF-8"),
                body.clone().into_bytes(),
            )
            .await,
    );

    // multipart/form-data, as `curl -F` and Python requests send it.
    login_ok(
        &stack
            .post_multipart(
                &format!("{ACTION}?action=login"),
                &[("username", "bob"), ("password", "bob-pw"), ("app_secret", &fx.secret)],
            )
            .await,
    );
    login_ok(
        &stack
            .post_multipart(
                ACTION,
                &[
                    ("action", "login"),
                    ("username", "nobody"),
                    ("username", "bob"),
                    ("password", "bob-pw"),
                    ("app_secret", &fx.secret),
                ],
            )
            .await,
    );
    let reply = stack
        .post_multipart(
            &format!("{ACTION}?action=register"),
            &[
                ("username", "multi"),
                ("email", "multi@example.com"),
                ("password", "multi-pw"),
                ("app_secret", &fx.secret),
                ("nonce", "mp"),
            ],
        )
        .await;
    expect_signed_ok(&reply, &fx, "register", "mp");
    let reply = stack.client("login", format!("username=multi&password=multi-pw&app_secret={secret}")).await;
    expect_signed_ok(&reply, &fx, "login", "");

    // `+` is a space and percent escapes decode, in every field.
    let password = "p&ss=w+rd é%";
    let reply = stack
        .client(
            "register",
            format!("username=space+man&email=s%40x.y&password={}&app_secret={secret}", enc(password)),
        )
        .await;
    expect_signed_ok(&reply, &fx, "register", "");
    let reply = stack
        .client("login", format!("username=space%20man&password={}&app_secret={secret}", enc(password)))
        .await;
    assert_eq!(expect_signed_ok(&reply, &fx, "login", "").0["name"], "space man");

    // Developer credentials: both spellings of the password field, urlencoded and multipart.
    let dev = enc(&fx.developer);
    let pw = enc(&fx.password);
    for field in ["develoer_password", "developer_password"] {
        let reply = stack
            .post(
                &format!("{ADMIN}?action=get_app_data"),
                format!("developer_username={dev}&{field}={pw}&app_secret={secret}"),
            )
            .await;
        assert_eq!(expect_ok(&reply)["secret"], fx.secret.as_str(), "{field}");
        let reply = stack
            .post_multipart(
                &format!("{ADMIN}?action=get_app_data"),
                &[("developer_username", &fx.developer), (field, &fx.password), ("app_secret", &fx.secret)],
            )
            .await;
        assert_eq!(expect_ok(&reply)["secret"], fx.secret.as_str(), "{field} multipart");
    }
    // Admin action in the body, and with no content type.
    let reply = stack.post(ADMIN, format!("action=get_app_data&{}", dev_form(&fx))).await;
    assert_eq!(expect_ok(&reply)["status"], "success");
    let reply = stack.post_as(&format!("{ADMIN}?action=get_users"), None, dev_form(&fx).into_bytes()).await;
    assert_eq!(expect_ok(&reply).as_array().expect("array").len(), 3);
    stack.stop().await;
}

async fn body_size_limit(backend: Backend) {
    let stack = TestStack::start(backend).await;
    let fx = stack.fixture("dev-size").await;
    stack.register_ok(&fx, "bob", "").await;

    let padded = |base: String, total: usize| {
        let mut body = format!("{base}&pad=");
        assert!(body.len() <= total);
        body.push_str(&"x".repeat(total - body.len()));
        assert_eq!(body.len(), total);
        body
    };
    // 64 KiB exactly is accepted; one byte more is refused, without a token.
    let reply = stack.client("login", padded(user_form(&fx, "bob", ""), FORM_LIMIT)).await;
    expect_signed_ok(&reply, &fx, "login", "");
    let reply = stack.client("login", padded(user_form(&fx, "bob", ""), FORM_LIMIT + 1)).await;
    expect_error(&reply, 413, "payload_too_large");
    let reply = stack.client("register", padded(register_form(&fx, "big", ""), 1024 * 1024)).await;
    expect_error(&reply, 413, "payload_too_large");
    // Far over the limit, announced with `Expect: 100-continue` (curl, .NET): refused at once.
    for target in [format!("{ACTION}?action=login"), format!("{ADMIN}?action=get_app_data")] {
        let reply = stack
            .post_head_expecting_continue(&target, "application/x-www-form-urlencoded", 8 * 1024 * 1024)
            .await;
        expect_error(&reply, 413, "payload_too_large");
    }
    let reply = stack.admin(&fx, "get_app_data", &format!("pad={}", "x".repeat(FORM_LIMIT))).await;
    expect_error(&reply, 413, "payload_too_large");
    let reply = stack.post(&format!("{ADMIN}?action=get_app_data"), padded(dev_form(&fx), FORM_LIMIT)).await;
    expect_ok(&reply);

    // Multipart bodies have the same limit.
    let big = "y".repeat(FORM_LIMIT);
    let reply = stack
        .post_multipart(
            &format!("{ACTION}?action=login"),
            &[("username", "bob"), ("password", "bob-pw"), ("app_secret", &fx.secret), ("pad", &big)],
        )
        .await;
    expect_error(&reply, 413, "payload_too_large");

    // A body sent without Content-Length (chunked) is limited too.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..40).map(|_| Ok(format!("&pad{}", "z".repeat(4096)).into_bytes())).collect();
    let stream = futures_util::stream::iter(chunks);
    let request = stack
        .request(Method::POST, &format!("{ACTION}?action=login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(reqwest::Body::wrap_stream(stream));
    expect_error(&stack.send(request).await, 413, "payload_too_large");
    assert_eq!(stack.usernames(&fx).await, ["bob"]);
    stack.stop().await;
}

/// A client that sends a large body straight away (Python requests, most HTTP libraries) must
/// still get to read the 413 answer, every time, not a reset connection.
async fn oversized_body_sent_eagerly(backend: Backend) {
    let stack = TestStack::start(backend).await;
    let fx = stack.fixture("dev-eager").await;
    let body = format!("{}&pad={}", user_form(&fx, "bob", ""), "x".repeat(16 * 1024 * 1024));
    for attempt in 1..=8 {
        let request = stack
            .request(Method::POST, &format!("{ACTION}?action=login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone());
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
                "attempt {attempt}: a 16 MiB body got no answer, the connection was torn down under \
                 the client instead of answering 413 payload_too_large: {error:?}"
            ),
        };
        expect_error(&reply, 413, "payload_too_large");
    }
    stack.stop().await;
}

async fn paths_methods_and_actions(backend: Backend) {
    let stack = TestStack::start(backend).await;
    let fx = stack.fixture("dev-paths").await;
    stack.register_ok(&fx, "bob", "").await;
    let creds = user_form(&fx, "bob", "");

    for path in [
        "/",
        "/api/other.php",
        "/api/action.php/extra",
        "/api/Action.php",
        "/action.php",
        "/api/admin.php.bak",
    ] {
        let reply = stack.post(&format!("{path}?action=login"), creds.clone()).await;
        expect_error(&reply, 404, "not_found");
    }
    for path in [ACTION, ADMIN] {
        for method in [Method::GET, Method::PUT, Method::DELETE, Method::PATCH, Method::OPTIONS] {
            let reply = stack.send(stack.request(method.clone(), &format!("{path}?action=login"))).await;
            expect_error(&reply, 405, "method_not_allowed");
        }
        let reply = stack.send(stack.request(Method::GET, path)).await;
        expect_error(&reply, 405, "method_not_allowed");
    }

    for target in [
        format!("{ACTION}?action=nope"),
        format!("{ACTION}?action=LOGIN"),
        format!("{ACTION}?action=get_app_data"),
        format!("{ACTION}?action=upload_file"),
        ACTION.to_owned(),
        format!("{ACTION}?action="),
    ] {
        let reply = stack.post(&target, creds.clone()).await;
        expect_error(&reply, 400, "unknown_action");
    }
    let reply = stack.post(ACTION, format!("action=delete_user&{creds}")).await;
    expect_error(&reply, 400, "unknown_action");
    for target in [format!("{ADMIN}?action=login"), format!("{ADMIN}?action=nope"), ADMIN.to_owned()] {
        let reply = stack.post(&target, dev_form(&fx)).await;
        expect_error(&reply, 400, "unknown_action");
    }
    let reply = stack.post(ADMIN, format!("action=register&{}", dev_form(&fx))).await;
    expect_error(&reply, 400, "unknown_action");
    stack.stop().await;
}

async fn throttling_per_username(backend: Backend) {
    let stack = TestStack::trusting_loopback_proxy(backend, |_| {}).await;
    let fx = stack.fixture("dev-throttle").await;
    for user in ["target", "bystander", "steady"] {
        stack.register_ok(&fx, user, "").await;
    }
    stack.register_ok(&fx, "bound", "hwid=HW-B").await;
    let secret = enc(&fx.secret);
    let wrong = |user: &str| format!("username={user}&password=guess&app_secret={secret}");
    let attacker = "203.0.113.7";
    let login =
        |from: &'static str, body: String| stack.post_from(from, "/api/action.php?action=login", body);

    for _ in 0..10 {
        let reply = login(attacker, wrong("target")).await;
        expect_signed_error(&reply, 401, "invalid_credentials", &fx, "login", "");
    }
    // The 11th attempt is refused before the password is checked, even the right one; signed.
    let reply = login(attacker, user_form(&fx, "target", "nonce=t11")).await;
    expect_signed_error(&reply, 429, "rate_limited", &fx, "login", "t11");
    let wait: u64 = reply.header("retry-after").expect("Retry-After").parse().expect("Retry-After seconds");
    assert!((1..=900).contains(&wait), "Retry-After {wait}");
    let reply = login(attacker, wrong("target")).await;
    expect_signed_error(&reply, 429, "rate_limited", &fx, "login", "");
    assert!(reply.header("retry-after").is_some());
    let reply =
        stack.post_from(attacker, &format!("{ACTION}?action=connect"), user_form(&fx, "target", "")).await;
    expect_signed_error(&reply, 429, "rate_limited", &fx, "connect", "");
    // The same account from another address, and another account from this one, still work.
    let reply = login("198.51.100.1", user_form(&fx, "target", "")).await;
    expect_signed_ok(&reply, &fx, "login", "");
    let reply = login(attacker, user_form(&fx, "bystander", "")).await;
    expect_signed_ok(&reply, &fx, "login", "");

    // Successes are not counted and reset nothing.
    let from = "203.0.113.8";
    for _ in 0..5 {
        expect_signed_error(
            &login(from, wrong("steady")).await,
            401,
            "invalid_credentials",
            &fx,
            "login",
            "",
        );
    }
    expect_signed_ok(&login(from, user_form(&fx, "steady", "")).await, &fx, "login", "");
    for _ in 0..5 {
        expect_signed_error(
            &login(from, wrong("steady")).await,
            401,
            "invalid_credentials",
            &fx,
            "login",
            "",
        );
    }
    expect_signed_error(
        &login(from, user_form(&fx, "steady", "")).await,
        429,
        "rate_limited",
        &fx,
        "login",
        "",
    );

    // A HWID mismatch counts as a failure too.
    let from = "203.0.113.9";
    for _ in 0..10 {
        let reply = login(from, user_form(&fx, "bound", "hwid=HW-OTHER")).await;
        expect_signed_error(&reply, 403, "hwid_mismatch", &fx, "login", "");
    }
    let reply = login(from, user_form(&fx, "bound", "hwid=HW-B")).await;
    expect_signed_error(&reply, 429, "rate_limited", &fx, "login", "");

    // Developers are throttled per developer username and address; no token on that path.
    let dev_wrong =
        format!("developer_username={}&developer_password=nope&app_secret={secret}", enc(&fx.developer));
    let admin =
        |from: &'static str, body: String| stack.post_from(from, "/api/admin.php?action=get_app_data", body);
    for _ in 0..10 {
        expect_error(&admin("192.0.2.9", dev_wrong.clone()).await, 401, "invalid_developer");
    }
    let reply = admin("192.0.2.9", dev_form(&fx)).await;
    expect_error(&reply, 429, "rate_limited");
    let wait: u64 = reply.header("retry-after").expect("Retry-After").parse().expect("Retry-After seconds");
    assert!((1..=900).contains(&wait), "Retry-After {wait}");
    expect_ok(&admin("192.0.2.10", dev_form(&fx)).await);

    // The app's status comes before the per-username throttle.
    expect_ok(&stack.admin(&fx, "change_status", "status=0").await);
    let reply = login(attacker, user_form(&fx, "target", "")).await;
    expect_signed_error(&reply, 503, "app_offline", &fx, "login", "");
    expect_ok(&stack.admin(&fx, "change_status", "status=1").await);

    // A gateway that trusts no proxy ignores X-Forwarded-For: every request is its TCP peer's.
    let plain = TestGateway::in_front_of(&stack.core, &[]).await;
    let reply =
        plain.post_from(attacker, &format!("{ACTION}?action=login"), user_form(&fx, "target", "")).await;
    expect_signed_ok(&reply, &fx, "login", "");
    for i in 0..10 {
        let reply = plain
            .post_from(
                &format!("198.51.100.{}", 20 + i),
                &format!("{ACTION}?action=login"),
                wrong("bystander"),
            )
            .await;
        expect_signed_error(&reply, 401, "invalid_credentials", &fx, "login", "");
    }
    let reply = plain
        .post_from("198.51.100.99", &format!("{ACTION}?action=login"), user_form(&fx, "bystander", ""))
        .await;
    expect_signed_error(&reply, 429, "rate_limited", &fx, "login", "");
    // ... while through the trusting gateway, bystander from a fresh address is fine.
    expect_signed_ok(&login("198.51.100.99", user_form(&fx, "bystander", "")).await, &fx, "login", "");
    plain.stop().await;
    stack.stop().await;
}

async fn throttling_per_address(backend: Backend) {
    let stack = TestStack::trusting_loopback_proxy(backend, |c| c.settings.throttle.per_address = 5).await;
    let fx = stack.fixture("dev-address").await;
    stack.register_ok(&fx, "alice", "").await;
    let scanner = "203.0.113.20";
    for i in 0..5 {
        let reply = stack
            .post_from(
                scanner,
                &format!("{ACTION}?action=login"),
                format!("username=alice&password=x&app_secret=guess-{i}"),
            )
            .await;
        expect_error(&reply, 401, "invalid_app_secret");
    }
    // Over the address limit, everything that checks a secret or password from there is refused,
    // before the app is known: no token.
    let cases = [
        (format!("{ACTION}?action=login"), user_form(&fx, "alice", "")),
        (format!("{ACTION}?action=register"), register_form(&fx, "mallory", "")),
        (format!("{ADMIN}?action=get_app_data"), dev_form(&fx)),
    ];
    for (target, body) in &cases {
        let reply = stack.post_from(scanner, target, body.clone()).await;
        expect_error(&reply, 429, "rate_limited");
        let wait: u64 = reply.header("retry-after").expect("Retry-After").parse().expect("seconds");
        assert!((1..=900).contains(&wait), "Retry-After {wait}");
    }
    let reply =
        stack.post_from("203.0.113.21", &format!("{ACTION}?action=login"), user_form(&fx, "alice", "")).await;
    expect_signed_ok(&reply, &fx, "login", "");
    assert_eq!(stack.usernames(&fx).await, ["alice"]);
    stack.stop().await;
}

async fn throttle_window_slides(backend: Backend) {
    let window = std::time::Duration::from_secs(3);
    let stack = TestStack::start_with(backend, |c| c.settings.throttle.window = window, |_| {}).await;
    let fx = stack.fixture("dev-window").await;
    stack.register_ok(&fx, "sam", "").await;
    let wrong = format!("username=sam&password=nope&app_secret={}", enc(&fx.secret));
    for _ in 0..10 {
        expect_signed_error(
            &stack.client("login", wrong.clone()).await,
            401,
            "invalid_credentials",
            &fx,
            "login",
            "",
        );
    }
    let reply = stack.client("login", user_form(&fx, "sam", "")).await;
    expect_signed_error(&reply, 429, "rate_limited", &fx, "login", "");
    let wait: u64 = reply.header("retry-after").expect("Retry-After").parse().expect("seconds");
    assert!((1..=window.as_secs()).contains(&wait), "Retry-After {wait} within the {window:?} window");
    // Refused attempts are not counted: they do not keep the window full.
    for _ in 0..5 {
        expect_signed_error(
            &stack.client("login", wrong.clone()).await,
            429,
            "rate_limited",
            &fx,
            "login",
            "",
        );
    }
    // Retry-After is when a slot frees; then the right password goes through.
    tokio::time::sleep(std::time::Duration::from_secs(wait) + std::time::Duration::from_millis(250)).await;
    expect_signed_ok(&stack.client("login", user_form(&fx, "sam", "")).await, &fx, "login", "");
    stack.stop().await;
}

async fn core_going_away_is_unavailable(backend: Backend) {
    let core = TestCore::start(backend).await;
    let gw = TestGateway::in_front_of(&core, &[]).await;
    let fx = core.fixture("dev-away").await;
    gw.register_ok(&fx, "bob", "").await;
    core.stop().await;

    let reply = gw.client("login", user_form(&fx, "bob", "")).await;
    expect_error(&reply, 503, "unavailable");
    let reply = gw.admin(&fx, "get_app_data", "").await;
    expect_error(&reply, 503, "unavailable");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_core_is_unavailable() {
    let gw =
        TestGateway::start(http_gateway::GatewayConfig::local(&format!("http://{}", dead_address().await)))
            .await;
    let user = "username=bob&password=bob-pw&app_secret=s3cret&hwid=HW";
    for action in ["register", "login", "connect", "download", "redeem"] {
        let body = format!("{user}&email=b%40x.y&licence=AAAAA-BBBBB");
        expect_error(&gw.client(action, body).await, 503, "unavailable");
    }
    let dev = "developer_username=dev&develoer_password=pw&app_secret=s3cret";
    for action in ["get_app_data", "get_licences", "get_users", "renew_secret"] {
        let reply = gw.post(&format!("{ADMIN}?action={action}"), dev).await;
        expect_error(&reply, 503, "unavailable");
    }
    // What the gateway decides alone is still answered.
    expect_error(&gw.post(&format!("{ACTION}?action=nope"), user).await, 400, "unknown_action");
    expect_error(&gw.send(gw.request(Method::GET, ACTION)).await, 405, "method_not_allowed");
    expect_error(&gw.post("/nowhere", user).await, 404, "not_found");
    gw.stop().await;
}

/// One home line holds a whole IPv6 /64: eleven guesses from eleven of its addresses are one
/// client's guesses. An IPv4-mapped address is the IPv4 address it maps.
async fn throttling_by_ipv6_network(backend: Backend) {
    let stack = TestStack::trusting_loopback_proxy(backend, |_| {}).await;
    let fx = stack.fixture("dev-ipv6").await;
    stack.register_ok(&fx, "victim", "").await;
    let wrong = format!("username=victim&password=guess&app_secret={}", enc(&fx.secret));
    let stack = &stack;
    let login = |from: String, body: String| async move {
        stack.post_from(&from, "/api/action.php?action=login", body).await
    };
    for i in 1..=10u32 {
        let reply = login(format!("2001:db8:5:5:{i:x}::1"), wrong.clone()).await;
        expect_signed_error(&reply, 401, "invalid_credentials", &fx, "login", "");
    }
    let reply = login("2001:db8:5:5:ffff:1:2:3".into(), user_form(&fx, "victim", "")).await;
    expect_signed_error(&reply, 429, "rate_limited", &fx, "login", "");
    // The next /64 is somebody else.
    expect_signed_ok(&login("2001:db8:5:6::1".into(), user_form(&fx, "victim", "")).await, &fx, "login", "");

    for _ in 0..10 {
        let reply = login("198.51.100.77".into(), wrong.clone()).await;
        expect_signed_error(&reply, 401, "invalid_credentials", &fx, "login", "");
    }
    let reply = login("::ffff:198.51.100.77".into(), user_form(&fx, "victim", "")).await;
    expect_signed_error(&reply, 429, "rate_limited", &fx, "login", "");
}

const GATEWAY_CREDENTIAL: &str = "gateway-credential-0123456789abcdef0123";

/// A core configured with a gateway credential believes the client addresses of a gateway that
/// presents it, and counts everything another gateway forwards on that gateway's own address.
async fn the_gateway_credential_carries_client_addresses(backend: Backend) {
    let stack = TestStack::start_with(
        backend,
        |core| {
            core.settings.gateway_credential = Some(
                core_service::service::GatewayCredential::parse(GATEWAY_CREDENTIAL).expect("credential"),
            );
            core.settings.throttle.per_username = 2;
        },
        |gateway| {
            gateway.trusted_proxies = vec!["127.0.0.1/32".parse().expect("net")];
            gateway.gateway_credential = Some(GATEWAY_CREDENTIAL.parse().expect("credential"));
        },
    )
    .await;
    let fx = stack.fixture("dev-credential").await;
    stack.register_ok(&fx, "victim", "").await;
    let wrong = format!("username=victim&password=guess&app_secret={}", enc(&fx.secret));
    let target = "/api/action.php?action=login";

    for _ in 0..2 {
        expect_signed_error(
            &stack.post_from("203.0.113.20", target, wrong.clone()).await,
            401,
            "invalid_credentials",
            &fx,
            "login",
            "",
        );
    }
    let reply = stack.post_from("203.0.113.20", target, user_form(&fx, "victim", "")).await;
    expect_signed_error(&reply, 429, "rate_limited", &fx, "login", "");
    expect_signed_ok(
        &stack.post_from("203.0.113.21", target, user_form(&fx, "victim", "")).await,
        &fx,
        "login",
        "",
    );

    // A gateway without the credential: whatever addresses it forwards, the core counts them all
    // on the gateway's own (loopback) address.
    let mut config = http_gateway::GatewayConfig::local(&stack.core.url());
    config.trusted_proxies = vec!["127.0.0.1/32".parse().expect("net")];
    let outsider = TestGateway::start(config).await;
    for from in ["198.51.100.30", "198.51.100.31"] {
        expect_signed_error(
            &outsider.post_from(from, target, wrong.clone()).await,
            401,
            "invalid_credentials",
            &fx,
            "login",
            "",
        );
    }
    let reply = outsider.post_from("198.51.100.32", target, user_form(&fx, "victim", "")).await;
    expect_signed_error(&reply, 429, "rate_limited", &fx, "login", "");
    outsider.stop().await;
}
