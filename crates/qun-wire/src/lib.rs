//! The wire format of qun: JSON frames of the WebSocket gateway and the REST DTOs.
//!
//! This crate is the only thing clients (the CLI, the load generator, the tests)
//! share with the server. Its types are plain data, versioned by [`PROTOCOL_VERSION`],
//! and converted explicitly to and from domain types at the gateway.

pub mod codes;
mod dto;
mod frames;
mod groups;

pub use dto::*;
pub use frames::*;
pub use groups::*;

/// The version carried in every WebSocket frame (`"v": 1`).
pub const PROTOCOL_VERSION: u32 = 1;

#[macro_export]
#[doc(hidden)]
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
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
    /// A qun number: the numeric account id (10001 upward).
    UserId
);
id_type!(
    /// A conversation (a 1:1 chat today; groups later).
    ConversationId
);
id_type!(
    /// A position in one conversation's event stream: gap-free, from 1.
    Seq
);
id_type!(
    /// A message's server-wide id.
    MessageId
);
id_type!(
    /// A friend request.
    FriendRequestId
);
id_type!(
    /// A friend category of one user (0 is the default "My friends").
    CategoryId
);
