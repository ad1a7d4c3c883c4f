//! Apps are found by a hash of their secret: the migration that adds the hash fills it in for
//! apps that existed before it, and lookups match on the hash, never on the secret column. The
//! signing-keys migration likewise makes each existing app's key its signing key.

mod common;

use core_service::{
    domain::secrets::app_secret_hash,
    storage::{self, DbConfig, migration::Migrator, queries},
};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use sea_orm_migration::MigratorTrait;

async fn exec(db: &DatabaseConnection, sql: &str) {
    db.execute_raw(Statement::from_string(db.get_database_backend(), sql)).await.expect(sql);
}

async fn existing_apps_get_their_hash_and_lookups_use_it(url: &str) {
    // A database as the first release left it, holding an app.
    let old = Database::connect(url).await.expect("open");
    Migrator::up(&old, Some(1)).await.expect("first migration");
    // Built with sea-query, so each backend gets its own spelling of bytes, booleans and times.
    use sea_orm::sea_query::{Alias, Query};
    let at = chrono::DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z").expect("time").to_utc();
    let developer = Query::insert()
        .into_table(Alias::new("developers"))
        .columns(["username", "password_hash", "created_at"].map(Alias::new))
        .values_panic(["dev".into(), "x".into(), at.into()])
        .to_owned();
    old.execute(&developer).await.expect("developer");
    let app = Query::insert()
        .into_table(Alias::new("apps"))
        .columns(
            [
                "developer_id",
                "name",
                "secret",
                "public_key",
                "private_key",
                "online",
                "offline_grace_secs",
                "created_at",
            ]
            .map(Alias::new),
        )
        .values_panic([
            1i64.into(),
            "Old app".into(),
            "the-old-secret".into(),
            vec![0u8; 32].into(),
            vec![0u8; 32].into(),
            true.into(),
            60i64.into(),
            at.into(),
        ])
        .to_owned();
    old.execute(&app).await.expect("app");
    old.close().await.expect("close");

    let store = storage::connect_and_migrate(&DbConfig::new(url.to_owned())).await.expect("migrate");
    let db = store.writer();
    let app = queries::find_app_by_secret(db, "the-old-secret")
        .await
        .expect("lookup")
        .expect("found by its secret");
    assert_eq!(app.name, "Old app");
    // SHA-256 of "the-old-secret", as `sha256sum` prints it.
    assert_eq!(app.secret_hash, "47ee7176d756d906d2be4fa62bebaa9cd4b067735442c62e4e996d860b4c3aac");
    assert_eq!(app_secret_hash("the-old-secret"), app.secret_hash);
    // Its key became its signing key, named by the kid tokens carry from now on.
    use core_service::storage::entities::app_signing_key;
    use sea_orm::EntityTrait;
    assert_eq!(app.signing_kid, core_service::domain::token::kid_of(&[0u8; 32]));
    let keys = app_signing_key::Entity::find().all(db).await.expect("keys");
    assert_eq!(keys.len(), 1);
    assert_eq!(
        (keys[0].app_id, keys[0].kid.as_str(), keys[0].state.as_str()),
        (app.id, app.signing_kid.as_str(), "signing")
    );
    assert_eq!((keys[0].public_key.clone(), keys[0].private_key.clone()), (vec![0u8; 32], vec![0u8; 32]));
    assert!(queries::find_app_by_secret(db, "the-old-secre").await.expect("lookup").is_none());

    // The hash is the key: with the secret column unchanged but the hash gone, nothing matches.
    exec(db, "UPDATE apps SET secret_hash = 'something else'").await;
    assert!(queries::find_app_by_secret(db, "the-old-secret").await.expect("lookup").is_none());
    assert!(queries::sign_in(db, "the-old-secret", "anyone").await.expect("sign-in").is_none());
    store.close().await;
}

#[tokio::test]
async fn on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
    existing_apps_get_their_hash_and_lookups_use_it(&url).await;
}

#[tokio::test]
#[ignore = "PostgreSQL: ./scripts/test runs it when PostgreSQL answers"]
async fn on_postgres() {
    let postgres = common::postgres().await;
    let name = format!("licensing_secret_hash_{}", std::process::id());
    existing_apps_get_their_hash_and_lookups_use_it(&postgres.create(&name).await).await;
    postgres.drop(&name).await;
}
