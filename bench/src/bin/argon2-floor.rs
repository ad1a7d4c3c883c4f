//! The Argon2 floor: how many Argon2id verifications per second this machine can do at the stored
//! parameters (argon2's defaults: 19 MiB, 2 passes, 1 lane), one thread per core, each thread
//! reusing its memory blocks. No login can be faster than one of these.

use std::{
    hint::black_box,
    num::NonZeroUsize,
    thread,
    time::{Duration, Instant},
};

use argon2::{Argon2, Block};
use clap::Parser;

#[derive(Parser)]
#[command(about = "Argon2id verifications per second at the stored parameters, on every core")]
struct Args {
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    seconds: u64,
    /// Threads; default one per core.
    #[arg(long)]
    threads: Option<NonZeroUsize>,
}

fn main() {
    let args = Args::parse();
    let threads = args.threads.or_else(|| thread::available_parallelism().ok()).map_or(1, NonZeroUsize::get);
    let run_for = Duration::from_secs(args.seconds);
    let started = Instant::now();
    let workers: Vec<_> =
        (0..threads).map(|_| thread::spawn(move || verify_until(started + run_for))).collect();
    let done: u64 = workers.into_iter().map(|worker| worker.join().expect("a worker panicked")).sum();
    let elapsed = started.elapsed().as_secs_f64();
    let params = Argon2::default().params().clone();
    println!(
        "argon2-floor: threads={threads} m_cost={} t_cost={} p_cost={} verifications={done} seconds={elapsed:.2} per_second={:.1}",
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        done as f64 / elapsed
    );
}

/// Verifies one password over and over until `deadline`; returns how many verifications finished.
fn verify_until(deadline: Instant) -> u64 {
    let argon2 = Argon2::default();
    let mut blocks = vec![Block::new(); argon2.params().block_count()];
    let salt = *b"sixteen byte slt";
    let mut expected = [0u8; 32];
    argon2
        .hash_password_into_with_memory(b"bench-user-pw", &salt, &mut expected, &mut blocks)
        .expect("default parameters are valid");
    let mut count = 0;
    while Instant::now() < deadline {
        let mut out = [0u8; 32];
        argon2
            .hash_password_into_with_memory(black_box(b"bench-user-pw"), &salt, &mut out, &mut blocks)
            .expect("default parameters are valid");
        assert!(out == expected, "the same password must hash the same");
        count += 1;
    }
    count
}
