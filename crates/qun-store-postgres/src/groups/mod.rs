//! Groups: their records and members, and the reads the domain makes of them.
//!
//! A group owns a conversation whose participants are its members (rows of
//! the conversations' `members` table, with read positions), so the same
//! unread and receipt queries serve direct and group conversations. Every
//! change to a group goes through [`change::change_group`], which locks the
//! group's row and appends the change's notice in the same transaction.

pub(crate) mod change;
pub(crate) mod content;
pub(crate) mod joins;

use deadpool_postgres::GenericClient;
use qun_domain::groups::model::{
    Group, GroupSearch, HistoryVisibility, JoinMode, Member, MemberChange, Role,
};
use qun_domain::{ConversationId, GroupId, Seq, UserId};
use tokio_postgres::Row;

use crate::error::{corrupt, Outcome};
use crate::sql::{key, opt_u64_at, query, query_one, query_opt, u32_at, u64_at};

/// How many groups a search returns when the caller asks for 0.
const DEFAULT_SEARCH_LIMIT: u32 = 20;

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

fn group_from_row(row: &Row) -> Outcome<Group> {
    let mode: &str = row.try_get(10)?;
    let history: &str = row.try_get(14)?;
    Ok(Group {
        id: GroupId(u64_at(row, 0)?),
        conversation: ConversationId(u64_at(row, 1)?),
        name: row.try_get(2)?,
        intro: row.try_get(3)?,
        avatar: row.try_get(4)?,
        category: row.try_get(5)?,
        tags: row.try_get(6)?,
        listed: row.try_get(7)?,
        tier: u32_at(row, 8)?,
        owner: UserId(u64_at(row, 9)?),
        join_mode: join_mode_from_columns(mode, row.try_get(11)?, row.try_get(12)?)?,
        members_may_invite: row.try_get(13)?,
        history: history_from_str(history)?,
        muted: row.try_get(15)?,
        member_count: u32_at(row, 16)?,
        member_version: u64_at(row, 17)?,
        created_at: row.try_get(18)?,
        dissolved_at: row.try_get(19)?,
    })
}

/// A group by number, dissolved or not.
pub(crate) async fn group<C: GenericClient>(c: &C, id: GroupId) -> Outcome<Option<Group>> {
    let Some(id) = key(id.0) else {
        return Ok(None);
    };
    query_opt(
        c,
        &format!("SELECT {GROUP_COLUMNS} FROM groups WHERE id = $1"),
        &[&id],
    )
    .await?
    .map(|row| group_from_row(&row))
    .transpose()
}

/// The group whose conversation this is.
pub(crate) async fn group_of_conversation<C: GenericClient>(
    c: &C,
    conversation: ConversationId,
) -> Outcome<Option<GroupId>> {
    let Some(conversation) = key(conversation.0) else {
        return Ok(None);
    };
    query_opt(
        c,
        "SELECT group_id FROM conversations WHERE id = $1 AND kind = 'group'",
        &[&conversation],
    )
    .await?
    .map(|row| u64_at(&row, 0).map(GroupId))
    .transpose()
}

/// Groups matching every given criterion, biggest first. Only a search by
/// number alone finds unlisted groups. One statement serves every
/// combination: an absent criterion is a NULL parameter.
pub(crate) async fn search<C: GenericClient>(c: &C, search: &GroupSearch) -> Outcome<Vec<Group>> {
    let number = match search.number {
        Some(number) => match key(number.0) {
            Some(number) => Some(number),
            None => return Ok(Vec::new()),
        },
        None => None,
    };
    let pattern = search
        .keyword
        .as_ref()
        .map(|keyword| format!("%{}%", escape_like(keyword)));
    let limit = if search.limit == 0 {
        DEFAULT_SEARCH_LIMIT
    } else {
        search.limit
    };
    query(
        c,
        &format!(
            r"SELECT {GROUP_COLUMNS} FROM groups
              WHERE dissolved_at IS NULL
                AND ($1::BIGINT IS NULL OR id = $1)
                AND ($2::TEXT IS NULL OR name ILIKE $2 ESCAPE '\' OR intro ILIKE $2 ESCAPE '\')
                AND ($3::TEXT IS NULL OR category = $3)
                AND (listed OR ($1 IS NOT NULL AND $2 IS NULL AND $3 IS NULL))
              ORDER BY member_count DESC, id
              LIMIT $4"
        ),
        &[&number, &pattern, &search.category, &i64::from(limit)],
    )
    .await?
    .iter()
    .map(group_from_row)
    .collect()
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

fn member_from_row(row: &Row) -> Outcome<Member> {
    let role: &str = row.try_get(2)?;
    Ok(Member {
        group: GroupId(u64_at(row, 0)?),
        user: UserId(u64_at(row, 1)?),
        role: role_from_str(role)?,
        card: row.try_get(3)?,
        title: row.try_get(4)?,
        title_expires_at: row.try_get(5)?,
        joined_at: row.try_get(6)?,
        join_seq: Seq(u64_at(row, 7)?),
        last_spoke_at: row.try_get(8)?,
        messages: u64_at(row, 9)?,
        muted_until: row.try_get(10)?,
        inviter: opt_u64_at(row, 11)?.map(UserId),
        approver: opt_u64_at(row, 12)?.map(UserId),
    })
}

/// A member entry.
pub(crate) async fn member<C: GenericClient>(
    c: &C,
    group: GroupId,
    user: UserId,
) -> Outcome<Option<Member>> {
    let (Some(group), Some(user)) = (key(group.0), key(user.0)) else {
        return Ok(None);
    };
    query_opt(
        c,
        &format!("SELECT {MEMBER_COLUMNS} FROM group_members WHERE group_id = $1 AND user_id = $2"),
        &[&group, &user],
    )
    .await?
    .map(|row| member_from_row(&row))
    .transpose()
}

/// Members after a user number, ascending.
pub(crate) async fn members<C: GenericClient>(
    c: &C,
    group: GroupId,
    after: UserId,
    limit: u32,
) -> Outcome<Vec<Member>> {
    let (Some(group), Some(after)) = (key(group.0), key(after.0)) else {
        return Ok(Vec::new());
    };
    query(
        c,
        &format!(
            "SELECT {MEMBER_COLUMNS} FROM group_members
             WHERE group_id = $1 AND user_id > $2 ORDER BY user_id LIMIT $3"
        ),
        &[&group, &after, &i64::from(limit)],
    )
    .await?
    .iter()
    .map(member_from_row)
    .collect()
}

/// Users of a one-column query.
async fn user_ids<C: GenericClient>(c: &C, sql: &str, group: i64) -> Outcome<Vec<UserId>> {
    query(c, sql, &[&group])
        .await?
        .iter()
        .map(|row| u64_at(row, 0).map(UserId))
        .collect()
}

/// Every member's number, ascending.
pub(crate) async fn member_ids<C: GenericClient>(c: &C, group: GroupId) -> Outcome<Vec<UserId>> {
    let Some(group) = key(group.0) else {
        return Ok(Vec::new());
    };
    user_ids(
        c,
        "SELECT user_id FROM group_members WHERE group_id = $1 ORDER BY user_id",
        group,
    )
    .await
}

/// The owner first, then the admins ascending.
pub(crate) async fn managers<C: GenericClient>(c: &C, group: GroupId) -> Outcome<Vec<UserId>> {
    let Some(group) = key(group.0) else {
        return Ok(Vec::new());
    };
    user_ids(
        c,
        "SELECT user_id FROM group_members
         WHERE group_id = $1 AND role IN ('owner', 'admin')
         ORDER BY role = 'owner' DESC, user_id",
        group,
    )
    .await
}

/// Each user whose entry changed after `since`, once, ascending by version.
pub(crate) async fn member_changes<C: GenericClient>(
    c: &C,
    group: GroupId,
    since: u64,
) -> Outcome<Vec<MemberChange>> {
    let (Some(group), Some(since)) = (key(group.0), key(since)) else {
        return Ok(Vec::new());
    };
    query(
        c,
        "SELECT version, user_id, removed FROM group_member_changes
         WHERE group_id = $1 AND version > $2 ORDER BY version, user_id",
        &[&group, &since],
    )
    .await?
    .iter()
    .map(|row| {
        Ok(MemberChange {
            version: u64_at(row, 0)?,
            user: UserId(u64_at(row, 1)?),
            removed: row.try_get(2)?,
        })
    })
    .collect()
}

/// The groups a user is a member of, dissolved ones included, ascending.
pub(crate) async fn groups_of<C: GenericClient>(c: &C, user: UserId) -> Outcome<Vec<GroupId>> {
    let Some(user) = key(user.0) else {
        return Ok(Vec::new());
    };
    query(
        c,
        "SELECT group_id FROM group_members WHERE user_id = $1 ORDER BY group_id",
        &[&user],
    )
    .await?
    .iter()
    .map(|row| u64_at(row, 0).map(GroupId))
    .collect()
}

/// Whether two users are members of one group that is not dissolved.
pub(crate) async fn share_group<C: GenericClient>(c: &C, a: UserId, b: UserId) -> Outcome<bool> {
    let (Some(a), Some(b)) = (key(a.0), key(b.0)) else {
        return Ok(false);
    };
    Ok(query_opt(
        c,
        "SELECT 1 FROM group_members x
           JOIN group_members y ON y.group_id = x.group_id AND y.user_id = $2
           JOIN groups g ON g.id = x.group_id
         WHERE x.user_id = $1 AND g.dissolved_at IS NULL
         LIMIT 1",
        &[&a, &b],
    )
    .await?
    .is_some())
}

/// Participants whose read position reached `seq` and who were there when it
/// was sent (a newcomer's read position starts at their join): how many, and
/// who (only if `list`), ascending.
pub(crate) async fn readers<C: GenericClient>(
    c: &C,
    conversation: ConversationId,
    seq: Seq,
    list: bool,
) -> Outcome<(u64, Vec<UserId>)> {
    let (Some(conversation), Some(seq)) = (key(conversation.0), key(seq.0)) else {
        return Ok((0, Vec::new()));
    };
    const READERS: &str = "
        FROM members m
        JOIN conversations c ON c.id = m.conversation
        LEFT JOIN group_members g ON g.group_id = c.group_id AND g.user_id = m.user_id
        WHERE m.conversation = $1 AND m.read_seq >= $2
          AND (g.join_seq IS NULL OR g.join_seq <= $2)";
    if !list {
        let row = query_one(
            c,
            &format!("SELECT COUNT(*) {READERS}"),
            &[&conversation, &seq],
        )
        .await?;
        return Ok((u64_at(&row, 0)?, Vec::new()));
    }
    let users = query(
        c,
        &format!("SELECT m.user_id {READERS} ORDER BY m.user_id"),
        &[&conversation, &seq],
    )
    .await?
    .iter()
    .map(|row| u64_at(row, 0).map(UserId))
    .collect::<Outcome<Vec<_>>>()?;
    Ok((users.len() as u64, users))
}

/// Senders of the most messages with `from_ms <= time < to_ms`, most first
/// (ties by number). Recalled messages count: they were sent.
pub(crate) async fn top_senders<C: GenericClient>(
    c: &C,
    conversation: ConversationId,
    from_ms: i64,
    to_ms: i64,
    limit: u32,
) -> Outcome<Vec<(UserId, u64)>> {
    let Some(conversation) = key(conversation.0) else {
        return Ok(Vec::new());
    };
    query(
        c,
        "SELECT sender, COUNT(*) AS sent FROM events
         WHERE conversation = $1 AND kind = 'message' AND time >= $2 AND time < $3
         GROUP BY sender ORDER BY sent DESC, sender LIMIT $4",
        &[&conversation, &from_ms, &to_ms, &i64::from(limit)],
    )
    .await?
    .iter()
    .map(|row| Ok((UserId(u64_at(row, 0)?), u64_at(row, 1)?)))
    .collect()
}
