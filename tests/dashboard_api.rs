//! The gRPC calls behind the web dashboard: sessions (sign-in, idle and absolute limits,
//! sign-out), apps named by id and never across developers, filtered listings, the current
//! binary and the daily activity the heartbeat writer keeps.

mod common;

use std::time::Duration;

use common::{Backend, Fixture, TestCore, expect_code};
use licensing::v1 as pb;
use tonic::{Request, transport::Channel};

on_both_backends! {
    sessions_open_expire_and_close => sessions;
    apps_by_id_stay_with_their_developer => apps_by_id;
    listings_filter_by_prefix_and_state => filtered_listings;
    activity_and_file_info => activity_and_file;
}

type Dev = pb::developer_service_client::DeveloperServiceClient<Channel>;

fn with_bearer<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
    request
}

async fn sign_in(dev: &mut Dev, fx: &Fixture) -> String {
    let opened = dev
        .sign_in(pb::SignInRequest {
            developer: Some(pb::DeveloperAuth {
                username: fx.developer.clone(),
                password: fx.password.clone(),
            }),
            origin: None,
        })
        .await
        .expect("sign in")
        .into_inner();
    assert_eq!(opened.username, fx.developer);
    assert!(opened.session_token.starts_with("ses_"), "sessions are told from API tokens");
    opened.session_token
}

fn by_id(app_id: i64) -> Option<pb::AppScope> {
    Some(pb::AppScope { app_id, ..Default::default() })
}

async fn get_app(dev: &mut Dev, token: &str, app_id: i64) -> Result<pb::App, tonic::Status> {
    dev.get_app(with_bearer(token, pb::GetAppRequest { scope: by_id(app_id) })).await.map(|r| r.into_inner())
}

async fn sessions(backend: Backend) {
    let core = TestCore::start_with(backend, |c| {
        c.settings.session_idle = Duration::from_millis(1500);
        c.settings.session_lifetime = Duration::from_secs(3600);
    })
    .await;
    let fx = core.fixture("dev-session").await;
    let mut dev = core.developer().await;

    let wrong = dev
        .sign_in(pb::SignInRequest {
            developer: Some(pb::DeveloperAuth { username: fx.developer.clone(), password: "wrong".into() }),
            origin: None,
        })
        .await;
    expect_code(wrong, "invalid_developer");

    let token = sign_in(&mut dev, &fx).await;
    assert_eq!(get_app(&mut dev, &token, fx.app_id).await.expect("by session").secret, fx.secret);
    // The session is stored hashed: the token itself is nowhere in the database.
    use core_service::storage::entities::developer_session;
    use sea_orm::EntityTrait;
    let rows = developer_session::Entity::find().all(core.core.db()).await.expect("sessions");
    assert_eq!(rows.len(), 1);
    assert!(!rows[0].token_hash.windows(token.len()).any(|w| w == token.as_bytes()));

    // Use keeps it alive past the idle limit; idleness ends it.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        get_app(&mut dev, &token, fx.app_id).await.expect("kept alive by use");
    }
    tokio::time::sleep(Duration::from_millis(1600)).await;
    expect_code(get_app(&mut dev, &token, fx.app_id).await, "invalid_developer");

    // Signing out ends a session at once; a second sign-out finds nothing.
    let token = sign_in(&mut dev, &fx).await;
    dev.sign_out(with_bearer(&token, pb::SignOutRequest {})).await.expect("sign out");
    expect_code(get_app(&mut dev, &token, fx.app_id).await, "invalid_developer");
    expect_code(dev.sign_out(with_bearer(&token, pb::SignOutRequest {})).await, "invalid_developer");
    expect_code(dev.sign_out(pb::SignOutRequest {}).await, "invalid_developer");
    core.stop().await;

    // The absolute limit holds whatever the use.
    let core = TestCore::start_with(backend, |c| c.settings.session_lifetime = Duration::from_secs(1)).await;
    let fx = core.fixture("dev-session-2").await;
    let mut dev = core.developer().await;
    let token = sign_in(&mut dev, &fx).await;
    get_app(&mut dev, &token, fx.app_id).await.expect("fresh");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    expect_code(get_app(&mut dev, &token, fx.app_id).await, "invalid_developer");
    core.stop().await;
}

async fn apps_by_id(backend: Backend) {
    let core = TestCore::start(backend).await;
    let alice = core.fixture("dev-alice").await;
    let mallory = core.fixture("dev-mallory").await;
    let mut dev = core.developer().await;
    let token = sign_in(&mut dev, &alice).await;

    let created = dev
        .create_app(with_bearer(
            &token,
            pb::CreateAppRequest { name: "Second".into(), version: "2.0".into(), ..Default::default() },
        ))
        .await
        .expect("create")
        .into_inner();
    assert_eq!(created.name, "Second");
    assert_eq!(created.version.as_deref(), Some("2.0"));
    assert_eq!(created.secret.len(), 64, "the new secret, once");
    assert_eq!(created.signing_keys.len(), 1);
    expect_code(
        dev.create_app(with_bearer(&token, pb::CreateAppRequest { name: " ".into(), ..Default::default() }))
            .await,
        "missing_field",
    );

    let listed =
        dev.list_apps(with_bearer(&token, pb::ListAppsRequest::default())).await.expect("list").into_inner();
    let ids: Vec<i64> = listed.apps.iter().map(|a| a.id).collect();
    assert_eq!(ids, [alice.app_id, created.id], "her apps only, oldest first");

    // Another developer's app id answers as a missing one; so does an id nobody has.
    let theirs = get_app(&mut dev, &token, mallory.app_id).await;
    let missing = get_app(&mut dev, &token, 999_999).await;
    assert_eq!(expect_code(theirs, "not_found").message(), expect_code(missing, "not_found").message());
    expect_code(
        dev.set_app_online(with_bearer(
            &token,
            pb::SetAppOnlineRequest { scope: by_id(mallory.app_id), online: false },
        ))
        .await,
        "not_found",
    );
    // A password caller still names the app by its secret.
    let password_by_id =
        pb::AppScope { app_id: alice.app_id, app_secret: String::new(), ..alice.scope().expect("scope") };
    expect_code(dev.get_app(pb::GetAppRequest { scope: Some(password_by_id) }).await, "missing_field");
    expect_code(get_app(&mut dev, &token, -4).await, "invalid_field");
    core.stop().await;
}

async fn filtered_listings(backend: Backend) {
    let core = TestCore::start(backend).await;
    let fx = core.fixture("dev-filter").await;
    let mut dev = core.developer().await;
    let token = sign_in(&mut dev, &fx).await;
    let expire = Some(prost_types::Timestamp { seconds: chrono::Utc::now().timestamp() + 86_400, nanos: 0 });
    let keys: Vec<String> = dev
        .create_licences(pb::CreateLicencesRequest {
            scope: fx.scope(),
            amount: 5,
            access: 1,
            expire_time: expire,
        })
        .await
        .expect("keys")
        .into_inner()
        .licences
        .into_iter()
        .map(|l| l.key)
        .collect();
    let mut client = core.client().await;
    client
        .register(pb::RegisterRequest {
            app_secret: fx.secret.clone(),
            username: "holder".into(),
            password: "holder-pw".into(),
            email: "h@example.com".into(),
            licence_key: keys[0].clone(),
            ..Default::default()
        })
        .await
        .expect("register with a key");
    for name in ["hazel", "other"] {
        client
            .register(pb::RegisterRequest {
                app_secret: fx.secret.clone(),
                username: name.into(),
                password: "pw".into(),
                email: "x@example.com".into(),
                ..Default::default()
            })
            .await
            .expect("register");
    }
    dev.ban_licence(pb::BanLicenceRequest { scope: fx.scope(), licence_key: keys[1].clone() })
        .await
        .expect("ban");
    // One key past its expiry (the API refuses to create one).
    use core_service::storage::entities::licence;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
    licence::Entity::update_many()
        .col_expr(licence::Column::ExpireTime, Expr::value(chrono::Utc::now() - chrono::Duration::days(1)))
        .filter(licence::Column::LicenceKey.eq(keys[2].clone()))
        .exec(core.core.db())
        .await
        .expect("expire a key");

    let licences = |filter: pb::LicenceFilter, prefix: &str| {
        let mut dev = dev.clone();
        let request = with_bearer(
            &token,
            pb::ListLicencesRequest {
                scope: by_id(fx.app_id),
                page_size: 50,
                key_prefix: prefix.to_owned(),
                filter: filter.into(),
                ..Default::default()
            },
        );
        async move {
            dev.list_licences(request)
                .await
                .map(|r| r.into_inner().licences.into_iter().map(|l| l.key).collect::<Vec<_>>())
        }
    };
    assert_eq!(licences(pb::LicenceFilter::Unspecified, "").await.expect("all"), keys);
    assert_eq!(licences(pb::LicenceFilter::Active, "").await.expect("active"), [keys[0].clone()]);
    assert_eq!(licences(pb::LicenceFilter::Banned, "").await.expect("banned"), [keys[1].clone()]);
    assert_eq!(licences(pb::LicenceFilter::Expired, "").await.expect("expired"), [keys[2].clone()]);
    assert_eq!(licences(pb::LicenceFilter::Unused, "").await.expect("unused"), keys[1..].to_vec());
    let lower = format!("  {} ", keys[3][..8].to_ascii_lowercase());
    assert_eq!(licences(pb::LicenceFilter::Unspecified, &lower).await.expect("by prefix"), [keys[3].clone()]);
    expect_code(licences(pb::LicenceFilter::Unspecified, "AB%").await, "invalid_field");

    let users = |prefix: &str| {
        let mut dev = dev.clone();
        let request = with_bearer(
            &token,
            pb::ListUsersRequest {
                scope: by_id(fx.app_id),
                username_prefix: prefix.to_owned(),
                ..Default::default()
            },
        );
        async move {
            dev.list_users(request)
                .await
                .expect("users")
                .into_inner()
                .users
                .into_iter()
                .map(|u| u.username)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(users("h").await, ["holder", "hazel"]);
    assert_eq!(users("H").await, Vec::<String>::new(), "names compare exactly");
    assert_eq!(users("%").await, Vec::<String>::new(), "no wildcard");
    assert_eq!(users("").await.len(), 3);
    core.stop().await;
}

async fn activity_and_file(backend: Backend) {
    let core = TestCore::start(backend).await;
    let fx = core.fixture("dev-activity").await;
    let other = core.fixture("dev-activity-other").await;
    let mut dev = core.developer().await;
    let token = sign_in(&mut dev, &fx).await;
    let mut client = core.client().await;
    for (app, name) in [(&fx, "ann"), (&fx, "ben"), (&other, "cat")] {
        client
            .register(pb::RegisterRequest {
                app_secret: app.secret.clone(),
                username: name.into(),
                password: format!("{name}-pw"),
                email: "a@example.com".into(),
                ..Default::default()
            })
            .await
            .expect("register");
    }
    for (app, name, times) in [(&fx, "ann", 3), (&fx, "ben", 1), (&other, "cat", 2)] {
        for _ in 0..times {
            client
                .heartbeat(pb::HeartbeatRequest {
                    auth: app.user(name, &format!("{name}-pw"), ""),
                    origin: None,
                })
                .await
                .expect("heartbeat");
        }
    }
    // Concurrent pings share batches (and their aggregate upserts): none is lost from the day.
    let burst: Vec<_> = (0..24)
        .map(|i| {
            let mut client = client.clone();
            let (app, name) = if i % 2 == 0 { (&fx, "ann") } else { (&fx, "ben") };
            let auth = app.user(name, &format!("{name}-pw"), "");
            tokio::spawn(async move { client.heartbeat(pb::HeartbeatRequest { auth, origin: None }).await })
        })
        .collect();
    for ping in burst {
        ping.await.expect("joined").expect("heartbeat");
    }
    let days = dev
        .get_activity(with_bearer(&token, pb::GetActivityRequest { scope: by_id(fx.app_id), days: 0 }))
        .await
        .expect("activity")
        .into_inner()
        .days;
    assert_eq!(days.len(), 30);
    let today = days.last().expect("today");
    assert_eq!(today.day, chrono::Utc::now().format("%Y-%m-%d").to_string());
    assert_eq!((today.heartbeats, today.active_users), (28, 2), "this app's pings only, users counted once");
    assert!(days[..29].iter().all(|d| d.heartbeats == 0 && d.active_users == 0));
    assert!(days.windows(2).all(|w| w[0].day < w[1].day), "oldest first");
    expect_code(
        dev.get_activity(with_bearer(&token, pb::GetActivityRequest { scope: by_id(fx.app_id), days: 91 }))
            .await,
        "invalid_field",
    );

    let reader = dev.clone();
    let info = || {
        let mut dev = reader.clone();
        let request = with_bearer(&token, pb::GetFileInfoRequest { scope: by_id(fx.app_id) });
        async move { dev.get_file_info(request).await }
    };
    expect_code(info().await, "no_file");
    let bytes = vec![7u8; 300_000];
    let messages = vec![
        pb::UploadFileRequest {
            payload: Some(pb::upload_file_request::Payload::Header(pb::UploadFileHeader {
                scope: fx.scope(),
                filename: "app.bin".into(),
            })),
        },
        pb::UploadFileRequest { payload: Some(pb::upload_file_request::Payload::Chunk(bytes.clone())) },
    ];
    dev.upload_file(futures_util::stream::iter(messages)).await.expect("upload");
    let file = info().await.expect("file").into_inner();
    assert_eq!((file.filename.as_str(), file.size), ("app.bin", 300_000));
    use sha2::{Digest, Sha256};
    let digest: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(file.sha256, digest);
    core.stop().await;
}
