//! The gateway on its own, with nothing listening where the core should be: everything it
//! decides by itself still answers per the contract, and the rest answers `unavailable` quickly.

use std::time::{Duration, Instant};

use http_gateway::{Gateway, GatewayConfig};
use reqwest::{Client, Response, StatusCode};
use tokio::sync::oneshot;

struct Running {
    base: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

async fn start() -> Running {
    // Port 1 on loopback: connection refused.
    let gateway = Gateway::build(GatewayConfig::local("http://127.0.0.1:1"))
        .await
        .expect("gateway builds without a core");
    let base = format!("http://{}", gateway.local_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        gateway
            .run_until_stopped(async {
                let _ = stopped.await;
            })
            .await
            .expect("gateway runs");
    });
    Running { base, stop: Some(stop), task }
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("gateway stops promptly")
            .expect("gateway task");
    }
}

async fn expect_error(response: Response, status: StatusCode, code: &str) -> serde_json::Value {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["content-type"], "application/json; charset=utf-8");
    assert!(response.headers().get("x-response-token").is_none());
    let body: serde_json::Value =
        serde_json::from_slice(&response.bytes().await.expect("body")).expect("json");
    assert_eq!(body["status"], code, "{body}");
    assert!(body["message"].is_string(), "{body}");
    assert!(body.get("token").is_none(), "{body}");
    body
}

fn form_post(client: &Client, url: String, body: &'static str) -> reqwest::RequestBuilder {
    client.post(url).header("content-type", "application/x-www-form-urlencoded").body(body)
}

#[tokio::test]
async fn answers_by_itself_while_the_core_is_down() {
    let gateway = start().await;
    let client = Client::new();

    // The core is down: unavailable, fast.
    let started = Instant::now();
    let response = form_post(
        &client,
        gateway.url("/api/action.php?action=login"),
        "username=bob&password=pw&app_secret=s&hwid=h",
    )
    .send()
    .await
    .expect("request");
    expect_error(response, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());

    let response = form_post(
        &client,
        gateway.url("/api/admin.php"),
        "action=get_app_data&developer_username=d&develoer_password=p&app_secret=s",
    )
    .send()
    .await
    .expect("request");
    expect_error(response, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;

    // Methods and paths.
    for path in ["/api/action.php", "/api/admin.php?action=get_app_data"] {
        let response = client.get(gateway.url(path)).send().await.expect("request");
        expect_error(response, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
        let response = client.put(gateway.url(path)).send().await.expect("request");
        expect_error(response, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    }
    for path in ["/", "/api/other.php", "/api/action.php/x", "/API/action.php"] {
        let response = client.get(gateway.url(path)).send().await.expect("request");
        expect_error(response, StatusCode::NOT_FOUND, "not_found").await;
        let response = client.post(gateway.url(path)).send().await.expect("request");
        expect_error(response, StatusCode::NOT_FOUND, "not_found").await;
    }

    // Actions.
    for (path, body) in [
        ("/api/action.php", "username=bob"),
        ("/api/action.php?action=", "username=bob"),
        ("/api/action.php?action=fly", "action=login"),
        ("/api/action.php", "action=get_app_data"),
        ("/api/admin.php?action=login", ""),
        ("/api/admin.php", "action=upload_file"),
    ] {
        let response = form_post(&client, gateway.url(path), body).send().await.expect("request");
        expect_error(response, StatusCode::BAD_REQUEST, "unknown_action").await;
    }

    // Oversize bodies, declared and chunked.
    let big = "x=".to_string() + &"a".repeat(64 * 1024);
    let response = client
        .post(gateway.url("/api/action.php?action=login"))
        .body(big.clone())
        .send()
        .await
        .expect("request");
    expect_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    let chunks = futures_util::stream::iter((0..20).map(|_| Ok::<_, std::io::Error>(vec![b'a'; 8 * 1024])));
    let response = client
        .post(gateway.url("/api/action.php?action=login"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("request");
    expect_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    // Exactly 64 KiB is allowed (and then fails on the core being down).
    let exact = "x=".to_string() + &"a".repeat(64 * 1024 - 2);
    let response =
        client.post(gateway.url("/api/action.php?action=login")).body(exact).send().await.expect("request");
    expect_error(response, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;

    // Fields the gateway itself must parse are judged before the core is asked.
    for (body, code, field) in [
        (
            "action=create_licences&amount=abc&access=1&expire_date=2030-01-01+00:00:00",
            "invalid_field",
            "amount",
        ),
        (
            "action=create_licences&amount=-1&access=1&expire_date=2030-01-01+00:00:00",
            "invalid_field",
            "amount",
        ),
        ("action=create_licences&amount=5&access=1", "missing_field", "expire_date"),
        ("action=delete_user", "missing_field", "user_id"),
        ("action=reset_hwid&user_id=x", "invalid_field", "user_id"),
        ("action=change_status&status=2", "invalid_field", "status"),
    ] {
        let response = form_post(&client, gateway.url("/api/admin.php"), body).send().await.expect("request");
        let json = expect_error(response, StatusCode::BAD_REQUEST, code).await;
        assert!(json["message"].as_str().unwrap().contains(field), "{json}");
    }

    // upload_file without a multipart body has no `file`.
    let response =
        form_post(&client, gateway.url("/api/admin.php?action=upload_file"), "developer_username=d")
            .send()
            .await
            .expect("request");
    let json = expect_error(response, StatusCode::BAD_REQUEST, "missing_field").await;
    assert!(json["message"].as_str().unwrap().contains("file"), "{json}");

    // A multipart upload whose core is down.
    let form = reqwest::multipart::Form::new()
        .text("developer_username", "d")
        .text("develoer_password", "p")
        .text("app_secret", "s")
        .part("file", reqwest::multipart::Part::bytes(vec![7u8; 300 * 1024]).file_name("app.bin"));
    let response = client
        .post(gateway.url("/api/admin.php?action=upload_file"))
        .multipart(form)
        .send()
        .await
        .expect("request");
    expect_error(response, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;

    gateway.stop().await;
}

#[tokio::test]
async fn upload_over_the_configured_maximum_is_refused() {
    let mut config = GatewayConfig::local("http://127.0.0.1:1");
    config.max_upload_bytes = 1024;
    let gateway = Gateway::build(config).await.expect("builds");
    let base = format!("http://{}", gateway.local_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(gateway.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let form = reqwest::multipart::Form::new()
        .text("developer_username", "d")
        .part("file", reqwest::multipart::Part::bytes(vec![0u8; 4096]).file_name("a.bin"));
    let response = Client::new()
        .post(format!("{base}/api/admin.php?action=upload_file"))
        .multipart(form)
        .send()
        .await
        .expect("request");
    expect_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    let _ = stop.send(());
    task.await.expect("task").expect("run");
}

#[tokio::test]
async fn a_taken_port_is_a_startup_error() {
    let first = Gateway::build(GatewayConfig::local("http://127.0.0.1:1")).await.expect("first binds");
    let mut config = GatewayConfig::local("http://127.0.0.1:1");
    config.listen = first.local_addr();
    let error = match Gateway::build(config).await {
        Ok(_) => panic!("second bind on the same port succeeded"),
        Err(error) => error,
    };
    assert!(error.to_string().contains("cannot listen on"), "{error}");

    let mut config = GatewayConfig::local("http://127.0.0.1:1");
    config.core_urls = vec!["ftp://core".into()];
    assert!(Gateway::build(config).await.is_err());

    let mut config = GatewayConfig::local("http://127.0.0.1:1");
    config.core_urls = (0..2000).map(|port| format!("http://127.0.0.1:{}", port + 1)).collect();
    assert!(Gateway::build(config).await.is_err());
}
