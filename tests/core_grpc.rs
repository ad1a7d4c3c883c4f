//! The core over real gRPC: every call's success shape and every error code the core produces,
//! on SQLite and on PostgreSQL.

mod common;

use std::collections::{BTreeSet, HashSet};

use base64::Engine;
use chrono::{Duration, Utc};
use common::{Backend, Fixture, TestCore, expect_code, gateway::verified_claims, reason};
use futures_util::StreamExt;
use licensing::v1::{self as pb, LicenceStatus};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use tonic::Request;

fn ts(t: chrono::DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds: t.timestamp(), nanos: 0 })
}

async fn register(
    core: &TestCore,
    fx: &Fixture,
    username: &str,
    hwid: &str,
    licence: &str,
) -> Result<pb::RegisterResponse, tonic::Status> {
    let mut client = core.client().await;
    client
        .register(pb::RegisterRequest {
            app_secret: fx.secret.clone(),
            username: username.into(),
            password: format!("{username}-pw"),
            email: format!("{username}@example.com"),
            hwid: hwid.into(),
            licence_key: licence.into(),
            origin: None,
        })
        .await
        .map(|r| r.into_inner())
}

async fn login(
    core: &TestCore,
    fx: &Fixture,
    username: &str,
    hwid: &str,
) -> Result<pb::LoginResponse, tonic::Status> {
    let mut client = core.client().await;
    client
        .login(pb::LoginRequest { auth: fx.user(username, &format!("{username}-pw"), hwid), origin: None })
        .await
        .map(|r| r.into_inner())
}

async fn create_keys(core: &TestCore, fx: &Fixture, amount: u32, access: u32, days: i64) -> Vec<pb::Licence> {
    let mut dev = core.developer().await;
    dev.create_licences(pb::CreateLicencesRequest {
        scope: fx.scope(),
        amount,
        access,
        expire_time: ts(Utc::now() + Duration::days(days)),
    })
    .await
    .expect("create licences")
    .into_inner()
    .licences
}

async fn all_users(core: &TestCore, fx: &Fixture) -> Vec<pb::User> {
    let mut dev = core.developer().await;
    dev.list_users(pb::ListUsersRequest {
        scope: fx.scope(),
        page_size: 0,
        page_token: String::new(),
        ..Default::default()
    })
    .await
    .expect("list users")
    .into_inner()
    .users
}

async fn all_licences(core: &TestCore, fx: &Fixture) -> Vec<pb::Licence> {
    let mut dev = core.developer().await;
    dev.list_licences(pb::ListLicencesRequest {
        scope: fx.scope(),
        page_size: 0,
        page_token: String::new(),
        ..Default::default()
    })
    .await
    .expect("list licences")
    .into_inner()
    .licences
}

on_both_backends! {
    only_gateways_name_the_client => only_gateways_name_the_client;
    end_user_flow => end_user_flow;
    licence_lifecycle => licence_lifecycle;
    failed_registration_leaves_nothing => failed_registration_leaves_nothing;
    concurrent_heartbeats => concurrent_heartbeats;
    developer_isolation => developer_isolation;
    developer_errors => developer_errors;
    app_settings => app_settings;
    api_tokens => api_tokens;
    binaries => binaries;
    users_admin => users_admin;
    throttling => throttling;
    client_field_errors => client_field_errors;
    health_and_reflection => health_and_reflection;
    streamed_listings => streamed_listings;
}

/// Every licence and user arrives once, in id order, a page per message, from one snapshot taken
/// after one authentication; a bad caller fails the call before any message.
async fn streamed_listings(backend: Backend) {
    let core = TestCore::start(backend).await;
    let fx = core.fixture("dev-stream").await;
    let mut created: Vec<String> = Vec::new();
    for _ in 0..5 {
        created.extend(create_keys(&core, &fx, 1, 2, 10).await.into_iter().map(|l| l.key));
    }
    for name in ["sam1", "sam2", "sam3"] {
        register(&core, &fx, name, "HW", "").await.expect("register");
    }
    let mut dev = core.developer().await;

    let mut pages = dev
        .stream_licences(pb::StreamLicencesRequest { scope: fx.scope(), page_size: 2 })
        .await
        .expect("stream")
        .into_inner();
    let first = pages.message().await.expect("first page").expect("a page");
    assert_eq!(first.licences.len(), 2);
    // Written after the stream started: the snapshot must not show it.
    let late = create_keys(&core, &fx, 1, 2, 10).await;
    let mut keys: Vec<String> = first.licences.into_iter().map(|l| l.key).collect();
    let mut messages = 1;
    while let Some(page) = pages.message().await.expect("page") {
        assert!(page.next_page_token.is_empty());
        assert!(page.licences.len() <= 2);
        messages += 1;
        keys.extend(page.licences.into_iter().map(|l| l.key));
    }
    assert_eq!(keys, created, "every licence once, in id order, none written after the start");
    assert!(messages >= 3);
    assert!(!keys.contains(&late[0].key));

    let mut users = dev
        .stream_users(pb::StreamUsersRequest { scope: fx.scope(), page_size: 0 })
        .await
        .expect("stream users")
        .into_inner();
    let mut names = Vec::new();
    while let Some(page) = users.message().await.expect("page") {
        names.extend(page.users.into_iter().map(|u| u.username));
    }
    assert_eq!(names, ["sam1", "sam2", "sam3"]);

    let mut wrong = fx.scope();
    if let Some(d) = wrong.as_mut().and_then(|s| s.developer.as_mut()) {
        d.password = "wrong".into();
    }
    expect_code(
        dev.stream_licences(pb::StreamLicencesRequest { scope: wrong.clone(), page_size: 0 }).await,
        "invalid_developer",
    );
    expect_code(
        dev.stream_users(pb::StreamUsersRequest { scope: wrong, page_size: 0 }).await,
        "invalid_developer",
    );
    expect_code(
        dev.stream_licences(pb::StreamLicencesRequest { scope: fx.scope(), page_size: 1001 }).await,
        "invalid_field",
    );
}

async fn end_user_flow(backend: Backend) {
    let core = TestCore::start(backend).await;
    let fx = core.fixture("dev-one").await;

    let reg = register(&core, &fx, "bob", "", "").await.expect("register");
    let user = reg.user.expect("user");
    assert_eq!(user.username, "bob");
    assert_eq!(user.licence_status(), LicenceStatus::None);
    let claims = verified_claims(&reg.response_token, &fx.public_key);
    assert_eq!(claims["act"], "register");
    assert_eq!(claims["st"], "success");

    expect_code(register(&core, &fx, "bob", "", "").await, "username_taken");

    // No HWID yet: login succeeds and leaves it unbound.
    let out = login(&core, &fx, "bob", "").await.expect("login");
    let u = out.user.expect("user");
    assert_eq!(u.hwid, None);
    assert!(!u.has_licence);
    assert_eq!(u.total_pings, 0);
    assert_eq!(out.app_version, None);

    // The first HWID binds; afterwards a different or missing one is refused.
    let mut client = core.client().await;
    let bound = login(&core, &fx, "bob", "HW-1").await.expect("login binds");
    assert_eq!(bound.user.expect("user").hwid.as_deref(), Some("HW-1"));
    let mismatch = expect_code(login(&core, &fx, "bob", "HW-2").await, "hwid_mismatch");
    assert_eq!(mismatch.code(), tonic::Code::PermissionDenied);
    // Failures after the app is known carry a token too.
    let token =
        mismatch.metadata().get("x-response-token").expect("token on failure").to_str().expect("ascii");
    let claims = verified_claims(token, &fx.public_key);
    assert_eq!(claims["st"], "hwid_mismatch");
    assert_eq!(claims["hwid"], "HW-1");
    expect_code(login(&core, &fx, "bob", "").await, "hwid_mismatch");

    let wrong = client.login(pb::LoginRequest { auth: fx.user("bob", "nope", "HW-1"), origin: None }).await;
    let status = expect_code(wrong, "invalid_credentials");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    expect_code(login(&core, &fx, "nobody", "HW-1").await, "invalid_credentials");

    // Heartbeats count, and the token carries the count and the nonce.
    for expected in 1..=3 {
        let hb = client
            .heartbeat(pb::HeartbeatRequest {
                auth: fx.user("bob", "bob-pw", "HW-1"),
                origin: Some(pb::Origin { client_address: String::new(), nonce: format!("n{expected}") }),
            })
            .await
            .expect("heartbeat")
            .into_inner();
        assert_eq!(hb.total_pings, expected);
        let claims = verified_claims(&hb.response_token, &fx.public_key);
        assert_eq!(claims["act"], "connect");
        assert_eq!(claims["pings"], expected);
        assert_eq!(claims["nonce"], format!("n{expected}"));
        assert_eq!(claims["lic"], "none");
        assert_eq!(claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat"), 60);
    }
    let users = all_users(&core, &fx).await;
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].total_pings, 3);
    assert!(users[0].last_seen.is_some());

    // Register with a HWID binds it at once.
    register(&core, &fx, "carol", "HW-C", "").await.expect("register");
    expect_code(login(&core, &fx, "carol", "HW-X").await, "hwid_mismatch");
    login(&core, &fx, "carol", "HW-C").await.expect("login");
    core.stop().await;
}

async fn licence_lifecycle(backend: Backend) {
    let core = TestCore::start(backend).await;
    let fx = core.fixture("dev-lic").await;
    let keys = create_keys(&core, &fx, 3, 5, 30).await;
    assert_eq!(keys.len(), 3);
    for k in &keys {
        assert_eq!(k.key.len(), 29);
        assert_eq!(k.key.split('-').count(), 5);
        assert_eq!(k.key, k.key.to_uppercase());
        assert_eq!(k.access, 5);
        assert!(!k.redeemed && !k.in_use && !k.banned && k.used_by.is_none());
    }
    let ids: Vec<i64> = all_licences(&core, &fx).await.iter().map(|l| l.id).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "licences are listed by id");

    // Register redeeming a key typed in lower case with whitespace around it.
    let typed = format!("  {}\n", keys[0].key.to_lowercase());
    register(&core, &fx, "dave", "", &typed).await.expect("register with licence");
    let out = login(&core, &fx, "dave", "").await.expect("login");
    let u = out.user.expect("user");
    assert_eq!(u.licence_status(), LicenceStatus::Active);
    assert!(u.has_licence);
    let claims = verified_claims(&out.response_token, &fx.public_key);
    assert_eq!(claims["lic"], "active");
    assert_eq!(claims["lvl"], 5);
    // The lease is the earlier of the key's expiry and the 24 h offline grace.
    let lease = claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat");
    assert!((86_390..=86_400).contains(&lease), "lease {lease}");

    let listed = all_licences(&core, &fx).await;
    let l0 = listed.iter().find(|l| l.id == keys[0].id).expect("listed");
    assert_eq!(l0.used_by.as_deref(), Some("dave"));
    assert!(l0.in_use && l0.redeemed && l0.redeemed_at.is_some());

    // Redeem a second key through Redeem.
    let mut client = core.client().await;
    let r = client
        .redeem(pb::RedeemRequest {
            auth: fx.user("dave", "dave-pw", ""),
            licence_key: keys[1].key.clone(),
            origin: None,
        })
        .await
        .expect("redeem")
        .into_inner();
    assert_eq!(r.licence_status(), LicenceStatus::Active);
    assert_eq!(r.access, 5);
    assert_eq!(r.expire_time.expect("expiry").seconds, keys[1].expire_time.expect("expiry").seconds);
    let again = client
        .redeem(pb::RedeemRequest {
            auth: fx.user("dave", "dave-pw", ""),
            licence_key: keys[1].key.clone(),
            origin: None,
        })
        .await;
    expect_code(again, "licence_used");
    let unknown = client
        .redeem(pb::RedeemRequest {
            auth: fx.user("dave", "dave-pw", ""),
            licence_key: "AAAAA-BBBBB".into(),
            origin: None,
        })
        .await;
    let status = expect_code(unknown, "invalid_licence");
    assert!(status.metadata().get("x-response-token").is_some());

    // Ban, even of one key, bans the user; connect refuses; unban restores.
    let mut dev = core.developer().await;
    let banned = dev
        .ban_licence(pb::BanLicenceRequest { scope: fx.scope(), licence_key: keys[0].key.to_lowercase() })
        .await
        .expect("ban")
        .into_inner();
    assert!(banned.banned);
    assert_eq!(banned.used_by.as_deref(), Some("dave"));
    let out = login(&core, &fx, "dave", "").await.expect("banned users can log in");
    assert_eq!(out.user.expect("user").licence_status(), LicenceStatus::Banned);
    let hb =
        client.heartbeat(pb::HeartbeatRequest { auth: fx.user("dave", "dave-pw", ""), origin: None }).await;
    expect_code(hb, "licence_banned");
    dev.unban_licence(pb::UnbanLicenceRequest { scope: fx.scope(), licence_key: keys[0].key.clone() })
        .await
        .expect("unban");
    let out = login(&core, &fx, "dave", "").await.expect("login");
    assert_eq!(out.user.expect("user").licence_status(), LicenceStatus::Active);

    // A banned key cannot be redeemed; an expired one neither.
    dev.ban_licence(pb::BanLicenceRequest { scope: fx.scope(), licence_key: keys[2].key.clone() })
        .await
        .expect("ban");
    expect_code(register(&core, &fx, "erin", "", &keys[2].key).await, "licence_banned");
    let fresh = create_keys(&core, &fx, 1, 1, 1).await;
    use core_service::storage::entities::licence;
    let row = licence::Entity::find()
        .filter(licence::Column::LicenceKey.eq(fresh[0].key.clone()))
        .one(core.core.db())
        .await
        .expect("query")
        .expect("row");
    let mut row: licence::ActiveModel = row.into();
    row.expire_time = Set(Utc::now() - Duration::hours(1));
    row.update(core.core.db()).await.expect("expire the key");
    let expired = expect_code(register(&core, &fx, "erin", "", &fresh[0].key).await, "licence_expired");
    assert_eq!(expired.code(), tonic::Code::FailedPrecondition);

    // Deleting both of dave's keys: status none, has_licence stays true.
    for k in &keys[..2] {
        dev.delete_licence(pb::DeleteLicenceRequest { scope: fx.scope(), licence_key: k.key.clone() })
            .await
            .expect("delete");
    }
    let u = login(&core, &fx, "dave", "").await.expect("login").user.expect("user");
    assert_eq!(u.licence_status(), LicenceStatus::None);
    assert!(u.has_licence);
    let missing = dev
        .delete_licence(pb::DeleteLicenceRequest { scope: fx.scope(), licence_key: keys[0].key.clone() })
        .await;
    assert_eq!(expect_code(missing, "not_found").code(), tonic::Code::NotFound);
    expect_code(
        dev.ban_licence(pb::BanLicenceRequest { scope: fx.scope(), licence_key: keys[0].key.clone() }).await,
        "not_found",
    );
    core.stop().await;
}

async fn failed_registration_leaves_nothing(backend: Backend) {
    let core = TestCore::start(backend).await;
    let fx = core.fixture("dev-atomic").await;
    let keys = create_keys(&core, &fx, 1, 0, 10).await;
    register(&core, &fx, "first", "", &keys[0].key).await.expect("register");
    expect_code(register(&core, &fx, "second", "", &keys[0].key).await, "licence_used");
    expect_code(register(&core, &fx, "third", "", "NO-SUCH-KEY").await, "invalid_licence");
    // username_taken is checked before the licence.
    expect_code(register(&core, &fx, "first", "", "NO-SUCH-KEY").await, "username_taken");
    let names: Vec<String> = all_users(&core, &fx).await.into_iter().map(|u| u.username).collect();
    assert_eq!(names, vec!["first".to_string()]);
    expect_code(login(&core, &fx, "second", "").await, "invalid_credentials");
    // The names are free for a later, valid registration.
    register(&core, &fx, "second", "", "").await.expect("register");
    core.stop().await;
}

async fn concurrent_heartbeats(backend: Backend) {
    let core = TestCore::start(backend).await;
    let fx = core.fixture("dev-pings").await;
    register(&core, &fx, "pinger", "HW", "").await.expect("register");
    let channel = core.channel().await;
    let calls = 60;
    let mut tasks = Vec::new();
    for _ in 0..calls {
        let mut client = pb::client_service_client::ClientServiceClient::new(channel.clone());
        let auth = fx.user("pinger", "pinger-pw", "HW");
        tasks.push(tokio::spawn(async move {
            client
                .heartbeat(pb::HeartbeatRequest { auth, origin: None })
                .await
                .map(|r| r.into_inner().total_pings)
        }));
    }
    let mut seen = BTreeSet::new();
    for t in tasks {
        seen.insert(t.await.expect("task").expect("heartbeat"));
    }
    // Every call saw its own count: none lost, none repeated.
    assert_eq!(seen, (1..=calls).collect::<BTreeSet<i64>>());
    assert_eq!(all_users(&core, &fx).await[0].total_pings, calls);
    core.stop().await;
}

async fn developer_isolation(backend: Backend) {
    let core = TestCore::start(backend).await;
    let alice = core.fixture("alice").await;
    let mallory = core.fixture("mallory").await;
    let keys = create_keys(&core, &alice, 2, 1, 5).await;
    register(&core, &alice, "victim", "", "").await.expect("register");
    let victim_id = all_users(&core, &alice).await[0].id;

    // Mallory's credentials with Alice's secret.
    let stolen = Fixture { secret: alice.secret.clone(), ..mallory.clone() };
    let mut dev = core.developer().await;
    let forbidden = expect_code(dev.get_app(pb::GetAppRequest { scope: stolen.scope() }).await, "forbidden");
    assert_eq!(forbidden.code(), tonic::Code::PermissionDenied);
    expect_code(
        dev.list_licences(pb::ListLicencesRequest {
            scope: stolen.scope(),
            page_size: 0,
            page_token: String::new(),
            ..Default::default()
        })
        .await,
        "forbidden",
    );
    expect_code(
        dev.list_users(pb::ListUsersRequest {
            scope: stolen.scope(),
            page_size: 0,
            page_token: String::new(),
            ..Default::default()
        })
        .await,
        "forbidden",
    );
    expect_code(
        dev.delete_user(pb::DeleteUserRequest { scope: stolen.scope(), user_id: victim_id }).await,
        "forbidden",
    );
    expect_code(
        dev.delete_licence(pb::DeleteLicenceRequest {
            scope: stolen.scope(),
            licence_key: keys[0].key.clone(),
        })
        .await,
        "forbidden",
    );
    expect_code(dev.renew_secret(pb::RenewSecretRequest { scope: stolen.scope() }).await, "forbidden");
    expect_code(
        dev.set_app_online(pb::SetAppOnlineRequest { scope: stolen.scope(), online: false }).await,
        "forbidden",
    );
    expect_code(
        dev.create_licences(pb::CreateLicencesRequest {
            scope: stolen.scope(),
            amount: 1,
            access: 1,
            expire_time: ts(Utc::now() + Duration::days(1)),
        })
        .await,
        "forbidden",
    );
    // Through her own app, Mallory cannot reach Alice's users or keys either.
    expect_code(
        dev.delete_user(pb::DeleteUserRequest { scope: mallory.scope(), user_id: victim_id }).await,
        "not_found",
    );
    expect_code(
        dev.ban_licence(pb::BanLicenceRequest { scope: mallory.scope(), licence_key: keys[0].key.clone() })
            .await,
        "not_found",
    );
    expect_code(
        dev.reset_hwid(pb::ResetHwidRequest { scope: mallory.scope(), user_id: victim_id }).await,
        "not_found",
    );
    assert!(all_users(&core, &mallory).await.is_empty());
    // Nothing of Alice's changed.
    assert_eq!(all_users(&core, &alice).await.len(), 1);
    assert!(all_licences(&core, &alice).await.iter().all(|l| !l.banned));
    let app = dev.get_app(pb::GetAppRequest { scope: alice.scope() }).await.expect("get app").into_inner();
    assert!(app.online);
    assert_eq!(app.secret, alice.secret);
    core.stop().await;
}

async fn developer_errors(backend: Backend) {
    let core = TestCore::start(backend).await;
    let fx = core.fixture("dev-errors").await;
    let mut dev = core.developer().await;

    let wrong_pw = Fixture { password: "wrong".into(), ..fx.clone() };
    let s =
        expect_code(dev.get_app(pb::GetAppRequest { scope: wrong_pw.scope() }).await, "invalid_developer");
    assert_eq!(s.code(), tonic::Code::Unauthenticated);
    let unknown = Fixture { developer: "nobody-here".into(), ..fx.clone() };
    expect_code(dev.get_app(pb::GetAppRequest { scope: unknown.scope() }).await, "invalid_developer");
    let bad_secret = Fixture { secret: "0".repeat(64), ..fx.clone() };
    expect_code(dev.get_app(pb::GetAppRequest { scope: bad_secret.scope() }).await, "invalid_app_secret");
    let s = expect_code(dev.get_app(pb::GetAppRequest { scope: None }).await, "missing_field");
    assert_eq!(s.code(), tonic::Code::InvalidArgument);
    let no_secret = Fixture { secret: String::new(), ..fx.clone() };
    let s = expect_code(dev.get_app(pb::GetAppRequest { scope: no_secret.scope() }).await, "missing_field");
    let details = tonic_types::StatusExt::get_details_bad_request(&s).expect("bad request details");
    assert_eq!(details.field_violations[0].field, "app_secret");

    let create = |amount, access, days: i64| pb::CreateLicencesRequest {
        scope: fx.scope(),
        amount,
        access,
        expire_time: ts(Utc::now() + Duration::days(days)),
    };
    for (amount, access, days, field) in
        [(0, 1, 1, "amount"), (501, 1, 1, "amount"), (1, 10, 1, "access"), (1, 1, -1, "expire_date")]
    {
        let s = expect_code(dev.create_licences(create(amount, access, days)).await, "invalid_field");
        let details = tonic_types::StatusExt::get_details_bad_request(&s).expect("bad request");
        assert_eq!(details.field_violations[0].field, field);
        assert!(s.message().contains(field), "message names the field: {}", s.message());
    }
    let mut no_expiry = create(1, 1, 1);
    no_expiry.expire_time = None;
    expect_code(dev.create_licences(no_expiry).await, "missing_field");
    assert_eq!(
        dev.create_licences(create(500, 9, 1)).await.expect("500 keys").into_inner().licences.len(),
        500
    );

    expect_code(
        dev.set_app_version(pb::SetAppVersionRequest { scope: fx.scope(), version: "v".repeat(65) }).await,
        "invalid_field",
    );
    expect_code(
        dev.set_app_version(pb::SetAppVersionRequest { scope: fx.scope(), version: String::new() }).await,
        "missing_field",
    );
    expect_code(
        dev.list_licences(pb::ListLicencesRequest {
            scope: fx.scope(),
            page_size: 1001,
            page_token: String::new(),
            ..Default::default()
        })
        .await,
        "invalid_field",
    );
    expect_code(
        dev.list_licences(pb::ListLicencesRequest {
            scope: fx.scope(),
            page_size: 10,
            page_token: "zz".into(),
            ..Default::default()
        })
        .await,
        "invalid_field",
    );
    expect_code(
        dev.delete_user(pb::DeleteUserRequest { scope: fx.scope(), user_id: 999_999 }).await,
        "not_found",
    );
    expect_code(
        dev.reset_hwid(pb::ResetHwidRequest { scope: fx.scope(), user_id: 999_999 }).await,
        "not_found",
    );
    expect_code(
        dev.delete_licence(pb::DeleteLicenceRequest { scope: fx.scope(), licence_key: String::new() }).await,
        "missing_field",
    );

    // Paging through 500+ keys yields each once, in id order.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = dev
            .list_licences(pb::ListLicencesRequest {
                scope: fx.scope(),
                page_size: 120,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("page")
            .into_inner();
        assert!(page.licences.len() <= 120);
        seen.extend(page.licences.iter().map(|l| l.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 500);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    core.stop().await;
}

async fn app_settings(backend: Backend) {
    let core = TestCore::start(backend).await;
    let fx = core.fixture("dev-app").await;
    register(&core, &fx, "user1", "", "").await.expect("register");
    let mut dev = core.developer().await;

    let app = dev.get_app(pb::GetAppRequest { scope: fx.scope() }).await.expect("get").into_inner();
    assert_eq!(app.name, "dev-app's app");
    assert!(app.online);
    assert_eq!(app.version, None);
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(&app.public_key).expect("b64").len(), 32);
    assert_eq!(app.offline_grace.expect("grace").seconds, 86_400);

    let off = dev
        .set_app_online(pb::SetAppOnlineRequest { scope: fx.scope(), online: false })
        .await
        .expect("offline");
    assert!(!off.into_inner().online);
    let s = expect_code(login(&core, &fx, "user1", "").await, "app_offline");
    let token = s.metadata().get("x-response-token").expect("token").to_str().expect("ascii");
    assert_eq!(verified_claims(token, &fx.public_key)["st"], "app_offline");
    expect_code(register(&core, &fx, "user2", "", "").await, "app_offline");
    // Developer calls still work while offline.
    dev.set_app_version(pb::SetAppVersionRequest { scope: fx.scope(), version: "2.0.1".into() })
        .await
        .expect("version");
    dev.set_app_online(pb::SetAppOnlineRequest { scope: fx.scope(), online: true }).await.expect("online");
    assert_eq!(login(&core, &fx, "user1", "").await.expect("login").app_version.as_deref(), Some("2.0.1"));

    let renewed =
        dev.renew_secret(pb::RenewSecretRequest { scope: fx.scope() }).await.expect("renew").into_inner();
    assert_ne!(renewed.secret, fx.secret);
    assert_eq!(renewed.secret.len(), 64);
    let s = expect_code(login(&core, &fx, "user1", "").await, "invalid_app_secret");
    assert!(s.metadata().get("x-response-token").is_none(), "no token before the app is known");
    expect_code(dev.get_app(pb::GetAppRequest { scope: fx.scope() }).await, "invalid_app_secret");
    let renewed_fx = Fixture { secret: renewed.secret.clone(), ..fx.clone() };
    login(&core, &renewed_fx, "user1", "").await.expect("login with the new secret");
    core.stop().await;
}

async fn api_tokens(backend: Backend) {
    let core = TestCore::start(backend).await;
    let fx = core.fixture("dev-token").await;
    let created = core.core.add_token("dev-token").await.expect("token");
    assert!(created.token.len() >= 43);
    let mut dev = core.developer().await;
    let with_token = |token: &str| {
        let mut req = Request::new(pb::GetAppRequest {
            scope: Some(pb::AppScope {
                app_secret: fx.secret.clone(),
                developer: None,
                origin: None,
                ..Default::default()
            }),
        });
        req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("header"));
        req
    };
    let app = dev.get_app(with_token(&created.token)).await.expect("token works").into_inner();
    assert_eq!(app.secret, fx.secret);
    let unknown = expect_code(dev.get_app(with_token("lic_not-a-real-token")).await, "invalid_developer");
    assert_eq!(unknown.message(), "the API token is unknown or revoked");
    let listed = core.core.list_tokens("dev-token").await.expect("list");
    assert_eq!(listed.len(), 1);
    assert!(created.token.starts_with(&listed[0].prefix));
    core.core.revoke_token("dev-token", created.id).await.expect("revoke");
    let revoked = expect_code(dev.get_app(with_token(&created.token)).await, "invalid_developer");
    assert_eq!(revoked.message(), "the API token is unknown or revoked", "not a password message");
    // A token of another developer does not open this app.
    core.fixture("other-dev").await;
    let other = core.core.add_token("other-dev").await.expect("token");
    expect_code(dev.get_app(with_token(&other.token)).await, "forbidden");
    core.stop().await;
}

async fn upload(
    core: &TestCore,
    fx: &Fixture,
    filename: &str,
    data: &[u8],
) -> Result<pb::FileInfo, tonic::Status> {
    let mut dev = core.developer().await;
    let mut messages = vec![pb::UploadFileRequest {
        payload: Some(pb::upload_file_request::Payload::Header(pb::UploadFileHeader {
            scope: fx.scope(),
            filename: filename.into(),
        })),
    }];
    for chunk in data.chunks(100_000) {
        messages.push(pb::UploadFileRequest {
            payload: Some(pb::upload_file_request::Payload::Chunk(chunk.to_vec())),
        });
    }
    dev.upload_file(futures_util::stream::iter(messages)).await.map(|r| r.into_inner())
}

async fn download(
    core: &TestCore,
    fx: &Fixture,
    user: &str,
) -> Result<(pb::FileInfo, String, Vec<u8>), tonic::Status> {
    let mut client = core.client().await;
    let mut stream = client
        .download(pb::DownloadRequest { auth: fx.user(user, &format!("{user}-pw"), ""), origin: None })
        .await?
        .into_inner();
    let first = stream.next().await.expect("first message")?;
    let Some(pb::download_response::Payload::Info(info)) = first.payload else { panic!("info first") };
    let mut bytes = Vec::new();
    while let Some(msg) = stream.next().await {
        match msg?.payload {
            Some(pb::download_response::Payload::Chunk(c)) => bytes.extend_from_slice(&c),
            other => panic!("unexpected {other:?}"),
        }
    }
    Ok((info, first.response_token, bytes))
}

async fn binaries(backend: Backend) {
    let core = TestCore::start_with(backend, |c| c.settings.max_upload_bytes = 3_000_000).await;
    let fx = core.fixture("dev-bin").await;
    let keys = create_keys(&core, &fx, 2, 2, 10).await;
    register(&core, &fx, "payer", "", &keys[0].key).await.expect("register");
    register(&core, &fx, "freeloader", "", "").await.expect("register");

    expect_code(download(&core, &fx, "payer").await, "no_file");
    expect_code(download(&core, &fx, "freeloader").await, "no_active_licence");

    let data: Vec<u8> = (0..1_000_003u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let info = upload(&core, &fx, "app-1.0.exe", &data).await.expect("upload");
    assert_eq!(info.size, data.len() as u64);
    use sha2::Digest;
    let digest: String = sha2::Sha256::digest(&data).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(info.sha256, digest);

    let (got_info, token, bytes) = download(&core, &fx, "payer").await.expect("download");
    assert_eq!(got_info.filename, "app-1.0.exe");
    assert_eq!(bytes, data);
    let claims = verified_claims(&token, &fx.public_key);
    assert_eq!(claims["sha256"], digest);
    assert_eq!(claims["act"], "download");

    // A new upload replaces the old; an oversize or badly named one changes nothing.
    upload(&core, &fx, "app-1.1.exe", b"small").await.expect("upload");
    let s = expect_code(upload(&core, &fx, "huge.bin", &vec![0u8; 3_000_001]).await, "payload_too_large");
    assert_eq!(s.code(), tonic::Code::ResourceExhausted);
    expect_code(upload(&core, &fx, "../evil", b"x").await, "invalid_field");
    let (info, _, bytes) = download(&core, &fx, "payer").await.expect("download");
    assert_eq!(info.filename, "app-1.1.exe");
    assert_eq!(bytes, b"small");

    let mut dev = core.developer().await;
    dev.ban_licence(pb::BanLicenceRequest { scope: fx.scope(), licence_key: keys[0].key.clone() })
        .await
        .expect("ban");
    expect_code(download(&core, &fx, "payer").await, "licence_banned");
    let stolen = Fixture { secret: fx.secret.clone(), ..core.fixture("dev-other").await };
    expect_code(upload(&core, &stolen, "x.bin", b"x").await, "forbidden");
    core.stop().await;
}

async fn users_admin(backend: Backend) {
    let core = TestCore::start(backend).await;
    let fx = core.fixture("dev-users").await;
    let keys = create_keys(&core, &fx, 1, 3, 10).await;
    for (i, name) in ["user1", "user2", "user3", "user4", "user5"].iter().enumerate() {
        let key = if i == 0 { keys[0].key.as_str() } else { "" };
        register(&core, &fx, name, "HW", key).await.expect("register");
    }
    let mut dev = core.developer().await;
    let mut names = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = dev
            .list_users(pb::ListUsersRequest {
                scope: fx.scope(),
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("page")
            .into_inner();
        pages += 1;
        names.extend(page.users.into_iter().map(|u| u.username));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(names, ["user1", "user2", "user3", "user4", "user5"]);
    assert!(pages >= 3);

    let users = all_users(&core, &fx).await;
    let u1 = &users[0];
    assert_eq!(u1.licence_status(), LicenceStatus::Active);
    assert_eq!(u1.email, "user1@example.com");
    assert_eq!(u1.hwid.as_deref(), Some("HW"));

    // reset_hwid: the next HWID presented binds.
    let reset = dev
        .reset_hwid(pb::ResetHwidRequest { scope: fx.scope(), user_id: users[1].id })
        .await
        .expect("reset");
    assert_eq!(reset.into_inner().hwid, None);
    let bound = login(&core, &fx, "user2", "NEW-HW").await.expect("login");
    assert_eq!(bound.user.expect("user").hwid.as_deref(), Some("NEW-HW"));

    // delete_user: the licence stays listed, unbound and redeemed, and cannot be redeemed again.
    dev.delete_user(pb::DeleteUserRequest { scope: fx.scope(), user_id: u1.id }).await.expect("delete");
    let lic = &all_licences(&core, &fx).await[0];
    assert_eq!(lic.used_by, None);
    assert!(!lic.in_use);
    assert!(lic.redeemed);
    expect_code(login(&core, &fx, "user1", "HW").await, "invalid_credentials");
    expect_code(register(&core, &fx, "user6", "", &keys[0].key).await, "licence_used");
    expect_code(
        dev.delete_user(pb::DeleteUserRequest { scope: fx.scope(), user_id: u1.id }).await,
        "not_found",
    );
    let left: HashSet<String> = all_users(&core, &fx).await.into_iter().map(|u| u.username).collect();
    assert_eq!(left, ["user2", "user3", "user4", "user5"].iter().map(|s| s.to_string()).collect());
    core.stop().await;
}

async fn throttling(backend: Backend) {
    let core = TestCore::start(backend).await;
    let fx = core.fixture("dev-throttle").await;
    register(&core, &fx, "target", "", "").await.expect("register");
    register(&core, &fx, "bystander", "", "").await.expect("register");
    let mut client = core.client().await;
    let from = |addr: &str| Some(pb::Origin { client_address: addr.into(), nonce: String::new() });
    for _ in 0..10 {
        let r = client
            .login(pb::LoginRequest { auth: fx.user("target", "guess", ""), origin: from("203.0.113.7") })
            .await;
        expect_code(r, "invalid_credentials");
    }
    // The 11th attempt is refused before any password check, even with the right password.
    let r = client
        .login(pb::LoginRequest { auth: fx.user("target", "target-pw", ""), origin: from("203.0.113.7") })
        .await;
    let s = expect_code(r, "rate_limited");
    assert_eq!(s.code(), tonic::Code::ResourceExhausted);
    let wait: u64 =
        s.metadata().get("retry-after").expect("retry-after").to_str().expect("ascii").parse().expect("secs");
    assert!((1..=900).contains(&wait));
    assert!(s.metadata().get("x-response-token").is_some(), "the app was known: token");
    // Same account from another address, and another account from the same address, still work.
    client
        .login(pb::LoginRequest { auth: fx.user("target", "target-pw", ""), origin: from("198.51.100.1") })
        .await
        .expect("other address");
    client
        .login(pb::LoginRequest {
            auth: fx.user("bystander", "bystander-pw", ""),
            origin: from("203.0.113.7"),
        })
        .await
        .expect("other account");

    // The developer side is throttled per developer username and address too.
    let mut dev = core.developer().await;
    let wrong = Fixture { password: "nope".into(), ..fx.clone() };
    let scoped = |f: &Fixture, addr: &str| {
        let mut s = f.scope().expect("scope");
        s.origin = from(addr);
        pb::GetAppRequest { scope: Some(s) }
    };
    for _ in 0..10 {
        expect_code(dev.get_app(scoped(&wrong, "192.0.2.9")).await, "invalid_developer");
    }
    expect_code(dev.get_app(scoped(&fx, "192.0.2.9")).await, "rate_limited");
    dev.get_app(scoped(&fx, "192.0.2.10")).await.expect("other address");
    let bad = client
        .login(pb::LoginRequest {
            auth: fx.user("target", "x", ""),
            origin: Some(pb::Origin { client_address: "not-an-ip".into(), nonce: String::new() }),
        })
        .await;
    expect_code(bad, "invalid_field");
    core.stop().await;
}

async fn client_field_errors(backend: Backend) {
    let core = TestCore::start(backend).await;
    let fx = core.fixture("dev-fields").await;
    let mut client = core.client().await;
    let base = pb::RegisterRequest {
        app_secret: fx.secret.clone(),
        username: "valid-name".into(),
        password: "pw".into(),
        email: "a@b.c".into(),
        hwid: String::new(),
        licence_key: String::new(),
        origin: None,
    };
    type Edit = fn(&mut pb::RegisterRequest);
    let cases: Vec<(&str, &str, Edit)> = vec![
        ("missing_field", "username", |r| r.username.clear()),
        ("invalid_field", "username", |r| r.username = "ab".into()),
        ("invalid_field", "username", |r| r.username = "x".repeat(65)),
        ("invalid_field", "username", |r| r.username = "tab\there".into()),
        ("missing_field", "password", |r| r.password.clear()),
        ("invalid_field", "password", |r| r.password = "p".repeat(257)),
        ("missing_field", "email", |r| r.email.clear()),
        ("invalid_field", "email", |r| r.email = "no-at-sign".into()),
        ("invalid_field", "email", |r| r.email = "two@@ats".into()),
        ("invalid_field", "hwid", |r| r.hwid = "h".repeat(257)),
        ("missing_field", "app_secret", |r| r.app_secret.clear()),
        ("invalid_field", "nonce", |r| {
            r.origin = Some(pb::Origin { client_address: String::new(), nonce: "n".repeat(129) })
        }),
    ];
    for (code, field, edit) in cases {
        let mut req = base.clone();
        edit(&mut req);
        let s = expect_code(client.register(req).await, code);
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        let details = tonic_types::StatusExt::get_details_bad_request(&s).expect("bad request details");
        assert_eq!(details.field_violations[0].field, field, "{code} {field}");
        assert!(s.metadata().get("x-response-token").is_none());
    }
    let mut bad_secret = base.clone();
    bad_secret.app_secret = "nope".into();
    expect_code(client.register(bad_secret).await, "invalid_app_secret");
    assert!(all_users(&core, &fx).await.is_empty(), "no bad request created a user");
    // Unicode usernames count code points.
    let mut uni = base.clone();
    uni.username = "ééé".into();
    client.register(uni).await.expect("three code points are enough");
    core.stop().await;
}

async fn health_and_reflection(backend: Backend) {
    let core = TestCore::start(backend).await;
    let channel = core.channel().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for service in ["", "licensing.v1.ClientService", "licensing.v1.DeveloperService"] {
        let r = health
            .check(tonic_health::pb::HealthCheckRequest { service: service.into() })
            .await
            .expect("health")
            .into_inner();
        assert_eq!(
            r.status(),
            tonic_health::pb::health_check_response::ServingStatus::Serving,
            "{service:?}"
        );
    }

    use tonic_reflection::pb::{v1, v1alpha};
    let mut refl = v1::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let req = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(String::new())),
    };
    let mut stream =
        refl.server_reflection_info(futures_util::stream::iter([req])).await.expect("v1").into_inner();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        stream.next().await.expect("answer").expect("ok").message_response
    else {
        panic!("list services")
    };
    let names: HashSet<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in ["licensing.v1.ClientService", "licensing.v1.DeveloperService", "grpc.health.v1.Health"] {
        assert!(names.contains(expected), "{expected} in {names:?}");
    }

    let mut alpha = v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
    let req = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
            "licensing.v1.ClientService".into(),
        )),
    };
    let mut stream =
        alpha.server_reflection_info(futures_util::stream::iter([req])).await.expect("v1alpha").into_inner();
    let answer = stream.next().await.expect("answer").expect("ok");
    assert!(matches!(
        answer.message_response,
        Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(_))
    ));
    core.stop().await;
}

on_both_backends! {
    no_user_enumeration => no_user_enumeration;
}

async fn no_user_enumeration(backend: Backend) {
    let core = TestCore::start(backend).await;
    let fx = core.fixture("dev-enum").await;
    register(&core, &fx, "known", "", "").await.expect("register");
    let client = core.client().await;
    let attempt = |user: &'static str| {
        let auth = fx.user(user, "wrong-password", "");
        let mut c = client.clone();
        async move { c.login(pb::LoginRequest { auth, origin: None }).await }
    };
    // An unknown username costs the same Argon2 work as a wrong password, and answers the same.
    let before = core.core.password_work();
    let unknown = expect_code(attempt("no-such-user").await, "invalid_credentials");
    let after_unknown = core.core.password_work();
    let wrong = expect_code(attempt("known").await, "invalid_credentials");
    let after_wrong = core.core.password_work();
    assert_eq!(after_unknown - before, 1);
    assert_eq!(after_wrong - after_unknown, 1);
    assert_eq!(unknown.message(), wrong.message());
    assert_eq!(unknown.code(), wrong.code());

    // A throttled attempt is refused before any Argon2 work.
    for _ in 0..9 {
        expect_code(attempt("known").await, "invalid_credentials");
    }
    let before = core.core.password_work();
    expect_code(attempt("known").await, "rate_limited");
    assert_eq!(core.core.password_work(), before);
    core.stop().await;
}

/// Argon2 runs on a bounded pool, never on the async workers: while a queue of logins is being
/// hashed, health checks and cheap calls are still answered; past the queue bound, logins are
/// refused with `unavailable` instead of piling up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_work_is_isolated_and_bounded() {
    let core = TestCore::start_with(Backend::Sqlite, |c| {
        c.settings.hash_workers = 1;
        c.settings.hash_queue = 6;
        // Every login must reach Argon2 here.
        c.settings.credential_cache = std::time::Duration::ZERO;
    })
    .await;
    let fx = core.fixture("dev-flood").await;
    register(&core, &fx, "flooded", "", "").await.expect("register");
    let channel = core.channel().await;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..30 {
        let mut c = pb::client_service_client::ClientServiceClient::new(channel.clone());
        let auth = fx.user("flooded", "flooded-pw", "");
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let r = c.login(pb::LoginRequest { auth, origin: None }).await;
            done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            r
        }));
    }
    // The flood has reached Argon2: the queue holds work.
    assert!(
        common::eventually(10, || async { core.core.password_queue() > 0 }).await,
        "the logins never queued"
    );
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    health
        .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
        .await
        .expect("health answers");
    let finished_when_healthy = done.load(std::sync::atomic::Ordering::SeqCst);
    let mut ok = 0;
    let mut refused = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(_) => ok += 1,
            Err(s) => {
                assert_eq!(reason(&s), "unavailable");
                refused += 1;
            }
        }
    }
    assert!(ok >= 1 && refused >= 1, "ok {ok}, refused {refused}");
    assert!(ok <= 7, "at most the worker plus the queue succeed: {ok}");
    assert!(finished_when_healthy < ok + refused, "health was answered before the flood drained");
    core.stop().await;
}

/// SIGTERM semantics in-process: once shutdown starts, an upload already streaming finishes and
/// is stored; the server then stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_calls_finish() {
    let db = common::TestDb::new(Backend::Sqlite).await;
    let app = core_service::Application::build(core_service::CoreConfig::local(&db.url)).await.expect("core");
    let addr = app.local_addr();
    let core = app.core();
    core.add_developer("graceful", "graceful-pw").await.expect("dev");
    let created = core.add_app("graceful", "G", None).await.expect("app");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stop_rx.await;
    }));
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut dev = pb::developer_service_client::DeveloperServiceClient::new(channel);
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::UploadFileRequest>(4);
    let scope = Some(pb::AppScope {
        app_secret: created.secret.clone(),
        developer: Some(pb::DeveloperAuth { username: "graceful".into(), password: "graceful-pw".into() }),
        origin: None,
        ..Default::default()
    });
    tx.send(pb::UploadFileRequest {
        payload: Some(pb::upload_file_request::Payload::Header(pb::UploadFileHeader {
            scope,
            filename: "g.bin".into(),
        })),
    })
    .await
    .expect("header");
    let call = tokio::spawn(async move { dev.upload_file(tokio_stream_from(rx)).await });
    tx.send(pb::UploadFileRequest { payload: Some(pb::upload_file_request::Payload::Chunk(vec![1; 1000])) })
        .await
        .expect("chunk");
    // Shut down while the upload is still open, then finish it.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stop_tx.send(()).expect("stop");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    for _ in 0..3 {
        tx.send(pb::UploadFileRequest {
            payload: Some(pb::upload_file_request::Payload::Chunk(vec![2; 1000])),
        })
        .await
        .expect("chunk after shutdown began");
    }
    drop(tx);
    let info = call.await.expect("task").expect("the in-flight upload completes").into_inner();
    assert_eq!(info.size, 4000);
    tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .expect("server stops after the call")
        .expect("task")
        .expect("clean stop");
    // New connections are refused once stopped.
    assert!(
        tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .expect("url")
            .connect()
            .await
            .is_err()
    );
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<pb::UploadFileRequest>,
) -> impl futures_util::Stream<Item = pb::UploadFileRequest> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Calls are bounded in the core: one that works past the request timeout is abandoned with
/// `unavailable`, and an upload that stalls is dropped without leaving a file behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_bounded_by_the_request_timeout() {
    let core = TestCore::start_with(Backend::Sqlite, |c| {
        c.settings.request_timeout = std::time::Duration::from_millis(300);
        c.settings.credential_cache = std::time::Duration::ZERO;
    })
    .await;
    let fx = core.fixture("dev-deadline").await;
    register(&core, &fx, "patient", "", "").await.expect("a normal call fits the timeout");

    // Occupy every Argon2 worker with a queue long enough to outlast the timeout.
    let channel = core.channel().await;
    let mut flood = Vec::new();
    for _ in 0..40 {
        let mut c = pb::client_service_client::ClientServiceClient::new(channel.clone());
        let auth = fx.user("patient", "patient-pw", "");
        flood.push(tokio::spawn(async move { c.login(pb::LoginRequest { auth, origin: None }).await }));
    }
    let mut timed_out = 0;
    for t in flood {
        if let Err(s) = t.await.expect("task") {
            assert_eq!(reason(&s), "unavailable", "{s:?}");
            timed_out += 1;
        }
    }
    assert!(timed_out > 0, "some queued logins outlived the timeout and were abandoned");

    // An upload that sends its header and then nothing.
    let mut dev = core.developer().await;
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::UploadFileRequest>(2);
    tx.send(pb::UploadFileRequest {
        payload: Some(pb::upload_file_request::Payload::Header(pb::UploadFileHeader {
            scope: fx.scope(),
            filename: "stalled.bin".into(),
        })),
    })
    .await
    .expect("header");
    tx.send(pb::UploadFileRequest { payload: Some(pb::upload_file_request::Payload::Chunk(vec![7; 10])) })
        .await
        .expect("chunk");
    expect_code(dev.upload_file(tokio_stream_from(rx)).await, "unavailable");
    drop(tx);
    use core_service::storage::entities::app_file;
    use sea_orm::EntityTrait;
    assert!(
        app_file::Entity::find().all(core.core.db()).await.expect("query").is_empty(),
        "nothing left behind"
    );
    core.stop().await;
}

/// The database pool is bounded: a burst of concurrent calls queues for connections instead of
/// opening one each (PostgreSQL, where the server can count them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "PostgreSQL: ./scripts/test runs it when PostgreSQL answers"]
async fn database_connections_stay_within_the_pool_bound() {
    // Unbounded (the default of 16), this burst holds 16 connections at once.
    let bound: u32 = 3;
    let core = TestCore::start_with(Backend::Postgres, |c| c.db.max_connections = bound).await;
    let fx = core.fixture("dev-pool").await;
    // An API token: no Argon2 per call, so the calls reach the database together.
    let token = core.core.add_token("dev-pool").await.expect("token").token;
    let db_name = core.db.url.rsplit('/').next().expect("database name").to_owned();
    let channel = core.channel().await;
    let mut calls = Vec::new();
    for _ in 0..200 {
        let mut dev = pb::developer_service_client::DeveloperServiceClient::new(channel.clone());
        let mut req = Request::new(pb::ListUsersRequest {
            scope: Some(pb::AppScope {
                app_secret: fx.secret.clone(),
                developer: None,
                origin: None,
                app_id: 0,
            }),
            page_size: 0,
            page_token: String::new(),
            ..Default::default()
        });
        req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("header"));
        calls.push(tokio::spawn(async move { dev.list_users(req).await }));
    }
    // Watch the server's own count of connections to this database while the burst runs.
    // One connection, so `pg_backend_pid()` excludes the whole observer.
    let mut observer = sea_orm::ConnectOptions::new(core.db.url.clone());
    observer.max_connections(1).min_connections(1);
    let admin = sea_orm::Database::connect(observer).await.expect("observer");
    let mut most = 0i64;
    for _ in 0..20 {
        let row = sea_orm::ConnectionTrait::query_one_raw(
            &admin,
            sea_orm::Statement::from_string(
                sea_orm::DatabaseBackend::Postgres,
                format!(
                    "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = '{db_name}' AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
                ),
            ),
        )
        .await
        .expect("count")
        .expect("row");
        most = most.max(row.try_get::<i64>("", "n").expect("n"));
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    for c in calls {
        c.await.expect("task").expect("every queued call is served");
    }
    assert!(most >= 2, "the burst reached the database concurrently: saw {most}");
    assert!(most <= i64::from(bound), "at most the pool bound: saw {most}");
    admin.close().await.ok();
    core.stop().await;
}

/// Frequent heartbeats skip Argon2 once the password verified; a wrong password never does, and a
/// new account under a deleted name is never taken for the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recent_successes_make_heartbeats_cheap_without_weakening_checks() {
    let core = TestCore::start(Backend::Sqlite).await;
    let fx = core.fixture("dev-cache").await;
    register(&core, &fx, "regular", "HW", "").await.expect("register");
    let mut client = core.client().await;
    let beat =
        |password: &str| pb::HeartbeatRequest { auth: fx.user("regular", password, "HW"), origin: None };
    let start = core.core.password_work();
    for _ in 0..5 {
        client.heartbeat(beat("regular-pw")).await.expect("heartbeat");
    }
    assert_eq!(core.core.password_work() - start, 1, "one Argon2 check for five heartbeats");
    for _ in 0..2 {
        expect_code(client.heartbeat(beat("not-it")).await, "invalid_credentials");
    }
    assert_eq!(core.core.password_work() - start, 3, "wrong passwords always pay");
    // HWID and licence checks still run on every call.
    expect_code(
        client
            .heartbeat(pb::HeartbeatRequest { auth: fx.user("regular", "regular-pw", "OTHER"), origin: None })
            .await,
        "hwid_mismatch",
    );
    // Delete and re-create the account with the same password: the old success does not carry over.
    let mut dev = core.developer().await;
    let id = all_users(&core, &fx).await[0].id;
    dev.delete_user(pb::DeleteUserRequest { scope: fx.scope(), user_id: id }).await.expect("delete");
    expect_code(client.heartbeat(beat("regular-pw")).await, "invalid_credentials");
    register(&core, &fx, "regular", "HW", "").await.expect("register again");
    let before = core.core.password_work();
    client.heartbeat(beat("regular-pw")).await.expect("heartbeat");
    assert_eq!(core.core.password_work() - before, 1, "the new account's hash is checked afresh");
    core.stop().await;
}

/// A client that hangs up mid-upload leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_upload_leaves_no_rows() {
    let core = TestCore::start(Backend::Sqlite).await;
    let fx = core.fixture("dev-hangup").await;
    let mut dev = core.developer().await;
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::UploadFileRequest>(4);
    tx.send(pb::UploadFileRequest {
        payload: Some(pb::upload_file_request::Payload::Header(pb::UploadFileHeader {
            scope: fx.scope(),
            filename: "partial.bin".into(),
        })),
    })
    .await
    .expect("header");
    let call = tokio::spawn(async move { dev.upload_file(tokio_stream_from(rx)).await });
    for _ in 0..3 {
        tx.send(pb::UploadFileRequest {
            payload: Some(pb::upload_file_request::Payload::Chunk(vec![9; 300_000])),
        })
        .await
        .expect("chunk");
    }
    use core_service::storage::entities::{app_file, file_chunk};
    use sea_orm::{EntityTrait, PaginatorTrait};
    let db = core.core.db().clone();
    assert!(
        common::eventually(10, || {
            let db = db.clone();
            async move { file_chunk::Entity::find().count(&db).await.unwrap_or(0) > 0 }
        })
        .await,
        "the upload was under way"
    );
    call.abort();
    drop(tx);
    assert!(
        common::eventually(10, || {
            let db = db.clone();
            async move {
                app_file::Entity::find().count(&db).await.unwrap_or(1) == 0
                    && file_chunk::Entity::find().count(&db).await.unwrap_or(1) == 0
            }
        })
        .await,
        "the partial file and its chunks were removed"
    );
    core.stop().await;
}

const GATEWAY_CREDENTIAL: &str = "gateway-credential-0123456789abcdef0123";

/// With a gateway credential configured, a caller that does not present it cannot choose the
/// address its guesses are counted on: it is counted on its own. A gateway that presents it can.
async fn only_gateways_name_the_client(backend: Backend) {
    let core = TestCore::start_with(backend, |c| {
        c.settings.gateway_credential =
            Some(core_service::service::GatewayCredential::parse(GATEWAY_CREDENTIAL).expect("credential"));
        c.settings.throttle.per_address = 3;
        c.settings.throttle.per_username = 100;
    })
    .await;
    let fx = core.fixture("dev-forward").await;
    register(&core, &fx, "victim", "", "").await.expect("register");
    let mut client = core.client().await;
    let login = |password: &str, address: &str, credential: Option<&str>| {
        let mut request = tonic::Request::new(pb::LoginRequest {
            auth: fx.user("victim", password, ""),
            origin: Some(pb::Origin { client_address: address.into(), nonce: String::new() }),
        });
        if let Some(credential) = credential {
            request
                .metadata_mut()
                .insert(licensing::GATEWAY_CREDENTIAL_METADATA, credential.parse().expect("ascii"));
        }
        request
    };
    let gateway = Some(GATEWAY_CREDENTIAL);

    // An outsider claims to be 203.0.113.9 three times...
    for _ in 0..3 {
        expect_code(client.login(login("guess", "203.0.113.9", None)).await, "invalid_credentials");
    }
    // ...which leaves 203.0.113.9 untouched: a gateway's user there still logs in.
    client.login(login("victim-pw", "203.0.113.9", gateway)).await.expect("203.0.113.9 was not throttled");
    // The outsider used up its own address, whatever it claims now; a wrong credential is none.
    expect_code(client.login(login("victim-pw", "198.51.100.4", None)).await, "rate_limited");
    let forged = "x".repeat(40);
    expect_code(client.login(login("victim-pw", "198.51.100.5", Some(&forged))).await, "rate_limited");

    // A gateway's reports do move the count of the address it names.
    for _ in 0..3 {
        expect_code(client.login(login("guess", "203.0.113.9", gateway)).await, "invalid_credentials");
    }
    expect_code(client.login(login("victim-pw", "203.0.113.9", gateway)).await, "rate_limited");
    client.login(login("victim-pw", "203.0.113.10", gateway)).await.expect("another address is free");
    core.stop().await;
}
