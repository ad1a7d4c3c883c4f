//! The gateway's command line refuses impossible numbers at start: exit 2, one line naming the
//! flag, before anything listens.

use std::process::Command;

#[test]
fn impossible_numbers_are_refused_at_start() {
    let cases = [
        ("--max-upload-bytes", "0"),
        ("--max-upload-bytes", "18446744073709551615"),
        ("--core-timeout-ms", "0"),
        ("--core-timeout-ms", "99999999999"),
        ("--shutdown-grace-secs", "99999999"),
        ("--max-connections", "0"),
        ("--header-read-timeout-secs", "0"),
        ("--gateway-credential", "too-short-to-be-a-secret"),
    ];
    for (flag, value) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_http-gateway"))
            .args(["--listen", "127.0.0.1:0", flag, value])
            .env_remove("RUST_LOG")
            .output()
            .expect("run the gateway");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(flag), "the refusal names {flag}: {stderr}");
        if flag == "--gateway-credential" {
            assert!(!stderr.contains(value), "a refused secret is not echoed: {stderr}");
        }
    }
}
