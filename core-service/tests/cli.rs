//! The operator's contract (shared/operations.md), checked against the real binary.

use std::{
    io::Write,
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

const BIN: &str = env!("CARGO_BIN_EXE_core-service");

struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        Sandbox { dir: tempfile::tempdir().expect("temp dir") }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .current_dir(self.dir.path())
            .env_remove("DATABASE_URL")
            .env_remove("DEVELOPER_PASSWORD")
            .env_remove("RUST_LOG");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run core-service")
    }
}

fn stdout_json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout.clone()).expect("utf-8");
    assert_eq!(text.lines().count(), 1, "one line of JSON: {text:?}");
    serde_json::from_str(text.trim()).expect("JSON")
}

fn one_error_line(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(err.trim().lines().count(), 1, "one line on stderr: {err:?}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn developer_add_prints_id_and_username_and_refuses_duplicates() {
    let sb = Sandbox::new();
    let first = sb.run(&["developer", "add", "--username", "alice", "--password", "s3cret!"]);
    assert_eq!(stdout_json(&first), serde_json::json!({"id": 1, "username": "alice"}));
    // The default database is a SQLite file in the working directory; creating it is said aloud.
    assert!(sb.dir.path().join("licensing.db").exists());
    let note = String::from_utf8_lossy(&first.stderr);
    assert!(note.contains("creating a new, empty database at licensing.db"), "{note}");

    let dup = sb.run(&["developer", "add", "--username", "alice", "--password", "x"]);
    assert_eq!(dup.status.code(), Some(1));
    // One line: the file exists now, so no note about creating it.
    assert!(one_error_line(&dup).contains("alice"));

    // Password from the environment, then from the prompt.
    let v = stdout_json(
        &sb.cmd(&["developer", "add", "--username", "bob"])
            .env("DEVELOPER_PASSWORD", "pw")
            .output()
            .expect("run"),
    );
    assert_eq!(v["username"], "bob");
    let mut child = sb
        .cmd(&["developer", "add", "--username", "carol"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child.stdin.take().expect("stdin").write_all(b"prompted-password\n").expect("write");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(stdout_json(&out)["id"], 3);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("prompted-password"));

    let bad = sb.run(&["developer", "add", "--username", "ab", "--password", "x"]);
    assert_eq!(bad.status.code(), Some(1));
    one_error_line(&bad);
    let usage = sb.run(&["developer", "add"]);
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn app_add_prints_the_get_app_data_shape() {
    let sb = Sandbox::new();
    stdout_json(&sb.run(&["developer", "add", "--username", "alice", "--password", "pw"]));
    let v =
        stdout_json(&sb.run(&["app", "add", "--developer", "alice", "--name", "My App", "--version", "1.2"]));
    let keys: Vec<&str> = v.as_object().expect("object").keys().map(String::as_str).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(sorted, ["appname", "id", "keys", "online", "public", "secret", "version"]);
    assert_eq!(v["keys"][0]["public"], v["public"]);
    assert_eq!(v["keys"][0]["state"], "signing");
    assert_eq!(v["keys"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["appname"], "My App");
    assert_eq!(v["online"], 1);
    assert_eq!(v["version"], "1.2");
    assert!(v["secret"].as_str().expect("secret").len() >= 32);
    use base64::Engine;
    let public =
        base64::engine::general_purpose::STANDARD.decode(v["public"].as_str().expect("public")).expect("b64");
    assert_eq!(public.len(), 32);

    let v = stdout_json(&sb.run(&["app", "add", "--developer", "alice", "--name", "No Version"]));
    assert_eq!(v["version"], serde_json::Value::Null);

    let unknown = sb.run(&["app", "add", "--developer", "nobody", "--name", "X"]);
    assert_eq!(unknown.status.code(), Some(1));
    one_error_line(&unknown);
    assert_eq!(sb.run(&["app", "add", "--name", "X"]).status.code(), Some(2));
}

#[test]
fn tokens_are_shown_once_and_revocable() {
    let sb = Sandbox::new();
    stdout_json(&sb.run(&["developer", "add", "--username", "alice", "--password", "pw"]));
    let created = stdout_json(&sb.run(&["token", "add", "--developer", "alice"]));
    let token = created["token"].as_str().expect("token").to_owned();
    let listed = String::from_utf8(sb.run(&["token", "list", "--developer", "alice"]).stdout).expect("utf-8");
    assert!(!listed.contains(&token), "list never shows a whole token");
    stdout_json(&sb.run(&["token", "revoke", "--developer", "alice", "--id", "1"]));
    let again = sb.run(&["token", "revoke", "--developer", "alice", "--id", "1"]);
    assert_eq!(again.status.code(), Some(1));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

#[test]
fn serve_fails_fast_and_clearly_on_a_taken_port_or_bad_database() {
    let sb = Sandbox::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let start = Instant::now();
    let out = sb.run(&["serve", "--listen", &addr]);
    assert!(!out.status.success());
    assert!(one_error_line(&out).contains("listen"));
    assert!(start.elapsed() < Duration::from_secs(10));

    let out = sb.run(&[
        "--database-url",
        "sqlite:///nonexistent-dir/sub/x.db?mode=rwc",
        "serve",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(!out.status.success());
    assert!(one_error_line(&out).contains("database"));

    let out = sb.run(&["serve", "--listen", "not-an-address"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn serve_stops_cleanly_on_sigterm() {
    let sb = Sandbox::new();
    let port = free_port();
    let mut child = sb
        .cmd(&["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "core did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert_eq!(status.code(), Some(0));
            break;
        }
        assert!(Instant::now() < deadline, "core did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_fails_within_seconds_when_postgres_is_unreachable() {
    let sb = Sandbox::new();
    let start = Instant::now();
    let out = sb.run(&[
        "--database-url",
        "postgres://app:hidden-pw@127.0.0.1:1/nothing",
        "serve",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = one_error_line(&out);
    assert!(err.contains("cannot open the database"), "{err}");
    assert!(!err.contains("hidden-pw"), "the password is not shown: {err}");
    assert!(start.elapsed() < Duration::from_secs(15), "took {:?}", start.elapsed());
}

#[test]
fn health_exits_0_for_a_serving_core_and_1_otherwise() {
    let sb = Sandbox::new();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    // Nothing listens yet: one clear line, exit 1, within the timeout.
    let start = Instant::now();
    let down = sb.run(&["health", "--url", &url, "--timeout-secs", "2"]);
    assert_eq!(down.status.code(), Some(1));
    assert!(one_error_line(&down).contains(&url));
    assert!(start.elapsed() < Duration::from_secs(10));

    let mut child = sb.cmd(&["serve", "--listen", &format!("127.0.0.1:{port}")]).spawn().expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "core did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
    let up = sb.run(&["health", "--url", &url]);
    assert_eq!(stdout_json(&up), serde_json::json!({"status": "serving"}));
    let _ = child.kill();
    let _ = child.wait();

    let bad = sb.run(&["health", "--url", "not a url"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(one_error_line(&bad).contains("invalid core URL"));
}

#[test]
fn app_add_gives_new_apps_the_configured_offline_grace() {
    use sea_orm::EntityTrait;
    let sb = Sandbox::new();
    stdout_json(&sb.run(&["developer", "add", "--username", "alice", "--password", "pw"]));
    let out = sb
        .cmd(&["app", "add", "--developer", "alice", "--name", "Short"])
        .env("CORE_DEFAULT_OFFLINE_GRACE_SECS", "600")
        .output()
        .expect("run");
    stdout_json(&out);
    stdout_json(&sb.run(&[
        "app",
        "add",
        "--developer",
        "alice",
        "--name",
        "Default",
        "--default-offline-grace-secs",
        "7200",
    ]));
    let url = format!("sqlite://{}?mode=ro", sb.dir.path().join("licensing.db").display());
    let graces = tokio::runtime::Runtime::new().expect("runtime").block_on(async {
        let db = sea_orm::Database::connect(url).await.expect("open");
        let apps = core_service::storage::entities::app::Entity::find().all(&db).await.expect("apps");
        apps.into_iter().map(|a| (a.name, a.offline_grace_secs)).collect::<Vec<_>>()
    });
    assert_eq!(graces, [("Short".to_owned(), 600), ("Default".to_owned(), 7200)]);
}

#[test]
fn impossible_numbers_are_refused_at_start() {
    let sb = Sandbox::new();
    let cases = [
        ("--throttle-username-limit", "0"),
        ("--throttle-address-limit", "0"),
        ("--throttle-window-secs", "0"),
        ("--throttle-window-secs", "18446744073709551615"),
        ("--throttle-ipv6-prefix", "0"),
        ("--throttle-ipv6-prefix", "129"),
        ("--request-timeout-secs", "0"),
        ("--shutdown-grace-secs", "99999999"),
        ("--credential-cache-secs", "18446744073709551615"),
        ("--max-upload-bytes", "0"),
        ("--default-offline-grace-secs", "999999999999"),
        ("--db-max-connections", "0"),
        ("--db-read-connections", "65"),
        ("--gateway-credential", "too-short-to-be-a-secret"),
    ];
    for (flag, value) in cases {
        let out = sb.run(&["serve", "--listen", "127.0.0.1:0", flag, value]);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {}", String::from_utf8_lossy(&out.stderr));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(flag), "the refusal names {flag}: {stderr}");
        if flag == "--gateway-credential" {
            assert!(!stderr.contains(value), "a refused secret is not echoed: {stderr}");
        }
        assert!(!sb.dir.path().join("licensing.db").exists(), "refused before touching the database");
    }
}

#[test]
fn app_keys_rotate_from_the_command_line() {
    let sb = Sandbox::new();
    stdout_json(&sb.run(&["developer", "add", "--username", "rita", "--password", "pw"]));
    let created = stdout_json(&sb.run(&["app", "add", "--developer", "rita", "--name", "Rotated"]));
    let id = created["id"].as_i64().expect("id").to_string();
    let first_kid = created["keys"][0]["kid"].as_str().expect("kid").to_owned();

    let listed = stdout_json(&sb.run(&["app", "list", "--developer", "rita"]));
    assert_eq!(
        listed,
        serde_json::json!([{"id": created["id"], "appname": "Rotated", "online": 1, "version": null, "public": created["public"]}]),
        "apps are listed without their secret"
    );

    let added = stdout_json(&sb.run(&["app", "add-key", "--app", &id]));
    assert_eq!(added["app"], created["id"]);
    let states: Vec<&str> =
        added["keys"].as_array().expect("keys").iter().filter_map(|k| k["state"].as_str()).collect();
    assert_eq!(states, ["signing", "next"]);
    let next_kid = added["keys"][1]["kid"].as_str().expect("kid").to_owned();

    let promoted = stdout_json(&sb.run(&["app", "promote-key", "--app", &id, "--kid", &next_kid]));
    assert_eq!(promoted["keys"][0]["state"], "previous");
    assert_eq!(promoted["keys"][1]["state"], "signing");

    let refused = sb.run(&["app", "retire-key", "--app", &id, "--kid", &next_kid]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(one_error_line(&refused).contains("promote another key"));

    let retired = stdout_json(&sb.run(&["app", "retire-key", "--app", &id, "--kid", &first_kid]));
    assert_eq!(retired["keys"].as_array().map(Vec::len), Some(1));
    assert_eq!(stdout_json(&sb.run(&["app", "keys", "--app", &id])), retired);

    let unknown = sb.run(&["app", "keys", "--app", "999"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(one_error_line(&unknown).contains("no app with that id"));
}

#[test]
fn a_key_encryption_key_seals_keys_and_is_needed_from_then_on() {
    let sb = Sandbox::new();
    let kek = sb.dir.path().join("kek");
    std::fs::write(&kek, "42".repeat(32)).expect("kek");
    let kek = kek.to_str().expect("path");
    stdout_json(&sb.run(&["developer", "add", "--username", "kim", "--password", "pw"]));
    let app = stdout_json(&sb.run(&[
        "--key-encryption-key-file",
        kek,
        "app",
        "add",
        "--developer",
        "kim",
        "--name",
        "K",
    ]));
    let id = app["id"].as_i64().expect("id").to_string();

    let without = sb.run(&["app", "add-key", "--app", &id]);
    assert_eq!(without.status.code(), Some(1));
    assert!(one_error_line(&without).contains("--key-encryption-key-file"));
    let with = stdout_json(&sb.run(&["app", "add-key", "--app", &id, "--key-encryption-key-file", kek]));
    assert_eq!(with["keys"].as_array().map(Vec::len), Some(2));

    // An unusable KEK file is a configuration mistake: refused before any work, exit 2.
    let bad = sb.dir.path().join("bad-kek");
    std::fs::write(&bad, "too short").expect("bad kek");
    for path in [bad.to_str().expect("path"), "/nonexistent/kek"] {
        let out = sb.run(&["--key-encryption-key-file", path, "app", "keys", "--app", &id]);
        assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(one_error_line(&out).contains("key-encryption key"));
    }
}
