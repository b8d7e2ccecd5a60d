//! Groups: their records and members, and the reads the domain makes of them.
//!
//! A group owns a conversation whose participants are its members (rows of
//! the conversations' `members` table, with read positions), so the same
//! unread and receipt queries serve direct and group conversations. Every
//! change to a group goes through [`change::change_group`], which appends the
//! change's notice in the same transaction.

pub(crate) mod change;
pub(crate) mod content;
pub(crate) mod joins;

use qun_domain::groups::model::{
    Group, GroupSearch, HistoryVisibility, JoinMode, Member, MemberChange, Role,
};
use qun_domain::{ConversationId, GroupId, Seq, UserId};
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};

use crate::error::{corrupt, Outcome};

/// How many groups a search returns when the caller asks for 0.
const DEFAULT_SEARCH_LIMIT: u32 = 20;

/// A number beyond SQLite's integers names nothing stored.
fn storable(n: u64) -> Option<i64> {
    i64::try_from(n).ok()
}

// --- stored names ------------------------------------------------------------

/// The columns a [`JoinMode`] is stored in: mode, question, answer.
fn join_mode_columns(mode: &JoinMode) -> (&'static str, Option<&str>, Option<&str>) {
    match mode {
        JoinMode::Open => ("open", None, None),
        JoinMode::Approval => ("approval", None, None),
        JoinMode::Question { question } => ("question", Some(question), None),
        JoinMode::QuestionAuto { question, answer } => {
            ("question_auto", Some(question), Some(answer))
        }
        JoinMode::InviteOnly => ("invite_only", None, None),
        JoinMode::Closed => ("closed", None, None),
    }
}

fn join_mode_from_columns(
    mode: &str,
    question: Option<String>,
    answer: Option<String>,
) -> Outcome<JoinMode> {
    Ok(match (mode, question, answer) {
        ("open", _, _) => JoinMode::Open,
        ("approval", _, _) => JoinMode::Approval,
        ("question", Some(question), _) => JoinMode::Question { question },
        ("question_auto", Some(question), Some(answer)) => {
            JoinMode::QuestionAuto { question, answer }
        }
        ("invite_only", _, _) => JoinMode::InviteOnly,
        ("closed", _, _) => JoinMode::Closed,
        (other, _, _) => return Err(corrupt(&format!("join mode {other:?}"))),
    })
}

fn history_str(history: HistoryVisibility) -> &'static str {
    match history {
        HistoryVisibility::FromJoin => "from_join",
        HistoryVisibility::Full => "full",
    }
}

fn history_from_str(history: &str) -> Outcome<HistoryVisibility> {
    match history {
        "from_join" => Ok(HistoryVisibility::FromJoin),
        "full" => Ok(HistoryVisibility::Full),
        other => Err(corrupt(&format!("history visibility {other:?}"))),
    }
}

fn role_from_str(role: &str) -> Outcome<Role> {
    Role::parse(role).ok_or_else(|| corrupt(&format!("role {role:?}")))
}

// --- groups ------------------------------------------------------------------

const GROUP_COLUMNS: &str = "id, conversation, name, intro, avatar, category, tags, listed, tier, \
     owner, join_mode, join_question, join_answer, members_may_invite, history, muted, \
     member_count, member_version, created_at, dissolved_at";

/// A group row before its JSON and named columns are parsed.
struct RawGroup {
    group: Group,
    tags: String,
    mode: String,
    question: Option<String>,
    answer: Option<String>,
    history: String,
}

fn group_from_row(row: &Row<'_>) -> rusqlite::Result<RawGroup> {
    Ok(RawGroup {
        group: Group {
            id: GroupId(row.get(0)?),
            conversation: ConversationId(row.get(1)?),
            name: row.get(2)?,
            intro: row.get(3)?,
            avatar: row.get(4)?,
            category: row.get(5)?,
            // The fields below are replaced in `finish_group`.
            tags: Vec::new(),
            listed: row.get(7)?,
            tier: row.get(8)?,
            owner: UserId(row.get(9)?),
            join_mode: JoinMode::Closed,
            members_may_invite: row.get(13)?,
            history: HistoryVisibility::FromJoin,
            muted: row.get(15)?,
            member_count: row.get(16)?,
            member_version: row.get(17)?,
            created_at: row.get(18)?,
            dissolved_at: row.get(19)?,
        },
        tags: row.get(6)?,
        mode: row.get(10)?,
        question: row.get(11)?,
        answer: row.get(12)?,
        history: row.get(14)?,
    })
}

fn finish_group(raw: RawGroup) -> Outcome<Group> {
    let mut group = raw.group;
    group.tags = serde_json::from_str(&raw.tags)?;
    group.join_mode = join_mode_from_columns(&raw.mode, raw.question, raw.answer)?;
    group.history = history_from_str(&raw.history)?;
    Ok(group)
}

/// A group by number, dissolved or not.
pub(crate) fn group(conn: &Connection, id: GroupId) -> Outcome<Option<Group>> {
    let Some(id) = storable(id.0) else {
        return Ok(None);
    };
    conn.prepare_cached(&format!("SELECT {GROUP_COLUMNS} FROM groups WHERE id = ?1"))?
        .query_row([id], group_from_row)
        .optional()?
        .map(finish_group)
        .transpose()
}

/// The group whose conversation this is.
pub(crate) fn group_of_conversation(
    conn: &Connection,
    conversation: ConversationId,
) -> Outcome<Option<GroupId>> {
    let Some(conversation) = storable(conversation.0) else {
        return Ok(None);
    };
    Ok(conn
        .prepare_cached("SELECT group_id FROM conversations WHERE id = ?1 AND kind = 'group'")?
        .query_row([conversation], |row| row.get(0).map(GroupId))
        .optional()?)
}

/// Groups matching every given criterion, biggest first. Only a search by
/// number alone finds unlisted groups.
pub(crate) fn search(conn: &Connection, search: &GroupSearch) -> Outcome<Vec<Group>> {
    let mut sql = format!("SELECT {GROUP_COLUMNS} FROM groups WHERE dissolved_at IS NULL");
    let mut args: Vec<Value> = Vec::new();
    if let Some(number) = search.number {
        let Some(number) = storable(number.0) else {
            return Ok(Vec::new());
        };
        sql.push_str(" AND id = ?");
        args.push(Value::Integer(number));
    }
    if let Some(keyword) = &search.keyword {
        sql.push_str(r" AND (name LIKE ? ESCAPE '\' OR intro LIKE ? ESCAPE '\')");
        let pattern = format!("%{}%", escape_like(keyword));
        args.push(Value::Text(pattern.clone()));
        args.push(Value::Text(pattern));
    }
    if let Some(category) = &search.category {
        sql.push_str(" AND category = ?");
        args.push(Value::Text(category.clone()));
    }
    if search.number.is_none() || search.keyword.is_some() || search.category.is_some() {
        sql.push_str(" AND listed = 1");
    }
    sql.push_str(" ORDER BY member_count DESC, id LIMIT ?");
    let limit = if search.limit == 0 {
        DEFAULT_SEARCH_LIMIT
    } else {
        search.limit
    };
    args.push(Value::Integer(i64::from(limit)));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args.iter()), group_from_row)?;
    rows.map(|row| finish_group(row?)).collect()
}

/// A keyword with LIKE's wildcards taken literally (escape character `\`).
fn escape_like(keyword: &str) -> String {
    let mut escaped = String::with_capacity(keyword.len());
    for c in keyword.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

// --- members -----------------------------------------------------------------

const MEMBER_COLUMNS: &str = "group_id, user_id, role, card, title, title_expires_at, joined_at, \
     join_seq, last_spoke_at, messages, muted_until, inviter, approver";

fn member_from_row(row: &Row<'_>) -> rusqlite::Result<(Member, String)> {
    let inviter: Option<u64> = row.get(11)?;
    let approver: Option<u64> = row.get(12)?;
    Ok((
        Member {
            group: GroupId(row.get(0)?),
            user: UserId(row.get(1)?),
            // Replaced in `finish_member`.
            role: Role::Member,
            card: row.get(3)?,
            title: row.get(4)?,
            title_expires_at: row.get(5)?,
            joined_at: row.get(6)?,
            join_seq: Seq(row.get(7)?),
            last_spoke_at: row.get(8)?,
            messages: row.get(9)?,
            muted_until: row.get(10)?,
            inviter: inviter.map(UserId),
            approver: approver.map(UserId),
        },
        row.get(2)?,
    ))
}

fn finish_member((mut member, role): (Member, String)) -> Outcome<Member> {
    member.role = role_from_str(&role)?;
    Ok(member)
}

/// A member entry.
pub(crate) fn member(conn: &Connection, group: GroupId, user: UserId) -> Outcome<Option<Member>> {
    let (Some(group), Some(user)) = (storable(group.0), storable(user.0)) else {
        return Ok(None);
    };
    conn.prepare_cached(&format!(
        "SELECT {MEMBER_COLUMNS} FROM group_members WHERE group_id = ?1 AND user_id = ?2"
    ))?
    .query_row([group, user], member_from_row)
    .optional()?
    .map(finish_member)
    .transpose()
}

/// Members after a user number, ascending.
pub(crate) fn members(
    conn: &Connection,
    group: GroupId,
    after: UserId,
    limit: u32,
) -> Outcome<Vec<Member>> {
    let (Some(group), Some(after)) = (storable(group.0), storable(after.0)) else {
        return Ok(Vec::new());
    };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {MEMBER_COLUMNS} FROM group_members
         WHERE group_id = ?1 AND user_id > ?2 ORDER BY user_id LIMIT ?3"
    ))?;
    let rows = stmt.query_map(params![group, after, limit], member_from_row)?;
    rows.map(|row| finish_member(row?)).collect()
}

/// Every member's number, ascending.
pub(crate) fn member_ids(conn: &Connection, group: GroupId) -> Outcome<Vec<UserId>> {
    let Some(group) = storable(group.0) else {
        return Ok(Vec::new());
    };
    let mut stmt = conn
        .prepare_cached("SELECT user_id FROM group_members WHERE group_id = ?1 ORDER BY user_id")?;
    let rows = stmt.query_map([group], |row| row.get(0).map(UserId))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The owner first, then the admins ascending.
pub(crate) fn managers(conn: &Connection, group: GroupId) -> Outcome<Vec<UserId>> {
    let Some(group) = storable(group.0) else {
        return Ok(Vec::new());
    };
    let mut stmt = conn.prepare_cached(
        "SELECT user_id FROM group_members
         WHERE group_id = ?1 AND role IN ('owner', 'admin')
         ORDER BY role = 'owner' DESC, user_id",
    )?;
    let rows = stmt.query_map([group], |row| row.get(0).map(UserId))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Each user whose entry changed after `since`, once, ascending by version.
pub(crate) fn member_changes(
    conn: &Connection,
    group: GroupId,
    since: u64,
) -> Outcome<Vec<MemberChange>> {
    let (Some(group), Some(since)) = (storable(group.0), storable(since)) else {
        return Ok(Vec::new());
    };
    let mut stmt = conn.prepare_cached(
        "SELECT version, user_id, removed FROM group_member_changes
         WHERE group_id = ?1 AND version > ?2 ORDER BY version, user_id",
    )?;
    let rows = stmt.query_map([group, since], |row| {
        Ok(MemberChange {
            version: row.get(0)?,
            user: UserId(row.get(1)?),
            removed: row.get(2)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The groups a user is a member of, dissolved ones included, ascending.
pub(crate) fn groups_of(conn: &Connection, user: UserId) -> Outcome<Vec<GroupId>> {
    let Some(user) = storable(user.0) else {
        return Ok(Vec::new());
    };
    let mut stmt = conn.prepare_cached(
        "SELECT group_id FROM group_members WHERE user_id = ?1 ORDER BY group_id",
    )?;
    let rows = stmt.query_map([user], |row| row.get(0).map(GroupId))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Whether two users are members of one group that is not dissolved.
pub(crate) fn share_group(conn: &Connection, a: UserId, b: UserId) -> Outcome<bool> {
    let (Some(a), Some(b)) = (storable(a.0), storable(b.0)) else {
        return Ok(false);
    };
    let found = conn
        .prepare_cached(
            "SELECT 1 FROM group_members x
               JOIN group_members y ON y.group_id = x.group_id AND y.user_id = ?2
               JOIN groups g ON g.id = x.group_id
             WHERE x.user_id = ?1 AND g.dissolved_at IS NULL
             LIMIT 1",
        )?
        .query_row([a, b], |_| Ok(()))
        .optional()?;
    Ok(found.is_some())
}

/// Participants whose read position reached `seq` and who were there when it
/// was sent (a newcomer's read position starts at their join): how many, and
/// who (only if `list`), ascending.
pub(crate) fn readers(
    conn: &Connection,
    conversation: ConversationId,
    seq: Seq,
    list: bool,
) -> Outcome<(u64, Vec<UserId>)> {
    let (Some(conversation), Some(seq)) = (storable(conversation.0), storable(seq.0)) else {
        return Ok((0, Vec::new()));
    };
    if !list {
        let count = conn
            .prepare_cached(
                "SELECT COUNT(*) FROM members m
                 JOIN conversations c ON c.id = m.conversation
                 LEFT JOIN group_members g ON g.group_id = c.group_id AND g.user_id = m.user_id
                 WHERE m.conversation = ?1 AND m.read_seq >= ?2
                   AND (g.join_seq IS NULL OR g.join_seq <= ?2)",
            )?
            .query_row([conversation, seq], |row| row.get(0))?;
        return Ok((count, Vec::new()));
    }
    let mut stmt = conn.prepare_cached(
        "SELECT m.user_id FROM members m
         JOIN conversations c ON c.id = m.conversation
         LEFT JOIN group_members g ON g.group_id = c.group_id AND g.user_id = m.user_id
         WHERE m.conversation = ?1 AND m.read_seq >= ?2
           AND (g.join_seq IS NULL OR g.join_seq <= ?2)
         ORDER BY m.user_id",
    )?;
    let users = stmt
        .query_map([conversation, seq], |row| row.get(0).map(UserId))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((users.len() as u64, users))
}

/// Senders of the most messages with `from_ms <= time < to_ms`, most first
/// (ties by number). Recalled messages count: they were sent.
pub(crate) fn top_senders(
    conn: &Connection,
    conversation: ConversationId,
    from_ms: i64,
    to_ms: i64,
    limit: u32,
) -> Outcome<Vec<(UserId, u64)>> {
    let Some(conversation) = storable(conversation.0) else {
        return Ok(Vec::new());
    };
    let mut stmt = conn.prepare_cached(
        "SELECT sender, COUNT(*) AS sent FROM events
         WHERE conversation = ?1 AND kind = 'message' AND time >= ?2 AND time < ?3
         GROUP BY sender ORDER BY sent DESC, sender LIMIT ?4",
    )?;
    let rows = stmt.query_map(params![conversation, from_ms, to_ms, limit], |row| {
        Ok((UserId(row.get(0)?), row.get(1)?))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
