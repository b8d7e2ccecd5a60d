//! The database schema as an ordered list of migrations, safe to apply from
//! several nodes starting at once.
//!
//! `schema_version` holds one row per applied script. Each script runs in its
//! own transaction under a transaction-scoped advisory lock, so nodes that
//! start together queue on the lock: the first applies what is missing, the
//! others find it applied. A failing script rolls back with its version row.
//! To change the schema, append a new script to [`MIGRATIONS`]; never edit
//! one that has shipped.

use deadpool_postgres::Client;
use qun_domain::Error;

use crate::error::Outcome;
use crate::sql::{self, Lock};

/// Migration scripts; number `i + 1` is `MIGRATIONS[i]`.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: accounts, sessions, friends, groups, conversations and their events
    // (the same model as the SQLite adapter's first migration).
    r#"
    CREATE TABLE users (
        id                   BIGINT  PRIMARY KEY,   -- the qun number
        nickname             TEXT    NOT NULL,
        signature            TEXT    NOT NULL DEFAULT '',
        avatar               TEXT,
        password_hash        TEXT    NOT NULL,
        disabled             BOOLEAN NOT NULL DEFAULT false,
        created_at           BIGINT  NOT NULL,
        likes                BIGINT  NOT NULL DEFAULT 0,
        accept_temp_sessions BOOLEAN NOT NULL DEFAULT true
    );

    -- Named counters, e.g. the last automatically assigned user number.
    CREATE TABLE counters (
        name  TEXT   PRIMARY KEY,
        value BIGINT NOT NULL
    );

    CREATE TABLE sessions (
        id          TEXT   PRIMARY KEY,
        user_id     BIGINT NOT NULL REFERENCES users (id),
        token_hash  TEXT   NOT NULL UNIQUE,
        device_kind TEXT   NOT NULL,
        device_name TEXT   NOT NULL,
        created_at  BIGINT NOT NULL,
        expires_at  BIGINT NOT NULL,
        revoked_at  BIGINT
    );
    CREATE INDEX sessions_by_user ON sessions (user_id);

    CREATE TABLE friend_requests (
        id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        from_user  BIGINT NOT NULL REFERENCES users (id),
        to_user    BIGINT NOT NULL REFERENCES users (id),
        message    TEXT   NOT NULL,
        status     TEXT   NOT NULL CHECK (status IN ('pending', 'accepted', 'refused')),
        created_at BIGINT NOT NULL
    );
    -- At most one pending request per direction.
    CREATE UNIQUE INDEX friend_requests_pending_from
        ON friend_requests (from_user, to_user) WHERE status = 'pending';
    CREATE INDEX friend_requests_pending_to
        ON friend_requests (to_user) WHERE status = 'pending';

    CREATE TABLE categories (
        id    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,   -- never 0, the implicit default
        owner BIGINT NOT NULL REFERENCES users (id),
        name  TEXT   NOT NULL
    );
    CREATE INDEX categories_by_owner ON categories (owner);

    -- Every append updates its conversation's row; free space in each page
    -- lets those updates stay on the page (HOT) instead of growing the table.
    CREATE TABLE conversations (
        id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        kind       TEXT   NOT NULL CHECK (kind IN ('direct', 'group')),
        -- For direct conversations, the two users, smaller number first.
        direct_lo  BIGINT REFERENCES users (id),
        direct_hi  BIGINT REFERENCES users (id),
        -- For group conversations, the group (no foreign key: the group row
        -- refers to its conversation and is inserted after it).
        group_id   BIGINT UNIQUE,
        last_seq   BIGINT NOT NULL DEFAULT 0,
        last_time  BIGINT NOT NULL DEFAULT 0,
        created_at BIGINT NOT NULL,
        UNIQUE (direct_lo, direct_hi),
        CHECK ((kind = 'direct') = (group_id IS NULL))
    ) WITH (fillfactor = 70);

    -- Participants of a conversation with their read positions: both users of
    -- a direct conversation, every member of a group.
    CREATE TABLE members (
        conversation BIGINT NOT NULL REFERENCES conversations (id),
        user_id      BIGINT NOT NULL REFERENCES users (id),
        read_seq     BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (conversation, user_id)
    ) WITH (fillfactor = 80);
    CREATE INDEX members_by_user ON members (user_id);

    CREATE TABLE friends (
        owner        BIGINT NOT NULL REFERENCES users (id),
        friend       BIGINT NOT NULL REFERENCES users (id),
        remark       TEXT,
        category     BIGINT NOT NULL DEFAULT 0,
        conversation BIGINT NOT NULL REFERENCES conversations (id),
        since        BIGINT NOT NULL,
        PRIMARY KEY (owner, friend)
    );

    CREATE TABLE blocks (
        owner BIGINT NOT NULL REFERENCES users (id),
        other BIGINT NOT NULL REFERENCES users (id),
        at    BIGINT NOT NULL,
        PRIMARY KEY (owner, other)
    );
    CREATE INDEX blocks_by_other ON blocks (other);

    CREATE TABLE likes (
        from_user BIGINT NOT NULL REFERENCES users (id),
        to_user   BIGINT NOT NULL REFERENCES users (id),
        day       BIGINT NOT NULL,
        count     BIGINT NOT NULL,
        PRIMARY KEY (from_user, to_user, day)
    );

    -- Every event of every conversation, keyed by its place in the stream;
    -- `id` is the message id. The sender has no foreign key: a notice by a
    -- server administrator is sent by user 0.
    CREATE TABLE events (
        conversation  BIGINT  NOT NULL REFERENCES conversations (id),
        seq           BIGINT  NOT NULL,
        id            BIGINT  NOT NULL GENERATED ALWAYS AS IDENTITY,
        sender        BIGINT  NOT NULL,
        client_msg_id TEXT    NOT NULL,
        time          BIGINT  NOT NULL,
        kind          TEXT    NOT NULL CHECK (kind IN ('message', 'recall', 'notice')),
        -- JSON: a message's array of segments, or a notice.
        content       TEXT    NOT NULL DEFAULT '[]',
        target        BIGINT,                          -- a recall's target seq
        recalled      BOOLEAN NOT NULL DEFAULT false,
        PRIMARY KEY (conversation, seq)
    );
    -- Idempotency: a sender's client message id is stored once, whichever
    -- node receives it. Notices carry generated ids outside of it, so no
    -- client id can collide with one.
    CREATE UNIQUE INDEX events_by_client_id
        ON events (sender, client_msg_id) WHERE kind <> 'notice';

    -- Who each message mentions (user 0: everyone), for mention counts.
    CREATE TABLE mentions (
        conversation BIGINT NOT NULL,
        user_id      BIGINT NOT NULL,
        seq          BIGINT NOT NULL,
        PRIMARY KEY (conversation, user_id, seq)
    );

    CREATE TABLE groups (
        id                 BIGINT  PRIMARY KEY,   -- the group number
        conversation       BIGINT  NOT NULL UNIQUE REFERENCES conversations (id),
        name               TEXT    NOT NULL,
        intro              TEXT    NOT NULL,
        avatar             TEXT,
        category           TEXT    NOT NULL,
        tags               TEXT[]  NOT NULL DEFAULT '{}',
        listed             BOOLEAN NOT NULL,
        tier               BIGINT  NOT NULL,
        owner              BIGINT  NOT NULL REFERENCES users (id),
        join_mode          TEXT    NOT NULL CHECK (join_mode IN
            ('open', 'approval', 'question', 'question_auto', 'invite_only', 'closed')),
        join_question      TEXT,
        join_answer        TEXT,
        members_may_invite BOOLEAN NOT NULL,
        history            TEXT    NOT NULL CHECK (history IN ('from_join', 'full')),
        muted              BOOLEAN NOT NULL DEFAULT false,
        member_count       BIGINT  NOT NULL,
        member_version     BIGINT  NOT NULL,
        created_at         BIGINT  NOT NULL,
        dissolved_at       BIGINT
    );
    CREATE INDEX groups_by_owner ON groups (owner) WHERE dissolved_at IS NULL;
    CREATE INDEX groups_by_category ON groups (category) WHERE dissolved_at IS NULL;

    CREATE TABLE group_members (
        group_id         BIGINT NOT NULL REFERENCES groups (id),
        user_id          BIGINT NOT NULL REFERENCES users (id),
        role             TEXT   NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
        card             TEXT,
        title            TEXT,
        title_expires_at BIGINT,
        joined_at        BIGINT NOT NULL,
        join_seq         BIGINT NOT NULL,
        last_spoke_at    BIGINT,
        messages         BIGINT NOT NULL DEFAULT 0,
        muted_until      BIGINT,
        inviter          BIGINT,
        approver         BIGINT,
        PRIMARY KEY (group_id, user_id)
    ) WITH (fillfactor = 80);
    CREATE INDEX group_members_by_user ON group_members (user_id);
    CREATE INDEX group_members_by_role ON group_members (group_id, role);

    -- The latest change of each member entry, for incremental member lists.
    CREATE TABLE group_member_changes (
        group_id BIGINT  NOT NULL REFERENCES groups (id),
        user_id  BIGINT  NOT NULL,
        version  BIGINT  NOT NULL,
        removed  BOOLEAN NOT NULL,
        PRIMARY KEY (group_id, user_id)
    );
    CREATE INDEX group_member_changes_by_version ON group_member_changes (group_id, version);

    CREATE TABLE group_bans (
        group_id BIGINT NOT NULL REFERENCES groups (id),
        user_id  BIGINT NOT NULL,
        by_user  BIGINT NOT NULL,
        at       BIGINT NOT NULL,
        PRIMARY KEY (group_id, user_id)
    );

    CREATE TABLE join_requests (
        id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        group_id   BIGINT NOT NULL REFERENCES groups (id),
        user_id    BIGINT NOT NULL REFERENCES users (id),
        kind       TEXT   NOT NULL CHECK (kind IN ('application', 'invitation')),
        message    TEXT   NOT NULL,
        answer     TEXT,
        inviter    BIGINT,
        status     TEXT   NOT NULL CHECK (status IN ('pending', 'accepted', 'refused')),
        reviewer   BIGINT,
        reason     TEXT,
        created_at BIGINT NOT NULL
    );
    -- At most one pending request of each kind per user and group.
    CREATE UNIQUE INDEX join_requests_pending
        ON join_requests (group_id, user_id, kind) WHERE status = 'pending';
    CREATE INDEX join_requests_pending_by_user
        ON join_requests (user_id) WHERE status = 'pending';

    CREATE TABLE invite_links (
        code       TEXT   PRIMARY KEY,
        group_id   BIGINT NOT NULL REFERENCES groups (id),
        creator    BIGINT NOT NULL,
        expires_at BIGINT,
        max_uses   BIGINT,
        uses       BIGINT NOT NULL DEFAULT 0,
        created_at BIGINT NOT NULL
    );

    CREATE TABLE announcements (
        id              BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        group_id        BIGINT  NOT NULL REFERENCES groups (id),
        author          BIGINT  NOT NULL,
        title           TEXT    NOT NULL,
        body            TEXT    NOT NULL,
        pinned          BOOLEAN NOT NULL,
        require_confirm BOOLEAN NOT NULL,
        entrance        BOOLEAN NOT NULL,
        created_at      BIGINT  NOT NULL,
        edited_at       BIGINT
    );
    CREATE INDEX announcements_by_group ON announcements (group_id);

    CREATE TABLE announcement_confirmations (
        announcement BIGINT NOT NULL REFERENCES announcements (id) ON DELETE CASCADE,
        user_id      BIGINT NOT NULL,
        at           BIGINT NOT NULL,
        PRIMARY KEY (announcement, user_id)
    );

    CREATE TABLE essences (
        group_id BIGINT NOT NULL REFERENCES groups (id),
        seq      BIGINT NOT NULL,
        by_user  BIGINT NOT NULL,
        at       BIGINT NOT NULL,
        PRIMARY KEY (group_id, seq)
    );

    -- Per-day usage counters (e.g. @all per group per day).
    CREATE TABLE daily_counters (
        key   TEXT   NOT NULL,
        day   BIGINT NOT NULL,
        count BIGINT NOT NULL,
        PRIMARY KEY (key, day)
    );
    "#,
];

/// Brings the database to the newest schema; returns how many scripts this
/// call applied (0 when another node did, or nothing was missing).
pub(crate) async fn migrate(client: &mut Client) -> Result<usize, Error> {
    migrate_with(client, MIGRATIONS).await
}

/// Applies the scripts of `migrations` the database has not seen yet, each in
/// one transaction together with its `schema_version` row.
pub(crate) async fn migrate_with(client: &mut Client, migrations: &[&str]) -> Result<usize, Error> {
    let mut applied = 0;
    loop {
        match step(client, migrations).await.map_err(Error::from)? {
            Some(version) => {
                tracing::info!(version, "applied postgres schema migration");
                applied += 1;
            }
            None => return Ok(applied),
        }
    }
}

/// Applies the next missing script, if any; returns its version.
async fn step(client: &mut Client, migrations: &[&str]) -> Outcome<Option<usize>> {
    let tx = client.transaction().await?;
    // A migration may take long (an index on a big table): no statement
    // timeout here, and none for the wait on a node that is migrating.
    tx.batch_execute("SET LOCAL statement_timeout = 0").await?;
    sql::lock(&tx, Lock::Migrations).await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version    BIGINT      PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let current: i64 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
        .await?
        .try_get(0)?;
    let current = usize::try_from(current)
        .map_err(|_| Error::Internal(format!("invalid schema version {current}")))?;
    if current > migrations.len() {
        return Err(Error::Internal(format!(
            "the database has schema version {current}, newer than this qun knows ({}); \
             upgrade qun instead",
            migrations.len()
        ))
        .into());
    }
    let Some(script) = migrations.get(current) else {
        tx.commit().await?;
        return Ok(None);
    };
    let version = current + 1;
    tx.batch_execute(script).await?;
    let stored = i64::try_from(version)
        .map_err(|_| Error::Internal(format!("invalid schema version {version}")))?;
    tx.execute(
        "INSERT INTO schema_version (version) VALUES ($1)",
        &[&stored],
    )
    .await?;
    tx.commit().await?;
    Ok(Some(version))
}
