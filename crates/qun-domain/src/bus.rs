//! Fan-out: the [`Bus`] carries notifications to whichever node holds the
//! recipients' sockets. The store stays the log: a lost notification is
//! repaired by catch-up, so the bus never has to be durable.

use serde::{Deserialize, Serialize};
use std::sync::Arc;

use async_trait::async_trait;

use crate::groups::model::JoinRequest;
use crate::model::{FriendEntry, FriendRequest, StoredEvent};
use crate::{ConversationId, NodeId, PresenceState, Seq, SessionId, UserId};

/// Something that happened, to be shown live on users' devices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LiveEvent {
    /// A new message or recall in a conversation.
    Conversation(StoredEvent),
    /// A friend's visible presence changed.
    Presence {
        /// Whose.
        user: UserId,
        /// As others may see it.
        state: PresenceState,
    },
    /// A friend request was sent (to its recipient and the sender's devices).
    FriendRequest(FriendRequest),
    /// A friend request was refused.
    FriendRequestRefused(FriendRequest),
    /// A friendship began; the entry is the recipient's view of the new friend.
    FriendAdded(FriendEntry),
    /// A friendship ended.
    FriendRemoved {
        /// The former friend.
        user: UserId,
    },
    /// A join application (to the group's owner and admins) or an invitation
    /// (to the invitee).
    JoinRequest(JoinRequest),
    /// A join application or invitation was decided.
    JoinRequestResolved(JoinRequest),
    /// The user's read position moved (for their other devices).
    Read {
        /// Conversation.
        conversation: ConversationId,
        /// New position.
        read_seq: Seq,
    },
}

/// Why sessions are being closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RevokeReason {
    /// Logout, or the user revoked a device.
    Revoked,
    /// The password changed.
    PasswordChanged,
    /// An administrator disabled the account.
    Disabled,
}

/// A message on the bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Notification {
    /// Deliver an event to every device of these users.
    Deliver {
        /// Recipients.
        users: Vec<UserId>,
        /// The event, shared among recipients.
        event: Arc<LiveEvent>,
    },
    /// A node's aggregate presence of a user changed (`None`: no device of
    /// the user there any more). Nodes keep a replica of each other's.
    Presence {
        /// The announcing node.
        node: NodeId,
        /// Whose.
        user: UserId,
        /// The node's aggregate.
        state: Option<PresenceState>,
    },
    /// A node is alive; nodes silent for long are forgotten, with their presence.
    NodeAlive {
        /// The node.
        node: NodeId,
    },
    /// Close these sessions' sockets now.
    Revoke {
        /// The account.
        user: UserId,
        /// Its revoked sessions (empty: all of them).
        sessions: Vec<SessionId>,
        /// Why.
        reason: RevokeReason,
    },
}

/// Carries notifications between nodes.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Publishes to every node (including this one). Best effort: failures are
    /// logged by the adapter, and catch-up repairs anything lost.
    async fn publish(&self, notification: Notification);
}

/// Receives notifications on one node (the gateway's connection hub).
/// Must not block: it only queues work for connections.
pub trait NotificationSink: Send + Sync + 'static {
    /// Handles one notification.
    fn deliver(&self, notification: &Notification);
}

/// The in-process bus of a single node: publishing is delivering.
pub struct LocalBus {
    sink: Arc<dyn NotificationSink>,
}

impl LocalBus {
    /// A bus that hands every notification to `sink`.
    pub fn new(sink: Arc<dyn NotificationSink>) -> Self {
        LocalBus { sink }
    }
}

#[async_trait]
impl Bus for LocalBus {
    async fn publish(&self, notification: Notification) {
        self.sink.deliver(&notification);
    }
}
