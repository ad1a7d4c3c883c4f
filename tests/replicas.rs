//! Two cores and two gateways on one database, as production runs replicas: every change made
//! through one replica takes effect at once on the other, whatever either has cached (the
//! credential cache and the remembered sign-ins of warm heartbeats included). Before each change,
//! replica B is shown to answer carol's heartbeats from memory; after it, to find that memory out
//! of date.

mod common;

use chrono::Utc;
use common::{Backend, Fixture, TestCore, gateway::*};
use core_service::{
    domain::{Password, password::PasswordHasher},
    service::WarmStats,
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde_json::Value;

on_both_backends! {
    changes_through_one_replica_apply_at_once_on_the_other => changes_apply_across_replicas;
}

/// A heartbeat through `gateway` as `username` with `password` and `hwid`.
async fn connect(gateway: &TestGateway, secret: &str, username: &str, password: &str, hwid: &str) -> Http {
    gateway
        .client(
            "connect",
            form(&[("username", username), ("password", password), ("app_secret", secret), ("hwid", hwid)]),
        )
        .await
}

/// Asserts B answers carol's next heartbeat from memory: the call succeeds without a read.
async fn answered_warm(
    gateway: &TestGateway,
    core: &TestCore,
    secret: &str,
    password: &str,
    hwid: &str,
) -> Value {
    let before = core.core.warm_heartbeats();
    let reply = expect_ok(&connect(gateway, secret, "carol", password, hwid).await);
    let after = core.core.warm_heartbeats();
    assert_eq!(after, WarmStats { answered: before.answered + 1, ..before }, "answered from memory");
    reply
}

/// Runs `call` on B, asserting that what B remembered was found out of date (so the full path
/// answered).
async fn found_stale<F: std::future::Future<Output = Http>>(core: &TestCore, call: F) -> Http {
    let before = core.core.warm_heartbeats();
    let reply = call.await;
    let after = core.core.warm_heartbeats();
    assert_eq!(after, WarmStats { stale: before.stale + 1, ..before }, "memory out of date: {reply}");
    reply
}

async fn changes_apply_across_replicas(backend: Backend) {
    let core_a = TestCore::start(backend).await;
    let core_b = TestCore::start_beside(&core_a).await;
    let gw_a = TestGateway::in_front_of(&core_a, &[]).await;
    let gw_b = TestGateway::in_front_of(&core_b, &[]).await;
    let mut fx: Fixture = core_a.fixture("dev-replicas").await;

    let key = gw_a.create_keys(&fx, 1, 1, &date_in(30)).await.remove(0);
    gw_a.register_ok(&fx, "carol", &format!("hwid=HW-1&licence={key}")).await;
    // Replica B remembers carol after one full sign-in.
    expect_ok(&connect(&gw_b, &fx.secret, "carol", "carol-pw", "HW-1").await);
    answered_warm(&gw_b, &core_b, &fx.secret, "carol-pw", "HW-1").await;

    // A secret renewed through A is refused by B at once, and the new one works there.
    let renewed = expect_ok(&gw_a.admin(&fx, "renew_secret", "").await);
    let old_secret =
        std::mem::replace(&mut fx.secret, renewed["secret"].as_str().expect("secret").to_owned());
    let refused = found_stale(&core_b, connect(&gw_b, &old_secret, "carol", "carol-pw", "HW-1")).await;
    expect_error(&refused, 401, "invalid_app_secret");
    expect_ok(&connect(&gw_b, &fx.secret, "carol", "carol-pw", "HW-1").await);
    answered_warm(&gw_b, &core_b, &fx.secret, "carol-pw", "HW-1").await;

    // A ban through A holds on B; lifting it does too.
    expect_ok(&gw_a.admin(&fx, "ban_licence", &format!("licence_key={key}")).await);
    let banned = found_stale(&core_b, connect(&gw_b, &fx.secret, "carol", "carol-pw", "HW-1")).await;
    expect_signed_error(&banned, 403, "licence_banned", &fx, "connect", "");
    expect_ok(&gw_a.admin(&fx, "unban_licence", &format!("licence_key={key}")).await);
    expect_ok(&connect(&gw_b, &fx.secret, "carol", "carol-pw", "HW-1").await);
    answered_warm(&gw_b, &core_b, &fx.secret, "carol-pw", "HW-1").await;

    // The app taken offline through A is offline on B; back online, B serves again.
    expect_ok(&gw_a.admin(&fx, "change_status", "status=0").await);
    let offline = found_stale(&core_b, connect(&gw_b, &fx.secret, "carol", "carol-pw", "HW-1")).await;
    expect_signed_error(&offline, 503, "app_offline", &fx, "connect", "");
    expect_ok(&gw_a.admin(&fx, "change_status", "status=1").await);
    expect_ok(&connect(&gw_b, &fx.secret, "carol", "carol-pw", "HW-1").await);
    answered_warm(&gw_b, &core_b, &fx.secret, "carol-pw", "HW-1").await;

    // A licence expired by hand in the shared database shows as expired on B's next answer.
    use core_service::storage::entities::licence;
    licence::Entity::update_many()
        .col_expr(licence::Column::ExpireTime, Expr::value(Utc::now() - chrono::Duration::hours(1)))
        .filter(licence::Column::LicenceKey.eq(key.as_str()))
        .exec(core_a.core.db())
        .await
        .expect("expire the licence");
    let expired = found_stale(&core_b, connect(&gw_b, &fx.secret, "carol", "carol-pw", "HW-1")).await;
    let body = expect_ok(&expired);
    assert_eq!(signed_claims(&expired, &body, &fx, "connect", "success", "")["lic"], "expired");
    let body = answered_warm(&gw_b, &core_b, &fx.secret, "carol-pw", "HW-1").await;
    assert!(body["total_pings"].as_i64().is_some_and(|n| n > 0), "{body}");

    // A HWID reset through A lets B bind the next machine.
    let carol = gw_a.users(&fx).await.into_iter().find(|u| u["username"] == "carol").expect("carol listed");
    let carol_id = int(&carol["id"]);
    expect_signed_error(
        &connect(&gw_b, &fx.secret, "carol", "carol-pw", "HW-2").await,
        403,
        "hwid_mismatch",
        &fx,
        "connect",
        "",
    );
    expect_ok(&gw_a.admin(&fx, "reset_hwid", &format!("user_id={carol_id}")).await);
    expect_ok(&connect(&gw_b, &fx.secret, "carol", "carol-pw", "HW-2").await);
    // B bound HW-2 itself on that call, so it read again before remembering.
    expect_ok(&connect(&gw_b, &fx.secret, "carol", "carol-pw", "HW-2").await);
    answered_warm(&gw_b, &core_b, &fx.secret, "carol-pw", "HW-2").await;

    // A password changed elsewhere (here straight in the shared database, as an operator's tool
    // would) is the only one B accepts from then on, although B remembered the old one.
    let hasher = PasswordHasher::new(1, 4).expect("hasher");
    let new_hash =
        hasher.hash(&Password::parse("password", "carol-new-pw").expect("valid")).await.expect("hash");
    use core_service::storage::entities::user;
    user::Entity::update_many()
        .col_expr(user::Column::PasswordHash, Expr::value(new_hash))
        .filter(user::Column::Id.eq(carol_id))
        .exec(core_a.core.db())
        .await
        .expect("change the password");
    let old_password = found_stale(&core_b, connect(&gw_b, &fx.secret, "carol", "carol-pw", "HW-2")).await;
    expect_signed_error(&old_password, 401, "invalid_credentials", &fx, "connect", "");
    expect_ok(&connect(&gw_b, &fx.secret, "carol", "carol-new-pw", "HW-2").await);
    answered_warm(&gw_b, &core_b, &fx.secret, "carol-new-pw", "HW-2").await;

    // A user deleted through A no longer exists for B.
    expect_ok(&gw_a.admin(&fx, "delete_user", &format!("user_id={carol_id}")).await);
    let gone = found_stale(&core_b, connect(&gw_b, &fx.secret, "carol", "carol-new-pw", "HW-2")).await;
    expect_signed_error(&gone, 401, "invalid_credentials", &fx, "connect", "");

    gw_a.stop().await;
    gw_b.stop().await;
    core_b.stop().await;
    core_a.stop().await;
}
