//! The append writers and their group commit.
//!
//! Appends are the hot path, so they do not take a pooled connection each.
//! A few writer tasks each own a queue; an append goes to the queue chosen
//! by its conversation, so one conversation's appends on this node meet in
//! one writer. A writer takes one append, drains whatever else is queued (up
//! to the batch limit), and runs them on its own connection in ONE
//! transaction, each inside its own SAVEPOINT (one round trip per append:
//! the savepoint commands are pipelined with the append), then commits once
//! (`synchronous_commit = on`: one WAL flush for the whole batch) and only
//! then answers everybody. A failing append rolls back its savepoint alone;
//! a failing COMMIT fails the whole batch, since none of it became durable.
//!
//! Within a batch the appends run in ascending conversation order, and every
//! transaction of every node that locks conversation rows locks them in that
//! order (a group change locks just one), so batches of different writers
//! and nodes wait for each other but do not deadlock over sequences. An
//! append that is still picked as a deadlock victim (two nodes inserting the
//! same client id into different conversations, say) had its savepoint
//! rolled back; it runs once more alone after the batch.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use deadpool_postgres::Pool;
use futures_util::future::join;
use qun_domain::model::{Append, Appended};
use qun_domain::{Error, Result};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::conversations::{self, Attempt};
use crate::error::{map_pool, map_postgres, Outcome};
use crate::sql::Tx;

/// How much batching the writers achieved since the store was connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriterStats {
    /// Appends executed (committed or not).
    pub commands: u64,
    /// Transactions committed; each covers one batch of appends.
    pub commits: u64,
    /// Appends committed by the one-statement path for plain messages.
    pub batched: u64,
}

/// Counters shared between the writers and the store.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    commands: AtomicU64,
    commits: AtomicU64,
    batched: AtomicU64,
}

impl Counters {
    /// A snapshot of the counters.
    pub(crate) fn snapshot(&self) -> WriterStats {
        WriterStats {
            commands: self.commands.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
            batched: self.batched.load(Ordering::Relaxed),
        }
    }
}

/// A queued append and where its answer goes.
struct Job {
    append: Append,
    reply: oneshot::Sender<Result<Appended>>,
}

impl Job {
    fn answer(self, result: Result<Appended>) {
        // The caller may have gone away; a committed append stands regardless.
        let _ = self.reply.send(result);
    }
}

/// The sending side of the writers' queues.
#[derive(Debug)]
pub(crate) struct Writers {
    queues: Vec<mpsc::Sender<Job>>,
}

impl Writers {
    /// Starts `count` (at least one) writer tasks on `pool`. Each ends, after
    /// finishing its queue, once the returned [`Writers`] is dropped.
    pub(crate) fn start(
        pool: &Pool,
        count: usize,
        max_batch: usize,
        counters: &Arc<Counters>,
    ) -> (Writers, Vec<JoinHandle<()>>) {
        let max_batch = max_batch.max(1);
        let mut queues = Vec::new();
        let mut tasks = Vec::new();
        for _ in 0..count.max(1) {
            // Bounded, so that a flood of appends waits instead of filling memory.
            let (queue, jobs) = mpsc::channel(max_batch.saturating_mul(4).max(64));
            queues.push(queue);
            tasks.push(tokio::spawn(run(
                pool.clone(),
                jobs,
                max_batch,
                Arc::clone(counters),
            )));
        }
        (Writers { queues }, tasks)
    }

    /// Queues `append` and waits until it ran and its batch was committed.
    pub(crate) async fn append(&self, append: Append) -> Result<Appended> {
        let index = append.conversation.0 % self.queues.len().max(1) as u64;
        let queue = usize::try_from(index)
            .ok()
            .and_then(|index| self.queues.get(index))
            .ok_or_else(|| Error::Internal("no append writer".into()))?;
        let (reply, answer) = oneshot::channel();
        queue
            .send(Job { append, reply })
            .await
            .map_err(|_| Error::Unavailable("the append writers have stopped".into()))?;
        answer
            .await
            .map_err(|_| Error::Unavailable("the append writer stopped before answering".into()))?
    }
}

/// One writer: a batch per iteration until its queue is closed and empty.
async fn run(pool: Pool, mut jobs: mpsc::Receiver<Job>, max_batch: usize, counters: Arc<Counters>) {
    while let Some(first) = jobs.recv().await {
        let mut batch = Vec::with_capacity(max_batch);
        batch.push(first);
        while batch.len() < max_batch {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // The lock order every transaction keeps (see the module docs).
        batch.sort_by_key(|job| job.append.conversation);
        for (job, _) in commit_batch(&pool, batch, &counters).await {
            for (job, error) in commit_batch(&pool, vec![job], &counters).await {
                job.answer(Err(error));
            }
        }
    }
    tracing::debug!("postgres append writer finished its queue and stops");
}

/// Commits `jobs` in one transaction and answers them: a batch of plain
/// messages in one statement when it can (see
/// [`conversations::append_messages`]), otherwise a savepoint each. Returns
/// the jobs that were deadlock victims (rolled back, not answered) with
/// their error, to be run again alone.
async fn commit_batch(pool: &Pool, jobs: Vec<Job>, counters: &Counters) -> Vec<(Job, Error)> {
    let mut client = match pool.get().await {
        Ok(client) => client,
        Err(e) => {
            fail(jobs, &map_pool(e));
            return Vec::new();
        }
    };
    let jobs = if jobs.iter().all(|job| conversations::batchable(&job.append)) {
        match commit_messages(&mut client, jobs, counters).await {
            Some(jobs) => jobs,
            None => return Vec::new(),
        }
    } else {
        jobs
    };
    commit_each(&mut client, jobs, counters).await
}

/// Commits a batch of plain messages in one round trip. Gives the jobs back,
/// unanswered and with nothing of them applied, when that could not store
/// them all (a retry among them, a deadlock...); [`commit_each`] then sorts
/// them out one by one.
async fn commit_messages(
    client: &mut deadpool_postgres::Client,
    jobs: Vec<Job>,
    counters: &Counters,
) -> Option<Vec<Job>> {
    let tx = match client.transaction().await {
        Ok(tx) => tx,
        Err(e) => {
            fail(jobs, &map_postgres(&e));
            return None;
        }
    };
    let started = Instant::now();
    let appends: Vec<&Append> = jobs.iter().map(|job| &job.append).collect();
    let stored = match conversations::append_messages(&tx, &appends).await {
        Ok(Some(stored)) => stored,
        outcome => {
            if let Err(e) = outcome {
                if e.is_retryable() {
                    // A deadlock: the one-at-a-time path copes with it.
                    tracing::debug!(error = %Error::from(e), "batched append fell back to one at a time");
                } else {
                    // The connection, or a fault of the batched statements.
                    tracing::warn!(error = %Error::from(e), "batched append failed; storing one at a time");
                }
            }
            // Best effort: a failed rollback leaves a broken connection,
            // which the one-at-a-time path reports.
            let _ = tx.rollback().await;
            return Some(jobs);
        }
    };
    let size = jobs.len();
    counters.commands.fetch_add(size as u64, Ordering::Relaxed);
    match tx.commit().await {
        Ok(()) => {
            counters.commits.fetch_add(1, Ordering::Relaxed);
            counters.batched.fetch_add(size as u64, Ordering::Relaxed);
            metrics::histogram!("qun_store_commit_seconds").record(started.elapsed().as_secs_f64());
            metrics::histogram!("qun_store_batch_size").record(size as f64);
            for (job, appended) in jobs.into_iter().zip(stored) {
                job.answer(Ok(appended));
            }
        }
        Err(e) => {
            // As in `commit_each`: a retry finds the first append if it landed.
            let e = map_postgres(&e);
            tracing::error!(error = %e, "postgres append commit failed");
            fail(jobs, &e);
        }
    }
    None
}

/// Runs `jobs` in one transaction, a savepoint each, commits and answers
/// them. Returns the jobs that were deadlock victims (rolled back, not
/// answered) with their error, to be run again alone.
async fn commit_each(
    client: &mut deadpool_postgres::Client,
    jobs: Vec<Job>,
    counters: &Counters,
) -> Vec<(Job, Error)> {
    let mut again = Vec::new();
    let tx = match client.transaction().await {
        Ok(tx) => tx,
        Err(e) => {
            fail(jobs, &map_postgres(&e));
            return again;
        }
    };
    let size = jobs.len();
    let started = Instant::now();
    counters.commands.fetch_add(size as u64, Ordering::Relaxed);
    // Appends that ran inside the open transaction and wait for its commit.
    let mut ran: Vec<(Job, Result<Appended>)> = Vec::with_capacity(size);
    let mut savepoint = false;
    let mut jobs = jobs.into_iter();
    while let Some(job) = jobs.next() {
        let outcome = run_job(&tx, &job.append, savepoint).await;
        savepoint |= outcome.is_ok();
        match outcome {
            Ok(Err(failure)) if failure.is_retryable() => again.push((job, Error::from(failure))),
            Ok(result) => ran.push((job, result.map_err(Error::from))),
            Err(e) => {
                // A savepoint command failed: the transaction is unusable and
                // nothing in it will commit.
                let e = map_postgres(&e);
                tracing::error!(error = %e, "postgres append batch abandoned");
                let lost = ran.into_iter().map(|(job, _)| job);
                fail(lost.chain([job]).chain(jobs), &e);
                return again;
            }
        }
    }
    if ran.is_empty() {
        return again;
    }
    match tx.commit().await {
        Ok(()) => {
            counters.commits.fetch_add(1, Ordering::Relaxed);
            metrics::histogram!("qun_store_commit_seconds").record(started.elapsed().as_secs_f64());
            metrics::histogram!("qun_store_batch_size").record(size as f64);
            for (job, result) in ran {
                job.answer(result);
            }
        }
        Err(e) => {
            // Whether a COMMIT that lost its connection went through is
            // unknown; the callers hear "unavailable" and a retry of theirs
            // finds the first append if it did.
            let e = map_postgres(&e);
            tracing::error!(error = %e, "postgres append commit failed");
            fail(ran.into_iter().map(|(job, _)| job), &e);
        }
    }
    again
}

/// Runs one append inside its own savepoint, releasing the previous job's.
/// The savepoint commands and the append's statement are pipelined (sent
/// together, answered in order): one round trip per append. If the
/// savepoint commands fail the transaction is aborted, so the append fails
/// with them and nothing runs unprotected. The outer error is a failure of
/// the savepoint commands themselves; the inner result is the append's own.
async fn run_job(
    tx: &Tx<'_>,
    append: &Append,
    release_previous: bool,
) -> std::result::Result<Outcome<Appended>, tokio_postgres::Error> {
    let savepoint = tx.batch_execute(if release_previous {
        "RELEASE SAVEPOINT job; SAVEPOINT job"
    } else {
        "SAVEPOINT job"
    });
    // `join` polls the savepoint first, so its command is sent first.
    let (savepoint, attempt) = join(savepoint, conversations::try_append(tx, append)).await;
    savepoint?;
    let outcome = match attempt {
        Ok(Attempt::Stored(appended)) => return Ok(Ok(appended)),
        Ok(Attempt::Undo) => {
            tx.batch_execute("ROLLBACK TO SAVEPOINT job").await?;
            conversations::earlier(tx, append).await
        }
        Err(failure) => Err(failure),
    };
    if outcome.is_err() {
        tx.batch_execute("ROLLBACK TO SAVEPOINT job").await?;
    }
    Ok(outcome)
}

/// Answers every job with `error`.
fn fail(jobs: impl IntoIterator<Item = Job>, error: &Error) {
    for job in jobs {
        job.answer(Err(error.clone()));
    }
}
