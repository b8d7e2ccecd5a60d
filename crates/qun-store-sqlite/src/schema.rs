//! The database schema as an ordered list of migrations.
//!
//! `PRAGMA user_version` records how many migrations a file has seen. Opening a
//! data folder applies the missing ones in order, each in its own transaction,
//! so an older folder is upgraded in place. To change the schema, append a new
//! script to [`MIGRATIONS`]; never edit one that has shipped.

use qun_domain::Error;
use rusqlite::Connection;

use crate::error::map_sqlite;

/// Migration scripts; number `i + 1` is `MIGRATIONS[i]`.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: accounts, sessions, friends, groups, conversations and their events.
    // qun has not been released yet, so this script still grows in place.
    r#"
    CREATE TABLE users (
        id                   INTEGER PRIMARY KEY,   -- the qun number
        nickname             TEXT    NOT NULL,
        signature            TEXT    NOT NULL DEFAULT '',
        avatar               TEXT,
        password_hash        TEXT    NOT NULL,
        disabled             INTEGER NOT NULL DEFAULT 0,
        created_at           INTEGER NOT NULL,
        likes                INTEGER NOT NULL DEFAULT 0,
        accept_temp_sessions INTEGER NOT NULL DEFAULT 1
    );

    -- Named counters, e.g. the last automatically assigned user number.
    CREATE TABLE counters (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE sessions (
        id          TEXT    PRIMARY KEY,
        user_id     INTEGER NOT NULL REFERENCES users (id),
        token_hash  TEXT    NOT NULL UNIQUE,
        device_kind TEXT    NOT NULL,
        device_name TEXT    NOT NULL,
        created_at  INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL,
        revoked_at  INTEGER
    );
    CREATE INDEX sessions_by_user ON sessions (user_id);

    CREATE TABLE friend_requests (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        from_user  INTEGER NOT NULL REFERENCES users (id),
        to_user    INTEGER NOT NULL REFERENCES users (id),
        message    TEXT    NOT NULL,
        status     TEXT    NOT NULL CHECK (status IN ('pending', 'accepted', 'refused')),
        created_at INTEGER NOT NULL
    );
    -- At most one pending request per direction.
    CREATE UNIQUE INDEX friend_requests_pending_from
        ON friend_requests (from_user, to_user) WHERE status = 'pending';
    CREATE INDEX friend_requests_pending_to
        ON friend_requests (to_user) WHERE status = 'pending';

    CREATE TABLE categories (
        id    INTEGER PRIMARY KEY AUTOINCREMENT,   -- never 0, the implicit default
        owner INTEGER NOT NULL REFERENCES users (id),
        name  TEXT    NOT NULL
    );
    CREATE INDEX categories_by_owner ON categories (owner);

    CREATE TABLE conversations (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        kind       TEXT    NOT NULL CHECK (kind IN ('direct', 'group')),
        -- For direct conversations, the two users, smaller number first.
        direct_lo  INTEGER REFERENCES users (id),
        direct_hi  INTEGER REFERENCES users (id),
        -- For group conversations, the group (no foreign key: the group row
        -- refers to its conversation and is inserted after it).
        group_id   INTEGER UNIQUE,
        last_seq   INTEGER NOT NULL DEFAULT 0,
        last_time  INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        UNIQUE (direct_lo, direct_hi),
        CHECK ((kind = 'direct') = (group_id IS NULL))
    );

    -- Participants of a conversation with their read positions: both users of
    -- a direct conversation, every member of a group.
    CREATE TABLE members (
        conversation INTEGER NOT NULL REFERENCES conversations (id),
        user_id      INTEGER NOT NULL REFERENCES users (id),
        read_seq     INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (conversation, user_id)
    ) WITHOUT ROWID;
    CREATE INDEX members_by_user ON members (user_id);

    CREATE TABLE friends (
        owner        INTEGER NOT NULL REFERENCES users (id),
        friend       INTEGER NOT NULL REFERENCES users (id),
        remark       TEXT,
        category     INTEGER NOT NULL DEFAULT 0,
        conversation INTEGER NOT NULL REFERENCES conversations (id),
        since        INTEGER NOT NULL,
        PRIMARY KEY (owner, friend)
    ) WITHOUT ROWID;

    CREATE TABLE blocks (
        owner INTEGER NOT NULL REFERENCES users (id),
        other INTEGER NOT NULL REFERENCES users (id),
        at    INTEGER NOT NULL,
        PRIMARY KEY (owner, other)
    ) WITHOUT ROWID;
    CREATE INDEX blocks_by_other ON blocks (other);

    CREATE TABLE likes (
        from_user INTEGER NOT NULL REFERENCES users (id),
        to_user   INTEGER NOT NULL REFERENCES users (id),
        day       INTEGER NOT NULL,
        count     INTEGER NOT NULL,
        PRIMARY KEY (from_user, to_user, day)
    ) WITHOUT ROWID;

    -- Every event of every conversation; the row id is the message id. The
    -- sender has no foreign key: a notice by a server administrator is sent
    -- by user 0.
    CREATE TABLE events (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        conversation  INTEGER NOT NULL REFERENCES conversations (id),
        seq           INTEGER NOT NULL,
        sender        INTEGER NOT NULL,
        client_msg_id TEXT    NOT NULL,
        time          INTEGER NOT NULL,
        kind          TEXT    NOT NULL CHECK (kind IN ('message', 'recall', 'notice')),
        -- JSON: a message's array of segments, or a notice.
        content       TEXT    NOT NULL DEFAULT '[]',
        target        INTEGER,                         -- a recall's target seq
        recalled      INTEGER NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX events_by_seq ON events (conversation, seq);
    -- Idempotency: a sender's client message id is stored once. Notices carry
    -- generated ids outside of it, so no client id can collide with one.
    CREATE UNIQUE INDEX events_by_client_id
        ON events (sender, client_msg_id) WHERE kind <> 'notice';

    -- Who each message mentions (user 0: everyone), for mention counts.
    CREATE TABLE mentions (
        conversation INTEGER NOT NULL,
        user_id      INTEGER NOT NULL,
        seq          INTEGER NOT NULL,
        PRIMARY KEY (conversation, user_id, seq)
    ) WITHOUT ROWID;

    CREATE TABLE groups (
        id                 INTEGER PRIMARY KEY,   -- the group number
        conversation       INTEGER NOT NULL UNIQUE REFERENCES conversations (id),
        name               TEXT    NOT NULL,
        intro              TEXT    NOT NULL,
        avatar             TEXT,
        category           TEXT    NOT NULL,
        tags               TEXT    NOT NULL DEFAULT '[]',   -- JSON array of strings
        listed             INTEGER NOT NULL,
        tier               INTEGER NOT NULL,
        owner              INTEGER NOT NULL REFERENCES users (id),
        join_mode          TEXT    NOT NULL CHECK (join_mode IN
            ('open', 'approval', 'question', 'question_auto', 'invite_only', 'closed')),
        join_question      TEXT,
        join_answer        TEXT,
        members_may_invite INTEGER NOT NULL,
        history            TEXT    NOT NULL CHECK (history IN ('from_join', 'full')),
        muted              INTEGER NOT NULL DEFAULT 0,
        member_count       INTEGER NOT NULL,
        member_version     INTEGER NOT NULL,
        created_at         INTEGER NOT NULL,
        dissolved_at       INTEGER
    );
    CREATE INDEX groups_by_owner ON groups (owner) WHERE dissolved_at IS NULL;
    CREATE INDEX groups_by_category ON groups (category) WHERE dissolved_at IS NULL;

    CREATE TABLE group_members (
        group_id         INTEGER NOT NULL REFERENCES groups (id),
        user_id          INTEGER NOT NULL REFERENCES users (id),
        role             TEXT    NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
        card             TEXT,
        title            TEXT,
        title_expires_at INTEGER,
        joined_at        INTEGER NOT NULL,
        join_seq         INTEGER NOT NULL,
        last_spoke_at    INTEGER,
        messages         INTEGER NOT NULL DEFAULT 0,
        muted_until      INTEGER,
        inviter          INTEGER,
        approver         INTEGER,
        PRIMARY KEY (group_id, user_id)
    ) WITHOUT ROWID;
    CREATE INDEX group_members_by_user ON group_members (user_id);
    CREATE INDEX group_members_by_role ON group_members (group_id, role);

    -- The latest change of each member entry, for incremental member lists.
    CREATE TABLE group_member_changes (
        group_id INTEGER NOT NULL REFERENCES groups (id),
        user_id  INTEGER NOT NULL,
        version  INTEGER NOT NULL,
        removed  INTEGER NOT NULL,
        PRIMARY KEY (group_id, user_id)
    ) WITHOUT ROWID;
    CREATE INDEX group_member_changes_by_version ON group_member_changes (group_id, version);

    CREATE TABLE group_bans (
        group_id INTEGER NOT NULL REFERENCES groups (id),
        user_id  INTEGER NOT NULL,
        by_user  INTEGER NOT NULL,
        at       INTEGER NOT NULL,
        PRIMARY KEY (group_id, user_id)
    ) WITHOUT ROWID;

    CREATE TABLE join_requests (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        group_id   INTEGER NOT NULL REFERENCES groups (id),
        user_id    INTEGER NOT NULL REFERENCES users (id),
        kind       TEXT    NOT NULL CHECK (kind IN ('application', 'invitation')),
        message    TEXT    NOT NULL,
        answer     TEXT,
        inviter    INTEGER,
        status     TEXT    NOT NULL CHECK (status IN ('pending', 'accepted', 'refused')),
        reviewer   INTEGER,
        reason     TEXT,
        created_at INTEGER NOT NULL
    );
    -- At most one pending request of each kind per user and group.
    CREATE UNIQUE INDEX join_requests_pending
        ON join_requests (group_id, user_id, kind) WHERE status = 'pending';
    CREATE INDEX join_requests_pending_by_user
        ON join_requests (user_id) WHERE status = 'pending';

    CREATE TABLE invite_links (
        code       TEXT    PRIMARY KEY,
        group_id   INTEGER NOT NULL REFERENCES groups (id),
        creator    INTEGER NOT NULL,
        expires_at INTEGER,
        max_uses   INTEGER,
        uses       INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE announcements (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        group_id        INTEGER NOT NULL REFERENCES groups (id),
        author          INTEGER NOT NULL,
        title           TEXT    NOT NULL,
        body            TEXT    NOT NULL,
        pinned          INTEGER NOT NULL,
        require_confirm INTEGER NOT NULL,
        entrance        INTEGER NOT NULL,
        created_at      INTEGER NOT NULL,
        edited_at       INTEGER
    );
    CREATE INDEX announcements_by_group ON announcements (group_id);

    CREATE TABLE announcement_confirmations (
        announcement INTEGER NOT NULL REFERENCES announcements (id) ON DELETE CASCADE,
        user_id      INTEGER NOT NULL,
        at           INTEGER NOT NULL,
        PRIMARY KEY (announcement, user_id)
    ) WITHOUT ROWID;

    CREATE TABLE essences (
        group_id INTEGER NOT NULL REFERENCES groups (id),
        seq      INTEGER NOT NULL,
        by_user  INTEGER NOT NULL,
        at       INTEGER NOT NULL,
        PRIMARY KEY (group_id, seq)
    ) WITHOUT ROWID;

    -- Per-day usage counters (e.g. @all per group per day).
    CREATE TABLE daily_counters (
        key   TEXT    NOT NULL,
        day   INTEGER NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (key, day)
    ) WITHOUT ROWID;
    "#,
];

/// Brings the database to the newest schema.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), Error> {
    migrate_with(conn, MIGRATIONS)
}

/// Applies the scripts of `migrations` the database has not seen yet, each in
/// one transaction together with the new `user_version`.
fn migrate_with(conn: &mut Connection, migrations: &[&str]) -> Result<(), Error> {
    let current = version(conn)?;
    if current > migrations.len() {
        return Err(Error::Internal(format!(
            "the database has schema version {current}, newer than this qun knows ({}); \
             upgrade qun instead",
            migrations.len()
        )));
    }
    for (index, script) in migrations.iter().enumerate().skip(current) {
        let version = index + 1;
        let tx = conn.transaction().map_err(map_sqlite)?;
        tx.execute_batch(script).map_err(map_sqlite)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(map_sqlite)?;
        tx.commit().map_err(map_sqlite)?;
        tracing::info!(version, "applied sqlite schema migration");
    }
    Ok(())
}

/// The schema version of an open database.
fn version(conn: &Connection) -> Result<usize, Error> {
    let v: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(map_sqlite)?;
    usize::try_from(v).map_err(|_| Error::Internal(format!("invalid schema version {v}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version_of(conn: &Connection) -> usize {
        version(conn).unwrap()
    }

    #[test]
    fn a_new_migration_upgrades_an_existing_database_and_keeps_its_rows() {
        let mut conn = Connection::open_in_memory().unwrap();
        let first = ["CREATE TABLE t (a INTEGER)"];
        migrate_with(&mut conn, &first).unwrap();
        conn.execute("INSERT INTO t (a) VALUES (7)", []).unwrap();
        assert_eq!(version_of(&conn), 1);

        let second = [
            "CREATE TABLE t (a INTEGER)",
            "ALTER TABLE t ADD COLUMN b TEXT",
        ];
        migrate_with(&mut conn, &second).unwrap();
        assert_eq!(version_of(&conn), 2);
        let (a, b): (i64, Option<String>) = conn
            .query_row("SELECT a, b FROM t", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        assert_eq!((a, b), (7, None));

        // Already up to date: nothing runs again.
        migrate_with(&mut conn, &second).unwrap();
        assert_eq!(version_of(&conn), 2);
    }

    #[test]
    fn a_failing_migration_leaves_the_previous_version() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate_with(&mut conn, &["CREATE TABLE t (a INTEGER)"]).unwrap();
        let broken = ["CREATE TABLE t (a INTEGER)", "CREATE TABLE u (x); NOT SQL"];
        assert!(migrate_with(&mut conn, &broken).is_err());
        assert_eq!(version_of(&conn), 1);
        let u_exists: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'u'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(u_exists, 0);
    }

    #[test]
    fn a_database_from_a_newer_version_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate_with(&mut conn, &["SELECT 1", "SELECT 2"]).unwrap();
        assert!(migrate_with(&mut conn, &["SELECT 1"]).is_err());
    }

    #[test]
    fn the_shipped_schema_applies() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(version_of(&conn), MIGRATIONS.len());
    }
}
