//! `synclog serve`: the store over HTTP (crates/server).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use synclog::Result;
use synclog_server::{Access, Config, Token};

use super::open::{open, Opened};
use super::out::Out;
use super::{exit, StoreArgs};

/// The environment variables a token may come from instead of a file.
pub const TOKEN_ENV: &str = "SYNCLOG_TOKEN";
/// The read-only token's variable.
pub const READ_TOKEN_ENV: &str = "SYNCLOG_READ_TOKEN";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on. Anything but loopback needs a token.
    #[arg(long, default_value = synclog_server::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// A file holding the token that may write and read (or set SYNCLOG_TOKEN). Never on
    /// the command line.
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// A file holding a token that may only read (or set SYNCLOG_READ_TOKEN).
    #[arg(long, value_name = "PATH")]
    read_token_file: Option<PathBuf>,
    /// Reads (API, dashboard, metrics) need no token; writes still do.
    #[arg(long)]
    public_read: bool,
    /// The largest request body, in bytes.
    #[arg(long, default_value_t = 4 << 20, value_name = "BYTES")]
    max_body: usize,
    /// Requests served at once (streams aside); more get 503 with Retry-After.
    #[arg(long, default_value_t = 512, value_name = "N")]
    max_concurrent: usize,
    /// Event streams open at once.
    #[arg(long, default_value_t = 4096, value_name = "N")]
    max_streams: usize,
    /// Connections open at once (streams included); more get 503 with Retry-After.
    #[arg(long, default_value_t = 8192, value_name = "N")]
    max_connections: usize,
    /// Verify the store in the background this often (30m, 6h, 1d); the outcome is in
    /// /metrics and /v1/health.
    #[arg(long, value_name = "DURATION", value_parser = super::runs::parse_duration)]
    verify_every: Option<Duration>,
}

fn token(file: &Option<PathBuf>, env: &str) -> Result<Option<Token>> {
    let bad = |reason: String| synclog::Error::invalid("token", reason);
    // Set but not text is an error, not "no token": that would serve without one.
    let from_env = match std::env::var(env) {
        Ok(text) => Some(text),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => return Err(bad(format!("{env} is not UTF-8 text"))),
    };
    match (file, from_env) {
        (Some(_), Some(_)) => Err(bad(format!("give a token file or {env}, not both"))),
        (Some(path), None) => Token::from_file(path).map(Some).map_err(bad),
        (None, Some(text)) => Token::new(&text)
            .map(Some)
            .map_err(|e| bad(format!("{env}: {e}"))),
        (None, None) => Ok(None),
    }
}

/// `synclog serve`: serves until Ctrl-C or SIGTERM, lets appends in flight finish, closes
/// the store.
pub async fn serve(stores: &StoreArgs, args: ServeArgs, out: &mut Out) -> Result<u8> {
    let access = Access {
        write: token(&args.token_file, TOKEN_ENV)?,
        read: token(&args.read_token_file, READ_TOKEN_ENV)?,
        public_read: args.public_read,
    };
    synclog_server::check_listen(args.listen, &access).map_err(|e| synclog::Error::invalid("listen", e))?;
    if args.max_concurrent == 0 || args.max_streams == 0 || args.max_body == 0 || args.max_connections == 0 {
        return Err(synclog::Error::invalid(
            "limits",
            "--max-body, --max-concurrent, --max-streams and --max-connections must be at least 1",
        ));
    }
    let signal = shutdown_signal()?;
    raise_open_file_limit();
    let opened = open(stores).await?;
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            let _ = opened.close().await;
            return Err(synclog::Error::Io {
                context: format!("cannot listen on {}", args.listen),
                source: e,
            });
        }
    };
    let addr = listener.local_addr().unwrap_or(args.listen);
    let (store, guarded) = match &opened {
        Opened::Guarded(g) => (opened.shared(), Some(g.clone())),
        Opened::Single(_) => (opened.shared(), None),
    };
    if !access.has_tokens() {
        out.stderr_line(
            "warning",
            "no token set: anyone who can reach this loopback address may write",
        );
    }
    out.stderr_line(
        "serving",
        format_args!(
            "{} on http://{addr} (dashboard /, API /v1, metrics /metrics)",
            store.describe()
        ),
    );
    let config = Config {
        access,
        max_body_bytes: args.max_body,
        max_concurrent: args.max_concurrent,
        max_streams: args.max_streams,
        max_connections: args.max_connections,
        verify_every: args.verify_every,
        ..Config::default()
    };
    let served = synclog_server::serve(listener, store, guarded, config, signal).await;
    let closed = opened.close().await;
    if let Err(e) = served {
        return Err(synclog::Error::Io {
            context: "the server stopped".into(),
            source: e,
        });
    }
    closed?;
    out.stderr_line("stopped", "every request answered, the store closed");
    Ok(exit::OK)
}

/// Raises the soft limit of open files to the hard one: every connection is a descriptor,
/// and a soft limit of 1,024 (a common default) would hold far fewer than
/// `--max-connections` (the server caps its limit to what fits, with a warning).
fn raise_open_file_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct they are given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Ctrl-C or SIGTERM, listened for from the moment this is called (not from the first
/// poll): a signal that comes while the store opens is not lost, nor does it kill the
/// process before the store is closed; the server then stops as soon as it starts.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let listen = |kind: SignalKind, name: &str| {
        signal(kind).map_err(|e| synclog::Error::Io {
            context: format!("cannot listen for {name}"),
            source: e,
        })
    };
    let mut interrupt = listen(SignalKind::interrupt(), "Ctrl-C")?;
    let mut terminate = listen(SignalKind::terminate(), "SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SIGTERM that arrives before the server starts waiting (while the store opens) is
    /// kept, not the end of the process: without the handler in place at once, the default
    /// action would kill this test.
    #[tokio::test]
    async fn a_sigterm_before_the_server_waits_is_kept_for_it() {
        let signal = shutdown_signal().unwrap();
        // SAFETY: raise only sends a signal to this process; the handler is in place.
        assert_eq!(unsafe { libc::raise(libc::SIGTERM) }, 0);
        tokio::time::timeout(Duration::from_secs(10), signal)
            .await
            .expect("the signal given before the wait ends it");
    }
}
