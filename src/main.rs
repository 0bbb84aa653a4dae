//! The `synclog` command. See `synclog --help`.

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    limit_malloc_arenas();
    let args = cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("SYNCLOG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // Few blocking threads: each one that allocates gets its own malloc arena, which keeps
    // its freed memory; with tokio's default (512) a 1M-record restore peaked anywhere from
    // 77 to 99 MiB.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(4)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("synclog: error: cannot start the async runtime: {e}");
            return ExitCode::from(cli::exit::STORAGE);
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("synclog: error: {e}");
            if let Some(hint) = cli::exit::hint(&e) {
                eprintln!("synclog: hint: {hint}");
            }
            ExitCode::from(cli::exit::code_for(&e))
        }
    }
}

/// glibc gives threads their own malloc arenas, each keeping the memory freed in it; with
/// records decoded on several threads, a 1M-record restore's peak varied by 20 MiB from run
/// to run. Two arenas bound that (glibc only; `MALLOC_ARENA_MAX` in the environment wins).
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only changes an allocator tuning parameter; called before any
        // other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}
