//! The operator's commands. Each prints one line of JSON on success; a failure is one line on
//! stderr and exit status 1.

use std::{io::Write, process::ExitCode};

use crate::{
    config::{AppCommand, Cli, Command, DeveloperCommand, TokenCommand},
    domain::keyvault::KeyVault,
    service::{AppCreated, Core, Settings},
    startup::{Application, CoreConfig, shutdown_signal},
    storage,
};

pub async fn run(cli: Cli) -> ExitCode {
    // Half a TLS identity is bad usage (exit 2, like clap's own refusals), found before any work.
    if let Command::Serve(args) = &cli.command
        && let Err(message) = args.tls().and(args.gateway_credential())
    {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    let vault = match cli.key_vault() {
        Ok(vault) => vault,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    match execute(cli, vault).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
}

async fn execute(cli: Cli, vault: KeyVault) -> Result<(), String> {
    let db_config = cli.db_config();
    let grace = cli.default_offline_grace();
    let settings = Settings { default_offline_grace: grace, key_vault: vault.clone(), ..Settings::default() };
    match cli.command {
        Command::Health { url, timeout_secs } => {
            health(&url, std::time::Duration::from_secs(timeout_secs)).await
        }
        Command::Serve(args) => {
            let stop = shutdown_signal();
            let config = CoreConfig {
                listen: args.listen,
                db: db_config,
                settings: Settings { key_vault: vault, ..args.settings(grace) },
                shutdown_grace: std::time::Duration::from_secs(args.shutdown_grace_secs),
                tls: args.tls()?,
                tls_client_ca: args.tls_client_ca.clone(),
                metrics_listen: args.metrics_listen,
            };
            let app = Application::build(config).await.map_err(|e| e.to_string())?;
            app.run_until_stopped(stop).await.map_err(|e| e.to_string())
        }
        Command::Migrate => {
            storage::connect_and_migrate(&db_config).await.map_err(|e| e.to_string())?;
            print_json(&serde_json::json!({"migrated": true}))
        }
        Command::Developer(DeveloperCommand::Add { username, password }) => {
            let password = match password {
                Some(p) => p,
                None => prompt_password()?,
            };
            let core = open(&db_config, settings).await?;
            let dev = core.add_developer(&username, &password).await.map_err(|e| match e {
                crate::domain::CoreError::UsernameTaken => {
                    format!("a developer named {username:?} already exists")
                }
                other => other.to_string(),
            })?;
            print_json(&serde_json::json!({"id": dev.id, "username": dev.username}))
        }
        Command::App(AppCommand::Add { developer, name, version }) => {
            let core = open(&db_config, settings).await?;
            let app = core.add_app(&developer, &name, version.as_deref()).await.map_err(|e| e.to_string())?;
            print_json(&AppCreated::from(app))
        }
        Command::App(AppCommand::List { developer }) => {
            let core = open(&db_config, settings).await?;
            print_json(&core.list_apps(&developer).await.map_err(|e| e.to_string())?)
        }
        Command::App(AppCommand::Keys { app }) => {
            print_keys(app, open(&db_config, settings).await?.signing_keys(app).await)
        }
        Command::App(AppCommand::AddKey { app }) => {
            print_keys(app, open(&db_config, settings).await?.add_signing_key(app).await)
        }
        Command::App(AppCommand::PromoteKey { app, kid }) => {
            print_keys(app, open(&db_config, settings).await?.promote_signing_key(app, &kid).await)
        }
        Command::App(AppCommand::RetireKey { app, kid }) => {
            print_keys(app, open(&db_config, settings).await?.retire_signing_key(app, &kid).await)
        }
        Command::Token(TokenCommand::Add { developer }) => {
            let core = open(&db_config, settings).await?;
            let created = core.add_token(&developer).await.map_err(|e| e.to_string())?;
            print_json(&created)
        }
        Command::Token(TokenCommand::List { developer }) => {
            let core = open(&db_config, settings).await?;
            let tokens = core.list_tokens(&developer).await.map_err(|e| e.to_string())?;
            print_json(&tokens)
        }
        Command::Token(TokenCommand::Revoke { developer, id }) => {
            let core = open(&db_config, settings).await?;
            core.revoke_token(&developer, id).await.map_err(|e| e.to_string())?;
            print_json(&serde_json::json!({"id": id, "revoked": true}))
        }
    }
}

/// Checks a running core's overall gRPC health; prints `{"status":"serving"}` when it serves.
async fn health(url: &str, limit: std::time::Duration) -> Result<(), String> {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|e| format!("invalid core URL `{url}`: {e}"))?
        .connect_timeout(limit)
        .timeout(limit);
    let check = async {
        let channel = endpoint.connect().await.map_err(|e| format!("cannot reach the core at {url}: {e}"))?;
        let answer =
            HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await.map_err(
                |status| format!("the core at {url} did not answer its health check: {}", status.message()),
            )?;
        Ok::<_, String>(answer.into_inner().status())
    };
    match tokio::time::timeout(limit, check).await {
        Err(_) => Err(format!("the core at {url} did not answer within {} s", limit.as_secs())),
        Ok(Err(message)) => Err(message),
        Ok(Ok(ServingStatus::Serving)) => print_json(&serde_json::json!({"status": "serving"})),
        Ok(Ok(other)) => Err(format!("the core at {url} is not serving: {}", other.as_str_name())),
    }
}

async fn open(db_config: &storage::DbConfig, settings: Settings) -> Result<Core, String> {
    warn_if_new_sqlite_file(db_config);
    let db = storage::connect_and_migrate(db_config).await.map_err(|e| e.to_string())?;
    let core = Core::new(db, Settings { hash_workers: 1, ..settings }).map_err(|e| e.to_string())?;
    core.secure_keys_at_rest().await?;
    Ok(core)
}

/// A command run without the stack's `DATABASE_URL` would quietly create an empty database of its
/// own (by default `./licensing.db`), and what it adds would never show up in the running service.
fn warn_if_new_sqlite_file(db_config: &storage::DbConfig) {
    if let Some(path) = storage::sqlite_file(&db_config.url)
        && !path.exists()
    {
        eprintln!(
            "note: creating a new, empty database at {} (set DATABASE_URL to the one `serve` uses)",
            path.display()
        );
    }
}

fn print_keys(
    app: i64,
    keys: Result<Vec<crate::service::SigningKeyView>, crate::domain::CoreError>,
) -> Result<(), String> {
    let keys = keys.map_err(|e| e.to_string())?;
    print_json(&serde_json::json!({"app": app, "keys": keys}))
}

fn print_json(value: &impl serde::Serialize) -> Result<(), String> {
    let line = serde_json::to_string(value).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").map_err(|e| e.to_string())
}

fn prompt_password() -> Result<String, String> {
    eprint!("Developer password: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let read = {
        let _hidden = HiddenInput::on_terminal();
        std::io::stdin().read_line(&mut line)
    };
    read.map_err(|e| format!("cannot read the password: {e}"))?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        return Err("no password given (use --password, DEVELOPER_PASSWORD or the prompt)".into());
    }
    Ok(password)
}

/// Keeps a typed password off the screen: terminal echo is off while it lives. Uses `stty`, so
/// no terminal library is needed; where `stty` is missing the password shows, as before.
struct HiddenInput {
    hidden: bool,
}

impl HiddenInput {
    fn on_terminal() -> Self {
        use std::io::IsTerminal;
        let hidden = std::io::stdin().is_terminal() && stty("-echo");
        HiddenInput { hidden }
    }
}

impl Drop for HiddenInput {
    fn drop(&mut self) {
        if self.hidden {
            stty("echo");
            // The Enter that ended the password was not echoed either.
            eprintln!();
        }
    }
}

fn stty(setting: &str) -> bool {
    std::process::Command::new("stty")
        .arg(setting)
        .stdin(std::process::Stdio::inherit())
        .status()
        .is_ok_and(|status| status.success())
}
