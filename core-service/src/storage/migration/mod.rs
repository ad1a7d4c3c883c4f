//! Schema migrations. They name their own identifiers instead of importing the entities, so a
//! later change to an entity can never rewrite history.

use sea_orm_migration::prelude::*;

mod m20261201_000001_initial;
mod m20261203_000002_app_secret_hash;
mod m20261203_000003_signing_keys;
mod m20261203_000004_dashboard;
mod m20261203_000005_licence_key_prefix;
mod m20261203_000006_revisions;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261201_000001_initial::Migration),
            Box::new(m20261203_000002_app_secret_hash::Migration),
            Box::new(m20261203_000003_signing_keys::Migration),
            Box::new(m20261203_000004_dashboard::Migration),
            Box::new(m20261203_000005_licence_key_prefix::Migration),
            Box::new(m20261203_000006_revisions::Migration),
        ]
    }
}
