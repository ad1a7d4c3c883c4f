//! Group commit for heartbeats. Every running copy of every app pings about once a minute, so
//! pings are the one write that arrives in floods. Instead of one statement and one commit (one
//! fsync on SQLite) per ping, pings that arrive while the previous batch is committing share the
//! next transaction: one `UPDATE ... FROM (VALUES ...)` with `RETURNING`, then two upserts of the
//! apps' daily aggregates, committed together. A ping is answered only after its batch committed, so an
//! acknowledged ping is durable. No timer is involved: a lone ping is written at once, and a
//! batch grows only while the database is busy with the one before it.
//!
//! A ping may carry the revisions of the user and the app that its caller checked (a warm
//! heartbeat, answered from memory): it is then counted only if both still hold, in the same
//! statement, so a change committed anywhere before the ping is never missed.

use std::{
    collections::HashMap,
    fmt::Write as _,
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
};

use chrono::Utc;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use tokio::sync::{mpsc, oneshot};

use crate::domain::CoreError;

/// Most pings in one statement: bounds the statement's size and one batch's latency.
pub const MAX_BATCH: usize = 512;
/// Days of per-user activity kept (the dashboard charts at most 90).
const ACTIVE_USERS_KEPT_DAYS: i64 = 91;
/// Pings waiting for the writer before callers wait to enqueue.
const QUEUE: usize = 8192;

type Answer = Result<Option<i64>, CoreError>;

/// The revisions of a user and of their app that a warm heartbeat was answered from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revisions {
    pub user: i64,
    pub app: i64,
}

struct Ping {
    user_id: i64,
    expect: Option<Revisions>,
    reply: oneshot::Sender<Answer>,
}

/// One user's pings in a batch, all with the same expectation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Group {
    user_id: i64,
    n: i64,
    expect: Option<Revisions>,
}

/// Counts pings through one writer task, batching those that arrive together.
pub struct PingWriter {
    db: DatabaseConnection,
    queue: OnceLock<mpsc::Sender<Ping>>,
    stats: std::sync::Arc<BatchStats>,
}

/// How batching behaves, for tests and metrics.
#[derive(Debug, Default)]
pub struct BatchStats {
    batches: AtomicU64,
    pings: AtomicU64,
    largest: AtomicU64,
}

impl BatchStats {
    /// Statements committed so far.
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Pings written so far.
    pub fn pings(&self) -> u64 {
        self.pings.load(Ordering::Relaxed)
    }

    /// The most pings one statement carried.
    pub fn largest(&self) -> u64 {
        self.largest.load(Ordering::Relaxed)
    }

    fn record(&self, size: usize) {
        crate::metrics::metrics().ping_batch_size.observe(size as f64);
        let size = size as u64;
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.pings.fetch_add(size, Ordering::Relaxed);
        self.largest.fetch_max(size, Ordering::Relaxed);
    }
}

impl PingWriter {
    pub fn new(db: DatabaseConnection) -> Self {
        PingWriter { db, queue: OnceLock::new(), stats: Default::default() }
    }

    pub fn stats(&self) -> &BatchStats {
        &self.stats
    }

    /// Counts one ping of the user and answers the new total once it is committed; `None` when
    /// the user no longer exists.
    pub async fn count(&self, user_id: i64) -> Answer {
        self.enqueue(user_id, None).await
    }

    /// Counts one ping only if the user's and the app's revisions are still `expect`, and answers
    /// the new total once committed; `None` when either has moved (or the user is gone), and
    /// nothing was counted.
    pub async fn count_if(&self, user_id: i64, expect: Revisions) -> Answer {
        self.enqueue(user_id, Some(expect)).await
    }

    async fn enqueue(&self, user_id: i64, expect: Option<Revisions>) -> Answer {
        // Started on first use, from inside the runtime, so building a core needs none.
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(run(self.db.clone(), rx, self.stats.clone()));
            tx
        });
        let (reply, answer) = oneshot::channel();
        queue
            .send(Ping { user_id, expect, reply })
            .await
            .map_err(|_| CoreError::Unavailable("the ping writer has stopped".into()))?;
        answer.await.map_err(|_| CoreError::Unavailable("the ping writer has stopped".into()))?
    }
}

async fn run(db: DatabaseConnection, mut queue: mpsc::Receiver<Ping>, stats: std::sync::Arc<BatchStats>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut carried = Vec::new();
    let mut pruned_on = None;
    loop {
        if carried.is_empty() {
            // `recv_many` waits for one ping, then takes every ping already queued: the group
            // commit.
            if queue.recv_many(&mut batch, MAX_BATCH).await == 0 {
                break;
            }
        } else {
            // Pings held back from the last batch go first, without waiting for more.
            batch.append(&mut carried);
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(ping) => batch.push(ping),
                    Err(_) => break,
                }
            }
        }
        let today = Utc::now().date_naive();
        if pruned_on != Some(today) {
            // Who was active is kept only as long as the dashboard can chart it.
            let cutoff =
                (today - chrono::Duration::days(ACTIVE_USERS_KEPT_DAYS)).format("%Y-%m-%d").to_string();
            let prune = Statement::from_string(
                db.get_database_backend(),
                format!("DELETE FROM app_active_users WHERE day < '{cutoff}'"),
            );
            match db.execute_raw(prune).await {
                Ok(_) => pruned_on = Some(today),
                Err(error) => tracing::warn!(%error, "cannot prune old activity"),
            }
        }
        let counts = per_user(&mut batch, &mut carried);
        match write_retrying(&db, &counts).await {
            Ok(totals) => {
                stats.record(batch.len());
                answer(&mut batch, &counts, &totals);
            }
            Err(error) => {
                tracing::error!(%error, pings = batch.len(), "cannot count a batch of pings");
                let failure = super::batch_failure(&error, "cannot count the ping");
                for ping in batch.drain(..) {
                    let _ = ping.reply.send(Err(failure()));
                }
            }
        }
    }
}

/// Times a batch is tried when the database gives it up to break a deadlock.
const DEADLOCK_TRIES: usize = 3;

/// Writes a batch, again if PostgreSQL chose it as a deadlock's victim: the ping statement locks
/// many users' rows at once, and a change to several users' licences (whose triggers move those
/// users' revisions) can take the same locks in another order. The failed statement changed
/// nothing, so trying again is safe.
async fn write_retrying(
    db: &DatabaseConnection,
    counts: &[Group],
) -> Result<HashMap<i64, i64>, sea_orm::DbErr> {
    let mut tries = 1;
    loop {
        match write(db, counts).await {
            Err(error) if tries < DEADLOCK_TRIES && is_deadlock(&error) => {
                tracing::warn!(%error, tries, "a batch of pings met a deadlock; trying again");
                tries += 1;
            }
            outcome => return outcome,
        }
    }
}

/// PostgreSQL's `deadlock_detected` or `serialization_failure`.
fn is_deadlock(error: &sea_orm::DbErr) -> bool {
    matches!(super::database_code(error).as_deref(), Some("40P01" | "40001"))
}

/// Each user's ping count in the batch, in order of first appearance. A user's row is updated
/// once per statement, so all their pings in it must expect the same revisions (or none); a ping
/// that expects otherwise than the user's first is moved to `carried`, for the next batch.
fn per_user(batch: &mut Vec<Ping>, carried: &mut Vec<Ping>) -> Vec<Group> {
    let mut index: HashMap<i64, usize> = HashMap::with_capacity(batch.len());
    let mut counts: Vec<Group> = Vec::with_capacity(batch.len());
    let mut kept = Vec::with_capacity(batch.len());
    for ping in batch.drain(..) {
        match index.get(&ping.user_id) {
            Some(&i) if counts[i].expect == ping.expect => counts[i].n += 1,
            Some(_) => {
                carried.push(ping);
                continue;
            }
            None => {
                index.insert(ping.user_id, counts.len());
                counts.push(Group { user_id: ping.user_id, n: 1, expect: ping.expect });
            }
        }
        kept.push(ping);
    }
    *batch = kept;
    counts
}

/// One transaction for the whole batch: the users' counters, then the apps' daily aggregates
/// (heartbeats, and which users were active) that the dashboard charts. Answers each user's new
/// total.
async fn write(db: &DatabaseConnection, counts: &[Group]) -> Result<HashMap<i64, i64>, sea_orm::DbErr> {
    let backend = db.get_database_backend();
    let now = Utc::now();
    let day = now.format("%Y-%m-%d").to_string();
    if backend == DbBackend::Postgres {
        // One statement, so one round trip: the aggregates ride on the update as
        // data-modifying CTEs, in its implicit transaction.
        let [ids, ns, urs, ars] = postgres_batch_values(counts);
        let values = [now.into(), day.into(), ids.into(), ns.into(), urs.into(), ars.into()];
        let rows =
            db.query_all_raw(Statement::from_sql_and_values(backend, postgres_batch_sql(), values)).await?;
        return totals_of(rows).map(|(totals, _)| totals);
    }
    use sea_orm::TransactionTrait;
    let txn = db.begin().await?;
    let statement = Statement::from_sql_and_values(backend, batch_sql(backend, counts), [now.into()]);
    let (totals, active) = totals_of(txn.query_all_raw(statement).await?)?;
    if !active.is_empty() {
        let pings: HashMap<i64, i64> = counts.iter().map(|g| (g.user_id, g.n)).collect();
        for sql in activity_sql(&day, &active, &pings) {
            txn.execute_raw(Statement::from_string(backend, sql)).await?;
        }
    }
    txn.commit().await?;
    Ok(totals)
}

/// Each user's new total, and (app, user) of every user counted.
#[allow(clippy::type_complexity)]
fn totals_of(
    rows: Vec<sea_orm::QueryResult>,
) -> Result<(HashMap<i64, i64>, Vec<(i64, i64)>), sea_orm::DbErr> {
    let mut totals = HashMap::with_capacity(rows.len());
    let mut active = Vec::with_capacity(rows.len());
    for row in rows {
        let user_id = row.try_get::<i64>("", "id")?;
        totals.insert(user_id, row.try_get::<i64>("", "total_pings")?);
        active.push((row.try_get::<i64>("", "app_id")?, user_id));
    }
    Ok((totals, active))
}

/// The PostgreSQL batch: the counters' update, then both aggregates from what it returned.
/// `$1` is the time, `$2` the day, `$3` to `$6` the batch's columns as array literals
/// ([`postgres_batch_values`]). The text is the same for every batch, so each connection parses
/// and plans it once: planning a new text per batch cost PostgreSQL more than the batch's updates.
fn postgres_batch_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "WITH v(id, n, ur, ar) AS (SELECT * FROM unnest($3::text::bigint[], $4::text::bigint[], \
             $5::text::bigint[], $6::text::bigint[])), u AS (UPDATE users SET total_pings = users.total_pings + v.n, last_seen = $1 FROM v \
         WHERE {COUNTED} RETURNING users.id AS id, users.total_pings AS total_pings, \
         users.app_id AS app_id, v.n AS n), \
         d AS (INSERT INTO app_activity_days (app_id, day, heartbeats) \
         SELECT app_id, $2, SUM(n) FROM u GROUP BY app_id \
         ON CONFLICT (app_id, day) DO UPDATE SET heartbeats = app_activity_days.heartbeats + excluded.heartbeats), \
         a AS (INSERT INTO app_active_users (app_id, day, user_id) SELECT app_id, $2, id FROM u \
         ON CONFLICT (app_id, day, user_id) DO NOTHING) \
         SELECT id, total_pings, app_id FROM u"
        )
    })
}

/// The batch's columns for [`postgres_batch_sql`]: ids, counts and expected revisions (-1: none),
/// each as an array literal such as `{7,9}`.
fn postgres_batch_values(counts: &[Group]) -> [String; 4] {
    let mut columns: [String; 4] = Default::default();
    for column in &mut columns {
        column.reserve(2 + counts.len() * 8);
        column.push('{');
    }
    for (i, g) in counts.iter().enumerate() {
        let (ur, ar) = g.expect.map_or((-1, -1), |r| (r.user, r.app));
        for (column, value) in columns.iter_mut().zip([g.user_id, g.n, ur, ar]) {
            if i > 0 {
                column.push(',');
            }
            let _ = write!(column, "{value}");
        }
    }
    for column in &mut columns {
        column.push('}');
    }
    columns
}

/// Which rows of `v` a batch counts: every unconditional ping (revisions -1), and a warm ping only
/// while its user's and its app's revisions are the ones it was answered from.
const COUNTED: &str = "users.id = v.id AND (v.ur < 0 OR (users.rev = v.ur AND EXISTS \
     (SELECT 1 FROM apps WHERE apps.id = users.app_id AND apps.rev = v.ar)))";

/// `v(id, n, ur, ar) AS (VALUES ...)`: each user's pings and expected revisions (-1: none; a
/// revision is never negative). All integers the core produced, never client text.
fn values_into(sql: &mut String, counts: &[Group]) {
    sql.push_str("v(id, n, ur, ar) AS (VALUES ");
    for (i, g) in counts.iter().enumerate() {
        if i > 0 {
            sql.push(',');
        }
        let (ur, ar) = g.expect.map_or((-1, -1), |r| (r.user, r.app));
        let _ = write!(sql, "({}, {}, {ur}, {ar})", g.user_id, g.n);
    }
    sql.push(')');
}

/// The aggregate upserts of a batch. `day` is the core's own `YYYY-MM-DD`; ids and counts are
/// integers the core produced: nothing here is client text.
fn activity_sql(day: &str, active: &[(i64, i64)], pings: &HashMap<i64, i64>) -> [String; 2] {
    let mut per_app: HashMap<i64, i64> = HashMap::new();
    for (app_id, user_id) in active {
        *per_app.entry(*app_id).or_insert(0) += pings.get(user_id).copied().unwrap_or(1);
    }
    let mut days = String::from("INSERT INTO app_activity_days (app_id, day, heartbeats) VALUES ");
    for (i, (app_id, n)) in per_app.iter().enumerate() {
        if i > 0 {
            days.push(',');
        }
        let _ = write!(days, "({app_id}, '{day}', {n})");
    }
    days.push_str(
        " ON CONFLICT (app_id, day) DO UPDATE SET heartbeats = app_activity_days.heartbeats + excluded.heartbeats",
    );
    let mut users = String::from("INSERT INTO app_active_users (app_id, day, user_id) VALUES ");
    for (i, (app_id, user_id)) in active.iter().enumerate() {
        if i > 0 {
            users.push(',');
        }
        let _ = write!(users, "({app_id}, '{day}', {user_id})");
    }
    users.push_str(" ON CONFLICT (app_id, day, user_id) DO NOTHING");
    [days, users]
}

/// The batch statement. The ids and counts are integers the core produced (never client text),
/// written inline so the statement needs one bound value whatever the batch size.
fn batch_sql(backend: DbBackend, counts: &[Group]) -> String {
    let mut sql = String::with_capacity(320 + counts.len() * 24);
    sql.push_str("WITH ");
    values_into(&mut sql, counts);
    let now = match backend {
        DbBackend::Postgres => "$1",
        _ => "?",
    };
    let _ = write!(
        sql,
        " UPDATE users SET total_pings = users.total_pings + v.n, last_seen = {now} \
         FROM v WHERE {COUNTED} \
         RETURNING users.id AS id, users.total_pings AS total_pings, users.app_id AS app_id"
    );
    sql
}

/// Hands every ping its own total: a user's k-th ping of n in the batch gets `total - n + k`.
fn answer(batch: &mut Vec<Ping>, counts: &[Group], totals: &HashMap<i64, i64>) {
    let pending: HashMap<i64, i64> = counts.iter().map(|g| (g.user_id, g.n)).collect();
    let mut handed: HashMap<i64, i64> = HashMap::with_capacity(counts.len());
    for ping in batch.drain(..) {
        let total = totals.get(&ping.user_id).map(|&total| {
            let n = pending.get(&ping.user_id).copied().unwrap_or(1);
            let k = handed.entry(ping.user_id).or_insert(0);
            *k += 1;
            total - n + *k
        });
        let _ = ping.reply.send(Ok(total));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        service::{Core, Settings},
        storage::{DbConfig, connect_and_migrate, queries},
    };

    /// A fresh SQLite database with one app and two users; answers their ids.
    async fn two_users(dir: &tempfile::TempDir) -> (DatabaseConnection, i64, i64) {
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("pings.db").display());
        let store = connect_and_migrate(&DbConfig::new(url)).await.expect("database");
        let core =
            Core::new(store.clone(), Settings { hash_workers: 1, ..Settings::default() }).expect("core");
        core.add_developer("ping-dev", "ping-pw").await.expect("developer");
        let app = core.add_app("ping-dev", "Pings", None).await.expect("app");
        let app_id =
            queries::find_app_by_secret(store.writer(), &app.secret).await.expect("query").expect("app").id;
        let mut ids = Vec::new();
        for name in ["pinger-one", "pinger-two"] {
            let user = queries::insert_user(
                store.writer(),
                queries::NewUser {
                    app_id,
                    username: name.into(),
                    email: "p@example.com".into(),
                    password_hash: "not used".into(),
                    hwid: None,
                },
            )
            .await
            .map_err(|e| e.or_duplicate(CoreError::UsernameTaken))
            .expect("user");
            ids.push(user.id);
        }
        (store.writer().clone(), ids[0], ids[1])
    }

    #[tokio::test(flavor = "current_thread")]
    async fn pings_that_arrive_together_share_one_statement_and_each_get_their_own_total() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (db, one, two) = two_users(&dir).await;
        let writer = std::sync::Arc::new(PingWriter::new(db));
        // On one thread, all 150 calls enqueue before the writer task first runs.
        let calls: Vec<_> = (0..150)
            .map(|i| {
                let writer = writer.clone();
                tokio::spawn(async move { writer.count(if i % 3 == 0 { two } else { one }).await })
            })
            .collect();
        let mut totals_one = Vec::new();
        let mut totals_two = Vec::new();
        for (i, call) in calls.into_iter().enumerate() {
            let total = call.await.expect("task").expect("counted").expect("user exists");
            if i % 3 == 0 { totals_two.push(total) } else { totals_one.push(total) }
        }
        totals_one.sort_unstable();
        totals_two.sort_unstable();
        assert_eq!(totals_one, (1..=100).collect::<Vec<_>>(), "every ping its own total, none lost");
        assert_eq!(totals_two, (1..=50).collect::<Vec<_>>());
        assert_eq!(writer.stats().pings(), 150);
        assert_eq!(writer.stats().batches(), 1, "one statement for pings that arrived together");
        assert_eq!(writer.stats().largest(), 150);

        // A lone ping is written at once, on its own.
        assert_eq!(writer.count(one).await.expect("counted"), Some(101));
        assert_eq!(writer.stats().batches(), 2);
        // A user that does not exist is reported, not counted.
        assert_eq!(writer.count(i64::MAX).await.expect("answered"), None);
    }

    async fn revisions(db: &DatabaseConnection, user_id: i64) -> Revisions {
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                format!("SELECT u.rev AS ur, a.rev AS ar FROM users u JOIN apps a ON a.id = u.app_id WHERE u.id = {user_id}"),
            ))
            .await
            .expect("query")
            .expect("user");
        Revisions { user: row.try_get("", "ur").expect("ur"), app: row.try_get("", "ar").expect("ar") }
    }

    async fn exec(db: &DatabaseConnection, sql: &str) {
        db.execute_raw(Statement::from_string(db.get_database_backend(), sql.to_owned())).await.expect(sql);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_warm_ping_counts_only_while_the_revisions_it_expects_hold() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (db, one, two) = two_users(&dir).await;
        let writer = PingWriter::new(db.clone());
        let seen = revisions(&db, one).await;
        assert_eq!(writer.count_if(one, seen).await.expect("answered"), Some(1));
        // Pings write the counters only: the revisions stay.
        assert_eq!(revisions(&db, one).await, seen);

        // A HWID change moves the user's revision: the old expectation counts nothing.
        exec(&db, &format!("UPDATE users SET hwid = 'HW-NEW' WHERE id = {one}")).await;
        assert_eq!(writer.count_if(one, seen).await.expect("answered"), None);
        let now = revisions(&db, one).await;
        assert!(now.user > seen.user && now.app == seen.app, "{now:?} after {seen:?}");
        assert_eq!(writer.count_if(one, now).await.expect("answered"), Some(2));

        // Any change of the app moves the app's revision, for every user of it.
        exec(&db, "UPDATE apps SET online = online").await;
        assert_eq!(writer.count_if(one, now).await.expect("answered"), None);
        let other = revisions(&db, two).await;
        assert!(other.app > now.app);

        // A licence given to, changed for or taken from a user moves that user's revision.
        let app_id: i64 = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                format!("SELECT app_id FROM users WHERE id = {two}"),
            ))
            .await
            .expect("query")
            .expect("row")
            .try_get("", "app_id")
            .expect("app_id");
        let mut last = other;
        for change in [
            format!(
                "INSERT INTO licences (app_id, licence_key, access, expire_time, created_at, user_id, redeemed, banned) \
                     VALUES ({app_id}, 'K-REV', 1, '2099-01-01 00:00:00+00:00', '2026-01-01 00:00:00+00:00', {two}, true, false)"
            ),
            "UPDATE licences SET banned = true WHERE licence_key = 'K-REV'".to_owned(),
            "DELETE FROM licences WHERE licence_key = 'K-REV'".to_owned(),
        ] {
            exec(&db, &change).await;
            let now = revisions(&db, two).await;
            assert!(now.user > last.user, "{change} left the revision at {now:?}");
            assert_eq!(writer.count_if(two, last).await.expect("answered"), None, "{change}");
            last = now;
        }
        assert_eq!(writer.count_if(two, last).await.expect("answered"), Some(1));
        // Unconditional pings count whatever the revisions.
        assert_eq!(writer.count(one).await.expect("answered"), Some(3));
    }

    #[test]
    fn one_statement_per_batch_with_one_bound_value() {
        let groups = [
            Group { user_id: 7, n: 2, expect: None },
            Group { user_id: 9, n: 1, expect: Some(Revisions { user: 4, app: 11 }) },
        ];
        let sql = batch_sql(DbBackend::Postgres, &groups);
        assert!(
            sql.starts_with("WITH v(id, n, ur, ar) AS (VALUES (7, 2, -1, -1),(9, 1, 4, 11)) UPDATE users"),
            "{sql}"
        );
        assert!(sql.contains("last_seen = $1"));
        assert!(postgres_batch_sql().contains("unnest($3::text::bigint[]"));
        assert_eq!(postgres_batch_values(&groups), ["{7,9}", "{2,1}", "{-1,4}", "{-1,11}"].map(String::from));
        assert!(batch_sql(DbBackend::Sqlite, &groups[..1]).contains("last_seen = ?"));
    }

    fn pings(of: &[(i64, Option<Revisions>)]) -> (Vec<Ping>, Vec<oneshot::Receiver<Answer>>) {
        of.iter()
            .map(|&(user_id, expect)| {
                let (reply, rx) = oneshot::channel();
                (Ping { user_id, expect, reply }, rx)
            })
            .unzip()
    }

    #[test]
    fn a_users_pings_in_one_batch_get_consecutive_totals() {
        let (mut batch, receivers) = pings(&[(5, None), (6, None), (5, None), (5, None)]);
        let mut carried = Vec::new();
        let counts = per_user(&mut batch, &mut carried);
        assert!(carried.is_empty());
        assert_eq!(
            counts,
            vec![Group { user_id: 5, n: 3, expect: None }, Group { user_id: 6, n: 1, expect: None }]
        );
        let totals = HashMap::from([(5, 103), (6, 1)]);
        answer(&mut batch, &counts, &totals);
        let got: Vec<Option<i64>> =
            receivers.into_iter().map(|mut rx| rx.try_recv().expect("answered").expect("ok")).collect();
        assert_eq!(got, vec![Some(101), Some(1), Some(102), Some(103)]);
    }

    #[test]
    fn a_ping_expecting_other_revisions_than_its_users_first_waits_for_the_next_batch() {
        let warm = Some(Revisions { user: 1, app: 1 });
        let newer = Some(Revisions { user: 2, app: 1 });
        let (mut batch, _receivers) = pings(&[(5, warm), (5, None), (6, None), (5, warm), (5, newer)]);
        let mut carried = Vec::new();
        let counts = per_user(&mut batch, &mut carried);
        assert_eq!(
            counts,
            vec![Group { user_id: 5, n: 2, expect: warm }, Group { user_id: 6, n: 1, expect: None }]
        );
        assert_eq!(batch.len(), 3);
        let held: Vec<_> = carried.iter().map(|p| (p.user_id, p.expect)).collect();
        assert_eq!(held, vec![(5, None), (5, newer)]);
    }
}
