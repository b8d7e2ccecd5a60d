//! Groups in-process, on the domain with a real SQLite store and a manual
//! clock: every cell of the roles-and-powers table of `docs/groups.md`, the
//! join modes, the member cap under concurrent joins, gap-free sequencing of
//! concurrent senders, mutes, titles and @all quotas on controlled time,
//! history visibility, unread and mention counts, temporary sessions and
//! incremental member-list sync.

// Helpers and fixtures panic on any unexpected error, like the tests using them.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use qun_domain::bus::{LiveEvent, Notification, NotificationSink};
use qun_domain::groups::model::{
    Announcement, AnnouncementDraft, Essence, Group, GroupSettings, HistoryVisibility, InviteLink,
    JoinKind, JoinMode, JoinRequest, Member, Role,
};
use qun_domain::model::{
    ConversationKind, DeviceKind, EventBody, EventRange, ProfileUpdate, RequestStatus, Segment,
    StoredEvent,
};
use qun_domain::{
    AnnouncementId, AtAllQuota, Caller, Config, ConversationId, CreateGroup, Denied, Error,
    GroupId, HistoryRange, JoinOutcome, JoinRequestId, LocalBus, LoginInput, ManualClock, Qun, Seq,
    Store, UserId,
};
use qun_store_sqlite::{SqliteOptions, SqliteStore};

use crate::harness::TempDir;

// --- the world: a domain on a real store, a manual clock, a recorder ---------

/// Records every notification published.
#[derive(Default)]
struct Recorder(Mutex<Vec<Notification>>);

impl NotificationSink for Recorder {
    fn deliver(&self, n: &Notification) {
        self.0.lock().unwrap().push(n.clone());
    }
}

impl Recorder {
    fn take(&self) -> Vec<Notification> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

struct World {
    qun: Arc<Qun>,
    clock: Arc<ManualClock>,
    sink: Arc<Recorder>,
    ids: AtomicU64,
    _dir: TempDir,
}

const START: i64 = 1_800_000_000_000;
const DAY_MS: i64 = 86_400_000;

fn world_with(config: Config) -> World {
    let dir = TempDir::new("groups");
    let store =
        SqliteStore::open(&dir.path().join("db.sqlite3"), SqliteOptions::default()).unwrap();
    let clock = Arc::new(ManualClock::new(START));
    let sink = Arc::new(Recorder::default());
    let bus = Arc::new(LocalBus::new(sink.clone()));
    let qun = Arc::new(Qun::new(Arc::new(store), bus, config, clock.clone()));
    World {
        qun,
        clock,
        sink,
        ids: AtomicU64::new(0),
        _dir: dir,
    }
}

fn cheap_config() -> Config {
    // Cheap hashing keeps these tests fast; the e2e suite runs the defaults.
    Config {
        argon2_memory_kib: 1024,
        argon2_iterations: 1,
        ..Config::default()
    }
}

fn world() -> World {
    world_with(cheap_config())
}

impl World {
    async fn user(&self, name: &str) -> Caller {
        let id = self.qun.register(name, "password-1").await.unwrap();
        let input = LoginInput {
            user: id,
            password: "password-1".into(),
            device_kind: DeviceKind::Pc,
            device_name: "test".into(),
            addr: None,
        };
        let token = self.qun.login(input).await.unwrap().token;
        self.qun.authenticate(&token).await.unwrap()
    }

    /// A fresh client message id.
    fn cmid(&self) -> String {
        format!("m-{}", self.ids.fetch_add(1, Ordering::Relaxed))
    }

    /// A group created open, joined by `members` in order, then switched to
    /// `mode` (members may invite, as groups start).
    async fn group(&self, owner: &Caller, members: &[&Caller], mode: JoinMode) -> Group {
        let spec = CreateGroup {
            name: "test group".into(),
            intro: "for tests".into(),
            category: "testing".into(),
            tags: vec!["qun".into()],
            listed: true,
            join_mode: JoinMode::Open,
        };
        let g = self.qun.create_group(owner, spec).await.unwrap();
        for m in members {
            self.join(m, g.id).await;
        }
        let settings = GroupSettings {
            join_mode: Some(mode),
            members_may_invite: Some(true),
            ..GroupSettings::default()
        };
        self.qun.update_group(owner, g.id, settings).await.unwrap()
    }

    /// Joins an open group at once.
    async fn join(&self, who: &Caller, g: GroupId) -> Member {
        match self.qun.apply(who, g, "", None).await.unwrap() {
            JoinOutcome::Joined(m) => m,
            other => panic!("expected to join at once, got {other:?}"),
        }
    }

    async fn say(&self, who: &Caller, conv: ConversationId, t: &str) -> Seq {
        let cmid = self.cmid();
        self.qun.send(who, conv, &cmid, text(t)).await.unwrap().seq
    }

    async fn send(
        &self,
        who: &Caller,
        conv: ConversationId,
        segments: Vec<Segment>,
    ) -> Result<Seq, Error> {
        let cmid = self.cmid();
        Ok(self.qun.send(who, conv, &cmid, segments).await?.seq)
    }

    async fn all_events(
        &self,
        who: &Caller,
        conv: ConversationId,
    ) -> Result<Vec<StoredEvent>, Error> {
        let mut all = Vec::new();
        let mut after = Seq(0);
        loop {
            let (page, more) = self
                .qun
                .history(who, conv, HistoryRange::After(after), Some(500))
                .await?;
            if let Some(last) = page.last() {
                after = last.seq;
            }
            all.extend(page);
            if !more {
                return Ok(all);
            }
        }
    }

    async fn state(
        &self,
        who: &Caller,
        conv: ConversationId,
    ) -> qun_domain::model::ConversationState {
        let states = self.qun.conversations(who).await.unwrap();
        states
            .into_iter()
            .find(|s| s.id == conv)
            .unwrap_or_else(|| panic!("{} has no conversation {conv}", who.user))
    }

    async fn all_members(&self, who: &Caller, g: GroupId) -> Vec<Member> {
        self.qun
            .members(who, g, UserId(0), Some(500))
            .await
            .unwrap()
    }
}

fn text(t: &str) -> Vec<Segment> {
    vec![Segment::Text { text: t.into() }]
}

fn at_all(t: &str) -> Vec<Segment> {
    vec![Segment::MentionAll, Segment::Text { text: t.into() }]
}

fn draft(title: &str) -> AnnouncementDraft {
    AnnouncementDraft {
        title: title.into(),
        body: "please read".into(),
        pinned: false,
        require_confirm: true,
        entrance: false,
    }
}

/// Deliveries of live events matching `pick`, with their recipients.
fn deliveries<T>(
    notes: &[Notification],
    pick: impl Fn(&LiveEvent) -> Option<T>,
) -> Vec<(Vec<UserId>, T)> {
    notes
        .iter()
        .filter_map(|n| match n {
            Notification::Deliver { users, event } => pick(event).map(|t| (users.clone(), t)),
            _ => None,
        })
        .collect()
}

fn sorted(mut users: Vec<UserId>) -> Vec<UserId> {
    users.sort();
    users
}

// --- 1. the authorization matrix ------------------------------------------

/// Who tries: the standings of `docs/groups.md`, each in a concrete guise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Actor {
    Owner,
    Admin,
    Member,
    MutedMember,
    KickedMember,
    BannedMember,
    Applicant,
    Stranger,
    OtherGroupAdmin,
}

const ACTORS: [Actor; 9] = [
    Actor::Owner,
    Actor::Admin,
    Actor::Member,
    Actor::MutedMember,
    Actor::KickedMember,
    Actor::BannedMember,
    Actor::Applicant,
    Actor::Stranger,
    Actor::OtherGroupAdmin,
];

/// On which group: A (the actors' own: owner, admins and members of the
/// fixture), B (the other group, where `OtherGroupAdmin` is an admin), or a
/// group number that does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    A,
    B,
    Missing,
}

/// One group action. "A member"/"an admin" are targets other than the actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    View,
    Apply,
    JoinByLink,
    History,
    ListMembers,
    MemberDelta,
    Send,
    SendAtAll,
    SetOwnCard,
    ConfirmAnnouncement,
    Leave,
    Invite,
    CreateInviteLink,
    UpdateSettings,
    MuteAll,
    ListJoinRequests,
    ApproveJoinRequest,
    PostAnnouncement,
    EditAnnouncement,
    DeleteAnnouncement,
    ListAnnouncements,
    SeeConfirmations,
    SetEssence,
    ListEssence,
    Receipts,
    Honours,
    AtAllQuota,
    Unban,
    KickMember,
    KickAdmin,
    MuteMember,
    MuteAdmin,
    RecallMembersMessage,
    RecallAdminsMessage,
    SetMembersCard,
    SetAdminsCard,
    AppointAdmin,
    DismissAdmin,
    SetTitle,
    SetTier,
    Transfer,
    Dissolve,
}

const ACTS: [Act; 42] = {
    use Act::*;
    [
        View,
        Apply,
        JoinByLink,
        History,
        ListMembers,
        MemberDelta,
        Send,
        SendAtAll,
        SetOwnCard,
        ConfirmAnnouncement,
        Leave,
        Invite,
        CreateInviteLink,
        UpdateSettings,
        MuteAll,
        ListJoinRequests,
        ApproveJoinRequest,
        PostAnnouncement,
        EditAnnouncement,
        DeleteAnnouncement,
        ListAnnouncements,
        SeeConfirmations,
        SetEssence,
        ListEssence,
        Receipts,
        Honours,
        AtAllQuota,
        Unban,
        KickMember,
        KickAdmin,
        MuteMember,
        MuteAdmin,
        RecallMembersMessage,
        RecallAdminsMessage,
        SetMembersCard,
        SetAdminsCard,
        AppointAdmin,
        DismissAdmin,
        SetTitle,
        SetTier,
        Transfer,
        Dissolve,
    ]
};

impl Act {
    /// Actions that change nothing even when allowed.
    fn read_only(self) -> bool {
        use Act::*;
        matches!(
            self,
            View | History
                | ListMembers
                | MemberDelta
                | ListJoinRequests
                | ListAnnouncements
                | SeeConfirmations
                | ListEssence
                | Receipts
                | Honours
                | AtAllQuota
        )
    }
}

const OK: &str = "ok";
const NOT_MEMBER: &str = "NotMember";
const ROLE: &str = "Role";
const CONFLICT: &str = "Conflict";
/// A plain member trying to recall someone else's message: refused either as
/// "not the author" or "role".
const MEMBER_RECALL: &str = "NotAuthor|Role";

/// The table of `docs/groups.md`, written out per action: the outcome for
/// the owner, an admin, a member and an outsider of the target group.
/// Outcomes are `ok` (with the join outcome where it matters) or the
/// refusal; `a|b` accepts either. Rules on top of the table (mutes, bans,
/// pending applications, missing groups) are applied in [`expected`].
const TABLE: &[(Act, [&str; 4])] = &[
    (Act::View, [OK, OK, OK, OK]),
    (Act::Apply, [CONFLICT, CONFLICT, CONFLICT, "ok:pending"]),
    // A link made by the owner is the owner's invitation: joins at once.
    (Act::JoinByLink, [CONFLICT, CONFLICT, CONFLICT, "ok:joined"]),
    (Act::History, [OK, OK, OK, NOT_MEMBER]),
    (Act::ListMembers, [OK, OK, OK, NOT_MEMBER]),
    (Act::MemberDelta, [OK, OK, OK, NOT_MEMBER]),
    (Act::Send, [OK, OK, OK, NOT_MEMBER]),
    (Act::SendAtAll, [OK, OK, ROLE, NOT_MEMBER]),
    (Act::SetOwnCard, [OK, OK, OK, NOT_MEMBER]),
    (Act::ConfirmAnnouncement, [OK, OK, OK, NOT_MEMBER]),
    (Act::Leave, [CONFLICT, OK, OK, NOT_MEMBER]),
    // Both fixture groups have `members_may_invite: false`.
    (Act::Invite, [OK, OK, ROLE, NOT_MEMBER]),
    (Act::CreateInviteLink, [OK, OK, ROLE, NOT_MEMBER]),
    (Act::UpdateSettings, [OK, OK, ROLE, NOT_MEMBER]),
    (Act::MuteAll, [OK, OK, ROLE, NOT_MEMBER]),
    (Act::ListJoinRequests, [OK, OK, ROLE, NOT_MEMBER]),
    (Act::ApproveJoinRequest, [OK, OK, ROLE, NOT_MEMBER]),
    (Act::PostAnnouncement, [OK, OK, ROLE, NOT_MEMBER]),
    (Act::EditAnnouncement, [OK, OK, ROLE, NOT_MEMBER]),
    (Act::DeleteAnnouncement, [OK, OK, ROLE, NOT_MEMBER]),
    (Act::ListAnnouncements, [OK, OK, OK, NOT_MEMBER]),
    (Act::SeeConfirmations, [OK, OK, ROLE, NOT_MEMBER]),
    (Act::SetEssence, [OK, OK, ROLE, NOT_MEMBER]),
    (Act::ListEssence, [OK, OK, OK, NOT_MEMBER]),
    (Act::Receipts, [OK, OK, OK, NOT_MEMBER]),
    (Act::Honours, [OK, OK, OK, NOT_MEMBER]),
    (Act::AtAllQuota, [OK, OK, ROLE, NOT_MEMBER]),
    (Act::Unban, [OK, OK, ROLE, NOT_MEMBER]),
    (Act::KickMember, [OK, OK, ROLE, NOT_MEMBER]),
    (Act::KickAdmin, [OK, ROLE, ROLE, NOT_MEMBER]),
    (Act::MuteMember, [OK, OK, ROLE, NOT_MEMBER]),
    (Act::MuteAdmin, [OK, ROLE, ROLE, NOT_MEMBER]),
    (
        Act::RecallMembersMessage,
        [OK, OK, MEMBER_RECALL, NOT_MEMBER],
    ),
    (
        Act::RecallAdminsMessage,
        [OK, ROLE, MEMBER_RECALL, NOT_MEMBER],
    ),
    (Act::SetMembersCard, [OK, OK, ROLE, NOT_MEMBER]),
    (Act::SetAdminsCard, [OK, ROLE, ROLE, NOT_MEMBER]),
    (Act::AppointAdmin, [OK, ROLE, ROLE, NOT_MEMBER]),
    (Act::DismissAdmin, [OK, ROLE, ROLE, NOT_MEMBER]),
    (Act::SetTitle, [OK, ROLE, ROLE, NOT_MEMBER]),
    (Act::SetTier, [OK, ROLE, ROLE, NOT_MEMBER]),
    (Act::Transfer, [OK, ROLE, ROLE, NOT_MEMBER]),
    (Act::Dissolve, [OK, ROLE, ROLE, NOT_MEMBER]),
];

/// An actor's standing in a target group, in the fixture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    Owner,
    Admin,
    Member { muted: bool },
    Outsider { banned: bool, pending: bool },
}

fn standing(actor: Actor, target: Target) -> Option<Standing> {
    let outsider = Standing::Outsider {
        banned: actor == Actor::BannedMember,
        pending: actor == Actor::Applicant,
    };
    Some(match (target, actor) {
        (Target::Missing, _) => return None,
        (Target::A, Actor::Owner) => Standing::Owner,
        (Target::A, Actor::Admin) | (Target::B, Actor::OtherGroupAdmin) => Standing::Admin,
        (Target::A, Actor::Member) => Standing::Member { muted: false },
        (Target::A, Actor::MutedMember) => Standing::Member { muted: true },
        _ => outsider,
    })
}

/// The documented outcome of one cell.
fn expected(actor: Actor, target: Target, act: Act, mute_until: i64) -> String {
    use Act::*;
    let Some(standing) = standing(actor, target) else {
        // Nothing exists to act on; the action names what it looked for.
        return match act {
            History | Send | SendAtAll | RecallMembersMessage | RecallAdminsMessage => {
                "NotFound(conversation)"
            }
            ApproveJoinRequest => "NotFound(join request)",
            JoinByLink => "NotFound(invite link)",
            _ => "NotFound(group)",
        }
        .into();
    };
    let row = TABLE
        .iter()
        .find(|(a, _)| *a == act)
        .unwrap_or_else(|| panic!("{act:?} is missing from the table"))
        .1;
    let column = match standing {
        Standing::Owner => 0,
        Standing::Admin => 1,
        Standing::Member { .. } => 2,
        Standing::Outsider { .. } => 3,
    };
    match standing {
        // "A muted member's send is refused with `muted` and `until`."
        Standing::Member { muted: true } if matches!(act, Send | SendAtAll) => {
            format!("Muted({mute_until})")
        }
        // "apply to join / join by link: ✓ (not if banned)".
        Standing::Outsider { banned: true, .. } if matches!(act, Apply | JoinByLink) => {
            "Banned".into()
        }
        // One pending application at a time.
        Standing::Outsider { pending: true, .. } if act == Apply => CONFLICT.into(),
        _ => row[column].into(),
    }
}

fn matches_cell(want: &str, got: &str) -> bool {
    want.split('|').any(|w| w == got)
}

/// An outcome as a short label comparable with the table.
fn label(r: Result<&'static str, Error>) -> String {
    match r {
        Ok(s) => s.into(),
        Err(Error::Forbidden(d)) => format!("{d:?}"),
        Err(Error::NotFound(what)) => format!("NotFound({what})"),
        Err(Error::Conflict(_)) => CONFLICT.into(),
        Err(Error::Muted { until: Some(t) }) => format!("Muted({t})"),
        Err(Error::Muted { until: None }) => "Muted(all)".into(),
        Err(Error::LimitReached { limit, .. }) => format!("LimitReached({limit})"),
        Err(Error::TooLarge { limit, .. }) => format!("TooLarge({limit})"),
        Err(Error::Invalid { field, .. }) => format!("Invalid({field})"),
        Err(e) => format!("{e:?}"),
    }
}

fn done<T>(_: T) -> &'static str {
    OK
}

fn joined(o: JoinOutcome) -> &'static str {
    match o {
        JoinOutcome::Joined(_) => "ok:joined",
        JoinOutcome::Pending(_) => "ok:pending",
    }
}

/// What the cells of one group act on.
#[derive(Debug, Clone)]
struct Refs {
    id: GroupId,
    owner: Option<Caller>,
    conv: ConversationId,
    /// A plain member who is none of the actors.
    member: UserId,
    /// An admin who is none of the actors.
    admin: UserId,
    member_msg: Seq,
    admin_msg: Seq,
    announcement: AnnouncementId,
    link: String,
    /// The applicant's pending application.
    request: JoinRequestId,
}

/// Two groups and every actor, as described on [`Actor`] and [`Target`].
struct Fixture {
    w: World,
    actors: BTreeMap<Actor, Caller>,
    /// Someone nobody has invited yet.
    invitee: UserId,
    /// Banned from both groups.
    banned: UserId,
    mute_until: i64,
    a: Refs,
    b: Refs,
    missing: Refs,
}

async fn fixture() -> Fixture {
    let w = world();
    let mut actors = BTreeMap::new();
    for actor in ACTORS {
        actors.insert(actor, w.user(&format!("{actor:?}")).await);
    }
    let c = |a: Actor| actors[&a].clone();
    let (owner, admin, member, muted) = (
        c(Actor::Owner),
        c(Actor::Admin),
        c(Actor::Member),
        c(Actor::MutedMember),
    );
    let (kicked, banned, applicant) = (
        c(Actor::KickedMember),
        c(Actor::BannedMember),
        c(Actor::Applicant),
    );
    let other_admin = c(Actor::OtherGroupAdmin);
    let admin_a2 = w.user("second admin of A").await;
    let target_a = w.user("member of A").await;
    let owner_b = w.user("owner of B").await;
    let admin_b2 = w.user("second admin of B").await;
    let target_b = w.user("member of B").await;
    let invitee = w.user("invitee").await;
    let q = &w.qun;
    let approval = GroupSettings {
        join_mode: Some(JoinMode::Approval),
        members_may_invite: Some(false),
        ..GroupSettings::default()
    };

    // Group A: everyone joins while it is open, then it asks for approval.
    let joiners = [
        &admin, &admin_a2, &member, &muted, &target_a, &kicked, &banned,
    ];
    let a = w.group(&owner, &joiners, JoinMode::Open).await;
    q.set_admin(&owner, a.id, admin.user, true).await.unwrap();
    q.set_admin(&owner, a.id, admin_a2.user, true)
        .await
        .unwrap();
    q.mute(&owner, a.id, muted.user, 3600).await.unwrap();
    let member_msg_a = w.say(&target_a, a.conversation, "from a member of A").await;
    let admin_msg_a = w.say(&admin_a2, a.conversation, "from an admin of A").await;
    q.kick(&owner, a.id, kicked.user, false).await.unwrap();
    q.kick(&owner, a.id, banned.user, true).await.unwrap();
    q.update_group(&owner, a.id, approval.clone())
        .await
        .unwrap();
    let announcement_a = q
        .create_announcement(&owner, a.id, draft("rules of A"))
        .await
        .unwrap()
        .id;
    let link_a = q
        .create_invite_link(&owner, a.id, None, None)
        .await
        .unwrap()
        .code;

    // Group B: the other group admin's own.
    let b = w
        .group(
            &owner_b,
            &[&other_admin, &admin_b2, &target_b, &banned],
            JoinMode::Open,
        )
        .await;
    q.set_admin(&owner_b, b.id, other_admin.user, true)
        .await
        .unwrap();
    q.set_admin(&owner_b, b.id, admin_b2.user, true)
        .await
        .unwrap();
    let member_msg_b = w.say(&target_b, b.conversation, "from a member of B").await;
    let admin_msg_b = w.say(&admin_b2, b.conversation, "from an admin of B").await;
    q.kick(&owner_b, b.id, banned.user, true).await.unwrap();
    q.update_group(&owner_b, b.id, approval).await.unwrap();
    let announcement_b = q
        .create_announcement(&owner_b, b.id, draft("rules of B"))
        .await
        .unwrap()
        .id;
    let link_b = q
        .create_invite_link(&owner_b, b.id, None, None)
        .await
        .unwrap()
        .code;

    let pending = |o: JoinOutcome| match o {
        JoinOutcome::Pending(r) => r.id,
        other => panic!("expected a pending application, got {other:?}"),
    };
    let request_a = pending(q.apply(&applicant, a.id, "let me in", None).await.unwrap());
    let request_b = pending(q.apply(&applicant, b.id, "let me in", None).await.unwrap());
    w.sink.take();

    let refs_a = Refs {
        id: a.id,
        owner: Some(owner.clone()),
        conv: a.conversation,
        member: target_a.user,
        admin: admin_a2.user,
        member_msg: member_msg_a,
        admin_msg: admin_msg_a,
        announcement: announcement_a,
        link: link_a,
        request: request_a,
    };
    let refs_b = Refs {
        id: b.id,
        owner: Some(owner_b),
        conv: b.conversation,
        member: target_b.user,
        admin: admin_b2.user,
        member_msg: member_msg_b,
        admin_msg: admin_msg_b,
        announcement: announcement_b,
        link: link_b,
        request: request_b,
    };
    let missing = Refs {
        id: GroupId(999_999_999),
        owner: None,
        conv: ConversationId(999_999_999),
        announcement: AnnouncementId(999_999_999),
        link: "no-such-link".into(),
        request: JoinRequestId(999_999_999),
        ..refs_a.clone()
    };
    Fixture {
        invitee: invitee.user,
        banned: banned.user,
        mute_until: START + 3_600_000,
        actors,
        a: refs_a,
        b: refs_b,
        missing,
        w,
    }
}

/// Everything a group action could change, read straight from the store.
#[derive(Debug, PartialEq)]
struct GroupState {
    group: Option<Group>,
    members: Vec<Member>,
    last_seq: Option<Seq>,
    announcements: Vec<Announcement>,
    confirmations: Vec<Vec<(UserId, i64)>>,
    essences: Vec<Essence>,
    pending: Vec<JoinRequest>,
    banned: Vec<UserId>,
    link: Option<InviteLink>,
    at_all: Option<AtAllQuota>,
}

#[derive(Debug, PartialEq)]
struct Snapshot {
    a: GroupState,
    b: GroupState,
    /// The invitee's pending invitations.
    invitations: Vec<JoinRequest>,
}

impl Fixture {
    fn refs(&self, target: Target) -> &Refs {
        match target {
            Target::A => &self.a,
            Target::B => &self.b,
            Target::Missing => &self.missing,
        }
    }

    async fn group_state(&self, g: &Refs) -> GroupState {
        let s: &Arc<dyn Store> = self.w.qun.store();
        let mut confirmations = Vec::new();
        let announcements = s.announcements(g.id).await.unwrap();
        for a in &announcements {
            confirmations.push(s.confirmations(a.id).await.unwrap());
        }
        let mut banned = Vec::new();
        for c in self.actors.values() {
            if s.is_banned(g.id, c.user).await.unwrap() {
                banned.push(c.user);
            }
        }
        let last = EventRange::Before(Seq(i64::MAX as u64), 1);
        let owner = g.owner.as_ref().unwrap();
        GroupState {
            group: s.group(g.id).await.unwrap(),
            members: s.members(g.id, UserId(0), 1000).await.unwrap(),
            last_seq: s.events(g.conv, last).await.unwrap().last().map(|e| e.seq),
            announcements,
            confirmations,
            essences: s.essences(g.id).await.unwrap(),
            pending: s.pending_applications(g.id).await.unwrap(),
            banned,
            link: s.invite_link(&g.link).await.unwrap(),
            at_all: self.w.qun.at_all_quota(owner, g.id).await.ok(),
        }
    }

    async fn snapshot(&self) -> Snapshot {
        Snapshot {
            a: self.group_state(&self.a).await,
            b: self.group_state(&self.b).await,
            invitations: self
                .w
                .qun
                .store()
                .user_join_requests(self.invitee)
                .await
                .unwrap(),
        }
    }

    /// Runs one cell: `actor` tries `act` on `target`.
    async fn run(&self, actor: Actor, target: Target, act: Act) -> Result<&'static str, Error> {
        use Act::*;
        let q = &self.w.qun;
        let me = &self.actors[&actor];
        let g = self.refs(target);
        let id = g.id;
        let cmid = self.w.cmid();
        match act {
            View => q.group(me, id).await.map(done),
            Apply => q.apply(me, id, "let me in", None).await.map(joined),
            JoinByLink => q.join_by_link(me, &g.link).await.map(joined),
            History => q
                .history(me, g.conv, HistoryRange::Latest, None)
                .await
                .map(done),
            ListMembers => q.members(me, id, UserId(0), None).await.map(done),
            MemberDelta => q.member_delta(me, id, 0).await.map(done),
            Send => q.send(me, g.conv, &cmid, text("hello")).await.map(done),
            SendAtAll => q.send(me, g.conv, &cmid, at_all("meeting")).await.map(done),
            SetOwnCard => q
                .set_card(me, id, me.user, Some("me".into()))
                .await
                .map(done),
            ConfirmAnnouncement => q
                .confirm_announcement(me, id, g.announcement)
                .await
                .map(done),
            Leave => q.leave_group(me, id).await.map(done),
            Invite => q.invite(me, id, self.invitee).await.map(done),
            CreateInviteLink => q
                .create_invite_link(me, id, Some(3600), Some(5))
                .await
                .map(done),
            UpdateSettings => {
                let s = GroupSettings {
                    name: Some("renamed".into()),
                    ..GroupSettings::default()
                };
                q.update_group(me, id, s).await.map(done)
            }
            MuteAll => q.mute_all(me, id, true).await.map(done),
            ListJoinRequests => q.join_requests(me, id).await.map(done),
            ApproveJoinRequest => q.review(me, g.request, true, None).await.map(done),
            PostAnnouncement => q.create_announcement(me, id, draft("news")).await.map(done),
            EditAnnouncement => q
                .edit_announcement(me, id, g.announcement, draft("edited"))
                .await
                .map(done),
            DeleteAnnouncement => q
                .delete_announcement(me, id, g.announcement)
                .await
                .map(done),
            ListAnnouncements => q.announcements(me, id).await.map(done),
            SeeConfirmations => q
                .announcement_confirmations(me, id, g.announcement)
                .await
                .map(done),
            SetEssence => q.set_essence(me, id, g.member_msg, true).await.map(done),
            ListEssence => q.essences(me, id).await.map(done),
            Receipts => q.receipts(me, id, g.member_msg).await.map(done),
            Honours => q.honours(me, id, 10).await.map(done),
            AtAllQuota => q.at_all_quota(me, id).await.map(done),
            Unban => q.unban(me, id, self.banned).await.map(done),
            KickMember => q.kick(me, id, g.member, false).await.map(done),
            KickAdmin => q.kick(me, id, g.admin, false).await.map(done),
            MuteMember => q.mute(me, id, g.member, 600).await.map(done),
            MuteAdmin => q.mute(me, id, g.admin, 600).await.map(done),
            RecallMembersMessage => q.recall(me, g.conv, g.member_msg).await.map(done),
            RecallAdminsMessage => q.recall(me, g.conv, g.admin_msg).await.map(done),
            SetMembersCard => q
                .set_card(me, id, g.member, Some("set".into()))
                .await
                .map(done),
            SetAdminsCard => q
                .set_card(me, id, g.admin, Some("set".into()))
                .await
                .map(done),
            AppointAdmin => q.set_admin(me, id, g.member, true).await.map(done),
            DismissAdmin => q.set_admin(me, id, g.admin, false).await.map(done),
            SetTitle => q
                .set_title(me, id, g.member, Some("legend".into()), None)
                .await
                .map(done),
            SetTier => q.set_tier(me, id, 1).await.map(done),
            Transfer => q.transfer_group(me, id, g.member).await.map(done),
            Dissolve => q.dissolve_group(me, id).await.map(done),
        }
    }

    /// Runs a cell that must leave everything as it was (a refusal or a
    /// read); returns its mismatch, if any, and whether the state moved.
    async fn check_cell(
        &self,
        actor: Actor,
        target: Target,
        act: Act,
        want: &str,
    ) -> (Option<String>, bool) {
        let before = self.snapshot().await;
        self.w.sink.take();
        let got = label(self.run(actor, target, act).await);
        let after = self.snapshot().await;
        let notes = self.w.sink.take();
        let mut problems = Vec::new();
        let changed = before != after;
        if changed {
            problems.push(format!("changed {}", diff(&before, &after)));
        }
        if !notes.is_empty() {
            problems.push(format!("{} notification(s) published", notes.len()));
        }
        let wrong = !matches_cell(want, &got) || !problems.is_empty();
        let line = wrong.then(|| row(actor, target, act, want, &got, &problems.join("; ")));
        (line, changed)
    }
}

/// Names the parts of two snapshots that differ.
fn diff(before: &Snapshot, after: &Snapshot) -> String {
    let mut parts = Vec::new();
    for (name, x, y) in [("A", &before.a, &after.a), ("B", &before.b, &after.b)] {
        let fields = [
            ("group", x.group != y.group),
            ("members", x.members != y.members),
            ("stream", x.last_seq != y.last_seq),
            ("announcements", x.announcements != y.announcements),
            ("confirmations", x.confirmations != y.confirmations),
            ("essences", x.essences != y.essences),
            ("join requests", x.pending != y.pending),
            ("bans", x.banned != y.banned),
            ("invite link", x.link != y.link),
            ("@all quota", x.at_all != y.at_all),
        ];
        for (field, changed) in fields {
            if changed {
                parts.push(format!("{name}.{field}"));
            }
        }
    }
    if before.invitations != after.invitations {
        parts.push("invitations".into());
    }
    parts.join(", ")
}

/// One line of a mismatch report.
fn row(actor: Actor, target: Target, act: Act, want: &str, got: &str, problem: &str) -> String {
    let line = format!(
        "{:<16} {:<7} {:<21} {:<26} {:<26} {problem}",
        format!("{actor:?}"),
        format!("{target:?}"),
        format!("{act:?}"),
        want,
        got
    );
    line.trim_end().to_owned()
}

/// Fails with every mismatching cell at once.
fn assert_no_mismatches(rows: &[String], what: &str) {
    let header = format!(
        "{:<16} {:<7} {:<21} {:<26} {:<26} problem",
        "actor", "group", "action", "expected", "got"
    );
    assert!(
        rows.is_empty(),
        "{} cell(s) differ from docs/groups.md ({what}):\n{header}\n{}",
        rows.len(),
        rows.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_matrix_matches_the_documented_table() {
    assert_eq!(
        ACTS.len(),
        TABLE.len(),
        "every action of the table is tried"
    );
    let mute_until = START + 3_600_000;

    // Cells that succeed with side effects each get a fresh fixture; all the
    // others share one, whose state must not move.
    let mut mutating = Vec::new();
    let mut shared_cells = Vec::new();
    for target in [Target::A, Target::B, Target::Missing] {
        for actor in ACTORS {
            for act in ACTS {
                let want = expected(actor, target, act, mute_until);
                if want.starts_with(OK) && !act.read_only() {
                    mutating.push((actor, target, act, want));
                } else {
                    shared_cells.push((actor, target, act, want));
                }
            }
        }
    }

    let mut rows: Vec<String> = Vec::new();
    let mut shared = fixture().await;
    assert_eq!(shared.mute_until, mute_until);
    for (actor, target, act, want) in shared_cells {
        let (line, changed) = shared.check_cell(actor, target, act, &want).await;
        rows.extend(line);
        if changed {
            // A refusal that changed something must not spoil the next cells.
            shared = fixture().await;
        }
    }

    let mut tasks = Vec::new();
    for chunk in mutating.chunks(mutating.len().div_ceil(4)) {
        let chunk = chunk.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut rows = Vec::new();
            for (actor, target, act, want) in chunk {
                let f = fixture().await;
                let got = label(f.run(actor, target, act).await);
                if !matches_cell(&want, &got) {
                    rows.push(row(actor, target, act, &want, &got, ""));
                }
            }
            rows
        }));
    }
    for t in tasks {
        rows.extend(t.await.unwrap());
    }
    assert_no_mismatches(&rows, "roles and powers");
}

/// "A dissolved group is read-only: every change answers `group_dissolved`;
/// members keep reading its history." Every cell of the table, tried on
/// group A after its owner dissolved it, changes nothing.
#[tokio::test]
async fn dissolved_group_is_read_only_and_stays_readable() {
    let f = fixture().await;
    f.w.qun
        .dissolve_group(&f.actors[&Actor::Owner], f.a.id)
        .await
        .unwrap();
    let mut rows = Vec::new();
    for actor in ACTORS {
        for act in ACTS {
            let live = expected(actor, Target::A, act, f.mute_until);
            let want = if act.read_only() {
                // Reads answer as they did before the group was dissolved.
                live
            } else if live.starts_with(OK) {
                "Dissolved".to_owned()
            } else {
                // A refusal by role may come before or after the dissolution.
                format!("{live}|Dissolved")
            };
            let (line, changed) = f.check_cell(actor, Target::A, act, &want).await;
            rows.extend(line);
            assert!(!changed, "{actor:?} {act:?} changed a dissolved group");
        }
    }
    // The server administrator's tier override is a change too.
    let got = label(f.w.qun.admin_set_tier(f.a.id, 1).await.map(done));
    if got != "Dissolved" {
        rows.push(format!(
            "administrator's admin_set_tier: expected Dissolved, got {got}"
        ));
    }
    assert_no_mismatches(&rows, "dissolved group");
}

// --- 2. the member cap under concurrent joins -----------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn member_cap_holds_under_concurrent_joins() {
    let mut config = cheap_config();
    config.groups.tiers[0].max_members = 20;
    let w = world_with(config);
    let owner = w.user("owner").await;
    let g = w.group(&owner, &[], JoinMode::Open).await;
    let mut joiners = Vec::new();
    for i in 0..40 {
        joiners.push(w.user(&format!("joiner {i}")).await);
    }
    let start = Arc::new(tokio::sync::Barrier::new(joiners.len()));
    let tasks: Vec<_> = joiners
        .into_iter()
        .map(|u| {
            let (qun, start) = (w.qun.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                qun.apply(&u, g.id, "", None).await
            })
        })
        .collect();
    let (mut joined, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(JoinOutcome::Joined(_)) => joined += 1,
            Err(Error::LimitReached {
                limit: "max_members",
                max: 20,
            }) => refused += 1,
            other => panic!("expected a join or max_members, got {other:?}"),
        }
    }
    assert_eq!((joined, refused), (19, 21));
    assert_eq!(w.qun.group(&owner, g.id).await.unwrap().member_count, 20);
    assert_eq!(w.all_members(&owner, g.id).await.len(), 20);
}

// --- 3. concurrent senders ------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_senders_get_gap_free_sequences() {
    let w = world();
    let owner = w.user("owner").await;
    let mut senders = Vec::new();
    for i in 0..10 {
        senders.push(w.user(&format!("sender {i}")).await);
    }
    let refs: Vec<&Caller> = senders.iter().collect();
    let g = w.group(&owner, &refs, JoinMode::Open).await;
    let conv = g.conversation;

    let start = Arc::new(tokio::sync::Barrier::new(senders.len()));
    let tasks: Vec<_> = senders
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let (qun, start, u) = (w.qun.clone(), start.clone(), u.clone());
            tokio::spawn(async move {
                start.wait().await;
                let mut acks = Vec::new();
                for k in 0..30 {
                    let (cmid, payload) = (format!("s{i}-{k}"), format!("message {k} of {i}"));
                    let ack = qun.send(&u, conv, &cmid, text(&payload)).await.unwrap();
                    assert!(!ack.duplicate);
                    acks.push((ack.seq, u.user, cmid, payload));
                }
                acks
            })
        })
        .collect();
    let mut acks = Vec::new();
    for t in tasks {
        acks.extend(t.await.unwrap());
    }
    assert_eq!(acks.len(), 300);
    let unique: HashSet<Seq> = acks.iter().map(|a| a.0).collect();
    assert_eq!(unique.len(), 300, "every send got its own seq");

    // The whole stream — created, joined, settings notices and the messages —
    // is 1..=last with no gap and no repeat.
    let events = w.all_events(&owner, conv).await.unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq.0).collect();
    let last = *seqs.last().unwrap();
    assert_eq!(seqs, (1..=last).collect::<Vec<_>>());
    assert_eq!(
        last,
        1 + 10 + 1 + 300,
        "created, 10 joins, settings, 300 messages"
    );
    assert_eq!(w.state(&owner, conv).await.last_seq, Seq(last));
    let by_seq: BTreeMap<Seq, &StoredEvent> = events.iter().map(|e| (e.seq, e)).collect();
    for (seq, user, cmid, payload) in &acks {
        let e = by_seq[seq];
        assert_eq!((e.sender, &e.client_msg_id), (*user, cmid), "seq {seq}");
        assert_eq!(
            e.body,
            EventBody::Message {
                segments: text(payload),
                recalled: false
            },
            "seq {seq}"
        );
    }
    let messages = events
        .iter()
        .filter(|e| matches!(e.body, EventBody::Message { .. }))
        .count();
    assert_eq!(messages, 300, "each send appears exactly once");
}

// --- 4. mutes and titles on controlled time -------------------------------

#[tokio::test]
async fn mute_and_title_expire_with_controlled_time() {
    let w = world();
    let (owner, admin, member) = (
        w.user("owner").await,
        w.user("admin").await,
        w.user("member").await,
    );
    let g = w.group(&owner, &[&admin, &member], JoinMode::Open).await;
    w.qun
        .set_admin(&owner, g.id, admin.user, true)
        .await
        .unwrap();
    let conv = g.conversation;

    let muted = w.qun.mute(&owner, g.id, member.user, 60).await.unwrap();
    let until = START + 60_000;
    assert_eq!(muted.muted_until, Some(until));
    let err = w.send(&member, conv, text("hi")).await.unwrap_err();
    assert!(
        matches!(err, Error::Muted { until: Some(t) } if t == until),
        "{err:?}"
    );
    w.clock.advance_ms(59_999);
    let err = w.send(&member, conv, text("hi")).await.unwrap_err();
    assert!(
        matches!(err, Error::Muted { until: Some(t) } if t == until),
        "{err:?}"
    );
    w.clock.advance_ms(1_001);
    w.send(&member, conv, text("free again")).await.unwrap();
    let me = w.qun.my_membership(&member, g.id).await.unwrap();
    assert_eq!(me.muted_until, None, "an expired mute is not shown");

    let now = w.qun.now_ms();
    let titled = w
        .qun
        .set_title(&owner, g.id, member.user, Some("dragon".into()), Some(3600))
        .await
        .unwrap();
    assert_eq!(titled.title.as_deref(), Some("dragon"));
    assert_eq!(titled.title_expires_at, Some(now + 3_600_000));
    let listed = |ms: Vec<Member>| ms.into_iter().find(|m| m.user == member.user).unwrap();
    assert_eq!(
        listed(w.all_members(&owner, g.id).await).title.as_deref(),
        Some("dragon")
    );
    w.clock.advance_ms(3_600_000);
    assert_eq!(listed(w.all_members(&owner, g.id).await).title, None);
    assert_eq!(
        w.qun.my_membership(&member, g.id).await.unwrap().title,
        None
    );

    let month = 30 * 24 * 3600;
    let err = w
        .qun
        .mute(&owner, g.id, member.user, month + 1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::TooLarge { limit: "max_mute_secs", max } if max == month),
        "{err:?}"
    );
    assert_eq!(
        w.qun
            .my_membership(&member, g.id)
            .await
            .unwrap()
            .muted_until,
        None
    );
    let m = w.qun.mute(&owner, g.id, member.user, month).await.unwrap();
    assert_eq!(m.muted_until, Some(w.qun.now_ms() + (month as i64) * 1000));
    let m = w.qun.mute(&owner, g.id, member.user, 0).await.unwrap();
    assert_eq!(m.muted_until, None, "0 s unmutes");

    let group = w.qun.mute_all(&admin, g.id, true).await.unwrap();
    assert!(group.muted);
    let err = w.send(&member, conv, text("anyone?")).await.unwrap_err();
    assert!(matches!(err, Error::Muted { until: None }), "{err:?}");
    w.send(&admin, conv, text("admins may speak"))
        .await
        .unwrap();
    w.send(&owner, conv, text("so may the owner"))
        .await
        .unwrap();
    w.qun.mute_all(&owner, g.id, false).await.unwrap();
    w.send(&member, conv, text("thanks")).await.unwrap();
}

// --- 5. join modes ----------------------------------------------------------

fn mode_name(mode: &JoinMode) -> &'static str {
    match mode {
        JoinMode::Open => "open",
        JoinMode::Approval => "approval",
        JoinMode::Question { .. } => "question",
        JoinMode::QuestionAuto { .. } => "question_auto",
        JoinMode::InviteOnly => "invite_only",
        JoinMode::Closed => "closed",
    }
}

#[tokio::test]
async fn join_modes_behave_as_documented() {
    let w = world();
    let owner = w.user("owner").await;
    let admin = w.user("admin").await;
    let member = w.user("member").await;
    let applicant = w.user("applicant").await;
    let guesser = w.user("guesser").await;
    let owners_guest = w.user("owner's guest").await;
    let members_guest = w.user("member's guest").await;
    let q = &w.qun;
    let modes = [
        JoinMode::Open,
        JoinMode::Approval,
        JoinMode::Question {
            question: "favourite colour?".into(),
        },
        JoinMode::QuestionAuto {
            question: "largest animal?".into(),
            answer: "Blue Whale".into(),
        },
        JoinMode::InviteOnly,
        JoinMode::Closed,
    ];
    let mut wrong = Vec::new();
    for mode in modes {
        let name = mode_name(&mode);
        let g = w.group(&owner, &[&admin, &member], mode.clone()).await;
        q.set_admin(&owner, g.id, admin.user, true).await.unwrap();
        let managers = vec![owner.user, admin.user];
        let entry = |u: UserId| async move { q.store().member(g.id, u).await.unwrap() };

        // Applying.
        w.sink.take();
        let answer = match &mode {
            JoinMode::Question { .. } => {
                let err = q.apply(&applicant, g.id, "hello", None).await.unwrap_err();
                if !matches!(
                    err,
                    Error::Invalid {
                        field: "answer",
                        ..
                    }
                ) {
                    wrong.push(format!("{name}: apply without an answer gave {err:?}"));
                }
                Some("blue".to_string())
            }
            JoinMode::QuestionAuto { .. } => {
                let err = q
                    .apply(&guesser, g.id, "", Some("orca".into()))
                    .await
                    .unwrap_err();
                if !matches!(
                    err,
                    Error::Invalid {
                        field: "answer",
                        ..
                    }
                ) {
                    wrong.push(format!("{name}: a wrong answer gave {err:?}"));
                }
                Some("  bLUE wHALE ".to_string())
            }
            _ => None,
        };
        let applied = q.apply(&applicant, g.id, "hello", answer.clone()).await;
        let notes = w.sink.take();
        match (&mode, applied) {
            (JoinMode::Open | JoinMode::QuestionAuto { .. }, Ok(JoinOutcome::Joined(m))) => {
                assert_eq!(
                    (m.inviter, m.approver, m.role),
                    (None, None, Role::Member),
                    "{name}"
                );
            }
            (JoinMode::Approval | JoinMode::Question { .. }, Ok(JoinOutcome::Pending(r))) => {
                assert_eq!(
                    (r.kind, r.status, r.message.as_str(), r.answer.clone()),
                    (
                        JoinKind::Application,
                        RequestStatus::Pending,
                        "hello",
                        answer
                    ),
                    "{name}"
                );
                let live = deliveries(&notes, |e| match e {
                    LiveEvent::JoinRequest(x) if x.id == r.id => Some(()),
                    _ => None,
                });
                assert_eq!(
                    live.len(),
                    1,
                    "{name}: managers hear of the application once"
                );
                assert_eq!(
                    sorted(live[0].0.clone()),
                    sorted(managers.clone()),
                    "{name}"
                );
                let listed = q.join_requests(&admin, g.id).await.unwrap();
                assert_eq!(listed.iter().map(|x| x.id).collect::<Vec<_>>(), vec![r.id]);
                if matches!(mode, JoinMode::Approval) {
                    q.review(&admin, r.id, true, None).await.unwrap();
                    let m = entry(applicant.user).await.unwrap();
                    assert_eq!((m.inviter, m.approver), (None, Some(admin.user)), "{name}");
                } else {
                    q.review(&owner, r.id, false, Some("wrong colour".into()))
                        .await
                        .unwrap();
                    assert!(entry(applicant.user).await.is_none());
                }
                let notes = w.sink.take();
                let resolved = deliveries(&notes, |e| match e {
                    LiveEvent::JoinRequestResolved(x) if x.id == r.id => Some(x.status),
                    _ => None,
                });
                let status = if matches!(mode, JoinMode::Approval) {
                    RequestStatus::Accepted
                } else {
                    RequestStatus::Refused
                };
                assert_eq!(resolved, vec![(vec![applicant.user], status)], "{name}");
            }
            (JoinMode::InviteOnly, Err(Error::Forbidden(Denied::InviteOnly))) => {}
            (JoinMode::Closed, Err(Error::Forbidden(Denied::JoinClosed))) => {}
            (_, other) => wrong.push(format!("{name}: apply gave {other:?}")),
        }

        // An invitation from the owner: joins, except in a closed group.
        w.sink.take();
        let invited = match q.invite(&owner, g.id, owners_guest.user).await {
            Ok(inv) => {
                let notes = w.sink.take();
                let live = deliveries(&notes, |e| match e {
                    LiveEvent::JoinRequest(x) if x.id == inv.id => Some(()),
                    _ => None,
                });
                assert_eq!(
                    live,
                    vec![(vec![owners_guest.user], ())],
                    "{name}: the invitee hears"
                );
                q.answer_invitation(&owners_guest, inv.id, true).await
            }
            Err(e) => Err(e),
        };
        match (&mode, invited) {
            (JoinMode::Closed, Err(Error::Forbidden(Denied::JoinClosed))) => {}
            (JoinMode::Closed, other) => {
                wrong.push(format!("{name}: owner's invitation gave {other:?}"))
            }
            (_, Ok(JoinOutcome::Joined(m))) => {
                assert_eq!(
                    (m.inviter, m.approver),
                    (Some(owner.user), Some(owner.user)),
                    "{name}"
                );
            }
            (_, other) => wrong.push(format!("{name}: owner's invitation gave {other:?}")),
        }

        // An invitation from a plain member (members may invite here).
        let invited = match q.invite(&member, g.id, members_guest.user).await {
            Ok(inv) => q.answer_invitation(&members_guest, inv.id, true).await,
            Err(e) => Err(e),
        };
        match (&mode, invited) {
            (JoinMode::Open | JoinMode::InviteOnly, Ok(JoinOutcome::Joined(m))) => {
                assert_eq!((m.inviter, m.approver), (Some(member.user), None), "{name}");
            }
            (
                JoinMode::Approval | JoinMode::Question { .. } | JoinMode::QuestionAuto { .. },
                Ok(JoinOutcome::Pending(r)),
            ) => {
                assert_eq!(
                    (r.kind, r.inviter),
                    (JoinKind::Application, Some(member.user)),
                    "{name}"
                );
                assert!(
                    entry(members_guest.user).await.is_none(),
                    "{name}: not in yet"
                );
                q.review(&owner, r.id, true, None).await.unwrap();
                let m = entry(members_guest.user).await.unwrap();
                assert_eq!(
                    (m.inviter, m.approver),
                    (Some(member.user), Some(owner.user)),
                    "{name}"
                );
            }
            (JoinMode::Closed, Err(Error::Forbidden(Denied::JoinClosed))) => {}
            (_, other) => wrong.push(format!("{name}: member's invitation gave {other:?}")),
        }
    }
    assert!(
        wrong.is_empty(),
        "join modes differ from docs/groups.md:\n{}",
        wrong.join("\n")
    );

    // A refused invitation is told to the inviter.
    let g = w.group(&owner, &[], JoinMode::Approval).await;
    let refuser = w.user("refuser").await;
    let inv = q.invite(&owner, g.id, refuser.user).await.unwrap();
    w.sink.take();
    q.answer_invitation(&refuser, inv.id, false).await.unwrap();
    let resolved = deliveries(&w.sink.take(), |e| match e {
        LiveEvent::JoinRequestResolved(x) if x.id == inv.id => Some(x.status),
        _ => None,
    });
    assert_eq!(resolved, vec![(vec![owner.user], RequestStatus::Refused)]);
    assert!(q
        .store()
        .member(g.id, refuser.user)
        .await
        .unwrap()
        .is_none());

    // Invite links: an invitation by their creator, with expiry and uses.
    let g = w.group(&owner, &[&member], JoinMode::Approval).await;
    let (u1, u2, u3, u4) = (
        w.user("u1").await,
        w.user("u2").await,
        w.user("u3").await,
        w.user("u4").await,
    );
    let once = q
        .create_invite_link(&owner, g.id, Some(3600), Some(1))
        .await
        .unwrap();
    match q.join_by_link(&u1, &once.code).await.unwrap() {
        JoinOutcome::Joined(m) => assert_eq!(
            (m.inviter, m.approver),
            (Some(owner.user), Some(owner.user))
        ),
        other => panic!("an owner's link admits at once: {other:?}"),
    }
    let err = q.join_by_link(&u2, &once.code).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::LimitReached {
                limit: "invite_link_uses",
                max: 1
            }
        ),
        "{err:?}"
    );
    let members_link = q
        .create_invite_link(&member, g.id, None, None)
        .await
        .unwrap();
    match q.join_by_link(&u3, &members_link.code).await.unwrap() {
        JoinOutcome::Pending(r) => assert_eq!(r.inviter, Some(member.user)),
        other => panic!("a member's link in an approval group asks for approval: {other:?}"),
    }
    let short = q
        .create_invite_link(&owner, g.id, Some(60), None)
        .await
        .unwrap();
    w.clock.advance_ms(61_000);
    let err = q.join_by_link(&u4, &short.code).await.unwrap_err();
    assert!(
        matches!(err, Error::Conflict(_)),
        "an expired link: {err:?}"
    );
    assert!(q.store().member(g.id, u4.user).await.unwrap().is_none());
}

// --- 6. @all quotas -------------------------------------------------------

#[tokio::test]
async fn at_all_is_limited_per_group_and_per_manager_per_day() {
    let mut config = cheap_config();
    config.groups.at_all_per_group_per_day = 3;
    config.groups.at_all_per_manager_per_day = 2;
    let w = world_with(config);
    let (owner, a1, a2, member) = (
        w.user("owner").await,
        w.user("admin 1").await,
        w.user("admin 2").await,
        w.user("member").await,
    );
    let g = w.group(&owner, &[&a1, &a2, &member], JoinMode::Open).await;
    let conv = g.conversation;
    w.qun.set_admin(&owner, g.id, a1.user, true).await.unwrap();
    w.qun.set_admin(&owner, g.id, a2.user, true).await.unwrap();
    let quota = |c: &Caller| {
        let (qun, c) = (w.qun.clone(), c.clone());
        async move {
            let q = qun.at_all_quota(&c, g.id).await.unwrap();
            (q.group_remaining, q.mine_remaining)
        }
    };
    let limited = |r: Result<Seq, Error>| match r {
        Err(Error::LimitReached { limit, .. }) => limit,
        other => panic!("expected limit_reached, got {other:?}"),
    };

    assert_eq!(quota(&a1).await, (3, 2));
    w.send(&a1, conv, at_all("one")).await.unwrap();
    assert_eq!(quota(&a1).await, (2, 1));
    w.send(&a1, conv, at_all("two")).await.unwrap();
    assert_eq!(quota(&a1).await, (1, 0));
    assert_eq!(quota(&a2).await, (1, 1));
    let last = w.state(&owner, conv).await.last_seq;
    assert_eq!(
        limited(w.send(&a1, conv, at_all("three")).await),
        "at_all_per_manager_per_day"
    );
    assert_eq!(
        w.state(&owner, conv).await.last_seq,
        last,
        "a refused @all stores nothing"
    );
    assert_eq!(quota(&a1).await, (1, 0), "a refused @all spends nothing");
    w.send(&a2, conv, at_all("last one today")).await.unwrap();
    assert_eq!(quota(&a2).await, (0, 0));
    assert_eq!(
        quota(&owner).await,
        (0, 0),
        "the group's quota bounds everyone's"
    );
    assert_eq!(
        limited(w.send(&owner, conv, at_all("owner")).await),
        "at_all_per_group_per_day"
    );

    let err = w.send(&member, conv, at_all("me too")).await.unwrap_err();
    assert!(matches!(err, Error::Forbidden(Denied::Role)), "{err:?}");
    let err = w.qun.at_all_quota(&member, g.id).await.unwrap_err();
    assert!(matches!(err, Error::Forbidden(Denied::Role)), "{err:?}");
    w.send(&member, conv, text("plain is fine")).await.unwrap();

    // The day is the UTC day: a millisecond before midnight is still today.
    let to_midnight = DAY_MS - START.rem_euclid(DAY_MS);
    w.clock.advance_ms(to_midnight - 1);
    assert_eq!(
        limited(w.send(&owner, conv, at_all("not yet")).await),
        "at_all_per_group_per_day"
    );
    w.clock.advance_ms(1);
    assert_eq!(quota(&a1).await, (3, 2));
    w.send(&a1, conv, at_all("new day")).await.unwrap();
    assert_eq!(quota(&a1).await, (2, 1));
    assert_eq!(quota(&owner).await, (2, 2));
}

// --- 7. history visibility for newcomers and leavers ------------------------

#[tokio::test]
async fn newcomers_read_from_their_join_and_leavers_read_nothing() {
    let w = world();
    let (owner, early, newcomer) = (
        w.user("owner").await,
        w.user("early").await,
        w.user("newcomer").await,
    );
    let g = w.group(&owner, &[&early], JoinMode::Open).await;
    let conv = g.conversation;
    let before = w.say(&owner, conv, "before the newcomer").await;
    let joined = w.join(&newcomer, g.id).await;
    let after = w.say(&owner, conv, "after the newcomer").await;

    let seen = w.all_events(&newcomer, conv).await.unwrap();
    assert_eq!(
        seen.first().map(|e| e.seq),
        Some(joined.join_seq),
        "reads from the join notice"
    );
    assert!(seen.iter().all(|e| e.seq >= joined.join_seq));
    assert!(seen.iter().any(|e| e.seq == after));
    let (latest, _) = w
        .qun
        .history(&newcomer, conv, HistoryRange::Latest, Some(100))
        .await
        .unwrap();
    assert!(
        latest.iter().all(|e| e.seq >= joined.join_seq),
        "{latest:?}"
    );
    let (older, more) = w
        .qun
        .history(
            &newcomer,
            conv,
            HistoryRange::Before(joined.join_seq),
            Some(100),
        )
        .await
        .unwrap();
    assert!(
        older.is_empty() && !more,
        "nothing before the join: {older:?}"
    );

    let settings = GroupSettings {
        history: Some(HistoryVisibility::Full),
        ..GroupSettings::default()
    };
    w.qun.update_group(&owner, g.id, settings).await.unwrap();
    let seen = w.all_events(&newcomer, conv).await.unwrap();
    assert_eq!(
        seen.first().map(|e| e.seq),
        Some(Seq(1)),
        "full history from the start"
    );
    assert!(seen.iter().any(|e| e.seq == before));

    // A leaver reads nothing any more, not even what came before.
    w.qun.leave_group(&early, g.id).await.unwrap();
    let err = w.all_events(&early, conv).await.unwrap_err();
    assert!(
        matches!(err, Error::Forbidden(Denied::NotMember)),
        "{err:?}"
    );

    // Nor does a kicked member, and later messages no longer reach them.
    w.qun
        .kick(&owner, g.id, newcomer.user, false)
        .await
        .unwrap();
    w.sink.take();
    let later = w.say(&owner, conv, "after the kick").await;
    let live = deliveries(&w.sink.take(), |e| match e {
        LiveEvent::Conversation(ev) if ev.seq == later => Some(()),
        _ => None,
    });
    assert_eq!(
        live,
        vec![(vec![owner.user], ())],
        "only the remaining member hears"
    );
    for range in [
        HistoryRange::After(Seq(0)),
        HistoryRange::Latest,
        HistoryRange::Before(later),
    ] {
        let err = w
            .qun
            .history(&newcomer, conv, range, None)
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Forbidden(Denied::NotMember)),
            "{range:?}: {err:?}"
        );
    }
    let states = w.qun.conversations(&newcomer).await.unwrap();
    assert!(
        states.iter().all(|s| s.id != conv),
        "the group is gone from their list: {states:?}"
    );
}

// --- 8. unread, mentions, receipts, honours -------------------------------

#[tokio::test]
async fn unread_and_mention_counts_come_from_read_positions() {
    let mut config = cheap_config();
    config.groups.receipts_list_max_members = 4;
    let w = world_with(config);
    let (owner, reader, talker, admin) = (
        w.user("owner").await,
        w.user("reader").await,
        w.user("talker").await,
        w.user("admin").await,
    );
    // The reader joins first: later joins and role changes are notices,
    // which are not unread messages.
    let g = w
        .group(&owner, &[&reader, &talker, &admin], JoinMode::Open)
        .await;
    w.qun
        .set_admin(&owner, g.id, admin.user, true)
        .await
        .unwrap();
    let conv = g.conversation;
    let mention = |t: &str| {
        vec![
            Segment::Mention { user: reader.user },
            Segment::Text { text: t.into() },
        ]
    };

    let plain1 = w.say(&talker, conv, "one").await;
    let plain2 = w.say(&talker, conv, "two").await;
    w.say(&talker, conv, "three").await;
    w.send(&talker, conv, mention("look")).await.unwrap();
    w.send(&talker, conv, mention("look again")).await.unwrap();
    w.send(&admin, conv, at_all("everyone")).await.unwrap();
    w.say(&owner, conv, "from the owner").await;
    w.say(&reader, conv, "my own words are never unread").await;
    w.qun.recall(&talker, conv, plain1).await.unwrap();

    let s = w.state(&reader, conv).await;
    assert_eq!(
        (s.unread, s.mentions),
        (6, 3),
        "7 by others, 1 recalled; 2 mentions and @all"
    );
    assert_eq!(s.kind, ConversationKind::Group(g.id));
    let t = w.state(&talker, conv).await;
    assert_eq!(
        (t.unread, t.mentions),
        (3, 1),
        "@all mentions the talker too"
    );

    let last = s.last_seq;
    let s = w.qun.mark_read(&reader, conv, last).await.unwrap();
    assert_eq!((s.read_seq, s.unread, s.mentions), (last, 0, 0));
    let s = w.state(&reader, conv).await;
    assert_eq!((s.unread, s.mentions), (0, 0));

    // Receipts: a list while the group is small enough, then a count.
    let r = w.qun.receipts(&talker, g.id, plain2).await.unwrap();
    assert_eq!((r.count, r.readers), (1, Some(vec![reader.user])));
    w.qun.mark_read(&owner, conv, plain2).await.unwrap();
    let r = w.qun.receipts(&talker, g.id, plain2).await.unwrap();
    assert_eq!(
        (r.count, r.readers),
        (2, Some(sorted(vec![owner.user, reader.user])))
    );
    let fifth = w.user("fifth").await;
    w.join(&fifth, g.id).await;
    let late = w.say(&owner, conv, "to five members").await;
    w.qun.mark_read(&reader, conv, late).await.unwrap();
    let r = w.qun.receipts(&talker, g.id, late).await.unwrap();
    assert_eq!(
        (r.count, r.readers),
        (1, None),
        "above receipts_list_max_members, only a count"
    );

    // Honours: the day's most talkative member first.
    let top = w.qun.honours(&reader, g.id, 10).await.unwrap();
    assert_eq!(top.first().map(|t| t.0), Some(talker.user), "{top:?}");
    assert!(top[0].1 >= 4, "{top:?}");
    w.clock.advance_ms(DAY_MS);
    assert_eq!(
        w.qun.honours(&reader, g.id, 10).await.unwrap(),
        vec![],
        "a new day starts empty"
    );
    w.say(&reader, conv, "first today").await;
    assert_eq!(
        w.qun.honours(&owner, g.id, 10).await.unwrap(),
        vec![(reader.user, 1)]
    );
}

// --- 9. temporary sessions ------------------------------------------------

#[tokio::test]
async fn temporary_sessions_need_a_shared_group_and_consent() {
    let w = world();
    let (owner, p, q, loner) = (
        w.user("owner").await,
        w.user("p").await,
        w.user("q").await,
        w.user("loner").await,
    );
    let g = w.group(&owner, &[&p, &q], JoinMode::Open).await;
    let qun = &w.qun;

    let s = qun.open_temp_session(&p, q.user).await.unwrap();
    assert_eq!((s.kind, s.peer), (ConversationKind::Direct, Some(q.user)));
    let conv = s.id;
    w.send(&p, conv, text("hello from a fellow member"))
        .await
        .unwrap();
    w.send(&q, conv, text("hello back")).await.unwrap();
    let seen = w.all_events(&q, conv).await.unwrap();
    assert_eq!(seen.len(), 2);

    let refuse = |accept: bool| ProfileUpdate {
        accept_temp_sessions: Some(accept),
        ..ProfileUpdate::default()
    };
    qun.update_profile(&q, refuse(false)).await.unwrap();
    let err = qun.open_temp_session(&p, q.user).await.unwrap_err();
    assert!(
        matches!(err, Error::Forbidden(Denied::TempSessionRefused)),
        "{err:?}"
    );
    let err = w.send(&p, conv, text("still there?")).await.unwrap_err();
    assert!(
        matches!(err, Error::Forbidden(Denied::TempSessionRefused)),
        "{err:?}"
    );
    qun.update_profile(&q, refuse(true)).await.unwrap();
    w.send(&p, conv, text("welcome back")).await.unwrap();

    let err = qun.open_temp_session(&q, loner.user).await.unwrap_err();
    assert!(
        matches!(err, Error::Forbidden(Denied::NoSharedGroup)),
        "{err:?}"
    );

    // Kicked from the only shared group: the session is over both ways.
    qun.kick(&owner, g.id, p.user, false).await.unwrap();
    for (from, to) in [(&p, &q), (&q, &p)] {
        let err = w
            .send(from, conv, text("after the kick"))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Forbidden(Denied::NotFriends | Denied::NoSharedGroup)
            ),
            "{} to {}: {err:?}",
            from.user,
            to.user
        );
    }
    let err = qun.open_temp_session(&q, p.user).await.unwrap_err();
    assert!(
        matches!(err, Error::Forbidden(Denied::NoSharedGroup)),
        "{err:?}"
    );

    // A blacklist closes it too.
    let (u, v) = (w.user("u").await, w.user("v").await);
    w.group(&owner, &[&u, &v], JoinMode::Open).await;
    qun.block(&u, v.user).await.unwrap();
    let err = qun.open_temp_session(&v, u.user).await.unwrap_err();
    assert!(matches!(err, Error::Forbidden(Denied::Blocked)), "{err:?}");
}

// --- 10. incremental member-list sync -------------------------------------

#[tokio::test]
async fn member_list_syncs_incrementally() {
    let w = world();
    let (owner, m1, m2, m3) = (
        w.user("owner").await,
        w.user("m1").await,
        w.user("m2").await,
        w.user("m3").await,
    );
    let g = w.group(&owner, &[&m1, &m2], JoinMode::Open).await;
    let q = &w.qun;

    let mut list = w.all_members(&m1, g.id).await;
    let v0 = q.group(&m1, g.id).await.unwrap().member_version;
    assert_eq!(
        q.member_delta(&m1, g.id, v0).await.unwrap().changed,
        vec![],
        "nothing new yet"
    );

    w.join(&m3, g.id).await;
    q.kick(&owner, g.id, m2.user, false).await.unwrap();
    let delta = q.member_delta(&m1, g.id, v0).await.unwrap();
    assert_eq!(
        delta.changed.iter().map(|m| m.user).collect::<Vec<_>>(),
        vec![m3.user]
    );
    assert_eq!(delta.removed, vec![m2.user]);
    assert_eq!(
        delta.version,
        q.group(&m1, g.id).await.unwrap().member_version
    );
    assert!(delta.version > v0);
    apply_delta(&mut list, &delta);
    assert_eq!(
        list,
        w.all_members(&m1, g.id).await,
        "the synced list equals a fresh one"
    );

    // An entry change travels the same way.
    let v1 = delta.version;
    q.set_card(&m3, g.id, m3.user, Some("three".into()))
        .await
        .unwrap();
    let delta = q.member_delta(&m1, g.id, v1).await.unwrap();
    assert_eq!(
        delta
            .changed
            .iter()
            .map(|m| (m.user, m.card.clone()))
            .collect::<Vec<_>>(),
        vec![(m3.user, Some("three".into()))]
    );
    assert!(delta.removed.is_empty());
    apply_delta(&mut list, &delta);
    assert_eq!(list, w.all_members(&m1, g.id).await);
    let delta = q.member_delta(&m1, g.id, delta.version).await.unwrap();
    assert!(
        delta.changed.is_empty() && delta.removed.is_empty(),
        "{delta:?}"
    );
}

/// What a client does with a delta: drop the removed, upsert the changed.
fn apply_delta(list: &mut Vec<Member>, delta: &qun_domain::MemberDelta) {
    list.retain(|m| !delta.removed.contains(&m.user));
    for m in &delta.changed {
        list.retain(|x| x.user != m.user);
        list.push(m.clone());
    }
    list.sort_by_key(|m| m.user);
}

// --- regressions found while writing the above ----------------------------

/// The owner may mute admins ("mute for up to 30 days: owner on admins and
/// members"); only the whole-group mute exempts them.
#[tokio::test]
async fn admin_muted_by_the_owner_cannot_send() {
    let w = world();
    let (owner, admin) = (w.user("owner").await, w.user("admin").await);
    let g = w.group(&owner, &[&admin], JoinMode::Open).await;
    w.qun
        .set_admin(&owner, g.id, admin.user, true)
        .await
        .unwrap();
    let muted = w.qun.mute(&owner, g.id, admin.user, 60).await.unwrap();
    let until = START + 60_000;
    assert_eq!(muted.muted_until, Some(until));
    for segments in [text("may I?"), at_all("may I?")] {
        let r = w.send(&admin, g.conversation, segments).await;
        assert!(
            matches!(r, Err(Error::Muted { until: Some(t) }) if t == until),
            "{r:?}"
        );
    }
    w.clock.advance_ms(60_000);
    w.send(&admin, g.conversation, text("free again"))
        .await
        .unwrap();
}

/// A retried send (same client message id) is the same message: its ack
/// comes back and it does not spend another @all.
#[tokio::test]
async fn retried_at_all_spends_the_quota_once() {
    let mut config = cheap_config();
    config.groups.at_all_per_group_per_day = 3;
    config.groups.at_all_per_manager_per_day = 2;
    let w = world_with(config);
    let owner = w.user("owner").await;
    let g = w.group(&owner, &[], JoinMode::Open).await;
    let q = &w.qun;
    let quota = || async {
        let q = q.at_all_quota(&owner, g.id).await.unwrap();
        (q.group_remaining, q.mine_remaining)
    };
    let first = q
        .send(&owner, g.conversation, "all-1", at_all("one"))
        .await
        .unwrap();
    assert_eq!(quota().await, (2, 1));
    let again = q
        .send(&owner, g.conversation, "all-1", at_all("one"))
        .await
        .unwrap();
    assert_eq!((again.seq, again.duplicate), (first.seq, true));
    assert_eq!(quota().await, (2, 1), "a retry spends nothing");
    let second = q
        .send(&owner, g.conversation, "all-2", at_all("two"))
        .await
        .unwrap();
    // The quota is spent now; retrying the stored message still gets its ack.
    let again = q.send(&owner, g.conversation, "all-2", at_all("two")).await;
    assert!(
        matches!(&again, Ok(a) if a.seq == second.seq && a.duplicate),
        "{again:?}"
    );
}

/// "Every denied action changes nothing." Accepting a member's invitation to
/// an approval group while one's own application is pending either works
/// (one pending application remains) or is refused leaving the invitation
/// open — never an accepted invitation with nothing to show for it.
#[tokio::test]
async fn accepting_an_invitation_with_an_application_pending_is_all_or_nothing() {
    let w = world();
    let (owner, member, guest) = (
        w.user("owner").await,
        w.user("member").await,
        w.user("guest").await,
    );
    let g = w.group(&owner, &[&member], JoinMode::Approval).await;
    let q = &w.qun;
    q.apply(&guest, g.id, "let me in", None).await.unwrap();
    let inv = q.invite(&member, g.id, guest.user).await.unwrap();
    let answer = q.answer_invitation(&guest, inv.id, true).await;
    let pending: Vec<UserId> = q
        .join_requests(&owner, g.id)
        .await
        .unwrap()
        .iter()
        .map(|r| r.user)
        .collect();
    assert_eq!(
        pending,
        vec![guest.user],
        "one pending application either way"
    );
    match answer {
        Ok(JoinOutcome::Pending(_)) => {}
        Ok(other) => {
            panic!("a member's invitation to an approval group asks for approval: {other:?}")
        }
        Err(e) => {
            let now = q.store().join_request(inv.id).await.unwrap().unwrap();
            assert_eq!(
                now.status,
                RequestStatus::Pending,
                "refused with {e:?} but the invitation was closed"
            );
        }
    }
}

/// A newcomer who joined after a message (and, with `history: from_join`,
/// cannot even read it) has not read it: receipts must not count them.
#[tokio::test]
async fn newcomers_are_not_readers_of_earlier_messages() {
    let w = world();
    let (owner, member, newcomer) = (
        w.user("owner").await,
        w.user("member").await,
        w.user("newcomer").await,
    );
    let g = w.group(&owner, &[&member], JoinMode::Open).await;
    let old = w.say(&member, g.conversation, "before the newcomer").await;
    w.qun.mark_read(&owner, g.conversation, old).await.unwrap();
    w.join(&newcomer, g.id).await;
    let r = w.qun.receipts(&member, g.id, old).await.unwrap();
    assert_eq!((r.count, r.readers), (1, Some(vec![owner.user])));
}

/// Once an applicant is in (here by an invite link), their application is no
/// longer waiting for the owner and admins.
#[tokio::test]
async fn joining_by_link_settles_a_pending_application() {
    let w = world();
    let (owner, guest) = (w.user("owner").await, w.user("guest").await);
    let g = w.group(&owner, &[], JoinMode::Approval).await;
    w.qun.apply(&guest, g.id, "let me in", None).await.unwrap();
    let link = w
        .qun
        .create_invite_link(&owner, g.id, None, None)
        .await
        .unwrap();
    let joined = w.qun.join_by_link(&guest, &link.code).await.unwrap();
    assert!(matches!(joined, JoinOutcome::Joined(_)), "{joined:?}");
    let waiting = w.qun.join_requests(&owner, g.id).await.unwrap();
    assert!(waiting.is_empty(), "{waiting:?}");
}
