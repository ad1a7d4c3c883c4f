//! Nothing secret reaches a log line: a full scenario through the gateway and the core, both
//! in-process, logging at TRACE into a buffer that is then searched for every password, secret,
//! licence key, API token and private key the scenario used.

mod common;

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use base64::Engine;
use common::{Backend, TestCore};
use http_gateway::{Gateway, GatewayConfig};
use licensing::v1 as pb;
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

async fn post(http: &reqwest::Client, url: &str, form: &[(&str, &str)]) -> serde_json::Value {
    let r = http.post(url).form(form).send().await.expect("post");
    let bytes = r.bytes().await.expect("body");
    serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_scenario_at_trace_level_logs_no_secret() {
    let logs = Captured::default();
    tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::TRACE)
        .with_ansi(false)
        .with_writer(logs.clone())
        .try_init()
        .expect("the only subscriber of this test binary");

    let core = TestCore::start(Backend::Sqlite).await;
    let dev_password = "dev-Pa55word-xyzzy";
    core.core.add_developer("secretive", dev_password).await.expect("developer");
    let app = core.core.add_app("secretive", "Quiet", Some("1.0")).await.expect("app");
    let gateway = Gateway::build(GatewayConfig::local(&core.url())).await.expect("gateway");
    let base = format!("http://{}", gateway.local_addr());
    tokio::spawn(gateway.run_until_stopped(std::future::pending()));
    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    let action = format!("{base}/api/action.php");
    let admin = format!("{base}/api/admin.php");

    let mut secret = app.secret.clone();
    let mut secrets_used: Vec<String> = vec![dev_password.into(), app.secret.clone()];
    let dev = |action: &str, secret: &str, extra: &[(&str, &str)]| {
        let mut form: Vec<(String, String)> = vec![
            ("developer_username".into(), "secretive".into()),
            ("develoer_password".into(), dev_password.into()),
            ("app_secret".into(), secret.into()),
        ];
        form.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        (format!("{admin}?action={action}"), form)
    };
    let send = |(url, form): (String, Vec<(String, String)>)| {
        let http = http.clone();
        async move {
            let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            post(&http, &url, &pairs).await
        }
    };

    let keys = send(dev(
        "create_licences",
        &secret,
        &[("amount", "3"), ("access", "4"), ("expire_date", "2099-01-01 00:00:00")],
    ))
    .await;
    let keys: Vec<String> =
        keys.as_array().expect("keys").iter().map(|k| k.as_str().expect("key").to_owned()).collect();
    secrets_used.extend(keys.iter().cloned());
    let user_password = "user-Pa55word-plugh";
    secrets_used.push(user_password.into());

    let r = post(
        &http,
        &format!("{action}?action=register"),
        &[
            ("username", "quiet-user"),
            ("email", "q@example.com"),
            ("password", user_password),
            ("hwid", "HW-Q"),
            ("app_secret", &secret),
            ("licence", &keys[0]),
        ],
    )
    .await;
    assert_eq!(r["status"], "success");
    for act in ["login", "connect"] {
        let r = post(
            &http,
            &format!("{action}?action={act}"),
            &[
                ("username", "quiet-user"),
                ("password", user_password),
                ("hwid", "HW-Q"),
                ("app_secret", &secret),
            ],
        )
        .await;
        assert_eq!(r["status"], "success", "{act}");
    }
    let r = post(
        &http,
        &format!("{action}?action=redeem"),
        &[
            ("username", "quiet-user"),
            ("password", user_password),
            ("hwid", "HW-Q"),
            ("app_secret", &secret),
            ("licence", &keys[1].to_lowercase()),
        ],
    )
    .await;
    assert_eq!(r["status"], "success");
    // Failures are logged too: they must not echo what was sent.
    let wrong_password = "wrong-Pa55word-frotz";
    secrets_used.push(wrong_password.into());
    let r = post(
        &http,
        &format!("{action}?action=login"),
        &[("username", "quiet-user"), ("password", wrong_password), ("app_secret", &secret)],
    )
    .await;
    assert_eq!(r["status"], "invalid_credentials");
    let wrong_secret = "f".repeat(64);
    secrets_used.push(wrong_secret.clone());
    post(
        &http,
        &format!("{action}?action=login"),
        &[("username", "quiet-user"), ("password", user_password), ("app_secret", &wrong_secret)],
    )
    .await;
    let r = post(
        &http,
        &format!("{action}?action=register"),
        &[
            ("username", "other-user"),
            ("email", "o@example.com"),
            ("password", user_password),
            ("app_secret", &secret),
            ("licence", &keys[0]),
        ],
    )
    .await;
    assert_eq!(r["status"], "licence_used");

    for (act, extra) in [
        ("get_app_data", vec![]),
        ("get_licences", vec![]),
        ("get_users", vec![]),
        ("ban_licence", vec![("licence_key", keys[1].as_str())]),
        ("unban_licence", vec![("licence_key", keys[1].as_str())]),
        ("delete_licence", vec![("licence_key", keys[2].as_str())]),
        ("change_version", vec![("version", "2.0")]),
    ] {
        let r = send(dev(act, &secret, &extra)).await;
        assert!(r.is_array() || r["status"] == "success", "{act}: {r}");
    }
    let r = send(dev("renew_secret", &secret, &[])).await;
    secret = r["secret"].as_str().expect("new secret").to_owned();
    secrets_used.push(secret.clone());
    let r = send(dev("get_app_data", &secret, &[])).await;
    assert_eq!(r["status"], "success");

    // A developer API token over gRPC.
    let token = core.core.add_token("secretive").await.expect("token").token;
    secrets_used.push(token.clone());
    let mut grpc = core.developer().await;
    let mut req = tonic::Request::new(pb::GetAppRequest {
        scope: Some(pb::AppScope { app_secret: secret.clone(), developer: None, origin: None, app_id: 0 }),
    });
    req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("header"));
    grpc.get_app(req).await.expect("token call");

    // The app's private key, in the forms it could appear.
    use core_service::storage::entities::app as app_entity;
    use sea_orm::EntityTrait;
    let row = app_entity::Entity::find().one(core.core.db()).await.expect("query").expect("app row");
    let private_hex: String = row.private_key.iter().map(|b| format!("{b:02x}")).collect();
    secrets_used.push(private_hex);
    secrets_used.push(base64::engine::general_purpose::STANDARD.encode(&row.private_key));
    secrets_used.push(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&row.private_key));

    core.stop().await;
    let text = String::from_utf8_lossy(&logs.0.lock().expect("lock")).to_string();
    if let Ok(path) = std::env::var("DUMP_LOGS") {
        std::fs::write(path, &text).ok();
    }
    assert!(
        text.lines().count() > 50,
        "TRACE logging captured the scenario ({} lines)",
        text.lines().count()
    );
    // Both programs' own lines are in the capture, not only the libraries'.
    assert!(text.contains("action=\"renew_secret\""), "gateway request lines captured");
    assert!(text.contains("app secret renewed"), "core lines captured");
    for s in &secrets_used {
        assert!(!text.contains(s.as_str()), "a secret reached the logs: {}…", &s[..6.min(s.len())]);
        // Also as it would appear URL-encoded in a logged body or query.
        let encoded: String = url_encode(s);
        assert!(!text.contains(&encoded), "a URL-encoded secret reached the logs");
    }
    // Keys in lower case, as a client may type them.
    for k in &keys {
        assert!(!text.to_uppercase().contains(k.as_str()), "a licence key reached the logs in some case");
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn debug_output_masks_secrets() {
    use core_service::domain::{AppSecret, LicenceKey, Password};
    let secret = AppSecret::parse("0123456789abcdef0123456789abcdef").expect("secret");
    assert!(!format!("{secret:?}").contains("0123456789abcdef0123456789abcdef"));
    let key = LicenceKey::parse("licence", "ABCDE-FGHIJ-KLMNO-PQRST-UVWXY").expect("key");
    assert!(!format!("{key:?}").contains("FGHIJ"));
    let pw = Password::parse("password", "hunter2hunter2").expect("pw");
    assert!(!format!("{pw:?}").contains("hunter2"));
}
