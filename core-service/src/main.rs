#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    licensing::allocator::purge_freed_memory_at_once();
    let cli = core_service::config::Cli::parse();
    // The one-shot commands print JSON on stdout; keep stderr for problems.
    let default_level = match cli.command {
        core_service::config::Command::Serve(_) => "info",
        _ => "warn",
    };
    core_service::telemetry::init(default_level, cli.log_format);
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(core_service::cli::run(cli)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::from(1)
        }
    }
}
