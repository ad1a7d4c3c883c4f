//! Revisions for the heartbeat's fast path. A core answers a warm heartbeat from what it
//! remembers of the app and the user, and counts the ping only if neither has changed since: the
//! ping's update compares `users.rev` and `apps.rev` with the revisions it remembered. So every
//! change a heartbeat's answer depends on must move a revision, whoever makes it (this core,
//! another replica, or an operator's SQL). Triggers make sure of that:
//! - any update of an app;
//! - an update of a user's password hash, HWID, name or app (never the ping counters, which the
//!   fast path itself writes);
//! - any insert, update or delete of a licence a user holds, which moves that user's revision.
//!
//! Deleting a user or an app needs nothing: the ping's update then finds no row.

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const POSTGRES_UP: &str = r#"
ALTER TABLE apps ADD COLUMN rev BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN rev BIGINT NOT NULL DEFAULT 0;
CREATE FUNCTION licensing_next_rev() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.rev := OLD.rev + 1;
    RETURN NEW;
END $$;
CREATE FUNCTION licensing_holder_rev() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' AND OLD.user_id IS NOT NULL THEN
        UPDATE users SET rev = rev + 1 WHERE id = OLD.user_id;
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.user_id IS NOT NULL
       AND (TG_OP = 'INSERT' OR NEW.user_id IS DISTINCT FROM OLD.user_id) THEN
        UPDATE users SET rev = rev + 1 WHERE id = NEW.user_id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER apps_rev BEFORE UPDATE ON apps FOR EACH ROW
    WHEN (NEW.rev = OLD.rev) EXECUTE FUNCTION licensing_next_rev();
CREATE TRIGGER users_rev BEFORE UPDATE ON users FOR EACH ROW
    WHEN (NEW.rev = OLD.rev AND (NEW.password_hash IS DISTINCT FROM OLD.password_hash
          OR NEW.hwid IS DISTINCT FROM OLD.hwid OR NEW.username IS DISTINCT FROM OLD.username
          OR NEW.app_id IS DISTINCT FROM OLD.app_id))
    EXECUTE FUNCTION licensing_next_rev();
CREATE TRIGGER licences_rev_insert AFTER INSERT ON licences FOR EACH ROW
    WHEN (NEW.user_id IS NOT NULL) EXECUTE FUNCTION licensing_holder_rev();
CREATE TRIGGER licences_rev_update AFTER UPDATE ON licences FOR EACH ROW
    WHEN (OLD.user_id IS NOT NULL OR NEW.user_id IS NOT NULL) EXECUTE FUNCTION licensing_holder_rev();
CREATE TRIGGER licences_rev_delete AFTER DELETE ON licences FOR EACH ROW
    WHEN (OLD.user_id IS NOT NULL) EXECUTE FUNCTION licensing_holder_rev();
"#;

const POSTGRES_DOWN: &str = r#"
DROP TRIGGER IF EXISTS licences_rev_delete ON licences;
DROP TRIGGER IF EXISTS licences_rev_update ON licences;
DROP TRIGGER IF EXISTS licences_rev_insert ON licences;
DROP TRIGGER IF EXISTS users_rev ON users;
DROP TRIGGER IF EXISTS apps_rev ON apps;
DROP FUNCTION IF EXISTS licensing_holder_rev();
DROP FUNCTION IF EXISTS licensing_next_rev();
ALTER TABLE users DROP COLUMN rev;
ALTER TABLE apps DROP COLUMN rev;
"#;

// SQLite cannot assign to NEW, so its triggers update the row again; with recursive triggers off
// (SQLite's default) and the `NEW.rev = OLD.rev` guard, that second update fires nothing.
const SQLITE_UP: [&str; 7] = [
    "ALTER TABLE apps ADD COLUMN rev INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE users ADD COLUMN rev INTEGER NOT NULL DEFAULT 0",
    "CREATE TRIGGER apps_rev AFTER UPDATE ON apps FOR EACH ROW WHEN NEW.rev = OLD.rev
     BEGIN UPDATE apps SET rev = OLD.rev + 1 WHERE id = NEW.id; END",
    "CREATE TRIGGER users_rev AFTER UPDATE OF password_hash, hwid, username, app_id ON users FOR EACH ROW
     WHEN NEW.rev = OLD.rev AND (NEW.password_hash IS NOT OLD.password_hash OR NEW.hwid IS NOT OLD.hwid
          OR NEW.username IS NOT OLD.username OR NEW.app_id IS NOT OLD.app_id)
     BEGIN UPDATE users SET rev = OLD.rev + 1 WHERE id = NEW.id; END",
    "CREATE TRIGGER licences_rev_insert AFTER INSERT ON licences FOR EACH ROW WHEN NEW.user_id IS NOT NULL
     BEGIN UPDATE users SET rev = rev + 1 WHERE id = NEW.user_id; END",
    "CREATE TRIGGER licences_rev_update AFTER UPDATE ON licences FOR EACH ROW
     WHEN OLD.user_id IS NOT NULL OR NEW.user_id IS NOT NULL
     BEGIN UPDATE users SET rev = rev + 1 WHERE id IN (OLD.user_id, NEW.user_id); END",
    "CREATE TRIGGER licences_rev_delete AFTER DELETE ON licences FOR EACH ROW WHEN OLD.user_id IS NOT NULL
     BEGIN UPDATE users SET rev = rev + 1 WHERE id = OLD.user_id; END",
];

const SQLITE_DOWN: [&str; 7] = [
    "DROP TRIGGER IF EXISTS licences_rev_delete",
    "DROP TRIGGER IF EXISTS licences_rev_update",
    "DROP TRIGGER IF EXISTS licences_rev_insert",
    "DROP TRIGGER IF EXISTS users_rev",
    "DROP TRIGGER IF EXISTS apps_rev",
    "ALTER TABLE users DROP COLUMN rev",
    "ALTER TABLE apps DROP COLUMN rev",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, POSTGRES_UP, &SQLITE_UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, POSTGRES_DOWN, &SQLITE_DOWN).await
    }
}

async fn run(manager: &SchemaManager<'_>, postgres: &str, sqlite: &[&str]) -> Result<(), DbErr> {
    let db = manager.get_connection();
    match manager.get_database_backend() {
        DbBackend::Postgres => {
            db.execute_unprepared(postgres).await?;
        }
        _ => {
            for statement in sqlite {
                db.execute_unprepared(statement).await?;
            }
        }
    }
    Ok(())
}
