//! qun's embedded storage: a [`qun_domain::Store`] on one SQLite file.
//!
//! One writer thread owns the only read-write connection and commits queued
//! writes in groups (see `writer`); reads run on a small pool of read-only
//! connections, which WAL lets proceed beside the writer. A write is answered
//! only once its transaction is durable (`synchronous = FULL`).
//!
//! ```text
//! Store method ──write──▶ queue ──▶ writer thread: BEGIN; SAVEPOINT per command; COMMIT ──▶ answers
//!              ──read───▶ spawn_blocking ──▶ pooled read-only connection
//! ```

mod accounts;
mod conversations;
mod error;
mod friends;
mod groups;
mod readers;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use qun_domain::groups::model::*;
use qun_domain::model::*;
use qun_domain::store::{DailyCounter, GroupStore};
use qun_domain::{
    AnnouncementId, CategoryId, ConversationId, Error, FriendRequestId, GroupId, JoinRequestId,
    Result, Seq, SessionId, Store, UserId,
};
use rusqlite::{Connection, OpenFlags};

use crate::error::map_sqlite;
use crate::readers::Readers;
pub use crate::writer::WriterStats;
use crate::writer::{Counters, WriterHandle};

/// How long a connection waits for a lock held by another process (a backup
/// tool, say) before the store reports itself unavailable.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Tuning of a [`SqliteStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteOptions {
    /// Read-only connections in the read pool (at least one is opened).
    pub readers: usize,
    /// Most write commands committed together in one transaction.
    pub max_batch: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            readers: 4,
            max_batch: 512,
        }
    }
}

/// The SQLite storage adapter. Dropping it (or [`SqliteStore::close`]) lets
/// the writer finish every queued command before its thread exits.
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    readers: Arc<Readers>,
    /// `None` only while closing: dropping it tells the writer to stop.
    writer: Option<WriterHandle>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
}

impl SqliteStore {
    /// Opens (creating the file and its folder if needed) the database at
    /// `path` and upgrades its schema to the newest version.
    pub fn open(path: &Path, opts: SqliteOptions) -> Result<SqliteStore> {
        if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder).map_err(|e| {
                Error::Unavailable(format!("cannot create {}: {e}", folder.display()))
            })?;
        }
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(map_sqlite)?;
        configure_writer(&conn)?;
        schema::migrate(&mut conn)?;

        let readers = Arc::new(Readers::open(path, opts.readers, BUSY_TIMEOUT)?);
        let counters = Arc::new(Counters::default());
        let (writer, thread) = writer::start(conn, opts.max_batch, Arc::clone(&counters))?;
        tracing::info!(path = %path.display(), "sqlite store opened");
        Ok(SqliteStore {
            path: path.to_owned(),
            readers,
            writer: Some(writer),
            thread: Some(thread),
            counters,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Commands and commits of the writer so far; `commands / commits` is the
    /// average group-commit batch.
    pub fn stats(&self) -> WriterStats {
        self.counters.snapshot()
    }

    /// Finishes every queued write, stops the writer thread and closes the
    /// database.
    pub async fn close(mut self) {
        if let Some(thread) = self.stop_writer() {
            if tokio::task::spawn_blocking(move || thread.join())
                .await
                .is_err()
            {
                tracing::error!("waiting for the sqlite writer failed");
            }
        }
    }

    /// Closes the queue; returns the writer thread, which now drains and exits.
    fn stop_writer(&mut self) -> Option<JoinHandle<()>> {
        self.writer = None;
        self.thread.take()
    }

    async fn write<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> error::Outcome<T> + Send + 'static,
    {
        match &self.writer {
            Some(writer) => writer.write(op).await,
            None => Err(Error::Unavailable("the store is closing".into())),
        }
    }

    /// A lookup of one row or a few by index (see [`readers`]).
    async fn point<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> error::Outcome<T> + Send + 'static,
    {
        self.readers.point(op).await
    }

    /// A read that may walk many rows (see [`readers`]).
    async fn scan<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> error::Outcome<T> + Send + 'static,
    {
        self.readers.scan(op).await
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Queued writes were promised; let the writer finish them. This waits
        // no longer than the writes already queued take.
        if let Some(thread) = self.stop_writer() {
            if thread.join().is_err() {
                tracing::error!("the sqlite writer thread panicked");
            }
        }
    }
}

/// Durability and integrity settings of the writing connection.
fn configure_writer(conn: &Connection) -> Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT).map_err(map_sqlite)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))
        .map_err(map_sqlite)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Unavailable(format!(
            "sqlite refused WAL mode (journal_mode is {mode}); is the folder on a network filesystem?"
        )));
    }
    // FULL: a commit is on disk when the caller hears of it.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(map_sqlite)?;
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(map_sqlite)?;
    // The writer revisits the same index pages batch after batch: keep them
    // in memory (64 MiB), and copy the WAL back into the database less
    // often (every 8,000 pages, 32 MiB, instead of 1,000), so that a hot
    // page is copied once per checkpoint rather than every few batches.
    conn.pragma_update(None, "cache_size", -65536)
        .map_err(map_sqlite)?;
    conn.pragma_update(None, "wal_autocheckpoint", 8000)
        .map_err(map_sqlite)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    // --- accounts -------------------------------------------------------
    async fn create_user(&self, user: NewUser) -> Result<UserId> {
        self.write(move |c| accounts::create_user(c, &user)).await
    }

    async fn user(&self, id: UserId) -> Result<Option<User>> {
        self.point(move |c| accounts::user(c, id)).await
    }

    async fn users(&self, after: UserId, limit: u32) -> Result<Vec<User>> {
        self.scan(move |c| accounts::users(c, after, limit)).await
    }

    async fn update_profile(&self, id: UserId, update: ProfileUpdate) -> Result<()> {
        self.write(move |c| accounts::update_profile(c, id, &update))
            .await
    }

    async fn set_password_hash(&self, id: UserId, hash: &str) -> Result<()> {
        let hash = hash.to_owned();
        self.write(move |c| accounts::set_password_hash(c, id, &hash))
            .await
    }

    async fn set_disabled(&self, id: UserId, disabled: bool) -> Result<()> {
        self.write(move |c| accounts::set_disabled(c, id, disabled))
            .await
    }

    // --- sessions -------------------------------------------------------
    async fn create_session(&self, session: Session) -> Result<()> {
        self.write(move |c| accounts::create_session(c, &session))
            .await
    }

    async fn session_by_token(&self, token_hash: &str) -> Result<Option<Session>> {
        let token_hash = token_hash.to_owned();
        self.point(move |c| accounts::session_by_token(c, &token_hash))
            .await
    }

    async fn session(&self, id: &SessionId) -> Result<Option<Session>> {
        let id = id.clone();
        self.point(move |c| accounts::session(c, &id)).await
    }

    async fn sessions(&self, user: UserId) -> Result<Vec<Session>> {
        self.scan(move |c| accounts::sessions(c, user)).await
    }

    async fn revoke_sessions(
        &self,
        user: UserId,
        only: Option<&SessionId>,
        keep: Option<&SessionId>,
        at: i64,
    ) -> Result<Vec<SessionId>> {
        let (only, keep) = (only.cloned(), keep.cloned());
        self.write(move |c| accounts::revoke_sessions(c, user, only.as_ref(), keep.as_ref(), at))
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
        let message = message.to_owned();
        self.write(move |c| friends::create_request(c, from, to, &message, at))
            .await
    }

    async fn friend_request(&self, id: FriendRequestId) -> Result<Option<FriendRequest>> {
        self.point(move |c| friends::request(c, id)).await
    }

    async fn pending_friend_requests(&self, user: UserId) -> Result<Vec<FriendRequest>> {
        self.scan(move |c| friends::pending_requests(c, user)).await
    }

    async fn accept_friend_request(
        &self,
        id: FriendRequestId,
        remark: Option<String>,
        category: CategoryId,
        at: i64,
    ) -> Result<ConversationId> {
        self.write(move |c| friends::accept_request(c, id, remark.as_deref(), category, at))
            .await
    }

    async fn refuse_friend_request(&self, id: FriendRequestId) -> Result<FriendRequest> {
        self.write(move |c| friends::refuse_request(c, id)).await
    }

    async fn friends(&self, user: UserId) -> Result<Vec<Friend>> {
        self.scan(move |c| friends::friends(c, user)).await
    }

    async fn friend(&self, user: UserId, other: UserId) -> Result<Option<Friend>> {
        self.point(move |c| friends::friend(c, user, other)).await
    }

    async fn update_friend(&self, user: UserId, other: UserId, update: FriendUpdate) -> Result<()> {
        self.write(move |c| friends::update_friend(c, user, other, &update))
            .await
    }

    async fn remove_friend(&self, a: UserId, b: UserId) -> Result<bool> {
        self.write(move |c| friends::remove_friend(c, a, b)).await
    }

    async fn categories(&self, user: UserId) -> Result<Vec<Category>> {
        self.scan(move |c| friends::categories(c, user)).await
    }

    async fn create_category(&self, user: UserId, name: &str, max: usize) -> Result<Category> {
        let name = name.to_owned();
        self.write(move |c| friends::create_category(c, user, &name, max))
            .await
    }

    async fn rename_category(&self, user: UserId, id: CategoryId, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.write(move |c| friends::rename_category(c, user, id, &name))
            .await
    }

    async fn delete_category(&self, user: UserId, id: CategoryId) -> Result<()> {
        self.write(move |c| friends::delete_category(c, user, id))
            .await
    }

    async fn block(&self, user: UserId, other: UserId, at: i64) -> Result<()> {
        self.write(move |c| friends::block(c, user, other, at))
            .await
    }

    async fn unblock(&self, user: UserId, other: UserId) -> Result<bool> {
        self.write(move |c| friends::unblock(c, user, other)).await
    }

    async fn blocked(&self, user: UserId) -> Result<Vec<(UserId, i64)>> {
        self.scan(move |c| friends::blocked(c, user)).await
    }

    async fn is_blocked_either(&self, a: UserId, b: UserId) -> Result<bool> {
        self.point(move |c| friends::is_blocked_either(c, a, b))
            .await
    }

    async fn direct_standing(&self, user: UserId, other: UserId) -> Result<DirectStanding> {
        self.point(move |c| friends::direct_standing(c, user, other))
            .await
    }

    async fn add_like(&self, from: UserId, to: UserId, day: i64, limit: u32) -> Result<u32> {
        self.write(move |c| friends::add_like(c, from, to, day, limit))
            .await
    }

    // --- conversations --------------------------------------------------
    async fn direct_conversation(&self, a: UserId, b: UserId) -> Result<Option<ConversationId>> {
        self.point(move |c| conversations::direct(c, a, b)).await
    }

    async fn ensure_direct_conversation(
        &self,
        a: UserId,
        b: UserId,
        at: i64,
    ) -> Result<ConversationId> {
        self.write(move |c| conversations::find_or_create_direct(c, a, b, at))
            .await
    }

    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>> {
        self.point(move |c| conversations::conversation(c, id))
            .await
    }

    async fn append(&self, append: Append) -> Result<Appended> {
        self.write(move |c| conversations::append(c, &append)).await
    }

    async fn event(&self, conversation: ConversationId, seq: Seq) -> Result<Option<StoredEvent>> {
        self.point(move |c| conversations::event(c, conversation, seq))
            .await
    }

    async fn events(
        &self,
        conversation: ConversationId,
        range: EventRange,
    ) -> Result<Vec<StoredEvent>> {
        self.scan(move |c| conversations::events(c, conversation, range))
            .await
    }

    async fn conversation_states(&self, user: UserId) -> Result<Vec<ConversationState>> {
        self.scan(move |c| conversations::states(c, user)).await
    }

    async fn conversation_state(
        &self,
        user: UserId,
        conversation: ConversationId,
    ) -> Result<Option<ConversationState>> {
        self.point(move |c| conversations::state(c, user, conversation))
            .await
    }

    async fn mark_read(&self, user: UserId, conversation: ConversationId, seq: Seq) -> Result<Seq> {
        self.write(move |c| conversations::mark_read(c, user, conversation, seq))
            .await
    }
}

#[async_trait]
impl GroupStore for SqliteStore {
    async fn create_group(&self, group: NewGroup) -> Result<Group> {
        self.write(move |c| groups::change::create_group(c, &group))
            .await
    }

    async fn group(&self, id: GroupId) -> Result<Option<Group>> {
        self.point(move |c| groups::group(c, id)).await
    }

    async fn group_of_conversation(&self, conversation: ConversationId) -> Result<Option<GroupId>> {
        self.point(move |c| groups::group_of_conversation(c, conversation))
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
        self.write(move |c| groups::change::change_group(c, group, actor, &change, &notice, time))
            .await
    }

    async fn member(&self, group: GroupId, user: UserId) -> Result<Option<Member>> {
        self.point(move |c| groups::member(c, group, user)).await
    }

    async fn members(&self, group: GroupId, after: UserId, limit: u32) -> Result<Vec<Member>> {
        self.scan(move |c| groups::members(c, group, after, limit))
            .await
    }

    async fn member_ids(&self, group: GroupId) -> Result<Vec<UserId>> {
        self.scan(move |c| groups::member_ids(c, group)).await
    }

    async fn managers(&self, group: GroupId) -> Result<Vec<UserId>> {
        self.scan(move |c| groups::managers(c, group)).await
    }

    async fn member_changes(&self, group: GroupId, since: u64) -> Result<Vec<MemberChange>> {
        self.scan(move |c| groups::member_changes(c, group, since))
            .await
    }

    async fn groups_of(&self, user: UserId) -> Result<Vec<GroupId>> {
        self.scan(move |c| groups::groups_of(c, user)).await
    }

    async fn share_group(&self, a: UserId, b: UserId) -> Result<bool> {
        self.point(move |c| groups::share_group(c, a, b)).await
    }

    async fn is_banned(&self, group: GroupId, user: UserId) -> Result<bool> {
        self.point(move |c| groups::joins::is_banned(c, group, user))
            .await
    }

    async fn unban(&self, group: GroupId, user: UserId) -> Result<bool> {
        self.write(move |c| groups::joins::unban(c, group, user))
            .await
    }

    async fn create_join_request(&self, request: NewJoinRequest) -> Result<JoinRequest> {
        self.write(move |c| groups::joins::create_join_request(c, &request))
            .await
    }

    async fn join_request(&self, id: JoinRequestId) -> Result<Option<JoinRequest>> {
        self.point(move |c| groups::joins::join_request(c, id))
            .await
    }

    async fn pending_applications(&self, group: GroupId) -> Result<Vec<JoinRequest>> {
        self.scan(move |c| groups::joins::pending_applications(c, group))
            .await
    }

    async fn user_join_requests(&self, user: UserId) -> Result<Vec<JoinRequest>> {
        self.scan(move |c| groups::joins::user_join_requests(c, user))
            .await
    }

    async fn close_join_request(
        &self,
        id: JoinRequestId,
        status: RequestStatus,
        reviewer: Option<UserId>,
        reason: Option<String>,
    ) -> Result<JoinRequest> {
        self.write(move |c| {
            groups::joins::close_join_request(c, id, status, reviewer, reason.as_deref())
        })
        .await
    }

    async fn create_invite_link(&self, link: InviteLink) -> Result<()> {
        self.write(move |c| groups::joins::create_invite_link(c, &link))
            .await
    }

    async fn invite_link(&self, code: &str) -> Result<Option<InviteLink>> {
        let code = code.to_owned();
        self.point(move |c| groups::joins::invite_link(c, &code))
            .await
    }

    async fn announcements(&self, group: GroupId) -> Result<Vec<Announcement>> {
        self.scan(move |c| groups::content::announcements(c, group))
            .await
    }

    async fn announcement(&self, id: AnnouncementId) -> Result<Option<Announcement>> {
        self.point(move |c| groups::content::announcement(c, id))
            .await
    }

    async fn confirm_announcement(&self, id: AnnouncementId, user: UserId, at: i64) -> Result<()> {
        self.write(move |c| groups::content::confirm_announcement(c, id, user, at))
            .await
    }

    async fn confirmations(&self, id: AnnouncementId) -> Result<Vec<(UserId, i64)>> {
        self.scan(move |c| groups::content::confirmations(c, id))
            .await
    }

    async fn essences(&self, group: GroupId) -> Result<Vec<Essence>> {
        self.scan(move |c| groups::content::essences(c, group))
            .await
    }

    async fn consume_daily(&self, counters: &[DailyCounter], day: i64) -> Result<Vec<u32>> {
        let counters = counters.to_vec();
        self.write(move |c| groups::content::consume_daily(c, &counters, day))
            .await
    }

    async fn daily_count(&self, key: &str, day: i64) -> Result<u32> {
        let key = key.to_owned();
        self.point(move |c| groups::content::daily_count(c, &key, day))
            .await
    }

    async fn search_groups(&self, search: GroupSearch) -> Result<Vec<Group>> {
        self.scan(move |c| groups::search(c, &search)).await
    }

    async fn readers(
        &self,
        conversation: ConversationId,
        seq: Seq,
        list: bool,
    ) -> Result<(u64, Vec<UserId>)> {
        self.scan(move |c| groups::readers(c, conversation, seq, list))
            .await
    }

    async fn top_senders(
        &self,
        conversation: ConversationId,
        from_ms: i64,
        to_ms: i64,
        limit: u32,
    ) -> Result<Vec<(UserId, u64)>> {
        self.scan(move |c| groups::top_senders(c, conversation, from_ms, to_ms, limit))
            .await
    }
}
