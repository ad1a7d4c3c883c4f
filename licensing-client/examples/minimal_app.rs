//! A minimal licensed app: log in with the machine's HWID, download the app's binary, then send
//! a heartbeat every minute, running on the offline lease while the service is unreachable and
//! stopping when the service refuses or the lease is over.
//!
//! ```sh
//! LICENSING_API_URL=http://127.0.0.1:8080/api APP_SECRET=… APP_PUBLIC_KEYS='CuQv3C8N…=' \
//! LICENSING_USERNAME=bob LICENSING_PASSWORD=hunter22 HWID=HWID-1 \
//!     cargo run -p licensing-client --example minimal_app
//! ```
//!
//! `APP_PUBLIC_KEYS` takes several keys separated by commas (the current and the next one during
//! a key rotation). Optional: `HWID` (default: `/etc/machine-id`), `DOWNLOAD_TO` (default
//! `app.bin`), `LEASE_FILE` (default `lease.jwt`), `HEARTBEAT_SECS` (default 60), `HEARTBEATS`
//! (stop after that many; default: run until stopped).

use std::{process::ExitCode, time::Duration};

use licensing_client::{Client, Credentials, Error, Session};

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("set {name}"))
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn hwid() -> String {
    std::env::var("HWID").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| {
        std::fs::read_to_string("/etc/machine-id").map(|id| id.trim().to_owned()).unwrap_or_default()
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let client = Client::builder(env("LICENSING_API_URL")?)
        .app_secret(env("APP_SECRET")?)
        .public_keys(env("APP_PUBLIC_KEYS")?.split(',').map(str::trim).filter(|k| !k.is_empty()))
        .build()
        .map_err(|e| e.to_string())?;
    let me = Credentials::new(env("LICENSING_USERNAME")?, env("LICENSING_PASSWORD")?).with_hwid(hwid());
    let lease_file = env_or("LEASE_FILE", "lease.jwt");

    // Log in; when the service cannot be reached, a lease kept from an earlier run will do.
    match client.login(&me).await {
        Ok(login) if login.licence_active() => {
            println!("logged in as {}; licence level {:?}", me.username(), login.claims.lvl);
            if let Some(lease) = client.lease() {
                // Kept for the next start, should the service be unreachable then.
                let _ = tokio::fs::write(&lease_file, lease.token()).await;
            }
            let target = env_or("DOWNLOAD_TO", "app.bin");
            match client.download_to_path(&me, &target).await {
                Ok(file) => println!("downloaded {target}: {} bytes, sha256 {}", file.size, file.sha256),
                Err(e) => eprintln!("download failed: {e}"),
            }
        }
        Ok(login) => return Err(format!("no active licence ({:?})", login.claims.lic)),
        Err(Error::Transport(e)) => {
            let saved = tokio::fs::read_to_string(&lease_file)
                .await
                .map_err(|_| format!("the service is unreachable ({e}) and no lease is kept"))?;
            let lease =
                client.restore_lease(&me, saved.trim()).map_err(|e| format!("no usable lease: {e}"))?;
            println!("offline: running on the lease until {:?}", lease.expires());
        }
        Err(e) => return Err(format!("login failed: {e}")),
    }

    // The heartbeat loop.
    let every = Duration::from_secs(env_or("HEARTBEAT_SECS", "60").parse().unwrap_or(60));
    let limit: Option<u64> = std::env::var("HEARTBEATS").ok().and_then(|n| n.parse().ok());
    let mut beats = 0u64;
    while limit.is_none_or(|limit| beats < limit) {
        match client.connect_or_lease(&me).await {
            Ok(Session::Online(beat)) => {
                println!("heartbeat {}", beat.total_pings);
                if let Some(lease) = client.lease() {
                    let _ = tokio::fs::write(&lease_file, lease.token()).await;
                }
            }
            Ok(Session::Offline(lease)) => println!("offline; allowed until {:?}", lease.expires()),
            Err(e) => return Err(format!("stopping: {e}")),
        }
        beats += 1;
        tokio::time::sleep(every).await;
    }
    Ok(())
}
