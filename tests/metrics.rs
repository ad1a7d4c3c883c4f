//! Both programs' Prometheus metrics, scraped before and after a known sequence of calls through
//! the real gateway and core: every count must move by exactly what the calls did.
//!
//! The metrics are process-wide, so this file holds one test, which runs the backends one after
//! the other and compares differences.

mod common;

use std::collections::HashMap;

use common::{Backend, gateway::*};
use reqwest::{
    Method,
    multipart::{Form, Part},
};

/// One scrape: each sample's value by its name and labels as written (labels sorted by name).
struct Scrape(HashMap<String, f64>);

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .map(|line| {
                let (key, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("sample line: {line}"));
                (key.to_owned(), value.parse::<f64>().unwrap_or_else(|_| panic!("sample value: {line}")))
            })
            .collect();
        Scrape(samples)
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut labels = labels.to_vec();
        labels.sort();
        let key = if labels.is_empty() {
            name.to_owned()
        } else {
            let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            format!("{name}{{{}}}", inner.join(","))
        };
        self.0.get(&key).copied().unwrap_or(0.0)
    }

    fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        let mut labels = labels.to_vec();
        labels.sort();
        let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        self.0.contains_key(&format!("{name}{{{}}}", inner.join(",")))
    }
}

/// Differences between two scrapes.
struct Delta<'a>(&'a Scrape, &'a Scrape);

impl Delta<'_> {
    fn of(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.1.get(name, labels) - self.0.get(name, labels)
    }
}

async fn scrape_gateway(stack: &TestStack) -> Scrape {
    let reply = stack.send(stack.request(Method::GET, "/metrics")).await;
    assert_eq!(reply.status, 200, "{reply}");
    assert_eq!(reply.content_type(), Some("text/plain; version=0.0.4; charset=utf-8"));
    Scrape::parse(&reply.text())
}

async fn scrape_core(stack: &TestStack) -> Scrape {
    let addr = stack.core.metrics_addr.expect("the core serves metrics");
    let reply = reqwest::get(format!("http://{addr}/metrics")).await.expect("core metrics answer");
    assert_eq!(reply.status(), 200);
    Scrape::parse(&reply.text().await.expect("metrics text"))
}

const ACTION_PATH: (&str, &str) = ("path", "/api/action.php");
const HEARTBEAT: (&str, &str) = ("method", "licensing.v1.ClientService/Heartbeat");
const LOGIN: (&str, &str) = ("method", "licensing.v1.ClientService/Login");

async fn counts_match_the_calls(backend: Backend) {
    let stack = TestStack::start_with(
        backend,
        |core| {
            core.metrics_listen = Some("127.0.0.1:0".parse().expect("addr"));
            // One failure per username and address: the second wrong password is refused by the
            // throttle.
            core.settings.throttle.per_username = 1;
        },
        |_| {},
    )
    .await;
    let fx = stack.fixture("dev-metrics").await;
    stack.register_ok(&fx, "counted", "").await;
    let key = stack.create_keys(&fx, 1, 1, &date_in(5)).await.remove(0);
    let (gw0, core0) = (scrape_gateway(&stack).await, scrape_core(&stack).await);

    // Known calls: a login (Argon2), three heartbeats (credential cache, then memory), two refused secrets,
    // a wrong password and then a throttled one, a licence listing, an upload and a download.
    expect_ok(&stack.client("login", user_form(&fx, "counted", "hwid=H1")).await);
    for _ in 0..3 {
        expect_ok(&stack.client("connect", user_form(&fx, "counted", "hwid=H1")).await);
    }
    for _ in 0..2 {
        let body = "username=counted&password=counted-pw&hwid=H1&app_secret=wrong";
        refused(&stack.client("connect", body).await, 401, "invalid_app_secret");
    }
    let wrong = format!("username=counted&password=nope&hwid=H1&app_secret={}", enc(&fx.secret));
    refused(&stack.client("login", wrong.clone()).await, 401, "invalid_credentials");
    refused(&stack.client("login", wrong).await, 429, "rate_limited");
    let listing = stack.admin(&fx, "get_licences", "").await;
    assert!(expect_ok(&listing).to_string().contains(&key));
    let file: Vec<u8> = (0..300_001u32).map(|i| (i % 251) as u8).collect();
    let form = Form::new()
        .text("developer_username", fx.developer.clone())
        .text("develoer_password", fx.password.clone())
        .text("app_secret", fx.secret.clone())
        .part("file", Part::bytes(file.clone()).file_name("app.bin"));
    let uploaded =
        stack.send(stack.request(Method::POST, &format!("{ADMIN}?action=upload_file")).multipart(form)).await;
    expect_ok(&uploaded);
    stack.register_ok(&fx, "payer", &format!("licence={key}")).await;
    let downloaded = stack.client("download", user_form(&fx, "payer", "")).await;
    assert_eq!(downloaded.status, 200, "{downloaded}");
    assert_eq!(downloaded.body.len(), file.len());

    let (gw1, core1) = (scrape_gateway(&stack).await, scrape_core(&stack).await);
    let gw = Delta(&gw0, &gw1);
    let requests = "licensing_gateway_requests_total";
    assert_eq!(gw.of(requests, &[ACTION_PATH, ("action", "login"), ("code", "success")]), 1.0);
    assert_eq!(gw.of(requests, &[ACTION_PATH, ("action", "connect"), ("code", "success")]), 3.0);
    assert_eq!(gw.of(requests, &[ACTION_PATH, ("action", "connect"), ("code", "invalid_app_secret")]), 2.0);
    assert_eq!(gw.of(requests, &[ACTION_PATH, ("action", "login"), ("code", "invalid_credentials")]), 1.0);
    assert_eq!(gw.of(requests, &[ACTION_PATH, ("action", "login"), ("code", "rate_limited")]), 1.0);
    assert_eq!(gw.of(requests, &[ADMIN_PATH, ("action", "get_licences"), ("code", "success")]), 1.0);
    assert_eq!(gw.of(requests, &[ADMIN_PATH, ("action", "upload_file"), ("code", "success")]), 1.0);
    assert_eq!(gw.of(requests, &[ACTION_PATH, ("action", "download"), ("code", "success")]), 1.0);
    let latency = "licensing_gateway_request_duration_seconds_count";
    assert_eq!(gw.of(latency, &[ACTION_PATH, ("action", "connect")]), 5.0);
    let streamed = "licensing_gateway_bytes_streamed_total";
    assert_eq!(gw.of(streamed, &[("kind", "listing")]), listing.body.len() as f64);
    assert_eq!(gw.of(streamed, &[("kind", "upload")]), file.len() as f64);
    assert_eq!(gw.of(streamed, &[("kind", "download")]), file.len() as f64);
    assert_eq!(gw1.get("licensing_gateway_core_calls_in_flight", &[]), 0.0);
    assert_eq!(gw.of("licensing_gateway_core_unavailable_total", &[]), 0.0);

    let core = Delta(&core0, &core1);
    let rpcs = "licensing_core_rpcs_total";
    assert_eq!(core.of(rpcs, &[HEARTBEAT, ("code", "Ok")]), 3.0);
    assert_eq!(core.of(rpcs, &[HEARTBEAT, ("code", "Unauthenticated")]), 2.0);
    assert_eq!(core.of(rpcs, &[LOGIN, ("code", "Ok")]), 1.0);
    assert_eq!(core.of(rpcs, &[LOGIN, ("code", "Unauthenticated")]), 1.0);
    assert_eq!(core.of(rpcs, &[LOGIN, ("code", "ResourceExhausted")]), 1.0);
    // The streamed calls count when their stream ends, with the status of its trailers.
    let licences = ("method", "licensing.v1.DeveloperService/StreamLicences");
    assert_eq!(core.of(rpcs, &[licences, ("code", "Ok")]), 1.0);
    let download = ("method", "licensing.v1.ClientService/Download");
    assert_eq!(core.of(rpcs, &[download, ("code", "Ok")]), 1.0);
    assert_eq!(core.of("licensing_core_rpc_duration_seconds_count", &[HEARTBEAT]), 5.0);
    let errors = "licensing_core_errors_total";
    assert_eq!(core.of(errors, &[("reason", "invalid_app_secret")]), 2.0);
    assert_eq!(core.of(errors, &[("reason", "invalid_credentials")]), 1.0);
    assert_eq!(core.of(errors, &[("reason", "rate_limited")]), 1.0);
    assert_eq!(core.of("licensing_core_throttle_refusals_total", &[]), 1.0);
    // Misses: the login, the wrong password, the new user's download. Hits: the first heartbeat
    // (the login bound the HWID, so its sign-in was not remembered) and the developer's two admin
    // calls (verified once before the first scrape). The other two heartbeats are answered from
    // the sign-in the first one left, without a password check of their own.
    let cache = "licensing_core_credential_cache_total";
    assert_eq!(core.of(cache, &[("result", "miss")]), 3.0);
    assert_eq!(core.of(cache, &[("result", "hit")]), 3.0);
    let warm = "licensing_core_warm_heartbeats_total";
    assert_eq!(core.of(warm, &[("result", "answered")]), 2.0);
    assert_eq!(core.of(warm, &[("result", "stale")]), 0.0);
    // Argon2: the three misses, and hashing the new user's password.
    assert_eq!(core.of("licensing_core_argon2_computations_total", &[]), 4.0);
    assert_eq!(core.of("licensing_core_argon2_rejections_total", &[]), 0.0);
    assert_eq!(core1.get("licensing_core_argon2_queue_depth", &[]), 0.0);
    // Heartbeats one after another: a batch each.
    assert_eq!(core.of("licensing_core_ping_batch_size_count", &[]), 3.0);
    assert_eq!(core.of("licensing_core_ping_batch_size_sum", &[]), 3.0);
    assert!(core1.has("licensing_core_db_connections", &[("pool", "writer"), ("state", "idle")]));
    assert_eq!(core1.get("licensing_core_db_transactions_waiting", &[]), 0.0);
    // Paths nobody serves are not labels of their own.
    assert!(!core1.0.keys().any(|k| k.contains("method=\"/")), "raw paths as labels");

    // A core that has gone away is counted as unavailable.
    let before = scrape_gateway(&stack).await;
    let TestStack { core, gw: gateway } = stack;
    core.stop().await;
    let reply = gateway.client("connect", user_form(&fx, "counted", "hwid=H1")).await;
    assert_eq!(reply.status, 503, "{reply}");
    let reply = gateway.send(gateway.request(Method::GET, "/metrics")).await;
    let after = Scrape::parse(&reply.text());
    assert_eq!(Delta(&before, &after).of("licensing_gateway_core_unavailable_total", &[]), 1.0);
    assert_eq!(
        Delta(&before, &after).of(requests, &[ACTION_PATH, ("action", "connect"), ("code", "unavailable")]),
        1.0
    );
    gateway.stop().await;
}

const ADMIN_PATH: (&str, &str) = ("path", "/api/admin.php");

/// An error answer with this HTTP status and code (signed or not: only the counts matter here).
fn refused(reply: &Http, http: u16, code: &str) {
    assert_eq!(reply.status, http, "{reply}");
    assert_eq!(reply.json()["status"], code, "{reply}");
}

/// Metrics are process-wide: the two backends' runs must not overlap, or each would count the
/// other's calls.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scraped_counts_match_the_calls_made_on_sqlite() {
    let _turn = ONE_AT_A_TIME.lock().await;
    counts_match_the_calls(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "PostgreSQL: ./scripts/test runs it when PostgreSQL answers"]
async fn scraped_counts_match_the_calls_made_on_postgres() {
    let _turn = ONE_AT_A_TIME.lock().await;
    counts_match_the_calls(Backend::Postgres).await;
}
