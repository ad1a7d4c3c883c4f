//! Calling the core over gRPC from Rust with the generated client of this crate: the app's data,
//! then its first page of licences, as a developer identified by an API token.
//!
//! ```sh
//! CORE_URL=http://127.0.0.1:50051 APP_SECRET=... API_TOKEN=... cargo run -q --example grpc_client
//! ```
//!
//! Any gRPC client works the same way: the core serves reflection, so tools that read it need no
//! `.proto` file; others compile `proto/licensing/v1/licensing.proto`.

use std::process::ExitCode;

use licensing::v1::{
    AppScope, GetAppRequest, ListLicencesRequest, developer_service_client::DeveloperServiceClient,
};
use tonic::{Request, metadata::MetadataValue};

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("set {name}"))
}

/// A request carrying the API token as a bearer credential, so the scope needs no password.
fn authorised<T>(message: T, token: &str) -> Result<Request<T>, String> {
    let mut request = Request::new(message);
    let value = MetadataValue::try_from(format!("Bearer {token}"))
        .map_err(|_| "API_TOKEN holds characters a header cannot carry".to_owned())?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

async fn run() -> Result<(), String> {
    let url = std::env::var("CORE_URL").unwrap_or_else(|_| "http://127.0.0.1:50051".into());
    let secret = env("APP_SECRET")?;
    let token = env("API_TOKEN")?;
    let mut developer = DeveloperServiceClient::connect(url.clone())
        .await
        .map_err(|e| format!("cannot reach the core at {url}: {e}"))?;
    let scope = || Some(AppScope { app_secret: secret.clone(), ..Default::default() });

    let app = developer
        .get_app(authorised(GetAppRequest { scope: scope() }, &token)?)
        .await
        .map_err(|status| format!("GetApp: {:?}: {}", status.code(), status.message()))?
        .into_inner();
    println!("app {:?}, version {}, online {}", app.name, app.version.as_deref().unwrap_or("-"), app.online);

    let page = developer
        .list_licences(authorised(ListLicencesRequest { scope: scope(), ..Default::default() }, &token)?)
        .await
        .map_err(|status| format!("ListLicences: {:?}: {}", status.code(), status.message()))?
        .into_inner();
    println!("{} licence(s) on the first page", page.licences.len());
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
