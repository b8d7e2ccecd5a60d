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
    // 1: accounts, sessions, friends, conversations and their events.
    r#"
    CREATE TABLE users (
        id            INTEGER PRIMARY KEY,   -- the qun number
        nickname      TEXT    NOT NULL,
        signature     TEXT    NOT NULL DEFAULT '',
        avatar        TEXT,
        password_hash TEXT    NOT NULL,
        disabled      INTEGER NOT NULL DEFAULT 0,
        created_at    INTEGER NOT NULL,
        likes         INTEGER NOT NULL DEFAULT 0
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
        kind       TEXT    NOT NULL CHECK (kind IN ('direct')),
        -- For direct conversations, the two users, smaller number first.
        direct_lo  INTEGER REFERENCES users (id),
        direct_hi  INTEGER REFERENCES users (id),
        last_seq   INTEGER NOT NULL DEFAULT 0,
        last_time  INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        UNIQUE (direct_lo, direct_hi)
    );

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

    -- Every event of every conversation; the row id is the message id.
    CREATE TABLE events (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        conversation  INTEGER NOT NULL REFERENCES conversations (id),
        seq           INTEGER NOT NULL,
        sender        INTEGER NOT NULL REFERENCES users (id),
        client_msg_id TEXT    NOT NULL,
        time          INTEGER NOT NULL,
        kind          TEXT    NOT NULL CHECK (kind IN ('message', 'recall')),
        segments      TEXT    NOT NULL DEFAULT '[]',   -- JSON array of segments
        target        INTEGER,                         -- a recall's target seq
        recalled      INTEGER NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX events_by_seq ON events (conversation, seq);
    -- Idempotency: a sender's client message id is stored once.
    CREATE UNIQUE INDEX events_by_client_id ON events (sender, client_msg_id);
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
