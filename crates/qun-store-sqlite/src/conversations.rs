//! Conversations, their event streams and each participant's read position.
//!
//! The conversation row carries `last_seq`; an append raises it and reads
//! the new value in one statement, in the transaction that inserts the
//! event, so sequence numbers are gap-free and never reused.
//!
//! A group's conversation has the group's members as participants, so one
//! query lists direct and group conversations with read positions alike. A
//! message costs a constant number of writes whatever the member count: the
//! event, the conversation's `last_seq`, the sender's member row in a group,
//! and one row per mention.

use qun_domain::groups::model::Notice;
use qun_domain::model::{
    Append, AppendBody, Appended, Conversation, ConversationKind, ConversationState, EventBody,
    EventRange, Segment, StoredEvent,
};
use qun_domain::{ConversationId, Denied, Error, GroupId, MessageId, Seq, UserId, MENTION_ALL};
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error::{conflict, corrupt, not_found, Outcome};

/// A conversation's kind from its `kind` and `group_id` columns.
fn kind_from_columns(kind: &str, group: Option<u64>) -> Outcome<ConversationKind> {
    match (kind, group) {
        ("direct", None) => Ok(ConversationKind::Direct),
        ("group", Some(group)) => Ok(ConversationKind::Group(GroupId(group))),
        (other, _) => Err(corrupt(&format!("conversation kind {other:?}"))),
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

/// Creates a group's conversation, without participants yet.
pub(crate) fn create_group_conversation(
    conn: &Connection,
    group: GroupId,
    at: i64,
) -> Outcome<ConversationId> {
    let id: u64 = conn
        .prepare_cached(
            "INSERT INTO conversations (kind, group_id, created_at)
             VALUES ('group', ?1, ?2) RETURNING id",
        )?
        .query_row(params![group.0, at], |row| row.get(0))?;
    Ok(ConversationId(id))
}

/// Adds a participant whose read position starts at `read_seq`.
pub(crate) fn add_participant(
    conn: &Connection,
    conversation: ConversationId,
    user: UserId,
    read_seq: Seq,
) -> Outcome<()> {
    conn.prepare_cached(
        "INSERT INTO members (conversation, user_id, read_seq) VALUES (?1, ?2, ?3)
         ON CONFLICT (conversation, user_id) DO UPDATE SET read_seq = excluded.read_seq",
    )?
    .execute(params![conversation.0, user.0, read_seq.0])?;
    Ok(())
}

/// Removes a participant together with their read position.
pub(crate) fn remove_participant(
    conn: &Connection,
    conversation: ConversationId,
    user: UserId,
) -> Outcome<()> {
    conn.prepare_cached("DELETE FROM members WHERE conversation = ?1 AND user_id = ?2")?
        .execute(params![conversation.0, user.0])?;
    Ok(())
}

/// A conversation with its members in ascending order (none listed for a
/// group: its members are the group's).
pub(crate) fn conversation(conn: &Connection, id: ConversationId) -> Outcome<Option<Conversation>> {
    let found: Option<(String, Option<u64>)> = conn
        .prepare_cached("SELECT kind, group_id FROM conversations WHERE id = ?1")?
        .query_row([id.0], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    let Some((kind, group)) = found else {
        return Ok(None);
    };
    let kind = kind_from_columns(&kind, group)?;
    let members = match kind {
        ConversationKind::Group(_) => Vec::new(),
        ConversationKind::Direct => conn
            .prepare_cached("SELECT user_id FROM members WHERE conversation = ?1 ORDER BY user_id")?
            .query_map([id.0], |row| row.get(0).map(UserId))?
            .collect::<rusqlite::Result<Vec<_>>>()?,
    };
    Ok(Some(Conversation { id, kind, members }))
}

/// The sequence number the next event of a conversation will take.
pub(crate) fn next_seq(conn: &Connection, conversation: ConversationId) -> Outcome<Seq> {
    let last_seq: u64 = conn
        .prepare_cached("SELECT last_seq FROM conversations WHERE id = ?1")?
        .query_row([conversation.0], |row| row.get(0))
        .optional()?
        .ok_or_else(|| not_found("conversation"))?;
    Ok(Seq(last_seq + 1))
}

/// Takes the conversation's next sequence number (raising its counter and
/// its last activity time in one statement) and says its group, if any.
fn reserve_seq(
    conn: &Connection,
    conversation: ConversationId,
    time: i64,
) -> Outcome<(u64, Option<u64>)> {
    conn.prepare_cached(
        "UPDATE conversations SET last_seq = last_seq + 1, last_time = ?2 WHERE id = ?1
         RETURNING last_seq, group_id",
    )?
    .query_row(params![conversation.0, time], |row| {
        Ok((row.get(0)?, row.get(1)?))
    })
    .optional()?
    .ok_or_else(|| not_found("conversation"))
}

/// An event to insert at a sequence number already chosen.
struct NewEvent<'a> {
    conversation: ConversationId,
    seq: u64,
    sender: UserId,
    client_msg_id: &'a str,
    time: i64,
    kind: &'static str,
    content: &'a str,
    target: Option<u64>,
}

/// Inserts the event at the seq [`reserve_seq`] took for it.
fn insert_event(conn: &Connection, event: &NewEvent<'_>) -> Outcome<Appended> {
    let id: u64 = conn
        .prepare_cached(
            "INSERT INTO events
                 (conversation, seq, sender, client_msg_id, time, kind, content, target)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id",
        )?
        .query_row(
            params![
                event.conversation.0,
                event.seq,
                event.sender.0,
                event.client_msg_id,
                event.time,
                event.kind,
                event.content,
                event.target,
            ],
            |row| row.get(0),
        )?;
    Ok(Appended {
        conversation: event.conversation,
        seq: Seq(event.seq),
        message_id: MessageId(id),
        time: event.time,
        duplicate: false,
    })
}

/// Appends a group notice by `actor`. Its client message id is generated
/// from the group and the seq, outside the senders' idempotency index.
pub(crate) fn append_notice(
    conn: &Connection,
    conversation: ConversationId,
    actor: UserId,
    notice: &Notice,
    time: i64,
) -> Outcome<Appended> {
    let (seq, group) = reserve_seq(conn, conversation, time)?;
    let group = group.ok_or_else(|| corrupt("a notice outside of a group conversation"))?;
    let content = serde_json::to_string(notice)?;
    insert_event(
        conn,
        &NewEvent {
            conversation,
            seq,
            sender: actor,
            client_msg_id: &format!("notice:{group}:{seq}"),
            time,
            kind: "notice",
            content: &content,
            target: None,
        },
    )
}

/// The event a retried append repeats. The `kind` term matches the partial
/// unique index, so SQLite can use it.
const FIND_RETRY: &str = "SELECT conversation, seq, id, time FROM events
     WHERE sender = ?1 AND client_msg_id = ?2 AND kind <> 'notice'";

/// Stores one event, or finds the one this is a retry of.
pub(crate) fn append(conn: &Connection, append: &Append) -> Outcome<Appended> {
    if matches!(append.body, AppendBody::Notice(_)) {
        return Err(Error::invalid("body", "notices are appended by group changes").into());
    }
    // A retry is answered before anything else is checked: the recall it
    // repeats has made its target "already recalled" by now.
    let earlier = conn
        .prepare_cached(FIND_RETRY)?
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

    if let Some(peer) = append.requires_friend {
        let standing = crate::friends::direct_standing(conn, append.sender, peer)?;
        if standing.blocked || !standing.friends {
            return Err(Error::Forbidden(Denied::NotFriends).into());
        }
    }
    if let Some(quota) = &append.quota {
        // Consumed only by a first append, in its transaction: a retry above
        // spent nothing, and a full counter stores nothing.
        crate::groups::content::consume_daily(conn, &quota.counters, quota.day)?;
    }
    let (seq, group) = reserve_seq(conn, append.conversation, append.time)?;
    let event = |kind, content: &str, target| {
        insert_event(
            conn,
            &NewEvent {
                conversation: append.conversation,
                seq,
                sender: append.sender,
                client_msg_id: &append.client_msg_id,
                time: append.time,
                kind,
                content,
                target,
            },
        )
    };
    match &append.body {
        AppendBody::Message(segments) => {
            let appended = event("message", &serde_json::to_string(segments)?, None)?;
            index_mentions(conn, append.conversation, seq, segments)?;
            if let Some(group) = group {
                // One row whatever the member count. A sender without a
                // member row (the domain let them write) changes nothing.
                conn.prepare_cached(
                    "UPDATE group_members SET messages = messages + 1, last_spoke_at = ?3
                     WHERE group_id = ?1 AND user_id = ?2",
                )?
                .execute(params![group, append.sender.0, append.time])?;
            }
            Ok(appended)
        }
        AppendBody::Recall { target } => {
            recall(conn, append.conversation, *target)?;
            event("recall", "[]", Some(target.0))
        }
        AppendBody::Notice(_) => Err(corrupt("a notice reached append")),
    }
}

/// Records whom a message mentions; everyone is user 0.
fn index_mentions(
    conn: &Connection,
    conversation: ConversationId,
    seq: u64,
    segments: &[Segment],
) -> Outcome<()> {
    for segment in segments {
        let user = match segment {
            Segment::Mention { user } => *user,
            Segment::MentionAll => MENTION_ALL,
            _ => continue,
        };
        conn.prepare_cached(
            "INSERT INTO mentions (conversation, user_id, seq) VALUES (?1, ?2, ?3)
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![conversation.0, user.0, seq])?;
    }
    Ok(())
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
                "UPDATE events SET recalled = 1, content = '[]'
                 WHERE conversation = ?1 AND seq = ?2",
            )?
            .execute(params![conversation.0, target.0])?;
            Ok(())
        }
    }
}

const EVENT_COLUMNS: &str =
    "conversation, seq, id, sender, client_msg_id, time, kind, content, target, recalled";

/// An event row before its JSON content is parsed.
struct RawEvent {
    event: StoredEvent,
    kind: String,
    content: String,
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
        content: row.get(7)?,
        target: row.get(8)?,
        recalled: row.get(9)?,
    })
}

fn finish_event(raw: RawEvent) -> Outcome<StoredEvent> {
    let mut event = raw.event;
    event.body = match (raw.kind.as_str(), raw.target) {
        ("message", _) => EventBody::Message {
            segments: serde_json::from_str::<Vec<Segment>>(&raw.content)?,
            recalled: raw.recalled,
        },
        ("recall", Some(target)) => EventBody::Recall {
            target: Seq(target),
        },
        ("notice", _) => EventBody::Notice(serde_json::from_str::<Notice>(&raw.content)?),
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

/// Unread counts only messages by others that still stand; mentions count
/// those of them that mention the user or everyone. The CROSS JOIN makes
/// SQLite walk the user's mentions rather than every unread event.
const STATE_SELECT: &str = "
    SELECT c.id, c.kind, c.group_id, c.last_seq, c.last_time, m.read_seq,
           CASE WHEN c.kind = 'direct' THEN
               (SELECT o.user_id FROM members o
                 WHERE o.conversation = c.id AND o.user_id <> ?1
                 ORDER BY o.user_id LIMIT 1)
           END,
           (SELECT COUNT(*) FROM events e
             WHERE e.conversation = c.id AND e.seq > m.read_seq AND e.kind = 'message'
               AND e.recalled = 0 AND e.sender <> ?1),
           (SELECT COUNT(DISTINCT x.seq) FROM mentions x
              CROSS JOIN events e ON e.conversation = x.conversation AND e.seq = x.seq
             WHERE x.conversation = c.id AND x.user_id IN (?1, 0) AND x.seq > m.read_seq
               AND e.kind = 'message' AND e.recalled = 0 AND e.sender <> ?1)
    FROM members m JOIN conversations c ON c.id = m.conversation
    WHERE m.user_id = ?1";

/// A state row before its kind is checked.
type RawState = (ConversationState, String, Option<u64>);

fn state_from_row(row: &Row<'_>) -> rusqlite::Result<RawState> {
    let peer: Option<u64> = row.get(6)?;
    Ok((
        ConversationState {
            id: ConversationId(row.get(0)?),
            // Replaced in `finish_state`.
            kind: ConversationKind::Direct,
            peer: peer.map(UserId),
            last_seq: Seq(row.get(3)?),
            read_seq: Seq(row.get(5)?),
            unread: row.get(7)?,
            mentions: row.get(8)?,
            last_time: row.get(4)?,
        },
        row.get(1)?,
        row.get(2)?,
    ))
}

fn finish_state((mut state, kind, group): RawState) -> Outcome<ConversationState> {
    state.kind = kind_from_columns(&kind, group)?;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use qun_domain::groups::model::{GroupChange, JoinMode, NewGroup, Notice};
    use qun_domain::model::NewUser;
    use rusqlite::types::Null;

    use super::*;
    use crate::{accounts, groups, schema};

    fn database() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        schema::migrate(&mut conn).unwrap();
        conn
    }

    fn new_user(conn: &Connection) -> UserId {
        let user = NewUser {
            number: None,
            nickname: "u".into(),
            password_hash: "h".into(),
            created_at: 1,
            first_number: UserId(10001),
        };
        accounts::create_user(conn, &user).unwrap()
    }

    /// A group of `size` members; returns its conversation and its owner.
    fn group_of(conn: &Connection, size: usize) -> (ConversationId, UserId) {
        let owner = new_user(conn);
        let group = groups::change::create_group(
            conn,
            &NewGroup {
                owner,
                name: "g".into(),
                intro: String::new(),
                category: String::new(),
                tags: Vec::new(),
                listed: false,
                join_mode: JoinMode::Open,
                tier: 0,
                created_at: 1,
                first_number: GroupId(100_001),
                max_owned: 10,
            },
        )
        .unwrap();
        for _ in 1..size {
            let user = new_user(conn);
            let add = GroupChange::AddMember {
                user,
                inviter: None,
                approver: None,
                cap: 10_000,
                request: None,
                link: None,
            };
            let notice = Notice::Joined {
                user,
                inviter: None,
                approver: None,
            };
            groups::change::change_group(conn, group.id, user, &add, &notice, 2).unwrap();
        }
        (group.conversation, owner)
    }

    /// Rows one @-mentioning group message inserts, updates or deletes.
    fn rows_written_by_one_message(members: usize) -> u64 {
        let conn = database();
        let (conversation, sender) = group_of(&conn, members);
        let before = conn.total_changes();
        let message = Append {
            requires_friend: None,
            quota: None,
            conversation,
            sender,
            client_msg_id: "m".into(),
            time: 3,
            body: AppendBody::Message(vec![
                Segment::Text { text: "hi".into() },
                Segment::Mention { user: sender },
                Segment::MentionAll,
            ]),
        };
        append(&conn, &message).unwrap();
        conn.total_changes() - before
    }

    #[test]
    fn a_group_message_costs_the_same_writes_whatever_the_member_count() {
        let small = rows_written_by_one_message(3);
        assert_eq!(
            small, 5,
            "the event, the conversation, the sender's entry and two mentions"
        );
        assert_eq!(rows_written_by_one_message(300), small);
    }

    /// SQLite's plan for `sql`, one line per step.
    fn plan(conn: &Connection, sql: &str) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let nulls = vec![Null; stmt.parameter_count()];
        let rows = stmt
            .query_map(rusqlite::params_from_iter(nulls), |row| {
                row.get::<_, String>(3)
            })
            .unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("\n")
    }

    #[test]
    fn the_hot_queries_search_indexes_instead_of_scanning() {
        let conn = database();
        let retry = plan(&conn, FIND_RETRY);
        assert!(
            retry.contains("events_by_client_id"),
            "a retry is found through the idempotency index:\n{retry}"
        );
        let states = plan(&conn, STATE_SELECT);
        assert!(
            !states.contains("SCAN"),
            "listing conversations scans no table:\n{states}"
        );
        assert!(
            states.contains("SEARCH x USING PRIMARY KEY (conversation=? AND user_id=? AND seq>?)"),
            "mentions are counted from the mentions index:\n{states}"
        );
    }
}
