//! Signing-key rotation and keys at rest: a next key is published before it signs, promotion
//! switches the `kid` of every token at once (on every replica), the old key stays published
//! until retired, the signing key cannot be retired, and with a key-encryption key no private
//! key is stored in the clear.

mod common;

use common::{Backend, Fixture, TestCore, expect_code, gateway::*};
use core_service::{
    Application, CoreConfig,
    domain::keyvault::KeyVault,
    storage::entities::{app, app_signing_key},
};
use licensing::v1 as pb;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;

on_both_backends! {
    rotation_reaches_tokens_and_listings_on_every_replica => rotation;
    private_keys_are_sealed_under_a_key_encryption_key => sealing;
}

async fn login_token(gateway: &TestGateway, fx: &Fixture, username: &str) -> String {
    let reply = gateway.client("login", user_form(fx, username, "")).await;
    expect_ok(&reply);
    reply.header("x-response-token").expect("token").to_owned()
}

fn state(app: &pb::App, kid: &str) -> Option<pb::SigningKeyState> {
    app.signing_keys.iter().find(|k| k.kid == kid).map(|k| k.state())
}

async fn rotation(backend: Backend) {
    let stack = TestStack::start(backend).await;
    let replica = TestCore::start_beside(&stack.core).await;
    let replica_gw = TestGateway::in_front_of(&replica, &[]).await;
    let fx = stack.fixture("dev-rotate").await;
    let intruder = stack.fixture("dev-intruder").await;
    stack.register_ok(&fx, "rot", "").await;
    let old_kid = kid_of(&fx.public_key);
    verified_claims(&login_token(&stack, &fx, "rot").await, &fx.public_key);

    let mut dev = stack.core.developer().await;
    let app = dev.get_app(pb::GetAppRequest { scope: fx.scope() }).await.expect("get").into_inner();
    assert_eq!(app.id, fx.app_id);
    assert_eq!(app.signing_keys.len(), 1);
    assert_eq!(state(&app, &old_kid), Some(pb::SigningKeyState::Signing));

    // Added: published at once (gRPC and get_app_data), signing nothing yet.
    let app =
        dev.add_signing_key(pb::AddSigningKeyRequest { scope: fx.scope() }).await.expect("add").into_inner();
    let next = app.signing_keys.iter().find(|k| k.kid != old_kid).expect("a second key").clone();
    assert_eq!(next.state(), pb::SigningKeyState::Next);
    assert_eq!(next.kid, kid_of(&next.public_key), "the kid is the key's thumbprint");
    assert_eq!(app.public_key, fx.public_key, "`public` stays the signing key");
    let data = expect_ok(&stack.admin(&fx, "get_app_data", "").await);
    assert_eq!(
        data["keys"],
        json!([
            {"kid": old_kid, "public": fx.public_key, "state": "signing"},
            {"kid": next.kid, "public": next.public_key, "state": "next"},
        ])
    );
    verified_claims(&login_token(&replica_gw, &fx, "rot").await, &fx.public_key);

    // Nobody else rotates this app's keys.
    let stolen = Fixture { secret: fx.secret.clone(), ..intruder.clone() };
    expect_code(dev.add_signing_key(pb::AddSigningKeyRequest { scope: stolen.scope() }).await, "forbidden");
    expect_code(
        dev.promote_signing_key(pb::PromoteSigningKeyRequest {
            scope: stolen.scope(),
            kid: next.kid.clone(),
        })
        .await,
        "forbidden",
    );

    // Promoted through one replica: both sign with it from the next answer on.
    let app = dev
        .promote_signing_key(pb::PromoteSigningKeyRequest { scope: fx.scope(), kid: next.kid.clone() })
        .await
        .expect("promote")
        .into_inner();
    assert_eq!(app.public_key, next.public_key);
    assert_eq!(state(&app, &next.kid), Some(pb::SigningKeyState::Signing));
    assert_eq!(state(&app, &old_kid), Some(pb::SigningKeyState::Previous));
    for gateway in [&*stack, &replica_gw] {
        let claims = verified_claims(&login_token(gateway, &fx, "rot").await, &next.public_key);
        assert_eq!(claims["sub"], "rot");
    }
    let data = expect_ok(&stack.admin(&fx, "get_app_data", "").await);
    assert_eq!(data["public"], next.public_key.as_str());
    assert_eq!(data["keys"][0]["state"], "previous");

    // The signing key cannot be retired; bad kids are refused with what is wrong.
    let retire = |kid: &str| pb::RetireSigningKeyRequest { scope: fx.scope(), kid: kid.to_owned() };
    expect_code(dev.retire_signing_key(retire(&next.kid)).await, "invalid_field");
    expect_code(dev.retire_signing_key(retire("")).await, "missing_field");
    expect_code(dev.retire_signing_key(retire("no such kid!")).await, "invalid_field");
    expect_code(dev.retire_signing_key(retire(&"A".repeat(43))).await, "not_found");

    // Retired: no longer published, its private half erased; retiring again finds nothing.
    let app = dev.retire_signing_key(retire(&old_kid)).await.expect("retire").into_inner();
    assert_eq!(app.signing_keys.len(), 1);
    assert_eq!(state(&app, &next.kid), Some(pb::SigningKeyState::Signing));
    let row = app_signing_key::Entity::find()
        .filter(app_signing_key::Column::Kid.eq(old_kid.clone()))
        .one(stack.core.core.db())
        .await
        .expect("query")
        .expect("the retired row stays for the record");
    assert_eq!(row.state, "retired");
    assert!(row.private_key.is_empty(), "the retired private key is erased");
    expect_code(dev.retire_signing_key(retire(&old_kid)).await, "not_found");
    expect_code(
        dev.promote_signing_key(pb::PromoteSigningKeyRequest { scope: fx.scope(), kid: old_kid.clone() })
            .await,
        "not_found",
    );
    verified_claims(&login_token(&replica_gw, &fx, "rot").await, &next.public_key);

    replica_gw.stop().await;
    replica.stop().await;
    stack.stop().await;
}

/// Every stored private key of the database, with where it is stored.
async fn stored_private_keys(core: &TestCore) -> Vec<(String, Vec<u8>)> {
    let db = core.core.db();
    let mut stored: Vec<(String, Vec<u8>)> = app::Entity::find()
        .all(db)
        .await
        .expect("apps")
        .into_iter()
        .map(|a| (format!("apps/{}", a.id), a.private_key))
        .collect();
    stored.extend(
        app_signing_key::Entity::find()
            .all(db)
            .await
            .expect("keys")
            .into_iter()
            .filter(|k| k.state != "retired")
            .map(|k| (format!("app_signing_keys/{}", k.kid), k.private_key)),
    );
    stored
}

fn kek_file(dir: &tempfile::TempDir, name: &str, byte: u8) -> KeyVault {
    let path = dir.path().join(name);
    std::fs::write(&path, format!("{}\n", format!("{byte:02x}").repeat(32))).expect("write kek");
    KeyVault::from_file(&path).expect("kek")
}

async fn sealing(backend: Backend) {
    let dir = tempfile::tempdir().expect("dir");
    let plain_core = TestCore::start(backend).await;
    let fx = plain_core.fixture("dev-sealed").await;
    plain_core.core.add_signing_key(fx.app_id).await.expect("a next key");
    let plain = stored_private_keys(&plain_core).await;
    assert!(plain.iter().all(|(_, k)| k.len() == 32), "without a KEK, seeds are stored as they are");
    let seeds: Vec<Vec<u8>> = plain.iter().map(|(_, k)| k.clone()).collect();
    let url = plain_core.db.url.clone();
    let kek = kek_file(&dir, "kek", 0x5a);

    // A core started with a KEK seals every stored key, and signs with the sealed ones.
    let sealed_core = TestCore::start_beside_with(&plain_core, |c| c.settings.key_vault = kek.clone()).await;
    let stored = stored_private_keys(&sealed_core).await;
    assert_eq!(stored.len(), plain.len());
    for (place, bytes) in &stored {
        assert!(KeyVault::is_sealed(bytes), "{place} is sealed");
        for seed in &seeds {
            assert!(!bytes.windows(seed.len()).any(|w| w == seed.as_slice()), "{place} does not hold a seed");
        }
    }
    let gateway = TestGateway::in_front_of(&sealed_core, &[]).await;
    gateway.register_ok(&fx, "sealed-user", "").await;
    verified_claims(&login_token(&gateway, &fx, "sealed-user").await, &fx.public_key);
    let keys = sealed_core.core.add_signing_key(fx.app_id).await.expect("another key");
    assert_eq!(keys.len(), 3);
    assert!(
        stored_private_keys(&sealed_core).await.iter().all(|(_, k)| KeyVault::is_sealed(k)),
        "new keys too"
    );

    // From then on the KEK is needed: a core without it, or with another, refuses to start.
    for (vault, expected) in
        [(KeyVault::default(), "--key-encryption-key-file"), (kek_file(&dir, "other", 0x11), "does not open")]
    {
        let mut config = CoreConfig::local(&url);
        config.settings.key_vault = vault;
        let error = match Application::build(config).await {
            Ok(_) => panic!("a core without the right KEK must not start"),
            Err(error) => error.to_string(),
        };
        assert!(error.contains(expected), "{error}");
    }

    gateway.stop().await;
    sealed_core.stop().await;
    plain_core.stop().await;
}
