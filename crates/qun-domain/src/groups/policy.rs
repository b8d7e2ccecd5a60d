//! Who may do what in a group: the one table every group operation consults.
//! `docs/groups.md` shows the same table; the authorization-matrix test checks
//! every cell against it.

use super::model::{Group, Role};

/// A caller's standing in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// The owner.
    Owner,
    /// An admin.
    Admin,
    /// A member.
    Member,
    /// Anyone else: strangers, applicants, kicked or banned users, admins of
    /// other groups.
    Outsider,
}

impl Standing {
    /// The standing of a member with `role`, or an outsider.
    pub fn of(role: Option<Role>) -> Self {
        match role {
            Some(Role::Owner) => Standing::Owner,
            Some(Role::Admin) => Standing::Admin,
            Some(Role::Member) => Standing::Member,
            None => Standing::Outsider,
        }
    }
}

/// Something a caller tries to do in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// See the group's public profile.
    View,
    /// Apply to join (or use an invite link).
    Join,
    /// Read messages and notices; list members; see announcements, essence,
    /// receipts and honours.
    Read,
    /// Send messages (mute rules apply on top).
    Send,
    /// Set one's own group card; confirm announcements.
    Participate,
    /// Leave the group.
    Leave,
    /// Invite someone or create an invite link.
    Invite,
    /// Change settings, mute everyone, review join requests, post and edit
    /// announcements, mark essence, @all, see confirmations and quotas.
    Manage,
    /// Kick, mute, recall others' messages, set others' cards: only on a
    /// lower role (see [`may_act_on`]).
    Moderate,
    /// Appoint or dismiss admins, set special titles, change the tier,
    /// transfer ownership, dissolve.
    Own,
}

/// Whether `standing` may do `action` in `group`, by role alone.
pub fn allowed(standing: Standing, action: Action, group: &Group) -> bool {
    use Action::*;
    use Standing::*;
    match action {
        View => true,
        Join => standing == Outsider,
        Read | Send | Participate => standing != Outsider,
        Leave => matches!(standing, Admin | Member),
        Invite => match standing {
            Owner | Admin => true,
            Member => group.members_may_invite,
            Outsider => false,
        },
        Manage | Moderate => matches!(standing, Owner | Admin),
        Own => standing == Owner,
    }
}

/// Whether a member with role `actor` may moderate one with role `target`:
/// admins act on members only, the owner on everyone else.
pub fn may_act_on(actor: Role, target: Role) -> bool {
    matches!(
        (actor, target),
        (Role::Owner, Role::Admin | Role::Member) | (Role::Admin, Role::Member)
    )
}
