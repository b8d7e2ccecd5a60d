//! A small pool of read-only connections.
//!
//! WAL lets readers run beside the writer without blocking it. Each read runs
//! on a blocking-pool thread, on the first idle connection (or, when all are
//! busy, on the next one round-robin), inside a read transaction so that a
//! read made of several queries sees one snapshot.

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

    /// Runs `op` on a pooled connection off the async threads.
    pub(crate) async fn read<T, F>(self: &Arc<Self>, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Outcome<T> + Send + 'static,
    {
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || pool.run(op))
            .await
            .map_err(|e| Error::Internal(format!("a storage read failed: {e}")))?
    }

    fn run<T, F>(&self, op: F) -> Result<T>
    where
        F: FnOnce(&Connection) -> Outcome<T>,
    {
        let conn = self.take();
        // Dropping the transaction ends the snapshot; reads have nothing to commit.
        let tx = conn.unchecked_transaction().map_err(map_sqlite)?;
        op(&tx).map_err(Error::from)
    }

    fn take(&self) -> MutexGuard<'_, Connection> {
        for slot in &self.connections {
            match slot.try_lock() {
                Ok(guard) => return guard,
                // A panicking reader leaves its connection usable: its
                // transaction was rolled back when the guard unwound.
                Err(TryLockError::Poisoned(poisoned)) => return poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        match self.connections[index].lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}
