//! A small pool of read-only connections.
//!
//! WAL lets readers run beside the writer without blocking it. Every read runs
//! inside a read transaction, so that a read made of several queries sees one
//! snapshot. Two kinds of read:
//!
//! - [`Readers::point`]: an indexed lookup of one row or a handful (a user, a
//!   friendship, a conversation). It answers in microseconds from the page
//!   cache, far less than handing it to another thread costs (the wake-ups
//!   dominated the 1:1 send profile), so it runs right here on the calling
//!   thread when a connection is idle, and on the blocking pool otherwise.
//!   In WAL mode a reader waits only in rare moments (log recovery, another
//!   process holding an exclusive lock); such a wait then holds up this
//!   async worker, up to the busy timeout.
//! - [`Readers::scan`]: anything that may walk many rows (history pages,
//!   member lists) always runs on the blocking pool, so that it never holds
//!   up an async worker.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use qun_domain::{Error, Result};
use rusqlite::{Connection, OpenFlags};

use crate::error::{map_sqlite, Outcome};

/// Read-only connections shared by all readers.
#[derive(Debug)]
pub(crate) struct Readers {
    connections: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl Readers {
    /// Opens `count` (at least one) read-only connections to `path`.
    pub(crate) fn open(
        path: &Path,
        count: usize,
        busy_timeout: std::time::Duration,
    ) -> Result<Self> {
        let mut connections = Vec::with_capacity(count.max(1));
        for _ in 0..count.max(1) {
            let conn = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(map_sqlite)?;
            conn.busy_timeout(busy_timeout).map_err(map_sqlite)?;
            conn.set_prepared_statement_cache_capacity(64);
            connections.push(Mutex::new(conn));
        }
        Ok(Readers {
            connections,
            next: AtomicUsize::new(0),
        })
    }

    /// Runs a small indexed lookup: on this thread if a connection is idle,
    /// else on the blocking pool.
    pub(crate) async fn point<T, F>(self: &Arc<Self>, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Outcome<T> + Send + 'static,
    {
        let op = match self.try_run(op) {
            Ok(answer) => return answer,
            Err(op) => op,
        };
        self.scan(op).await
    }

    /// Runs `op` on a pooled connection off the async threads.
    pub(crate) async fn scan<T, F>(self: &Arc<Self>, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Outcome<T> + Send + 'static,
    {
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || Self::run_on(&pool.take(), op))
            .await
            .map_err(|e| Error::Internal(format!("a storage read failed: {e}")))?
    }

    fn run_on<T, F>(conn: &Connection, op: F) -> Result<T>
    where
        F: FnOnce(&Connection) -> Outcome<T>,
    {
        // Dropping the transaction ends the snapshot; reads have nothing to commit.
        let tx = conn.unchecked_transaction().map_err(map_sqlite)?;
        op(&tx).map_err(Error::from)
    }

    /// Runs `op` on an idle connection, or gives it back if none is idle.
    fn try_run<T, F>(&self, op: F) -> std::result::Result<Result<T>, F>
    where
        F: FnOnce(&Connection) -> Outcome<T>,
    {
        match self.try_take() {
            Some(conn) => Ok(Self::run_on(&conn, op)),
            None => Err(op),
        }
    }

    /// The first idle connection, if any.
    fn try_take(&self) -> Option<MutexGuard<'_, Connection>> {
        for slot in &self.connections {
            match slot.try_lock() {
                Ok(guard) => return Some(guard),
                // A panicking reader leaves its connection usable: its
                // transaction was rolled back when the guard unwound.
                Err(TryLockError::Poisoned(poisoned)) => return Some(poisoned.into_inner()),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        None
    }

    fn take(&self) -> MutexGuard<'_, Connection> {
        if let Some(guard) = self.try_take() {
            return guard;
        }
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        match self.connections[index].lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}
