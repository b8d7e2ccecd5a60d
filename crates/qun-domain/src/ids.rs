//! Identifier newtypes, so that a user number is never mistaken for a sequence.

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A qun number.
    UserId
);
id_type!(
    /// A conversation.
    ConversationId
);
id_type!(
    /// A position in a conversation's event stream; the first event is 1.
    Seq
);
id_type!(
    /// A stored event's server-wide id.
    MessageId
);
id_type!(
    /// A friend request.
    FriendRequestId
);
id_type!(
    /// A friend category, per user; 0 is the default category.
    CategoryId
);

/// A login session's public id (random, not the token).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(pub String);

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The default friend category every user has ("My friends").
pub const DEFAULT_CATEGORY: CategoryId = CategoryId(0);

id_type!(
    /// A group number.
    GroupId
);
id_type!(
    /// A join request or invitation of a group.
    JoinRequestId
);
id_type!(
    /// A group announcement.
    AnnouncementId
);

/// The user id that a stored mention of everyone (@all) uses.
pub const MENTION_ALL: UserId = UserId(0);

/// A server node's id, random per process start.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub String);

impl NodeId {
    /// A fresh random node id.
    pub fn random() -> Self {
        NodeId(crate::accounts::random_token(9))
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
