//! A guarded SQLite + JSON-lines pair and a server on a loopback port, for the API and
//! browser tests.
#![allow(dead_code)] // each test binary uses part of it

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use synclog_core::guarded::{Guarded, GuardedOptions};
use synclog_core::LogStore;
use synclog_server::Config;

/// Opens (creating it the first time) the pair `p.db` + `b.jsonl` in `dir`.
pub async fn open_pair(dir: &Path) -> Arc<Guarded> {
    let primary: Arc<dyn LogStore> = Arc::new(synclog_sqlite::SqliteStore::open(dir.join("p.db")).unwrap());
    let backup: Arc<dyn LogStore> = Arc::new(synclog_json::JsonStore::open(dir.join("b.jsonl")).unwrap());
    Arc::new(
        Guarded::open(primary, backup, GuardedOptions::default())
            .await
            .unwrap(),
    )
}

/// `synclog_server::serve` on 127.0.0.1:0 over a pair, until [`Server::stop`].
pub struct Server {
    pub base: String,
    pub addr: std::net::SocketAddr,
    pub guarded: Arc<Guarded>,
    pub stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
    pub _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// A server over a new pair in a temporary folder.
    pub async fn start(config: Config) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let guarded = open_pair(dir.path()).await;
        let mut s = Server::serve(guarded, config).await;
        s._dir = Some(dir);
        s
    }

    /// A server with the default configuration over a new pair.
    pub async fn open() -> Server {
        Server::start(Config::default()).await
    }

    /// A server over `guarded`.
    pub async fn serve(guarded: Arc<Guarded>, config: Config) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let store: Arc<dyn LogStore> = guarded.clone();
        let task = tokio::spawn(synclog_server::serve(
            listener,
            store,
            Some(guarded.clone()),
            config,
            async {
                let _ = stopped.await;
            },
        ));
        Server {
            base: format!("http://{addr}"),
            addr,
            guarded,
            stop: Some(stop),
            task,
            _dir: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn count(&self) -> u64 {
        self.guarded.count(&Default::default()).await.unwrap()
    }

    /// Stops the server (within 10 s) and closes the pair.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("the server stops")
            .unwrap()
            .unwrap();
        self.guarded.close().await.unwrap();
    }
}
