#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::{Parser, error::ErrorKind};
use http_gateway::{Cli, Gateway, GatewayConfig, startup};

fn main() -> ExitCode {
    licensing::allocator::purge_freed_memory_at_once();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) if matches!(error.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = error.print();
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            // Operators want one line, not clap's usage block.
            let text = error.to_string();
            let line = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("http-gateway: {}", line.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    let log_format = cli.log_format;
    let config = match GatewayConfig::try_from(cli) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("http-gateway: {error}");
            return ExitCode::from(2);
        }
    };
    licensing::telemetry::init("info", log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("http-gateway: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        let gateway = Gateway::build(config).await?;
        let (address, tls) = (gateway.local_addr(), gateway.is_tls());
        tracing::info!(%address, tls, "serving the legacy HTTP API");
        gateway.run_until_stopped(startup::shutdown_signal()).await
    });
    // Connections still open after the grace time must not hold the process up.
    runtime.shutdown_background();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("http-gateway: {error}");
            ExitCode::FAILURE
        }
    }
}
