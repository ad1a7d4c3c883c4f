use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = core_service::config::Cli::parse();
    // The one-shot commands print JSON on stdout; keep stderr for problems.
    let default_level = match cli.command {
        core_service::config::Command::Serve(_) => "info",
        _ => "warn",
    };
    core_service::telemetry::init(default_level);
    core_service::cli::run(cli).await
}
