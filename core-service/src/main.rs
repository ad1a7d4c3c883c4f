#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    purge_freed_memory_at_once();
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

/// mimalloc purges freed memory lazily, on a thread's next allocation after a delay. The threads
/// that free the most (Argon2 workers dropping 19 MiB, transfers dropping 256 KiB chunks) then
/// sleep, so the memory would stay resident; purging at once keeps an idle core small.
fn purge_freed_memory_at_once() {
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: sets one allocator option, before any other thread exists; an operator's
    // MIMALLOC_PURGE_DELAY still wins.
    unsafe { libmimalloc_sys::mi_option_set_default(MI_OPTION_PURGE_DELAY, 0) };
}
