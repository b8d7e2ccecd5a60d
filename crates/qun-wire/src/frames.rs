//! WebSocket frames: what clients send, what the server sends back and pushes.
//!
//! Every frame is a JSON object with `"v"` (the protocol version) and `"type"`.
//! Requests carry an `"id"` chosen by the client; the answer (`ok` or `error`)
//! repeats it. Events carry no id. See `docs/protocol.md`.

use serde::{Deserialize, Serialize};

use crate::{
    ConversationId, ErrorBody, FriendRequestView, FriendView, PresenceState, Segment, Seq, UserId,
    PROTOCOL_VERSION,
};

/// A request from a client: `{"v":1,"id":"r1","type":"send",...}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientFrame {
    /// Protocol version.
    pub v: u32,
    /// Request id, echoed in the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The request.
    #[serde(flatten)]
    pub request: Request,
}

impl ClientFrame {
    /// A frame of the current protocol version.
    pub fn new(id: impl Into<String>, request: Request) -> Self {
        ClientFrame {
            v: PROTOCOL_VERSION,
            id: Some(id.into()),
            request,
        }
    }
}

/// The requests a connection can make.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Must be the first frame: authenticates the socket with a session token.
    Auth {
        /// The bearer token from login.
        token: String,
    },
    /// Heartbeat; any frame also counts as one.
    Ping,
    /// Send a message.
    Send {
        /// Target conversation.
        conversation: ConversationId,
        /// Client-chosen idempotency key.
        client_msg_id: String,
        /// Content.
        segments: Vec<Segment>,
    },
    /// Recall a message.
    Recall {
        /// Conversation.
        conversation: ConversationId,
        /// The message's sequence number.
        seq: Seq,
    },
    /// Move the read position forward.
    Read {
        /// Conversation.
        conversation: ConversationId,
        /// Read up to here.
        seq: Seq,
    },
    /// Fetch a page of history: after `after` ascending, or before `before`.
    History {
        /// Conversation.
        conversation: ConversationId,
        /// Exclusive lower bound (forward paging, catch-up).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<Seq>,
        /// Exclusive upper bound (backward paging).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<Seq>,
        /// Page size (capped by the server's configured maximum).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// List conversations with their last sequence and unread counts.
    Conversations,
    /// Set this device's presence.
    SetPresence {
        /// The new state.
        state: PresenceState,
    },
}

impl Request {
    /// The `type` tag of this request.
    pub fn type_name(&self) -> &'static str {
        match self {
            Request::Auth { .. } => "auth",
            Request::Ping => "ping",
            Request::Send { .. } => "send",
            Request::Recall { .. } => "recall",
            Request::Read { .. } => "read",
            Request::History { .. } => "history",
            Request::Conversations => "conversations",
            Request::SetPresence { .. } => "set_presence",
        }
    }
}

/// A frame from the server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// Sent once authentication succeeded; live events follow from here on.
    Hello {
        /// Protocol version.
        v: u32,
        /// The authenticated account.
        user_id: UserId,
        /// The session.
        session_id: String,
        /// Send something at least this often (seconds).
        heartbeat_secs: u64,
        /// Server time, ms since epoch.
        server_time: i64,
    },
    /// The successful answer to a request.
    Ok {
        /// Protocol version.
        v: u32,
        /// The request's id.
        id: Option<String>,
        /// The result (shape depends on the request type).
        data: serde_json::Value,
    },
    /// The failed answer to a request, or a protocol error (id absent).
    Error {
        /// Protocol version.
        v: u32,
        /// The request's id, if it could be read.
        id: Option<String>,
        /// What went wrong.
        error: ErrorBody,
    },
    /// A live event.
    Event {
        /// Protocol version.
        v: u32,
        /// The event.
        event: Event,
    },
}

/// Events pushed to connected devices.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A new event in one of the user's conversations (message or recall).
    Conversation(crate::ConversationEvent),
    /// A friend's visible presence changed.
    Presence {
        /// The friend.
        user_id: UserId,
        /// Their state as the recipient may see it.
        state: PresenceState,
    },
    /// A friend request arrived or was sent from another device.
    FriendRequest(FriendRequestView),
    /// A friend request was refused.
    FriendRequestRefused(FriendRequestView),
    /// Someone became a friend.
    FriendAdded(FriendView),
    /// A friendship ended.
    FriendRemoved {
        /// The former friend.
        user_id: UserId,
    },
    /// A join application (to owner and admins) or an invitation (to the invitee).
    JoinRequest(crate::JoinRequestView),
    /// A join application or invitation was decided.
    JoinRequestResolved(crate::JoinRequestView),
    /// Another device of the user moved a read position.
    Read {
        /// Conversation.
        conversation: ConversationId,
        /// New read position.
        read_seq: Seq,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_frames_round_trip_with_type_tag() {
        let frame = ClientFrame::new(
            "r1",
            Request::Send {
                conversation: ConversationId(5),
                client_msg_id: "c-1".into(),
                segments: vec![Segment::Text { text: "hi".into() }],
            },
        );
        let json = serde_json::to_string(&frame).unwrap();
        assert_eq!(
            json,
            r#"{"v":1,"id":"r1","type":"send","conversation":5,"client_msg_id":"c-1","segments":[{"type":"text","text":"hi"}]}"#
        );
        let back: ClientFrame = serde_json::from_str(&json).unwrap();
        assert_eq!(back.request.type_name(), "send");
    }

    #[test]
    fn events_are_tagged_by_event_name() {
        let frame = ServerFrame::Event {
            v: 1,
            event: Event::Presence {
                user_id: UserId(10001),
                state: PresenceState::DoNotDisturb,
            },
        };
        let json = serde_json::to_string(&frame).unwrap();
        assert_eq!(
            json,
            r#"{"type":"event","v":1,"event":{"event":"presence","user_id":10001,"state":"do_not_disturb"}}"#
        );
    }
}
