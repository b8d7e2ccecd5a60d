//! Creating groups and changing them.
//!
//! A change locks the group's row, then its conversation's row, for the rest
//! of its transaction, so its checks ("is there room?", "is this the owner?")
//! and its writes cannot interleave with another change of the same group on
//! any node, and its notice takes the next sequence number. Appends lock the
//! conversation row too (never the group's), so the order is always group,
//! conversation, member entries: no deadlock between changes and messages.
//! An error rolls back the whole transaction, the notice included.

use qun_domain::groups::model::{
    AnnouncementDraft, Group, GroupChange, GroupChanged, GroupSettings, HistoryVisibility,
    NewGroup, Notice, Role,
};
use qun_domain::{AnnouncementId, Error, GroupId, JoinRequestId, Seq, UserId};
use tokio_postgres::types::ToSql;

use super::{group, group_from_row, history_str, join_mode_columns, joins, member, GROUP_COLUMNS};
use crate::accounts::user_exists;
use crate::conversations;
use crate::error::{conflict, corrupt, limit_reached, not_found, Failure, Outcome};
use crate::sql::{self, execute, key, query_one, query_opt, u64_at, Lock, Tx};

/// The counter row holding the last automatically assigned group number.
const GROUP_NUMBER_COUNTER: &str = "last_auto_group_number";

/// Creates a group with its conversation, its owner and its `Created` notice.
/// Group creation takes one advisory lock on every node: numbers are chosen
/// one at a time, and an owner's count of groups cannot pass `max_owned`
/// through two creations at once.
pub(crate) async fn create_group(tx: &Tx<'_>, new: &NewGroup) -> Outcome<Group> {
    let Some(owner) = key(new.owner.0) else {
        return Err(not_found("user"));
    };
    sql::lock(tx, Lock::GroupNumbers).await?;
    if !user_exists(tx, new.owner).await? {
        return Err(not_found("user"));
    }
    let owned = u64_at(
        &query_one(
            tx,
            "SELECT COUNT(*) FROM groups WHERE owner = $1 AND dissolved_at IS NULL",
            &[&owner],
        )
        .await?,
        0,
    )?;
    if owned >= u64::from(new.max_owned) {
        return Err(limit_reached("max_groups_owned", new.max_owned));
    }
    let id = next_group_number(tx, new.first_number).await?;
    let id_key = key(id.0).ok_or_else(|| corrupt("a group number beyond BIGINT"))?;
    let conversation = conversations::create_group_conversation(tx, id_key, new.created_at).await?;
    let conversation_key =
        key(conversation.0).ok_or_else(|| corrupt("a conversation id beyond BIGINT"))?;
    let (mode, question, answer) = join_mode_columns(&new.join_mode);
    execute(
        tx,
        "INSERT INTO groups
             (id, conversation, name, intro, category, tags, listed, tier, owner,
              join_mode, join_question, join_answer, members_may_invite, history,
              member_count, member_version, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, true, $13, 1, 1, $14)",
        &[
            &id_key,
            &conversation_key,
            &new.name,
            &new.intro,
            &new.category,
            &new.tags,
            &new.listed,
            &i64::from(new.tier),
            &owner,
            &mode,
            &question,
            &answer,
            &history_str(HistoryVisibility::FromJoin),
            &new.created_at,
        ],
    )
    .await?;
    let seq = conversations::lock_next_seq(tx, conversation).await?;
    let notice = conversations::insert_notice(
        tx,
        conversation,
        id,
        seq,
        new.owner,
        &Notice::Created { owner: new.owner },
        new.created_at,
    )
    .await?;
    insert_member(tx, id_key, owner, Role::Owner, new.created_at, notice.seq).await?;
    conversations::add_participant(tx, conversation, owner, notice.seq).await?;
    record_member_change(tx, id_key, owner, 1, false).await?;
    group(tx, id)
        .await?
        .ok_or_else(|| corrupt("a group vanished while it was created"))
}

/// The next free group number counting upward from `first`, never reused.
async fn next_group_number(tx: &Tx<'_>, first: GroupId) -> Outcome<GroupId> {
    let exhausted = || Failure::from(Error::Internal("group numbers are exhausted".into()));
    let last = query_opt(
        tx,
        "SELECT value FROM counters WHERE name = $1",
        &[&GROUP_NUMBER_COUNTER],
    )
    .await?
    .map(|row| u64_at(&row, 0))
    .transpose()?;
    let mut candidate = match last {
        Some(last) => last.checked_add(1).ok_or_else(exhausted)?.max(first.0),
        None => first.0,
    };
    while group(tx, GroupId(candidate)).await?.is_some() {
        candidate = candidate.checked_add(1).ok_or_else(exhausted)?;
    }
    let stored = key(candidate).ok_or_else(exhausted)?;
    execute(
        tx,
        "INSERT INTO counters (name, value) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        &[&GROUP_NUMBER_COUNTER, &stored],
    )
    .await?;
    Ok(GroupId(candidate))
}

async fn insert_member(
    tx: &Tx<'_>,
    group: i64,
    user: i64,
    role: Role,
    at: i64,
    join_seq: Seq,
) -> Outcome<()> {
    let join_seq = key(join_seq.0).ok_or_else(|| corrupt("a seq beyond BIGINT"))?;
    execute(
        tx,
        "INSERT INTO group_members (group_id, user_id, role, joined_at, join_seq)
         VALUES ($1, $2, $3, $4, $5)",
        &[&group, &user, &role.as_str(), &at, &join_seq],
    )
    .await?;
    Ok(())
}

/// Remembers the latest version at which a member entry changed.
async fn record_member_change(
    tx: &Tx<'_>,
    group: i64,
    user: i64,
    version: i64,
    removed: bool,
) -> Outcome<()> {
    execute(
        tx,
        "INSERT INTO group_member_changes (group_id, user_id, version, removed)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (group_id, user_id) DO UPDATE
         SET version = excluded.version, removed = excluded.removed",
        &[&group, &user, &version, &removed],
    )
    .await?;
    Ok(())
}

/// What applying a change produced besides the notice.
#[derive(Default)]
struct Applied {
    /// Member entries that changed: who, and whether they left.
    members: Vec<(i64, bool)>,
    /// A created announcement.
    announcement: Option<AnnouncementId>,
}

/// The group a change applies to, with the keys its statements use.
struct Target<'a> {
    group: &'a Group,
    /// The group's number as stored.
    id: i64,
}

/// Applies one change and appends its notice, in one transaction. The
/// notice of a `CreateAnnouncement` is stored with the created id.
pub(crate) async fn change_group(
    tx: &Tx<'_>,
    id: GroupId,
    actor: UserId,
    change: &GroupChange,
    notice: &Notice,
    time: i64,
) -> Outcome<GroupChanged> {
    let Some(id_key) = key(id.0) else {
        return Err(not_found("group"));
    };
    let current = query_opt(
        tx,
        &format!("SELECT {GROUP_COLUMNS} FROM groups WHERE id = $1 FOR NO KEY UPDATE"),
        &[&id_key],
    )
    .await?
    .ok_or_else(|| not_found("group"))?;
    let current = group_from_row(&current)?;
    if current.dissolved_at.is_some() {
        return Err(conflict("the group is dissolved"));
    }
    // The change learns the seq its notice will take (a new member's join
    // seq); the notice learns what the change created (an announcement's id).
    let seq = conversations::lock_next_seq(tx, current.conversation).await?;
    let target = Target {
        group: &current,
        id: id_key,
    };
    let applied = apply(tx, &target, actor, change, seq, time).await?;
    let notice = match (applied.announcement, notice) {
        (Some(id), Notice::Announcement { action, by, .. }) => Notice::Announcement {
            id,
            action: action.clone(),
            by: *by,
        },
        _ => notice.clone(),
    };
    let appended =
        conversations::insert_notice(tx, current.conversation, id, seq, actor, &notice, time)
            .await?;
    if !applied.members.is_empty() {
        let row = query_one(
            tx,
            "UPDATE groups SET member_version = member_version + 1 WHERE id = $1
             RETURNING member_version",
            &[&id_key],
        )
        .await?;
        let version: i64 = row.try_get(0)?;
        for (user, removed) in &applied.members {
            record_member_change(tx, id_key, *user, version, *removed).await?;
        }
    }
    Ok(GroupChanged {
        appended,
        announcement: applied.announcement,
        group: group(tx, id)
            .await?
            .ok_or_else(|| corrupt("a group vanished while it changed"))?,
    })
}

/// A user named by a change, as stored; beyond BIGINT there is no member.
fn member_key(user: UserId) -> Outcome<i64> {
    key(user.0).ok_or_else(|| not_found("member"))
}

async fn apply(
    tx: &Tx<'_>,
    target: &Target<'_>,
    actor: UserId,
    change: &GroupChange,
    seq: Seq,
    time: i64,
) -> Outcome<Applied> {
    let group = target.group;
    let id = target.id;
    let changed = |user: i64| Applied {
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
            let new = NewMember {
                user: *user,
                inviter: *inviter,
                approver: *approver,
                cap: *cap,
                request: *request,
                link: link.as_deref(),
            };
            let user = add_member(tx, target, &new, seq, time).await?;
            Ok(changed(user))
        }
        GroupChange::RemoveMember { user, ban } => {
            let entry = member(tx, group.id, *user)
                .await?
                .ok_or_else(|| not_found("member"))?;
            if entry.role == Role::Owner {
                return Err(conflict(
                    "the owner cannot leave the group; transfer it or dissolve it",
                ));
            }
            let user = member_key(*user)?;
            execute(
                tx,
                "DELETE FROM group_members WHERE group_id = $1 AND user_id = $2",
                &[&id, &user],
            )
            .await?;
            execute(
                tx,
                "UPDATE groups SET member_count = member_count - 1 WHERE id = $1",
                &[&id],
            )
            .await?;
            conversations::remove_participant(tx, group.conversation, user).await?;
            if *ban {
                let actor = key(actor.0).ok_or_else(|| not_found("user"))?;
                execute(
                    tx,
                    "INSERT INTO group_bans (group_id, user_id, by_user, at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (group_id, user_id) DO NOTHING",
                    &[&id, &user, &actor, &time],
                )
                .await?;
            }
            Ok(Applied {
                members: vec![(user, true)],
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
            let entry = member(tx, group.id, *user)
                .await?
                .ok_or_else(|| not_found("member"))?;
            if entry.role == Role::Owner {
                return Err(conflict("the owner's role changes only by a transfer"));
            }
            if *role == Role::Admin && entry.role != Role::Admin {
                let admins = u64_at(
                    &query_one(
                        tx,
                        "SELECT COUNT(*) FROM group_members WHERE group_id = $1 AND role = 'admin'",
                        &[&id],
                    )
                    .await?,
                    0,
                )?;
                if admins >= u64::from(*admin_cap) {
                    return Err(limit_reached("max_admins", *admin_cap));
                }
            }
            let user = member_key(*user)?;
            set_role(tx, id, user, *role).await?;
            Ok(changed(user))
        }
        GroupChange::TransferOwner { to } => {
            member(tx, group.id, *to)
                .await?
                .ok_or_else(|| not_found("member"))?;
            if *to == group.owner {
                return Err(conflict("this member owns the group already"));
            }
            let (old, new) = (member_key(group.owner)?, member_key(*to)?);
            // The old owner stays as an admin even past the admin cap.
            set_role(tx, id, old, Role::Admin).await?;
            set_role(tx, id, new, Role::Owner).await?;
            execute(
                tx,
                "UPDATE groups SET owner = $2 WHERE id = $1",
                &[&id, &new],
            )
            .await?;
            Ok(Applied {
                members: vec![(old, false), (new, false)],
                announcement: None,
            })
        }
        GroupChange::Mute { user, until } => {
            let user = member_key(*user)?;
            update_member(
                tx,
                "UPDATE group_members SET muted_until = $3 WHERE group_id = $1 AND user_id = $2",
                &[&id, &user, until],
            )
            .await?;
            Ok(changed(user))
        }
        GroupChange::SetTitle {
            user,
            title,
            expires_at,
        } => {
            let user = member_key(*user)?;
            update_member(
                tx,
                "UPDATE group_members SET title = $3, title_expires_at = $4
                 WHERE group_id = $1 AND user_id = $2",
                &[&id, &user, title, expires_at],
            )
            .await?;
            Ok(changed(user))
        }
        GroupChange::SetCard { user, card } => {
            let user = member_key(*user)?;
            update_member(
                tx,
                "UPDATE group_members SET card = $3 WHERE group_id = $1 AND user_id = $2",
                &[&id, &user, card],
            )
            .await?;
            Ok(changed(user))
        }
        GroupChange::MuteAll(muted) => {
            execute(
                tx,
                "UPDATE groups SET muted = $2 WHERE id = $1",
                &[&id, muted],
            )
            .await?;
            Ok(Applied::default())
        }
        GroupChange::Settings(settings) => {
            apply_settings(tx, id, settings).await?;
            Ok(Applied::default())
        }
        GroupChange::SetTier(tier) => {
            execute(
                tx,
                "UPDATE groups SET tier = $2 WHERE id = $1",
                &[&id, &i64::from(*tier)],
            )
            .await?;
            Ok(Applied::default())
        }
        GroupChange::CreateAnnouncement(draft) => {
            let author = key(actor.0).ok_or_else(|| not_found("user"))?;
            let row = query_one(
                tx,
                "INSERT INTO announcements
                     (group_id, author, title, body, pinned, require_confirm, entrance, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                &[
                    &id,
                    &author,
                    &draft.title,
                    &draft.body,
                    &draft.pinned,
                    &draft.require_confirm,
                    &draft.entrance,
                    &time,
                ],
            )
            .await?;
            Ok(Applied {
                members: Vec::new(),
                announcement: Some(AnnouncementId(u64_at(&row, 0)?)),
            })
        }
        GroupChange::EditAnnouncement(announcement, draft) => {
            edit_announcement(tx, id, *announcement, draft, time).await?;
            Ok(Applied::default())
        }
        GroupChange::DeleteAnnouncement(announcement) => {
            let Some(announcement) = key(announcement.0) else {
                return Err(not_found("announcement"));
            };
            // Its confirmations go with it (ON DELETE CASCADE).
            let deleted = execute(
                tx,
                "DELETE FROM announcements WHERE id = $1 AND group_id = $2",
                &[&announcement, &id],
            )
            .await?;
            if deleted == 0 {
                return Err(not_found("announcement"));
            }
            Ok(Applied::default())
        }
        GroupChange::SetEssence { seq: target, set } => {
            set_essence(tx, group, id, actor, *target, *set, time).await?;
            Ok(Applied::default())
        }
        GroupChange::Dissolve => {
            execute(
                tx,
                "UPDATE groups SET dissolved_at = $2 WHERE id = $1",
                &[&id, &time],
            )
            .await?;
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

/// Adds a member; returns their number as stored.
async fn add_member(
    tx: &Tx<'_>,
    target: &Target<'_>,
    new: &NewMember<'_>,
    join_seq: Seq,
    time: i64,
) -> Outcome<i64> {
    let group = target.group;
    let id = target.id;
    if member(tx, group.id, new.user).await?.is_some() {
        return Err(conflict("already a member of this group"));
    }
    if !user_exists(tx, new.user).await? {
        return Err(not_found("user"));
    }
    let user = key(new.user.0).ok_or_else(|| not_found("user"))?;
    if joins::is_banned(tx, group.id, new.user).await? {
        // The domain has no `Denied` reason for bans yet; a conflict stands in.
        return Err(conflict("banned from this group"));
    }
    // The group's row is locked: the count cannot move under this check.
    if group.member_count >= new.cap {
        return Err(limit_reached("max_members", new.cap));
    }
    let inviter = new.inviter.and_then(|u| key(u.0));
    let approver = new.approver.and_then(|u| key(u.0));
    if let Some(request) = new.request {
        let found = joins::join_request(tx, request)
            .await?
            .ok_or_else(|| not_found("join request"))?;
        if found.group != group.id || found.user != new.user {
            return Err(Error::invalid("request", "it is for another group or user").into());
        }
        let request = key(request.0).ok_or_else(|| not_found("join request"))?;
        // Conditional, so that a refusal committed meanwhile on another node wins.
        let accepted = execute(
            tx,
            "UPDATE join_requests SET status = 'accepted', reviewer = $2
             WHERE id = $1 AND status = 'pending'",
            &[&request, &approver],
        )
        .await?;
        if accepted == 0 {
            return Err(conflict("the join request is no longer pending"));
        }
    }
    // Whatever else the newcomer had pending for this group is settled by the join.
    execute(
        tx,
        "UPDATE join_requests SET status = 'accepted', reviewer = COALESCE(reviewer, $3)
         WHERE group_id = $1 AND user_id = $2 AND status = 'pending'",
        &[&id, &user, &approver],
    )
    .await?;
    if let Some(code) = new.link {
        let link = joins::invite_link(tx, code)
            .await?
            .ok_or_else(|| not_found("invite link"))?;
        if link.group != group.id {
            return Err(Error::invalid("link", "it is for another group").into());
        }
        let used = execute(
            tx,
            "UPDATE invite_links SET uses = uses + 1
             WHERE code = $1 AND (max_uses IS NULL OR uses < max_uses)",
            &[&code],
        )
        .await?;
        if used == 0 {
            return Err(limit_reached(
                "invite_link_uses",
                link.max_uses.unwrap_or(link.uses),
            ));
        }
    }
    let join_seq_key = key(join_seq.0).ok_or_else(|| corrupt("a seq beyond BIGINT"))?;
    execute(
        tx,
        "INSERT INTO group_members (group_id, user_id, role, joined_at, join_seq, inviter, approver)
         VALUES ($1, $2, 'member', $3, $4, $5, $6)",
        &[&id, &user, &time, &join_seq_key, &inviter, &approver],
    )
    .await?;
    execute(
        tx,
        "UPDATE groups SET member_count = member_count + 1 WHERE id = $1",
        &[&id],
    )
    .await?;
    // Unread starts after the join notice.
    conversations::add_participant(tx, group.conversation, user, join_seq).await?;
    Ok(user)
}

async fn set_role(tx: &Tx<'_>, group: i64, user: i64, role: Role) -> Outcome<()> {
    execute(
        tx,
        "UPDATE group_members SET role = $3 WHERE group_id = $1 AND user_id = $2",
        &[&group, &user, &role.as_str()],
    )
    .await?;
    Ok(())
}

/// Runs an update of one member entry; `NotFound` if there is none.
async fn update_member(tx: &Tx<'_>, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Outcome<()> {
    if execute(tx, sql, params).await? == 0 {
        return Err(not_found("member"));
    }
    Ok(())
}

/// Applies the settings that are `Some`, in one statement.
async fn apply_settings(tx: &Tx<'_>, id: i64, settings: &GroupSettings) -> Outcome<()> {
    let mode = settings.join_mode.as_ref().map(join_mode_columns);
    execute(
        tx,
        "UPDATE groups SET
             name = COALESCE($2, name),
             intro = COALESCE($3, intro),
             avatar = CASE WHEN $4 THEN $5 ELSE avatar END,
             category = COALESCE($6, category),
             tags = COALESCE($7, tags),
             listed = COALESCE($8, listed),
             join_mode = COALESCE($9, join_mode),
             join_question = CASE WHEN $9 IS NULL THEN join_question ELSE $10 END,
             join_answer = CASE WHEN $9 IS NULL THEN join_answer ELSE $11 END,
             members_may_invite = COALESCE($12, members_may_invite),
             history = COALESCE($13, history)
         WHERE id = $1",
        &[
            &id,
            &settings.name,
            &settings.intro,
            &settings.avatar.is_some(),
            &settings.avatar.clone().flatten(),
            &settings.category,
            &settings.tags,
            &settings.listed,
            &mode.map(|(mode, _, _)| mode),
            &mode.and_then(|(_, question, _)| question),
            &mode.and_then(|(_, _, answer)| answer),
            &settings.members_may_invite,
            &settings.history.map(history_str),
        ],
    )
    .await?;
    Ok(())
}

async fn edit_announcement(
    tx: &Tx<'_>,
    group: i64,
    id: AnnouncementId,
    draft: &AnnouncementDraft,
    time: i64,
) -> Outcome<()> {
    let Some(id) = key(id.0) else {
        return Err(not_found("announcement"));
    };
    let updated = execute(
        tx,
        "UPDATE announcements
         SET title = $3, body = $4, pinned = $5, require_confirm = $6, entrance = $7,
             edited_at = $8
         WHERE id = $1 AND group_id = $2",
        &[
            &id,
            &group,
            &draft.title,
            &draft.body,
            &draft.pinned,
            &draft.require_confirm,
            &draft.entrance,
            &time,
        ],
    )
    .await?;
    if updated == 0 {
        return Err(not_found("announcement"));
    }
    Ok(())
}

/// Marks (idempotently, keeping the first marking) or unmarks an essence.
async fn set_essence(
    tx: &Tx<'_>,
    group: &Group,
    id: i64,
    actor: UserId,
    seq: Seq,
    set: bool,
    time: i64,
) -> Outcome<()> {
    let Some(seq) = key(seq.0) else {
        return Err(not_found("message"));
    };
    if !set {
        let deleted = execute(
            tx,
            "DELETE FROM essences WHERE group_id = $1 AND seq = $2",
            &[&id, &seq],
        )
        .await?;
        if deleted == 0 {
            return Err(not_found("essence message"));
        }
        return Ok(());
    }
    let conversation =
        key(group.conversation.0).ok_or_else(|| corrupt("a conversation id beyond BIGINT"))?;
    let message = query_opt(
        tx,
        "SELECT 1 FROM events
         WHERE conversation = $1 AND seq = $2 AND kind = 'message' AND NOT recalled",
        &[&conversation, &seq],
    )
    .await?;
    if message.is_none() {
        return Err(not_found("message"));
    }
    let actor = key(actor.0).ok_or_else(|| not_found("user"))?;
    execute(
        tx,
        "INSERT INTO essences (group_id, seq, by_user, at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (group_id, seq) DO NOTHING",
        &[&id, &seq, &actor, &time],
    )
    .await?;
    Ok(())
}
