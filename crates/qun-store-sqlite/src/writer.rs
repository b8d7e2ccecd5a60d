//! The single writer thread and its group commit.
//!
//! One thread owns the only read-write connection. Callers queue commands (a
//! closure plus a oneshot for the answer). The writer takes one command,
//! drains whatever else is already queued up to the batch limit, runs each
//! inside its own SAVEPOINT of ONE transaction, commits once and only then
//! answers everybody. A failing command rolls back its savepoint alone; a
//! failing COMMIT fails the whole batch, since none of it became durable. So
//! under load one fsync covers many messages, and a single writer makes the
//! "read the counter, then bump it" steps of a command race-free.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use qun_domain::{Error, Result};
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::error::{map_sqlite, Outcome};

/// How much batching the writer achieved since the store was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriterStats {
    /// Write commands executed (committed or not).
    pub commands: u64,
    /// Transactions committed; each covers one batch of commands.
    pub commits: u64,
}

/// Counters shared between the writer thread and the store.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    commands: AtomicU64,
    commits: AtomicU64,
}

impl Counters {
    /// A snapshot of the counters.
    pub(crate) fn snapshot(&self) -> WriterStats {
        WriterStats {
            commands: self.commands.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
        }
    }
}

/// A queued write: runs once on the writer's connection, answers after commit.
pub(crate) trait Job: Send {
    /// Runs the command inside the current savepoint; false if it failed and
    /// its savepoint must be rolled back.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Sends the answer: the command's own result, or `failure` when the
    /// batch as a whole did not become durable.
    fn answer(self: Box<Self>, failure: Option<&Error>);
}

/// A command whose closure produces a `T`.
struct Command<T, F> {
    op: Option<F>,
    result: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> Job for Command<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Outcome<T> + Send + 'static,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(op) = self.op.take() else {
            return false;
        };
        let result = match catch_unwind(AssertUnwindSafe(|| op(conn))) {
            Ok(outcome) => outcome.map_err(Error::from),
            Err(_) => Err(Error::Internal("a storage command panicked".into())),
        };
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn answer(self: Box<Self>, failure: Option<&Error>) {
        let answer = match (failure, self.result) {
            (Some(e), _) => Err(e.clone()),
            (None, Some(result)) => result,
            (None, None) => Err(Error::Internal("a storage command never ran".into())),
        };
        // The caller may have gone away; its write stands regardless.
        let _ = self.reply.send(answer);
    }
}

/// The sending side of the writer's queue.
#[derive(Debug)]
pub(crate) struct WriterHandle {
    queue: mpsc::Sender<Box<dyn Job>>,
}

impl WriterHandle {
    /// Queues `op` and waits until it ran and its batch was committed.
    pub(crate) async fn write<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Outcome<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Command {
            op: Some(op),
            result: None,
            reply,
        });
        self.queue
            .send(job)
            .await
            .map_err(|_| Error::Unavailable("the storage writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| Error::Unavailable("the storage writer stopped before answering".into()))?
    }
}

/// Starts the writer thread on `conn`. The thread ends, after finishing every
/// queued command, once the returned handle is dropped.
pub(crate) fn start(
    conn: Connection,
    max_batch: usize,
    counters: Arc<Counters>,
) -> Result<(WriterHandle, std::thread::JoinHandle<()>)> {
    let max_batch = max_batch.max(1);
    // Bounded, so that a flood of writers waits instead of filling memory.
    let (queue, commands) = mpsc::channel(max_batch.saturating_mul(4).max(64));
    let thread = std::thread::Builder::new()
        .name("qun-sqlite-writer".into())
        .spawn(move || run(conn, commands, max_batch, &counters))
        .map_err(|e| Error::Internal(format!("cannot start the sqlite writer thread: {e}")))?;
    Ok((WriterHandle { queue }, thread))
}

/// The writer loop: one batch per iteration until the queue is closed and empty.
fn run(
    conn: Connection,
    mut commands: mpsc::Receiver<Box<dyn Job>>,
    max_batch: usize,
    counters: &Counters,
) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(max_batch);
    while let Some(first) = commands.blocking_recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match commands.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        counters
            .commands
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let size = batch.len();
        let started = std::time::Instant::now();
        if commit_batch(&conn, batch.drain(..)) {
            counters.commits.fetch_add(1, Ordering::Relaxed);
            metrics::histogram!("qun_store_commit_seconds").record(started.elapsed().as_secs_f64());
            metrics::histogram!("qun_store_batch_size").record(size as f64);
        }
    }
    tracing::debug!("sqlite writer finished its queue and stops");
}

/// Runs `jobs` in one transaction, a savepoint each, and answers them.
/// Returns whether a transaction was committed.
fn commit_batch(conn: &Connection, jobs: impl Iterator<Item = Box<dyn Job>>) -> bool {
    // Commands that ran inside the open transaction and wait for its commit.
    let mut ran: Vec<Box<dyn Job>> = Vec::new();
    let mut open = false;
    for mut job in jobs {
        if !open {
            if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
                job.answer(Some(&map_sqlite(e)));
                continue;
            }
            open = true;
        }
        // Cached statements: parsing these for every command showed in profiles.
        if let Err(e) = conn
            .prepare_cached("SAVEPOINT command")
            .and_then(|mut st| st.execute([]))
        {
            job.answer(Some(&map_sqlite(e)));
            continue;
        }
        let ok = job.run(conn);
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back by itself (disk full,
            // I/O error...): the commands before this one were lost as well.
            let lost = Error::Unavailable("the write transaction was rolled back".into());
            for earlier in ran.drain(..) {
                earlier.answer(Some(&lost));
            }
            job.answer(if ok { Some(&lost) } else { None });
            open = false;
            continue;
        }
        let ended = if ok {
            conn.prepare_cached("RELEASE command")
                .and_then(|mut st| st.execute([]))
                .map(|_| ())
        } else {
            conn.execute_batch("ROLLBACK TO command; RELEASE command")
        };
        if let Err(e) = ended {
            let e = map_sqlite(e);
            tracing::error!(error = %e, "sqlite savepoint failed; abandoning the batch");
            abandon(conn, &mut ran, &e);
            job.answer(Some(&e));
            open = false;
            continue;
        }
        ran.push(job);
    }
    if !open {
        return false;
    }
    match conn.execute_batch("COMMIT") {
        Ok(()) => {
            for job in ran {
                job.answer(None);
            }
            true
        }
        Err(e) => {
            let e = map_sqlite(e);
            tracing::error!(error = %e, "sqlite commit failed");
            abandon(conn, &mut ran, &e);
            false
        }
    }
}

/// Rolls the open transaction back and fails every command that ran in it.
fn abandon(conn: &Connection, ran: &mut Vec<Box<dyn Job>>, error: &Error) {
    if !conn.is_autocommit() {
        if let Err(e) = conn.execute_batch("ROLLBACK") {
            tracing::error!(error = %e, "sqlite rollback failed");
        }
    }
    for job in ran.drain(..) {
        job.answer(Some(error));
    }
}
