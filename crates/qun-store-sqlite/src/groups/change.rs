//! Creating groups and changing them. Each change is one command of the
//! single writer, so its checks ("is there room?") and its writes cannot
//! interleave with another change; an error rolls back the command's
//! savepoint, the notice included.

use qun_domain::groups::model::{
    AnnouncementDraft, Group, GroupChange, GroupChanged, GroupSettings, HistoryVisibility,
    NewGroup, Notice, Role,
};
use qun_domain::model::RequestStatus;
use qun_domain::{AnnouncementId, Error, GroupId, JoinRequestId, Seq, UserId};
use rusqlite::{params, Connection, OptionalExtension};

use super::{group, history_str, join_mode_columns, joins, member};
use crate::accounts::user_exists;
use crate::conversations;
use crate::error::{conflict, corrupt, not_found, Failure, Outcome};

/// The counter row holding the last automatically assigned group number.
const GROUP_NUMBER_COUNTER: &str = "last_auto_group_number";

fn limit_reached(limit: &'static str, max: u32) -> Failure {
    Error::LimitReached {
        limit,
        max: u64::from(max),
    }
    .into()
}

/// Creates a group with its conversation, its owner and its `Created` notice.
pub(crate) fn create_group(conn: &Connection, new: &NewGroup) -> Outcome<Group> {
    if !user_exists(conn, new.owner)? {
        return Err(not_found("user"));
    }
    let owned: u64 = conn
        .prepare_cached("SELECT COUNT(*) FROM groups WHERE owner = ?1 AND dissolved_at IS NULL")?
        .query_row([new.owner.0], |row| row.get(0))?;
    if owned >= u64::from(new.max_owned) {
        return Err(limit_reached("max_groups_owned", new.max_owned));
    }
    let id = next_group_number(conn, new.first_number)?;
    let conversation = conversations::create_group_conversation(conn, id, new.created_at)?;
    let (mode, question, answer) = join_mode_columns(&new.join_mode);
    conn.prepare_cached(
        "INSERT INTO groups
             (id, conversation, name, intro, category, tags, listed, tier, owner,
              join_mode, join_question, join_answer, members_may_invite, history,
              member_count, member_version, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 1, ?13, 1, 1, ?14)",
    )?
    .execute(params![
        id.0,
        conversation.0,
        new.name,
        new.intro,
        new.category,
        serde_json::to_string(&new.tags)?,
        new.listed,
        new.tier,
        new.owner.0,
        mode,
        question,
        answer,
        history_str(HistoryVisibility::FromJoin),
        new.created_at,
    ])?;
    let notice = conversations::append_notice(
        conn,
        conversation,
        new.owner,
        &Notice::Created { owner: new.owner },
        new.created_at,
    )?;
    insert_member(conn, id, new.owner, Role::Owner, new.created_at, notice.seq)?;
    conversations::add_participant(conn, conversation, new.owner, notice.seq)?;
    record_member_change(conn, id, new.owner, 1, false)?;
    group(conn, id)?.ok_or_else(|| corrupt("a group vanished while it was created"))
}

/// The next free group number counting upward from `first`, never reused.
fn next_group_number(conn: &Connection, first: GroupId) -> Outcome<GroupId> {
    let exhausted = || Failure::from(Error::Internal("group numbers are exhausted".into()));
    let last: Option<u64> = conn
        .prepare_cached("SELECT value FROM counters WHERE name = ?1")?
        .query_row([GROUP_NUMBER_COUNTER], |row| row.get(0))
        .optional()?;
    let mut candidate = match last {
        Some(last) => last.checked_add(1).ok_or_else(exhausted)?.max(first.0),
        None => first.0,
    };
    while group(conn, GroupId(candidate))?.is_some() {
        candidate = candidate.checked_add(1).ok_or_else(exhausted)?;
    }
    conn.prepare_cached(
        "INSERT INTO counters (name, value) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![GROUP_NUMBER_COUNTER, candidate])?;
    Ok(GroupId(candidate))
}

fn insert_member(
    conn: &Connection,
    group: GroupId,
    user: UserId,
    role: Role,
    at: i64,
    join_seq: Seq,
) -> Outcome<()> {
    conn.prepare_cached(
        "INSERT INTO group_members (group_id, user_id, role, joined_at, join_seq)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![group.0, user.0, role.as_str(), at, join_seq.0])?;
    Ok(())
}

/// Remembers the latest version at which a member entry changed.
fn record_member_change(
    conn: &Connection,
    group: GroupId,
    user: UserId,
    version: u64,
    removed: bool,
) -> Outcome<()> {
    conn.prepare_cached(
        "INSERT INTO group_member_changes (group_id, user_id, version, removed)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (group_id, user_id) DO UPDATE
         SET version = excluded.version, removed = excluded.removed",
    )?
    .execute(params![group.0, user.0, version, removed])?;
    Ok(())
}

/// What applying a change produced besides the notice.
#[derive(Default)]
struct Applied {
    /// Member entries that changed: who, and whether they left.
    members: Vec<(UserId, bool)>,
    /// A created announcement.
    announcement: Option<AnnouncementId>,
}

/// Applies one change and appends its notice, all in the caller's savepoint.
/// The notice of a `CreateAnnouncement` is stored with the created id.
pub(crate) fn change_group(
    conn: &Connection,
    id: GroupId,
    actor: UserId,
    change: &GroupChange,
    notice: &Notice,
    time: i64,
) -> Outcome<GroupChanged> {
    let current = group(conn, id)?.ok_or_else(|| not_found("group"))?;
    if current.dissolved_at.is_some() {
        return Err(conflict("the group is dissolved"));
    }
    // The change learns the seq its notice will take (a new member's join
    // seq); the notice learns what the change created (an announcement's id).
    let seq = conversations::next_seq(conn, current.conversation)?;
    let applied = apply(conn, &current, actor, change, seq, time)?;
    let notice = match (applied.announcement, notice) {
        (Some(id), Notice::Announcement { action, by, .. }) => Notice::Announcement {
            id,
            action: action.clone(),
            by: *by,
        },
        _ => notice.clone(),
    };
    let appended = conversations::append_notice(conn, current.conversation, actor, &notice, time)?;
    if appended.seq != seq {
        return Err(corrupt("a group notice missed its sequence number"));
    }
    if !applied.members.is_empty() {
        let version: u64 = conn
            .prepare_cached(
                "UPDATE groups SET member_version = member_version + 1 WHERE id = ?1
                 RETURNING member_version",
            )?
            .query_row([id.0], |row| row.get(0))?;
        for (user, removed) in &applied.members {
            record_member_change(conn, id, *user, version, *removed)?;
        }
    }
    Ok(GroupChanged {
        appended,
        announcement: applied.announcement,
        group: group(conn, id)?.ok_or_else(|| corrupt("a group vanished while it changed"))?,
    })
}

fn apply(
    conn: &Connection,
    group: &Group,
    actor: UserId,
    change: &GroupChange,
    seq: Seq,
    time: i64,
) -> Outcome<Applied> {
    let id = group.id;
    let changed = |user: UserId| Applied {
        members: vec![(user, false)],
        announcement: None,
    };
    match change {
        GroupChange::AddMember {
            user,
            inviter,
            approver,
            cap,
            request,
            link,
        } => {
            add_member(
                conn,
                group,
                &NewMember {
                    user: *user,
                    inviter: *inviter,
                    approver: *approver,
                    cap: *cap,
                    request: *request,
                    link: link.as_deref(),
                },
                seq,
                time,
            )?;
            Ok(changed(*user))
        }
        GroupChange::RemoveMember { user, ban } => {
            let entry = member(conn, id, *user)?.ok_or_else(|| not_found("member"))?;
            if entry.role == Role::Owner {
                return Err(conflict(
                    "the owner cannot leave the group; transfer it or dissolve it",
                ));
            }
            conn.prepare_cached("DELETE FROM group_members WHERE group_id = ?1 AND user_id = ?2")?
                .execute([id.0, user.0])?;
            conn.prepare_cached("UPDATE groups SET member_count = member_count - 1 WHERE id = ?1")?
                .execute([id.0])?;
            conversations::remove_participant(conn, group.conversation, *user)?;
            if *ban {
                conn.prepare_cached(
                    "INSERT INTO group_bans (group_id, user_id, by_user, at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (group_id, user_id) DO NOTHING",
                )?
                .execute(params![id.0, user.0, actor.0, time])?;
            }
            Ok(Applied {
                members: vec![(*user, true)],
                announcement: None,
            })
        }
        GroupChange::SetRole {
            user,
            role,
            admin_cap,
        } => {
            if *role == Role::Owner {
                return Err(Error::invalid("role", "ownership moves only by a transfer").into());
            }
            let entry = member(conn, id, *user)?.ok_or_else(|| not_found("member"))?;
            if entry.role == Role::Owner {
                return Err(conflict("the owner's role changes only by a transfer"));
            }
            if *role == Role::Admin && entry.role != Role::Admin {
                let admins: u64 = conn
                    .prepare_cached(
                        "SELECT COUNT(*) FROM group_members WHERE group_id = ?1 AND role = 'admin'",
                    )?
                    .query_row([id.0], |row| row.get(0))?;
                if admins >= u64::from(*admin_cap) {
                    return Err(limit_reached("max_admins", *admin_cap));
                }
            }
            set_role(conn, id, *user, *role)?;
            Ok(changed(*user))
        }
        GroupChange::TransferOwner { to } => {
            member(conn, id, *to)?.ok_or_else(|| not_found("member"))?;
            if *to == group.owner {
                return Err(conflict("this member owns the group already"));
            }
            // The old owner stays as an admin even past the admin cap.
            set_role(conn, id, group.owner, Role::Admin)?;
            set_role(conn, id, *to, Role::Owner)?;
            conn.prepare_cached("UPDATE groups SET owner = ?2 WHERE id = ?1")?
                .execute([id.0, to.0])?;
            Ok(Applied {
                members: vec![(group.owner, false), (*to, false)],
                announcement: None,
            })
        }
        GroupChange::Mute { user, until } => {
            update_member(
                conn,
                id,
                *user,
                "UPDATE group_members SET muted_until = ?3 WHERE group_id = ?1 AND user_id = ?2",
                until,
            )?;
            Ok(changed(*user))
        }
        GroupChange::SetTitle {
            user,
            title,
            expires_at,
        } => {
            let updated = conn
                .prepare_cached(
                    "UPDATE group_members SET title = ?3, title_expires_at = ?4
                     WHERE group_id = ?1 AND user_id = ?2",
                )?
                .execute(params![id.0, user.0, title, expires_at])?;
            if updated == 0 {
                return Err(not_found("member"));
            }
            Ok(changed(*user))
        }
        GroupChange::SetCard { user, card } => {
            update_member(
                conn,
                id,
                *user,
                "UPDATE group_members SET card = ?3 WHERE group_id = ?1 AND user_id = ?2",
                card,
            )?;
            Ok(changed(*user))
        }
        GroupChange::MuteAll(muted) => {
            conn.prepare_cached("UPDATE groups SET muted = ?2 WHERE id = ?1")?
                .execute(params![id.0, muted])?;
            Ok(Applied::default())
        }
        GroupChange::Settings(settings) => {
            apply_settings(conn, id, settings)?;
            Ok(Applied::default())
        }
        GroupChange::SetTier(tier) => {
            conn.prepare_cached("UPDATE groups SET tier = ?2 WHERE id = ?1")?
                .execute(params![id.0, tier])?;
            Ok(Applied::default())
        }
        GroupChange::CreateAnnouncement(draft) => {
            let created: u64 = conn
                .prepare_cached(
                    "INSERT INTO announcements
                         (group_id, author, title, body, pinned, require_confirm, entrance,
                          created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id",
                )?
                .query_row(
                    params![
                        id.0,
                        actor.0,
                        draft.title,
                        draft.body,
                        draft.pinned,
                        draft.require_confirm,
                        draft.entrance,
                        time
                    ],
                    |row| row.get(0),
                )?;
            Ok(Applied {
                members: Vec::new(),
                announcement: Some(AnnouncementId(created)),
            })
        }
        GroupChange::EditAnnouncement(announcement, draft) => {
            edit_announcement(conn, id, *announcement, draft, time)?;
            Ok(Applied::default())
        }
        GroupChange::DeleteAnnouncement(announcement) => {
            conn.prepare_cached("DELETE FROM announcement_confirmations WHERE announcement = ?1")?
                .execute([announcement.0])?;
            let deleted = conn
                .prepare_cached("DELETE FROM announcements WHERE id = ?1 AND group_id = ?2")?
                .execute([announcement.0, id.0])?;
            if deleted == 0 {
                return Err(not_found("announcement"));
            }
            Ok(Applied::default())
        }
        GroupChange::SetEssence { seq: target, set } => {
            set_essence(conn, group, actor, *target, *set, time)?;
            Ok(Applied::default())
        }
        GroupChange::Dissolve => {
            conn.prepare_cached("UPDATE groups SET dissolved_at = ?2 WHERE id = ?1")?
                .execute(params![id.0, time])?;
            Ok(Applied::default())
        }
    }
}

/// The fields of [`GroupChange::AddMember`].
struct NewMember<'a> {
    user: UserId,
    inviter: Option<UserId>,
    approver: Option<UserId>,
    cap: u32,
    request: Option<JoinRequestId>,
    link: Option<&'a str>,
}

fn add_member(
    conn: &Connection,
    group: &Group,
    new: &NewMember<'_>,
    join_seq: Seq,
    time: i64,
) -> Outcome<()> {
    let id = group.id;
    if member(conn, id, new.user)?.is_some() {
        return Err(conflict("already a member of this group"));
    }
    if !user_exists(conn, new.user)? {
        return Err(not_found("user"));
    }
    if joins::is_banned(conn, id, new.user)? {
        // The domain has no `Denied` reason for bans yet; a conflict stands in.
        return Err(conflict("banned from this group"));
    }
    if group.member_count >= new.cap {
        return Err(limit_reached("max_members", new.cap));
    }
    if let Some(request) = new.request {
        let found = joins::join_request(conn, request)?.ok_or_else(|| not_found("join request"))?;
        if found.group != id || found.user != new.user {
            return Err(Error::invalid("request", "it is for another group or user").into());
        }
        if found.status != RequestStatus::Pending {
            return Err(conflict("the join request is no longer pending"));
        }
        conn.prepare_cached(
            "UPDATE join_requests SET status = 'accepted', reviewer = ?2 WHERE id = ?1",
        )?
        .execute(params![request.0, new.approver.map(|u| u.0)])?;
    }
    // Whatever else the newcomer had pending for this group is settled by the join.
    conn.prepare_cached(
        "UPDATE join_requests SET status = 'accepted', reviewer = COALESCE(reviewer, ?3)
         WHERE group_id = ?1 AND user_id = ?2 AND status = 'pending'",
    )?
    .execute(params![id.0, new.user.0, new.approver.map(|u| u.0)])?;
    if let Some(code) = new.link {
        let link = joins::invite_link(conn, code)?.ok_or_else(|| not_found("invite link"))?;
        if link.group != id {
            return Err(Error::invalid("link", "it is for another group").into());
        }
        if let Some(max) = link.max_uses {
            if link.uses >= max {
                return Err(limit_reached("invite_link_uses", max));
            }
        }
        conn.prepare_cached("UPDATE invite_links SET uses = uses + 1 WHERE code = ?1")?
            .execute([code])?;
    }
    conn.prepare_cached(
        "INSERT INTO group_members (group_id, user_id, role, joined_at, join_seq, inviter, approver)
         VALUES (?1, ?2, 'member', ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        id.0,
        new.user.0,
        time,
        join_seq.0,
        new.inviter.map(|u| u.0),
        new.approver.map(|u| u.0)
    ])?;
    conn.prepare_cached("UPDATE groups SET member_count = member_count + 1 WHERE id = ?1")?
        .execute([id.0])?;
    // Unread starts after the join notice.
    conversations::add_participant(conn, group.conversation, new.user, join_seq)
}

fn set_role(conn: &Connection, group: GroupId, user: UserId, role: Role) -> Outcome<()> {
    conn.prepare_cached("UPDATE group_members SET role = ?3 WHERE group_id = ?1 AND user_id = ?2")?
        .execute(params![group.0, user.0, role.as_str()])?;
    Ok(())
}

/// Runs a one-value update of a member entry; `NotFound` if there is none.
fn update_member(
    conn: &Connection,
    group: GroupId,
    user: UserId,
    sql: &str,
    value: &dyn rusqlite::ToSql,
) -> Outcome<()> {
    let updated = conn
        .prepare_cached(sql)?
        .execute(params![group.0, user.0, value])?;
    if updated == 0 {
        return Err(not_found("member"));
    }
    Ok(())
}

/// Applies the settings that are `Some`.
fn apply_settings(conn: &Connection, id: GroupId, settings: &GroupSettings) -> Outcome<()> {
    let set = |sql: &str, value: &dyn rusqlite::ToSql| -> Outcome<()> {
        conn.prepare_cached(sql)?.execute(params![id.0, value])?;
        Ok(())
    };
    if let Some(name) = &settings.name {
        set("UPDATE groups SET name = ?2 WHERE id = ?1", name)?;
    }
    if let Some(intro) = &settings.intro {
        set("UPDATE groups SET intro = ?2 WHERE id = ?1", intro)?;
    }
    if let Some(avatar) = &settings.avatar {
        set("UPDATE groups SET avatar = ?2 WHERE id = ?1", avatar)?;
    }
    if let Some(category) = &settings.category {
        set("UPDATE groups SET category = ?2 WHERE id = ?1", category)?;
    }
    if let Some(tags) = &settings.tags {
        set(
            "UPDATE groups SET tags = ?2 WHERE id = ?1",
            &serde_json::to_string(tags)?,
        )?;
    }
    if let Some(listed) = settings.listed {
        set("UPDATE groups SET listed = ?2 WHERE id = ?1", &listed)?;
    }
    if let Some(mode) = &settings.join_mode {
        let (mode, question, answer) = join_mode_columns(mode);
        conn.prepare_cached(
            "UPDATE groups SET join_mode = ?2, join_question = ?3, join_answer = ?4
             WHERE id = ?1",
        )?
        .execute(params![id.0, mode, question, answer])?;
    }
    if let Some(may_invite) = settings.members_may_invite {
        set(
            "UPDATE groups SET members_may_invite = ?2 WHERE id = ?1",
            &may_invite,
        )?;
    }
    if let Some(history) = settings.history {
        set(
            "UPDATE groups SET history = ?2 WHERE id = ?1",
            &history_str(history),
        )?;
    }
    Ok(())
}

fn edit_announcement(
    conn: &Connection,
    group: GroupId,
    id: AnnouncementId,
    draft: &AnnouncementDraft,
    time: i64,
) -> Outcome<()> {
    let updated = conn
        .prepare_cached(
            "UPDATE announcements
             SET title = ?3, body = ?4, pinned = ?5, require_confirm = ?6, entrance = ?7,
                 edited_at = ?8
             WHERE id = ?1 AND group_id = ?2",
        )?
        .execute(params![
            id.0,
            group.0,
            draft.title,
            draft.body,
            draft.pinned,
            draft.require_confirm,
            draft.entrance,
            time
        ])?;
    if updated == 0 {
        return Err(not_found("announcement"));
    }
    Ok(())
}

/// Marks (idempotently, keeping the first marking) or unmarks an essence.
fn set_essence(
    conn: &Connection,
    group: &Group,
    actor: UserId,
    seq: Seq,
    set: bool,
    time: i64,
) -> Outcome<()> {
    let Ok(seq) = i64::try_from(seq.0) else {
        return Err(not_found("message"));
    };
    if !set {
        let deleted = conn
            .prepare_cached("DELETE FROM essences WHERE group_id = ?1 AND seq = ?2")?
            .execute(params![group.id.0, seq])?;
        if deleted == 0 {
            return Err(not_found("essence message"));
        }
        return Ok(());
    }
    let message = conn
        .prepare_cached(
            "SELECT 1 FROM events
             WHERE conversation = ?1 AND seq = ?2 AND kind = 'message' AND recalled = 0",
        )?
        .query_row(params![group.conversation.0, seq], |_| Ok(()))
        .optional()?;
    if message.is_none() {
        return Err(not_found("message"));
    }
    conn.prepare_cached(
        "INSERT INTO essences (group_id, seq, by_user, at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (group_id, seq) DO NOTHING",
    )?
    .execute(params![group.id.0, seq, actor.0, time])?;
    Ok(())
}
