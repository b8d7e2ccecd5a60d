//! Conversations, their event streams and each participant's read position.
//!
//! The conversation row carries `last_seq`; an append bumps it in the same
//! transaction that inserts the event, and the single writer makes the
//! read-then-bump race-free, so sequence numbers are gap-free and never reused.

use qun_domain::model::{
    Append, AppendBody, Appended, Conversation, ConversationKind, ConversationState, EventBody,
    EventRange, Segment, StoredEvent,
};
use qun_domain::{ConversationId, MessageId, Seq, UserId};
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error::{conflict, corrupt, not_found, Outcome};

fn kind_from_str(kind: &str) -> Outcome<ConversationKind> {
    match kind {
        "direct" => Ok(ConversationKind::Direct),
        other => Err(corrupt(&format!("conversation kind {other:?}"))),
    }
}

/// The two users of a direct conversation in stored order.
fn pair(a: UserId, b: UserId) -> (u64, u64) {
    if a <= b {
        (a.0, b.0)
    } else {
        (b.0, a.0)
    }
}

/// The direct conversation of two users, if any.
pub(crate) fn direct(conn: &Connection, a: UserId, b: UserId) -> Outcome<Option<ConversationId>> {
    let (lo, hi) = pair(a, b);
    Ok(conn
        .prepare_cached("SELECT id FROM conversations WHERE direct_lo = ?1 AND direct_hi = ?2")?
        .query_row([lo, hi], |row| row.get(0).map(ConversationId))
        .optional()?)
}

/// The direct conversation of two users, created with both as members if new.
pub(crate) fn find_or_create_direct(
    conn: &Connection,
    a: UserId,
    b: UserId,
    at: i64,
) -> Outcome<ConversationId> {
    if let Some(id) = direct(conn, a, b)? {
        return Ok(id);
    }
    let (lo, hi) = pair(a, b);
    let id: u64 = conn
        .prepare_cached(
            "INSERT INTO conversations (kind, direct_lo, direct_hi, created_at)
             VALUES ('direct', ?1, ?2, ?3) RETURNING id",
        )?
        .query_row(params![lo, hi, at], |row| row.get(0))?;
    let mut add = conn.prepare_cached(
        "INSERT INTO members (conversation, user_id) VALUES (?1, ?2)
         ON CONFLICT (conversation, user_id) DO NOTHING",
    )?;
    add.execute([id, lo])?;
    add.execute([id, hi])?;
    Ok(ConversationId(id))
}

/// A conversation with its members in ascending order.
pub(crate) fn conversation(conn: &Connection, id: ConversationId) -> Outcome<Option<Conversation>> {
    let kind: Option<String> = conn
        .prepare_cached("SELECT kind FROM conversations WHERE id = ?1")?
        .query_row([id.0], |row| row.get(0))
        .optional()?;
    let Some(kind) = kind else {
        return Ok(None);
    };
    let mut stmt = conn
        .prepare_cached("SELECT user_id FROM members WHERE conversation = ?1 ORDER BY user_id")?;
    let members = stmt
        .query_map([id.0], |row| row.get(0).map(UserId))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some(Conversation {
        id,
        kind: kind_from_str(&kind)?,
        members,
    }))
}

/// Stores one event, or finds the one this is a retry of.
pub(crate) fn append(conn: &Connection, append: &Append) -> Outcome<Appended> {
    // A retry is answered before anything else is checked: the recall it
    // repeats has made its target "already recalled" by now.
    let earlier = conn
        .prepare_cached(
            "SELECT conversation, seq, id, time FROM events
             WHERE sender = ?1 AND client_msg_id = ?2",
        )?
        .query_row(params![append.sender.0, append.client_msg_id], |row| {
            Ok((row.get::<_, u64>(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .optional()?;
    if let Some((conversation, seq, id, time)) = earlier {
        if conversation != append.conversation.0 {
            return Err(conflict(
                "this client message id was used in another conversation",
            ));
        }
        return Ok(Appended {
            conversation: append.conversation,
            seq: Seq(seq),
            message_id: MessageId(id),
            time,
            duplicate: true,
        });
    }

    let last_seq: u64 = conn
        .prepare_cached("SELECT last_seq FROM conversations WHERE id = ?1")?
        .query_row([append.conversation.0], |row| row.get(0))
        .optional()?
        .ok_or_else(|| not_found("conversation"))?;
    let seq = last_seq + 1;

    let (kind, segments, target) = match &append.body {
        AppendBody::Message(segments) => ("message", serde_json::to_string(segments)?, None),
        AppendBody::Recall { target } => {
            recall(conn, append.conversation, *target)?;
            ("recall", "[]".to_owned(), Some(target.0))
        }
    };
    let id: u64 = conn
        .prepare_cached(
            "INSERT INTO events
                 (conversation, seq, sender, client_msg_id, time, kind, segments, target)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id",
        )?
        .query_row(
            params![
                append.conversation.0,
                seq,
                append.sender.0,
                append.client_msg_id,
                append.time,
                kind,
                segments,
                target,
            ],
            |row| row.get(0),
        )?;
    conn.prepare_cached("UPDATE conversations SET last_seq = ?2, last_time = ?3 WHERE id = ?1")?
        .execute(params![append.conversation.0, seq, append.time])?;
    Ok(Appended {
        conversation: append.conversation,
        seq: Seq(seq),
        message_id: MessageId(id),
        time: append.time,
        duplicate: false,
    })
}

/// Marks the message at `target` recalled and clears its content.
fn recall(conn: &Connection, conversation: ConversationId, target: Seq) -> Outcome<()> {
    let found: Option<(String, bool)> = conn
        .prepare_cached("SELECT kind, recalled FROM events WHERE conversation = ?1 AND seq = ?2")?
        .query_row(params![conversation.0, target.0], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    match found {
        None => Err(not_found("message")),
        Some((kind, _)) if kind != "message" => Err(conflict("only a message can be recalled")),
        Some((_, true)) => Err(conflict("the message is already recalled")),
        Some(_) => {
            conn.prepare_cached(
                "UPDATE events SET recalled = 1, segments = '[]'
                 WHERE conversation = ?1 AND seq = ?2",
            )?
            .execute(params![conversation.0, target.0])?;
            Ok(())
        }
    }
}

const EVENT_COLUMNS: &str =
    "conversation, seq, id, sender, client_msg_id, time, kind, segments, target, recalled";

/// An event row before its JSON content is parsed.
struct RawEvent {
    event: StoredEvent,
    kind: String,
    segments: String,
    target: Option<u64>,
    recalled: bool,
}

fn event_from_row(row: &Row<'_>) -> rusqlite::Result<RawEvent> {
    Ok(RawEvent {
        event: StoredEvent {
            conversation: ConversationId(row.get(0)?),
            seq: Seq(row.get(1)?),
            message_id: MessageId(row.get(2)?),
            sender: UserId(row.get(3)?),
            client_msg_id: row.get(4)?,
            time: row.get(5)?,
            // Replaced in `finish_event`.
            body: EventBody::Recall { target: Seq(0) },
        },
        kind: row.get(6)?,
        segments: row.get(7)?,
        target: row.get(8)?,
        recalled: row.get(9)?,
    })
}

fn finish_event(raw: RawEvent) -> Outcome<StoredEvent> {
    let mut event = raw.event;
    event.body = match (raw.kind.as_str(), raw.target) {
        ("message", _) => EventBody::Message {
            segments: serde_json::from_str::<Vec<Segment>>(&raw.segments)?,
            recalled: raw.recalled,
        },
        ("recall", Some(target)) => EventBody::Recall {
            target: Seq(target),
        },
        (kind, _) => return Err(corrupt(&format!("event kind {kind:?}"))),
    };
    Ok(event)
}

/// One event by sequence number.
pub(crate) fn event(
    conn: &Connection,
    conversation: ConversationId,
    seq: Seq,
) -> Outcome<Option<StoredEvent>> {
    // Past the storable range there is no event.
    let Ok(seq) = i64::try_from(seq.0) else {
        return Ok(None);
    };
    conn.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE conversation = ?1 AND seq = ?2"
    ))?
    .query_row(params![conversation.0, seq], event_from_row)
    .optional()?
    .map(finish_event)
    .transpose()
}

/// A range of events, ascending.
pub(crate) fn events(
    conn: &Connection,
    conversation: ConversationId,
    range: EventRange,
) -> Outcome<Vec<StoredEvent>> {
    // Bounds beyond SQLite's integers mean "everything"; clamp instead of failing.
    let clamp = |seq: Seq| i64::try_from(seq.0).unwrap_or(i64::MAX);
    let (sql, bound, limit, descending) = match range {
        EventRange::After(seq, limit) => (
            format!(
                "SELECT {EVENT_COLUMNS} FROM events
                 WHERE conversation = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
            ),
            clamp(seq),
            limit,
            false,
        ),
        EventRange::Before(seq, limit) => (
            format!(
                "SELECT {EVENT_COLUMNS} FROM events
                 WHERE conversation = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3"
            ),
            clamp(seq),
            limit,
            true,
        ),
    };
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![conversation.0, bound, limit], event_from_row)?;
    let mut events = rows
        .map(|row| finish_event(row?))
        .collect::<Outcome<Vec<_>>>()?;
    if descending {
        events.reverse();
    }
    Ok(events)
}

/// Unread counts only messages by others that still stand.
const STATE_SELECT: &str = "
    SELECT c.id, c.kind, c.last_seq, c.last_time, m.read_seq,
           (SELECT o.user_id FROM members o
             WHERE o.conversation = c.id AND o.user_id <> ?1
             ORDER BY o.user_id LIMIT 1),
           (SELECT COUNT(*) FROM events e
             WHERE e.conversation = c.id AND e.seq > m.read_seq AND e.kind = 'message'
               AND e.recalled = 0 AND e.sender <> ?1)
    FROM members m JOIN conversations c ON c.id = m.conversation
    WHERE m.user_id = ?1";

fn state_from_row(row: &Row<'_>) -> rusqlite::Result<(ConversationState, String)> {
    let peer: Option<u64> = row.get(5)?;
    Ok((
        ConversationState {
            id: ConversationId(row.get(0)?),
            // Replaced in `finish_state`.
            kind: ConversationKind::Direct,
            peer: peer.map(UserId),
            last_seq: Seq(row.get(2)?),
            read_seq: Seq(row.get(4)?),
            unread: row.get(6)?,
            last_time: row.get(3)?,
        },
        row.get(1)?,
    ))
}

fn finish_state((mut state, kind): (ConversationState, String)) -> Outcome<ConversationState> {
    state.kind = kind_from_str(&kind)?;
    Ok(state)
}

/// The user's conversations, most recently active first.
pub(crate) fn states(conn: &Connection, user: UserId) -> Outcome<Vec<ConversationState>> {
    let mut stmt = conn.prepare_cached(&format!(
        "{STATE_SELECT} ORDER BY c.last_time DESC, c.id DESC"
    ))?;
    let rows = stmt.query_map([user.0], state_from_row)?;
    rows.map(|row| finish_state(row?)).collect()
}

/// One conversation's state for a participant.
pub(crate) fn state(
    conn: &Connection,
    user: UserId,
    conversation: ConversationId,
) -> Outcome<Option<ConversationState>> {
    conn.prepare_cached(&format!("{STATE_SELECT} AND c.id = ?2"))?
        .query_row([user.0, conversation.0], state_from_row)
        .optional()?
        .map(finish_state)
        .transpose()
}

/// Moves the read position forward, at most to the last sequence number.
pub(crate) fn mark_read(
    conn: &Connection,
    user: UserId,
    conversation: ConversationId,
    seq: Seq,
) -> Outcome<Seq> {
    let seq = i64::try_from(seq.0).unwrap_or(i64::MAX);
    let position: u64 = conn
        .prepare_cached(
            "UPDATE members
             SET read_seq = MAX(read_seq, MIN(?3, (SELECT last_seq FROM conversations
                                                   WHERE id = ?1)))
             WHERE conversation = ?1 AND user_id = ?2
             RETURNING read_seq",
        )?
        .query_row(params![conversation.0, user.0, seq], |row| row.get(0))
        .optional()?
        .ok_or_else(|| not_found("conversation"))?;
    Ok(Seq(position))
}
