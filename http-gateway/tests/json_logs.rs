//! `--log-format json`: the real binary writes one JSON object per line, and each request gets one
//! INFO line with its action, outcome code, latency and client address, and no field values.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

#[tokio::test]
async fn each_request_is_one_json_line_without_secrets() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_http-gateway"))
        .args(["--log-format", "json", "--listen", &format!("127.0.0.1:{port}")])
        // Nothing listens on port 1: every core call is `unavailable`, which is still a request.
        .args(["--core-url", "http://127.0.0.1:1", "--core-timeout-ms", "500"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the gateway");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "gateway did not start listening");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answer = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/api/action.php?action=login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("username=alice&password=very-secret-pw&app_secret=SECRET-VALUE-123&hwid=HW")
        .send()
        .await
        .expect("request");
    assert_eq!(answer.status().as_u16(), 503);
    let _ = child.kill();
    let stderr = child.stderr.take().expect("stderr");
    let lines: Vec<String> = BufReader::new(stderr).lines().map_while(Result::ok).collect();
    let _ = child.wait();

    let objects: Vec<serde_json::Value> = lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}")))
        .collect();
    let request = objects
        .iter()
        .find(|o| o["message"] == "request")
        .unwrap_or_else(|| panic!("no request line in {lines:?}"));
    assert_eq!(request["level"], "INFO");
    assert_eq!(request["path"], "/api/action.php");
    assert_eq!(request["action"], "login");
    assert_eq!(request["code"], "unavailable");
    assert_eq!(request["http"], 503);
    assert_eq!(request["address"], "127.0.0.1");
    assert!(request["latency_ms"].is_u64(), "{request}");
    let all = lines.join("\n");
    for secret in ["very-secret-pw", "SECRET-VALUE-123"] {
        assert!(!all.contains(secret), "a secret reached the log: {all}");
    }
}
