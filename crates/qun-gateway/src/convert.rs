//! Explicit conversions between domain types and wire DTOs, at the boundary.

use qun_domain::bus::LiveEvent;
use qun_domain::model::{self as dm, EventBody};
use qun_domain::{self as d, Caller};
use qun_wire as w;

/// Domain presence → wire.
pub fn presence(p: d::PresenceState) -> w::PresenceState {
    use d::PresenceState as D;
    match p {
        D::Qme => w::PresenceState::Qme,
        D::Online => w::PresenceState::Online,
        D::Away => w::PresenceState::Away,
        D::Busy => w::PresenceState::Busy,
        D::DoNotDisturb => w::PresenceState::DoNotDisturb,
        D::Invisible => w::PresenceState::Invisible,
        D::Offline => w::PresenceState::Offline,
    }
}

/// Wire presence → domain.
pub fn presence_in(p: w::PresenceState) -> d::PresenceState {
    use w::PresenceState as W;
    match p {
        W::Qme => d::PresenceState::Qme,
        W::Online => d::PresenceState::Online,
        W::Away => d::PresenceState::Away,
        W::Busy => d::PresenceState::Busy,
        W::DoNotDisturb => d::PresenceState::DoNotDisturb,
        W::Invisible => d::PresenceState::Invisible,
        W::Offline => d::PresenceState::Offline,
    }
}

/// Wire device kind → domain.
pub fn device_in(k: w::DeviceKind) -> dm::DeviceKind {
    match k {
        w::DeviceKind::Pc => dm::DeviceKind::Pc,
        w::DeviceKind::Mobile => dm::DeviceKind::Mobile,
        w::DeviceKind::Web => dm::DeviceKind::Web,
    }
}

fn device(k: dm::DeviceKind) -> w::DeviceKind {
    match k {
        dm::DeviceKind::Pc => w::DeviceKind::Pc,
        dm::DeviceKind::Mobile => w::DeviceKind::Mobile,
        dm::DeviceKind::Web => w::DeviceKind::Web,
    }
}

/// Wire segments → domain.
pub fn segments_in(segments: Vec<w::Segment>) -> Vec<dm::Segment> {
    segments
        .into_iter()
        .map(|s| match s {
            w::Segment::Text { text } => dm::Segment::Text { text },
            w::Segment::Face { id } => dm::Segment::Face { id },
            w::Segment::Mention { user } => dm::Segment::Mention {
                user: d::UserId(user.0),
            },
            w::Segment::MentionAll => dm::Segment::MentionAll,
            w::Segment::Reply { seq } => dm::Segment::Reply { seq: d::Seq(seq.0) },
            w::Segment::Image { file } => dm::Segment::Image { file },
            w::Segment::File { file, name, size } => dm::Segment::File { file, name, size },
        })
        .collect()
}

fn segments(segments: &[dm::Segment]) -> Vec<w::Segment> {
    segments
        .iter()
        .map(|s| match s.clone() {
            dm::Segment::Text { text } => w::Segment::Text { text },
            dm::Segment::Face { id } => w::Segment::Face { id },
            dm::Segment::Mention { user } => w::Segment::Mention {
                user: w::UserId(user.0),
            },
            dm::Segment::MentionAll => w::Segment::MentionAll,
            dm::Segment::Reply { seq } => w::Segment::Reply { seq: w::Seq(seq.0) },
            dm::Segment::Image { file } => w::Segment::Image { file },
            dm::Segment::File { file, name, size } => w::Segment::File { file, name, size },
        })
        .collect()
}

/// A durable write's acknowledgement.
pub fn ack(a: &dm::Appended) -> w::Ack {
    w::Ack {
        conversation: w::ConversationId(a.conversation.0),
        seq: w::Seq(a.seq.0),
        message_id: w::MessageId(a.message_id.0),
        server_time: a.time,
    }
}

/// A stored event.
pub fn event(e: &dm::StoredEvent) -> w::ConversationEvent {
    let conversation = w::ConversationId(e.conversation.0);
    match &e.body {
        EventBody::Message {
            segments: s,
            recalled,
        } => w::ConversationEvent::Message(w::MessageView {
            conversation,
            seq: w::Seq(e.seq.0),
            message_id: w::MessageId(e.message_id.0),
            sender: w::UserId(e.sender.0),
            client_msg_id: e.client_msg_id.clone(),
            time: e.time,
            segments: segments(s),
            recalled: *recalled,
        }),
        EventBody::Recall { target } => w::ConversationEvent::Recall(w::RecallView {
            conversation,
            seq: w::Seq(e.seq.0),
            message_id: w::MessageId(e.message_id.0),
            target_seq: w::Seq(target.0),
            by: w::UserId(e.sender.0),
            time: e.time,
        }),
        EventBody::Notice(n) => w::ConversationEvent::Notice(w::NoticeView {
            conversation,
            seq: w::Seq(e.seq.0),
            message_id: w::MessageId(e.message_id.0),
            by: w::UserId(e.sender.0),
            time: e.time,
            notice: crate::convert_groups::notice(n),
        }),
    }
}

/// A profile.
pub fn profile(u: &dm::User) -> w::ProfileView {
    w::ProfileView {
        user_id: w::UserId(u.id.0),
        nickname: u.nickname.clone(),
        signature: u.signature.clone(),
        avatar: u.avatar.clone(),
        likes: u.likes,
    }
}

/// A session, flagged if it is the caller's own.
pub fn session(s: &dm::Session, caller: &Caller) -> w::SessionView {
    w::SessionView {
        session_id: s.id.0.clone(),
        device_kind: device(s.device_kind),
        device_name: s.device_name.clone(),
        created_at: s.created_at,
        expires_at: s.expires_at,
        current: s.id == caller.session,
    }
}

/// A friend request.
pub fn friend_request(r: &dm::FriendRequest) -> w::FriendRequestView {
    w::FriendRequestView {
        id: w::FriendRequestId(r.id.0),
        from: w::UserId(r.from.0),
        to: w::UserId(r.to.0),
        message: r.message.clone(),
        status: match r.status {
            dm::RequestStatus::Pending => w::FriendRequestStatus::Pending,
            dm::RequestStatus::Accepted => w::FriendRequestStatus::Accepted,
            dm::RequestStatus::Refused => w::FriendRequestStatus::Refused,
        },
        created_at: r.created_at,
    }
}

/// A friend entry.
pub fn friend(f: &dm::FriendEntry) -> w::FriendView {
    w::FriendView {
        user_id: w::UserId(f.friend.user.0),
        nickname: f.nickname.clone(),
        remark: f.friend.remark.clone(),
        category: w::CategoryId(f.friend.category.0),
        presence: presence(f.presence),
        conversation: w::ConversationId(f.friend.conversation.0),
    }
}

/// A category.
pub fn category(c: &dm::Category) -> w::CategoryView {
    w::CategoryView {
        id: w::CategoryId(c.id.0),
        name: c.name.clone(),
    }
}

/// A conversation in a user's list.
pub fn conversation(c: &dm::ConversationState) -> w::ConversationView {
    w::ConversationView {
        conversation: w::ConversationId(c.id.0),
        kind: match c.kind {
            dm::ConversationKind::Direct => w::ConversationKind::Direct,
            dm::ConversationKind::Group(_) => w::ConversationKind::Group,
        },
        peer: c.peer.map(|p| w::UserId(p.0)),
        group: match c.kind {
            dm::ConversationKind::Group(g) => Some(w::GroupId(g.0)),
            dm::ConversationKind::Direct => None,
        },
        mentions: c.mentions,
        last_seq: w::Seq(c.last_seq.0),
        read_seq: w::Seq(c.read_seq.0),
        unread: c.unread,
    }
}

/// A live event.
pub fn live_event(e: &LiveEvent) -> w::Event {
    match e {
        LiveEvent::Conversation(ev) => w::Event::Conversation(event(ev)),
        LiveEvent::Presence { user, state } => w::Event::Presence {
            user_id: w::UserId(user.0),
            state: presence(*state),
        },
        LiveEvent::FriendRequest(r) => w::Event::FriendRequest(friend_request(r)),
        LiveEvent::FriendRequestRefused(r) => w::Event::FriendRequestRefused(friend_request(r)),
        LiveEvent::FriendAdded(f) => w::Event::FriendAdded(friend(f)),
        LiveEvent::FriendRemoved { user } => w::Event::FriendRemoved {
            user_id: w::UserId(user.0),
        },
        LiveEvent::JoinRequest(r) => w::Event::JoinRequest(crate::convert_groups::join_request(r)),
        LiveEvent::JoinRequestResolved(r) => {
            w::Event::JoinRequestResolved(crate::convert_groups::join_request(r))
        }
        LiveEvent::Read {
            conversation,
            read_seq,
        } => w::Event::Read {
            conversation: w::ConversationId(conversation.0),
            read_seq: w::Seq(read_seq.0),
        },
    }
}

/// A read position with the unread count that remains.
pub fn read_state(c: &dm::ConversationState) -> w::ReadState {
    w::ReadState {
        conversation: w::ConversationId(c.id.0),
        read_seq: w::Seq(c.read_seq.0),
        unread: c.unread,
    }
}

/// A page of history.
pub fn history_page(events: &[dm::StoredEvent], more: bool) -> w::HistoryPage {
    w::HistoryPage {
        events: events.iter().map(event).collect(),
        more,
    }
}

/// A user's conversations.
pub fn conversation_list(list: &[dm::ConversationState]) -> w::ConversationList {
    w::ConversationList {
        conversations: list.iter().map(conversation).collect(),
    }
}

/// `after`/`before` bounds → a range; both at once is an error.
pub fn history_range(
    after: Option<w::Seq>,
    before: Option<w::Seq>,
) -> Result<d::HistoryRange, crate::error::ApiError> {
    match (after, before) {
        (Some(_), Some(_)) => Err(crate::error::ApiError::invalid_field(
            "give either after (forward) or before (backward), not both",
        )),
        (Some(a), None) => Ok(d::HistoryRange::After(d::Seq(a.0))),
        (None, Some(b)) => Ok(d::HistoryRange::Before(d::Seq(b.0))),
        (None, None) => Ok(d::HistoryRange::Latest),
    }
}
