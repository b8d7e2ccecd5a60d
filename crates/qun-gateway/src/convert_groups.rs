//! Explicit conversions of group types between the domain and the wire.

use qun_domain::groups::model as g;
use qun_domain::model::RequestStatus;
use qun_domain::{self as d, Tier};
use qun_wire as w;

fn user(u: d::UserId) -> w::UserId {
    w::UserId(u.0)
}

fn users(u: Option<d::UserId>) -> Option<w::UserId> {
    u.map(user)
}

/// Domain role → wire.
pub fn role(r: g::Role) -> w::Role {
    match r {
        g::Role::Owner => w::Role::Owner,
        g::Role::Admin => w::Role::Admin,
        g::Role::Member => w::Role::Member,
    }
}

/// Wire role → domain.
pub fn role_in(r: w::Role) -> g::Role {
    match r {
        w::Role::Owner => g::Role::Owner,
        w::Role::Admin => g::Role::Admin,
        w::Role::Member => g::Role::Member,
    }
}

/// Domain join mode → wire; `reveal` shows a `question_auto` answer.
pub fn join_mode(m: &g::JoinMode, reveal: bool) -> w::JoinMode {
    match m {
        g::JoinMode::Open => w::JoinMode::Open,
        g::JoinMode::Approval => w::JoinMode::Approval,
        g::JoinMode::Question { question } => w::JoinMode::Question {
            question: question.clone(),
        },
        g::JoinMode::QuestionAuto { question, answer } => w::JoinMode::QuestionAuto {
            question: question.clone(),
            answer: if reveal {
                answer.clone()
            } else {
                String::new()
            },
        },
        g::JoinMode::InviteOnly => w::JoinMode::InviteOnly,
        g::JoinMode::Closed => w::JoinMode::Closed,
    }
}

/// Wire join mode → domain.
pub fn join_mode_in(m: w::JoinMode) -> g::JoinMode {
    match m {
        w::JoinMode::Open => g::JoinMode::Open,
        w::JoinMode::Approval => g::JoinMode::Approval,
        w::JoinMode::Question { question } => g::JoinMode::Question { question },
        w::JoinMode::QuestionAuto { question, answer } => {
            g::JoinMode::QuestionAuto { question, answer }
        }
        w::JoinMode::InviteOnly => g::JoinMode::InviteOnly,
        w::JoinMode::Closed => g::JoinMode::Closed,
    }
}

fn history(h: g::HistoryVisibility) -> w::HistoryVisibility {
    match h {
        g::HistoryVisibility::FromJoin => w::HistoryVisibility::FromJoin,
        g::HistoryVisibility::Full => w::HistoryVisibility::Full,
    }
}

fn history_in(h: w::HistoryVisibility) -> g::HistoryVisibility {
    match h {
        w::HistoryVisibility::FromJoin => g::HistoryVisibility::FromJoin,
        w::HistoryVisibility::Full => g::HistoryVisibility::Full,
    }
}

/// A group; `manager` reveals the automatic join answer.
pub fn group(gr: &g::Group, tiers: &[Tier], manager: bool) -> w::GroupView {
    let tier = tiers.get(gr.tier as usize);
    w::GroupView {
        group_id: w::GroupId(gr.id.0),
        conversation: w::ConversationId(gr.conversation.0),
        name: gr.name.clone(),
        intro: gr.intro.clone(),
        avatar: gr.avatar.clone(),
        category: gr.category.clone(),
        tags: gr.tags.clone(),
        listed: gr.listed,
        tier: gr.tier,
        tier_name: tier.map(|t| t.name.clone()).unwrap_or_default(),
        max_members: tier.map_or(0, |t| t.max_members),
        owner: user(gr.owner),
        join_mode: join_mode(&gr.join_mode, manager),
        members_may_invite: gr.members_may_invite,
        history: history(gr.history),
        muted: gr.muted,
        member_count: gr.member_count,
        member_version: gr.member_version,
        created_at: gr.created_at,
        dissolved_at: gr.dissolved_at,
    }
}

/// Settings patch, wire → domain.
pub fn settings_in(p: w::GroupSettingsPatch) -> g::GroupSettings {
    g::GroupSettings {
        name: p.name,
        intro: p.intro,
        avatar: p.avatar.map(|a| (!a.is_empty()).then_some(a)),
        category: p.category,
        tags: p.tags,
        listed: p.listed,
        join_mode: p.join_mode.map(join_mode_in),
        members_may_invite: p.members_may_invite,
        history: p.history.map(history_in),
    }
}

fn settings(s: &g::GroupSettings) -> w::GroupSettingsPatch {
    w::GroupSettingsPatch {
        name: s.name.clone(),
        intro: s.intro.clone(),
        avatar: s.avatar.clone().map(Option::unwrap_or_default),
        category: s.category.clone(),
        tags: s.tags.clone(),
        listed: s.listed,
        // Notices go to every member: never reveal an automatic answer there.
        join_mode: s.join_mode.as_ref().map(|m| join_mode(m, false)),
        members_may_invite: s.members_may_invite,
        history: s.history.map(history),
    }
}

/// A member entry.
pub fn member(m: &g::Member) -> w::MemberView {
    w::MemberView {
        user_id: user(m.user),
        role: role(m.role),
        card: m.card.clone(),
        title: m.title.clone(),
        title_expires_at: m.title_expires_at,
        level: m.level(),
        joined_at: m.joined_at,
        last_spoke_at: m.last_spoke_at,
        muted_until: m.muted_until,
        inviter: users(m.inviter),
        approver: users(m.approver),
    }
}

/// A join request.
pub fn join_request(r: &g::JoinRequest) -> w::JoinRequestView {
    w::JoinRequestView {
        id: w::JoinRequestId(r.id.0),
        group_id: w::GroupId(r.group.0),
        user_id: user(r.user),
        kind: match r.kind {
            g::JoinKind::Application => w::JoinKind::Application,
            g::JoinKind::Invitation => w::JoinKind::Invitation,
        },
        message: r.message.clone(),
        answer: r.answer.clone(),
        inviter: users(r.inviter),
        status: match r.status {
            RequestStatus::Pending => w::FriendRequestStatus::Pending,
            RequestStatus::Accepted => w::FriendRequestStatus::Accepted,
            RequestStatus::Refused => w::FriendRequestStatus::Refused,
        },
        reviewer: users(r.reviewer),
        reason: r.reason.clone(),
        created_at: r.created_at,
    }
}

/// The outcome of a join attempt.
pub fn join_outcome(o: &d::JoinOutcome) -> w::JoinResult {
    match o {
        d::JoinOutcome::Joined(m) => w::JoinResult {
            joined: true,
            member: Some(member(m)),
            request: None,
        },
        d::JoinOutcome::Pending(r) => w::JoinResult {
            joined: false,
            member: None,
            request: Some(join_request(r)),
        },
    }
}

/// An invite link.
pub fn invite_link(l: &g::InviteLink) -> w::InviteLinkView {
    w::InviteLinkView {
        code: l.code.clone(),
        group_id: w::GroupId(l.group.0),
        creator: user(l.creator),
        expires_at: l.expires_at,
        max_uses: l.max_uses,
        uses: l.uses,
    }
}

/// Announcement draft, wire → domain.
pub fn draft_in(d: w::AnnouncementDraft) -> g::AnnouncementDraft {
    g::AnnouncementDraft {
        title: d.title,
        body: d.body,
        pinned: d.pinned,
        require_confirm: d.require_confirm,
        entrance: d.entrance,
    }
}

/// An announcement.
pub fn announcement(a: &g::Announcement) -> w::AnnouncementView {
    w::AnnouncementView {
        id: w::AnnouncementId(a.id.0),
        group_id: w::GroupId(a.group.0),
        author: user(a.author),
        title: a.title.clone(),
        body: a.body.clone(),
        pinned: a.pinned,
        require_confirm: a.require_confirm,
        entrance: a.entrance,
        created_at: a.created_at,
        edited_at: a.edited_at,
    }
}

/// An essence entry.
pub fn essence(e: &g::Essence) -> w::EssenceView {
    w::EssenceView {
        seq: w::Seq(e.seq.0),
        by: user(e.by),
        at: e.at,
    }
}

/// A notice.
pub fn notice(n: &g::Notice) -> w::GroupNotice {
    use g::Notice as N;
    use w::GroupNotice as W;
    match n {
        N::Created { owner } => W::Created {
            owner: user(*owner),
        },
        N::Joined {
            user: u,
            inviter,
            approver,
        } => W::Joined {
            user: user(*u),
            inviter: users(*inviter),
            approver: users(*approver),
        },
        N::Left { user: u } => W::Left { user: user(*u) },
        N::Kicked {
            user: u,
            by,
            banned,
        } => W::Kicked {
            user: user(*u),
            by: user(*by),
            banned: *banned,
        },
        N::RoleChanged {
            user: u,
            role: r,
            by,
        } => W::RoleChanged {
            user: user(*u),
            role: role(*r),
            by: user(*by),
        },
        N::OwnerTransferred { from, to } => W::OwnerTransferred {
            from: user(*from),
            to: user(*to),
        },
        N::Muted { user: u, until, by } => W::Muted {
            user: user(*u),
            until: *until,
            by: user(*by),
        },
        N::GroupMuted { muted, by } => W::GroupMuted {
            muted: *muted,
            by: user(*by),
        },
        N::TitleSet {
            user: u,
            title,
            expires_at,
        } => W::TitleSet {
            user: user(*u),
            title: title.clone(),
            expires_at: *expires_at,
        },
        N::CardSet { user: u, card, by } => W::CardSet {
            user: user(*u),
            card: card.clone(),
            by: user(*by),
        },
        N::SettingsChanged { by, settings: s } => W::SettingsChanged {
            by: user(*by),
            settings: settings(s),
        },
        N::TierChanged { tier, by } => W::TierChanged {
            tier: *tier,
            by: user(*by),
        },
        N::Announcement { id, action, by } => W::Announcement {
            id: w::AnnouncementId(id.0),
            action: action.clone(),
            by: user(*by),
        },
        N::Essence { seq, set, by } => W::Essence {
            seq: w::Seq(seq.0),
            set: *set,
            by: user(*by),
        },
        N::Dissolved { by } => W::Dissolved { by: user(*by) },
    }
}
