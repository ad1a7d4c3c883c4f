use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    pin_malloc_mmap_threshold();
    let cli = core_service::config::Cli::parse();
    // The one-shot commands print JSON on stdout; keep stderr for problems.
    let default_level = match cli.command {
        core_service::config::Command::Serve(_) => "info",
        _ => "warn",
    };
    core_service::telemetry::init(default_level);
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(core_service::cli::run(cli)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::from(1)
        }
    }
}

/// Binaries stream through in 256 KiB chunks. glibc raises its mmap threshold each time such a
/// block is freed, after which the chunks come from the heap arenas and fragment them: a 50 MiB
/// download then left the process at twice its steady size. A fixed threshold keeps every chunk
/// in its own mapping, returned to the OS on free.
fn pin_malloc_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator, and runs before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}
