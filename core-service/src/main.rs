use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    core_service::telemetry::init();
    let cli = core_service::config::Cli::parse();
    core_service::cli::run(cli).await
}
