//! Two cores and two gateways on one database, as production runs replicas: every change made
//! through one replica takes effect at once on the other, whatever either has cached (the
//! credential cache included).

mod common;

use common::{Backend, Fixture, TestCore, gateway::*};
use core_service::domain::{Password, password::PasswordHasher};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};

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

async fn changes_apply_across_replicas(backend: Backend) {
    let core_a = TestCore::start(backend).await;
    let core_b = TestCore::start_beside(&core_a).await;
    let gw_a = TestGateway::in_front_of(&core_a, &[]).await;
    let gw_b = TestGateway::in_front_of(&core_b, &[]).await;
    let mut fx: Fixture = core_a.fixture("dev-replicas").await;

    let key = gw_a.create_keys(&fx, 1, 1, &date_in(30)).await.remove(0);
    gw_a.register_ok(&fx, "carol", &format!("hwid=HW-1&licence={key}")).await;
    // Replica B warms its credential cache for carol.
    for _ in 0..2 {
        expect_ok(&connect(&gw_b, &fx.secret, "carol", "carol-pw", "HW-1").await);
    }

    // A secret renewed through A is refused by B at once, and the new one works there.
    let renewed = expect_ok(&gw_a.admin(&fx, "renew_secret", "").await);
    let old_secret =
        std::mem::replace(&mut fx.secret, renewed["secret"].as_str().expect("secret").to_owned());
    expect_error(&connect(&gw_b, &old_secret, "carol", "carol-pw", "HW-1").await, 401, "invalid_app_secret");
    expect_ok(&connect(&gw_b, &fx.secret, "carol", "carol-pw", "HW-1").await);

    // A ban through A holds on B; lifting it does too.
    expect_ok(&gw_a.admin(&fx, "ban_licence", &format!("licence_key={key}")).await);
    expect_signed_error(
        &connect(&gw_b, &fx.secret, "carol", "carol-pw", "HW-1").await,
        403,
        "licence_banned",
        &fx,
        "connect",
        "",
    );
    expect_ok(&gw_a.admin(&fx, "unban_licence", &format!("licence_key={key}")).await);
    expect_ok(&connect(&gw_b, &fx.secret, "carol", "carol-pw", "HW-1").await);

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
    expect_signed_error(
        &connect(&gw_b, &fx.secret, "carol", "carol-pw", "HW-2").await,
        401,
        "invalid_credentials",
        &fx,
        "connect",
        "",
    );
    expect_ok(&connect(&gw_b, &fx.secret, "carol", "carol-new-pw", "HW-2").await);

    // A user deleted through A no longer exists for B.
    expect_ok(&gw_a.admin(&fx, "delete_user", &format!("user_id={carol_id}")).await);
    let gone = connect(&gw_b, &fx.secret, "carol", "carol-new-pw", "HW-2").await;
    expect_signed_error(&gone, 401, "invalid_credentials", &fx, "connect", "");

    gw_a.stop().await;
    gw_b.stop().await;
    core_b.stop().await;
    core_a.stop().await;
}
