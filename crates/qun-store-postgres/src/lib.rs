//! qun's PostgreSQL storage: a [`qun_domain::Store`] that several qun nodes
//! share.
//!
//! Connections come from a pool (deadpool); every connection starts with
//! `synchronous_commit = on` (a write is answered only once it is durable)
//! and a `statement_timeout` (a stuck statement is cancelled and reported as
//! `Unavailable`). Appends, the hot path, go to a few writer tasks that
//! commit them in batches, one savepoint per append (see `writer`); every
//! other write runs in its own transaction on a pooled connection, and reads
//! run on a pooled connection outside of any explicit transaction.
//!
//! ```text
//! append ──▶ queue (by conversation) ──▶ writer: BEGIN; SAVEPOINT per append; COMMIT ──▶ answers
//! other writes ──▶ pooled connection: BEGIN; ...; COMMIT (retried if picked as a deadlock victim)
//! reads ──▶ pooled connection
//! ```
//!
//! Correctness does not rest on this node being alone: sequences, numbers,
//! caps and limits are decided under row locks, advisory locks or
//! conditional statements that hold across nodes (each module says which).
//! The schema is migrated on connect, once, however many nodes start at once
//! (see `schema`).
//!
//! Connections are made without TLS for now (`NoTls`): run PostgreSQL on the
//! same host or a private network, or put a TLS tunnel in between.

mod accounts;
mod conversations;
mod error;
mod friends;
mod groups;
mod schema;
mod sql;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Client, Manager, Pool, Runtime};
use futures_util::future::{BoxFuture, FutureExt};
use qun_domain::groups::model::*;
use qun_domain::model::*;
use qun_domain::store::{DailyCounter, GroupStore};
use qun_domain::{
    AnnouncementId, CategoryId, ConversationId, Error, FriendRequestId, GroupId, JoinRequestId,
    Result, Seq, SessionId, Store, UserId,
};
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;

use crate::error::{map_pool, Outcome};
use crate::sql::Tx;
pub use crate::writer::WriterStats;
use crate::writer::{Counters, Writers};

/// How often a write picked as a deadlock victim is tried again.
const DEADLOCK_RETRIES: u32 = 3;

/// Tuning of a [`PostgresStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostgresOptions {
    /// Most connections for reads and for writes other than appends.
    pub pool_size: usize,
    /// Append writer tasks, each with a connection of its own (so a node
    /// holds at most `pool_size + writers` connections).
    pub writers: usize,
    /// Most appends committed together in one transaction. Each append runs
    /// in a subtransaction (its savepoint); PostgreSQL tracks up to 64 of
    /// them per transaction cheaply and slows every snapshot down past that,
    /// so more than 64 rarely pays.
    pub max_batch: usize,
    /// Longest a statement may run, lock waits included, before the server
    /// cancels it and the operation reports `Unavailable` (zero: no limit).
    pub statement_timeout: Duration,
    /// Longest wait for a new connection, or for a free one from the pool.
    pub connect_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            pool_size: 16,
            writers: 4,
            max_batch: 64,
            statement_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// A read: a query function on a pooled connection.
type ReadOp<D, T> = for<'c> fn(&'c Client, &'c D) -> BoxFuture<'c, Outcome<T>>;
/// A write: a query function inside a transaction.
type WriteOp<D, T> = for<'c> fn(&'c Tx<'c>, &'c D) -> BoxFuture<'c, Outcome<T>>;

/// The PostgreSQL storage adapter. Dropping it lets the writers finish the
/// appends already queued; [`PostgresStore::close`] also waits for them.
#[derive(Debug)]
pub struct PostgresStore {
    /// Connections for reads and for writes other than appends.
    pool: Pool,
    /// One connection per append writer.
    writer_pool: Pool,
    /// `None` only while closing: dropping it tells the writers to stop.
    writers: Option<Writers>,
    tasks: Vec<JoinHandle<()>>,
    counters: Arc<Counters>,
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`,
    /// or the key=value form), upgrades its schema to the newest version and
    /// starts the append writers. Must be called inside a Tokio runtime.
    /// `Invalid` for a malformed URL, `Unavailable` when the server cannot
    /// be reached or refuses the login.
    pub async fn connect(url: &str, opts: PostgresOptions) -> Result<PostgresStore> {
        let pool = new_pool(url, &opts, opts.pool_size)?;
        // The writers' own connections: appends never queue behind reads.
        let writer_pool = new_pool(url, &opts, opts.writers)?;
        let mut client = pool.get().await.map_err(map_pool)?;
        let applied = schema::migrate(&mut client).await?;
        drop(client);

        let counters = Arc::new(Counters::default());
        let (writers, tasks) =
            Writers::start(&writer_pool, opts.writers, opts.max_batch, &counters);
        tracing::info!(applied, "postgres store connected");
        Ok(PostgresStore {
            pool,
            writer_pool,
            writers: Some(writers),
            tasks,
            counters,
        })
    }

    /// Appends and commits of the writers so far; `commands / commits` is the
    /// average batch.
    pub fn stats(&self) -> WriterStats {
        self.counters.snapshot()
    }

    /// Finishes every queued append, stops the writers and closes the pool.
    pub async fn close(mut self) {
        self.writers = None;
        for task in self.tasks.drain(..) {
            if task.await.is_err() {
                tracing::error!("a postgres append writer failed");
            }
        }
        self.pool.close();
        self.writer_pool.close();
    }

    async fn read<D: Sync, T>(&self, data: &D, op: ReadOp<D, T>) -> Result<T> {
        let client = self.pool.get().await.map_err(map_pool)?;
        Ok(op(&client, data).await?)
    }

    /// Runs `op` in a transaction and commits it; a deadlock victim is tried
    /// again (its transaction was rolled back, so nothing was applied).
    async fn write<D: Sync, T>(&self, data: &D, op: WriteOp<D, T>) -> Result<T> {
        let mut attempt = 0;
        loop {
            match self.try_write(data, op).await {
                Err(failure) if failure.is_retryable() && attempt < DEADLOCK_RETRIES => {
                    attempt += 1;
                    tracing::debug!(attempt, "postgres write was a deadlock victim; retrying");
                }
                result => return Ok(result?),
            }
        }
    }

    async fn try_write<D: Sync, T>(&self, data: &D, op: WriteOp<D, T>) -> Outcome<T> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let value = op(&tx, data).await?;
        tx.commit().await?;
        Ok(value)
    }
}

/// A pool of at most `size` connections to `url` that each start with
/// durable commits and the statement timeout (set at connection start, so no
/// statement runs without them).
fn new_pool(url: &str, opts: &PostgresOptions, size: usize) -> Result<Pool> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e: tokio_postgres::Error| Error::invalid("postgres url", e.to_string()))?;
    let mut options = config.get_options().unwrap_or_default().to_owned();
    options.push_str(&format!(
        " -c synchronous_commit=on -c statement_timeout={}",
        opts.statement_timeout.as_millis()
    ));
    config.options(options.trim());
    if config.get_application_name().is_none() {
        config.application_name("qun");
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(opts.connect_timeout);
    }
    Pool::builder(Manager::new(config, NoTls))
        .max_size(size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(opts.connect_timeout))
        .create_timeout(Some(opts.connect_timeout))
        .recycle_timeout(Some(opts.connect_timeout))
        .build()
        .map_err(|e| Error::Internal(format!("database pool: {e}")))
}

#[async_trait]
impl Store for PostgresStore {
    // --- accounts -------------------------------------------------------
    async fn create_user(&self, user: NewUser) -> Result<UserId> {
        self.write(&user, |tx, user| accounts::create_user(tx, user).boxed())
            .await
    }

    async fn user(&self, id: UserId) -> Result<Option<User>> {
        self.read(&id, |c, id| accounts::user(c, *id).boxed()).await
    }

    async fn users(&self, after: UserId, limit: u32) -> Result<Vec<User>> {
        self.read(&(after, limit), |c, (after, limit)| {
            accounts::users(c, *after, *limit).boxed()
        })
        .await
    }

    async fn update_profile(&self, id: UserId, update: ProfileUpdate) -> Result<()> {
        self.write(&(id, update), |tx, (id, update)| {
            accounts::update_profile(tx, *id, update).boxed()
        })
        .await
    }

    async fn set_password_hash(&self, id: UserId, hash: &str) -> Result<()> {
        self.write(&(id, hash), |tx, (id, hash)| {
            accounts::set_password_hash(tx, *id, hash).boxed()
        })
        .await
    }

    async fn set_disabled(&self, id: UserId, disabled: bool) -> Result<()> {
        self.write(&(id, disabled), |tx, (id, disabled)| {
            accounts::set_disabled(tx, *id, *disabled).boxed()
        })
        .await
    }

    // --- sessions -------------------------------------------------------
    async fn create_session(&self, session: Session) -> Result<()> {
        self.write(&session, |tx, session| {
            accounts::create_session(tx, session).boxed()
        })
        .await
    }

    async fn session_by_token(&self, token_hash: &str) -> Result<Option<Session>> {
        self.read(&token_hash, |c, token_hash| {
            accounts::session_by_token(c, token_hash).boxed()
        })
        .await
    }

    async fn session(&self, id: &SessionId) -> Result<Option<Session>> {
        self.read(id, |c, id| accounts::session(c, id).boxed())
            .await
    }

    async fn sessions(&self, user: UserId) -> Result<Vec<Session>> {
        self.read(&user, |c, user| accounts::sessions(c, *user).boxed())
            .await
    }

    async fn revoke_sessions(
        &self,
        user: UserId,
        only: Option<&SessionId>,
        keep: Option<&SessionId>,
        at: i64,
    ) -> Result<Vec<SessionId>> {
        self.write(&(user, only, keep, at), |tx, (user, only, keep, at)| {
            accounts::revoke_sessions(tx, *user, *only, *keep, *at).boxed()
        })
        .await
    }

    // --- friends --------------------------------------------------------
    async fn create_friend_request(
        &self,
        from: UserId,
        to: UserId,
        message: &str,
        at: i64,
    ) -> Result<FriendRequest> {
        self.write(&(from, to, message, at), |tx, (from, to, message, at)| {
            friends::create_request(tx, *from, *to, message, *at).boxed()
        })
        .await
    }

    async fn friend_request(&self, id: FriendRequestId) -> Result<Option<FriendRequest>> {
        self.read(&id, |c, id| friends::request(c, *id).boxed())
            .await
    }

    async fn pending_friend_requests(&self, user: UserId) -> Result<Vec<FriendRequest>> {
        self.read(&user, |c, user| friends::pending_requests(c, *user).boxed())
            .await
    }

    async fn accept_friend_request(
        &self,
        id: FriendRequestId,
        remark: Option<String>,
        category: CategoryId,
        at: i64,
    ) -> Result<ConversationId> {
        self.write(
            &(id, remark, category, at),
            |tx, (id, remark, category, at)| {
                friends::accept_request(tx, *id, remark.as_deref(), *category, *at).boxed()
            },
        )
        .await
    }

    async fn refuse_friend_request(&self, id: FriendRequestId) -> Result<FriendRequest> {
        self.write(&id, |tx, id| friends::refuse_request(tx, *id).boxed())
            .await
    }

    async fn friends(&self, user: UserId) -> Result<Vec<Friend>> {
        self.read(&user, |c, user| friends::friends(c, *user).boxed())
            .await
    }

    async fn friend(&self, user: UserId, other: UserId) -> Result<Option<Friend>> {
        self.read(&(user, other), |c, (user, other)| {
            friends::friend(c, *user, *other).boxed()
        })
        .await
    }

    async fn update_friend(&self, user: UserId, other: UserId, update: FriendUpdate) -> Result<()> {
        self.write(&(user, other, update), |tx, (user, other, update)| {
            friends::update_friend(tx, *user, *other, update).boxed()
        })
        .await
    }

    async fn remove_friend(&self, a: UserId, b: UserId) -> Result<bool> {
        self.write(&(a, b), |tx, (a, b)| {
            friends::remove_friend(tx, *a, *b).boxed()
        })
        .await
    }

    async fn categories(&self, user: UserId) -> Result<Vec<Category>> {
        self.read(&user, |c, user| friends::categories(c, *user).boxed())
            .await
    }

    async fn create_category(&self, user: UserId, name: &str, max: usize) -> Result<Category> {
        self.write(&(user, name, max), |tx, (user, name, max)| {
            friends::create_category(tx, *user, name, *max).boxed()
        })
        .await
    }

    async fn rename_category(&self, user: UserId, id: CategoryId, name: &str) -> Result<()> {
        self.write(&(user, id, name), |tx, (user, id, name)| {
            friends::rename_category(tx, *user, *id, name).boxed()
        })
        .await
    }

    async fn delete_category(&self, user: UserId, id: CategoryId) -> Result<()> {
        self.write(&(user, id), |tx, (user, id)| {
            friends::delete_category(tx, *user, *id).boxed()
        })
        .await
    }

    async fn block(&self, user: UserId, other: UserId, at: i64) -> Result<()> {
        self.write(&(user, other, at), |tx, (user, other, at)| {
            friends::block(tx, *user, *other, *at).boxed()
        })
        .await
    }

    async fn unblock(&self, user: UserId, other: UserId) -> Result<bool> {
        self.write(&(user, other), |tx, (user, other)| {
            friends::unblock(tx, *user, *other).boxed()
        })
        .await
    }

    async fn blocked(&self, user: UserId) -> Result<Vec<(UserId, i64)>> {
        self.read(&user, |c, user| friends::blocked(c, *user).boxed())
            .await
    }

    async fn is_blocked_either(&self, a: UserId, b: UserId) -> Result<bool> {
        self.read(&(a, b), |c, (a, b)| {
            friends::is_blocked_either(c, *a, *b).boxed()
        })
        .await
    }

    async fn direct_standing(&self, user: UserId, other: UserId) -> Result<DirectStanding> {
        self.read(&(user, other), |c, (user, other)| {
            friends::direct_standing(c, *user, *other).boxed()
        })
        .await
    }

    async fn add_like(&self, from: UserId, to: UserId, day: i64, limit: u32) -> Result<u32> {
        self.write(&(from, to, day, limit), |tx, (from, to, day, limit)| {
            friends::add_like(tx, *from, *to, *day, *limit).boxed()
        })
        .await
    }

    // --- conversations --------------------------------------------------
    async fn direct_conversation(&self, a: UserId, b: UserId) -> Result<Option<ConversationId>> {
        self.read(&(a, b), |c, (a, b)| {
            conversations::direct(c, *a, *b).boxed()
        })
        .await
    }

    async fn ensure_direct_conversation(
        &self,
        a: UserId,
        b: UserId,
        at: i64,
    ) -> Result<ConversationId> {
        self.write(&(a, b, at), |tx, (a, b, at)| {
            conversations::find_or_create_direct(tx, *a, *b, *at).boxed()
        })
        .await
    }

    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>> {
        self.read(&id, |c, id| conversations::conversation(c, *id).boxed())
            .await
    }

    async fn append(&self, append: Append) -> Result<Appended> {
        if matches!(append.body, AppendBody::Notice(_)) {
            return Err(Error::invalid(
                "body",
                "notices are appended by group changes",
            ));
        }
        match &self.writers {
            Some(writers) => writers.append(append).await,
            None => Err(Error::Unavailable("the store is closing".into())),
        }
    }

    async fn event(&self, conversation: ConversationId, seq: Seq) -> Result<Option<StoredEvent>> {
        self.read(&(conversation, seq), |c, (conversation, seq)| {
            conversations::event(c, *conversation, *seq).boxed()
        })
        .await
    }

    async fn events(
        &self,
        conversation: ConversationId,
        range: EventRange,
    ) -> Result<Vec<StoredEvent>> {
        self.read(&(conversation, range), |c, (conversation, range)| {
            conversations::events(c, *conversation, *range).boxed()
        })
        .await
    }

    async fn conversation_states(&self, user: UserId) -> Result<Vec<ConversationState>> {
        self.read(&user, |c, user| conversations::states(c, *user).boxed())
            .await
    }

    async fn conversation_state(
        &self,
        user: UserId,
        conversation: ConversationId,
    ) -> Result<Option<ConversationState>> {
        self.read(&(user, conversation), |c, (user, conversation)| {
            conversations::state(c, *user, *conversation).boxed()
        })
        .await
    }

    async fn mark_read(&self, user: UserId, conversation: ConversationId, seq: Seq) -> Result<Seq> {
        self.write(
            &(user, conversation, seq),
            |tx, (user, conversation, seq)| {
                conversations::mark_read(tx, *user, *conversation, *seq).boxed()
            },
        )
        .await
    }
}

#[async_trait]
impl GroupStore for PostgresStore {
    async fn create_group(&self, group: NewGroup) -> Result<Group> {
        self.write(&group, |tx, group| {
            groups::change::create_group(tx, group).boxed()
        })
        .await
    }

    async fn group(&self, id: GroupId) -> Result<Option<Group>> {
        self.read(&id, |c, id| groups::group(c, *id).boxed()).await
    }

    async fn group_of_conversation(&self, conversation: ConversationId) -> Result<Option<GroupId>> {
        self.read(&conversation, |c, conversation| {
            groups::group_of_conversation(c, *conversation).boxed()
        })
        .await
    }

    async fn change_group(
        &self,
        group: GroupId,
        actor: UserId,
        change: GroupChange,
        notice: Notice,
        time: i64,
    ) -> Result<GroupChanged> {
        self.write(
            &(group, actor, change, notice, time),
            |tx, (group, actor, change, notice, time)| {
                groups::change::change_group(tx, *group, *actor, change, notice, *time).boxed()
            },
        )
        .await
    }

    async fn member(&self, group: GroupId, user: UserId) -> Result<Option<Member>> {
        self.read(&(group, user), |c, (group, user)| {
            groups::member(c, *group, *user).boxed()
        })
        .await
    }

    async fn members(&self, group: GroupId, after: UserId, limit: u32) -> Result<Vec<Member>> {
        self.read(&(group, after, limit), |c, (group, after, limit)| {
            groups::members(c, *group, *after, *limit).boxed()
        })
        .await
    }

    async fn member_ids(&self, group: GroupId) -> Result<Vec<UserId>> {
        self.read(&group, |c, group| groups::member_ids(c, *group).boxed())
            .await
    }

    async fn managers(&self, group: GroupId) -> Result<Vec<UserId>> {
        self.read(&group, |c, group| groups::managers(c, *group).boxed())
            .await
    }

    async fn member_changes(&self, group: GroupId, since: u64) -> Result<Vec<MemberChange>> {
        self.read(&(group, since), |c, (group, since)| {
            groups::member_changes(c, *group, *since).boxed()
        })
        .await
    }

    async fn groups_of(&self, user: UserId) -> Result<Vec<GroupId>> {
        self.read(&user, |c, user| groups::groups_of(c, *user).boxed())
            .await
    }

    async fn share_group(&self, a: UserId, b: UserId) -> Result<bool> {
        self.read(&(a, b), |c, (a, b)| groups::share_group(c, *a, *b).boxed())
            .await
    }

    async fn is_banned(&self, group: GroupId, user: UserId) -> Result<bool> {
        self.read(&(group, user), |c, (group, user)| {
            groups::joins::is_banned(c, *group, *user).boxed()
        })
        .await
    }

    async fn unban(&self, group: GroupId, user: UserId) -> Result<bool> {
        self.write(&(group, user), |tx, (group, user)| {
            groups::joins::unban(tx, *group, *user).boxed()
        })
        .await
    }

    async fn create_join_request(&self, request: NewJoinRequest) -> Result<JoinRequest> {
        self.write(&request, |tx, request| {
            groups::joins::create_join_request(tx, request).boxed()
        })
        .await
    }

    async fn join_request(&self, id: JoinRequestId) -> Result<Option<JoinRequest>> {
        self.read(&id, |c, id| groups::joins::join_request(c, *id).boxed())
            .await
    }

    async fn pending_applications(&self, group: GroupId) -> Result<Vec<JoinRequest>> {
        self.read(&group, |c, group| {
            groups::joins::pending_applications(c, *group).boxed()
        })
        .await
    }

    async fn user_join_requests(&self, user: UserId) -> Result<Vec<JoinRequest>> {
        self.read(&user, |c, user| {
            groups::joins::user_join_requests(c, *user).boxed()
        })
        .await
    }

    async fn close_join_request(
        &self,
        id: JoinRequestId,
        status: RequestStatus,
        reviewer: Option<UserId>,
        reason: Option<String>,
    ) -> Result<JoinRequest> {
        self.write(
            &(id, status, reviewer, reason),
            |tx, (id, status, reviewer, reason)| {
                groups::joins::close_join_request(tx, *id, *status, *reviewer, reason.as_deref())
                    .boxed()
            },
        )
        .await
    }

    async fn create_invite_link(&self, link: InviteLink) -> Result<()> {
        self.write(&link, |tx, link| {
            groups::joins::create_invite_link(tx, link).boxed()
        })
        .await
    }

    async fn invite_link(&self, code: &str) -> Result<Option<InviteLink>> {
        self.read(&code, |c, code| groups::joins::invite_link(c, code).boxed())
            .await
    }

    async fn announcements(&self, group: GroupId) -> Result<Vec<Announcement>> {
        self.read(&group, |c, group| {
            groups::content::announcements(c, *group).boxed()
        })
        .await
    }

    async fn announcement(&self, id: AnnouncementId) -> Result<Option<Announcement>> {
        self.read(&id, |c, id| groups::content::announcement(c, *id).boxed())
            .await
    }

    async fn confirm_announcement(&self, id: AnnouncementId, user: UserId, at: i64) -> Result<()> {
        self.write(&(id, user, at), |tx, (id, user, at)| {
            groups::content::confirm_announcement(tx, *id, *user, *at).boxed()
        })
        .await
    }

    async fn confirmations(&self, id: AnnouncementId) -> Result<Vec<(UserId, i64)>> {
        self.read(&id, |c, id| groups::content::confirmations(c, *id).boxed())
            .await
    }

    async fn essences(&self, group: GroupId) -> Result<Vec<Essence>> {
        self.read(&group, |c, group| {
            groups::content::essences(c, *group).boxed()
        })
        .await
    }

    async fn consume_daily(&self, counters: &[DailyCounter], day: i64) -> Result<Vec<u32>> {
        self.write(&(counters, day), |tx, (counters, day)| {
            groups::content::consume_daily(tx, counters, *day).boxed()
        })
        .await
    }

    async fn daily_count(&self, key: &str, day: i64) -> Result<u32> {
        self.read(&(key, day), |c, (key, day)| {
            groups::content::daily_count(c, key, *day).boxed()
        })
        .await
    }

    async fn search_groups(&self, search: GroupSearch) -> Result<Vec<Group>> {
        self.read(&search, |c, search| groups::search(c, search).boxed())
            .await
    }

    async fn readers(
        &self,
        conversation: ConversationId,
        seq: Seq,
        list: bool,
    ) -> Result<(u64, Vec<UserId>)> {
        self.read(
            &(conversation, seq, list),
            |c, (conversation, seq, list)| groups::readers(c, *conversation, *seq, *list).boxed(),
        )
        .await
    }

    async fn top_senders(
        &self,
        conversation: ConversationId,
        from_ms: i64,
        to_ms: i64,
        limit: u32,
    ) -> Result<Vec<(UserId, u64)>> {
        self.read(
            &(conversation, from_ms, to_ms, limit),
            |c, (conversation, from_ms, to_ms, limit)| {
                groups::top_senders(c, *conversation, *from_ms, *to_ms, *limit).boxed()
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::error::map_postgres;

    #[tokio::test]
    async fn every_connection_commits_durably_with_a_statement_timeout() {
        let Some(url) = std::env::var("QUN_TEST_POSTGRES")
            .ok()
            .filter(|u| !u.is_empty())
        else {
            eprintln!("skipped: set QUN_TEST_POSTGRES to a PostgreSQL URL to run this test");
            return;
        };
        let opts = PostgresOptions {
            statement_timeout: Duration::from_millis(1234),
            ..PostgresOptions::default()
        };
        // The pool alone: nothing is migrated in the server's own database.
        let pool = new_pool(&url, &opts, 1).unwrap();
        let client = pool.get().await.unwrap();
        let show = |name: &'static str| {
            let client = &client;
            async move {
                let row = client
                    .query_one(&format!("SHOW {name}"), &[])
                    .await
                    .unwrap();
                row.get::<_, String>(0)
            }
        };
        assert_eq!(show("synchronous_commit").await, "on");
        assert_eq!(show("statement_timeout").await, "1234ms");
        assert_eq!(show("application_name").await, "qun");
        let slow = client
            .batch_execute("SELECT pg_sleep(3)")
            .await
            .unwrap_err();
        assert!(
            matches!(map_postgres(&slow), Error::Unavailable(_)),
            "a statement past the timeout is cancelled and reported unavailable: {slow}"
        );
    }

    #[test]
    fn a_malformed_url_is_invalid() {
        assert!(matches!(
            new_pool("postgres://h:notaport/db", &PostgresOptions::default(), 1),
            Err(Error::Invalid { .. })
        ));
    }
}
