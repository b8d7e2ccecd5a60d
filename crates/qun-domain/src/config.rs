//! Every limit and default of the domain, as data. Loaded by the binary from
//! `qun.toml` and the environment; the defaults match QQ's behaviour.

use serde::{Deserialize, Serialize};

/// Domain configuration. Field names are the keys under `[limits]` in `qun.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Most bytes of text and references one message may hold.
    pub max_message_bytes: usize,
    /// Most segments in one message.
    pub max_segments: usize,
    /// Longest `client_msg_id`, in bytes.
    pub max_client_msg_id_bytes: usize,
    /// Longest nickname, in characters.
    pub max_nickname_chars: usize,
    /// Longest signature, in characters.
    pub max_signature_chars: usize,
    /// Longest remark or category name, in characters.
    pub max_remark_chars: usize,
    /// Longest friend-request greeting, in characters.
    pub max_request_message_chars: usize,
    /// Longest avatar reference, in bytes.
    pub max_avatar_bytes: usize,
    /// Shortest password, in characters.
    pub min_password_chars: usize,
    /// Longest password, in characters.
    pub max_password_chars: usize,
    /// Most friend categories per user, besides the default.
    pub max_categories: usize,
    /// Seconds within which a sender may recall their own message (QQ: 120).
    pub recall_window_secs: u64,
    /// Likes one user may give one friend per (UTC) day (QQ: 10).
    pub likes_per_friend_per_day: u32,
    /// Largest history page.
    pub history_page_max: u32,
    /// Session lifetime in seconds.
    pub session_ttl_secs: u64,
    /// Login attempts per account per minute before `rate_limited`.
    pub login_attempts_per_account_per_minute: u32,
    /// Login attempts per client address per minute before `rate_limited`.
    pub login_attempts_per_address_per_minute: u32,
    /// Password hashes computed at once; more wait, so a flood cannot exhaust memory.
    pub max_concurrent_password_hashes: usize,
    /// Argon2id memory cost in KiB (OWASP minimum: 19456).
    pub argon2_memory_kib: u32,
    /// Argon2id iterations (OWASP minimum with 19 MiB: 2).
    pub argon2_iterations: u32,
    /// First automatically assigned qun number.
    pub first_user_number: u64,
    /// Longest wait, ms, for a missing seq before live events after it go out
    /// anyway (it was written through another node, which delivers it).
    pub delivery_gap_ms: u64,
    /// How often a node announces itself to the others (multi-node presence).
    pub node_heartbeat_secs: u64,
    /// A node silent this long is considered gone, with its users' presence.
    pub node_timeout_secs: u64,
    /// Groups: `[limits.groups]`.
    pub groups: GroupLimits,
}

/// One rung of the group tier ladder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tier {
    /// Display name.
    pub name: String,
    /// Member cap.
    pub max_members: u32,
    /// Admin cap.
    pub max_admins: u32,
    /// Group drive quota, bytes.
    pub drive_quota_bytes: u64,
    /// Album quota, bytes.
    pub album_quota_bytes: u64,
    /// Price in coins per day (the wallet charges it through the payment hook).
    pub coins_per_day: u64,
}

/// Group limits and defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupLimits {
    /// The tier ladder; new groups start on the first rung.
    pub tiers: Vec<Tier>,
    /// Most groups one user may own.
    pub max_groups_owned: u32,
    /// First automatically assigned group number.
    pub first_group_number: u64,
    /// Longest mute, seconds (QQ: 30 days).
    pub max_mute_secs: u64,
    /// @all messages per group per (UTC) day.
    pub at_all_per_group_per_day: u32,
    /// @all messages per owner or admin per group per day.
    pub at_all_per_manager_per_day: u32,
    /// Above this many members, read receipts give counts only.
    pub receipts_list_max_members: u32,
    /// Longest group name, characters.
    pub max_name_chars: usize,
    /// Longest introduction, characters.
    pub max_intro_chars: usize,
    /// Longest category or tag, characters.
    pub max_tag_chars: usize,
    /// Most tags.
    pub max_tags: usize,
    /// Longest group card, characters.
    pub max_card_chars: usize,
    /// Longest special title, characters.
    pub max_title_chars: usize,
    /// Longest join question, answer or request message, characters.
    pub max_request_chars: usize,
    /// Longest announcement title, characters.
    pub max_announcement_title_chars: usize,
    /// Longest announcement body, characters.
    pub max_announcement_body_chars: usize,
    /// Largest member-list page.
    pub member_page_max: u32,
    /// Longest invite-link lifetime, seconds.
    pub max_invite_link_secs: u64,
}

impl Default for GroupLimits {
    fn default() -> Self {
        const GIB: u64 = 1 << 30;
        let tier = |name: &str, max_members, max_admins, drive: u64, album: u64, coins| Tier {
            name: name.into(),
            max_members,
            max_admins,
            drive_quota_bytes: drive * GIB,
            album_quota_bytes: album * GIB,
            coins_per_day: coins,
        };
        GroupLimits {
            tiers: vec![
                tier("standard", 200, 10, 1, 1, 0),
                tier("advanced", 500, 10, 2, 2, 0),
                tier("senior", 1000, 15, 5, 3, 1),
                tier("super", 2000, 20, 10, 5, 2),
                tier("grand", 3000, 20, 20, 10, 3),
            ],
            max_groups_owned: 100,
            first_group_number: 100_001,
            max_mute_secs: 30 * 24 * 3600,
            at_all_per_group_per_day: 10,
            at_all_per_manager_per_day: 5,
            receipts_list_max_members: 200,
            max_name_chars: 30,
            max_intro_chars: 500,
            max_tag_chars: 16,
            max_tags: 10,
            max_card_chars: 30,
            max_title_chars: 12,
            max_request_chars: 100,
            max_announcement_title_chars: 60,
            max_announcement_body_chars: 2000,
            member_page_max: 500,
            max_invite_link_secs: 30 * 24 * 3600,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_message_bytes: 16 * 1024,
            max_segments: 64,
            max_client_msg_id_bytes: 64,
            max_nickname_chars: 32,
            max_signature_chars: 128,
            max_remark_chars: 32,
            max_request_message_chars: 128,
            max_avatar_bytes: 256,
            min_password_chars: 8,
            max_password_chars: 128,
            max_categories: 32,
            recall_window_secs: 120,
            likes_per_friend_per_day: 10,
            history_page_max: 500,
            session_ttl_secs: 30 * 24 * 3600,
            login_attempts_per_account_per_minute: 10,
            login_attempts_per_address_per_minute: 30,
            max_concurrent_password_hashes: 4,
            argon2_memory_kib: 19 * 1024,
            argon2_iterations: 2,
            first_user_number: 10001,
            delivery_gap_ms: 250,
            node_heartbeat_secs: 5,
            node_timeout_secs: 15,
            groups: GroupLimits::default(),
        }
    }
}
