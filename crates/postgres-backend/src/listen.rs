//! Hearing of commits, for [`synclog_core::LogStore::commit_watch`]: this process's own
//! through the store's [`CommitSignal`] (the writer hands over each acknowledged commit's
//! records, and signals imports and repairs), other processes' through PostgreSQL's
//! LISTEN/NOTIFY.
//!
//! Every statement that inserts records (`Sql::insert`, `Sql::import`) also calls
//! `pg_notify(<schema>, <largest id inserted>)`: no extra statement and no extra round
//! trip, and the server delivers it at commit (never for a rolled-back transaction). A
//! [`Listener`] connection, opened by the first watch, runs `LISTEN "<schema>"` and drives
//! its connection with `poll_message`, raising the signal to each notified id. The watch's
//! shared task also asks for the last id, every second as a safety net, or every
//! [`synclog_core::follow::POLL`] when the listener could not connect; a later watch
//! opens a broken listener again.

use synclog_core::follow::CommitSignal;
use synclog_core::{LogId, Result};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, NoTls};

use crate::connect::{pg_err, Endpoint};
use crate::sql::quote;

/// A live listening connection.
struct Live {
    /// Kept so the connection stays open; dropping it ends the connection.
    _client: Client,
    /// Drives the connection and hands notifications to the signal.
    task: JoinHandle<()>,
}

/// The listening connection of one store, opened lazily.
pub(crate) struct Listener {
    endpoint: Endpoint,
    channel: String,
    signal: CommitSignal,
    live: Mutex<Option<Live>>,
}

impl Listener {
    /// A listener for `channel` on `endpoint` (nothing is opened yet).
    pub(crate) fn new(mut endpoint: Endpoint, channel: String, signal: CommitSignal) -> Listener {
        endpoint
            .config
            .application_name(format!("synclog-listener:{channel}"));
        Listener {
            endpoint,
            channel,
            signal,
            live: Mutex::new(None),
        }
    }

    /// Makes sure a connection is listening: when this returns `Ok`, every commit made
    /// from now on raises the signal.
    pub(crate) async fn ensure(&self) -> Result<()> {
        let mut live = self.live.lock().await;
        if live.as_ref().is_some_and(|l| !l.task.is_finished()) {
            return Ok(());
        }
        *live = None;
        let e = &self.endpoint;
        let (client, mut conn) = tokio::time::timeout(e.connect_timeout, e.config.connect(NoTls))
            .await
            .map_err(|_| {
                synclog_core::Error::io(
                    format!("connecting the listener to {}", e.store),
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "the server at {} did not answer within {:?}",
                            e.server, e.connect_timeout
                        ),
                    ),
                )
            })?
            .map_err(|err| pg_err(&e.store, "connecting the listener to", err))?;
        let signal = self.signal.clone();
        let task = tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        if let Some(id) = n.payload().parse::<u64>().ok().and_then(LogId::new) {
                            signal.committed(id);
                        }
                    }
                    Some(Ok(_)) => {}
                    // The connection broke or ended: the next wait opens another.
                    Some(Err(_)) | None => return,
                }
            }
        });
        if let Err(err) = client
            .batch_execute(&format!("LISTEN {}", quote(&self.channel)))
            .await
        {
            task.abort();
            return Err(pg_err(&e.store, "listening for commits to", err));
        }
        *live = Some(Live {
            _client: client,
            task,
        });
        Ok(())
    }

    /// Closes the connection (if open): the client is dropped, so the connection task
    /// sends Terminate and ends.
    pub(crate) async fn close(&self) {
        let live = self.live.lock().await.take();
        if let Some(Live { _client, mut task }) = live {
            drop(_client);
            // The task ends once the connection has said goodbye; a server that does not
            // answer within a second does not keep it alive.
            if tokio::time::timeout(std::time::Duration::from_secs(1), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}
