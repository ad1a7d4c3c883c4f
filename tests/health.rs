//! The gateway's probes against a real core: `/healthz` answers while the process runs; `/readyz`
//! follows the core's gRPC health, turning 503 when the core stops and 200 when it is back.

mod common;

use std::time::{Duration, Instant};

use common::{Backend, TestCore, gateway::*};

async fn get(gateway: &TestGateway, path: &str) -> (u16, serde_json::Value) {
    let reply = gateway.send(gateway.request(reqwest::Method::GET, path)).await;
    (reply.status, reply.json())
}

/// Polls `/readyz` until it answers `status`, for at most 10 s.
async fn readyz_becomes(gateway: &TestGateway, status: u16) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (got, body) = get(gateway, "/readyz").await;
        if got == status {
            return body;
        }
        assert!(Instant::now() < deadline, "/readyz stayed {got}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readiness_follows_the_core_down_and_back_up() {
    let core = TestCore::start(Backend::Sqlite).await;
    let addr = core.addr;
    let gateway = TestGateway::in_front_of(&core, &[]).await;

    assert_eq!(get(&gateway, "/healthz").await, (200, serde_json::json!({"status": "ok"})));
    assert_eq!(get(&gateway, "/readyz").await, (200, serde_json::json!({"status": "ready"})));

    core.stop().await;
    let body = readyz_becomes(&gateway, 503).await;
    assert_eq!(body["status"], "unavailable");
    // The process itself is still up.
    assert_eq!(get(&gateway, "/healthz").await.0, 200);

    let back = TestCore::start_with(Backend::Sqlite, |config| config.listen = addr).await;
    assert_eq!(readyz_becomes(&gateway, 200).await, serde_json::json!({"status": "ready"}));
    gateway.stop().await;
    back.stop().await;
}
