//! Group operations on [`Qun`]. Every operation looks up the caller's
//! standing and asks [`policy`](super::policy) before touching anything, so a
//! denied action changes nothing. Every change is one store transaction that
//! also appends a notice to the group's stream, fanned out after it is durable.

use async_trait::async_trait;

use super::model::*;
use super::policy::{self, Action, Standing};
use super::store::DailyCounter;
use crate::bus::LiveEvent;
use crate::model::{ConversationState, EventBody, Quota, RequestStatus, Segment};
use crate::service::check;
use crate::{
    AnnouncementId, Caller, Denied, Error, GroupId, JoinRequestId, Qun, Result, Seq, Tier, UserId,
};

/// Charges for moving a group to a tier. The wallet (a later feature)
/// implements it; until then tiers are free.
#[async_trait]
pub trait TierPayments: Send + Sync + 'static {
    /// Charges `payer` for `tier` of `group`, or refuses with an error.
    async fn charge(&self, group: GroupId, payer: UserId, tier: &Tier) -> Result<()>;
}

/// Tier changes cost nothing.
pub struct FreeTiers;

#[async_trait]
impl TierPayments for FreeTiers {
    async fn charge(&self, _: GroupId, _: UserId, _: &Tier) -> Result<()> {
        Ok(())
    }
}

/// What a group creator chooses.
#[derive(Debug, Clone)]
pub struct CreateGroup {
    /// Name.
    pub name: String,
    /// Introduction.
    pub intro: String,
    /// Category.
    pub category: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Listed in search.
    pub listed: bool,
    /// Join mode.
    pub join_mode: JoinMode,
}

/// The result of asking to join.
#[derive(Debug, Clone, PartialEq)]
pub enum JoinOutcome {
    /// The caller is now a member.
    Joined(Member),
    /// The request waits for the owner or an admin.
    Pending(JoinRequest),
}

/// Read receipts of one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Receipts {
    /// How many members have read up to it.
    pub count: u64,
    /// Who, when the group is small enough to list them.
    pub readers: Option<Vec<UserId>>,
}

/// Remaining @all quota today.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtAllQuota {
    /// Left for the whole group.
    pub group_remaining: u32,
    /// Left for the caller.
    pub mine_remaining: u32,
}

/// A member list delta since a version.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberDelta {
    /// The version the caller is now at.
    pub version: u64,
    /// Members who joined or whose entry changed.
    pub changed: Vec<Member>,
    /// Users who are no longer members.
    pub removed: Vec<UserId>,
}

const DAY_MS: i64 = 86_400_000;

impl Qun {
    fn groups_config(&self) -> &crate::GroupLimits {
        &self.config.groups
    }

    fn tier(&self, index: u32) -> Result<&Tier> {
        self.config
            .groups
            .tiers
            .get(index as usize)
            .ok_or_else(|| Error::Internal(format!("group tier {index} is not configured")))
    }

    /// The group and the caller's entry in it (if any).
    pub(crate) async fn standing(
        &self,
        user: UserId,
        id: GroupId,
    ) -> Result<(Group, Option<Member>)> {
        let group = self
            .store
            .group(id)
            .await?
            .ok_or(Error::NotFound("group"))?;
        let member = self.store.member(id, user).await?.map(|m| self.present(m));
        Ok((group, member))
    }

    /// Checks the policy table; returns the caller's entry for member actions.
    fn require(&self, group: &Group, member: Option<&Member>, action: Action) -> Result<()> {
        self.require_to_look(group, member, action)?;
        let writes = !matches!(action, Action::View | Action::Read);
        if writes && group.dissolved_at.is_some() {
            return Err(Error::Forbidden(Denied::Dissolved));
        }
        Ok(())
    }

    /// The role check alone, for actions that only look (a manager's view of
    /// requests, confirmations and quotas), which a dissolved group still allows.
    fn require_to_look(
        &self,
        group: &Group,
        member: Option<&Member>,
        action: Action,
    ) -> Result<()> {
        let standing = Standing::of(member.map(|m| m.role));
        if !policy::allowed(standing, action, group) {
            return Err(Error::Forbidden(match standing {
                Standing::Outsider => Denied::NotMember,
                _ => Denied::Role,
            }));
        }
        Ok(())
    }

    /// Hides a title or mute that has expired by now.
    fn present(&self, mut m: Member) -> Member {
        let now = self.clock.now_ms();
        if m.title_expires_at.is_some_and(|t| t <= now) {
            m.title = None;
            m.title_expires_at = None;
        }
        if m.muted_until.is_some_and(|t| t <= now) {
            m.muted_until = None;
        }
        m
    }

    /// Applies a change with its notice and announces the notice to every
    /// member, plus `also` (e.g. someone who just left).
    async fn change(
        &self,
        actor: UserId,
        group: &Group,
        change: GroupChange,
        notice: Notice,
        also: &[UserId],
    ) -> Result<GroupChanged> {
        let changed = self
            .store
            .change_group(group.id, actor, change, notice, self.clock.now_ms())
            .await?;
        let mut users = self.group_recipients(&changed.group).await?;
        users.extend_from_slice(also);
        match self
            .store
            .event(group.conversation, changed.appended.seq)
            .await?
        {
            Some(event) => self.deliver(users, LiveEvent::Conversation(event)).await,
            None => tracing::warn!(group = %group.id, "a stored notice could not be read back"),
        }
        Ok(changed)
    }

    /// Every member of the group, from a per-node cache keyed on the group's
    /// member-list version (which every membership change bumps, on any node).
    pub(crate) async fn group_recipients(&self, group: &Group) -> Result<Vec<UserId>> {
        if let Some(ids) = self.member_cache.get(group.id, group.member_version) {
            return Ok(ids.as_ref().clone());
        }
        let ids = std::sync::Arc::new(self.store.member_ids(group.id).await?);
        self.member_cache
            .put(group.id, group.member_version, ids.clone());
        Ok(ids.as_ref().clone())
    }

    /// Creates a group owned by the caller, on the first tier.
    pub async fn create_group(&self, caller: &Caller, spec: CreateGroup) -> Result<Group> {
        self.check_group_text(&spec.name, &spec.intro, &spec.category, &spec.tags)?;
        self.check_join_mode(&spec.join_mode)?;
        let g = self.groups_config();
        self.tier(0)?;
        let group = self
            .store
            .create_group(NewGroup {
                owner: caller.user,
                name: spec.name.trim().to_owned(),
                intro: spec.intro,
                category: spec.category,
                tags: spec.tags,
                listed: spec.listed,
                join_mode: spec.join_mode,
                tier: 0,
                created_at: self.clock.now_ms(),
                first_number: GroupId(g.first_group_number),
                max_owned: g.max_groups_owned,
            })
            .await?;
        // The owner's other devices learn of the group from its first notice.
        if let Some(created) = self.store.event(group.conversation, Seq(1)).await? {
            self.deliver(vec![caller.user], LiveEvent::Conversation(created))
                .await;
        }
        Ok(group)
    }

    /// A group's profile; anyone may look a group up.
    pub async fn group(&self, caller: &Caller, id: GroupId) -> Result<Group> {
        let (group, member) = self.standing(caller.user, id).await?;
        self.require(&group, member.as_ref(), Action::View)?;
        Ok(group)
    }

    /// The caller's entry in a group.
    pub async fn my_membership(&self, caller: &Caller, id: GroupId) -> Result<Member> {
        let (_, member) = self.standing(caller.user, id).await?;
        member.ok_or(Error::Forbidden(Denied::NotMember))
    }

    /// The groups the caller is a member of.
    pub async fn my_groups(&self, caller: &Caller) -> Result<Vec<Group>> {
        let mut groups = Vec::new();
        for id in self.store.groups_of(caller.user).await? {
            if let Some(g) = self.store.group(id).await? {
                groups.push(g);
            }
        }
        Ok(groups)
    }

    /// Changes settings (owner and admins).
    pub async fn update_group(
        &self,
        caller: &Caller,
        id: GroupId,
        settings: GroupSettings,
    ) -> Result<Group> {
        let (group, member) = self.standing(caller.user, id).await?;
        self.require(&group, member.as_ref(), Action::Manage)?;
        let name = settings.name.as_deref().unwrap_or(&group.name);
        let intro = settings.intro.as_deref().unwrap_or(&group.intro);
        let category = settings.category.as_deref().unwrap_or(&group.category);
        let tags = settings.tags.as_deref().unwrap_or(&group.tags);
        self.check_group_text(name, intro, category, tags)?;
        if let Some(mode) = &settings.join_mode {
            self.check_join_mode(mode)?;
        }
        if let Some(Some(avatar)) = &settings.avatar {
            check::text(
                "avatar",
                avatar,
                self.config.max_avatar_bytes,
                "max_avatar_bytes",
                false,
            )?;
        }
        let notice = Notice::SettingsChanged {
            by: caller.user,
            settings: settings.clone(),
        };
        Ok(self
            .change(
                caller.user,
                &group,
                GroupChange::Settings(settings),
                notice,
                &[],
            )
            .await?
            .group)
    }

    /// Moves the group to another tier (owner), charging through the payment hook.
    pub async fn set_tier(&self, caller: &Caller, id: GroupId, tier: u32) -> Result<Group> {
        let (group, member) = self.standing(caller.user, id).await?;
        self.require(&group, member.as_ref(), Action::Own)?;
        let t = self.check_tier_fits(&group, tier)?;
        self.payments.charge(group.id, caller.user, t).await?;
        let notice = Notice::TierChanged {
            tier,
            by: caller.user,
        };
        Ok(self
            .change(caller.user, &group, GroupChange::SetTier(tier), notice, &[])
            .await?
            .group)
    }

    /// A server administrator's tier override: no role check, no charge.
    pub async fn admin_set_tier(&self, id: GroupId, tier: u32) -> Result<Group> {
        let group = self
            .store
            .group(id)
            .await?
            .ok_or(Error::NotFound("group"))?;
        if group.dissolved_at.is_some() {
            return Err(Error::Forbidden(Denied::Dissolved));
        }
        self.check_tier_fits(&group, tier)?;
        let notice = Notice::TierChanged {
            tier,
            by: UserId(0),
        };
        Ok(self
            .change(group.owner, &group, GroupChange::SetTier(tier), notice, &[])
            .await?
            .group)
    }

    fn check_tier_fits(&self, group: &Group, tier: u32) -> Result<&Tier> {
        let t = self.config.groups.tiers.get(tier as usize).ok_or_else(|| {
            Error::invalid(
                "tier",
                format!("tiers are 0..{}", self.config.groups.tiers.len()),
            )
        })?;
        if group.member_count > t.max_members {
            return Err(Error::Conflict(format!(
                "the group has {} members, more than tier {} allows ({})",
                group.member_count, t.name, t.max_members
            )));
        }
        Ok(t)
    }

    /// Dissolves the group (owner). Members keep read-only access to its history.
    pub async fn dissolve_group(&self, caller: &Caller, id: GroupId) -> Result<()> {
        let (group, member) = self.standing(caller.user, id).await?;
        self.require(&group, member.as_ref(), Action::Own)?;
        self.change(
            caller.user,
            &group,
            GroupChange::Dissolve,
            Notice::Dissolved { by: caller.user },
            &[],
        )
        .await?;
        Ok(())
    }

    /// Hands ownership to another member (owner); the old owner becomes an admin.
    pub async fn transfer_group(&self, caller: &Caller, id: GroupId, to: UserId) -> Result<Group> {
        let (group, member) = self.standing(caller.user, id).await?;
        self.require(&group, member.as_ref(), Action::Own)?;
        if to == caller.user {
            return Err(Error::Forbidden(Denied::SelfTarget));
        }
        let notice = Notice::OwnerTransferred {
            from: caller.user,
            to,
        };
        Ok(self
            .change(
                caller.user,
                &group,
                GroupChange::TransferOwner { to },
                notice,
                &[],
            )
            .await?
            .group)
    }

    /// Appoints or dismisses an admin (owner).
    pub async fn set_admin(
        &self,
        caller: &Caller,
        id: GroupId,
        user: UserId,
        admin: bool,
    ) -> Result<Member> {
        let (group, member) = self.standing(caller.user, id).await?;
        self.require(&group, member.as_ref(), Action::Own)?;
        if user == caller.user {
            return Err(Error::Forbidden(Denied::SelfTarget));
        }
        self.target(&group, user).await?;
        let role = if admin { Role::Admin } else { Role::Member };
        let admin_cap = self.tier(group.tier)?.max_admins;
        let notice = Notice::RoleChanged {
            user,
            role,
            by: caller.user,
        };
        self.change(
            caller.user,
            &group,
            GroupChange::SetRole {
                user,
                role,
                admin_cap,
            },
            notice,
            &[],
        )
        .await?;
        self.target(&group, user).await
    }

    /// Sets or clears a member's special title, optionally expiring (owner).
    pub async fn set_title(
        &self,
        caller: &Caller,
        id: GroupId,
        user: UserId,
        title: Option<String>,
        expires_in_secs: Option<u64>,
    ) -> Result<Member> {
        let (group, member) = self.standing(caller.user, id).await?;
        self.require(&group, member.as_ref(), Action::Own)?;
        self.target(&group, user).await?;
        let g = self.groups_config();
        let title = self.optional_text("title", title, g.max_title_chars, "max_title_chars")?;
        let expires_at =
            expires_in_secs.map(|s| self.clock.now_ms() + (s.min(u64::MAX / 2000) as i64) * 1000);
        let notice = Notice::TitleSet {
            user,
            title: title.clone(),
            expires_at,
        };
        self.change(
            caller.user,
            &group,
            GroupChange::SetTitle {
                user,
                title,
                expires_at,
            },
            notice,
            &[],
        )
        .await?;
        self.target(&group, user).await
    }

    /// Sets a group card: one's own (any member), or a lower role's (owner, admins).
    pub async fn set_card(
        &self,
        caller: &Caller,
        id: GroupId,
        user: UserId,
        card: Option<String>,
    ) -> Result<Member> {
        let (group, member) = self.standing(caller.user, id).await?;
        if user == caller.user {
            self.require(&group, member.as_ref(), Action::Participate)?;
        } else {
            self.moderate(&group, member.as_ref(), user).await?;
        }
        let card = self.optional_text(
            "card",
            card,
            self.groups_config().max_card_chars,
            "max_card_chars",
        )?;
        let notice = Notice::CardSet {
            user,
            card: card.clone(),
            by: caller.user,
        };
        self.change(
            caller.user,
            &group,
            GroupChange::SetCard { user, card },
            notice,
            &[],
        )
        .await?;
        self.target(&group, user).await
    }

    /// Removes a member (owner on anyone, admins on members), optionally
    /// banning them from asking again. Their sockets stop receiving at once.
    pub async fn kick(&self, caller: &Caller, id: GroupId, user: UserId, ban: bool) -> Result<()> {
        let (group, member) = self.standing(caller.user, id).await?;
        self.moderate(&group, member.as_ref(), user).await?;
        let notice = Notice::Kicked {
            user,
            by: caller.user,
            banned: ban,
        };
        self.change(
            caller.user,
            &group,
            GroupChange::RemoveMember { user, ban },
            notice,
            &[user],
        )
        .await?;
        Ok(())
    }

    /// Lifts a ban (owner and admins).
    pub async fn unban(&self, caller: &Caller, id: GroupId, user: UserId) -> Result<()> {
        let (group, member) = self.standing(caller.user, id).await?;
        self.require(&group, member.as_ref(), Action::Manage)?;
        if !self.store.unban(id, user).await? {
            return Err(Error::NotFound("ban"));
        }
        Ok(())
    }

    /// Leaves the group; the owner must transfer or dissolve instead.
    pub async fn leave_group(&self, caller: &Caller, id: GroupId) -> Result<()> {
        let (group, member) = self.standing(caller.user, id).await?;
        if member.as_ref().is_some_and(|m| m.role == Role::Owner) {
            return Err(Error::Conflict(
                "the owner must transfer the group or dissolve it".into(),
            ));
        }
        self.require(&group, member.as_ref(), Action::Leave)?;
        let notice = Notice::Left { user: caller.user };
        let change = GroupChange::RemoveMember {
            user: caller.user,
            ban: false,
        };
        self.change(caller.user, &group, change, notice, &[caller.user])
            .await?;
        Ok(())
    }

    /// Mutes a member for `secs` (0 unmutes), at most the configured maximum.
    pub async fn mute(
        &self,
        caller: &Caller,
        id: GroupId,
        user: UserId,
        secs: u64,
    ) -> Result<Member> {
        let (group, member) = self.standing(caller.user, id).await?;
        self.moderate(&group, member.as_ref(), user).await?;
        let max = self.groups_config().max_mute_secs;
        if secs > max {
            return Err(Error::TooLarge {
                limit: "max_mute_secs",
                max,
            });
        }
        let until = (secs > 0).then(|| self.clock.now_ms() + (secs as i64) * 1000);
        let notice = Notice::Muted {
            user,
            until,
            by: caller.user,
        };
        self.change(
            caller.user,
            &group,
            GroupChange::Mute { user, until },
            notice,
            &[],
        )
        .await?;
        self.target(&group, user).await
    }

    /// Mutes or unmutes the whole group (owner and admins are exempt).
    pub async fn mute_all(&self, caller: &Caller, id: GroupId, muted: bool) -> Result<Group> {
        let (group, member) = self.standing(caller.user, id).await?;
        self.require(&group, member.as_ref(), Action::Manage)?;
        let notice = Notice::GroupMuted {
            muted,
            by: caller.user,
        };
        Ok(self
            .change(
                caller.user,
                &group,
                GroupChange::MuteAll(muted),
                notice,
                &[],
            )
            .await?
            .group)
    }

    /// A current member entry of `user`, presented.
    async fn target(&self, group: &Group, user: UserId) -> Result<Member> {
        let m = self
            .store
            .member(group.id, user)
            .await?
            .ok_or(Error::NotFound("member"))?;
        Ok(self.present(m))
    }

    /// Checks that the caller may moderate `user`; returns the target entry.
    async fn moderate(
        &self,
        group: &Group,
        actor: Option<&Member>,
        user: UserId,
    ) -> Result<Member> {
        self.require(group, actor, Action::Moderate)?;
        let target = self.target(group, user).await?;
        let actor_role = actor
            .map(|m| m.role)
            .ok_or(Error::Forbidden(Denied::NotMember))?;
        if target.user == actor.map(|m| m.user).unwrap_or(UserId(0)) {
            return Err(Error::Forbidden(Denied::SelfTarget));
        }
        if !policy::may_act_on(actor_role, target.role) {
            return Err(Error::Forbidden(Denied::Role));
        }
        Ok(target)
    }

    /// Asks to join: at once, pending approval, or refused, by the join mode.
    pub async fn apply(
        &self,
        caller: &Caller,
        id: GroupId,
        message: &str,
        answer: Option<String>,
    ) -> Result<JoinOutcome> {
        let (group, member) = self.standing(caller.user, id).await?;
        if member.is_some() {
            return Err(Error::Conflict("you are already a member".into()));
        }
        self.require(&group, member.as_ref(), Action::Join)?;
        let g = self.groups_config();
        check::text(
            "message",
            message,
            g.max_request_chars,
            "max_request_chars",
            false,
        )?;
        if let Some(a) = &answer {
            check::text("answer", a, g.max_request_chars, "max_request_chars", false)?;
        }
        if self.store.is_banned(id, caller.user).await? {
            return Err(Error::Forbidden(Denied::Banned));
        }
        let request = NewJoinRequest {
            group: id,
            user: caller.user,
            kind: JoinKind::Application,
            message: message.to_owned(),
            answer: answer.clone(),
            inviter: None,
            created_at: self.clock.now_ms(),
        };
        match &group.join_mode {
            JoinMode::Open => {
                self.admit(&group, caller.user, None, None, None, None)
                    .await
            }
            JoinMode::QuestionAuto {
                answer: expected, ..
            } => {
                let given = answer.unwrap_or_default();
                if given.trim().to_lowercase() != expected.trim().to_lowercase() {
                    return Err(Error::invalid("answer", "the answer is not correct"));
                }
                self.admit(&group, caller.user, None, None, None, None)
                    .await
            }
            JoinMode::Approval | JoinMode::Question { .. } => {
                if matches!(group.join_mode, JoinMode::Question { .. })
                    && answer.as_deref().is_none_or(|a| a.trim().is_empty())
                {
                    return Err(Error::invalid(
                        "answer",
                        "this group asks a question; answer it",
                    ));
                }
                self.queue_application(&group, request).await
            }
            JoinMode::InviteOnly => Err(Error::Forbidden(Denied::InviteOnly)),
            JoinMode::Closed => Err(Error::Forbidden(Denied::JoinClosed)),
        }
    }

    async fn queue_application(
        &self,
        group: &Group,
        request: NewJoinRequest,
    ) -> Result<JoinOutcome> {
        let request = self.store.create_join_request(request).await?;
        let managers = self.store.managers(group.id).await?;
        self.deliver(managers, LiveEvent::JoinRequest(request.clone()))
            .await;
        Ok(JoinOutcome::Pending(request))
    }

    /// Adds a member with its notice. (Entrance announcements are listed
    /// with `entrance: true`; clients show them to newcomers.)
    async fn admit(
        &self,
        group: &Group,
        user: UserId,
        inviter: Option<UserId>,
        approver: Option<UserId>,
        request: Option<JoinRequestId>,
        link: Option<String>,
    ) -> Result<JoinOutcome> {
        let cap = self.tier(group.tier)?.max_members;
        let change = GroupChange::AddMember {
            user,
            inviter,
            approver,
            cap,
            request,
            link,
        };
        let notice = Notice::Joined {
            user,
            inviter,
            approver,
        };
        self.change(approver.unwrap_or(user), group, change, notice, &[])
            .await?;
        Ok(JoinOutcome::Joined(self.target(group, user).await?))
    }

    /// Invites a user; they accept or refuse with [`Qun::answer_invitation`].
    pub async fn invite(&self, caller: &Caller, id: GroupId, user: UserId) -> Result<JoinRequest> {
        let (group, member) = self.standing(caller.user, id).await?;
        self.require(&group, member.as_ref(), Action::Invite)?;
        if group.join_mode == JoinMode::Closed {
            return Err(Error::Forbidden(Denied::JoinClosed));
        }
        match self.store.user(user).await? {
            Some(u) if !u.disabled => {}
            _ => return Err(Error::NotFound("user")),
        }
        if self.store.member(id, user).await?.is_some() {
            return Err(Error::Conflict("already a member".into()));
        }
        if self.store.is_blocked_either(caller.user, user).await? {
            return Err(Error::Forbidden(Denied::Blocked));
        }
        let request = self
            .store
            .create_join_request(NewJoinRequest {
                group: id,
                user,
                kind: JoinKind::Invitation,
                message: String::new(),
                answer: None,
                inviter: Some(caller.user),
                created_at: self.clock.now_ms(),
            })
            .await?;
        self.deliver(vec![user], LiveEvent::JoinRequest(request.clone()))
            .await;
        Ok(request)
    }

    /// The invitee accepts or refuses an invitation. An invitation from the
    /// owner or an admin admits at once (unless the group is closed); one from a
    /// member becomes an application when the group requires approval.
    pub async fn answer_invitation(
        &self,
        caller: &Caller,
        request: JoinRequestId,
        accept: bool,
    ) -> Result<JoinOutcome> {
        let r = self.store.join_request(request).await?;
        let r = match r {
            Some(r) if r.user == caller.user && r.kind == JoinKind::Invitation => r,
            _ => return Err(Error::NotFound("invitation")),
        };
        if r.status != RequestStatus::Pending {
            return Err(Error::Conflict(
                "the invitation was already answered".into(),
            ));
        }
        if !accept {
            let closed = self
                .store
                .close_join_request(request, RequestStatus::Refused, Some(caller.user), None)
                .await?;
            if let Some(inviter) = closed.inviter {
                self.deliver(
                    vec![inviter],
                    LiveEvent::JoinRequestResolved(closed.clone()),
                )
                .await;
            }
            return Ok(JoinOutcome::Pending(closed));
        }
        let inviter = r.inviter.unwrap_or(UserId(0));
        self.join_invited(caller, r.group, inviter, Some(request), None)
            .await
    }

    /// Common path of invitations and invite links.
    async fn join_invited(
        &self,
        caller: &Caller,
        id: GroupId,
        inviter: UserId,
        invitation: Option<JoinRequestId>,
        link: Option<String>,
    ) -> Result<JoinOutcome> {
        let (group, member) = self.standing(caller.user, id).await?;
        if member.is_some() {
            return Err(Error::Conflict("you are already a member".into()));
        }
        self.require(&group, None, Action::Join)?;
        if self.store.is_banned(id, caller.user).await? {
            return Err(Error::Forbidden(Denied::Banned));
        }
        let inviter_entry = self.store.member(id, inviter).await?;
        let inviter_manages = inviter_entry
            .as_ref()
            .is_some_and(|m| m.role != Role::Member);
        let inviter_may_invite = inviter_entry
            .as_ref()
            .is_some_and(|m| policy::allowed(Standing::of(Some(m.role)), Action::Invite, &group));
        if !inviter_may_invite {
            return Err(Error::Conflict(
                "the inviter can no longer invite to this group".into(),
            ));
        }
        let needs_approval = matches!(
            group.join_mode,
            JoinMode::Approval | JoinMode::Question { .. } | JoinMode::QuestionAuto { .. }
        );
        match group.join_mode {
            JoinMode::Closed => Err(Error::Forbidden(Denied::JoinClosed)),
            _ if needs_approval && !inviter_manages => {
                let application = NewJoinRequest {
                    group: id,
                    user: caller.user,
                    kind: JoinKind::Application,
                    message: String::new(),
                    answer: None,
                    inviter: Some(inviter),
                    created_at: self.clock.now_ms(),
                };
                // The application first: if it cannot be queued, the
                // invitation stays as it was.
                let outcome = self.queue_application(&group, application).await?;
                if let Some(inv) = invitation {
                    self.store
                        .close_join_request(inv, RequestStatus::Accepted, Some(caller.user), None)
                        .await?;
                }
                Ok(outcome)
            }
            _ => {
                let approver = inviter_manages.then_some(inviter);
                self.admit(
                    &group,
                    caller.user,
                    Some(inviter),
                    approver,
                    invitation,
                    link,
                )
                .await
            }
        }
    }

    /// Pending applications of a group (owner and admins).
    pub async fn join_requests(&self, caller: &Caller, id: GroupId) -> Result<Vec<JoinRequest>> {
        let (group, member) = self.standing(caller.user, id).await?;
        self.require_to_look(&group, member.as_ref(), Action::Manage)?;
        self.store.pending_applications(id).await
    }

    /// The caller's pending applications and invitations.
    pub async fn my_join_requests(&self, caller: &Caller) -> Result<Vec<JoinRequest>> {
        self.store.user_join_requests(caller.user).await
    }

    /// Approves or refuses an application (owner and admins); the applicant
    /// learns the outcome live.
    pub async fn review(
        &self,
        caller: &Caller,
        request: JoinRequestId,
        approve: bool,
        reason: Option<String>,
    ) -> Result<JoinRequest> {
        let r = self
            .store
            .join_request(request)
            .await?
            .ok_or(Error::NotFound("join request"))?;
        let (group, member) = self.standing(caller.user, r.group).await?;
        self.require(&group, member.as_ref(), Action::Manage)?;
        if r.kind != JoinKind::Application {
            return Err(Error::NotFound("join request"));
        }
        if r.status != RequestStatus::Pending {
            return Err(Error::Conflict("the request was already answered".into()));
        }
        let reason = self.optional_text(
            "reason",
            reason,
            self.groups_config().max_request_chars,
            "max_request_chars",
        )?;
        if approve {
            self.admit(
                &group,
                r.user,
                r.inviter,
                Some(caller.user),
                Some(request),
                None,
            )
            .await?;
        } else {
            self.store
                .close_join_request(request, RequestStatus::Refused, Some(caller.user), reason)
                .await?;
        }
        let resolved = self
            .store
            .join_request(request)
            .await?
            .ok_or(Error::NotFound("join request"))?;
        self.deliver(
            vec![r.user],
            LiveEvent::JoinRequestResolved(resolved.clone()),
        )
        .await;
        Ok(resolved)
    }

    /// Creates an invite link (whoever may invite).
    pub async fn create_invite_link(
        &self,
        caller: &Caller,
        id: GroupId,
        expires_in_secs: Option<u64>,
        max_uses: Option<u32>,
    ) -> Result<InviteLink> {
        let (group, member) = self.standing(caller.user, id).await?;
        self.require(&group, member.as_ref(), Action::Invite)?;
        let max = self.groups_config().max_invite_link_secs;
        let secs = expires_in_secs.unwrap_or(max);
        if secs > max {
            return Err(Error::TooLarge {
                limit: "max_invite_link_secs",
                max,
            });
        }
        if max_uses == Some(0) {
            return Err(Error::invalid("max_uses", "must be at least 1"));
        }
        let now = self.clock.now_ms();
        let link = InviteLink {
            code: crate::accounts::random_token(16),
            group: id,
            creator: caller.user,
            expires_at: Some(now + (secs as i64) * 1000),
            max_uses,
            uses: 0,
            created_at: now,
        };
        self.store.create_invite_link(link.clone()).await?;
        Ok(link)
    }

    /// Joins through an invite link; its creator is recorded as the inviter.
    pub async fn join_by_link(&self, caller: &Caller, code: &str) -> Result<JoinOutcome> {
        let link = self
            .store
            .invite_link(code)
            .await?
            .ok_or(Error::NotFound("invite link"))?;
        if link.expires_at.is_some_and(|t| t <= self.clock.now_ms()) {
            return Err(Error::Conflict("the invite link has expired".into()));
        }
        if link.max_uses.is_some_and(|m| link.uses >= m) {
            return Err(Error::LimitReached {
                limit: "invite_link_uses",
                max: u64::from(link.max_uses.unwrap_or(0)),
            });
        }
        self.join_invited(caller, link.group, link.creator, None, Some(link.code))
            .await
    }

    /// A page of members (members only).
    pub async fn members(
        &self,
        caller: &Caller,
        id: GroupId,
        after: UserId,
        limit: Option<u32>,
    ) -> Result<Vec<Member>> {
        let (group, member) = self.standing(caller.user, id).await?;
        self.require(&group, member.as_ref(), Action::Read)?;
        let max = self.groups_config().member_page_max;
        let limit = limit.unwrap_or(max.min(200));
        if limit == 0 || limit > max {
            return Err(Error::TooLarge {
                limit: "member_page_max",
                max: u64::from(max),
            });
        }
        let members = self.store.members(id, after, limit).await?;
        Ok(members.into_iter().map(|m| self.present(m)).collect())
    }

    /// What changed in the member list since `since` (a version the client
    /// holds), so a client never re-downloads a large list for a small change.
    pub async fn member_delta(
        &self,
        caller: &Caller,
        id: GroupId,
        since: u64,
    ) -> Result<MemberDelta> {
        let (group, member) = self.standing(caller.user, id).await?;
        self.require(&group, member.as_ref(), Action::Read)?;
        let changes = self.store.member_changes(id, since).await?;
        let mut delta = MemberDelta {
            version: group.member_version.max(since),
            changed: Vec::new(),
            removed: Vec::new(),
        };
        for c in changes {
            delta.version = delta.version.max(c.version);
            match self.store.member(id, c.user).await? {
                Some(m) if !c.removed => delta.changed.push(self.present(m)),
                _ => delta.removed.push(c.user),
            }
        }
        Ok(delta)
    }

    /// Finds groups by number, keyword or category; unlisted groups only by number.
    pub async fn search_groups(&self, search: GroupSearch) -> Result<Vec<Group>> {
        if search.number.is_none()
            && search
                .keyword
                .as_deref()
                .is_none_or(|k| k.trim().is_empty())
            && search.category.is_none()
        {
            return Err(Error::invalid(
                "query",
                "give a number, a keyword or a category",
            ));
        }
        let limit = if search.limit == 0 {
            20
        } else {
            search.limit.min(100)
        };
        self.store
            .search_groups(GroupSearch { limit, ..search })
            .await
    }

    /// Posts an announcement (owner and admins).
    pub async fn create_announcement(
        &self,
        caller: &Caller,
        id: GroupId,
        draft: AnnouncementDraft,
    ) -> Result<Announcement> {
        let (group, member) = self.standing(caller.user, id).await?;
        self.require(&group, member.as_ref(), Action::Manage)?;
        self.check_announcement(&draft)?;
        let changed = self
            .change(
                caller.user,
                &group,
                GroupChange::CreateAnnouncement(draft),
                Notice::Announcement {
                    id: AnnouncementId(0),
                    action: "created".into(),
                    by: caller.user,
                },
                &[],
            )
            .await?;
        let aid = changed
            .announcement
            .ok_or_else(|| Error::Internal("announcement id missing".into()))?;
        self.store
            .announcement(aid)
            .await?
            .ok_or(Error::NotFound("announcement"))
    }

    /// Edits an announcement (owner and admins).
    pub async fn edit_announcement(
        &self,
        caller: &Caller,
        id: GroupId,
        aid: AnnouncementId,
        draft: AnnouncementDraft,
    ) -> Result<Announcement> {
        let (group, member) = self.standing(caller.user, id).await?;
        self.require(&group, member.as_ref(), Action::Manage)?;
        self.check_announcement(&draft)?;
        self.announcement_of(id, aid).await?;
        let notice = Notice::Announcement {
            id: aid,
            action: "edited".into(),
            by: caller.user,
        };
        self.change(
            caller.user,
            &group,
            GroupChange::EditAnnouncement(aid, draft),
            notice,
            &[],
        )
        .await?;
        self.store
            .announcement(aid)
            .await?
            .ok_or(Error::NotFound("announcement"))
    }

    /// Deletes an announcement (owner and admins).
    pub async fn delete_announcement(
        &self,
        caller: &Caller,
        id: GroupId,
        aid: AnnouncementId,
    ) -> Result<()> {
        let (group, member) = self.standing(caller.user, id).await?;
        self.require(&group, member.as_ref(), Action::Manage)?;
        self.announcement_of(id, aid).await?;
        let notice = Notice::Announcement {
            id: aid,
            action: "deleted".into(),
            by: caller.user,
        };
        self.change(
            caller.user,
            &group,
            GroupChange::DeleteAnnouncement(aid),
            notice,
            &[],
        )
        .await?;
        Ok(())
    }

    async fn announcement_of(&self, id: GroupId, aid: AnnouncementId) -> Result<Announcement> {
        match self.store.announcement(aid).await? {
            Some(a) if a.group == id => Ok(a),
            _ => Err(Error::NotFound("announcement")),
        }
    }

    /// The group's announcements (members).
    pub async fn announcements(&self, caller: &Caller, id: GroupId) -> Result<Vec<Announcement>> {
        let (group, member) = self.standing(caller.user, id).await?;
        self.require(&group, member.as_ref(), Action::Read)?;
        self.store.announcements(id).await
    }

    /// Confirms having read an announcement that asks for it (members).
    pub async fn confirm_announcement(
        &self,
        caller: &Caller,
        id: GroupId,
        aid: AnnouncementId,
    ) -> Result<()> {
        let (group, member) = self.standing(caller.user, id).await?;
        self.require(&group, member.as_ref(), Action::Participate)?;
        let a = self.announcement_of(id, aid).await?;
        if !a.require_confirm {
            return Err(Error::Conflict(
                "this announcement asks for no confirmation".into(),
            ));
        }
        self.store
            .confirm_announcement(aid, caller.user, self.clock.now_ms())
            .await
    }

    /// Who confirmed an announcement (owner and admins).
    pub async fn announcement_confirmations(
        &self,
        caller: &Caller,
        id: GroupId,
        aid: AnnouncementId,
    ) -> Result<Vec<(UserId, i64)>> {
        let (group, member) = self.standing(caller.user, id).await?;
        self.require_to_look(&group, member.as_ref(), Action::Manage)?;
        self.announcement_of(id, aid).await?;
        self.store.confirmations(aid).await
    }

    /// Marks or unmarks an essence message (owner and admins).
    pub async fn set_essence(
        &self,
        caller: &Caller,
        id: GroupId,
        seq: Seq,
        set: bool,
    ) -> Result<()> {
        let (group, member) = self.standing(caller.user, id).await?;
        self.require(&group, member.as_ref(), Action::Manage)?;
        let notice = Notice::Essence {
            seq,
            set,
            by: caller.user,
        };
        self.change(
            caller.user,
            &group,
            GroupChange::SetEssence { seq, set },
            notice,
            &[],
        )
        .await?;
        Ok(())
    }

    /// The essence messages (members).
    pub async fn essences(&self, caller: &Caller, id: GroupId) -> Result<Vec<Essence>> {
        let (group, member) = self.standing(caller.user, id).await?;
        self.require(&group, member.as_ref(), Action::Read)?;
        self.store.essences(id).await
    }

    /// Who has read up to `seq` (members); above the configured size only a count.
    pub async fn receipts(&self, caller: &Caller, id: GroupId, seq: Seq) -> Result<Receipts> {
        let (group, member) = self.standing(caller.user, id).await?;
        self.require(&group, member.as_ref(), Action::Read)?;
        let list = group.member_count <= self.groups_config().receipts_list_max_members;
        let (count, readers) = self.store.readers(group.conversation, seq, list).await?;
        Ok(Receipts {
            count,
            readers: list.then_some(readers),
        })
    }

    /// Today's (UTC) most talkative members, most first (members).
    pub async fn honours(
        &self,
        caller: &Caller,
        id: GroupId,
        limit: u32,
    ) -> Result<Vec<(UserId, u64)>> {
        let (group, member) = self.standing(caller.user, id).await?;
        self.require(&group, member.as_ref(), Action::Read)?;
        let day = self.clock.now_ms().div_euclid(DAY_MS);
        self.store
            .top_senders(
                group.conversation,
                day * DAY_MS,
                (day + 1) * DAY_MS,
                limit.clamp(1, 50),
            )
            .await
    }

    fn at_all_counters(&self, group: GroupId, user: UserId) -> [DailyCounter; 2] {
        let g = self.groups_config();
        [
            DailyCounter {
                key: format!("atall:g:{group}"),
                limit: g.at_all_per_group_per_day,
                name: "at_all_per_group_per_day",
            },
            DailyCounter {
                key: format!("atall:g:{group}:u:{user}"),
                limit: g.at_all_per_manager_per_day,
                name: "at_all_per_manager_per_day",
            },
        ]
    }

    /// The @all quota left today (owner and admins).
    pub async fn at_all_quota(&self, caller: &Caller, id: GroupId) -> Result<AtAllQuota> {
        let (group, member) = self.standing(caller.user, id).await?;
        self.require_to_look(&group, member.as_ref(), Action::Manage)?;
        let day = self.clock.now_ms().div_euclid(DAY_MS);
        let [g, u] = self.at_all_counters(id, caller.user);
        let used_g = self.store.daily_count(&g.key, day).await?;
        let used_u = self.store.daily_count(&u.key, day).await?;
        Ok(AtAllQuota {
            group_remaining: g.limit.saturating_sub(used_g),
            mine_remaining: u
                .limit
                .saturating_sub(used_u)
                .min(g.limit.saturating_sub(used_g)),
        })
    }

    /// Whether the caller may send this message into the group now. A message
    /// that mentions everyone returns the @all quota it spends; the store
    /// consumes it in the append's transaction, and not again for a retry.
    pub(crate) fn check_may_send_in_group(
        &self,
        caller: &Caller,
        group: &Group,
        member: Option<Member>,
        segments: &[Segment],
    ) -> Result<Option<Quota>> {
        let (group, id) = (group, group.id);
        self.require(group, member.as_ref(), Action::Send)?;
        let Some(member) = member else {
            return Err(Error::Forbidden(Denied::NotMember));
        };
        // A personal mute binds every role it can be given to (the owner
        // cannot be muted); the whole-group mute exempts owner and admins.
        if let Some(until) = member.muted_until {
            return Err(Error::Muted { until: Some(until) });
        }
        if group.muted && member.role == Role::Member {
            return Err(Error::Muted { until: None });
        }
        if !segments.iter().any(|s| matches!(s, Segment::MentionAll)) {
            return Ok(None);
        }
        self.require(group, Some(&member), Action::Manage)?;
        let day = self.clock.now_ms().div_euclid(DAY_MS);
        Ok(Some(Quota {
            counters: self.at_all_counters(id, caller.user).to_vec(),
            day,
        }))
    }

    /// Whether the caller may recall `author`'s message in the group at any
    /// time (owner and admins over lower roles, and over their own).
    pub(crate) async fn may_recall_in_group(
        &self,
        caller: &Caller,
        id: GroupId,
        author: UserId,
    ) -> Result<bool> {
        let (group, member) = self.standing(caller.user, id).await?;
        self.require(&group, member.as_ref(), Action::Participate)?;
        let Some(me) = member else { return Ok(false) };
        if me.role == Role::Member {
            return Ok(false);
        }
        if author == caller.user {
            return Ok(true);
        }
        let author_role = self
            .store
            .member(id, author)
            .await?
            .map_or(Role::Member, |m| m.role);
        if !policy::may_act_on(me.role, author_role) {
            return Err(Error::Forbidden(Denied::Role));
        }
        Ok(true)
    }

    /// The first seq a member may read (their join, unless history is full).
    pub(crate) async fn first_readable_seq(&self, caller: &Caller, id: GroupId) -> Result<Seq> {
        let (group, member) = self.standing(caller.user, id).await?;
        self.require(&group, member.as_ref(), Action::Read)?;
        let member = member.ok_or(Error::Forbidden(Denied::NotMember))?;
        Ok(match group.history {
            HistoryVisibility::Full => Seq(1),
            HistoryVisibility::FromJoin => member.join_seq,
        })
    }

    /// Opens a temporary session with a member of a shared group who is not a
    /// friend (if they accept temporary sessions).
    pub async fn open_temp_session(
        &self,
        caller: &Caller,
        peer: UserId,
    ) -> Result<ConversationState> {
        if peer == caller.user {
            return Err(Error::Forbidden(Denied::SelfTarget));
        }
        let peer_user = match self.store.user(peer).await? {
            Some(u) if !u.disabled => u,
            _ => return Err(Error::NotFound("user")),
        };
        if self.store.is_blocked_either(caller.user, peer).await? {
            return Err(Error::Forbidden(Denied::Blocked));
        }
        if self.store.friend(caller.user, peer).await?.is_none() {
            self.check_temp_session(caller.user, &peer_user).await?;
        }
        let id = self
            .store
            .ensure_direct_conversation(caller.user, peer, self.clock.now_ms())
            .await?;
        self.store
            .conversation_state(caller.user, id)
            .await?
            .ok_or(Error::NotFound("conversation"))
    }

    /// A temporary session needs a shared group and a peer who accepts them.
    pub(crate) async fn check_temp_session(
        &self,
        me: UserId,
        peer: &crate::model::User,
    ) -> Result<()> {
        if !self.store.share_group(me, peer.id).await? {
            return Err(Error::Forbidden(Denied::NoSharedGroup));
        }
        if !peer.accept_temp_sessions {
            return Err(Error::Forbidden(Denied::TempSessionRefused));
        }
        Ok(())
    }

    fn check_group_text(
        &self,
        name: &str,
        intro: &str,
        category: &str,
        tags: &[String],
    ) -> Result<()> {
        let g = self.groups_config();
        check::text("name", name, g.max_name_chars, "max_name_chars", true)?;
        if intro.chars().count() > g.max_intro_chars {
            return Err(Error::TooLarge {
                limit: "max_intro_chars",
                max: g.max_intro_chars as u64,
            });
        }
        check::text(
            "category",
            category,
            g.max_tag_chars,
            "max_tag_chars",
            false,
        )?;
        if tags.len() > g.max_tags {
            return Err(Error::TooLarge {
                limit: "max_tags",
                max: g.max_tags as u64,
            });
        }
        for t in tags {
            check::text("tags", t, g.max_tag_chars, "max_tag_chars", true)?;
        }
        Ok(())
    }

    fn check_join_mode(&self, mode: &JoinMode) -> Result<()> {
        let max = self.groups_config().max_request_chars;
        match mode {
            JoinMode::Question { question } => {
                check::text("question", question, max, "max_request_chars", true)
            }
            JoinMode::QuestionAuto { question, answer } => {
                check::text("question", question, max, "max_request_chars", true)?;
                check::text("answer", answer, max, "max_request_chars", true)
            }
            _ => Ok(()),
        }
    }

    fn check_announcement(&self, d: &AnnouncementDraft) -> Result<()> {
        let g = self.groups_config();
        check::text(
            "title",
            &d.title,
            g.max_announcement_title_chars,
            "max_announcement_title_chars",
            true,
        )?;
        if d.body.trim().is_empty() {
            return Err(Error::invalid("body", "must not be empty"));
        }
        if d.body.chars().count() > g.max_announcement_body_chars {
            return Err(Error::TooLarge {
                limit: "max_announcement_body_chars",
                max: g.max_announcement_body_chars as u64,
            });
        }
        Ok(())
    }

    fn optional_text(
        &self,
        field: &'static str,
        v: Option<String>,
        max: usize,
        limit: &'static str,
    ) -> Result<Option<String>> {
        let Some(v) = v else { return Ok(None) };
        check::text(field, &v, max, limit, false)?;
        let v = v.trim().to_owned();
        Ok((!v.is_empty()).then_some(v))
    }
}

/// A notice as it was stored, if the event is one.
pub fn notice_of(body: &EventBody) -> Option<&Notice> {
    match body {
        EventBody::Notice(n) => Some(n),
        _ => None,
    }
}
