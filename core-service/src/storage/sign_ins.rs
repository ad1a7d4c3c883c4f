//! Sign-in reads that arrive together share one query on PostgreSQL. Every client call but a warm
//! heartbeat starts with [`queries::sign_in`], and under load most of a lookup's cost was the round
//! trip itself: the server's per-statement work and a wake-up on each side. A reader task takes
//! every lookup queued while its previous query ran and answers them all from one statement over
//! `unnest` of array parameters. No timer is involved: a lone lookup is read at once.
//!
//! SQLite reads stay direct: its read-only connections are in-process, with no server to spare.

use std::sync::OnceLock;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use tokio::sync::{mpsc, oneshot};

use super::queries::{self, SignIn};
use crate::domain::CoreError;

/// Most lookups in one statement.
const MAX_BATCH: usize = 256;
/// Lookups waiting for the reader before callers wait to enqueue.
const QUEUE: usize = 4096;

type Answer = Result<Option<SignIn>, CoreError>;

struct Lookup {
    secret_hash: String,
    username: String,
    reply: oneshot::Sender<Answer>,
}

pub struct SignInReader {
    db: DatabaseConnection,
    queue: OnceLock<mpsc::Sender<Lookup>>,
}

impl SignInReader {
    pub fn new(db: DatabaseConnection) -> Self {
        SignInReader { db, queue: OnceLock::new() }
    }

    /// The app with this secret, its user with this name and what they hold, as
    /// [`queries::sign_in`] reads it.
    pub async fn sign_in(&self, secret: &str, username: &str) -> Answer {
        if self.db.get_database_backend() != DbBackend::Postgres {
            return queries::sign_in(&self.db, secret, username).await;
        }
        // Started on first use, from inside the runtime, so building a core needs none.
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(run(self.db.clone(), rx));
            tx
        });
        let (reply, answer) = oneshot::channel();
        let lookup = Lookup {
            secret_hash: crate::domain::secrets::app_secret_hash(secret),
            username: username.to_owned(),
            reply,
        };
        let stopped = || CoreError::Unavailable("the sign-in reader has stopped".into());
        queue.send(lookup).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(db: DatabaseConnection, mut queue: mpsc::Receiver<Lookup>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        match read(&db, &batch).await {
            Ok(found) => {
                for (lookup, sign_in) in batch.drain(..).zip(found) {
                    let _ = lookup.reply.send(sign_in);
                }
            }
            Err(error) => {
                tracing::error!(%error, lookups = batch.len(), "cannot read a batch of sign-ins");
                let failure = super::batch_failure(&error, "cannot read the sign-in");
                for lookup in batch.drain(..) {
                    let _ = lookup.reply.send(Err(failure()));
                }
            }
        }
    }
}

/// One statement for the batch; answers each lookup's sign-in, in order.
async fn read(db: &DatabaseConnection, batch: &[Lookup]) -> Result<Vec<Answer>, sea_orm::DbErr> {
    let positions: Vec<String> = (0..batch.len()).map(|i| i.to_string()).collect();
    let values = [
        text_array(positions.iter().map(String::as_str)).into(),
        text_array(batch.iter().map(|l| l.secret_hash.as_str())).into(),
        text_array(batch.iter().map(|l| l.username.as_str())).into(),
    ];
    let rows =
        db.query_all_raw(Statement::from_sql_and_values(DbBackend::Postgres, batch_sql(), values)).await?;
    let mut per_lookup: Vec<Vec<sea_orm::QueryResult>> = (0..batch.len()).map(|_| Vec::new()).collect();
    for row in rows {
        let k = row.try_get::<i64>("", "q_k")?;
        if let Some(rows) = usize::try_from(k).ok().and_then(|k| per_lookup.get_mut(k)) {
            rows.push(row);
        }
    }
    Ok(per_lookup.into_iter().map(queries::sign_in_of).collect())
}

fn batch_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "SELECT q.k AS q_k, {} \
             FROM unnest($1::text::bigint[], $2::text::text[], $3::text::text[]) AS q(k, h, name) \
             JOIN apps a ON a.secret_hash = q.h \
             LEFT JOIN users u ON u.app_id = a.id AND u.username = q.name \
             LEFT JOIN licences l ON l.user_id = u.id",
            queries::sign_in_columns()
        )
    })
}

/// A PostgreSQL array literal of `items`, each element double-quoted with `\` and `"` escaped, so
/// any text a client sent (a username) is one element, whatever it contains.
pub fn text_array<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let mut literal = String::from("{");
    for (i, item) in items.enumerate() {
        if i > 0 {
            literal.push(',');
        }
        literal.push('"');
        for c in item.chars() {
            if c == '"' || c == '\\' {
                literal.push('\\');
            }
            literal.push(c);
        }
        literal.push('"');
    }
    literal.push('}');
    literal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_element_is_quoted_and_escaped() {
        let items = ["carol", "", "a,b", "{x}", "say \"hi\"", "back\\slash", "NULL", " sp "];
        assert_eq!(
            text_array(items.into_iter()),
            r#"{"carol","","a,b","{x}","say \"hi\"","back\\slash","NULL"," sp "}"#
        );
        assert_eq!(text_array(std::iter::empty()), "{}");
    }
}
