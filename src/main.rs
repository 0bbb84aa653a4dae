//! The `synclog` command. See `synclog --help`.

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    limit_malloc_arenas();
    let mut out = cli::out::Out::stdio();
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        // --help and --version are "errors" that print to stdout and exit 0.
        Err(e) => return ExitCode::from(parse_error(&e)),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SYNCLOG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        // Its internal-error report is an eprintln!, which panics when stderr is full.
        .log_internal_errors(false)
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
            out.stderr_line("error", format_args!("cannot start the async runtime: {e}"));
            return ExitCode::from(out.finish(cli::exit::STORAGE));
        }
    };
    let code = match runtime.block_on(cli::run(args, &mut out)) {
        Ok(code) => code,
        Err(e) => {
            out.stderr_line("error", &e);
            if let Some(hint) = cli::exit::hint(&e) {
                out.stderr_line("hint", hint);
            }
            cli::exit::code_for(&e)
        }
    };
    report_peak_rss();
    ExitCode::from(out.finish(code))
}

/// For `synclog bench`, which times synclog processes: with `SYNCLOG_REPORT_PEAK_RSS` set,
/// the process's own peak resident memory (`VmHWM`, Linux) as a last stderr line. The
/// spawner cannot measure it: on Linux a child's `ru_maxrss` starts at the spawner's own
/// peak, the child sharing its memory until exec.
fn report_peak_rss() {
    if std::env::var_os(synclog::bench::PEAK_RSS_ENV).is_none() {
        return;
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm = status.lines().find_map(|l| l.strip_prefix("VmHWM:"));
    if let Some(kib) = hwm.and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok()) {
        use std::io::Write as _;
        // A measurement aid: if stderr cannot take it, the bench falls back to wait4's.
        let _ = writeln!(std::io::stderr(), "{} {kib}", synclog::bench::PEAK_RSS_LINE);
    }
}

/// Prints clap's answer to bad arguments, `--help` or `--version`; its exit code, or
/// [`cli::exit::STORAGE`] when help or the version could not be written.
fn parse_error(e: &clap::Error) -> u8 {
    let code = u8::try_from(e.exit_code()).unwrap_or(cli::exit::USAGE);
    match e.print() {
        Err(_) if code == cli::exit::OK => cli::exit::STORAGE,
        _ => code,
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
