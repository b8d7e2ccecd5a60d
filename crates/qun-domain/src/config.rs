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
        }
    }
}
