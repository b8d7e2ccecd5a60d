//! The command-line client: `qun register`, `qun login`, `qun send`, `qun follow`,
//! `qun group ...`
//!
//! Each command is one small function over [`qun_client`]; the group commands
//! live under one `qun group` subcommand so the top level stays readable. `qun login` saves
//! the session in `$QUN_HOME/credentials-<profile>.json` (default `~/.qun`),
//! readable by the owner only; the other commands load it, and `QUN_TOKEN`
//! overrides the saved token. Output is for people unless `--json` is given.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use qun_client::{Client, ClientError, Connection};
use qun_wire::{
    codes, AcceptFriendRequest, AnnouncementDraft, AnnouncementId, AnnouncementView, CategoryId,
    ConversationEvent, ConversationId, ConversationKind, ConversationView, CreateGroupRequest,
    DeviceKind, Event, FriendPatch, FriendRequestId, FriendRequestStatus, FriendRequestView,
    GroupId, GroupNotice, GroupSettingsPatch, GroupView, HistoryVisibility, JoinKind, JoinMode,
    JoinRequestId, JoinRequestView, JoinResult, MemberView, MessageView, PresenceState,
    ProfilePatch, Role, Segment, Seq, UserId,
};
use serde::{Deserialize, Serialize};

/// Where the client connects when neither `--server` nor a saved login says otherwise.
const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// Which server and which saved login a command uses.
#[derive(Args, Debug, Clone)]
pub struct Conn {
    /// Server base URL [default: the saved login's server, else http://127.0.0.1:8080]
    #[arg(long, env = "QUN_SERVER", global = true)]
    server: Option<String>,
    /// Name of the saved login to use (several accounts can be logged in at once)
    #[arg(long, env = "QUN_PROFILE", default_value = "default", global = true)]
    profile: String,
}

/// Print machine-readable JSON instead of text.
#[derive(Args, Debug, Clone)]
pub struct Output {
    /// Print the server's answer as JSON
    #[arg(long, global = true)]
    json: bool,
}

/// Device kinds as typed on the command line.
#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum DeviceArg {
    /// A desktop client
    Pc,
    /// A phone or tablet
    Mobile,
    /// A browser
    Web,
}

impl From<DeviceArg> for DeviceKind {
    fn from(arg: DeviceArg) -> Self {
        match arg {
            DeviceArg::Pc => DeviceKind::Pc,
            DeviceArg::Mobile => DeviceKind::Mobile,
            DeviceArg::Web => DeviceKind::Web,
        }
    }
}

/// The client commands, flattened into `qun`'s top level.
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Create an account and print its qun number
    Register {
        /// Display name
        #[arg(long)]
        nickname: String,
        /// Password
        #[arg(long, env = "QUN_PASSWORD", hide_env_values = true)]
        password: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Log in and save the session for the other commands
    Login {
        /// Qun number
        #[arg(long)]
        user: u64,
        /// Password
        #[arg(long, env = "QUN_PASSWORD", hide_env_values = true)]
        password: String,
        /// Kind of device this session is shown as
        #[arg(long, value_enum, default_value = "pc")]
        device_kind: DeviceArg,
        /// Name of this device in the session list [default: host name]
        #[arg(long)]
        device_name: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Log this session out and forget it
    Logout {
        #[command(flatten)]
        conn: Conn,
    },
    /// List the account's logged-in devices
    Sessions {
        #[command(flatten)]
        output: Output,
        #[command(flatten)]
        conn: Conn,
    },
    /// Log another device out
    Revoke {
        /// Session id, from `qun sessions`
        session_id: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Change the password (logs the other devices out)
    Passwd {
        /// Current password
        #[arg(long)]
        old: String,
        /// New password
        #[arg(long)]
        new: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Show a profile (your own without USER)
    Profile {
        /// Qun number
        user: Option<u64>,
        #[command(flatten)]
        output: Output,
        #[command(flatten)]
        conn: Conn,
    },
    /// Change your profile
    ProfileSet {
        /// New nickname
        #[arg(long)]
        nickname: Option<String>,
        /// New signature
        #[arg(long)]
        signature: Option<String>,
        /// New avatar reference ("" clears it)
        #[arg(long)]
        avatar: Option<String>,
        /// Whether members of your groups who are not friends may message you
        #[arg(long, value_name = "true|false")]
        accept_temp_sessions: Option<bool>,
        #[command(flatten)]
        conn: Conn,
    },
    /// List friends by category, with presence and remarks
    Friends {
        #[command(flatten)]
        output: Output,
        #[command(flatten)]
        conn: Conn,
    },
    /// Ask someone to become a friend
    FriendRequest {
        /// Qun number
        user: u64,
        /// Greeting shown to them
        #[arg(long, default_value = "")]
        message: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// List pending friend requests, incoming and outgoing
    Requests {
        #[command(flatten)]
        output: Output,
        #[command(flatten)]
        conn: Conn,
    },
    /// Accept a friend request
    Accept {
        /// Request id, from `qun requests`
        request_id: u64,
        /// Remark for the new friend
        #[arg(long)]
        remark: Option<String>,
        /// Category for the new friend (id or name)
        #[arg(long)]
        category: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Refuse a friend request
    Refuse {
        /// Request id, from `qun requests`
        request_id: u64,
        #[command(flatten)]
        conn: Conn,
    },
    /// End a friendship
    Unfriend {
        /// Qun number
        user: u64,
        #[command(flatten)]
        conn: Conn,
    },
    /// Set a friend's remark ("" clears it)
    Remark {
        /// Qun number
        user: u64,
        /// The remark
        text: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Move a friend to another category
    Move {
        /// Qun number
        user: u64,
        /// Category id or name
        category: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// List friend categories
    Categories {
        #[command(flatten)]
        output: Output,
        #[command(flatten)]
        conn: Conn,
    },
    /// Create a friend category
    CategoryAdd {
        /// Name
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Rename a friend category
    CategoryRename {
        /// Category id
        id: u64,
        /// New name
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete a friend category (its friends move to the default one)
    CategoryDelete {
        /// Category id
        id: u64,
        #[command(flatten)]
        conn: Conn,
    },
    /// Blacklist a user
    Block {
        /// Qun number
        user: u64,
        #[command(flatten)]
        conn: Conn,
    },
    /// Remove a user from the blacklist
    Unblock {
        /// Qun number
        user: u64,
        #[command(flatten)]
        conn: Conn,
    },
    /// List blacklisted users
    Blacklist {
        #[command(flatten)]
        output: Output,
        #[command(flatten)]
        conn: Conn,
    },
    /// Like a friend's profile
    Like {
        /// Qun number
        user: u64,
        #[command(flatten)]
        conn: Conn,
    },
    /// List conversations with unread counts
    Conversations {
        #[command(flatten)]
        output: Output,
        #[command(flatten)]
        conn: Conn,
    },
    /// Send a text message to a friend, or to a member of one of your groups
    Send {
        /// Qun number
        user: u64,
        /// The text (several words are joined with spaces)
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        text: Vec<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Show the latest messages with a friend
    History {
        /// Qun number
        user: u64,
        /// How many events to show
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Show events before this sequence number (older pages)
        #[arg(long)]
        before: Option<u64>,
        #[command(flatten)]
        output: Output,
        #[command(flatten)]
        conn: Conn,
    },
    /// Recall one of your messages to a friend
    Recall {
        /// Qun number
        user: u64,
        /// The message's sequence number
        seq: u64,
        #[command(flatten)]
        conn: Conn,
    },
    /// Mark a conversation with a friend read up to a sequence number
    Read {
        /// Qun number
        user: u64,
        /// Read up to and including this sequence number
        seq: u64,
        #[command(flatten)]
        conn: Conn,
    },
    /// Open a temporary session with a member of one of your groups who is not a friend
    Temp {
        /// Qun number
        user: u64,
        #[command(flatten)]
        output: Output,
        #[command(flatten)]
        conn: Conn,
    },
    /// Print live events (messages, presence, friend and group requests, group
    /// notices) until Ctrl-C
    Follow {
        #[command(flatten)]
        conn: Conn,
    },
    /// Groups: create, find, join, manage members, announcements, chat...
    Group {
        #[command(subcommand)]
        command: GroupCommand,
        #[command(flatten)]
        output: Output,
        #[command(flatten)]
        conn: Conn,
    },
}

/// `qun group ...`: every group operation. IDs are group numbers; USER is a qun number.
#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// Create a group you own
    Create {
        /// Group name
        name: String,
        /// Introduction
        #[arg(long, default_value = "")]
        intro: String,
        /// Category, for search
        #[arg(long, default_value = "")]
        category: String,
        /// A tag (repeat for several)
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// Keep the group out of keyword and category search
        #[arg(long)]
        unlisted: bool,
        /// How people join: open, approval, question:QUESTION, auto:QUESTION=ANSWER,
        /// invite or closed [default: approval]
        #[arg(long, value_name = "MODE", value_parser = parse_join_mode)]
        join: Option<JoinMode>,
    },
    /// Find a group by number, or listed groups by keyword and category
    Search {
        /// Group number
        #[arg(long)]
        number: Option<u64>,
        /// Words in the name, introduction or tags
        #[arg(long)]
        keyword: Option<String>,
        /// Category
        #[arg(long)]
        category: Option<String>,
        /// Most groups to show
        #[arg(long)]
        limit: Option<u32>,
    },
    /// List the groups you are in
    List,
    /// Show a group's profile and settings
    Info {
        /// Group number
        id: u64,
    },
    /// Change a group's settings (owner and admins)
    Set {
        /// Group number
        id: u64,
        /// New name
        #[arg(long)]
        name: Option<String>,
        /// New introduction
        #[arg(long)]
        intro: Option<String>,
        /// New avatar reference ("" clears it)
        #[arg(long)]
        avatar: Option<String>,
        /// New category
        #[arg(long)]
        category: Option<String>,
        /// Replace the tags with these (repeat for several)
        #[arg(long = "tag", value_name = "TAG")]
        tags: Vec<String>,
        /// Remove every tag
        #[arg(long, conflicts_with = "tags")]
        no_tags: bool,
        /// Whether keyword and category search find the group
        #[arg(long, value_name = "true|false")]
        listed: Option<bool>,
        /// How people join: open, approval, question:QUESTION, auto:QUESTION=ANSWER,
        /// invite or closed
        #[arg(long, value_name = "MODE", value_parser = parse_join_mode)]
        join: Option<JoinMode>,
        /// Whether plain members may invite people
        #[arg(long, value_name = "true|false")]
        members_may_invite: Option<bool>,
        /// What newcomers can read
        #[arg(long, value_enum)]
        history: Option<HistoryArg>,
    },
    /// Dissolve a group (owner; its history stays readable)
    Dissolve {
        /// Group number
        id: u64,
    },
    /// Move a group to another tier of the server's ladder (sets the member cap)
    Tier {
        /// Group number
        id: u64,
        /// Tier index
        tier: u32,
    },
    /// Hand a group to another member (owner)
    Transfer {
        /// Group number
        id: u64,
        /// The new owner
        user: u64,
    },
    /// Mute or unmute everyone but owner and admins
    MuteAll {
        /// Group number
        id: u64,
        /// on or off
        #[arg(value_enum)]
        state: Switch,
    },
    /// Join a group, or ask to
    Join {
        /// Group number
        id: u64,
        /// Message to the reviewers
        #[arg(long, default_value = "")]
        message: String,
        /// Answer to the group's question
        #[arg(long)]
        answer: Option<String>,
    },
    /// Leave a group
    Leave {
        /// Group number
        id: u64,
    },
    /// List members (all of them unless --after or --limit asks for one page)
    Members {
        /// Group number
        id: u64,
        /// Start after this qun number
        #[arg(long)]
        after: Option<u64>,
        /// Most members in the page
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Show what changed in a member list since a version (from `members --json`)
    Changes {
        /// Group number
        id: u64,
        /// Member-list version
        since: u64,
    },
    /// Show your own membership: role, card, title, mute
    Me {
        /// Group number
        id: u64,
    },
    /// Remove a member
    Kick {
        /// Group number
        id: u64,
        /// Qun number
        user: u64,
        /// Also forbid them to ask to join again
        #[arg(long)]
        ban: bool,
    },
    /// Let a banned user ask to join again
    Unban {
        /// Group number
        id: u64,
        /// Qun number
        user: u64,
    },
    /// Mute a member for some seconds (0 unmutes)
    Mute {
        /// Group number
        id: u64,
        /// Qun number
        user: u64,
        /// Seconds
        secs: u64,
    },
    /// Make a member an admin, or a plain member again (owner)
    Admin {
        /// Group number
        id: u64,
        /// Qun number
        user: u64,
        /// on or off
        #[arg(value_enum)]
        state: Switch,
    },
    /// Give a member a special title (none clears it)
    Title {
        /// Group number
        id: u64,
        /// Qun number
        user: u64,
        /// The title
        title: Option<String>,
        /// Lifetime in seconds [default: permanent]
        #[arg(long, value_name = "SECS")]
        expires_in: Option<u64>,
    },
    /// Set a member's group card, the name shown in this group (none clears it)
    Card {
        /// Group number
        id: u64,
        /// Qun number
        user: u64,
        /// The card
        card: Option<String>,
    },
    /// Invite someone
    Invite {
        /// Group number
        id: u64,
        /// Qun number
        user: u64,
    },
    /// Create an invite link
    Link {
        /// Group number
        id: u64,
        /// Lifetime in seconds [default: the server's maximum]
        #[arg(long, value_name = "SECS")]
        expires_in: Option<u64>,
        /// Most uses [default: unlimited]
        #[arg(long)]
        max_uses: Option<u32>,
    },
    /// Join through an invite link's code
    JoinLink {
        /// The code, from `qun group link`
        code: String,
    },
    /// List a group's pending applications and invitations (owner and admins)
    Requests {
        /// Group number
        id: u64,
    },
    /// List your own applications and the invitations sent to you
    MyRequests,
    /// Approve or refuse an application (owner and admins)
    Review {
        /// Request id
        request: u64,
        /// approve or refuse
        #[arg(value_enum)]
        decision: Review,
        /// Reason shown to the applicant when refusing
        #[arg(long)]
        reason: Option<String>,
    },
    /// Accept or refuse an invitation sent to you
    Answer {
        /// Invitation id
        request: u64,
        /// accept or refuse
        #[arg(value_enum)]
        decision: Answer,
    },
    /// Publish an announcement
    Announce {
        /// Group number
        id: u64,
        /// Title
        title: String,
        /// Body
        body: String,
        #[command(flatten)]
        flags: AnnouncementFlags,
    },
    /// Replace an announcement's content
    AnnouncementEdit {
        /// Group number
        id: u64,
        /// Announcement id
        aid: u64,
        /// Title
        title: String,
        /// Body
        body: String,
        #[command(flatten)]
        flags: AnnouncementFlags,
    },
    /// List a group's announcements
    Announcements {
        /// Group number
        id: u64,
    },
    /// Delete an announcement
    AnnouncementDelete {
        /// Group number
        id: u64,
        /// Announcement id
        aid: u64,
    },
    /// Confirm having read an announcement
    Confirm {
        /// Group number
        id: u64,
        /// Announcement id
        aid: u64,
    },
    /// List who has confirmed an announcement
    Confirmations {
        /// Group number
        id: u64,
        /// Announcement id
        aid: u64,
    },
    /// List essence messages, or mark (--unset: unmark) one
    Essence {
        /// Group number
        id: u64,
        /// The message's sequence number
        seq: Option<u64>,
        /// Unmark instead of mark
        #[arg(long, requires = "seq")]
        unset: bool,
    },
    /// Show who has read a message
    Receipts {
        /// Group number
        id: u64,
        /// The message's sequence number
        seq: u64,
    },
    /// Show today's most talkative members
    Honours {
        /// Group number
        id: u64,
    },
    /// Show the @all mentions left today
    Quota {
        /// Group number
        id: u64,
    },
    /// Send a text message to a group (options go before the text)
    Send {
        /// Group number
        id: u64,
        /// Mention a member (repeat for several)
        #[arg(long, value_name = "USER")]
        at: Vec<u64>,
        /// Mention everyone (limited by a daily quota)
        #[arg(long)]
        at_all: bool,
        /// The text (several words are joined with spaces)
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        text: Vec<String>,
    },
    /// Show a group's latest messages and notices
    History {
        /// Group number
        id: u64,
        /// How many events to show
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Show events before this sequence number (older pages)
        #[arg(long)]
        before: Option<u64>,
    },
    /// Recall a message in a group (yours; owner and admins also those of lower roles)
    Recall {
        /// Group number
        id: u64,
        /// The message's sequence number
        seq: u64,
    },
    /// Mark a group read up to a sequence number
    Read {
        /// Group number
        id: u64,
        /// Read up to and including this sequence number
        seq: u64,
    },
}

/// The options of an announcement.
#[derive(Args, Debug, Clone)]
pub struct AnnouncementFlags {
    /// Pin it
    #[arg(long)]
    pinned: bool,
    /// Ask every member to confirm having read it
    #[arg(long)]
    confirm: bool,
    /// Show it to newcomers
    #[arg(long)]
    entrance: bool,
}

/// `on` or `off`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    /// Turn it on
    On,
    /// Turn it off
    Off,
}

/// A reviewer's decision on an application.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Review {
    /// Let them in
    Approve,
    /// Turn them away
    Refuse,
}

/// An invitee's answer.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Join the group
    Accept,
    /// Decline
    Refuse,
}

/// What newcomers can read, as typed on the command line.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryArg {
    /// Only what is said after they join
    #[value(name = "from_join")]
    FromJoin,
    /// Everything
    Full,
}

impl From<HistoryArg> for HistoryVisibility {
    fn from(arg: HistoryArg) -> Self {
        match arg {
            HistoryArg::FromJoin => HistoryVisibility::FromJoin,
            HistoryArg::Full => HistoryVisibility::Full,
        }
    }
}

/// Parses `--join`: `open`, `approval`, `question:Q`, `auto:Q=A`, `invite` or `closed`.
/// The answer of `auto:` follows the last `=`, so a question may contain `=`.
fn parse_join_mode(text: &str) -> Result<JoinMode, String> {
    let expected =
        "expected open, approval, question:QUESTION, auto:QUESTION=ANSWER, invite or closed";
    match text {
        "open" => return Ok(JoinMode::Open),
        "approval" => return Ok(JoinMode::Approval),
        "invite" => return Ok(JoinMode::InviteOnly),
        "closed" => return Ok(JoinMode::Closed),
        _ => {}
    }
    if let Some(question) = text.strip_prefix("question:") {
        if question.is_empty() {
            return Err("the question is empty".to_owned());
        }
        return Ok(JoinMode::Question {
            question: question.to_owned(),
        });
    }
    if let Some(rest) = text.strip_prefix("auto:") {
        return match rest.rsplit_once('=') {
            Some((question, answer)) if !question.is_empty() && !answer.is_empty() => {
                Ok(JoinMode::QuestionAuto {
                    question: question.to_owned(),
                    answer: answer.to_owned(),
                })
            }
            _ => Err(format!(
                "{text:?}: auto needs a question and an answer, auto:QUESTION=ANSWER"
            )),
        };
    }
    Err(format!("{text:?}: {expected}"))
}

/// Runs one client command. Failures are printed as `error: <code>: <message>`
/// and end the process with status 1.
pub async fn run(cmd: ClientCommand) -> Result<()> {
    if let Err(e) = execute(cmd).await {
        eprintln!("error: {e:#}");
        let body = e.downcast_ref::<ClientError>().and_then(ClientError::body);
        if let Some(until) = body.and_then(|b| b.until) {
            eprintln!("(muted until {} UTC)", format_time(until));
        }
        std::process::exit(1);
    }
    Ok(())
}

async fn execute(cmd: ClientCommand) -> Result<()> {
    use ClientCommand as C;
    match cmd {
        C::Register {
            nickname,
            password,
            conn,
        } => register(&conn, &nickname, &password).await,
        C::Login {
            user,
            password,
            device_kind,
            device_name,
            conn,
        } => login(&conn, UserId(user), &password, device_kind, device_name).await,
        C::Logout { conn } => logout(&conn).await,
        C::Sessions { output, conn } => sessions(&conn, &output).await,
        C::Revoke { session_id, conn } => revoke(&conn, &session_id).await,
        C::Passwd { old, new, conn } => passwd(&conn, &old, &new).await,
        C::Profile { user, output, conn } => profile(&conn, user.map(UserId), &output).await,
        C::ProfileSet {
            nickname,
            signature,
            avatar,
            accept_temp_sessions,
            conn,
        } => {
            profile_set(
                &conn,
                ProfilePatch {
                    nickname,
                    signature,
                    avatar,
                    accept_temp_sessions,
                },
            )
            .await
        }
        C::Friends { output, conn } => friends(&conn, &output).await,
        C::FriendRequest {
            user,
            message,
            conn,
        } => friend_request(&conn, UserId(user), &message).await,
        C::Requests { output, conn } => requests(&conn, &output).await,
        C::Accept {
            request_id,
            remark,
            category,
            conn,
        } => accept(&conn, FriendRequestId(request_id), remark, category).await,
        C::Refuse { request_id, conn } => refuse(&conn, FriendRequestId(request_id)).await,
        C::Unfriend { user, conn } => unfriend(&conn, UserId(user)).await,
        C::Remark { user, text, conn } => remark(&conn, UserId(user), text).await,
        C::Move {
            user,
            category,
            conn,
        } => move_friend(&conn, UserId(user), &category).await,
        C::Categories { output, conn } => categories(&conn, &output).await,
        C::CategoryAdd { name, conn } => category_add(&conn, &name).await,
        C::CategoryRename { id, name, conn } => category_rename(&conn, CategoryId(id), &name).await,
        C::CategoryDelete { id, conn } => category_delete(&conn, CategoryId(id)).await,
        C::Block { user, conn } => block(&conn, UserId(user)).await,
        C::Unblock { user, conn } => unblock(&conn, UserId(user)).await,
        C::Blacklist { output, conn } => blacklist(&conn, &output).await,
        C::Like { user, conn } => like(&conn, UserId(user)).await,
        C::Conversations { output, conn } => conversations(&conn, &output).await,
        C::Send { user, text, conn } => send(&conn, UserId(user), &text.join(" ")).await,
        C::History {
            user,
            limit,
            before,
            output,
            conn,
        } => history(&conn, UserId(user), limit, before.map(Seq), &output).await,
        C::Recall { user, seq, conn } => recall(&conn, UserId(user), Seq(seq)).await,
        C::Read { user, seq, conn } => read(&conn, UserId(user), Seq(seq)).await,
        C::Temp { user, output, conn } => temp(&conn, UserId(user), &output).await,
        C::Follow { conn } => follow(&conn).await,
        C::Group {
            command,
            output,
            conn,
        } => group(&conn, &output, command).await,
    }
}

// ---- accounts and sessions ----

async fn register(conn: &Conn, nickname: &str, password: &str) -> Result<()> {
    let client = Client::new(&server_for(conn)?);
    let answer = client.register(nickname, password).await?;
    println!("{}", answer.user_id);
    Ok(())
}

async fn login(
    conn: &Conn,
    user: UserId,
    password: &str,
    device_kind: DeviceArg,
    device_name: Option<String>,
) -> Result<()> {
    let server = server_for(conn)?;
    let device_name = device_name
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "qun cli".to_owned());
    let answer = Client::new(&server)
        .login(user, password, device_kind.into(), &device_name)
        .await?;
    let credentials = Credentials {
        server,
        user_id: answer.user_id,
        token: answer.token,
        session_id: answer.session_id,
    };
    let path = save_credentials(&conn.profile, &credentials)?;
    println!(
        "logged in as {} (session {}); saved to {}",
        credentials.user_id,
        credentials.session_id,
        path.display()
    );
    Ok(())
}

async fn logout(conn: &Conn) -> Result<()> {
    let session = Session::open(conn)?;
    match session.client.logout().await {
        Ok(()) => {}
        // The session is already gone on the server: forgetting it is all that is left.
        Err(e) if is_dead_session(&e) => {}
        Err(e) => return Err(e.into()),
    }
    remove_credentials(&conn.profile)?;
    println!("logged out");
    Ok(())
}

fn is_dead_session(e: &ClientError) -> bool {
    use qun_wire::codes;
    matches!(
        e.code(),
        Some(codes::UNAUTHENTICATED | codes::SESSION_REVOKED | codes::TOKEN_EXPIRED)
    )
}

async fn sessions(conn: &Conn, output: &Output) -> Result<()> {
    let list = Session::open(conn)?.client.sessions().await?;
    if output.json {
        return print_json(&list);
    }
    for s in &list {
        let marker = if s.current { "*" } else { " " };
        println!(
            "{marker} {}  {:<6} {}  (since {}, expires {})",
            s.session_id,
            device_name(s.device_kind),
            s.device_name,
            format_time(s.created_at),
            format_time(s.expires_at)
        );
    }
    Ok(())
}

async fn revoke(conn: &Conn, session_id: &str) -> Result<()> {
    Session::open(conn)?
        .client
        .revoke_session(session_id)
        .await?;
    println!("session {session_id} logged out");
    Ok(())
}

async fn passwd(conn: &Conn, old: &str, new: &str) -> Result<()> {
    let revoked = Session::open(conn)?
        .client
        .change_password(old, new)
        .await?;
    println!(
        "password changed; {} other session(s) logged out",
        revoked.revoked
    );
    Ok(())
}

// ---- profiles ----

async fn profile(conn: &Conn, user: Option<UserId>, output: &Output) -> Result<()> {
    let session = Session::open(conn)?;
    let user = match user.or(session.user_id) {
        Some(user) => user,
        None => bail!("whose profile? give a qun number (QUN_TOKEN hides who you are)"),
    };
    let view = session.client.profile(user).await?;
    if output.json {
        return print_json(&view);
    }
    println!("{} ({})", view.nickname, view.user_id);
    println!("signature: {}", view.signature);
    if let Some(avatar) = &view.avatar {
        println!("avatar: {avatar}");
    }
    println!("likes: {}", view.likes);
    Ok(())
}

async fn profile_set(conn: &Conn, patch: ProfilePatch) -> Result<()> {
    if patch.nickname.is_none()
        && patch.signature.is_none()
        && patch.avatar.is_none()
        && patch.accept_temp_sessions.is_none()
    {
        bail!(
            "nothing to change: give --nickname, --signature, --avatar or --accept-temp-sessions"
        );
    }
    let view = Session::open(conn)?.client.update_profile(&patch).await?;
    println!(
        "profile of {} updated: {} / {}",
        view.user_id, view.nickname, view.signature
    );
    Ok(())
}

// ---- friends ----

async fn friends(conn: &Conn, output: &Output) -> Result<()> {
    let client = Session::open(conn)?.client;
    let friends = client.friends().await?;
    if output.json {
        return print_json(&friends);
    }
    let categories = client.categories().await?;
    let mut groups: Vec<(CategoryId, String)> =
        categories.into_iter().map(|c| (c.id, c.name)).collect();
    // A friend in a category the list does not know still gets shown.
    for friend in &friends {
        if !groups.iter().any(|(id, _)| *id == friend.category) {
            groups.push((friend.category, format!("category {}", friend.category)));
        }
    }
    for (id, name) in &groups {
        let members: Vec<_> = friends.iter().filter(|f| f.category == *id).collect();
        println!("{name} ({})", members.len());
        for f in members {
            let shown = match &f.remark {
                Some(remark) => format!("{remark} ({})", f.nickname),
                None => f.nickname.clone(),
            };
            println!(
                "  {:<10} {shown}  [{}]",
                f.user_id,
                presence_name(f.presence)
            );
        }
    }
    Ok(())
}

async fn friend_request(conn: &Conn, user: UserId, message: &str) -> Result<()> {
    let request = Session::open(conn)?
        .client
        .send_friend_request(user, message)
        .await?;
    println!("friend request #{} sent to {}", request.id, request.to);
    Ok(())
}

async fn requests(conn: &Conn, output: &Output) -> Result<()> {
    let list = Session::open(conn)?.client.friend_requests().await?;
    if output.json {
        return print_json(&list);
    }
    let print = |title: &str, requests: &[FriendRequestView], incoming: bool| {
        println!("{title}:");
        if requests.is_empty() {
            println!("  (none)");
        }
        for r in requests {
            let (direction, other) = if incoming {
                ("from", r.from)
            } else {
                ("to", r.to)
            };
            println!(
                "  #{} {direction} {other}  {}  [{}]  {:?}",
                r.id,
                format_time(r.created_at),
                request_status(r.status),
                r.message
            );
        }
    };
    print("incoming", &list.incoming, true);
    print("outgoing", &list.outgoing, false);
    Ok(())
}

async fn accept(
    conn: &Conn,
    id: FriendRequestId,
    remark: Option<String>,
    category: Option<String>,
) -> Result<()> {
    let client = Session::open(conn)?.client;
    let category = match category {
        Some(category) => Some(resolve_category(&client, &category).await?),
        None => None,
    };
    let friend = client
        .accept_friend_request(id, &AcceptFriendRequest { remark, category })
        .await?;
    println!(
        "now friends with {} ({}); conversation {}",
        friend.nickname, friend.user_id, friend.conversation
    );
    Ok(())
}

async fn refuse(conn: &Conn, id: FriendRequestId) -> Result<()> {
    let request = Session::open(conn)?
        .client
        .refuse_friend_request(id)
        .await?;
    println!(
        "friend request #{} from {} refused",
        request.id, request.from
    );
    Ok(())
}

async fn unfriend(conn: &Conn, user: UserId) -> Result<()> {
    Session::open(conn)?.client.remove_friend(user).await?;
    println!("{user} is no longer your friend");
    Ok(())
}

async fn remark(conn: &Conn, user: UserId, text: String) -> Result<()> {
    let patch = FriendPatch {
        remark: Some(text),
        category: None,
    };
    let friend = Session::open(conn)?
        .client
        .update_friend(user, &patch)
        .await?;
    match &friend.remark {
        Some(remark) => println!("{} is now shown as {remark}", friend.user_id),
        None => println!("remark for {} cleared", friend.user_id),
    }
    Ok(())
}

async fn move_friend(conn: &Conn, user: UserId, category: &str) -> Result<()> {
    let client = Session::open(conn)?.client;
    let category = resolve_category(&client, category).await?;
    let patch = FriendPatch {
        remark: None,
        category: Some(category),
    };
    let friend = client.update_friend(user, &patch).await?;
    println!("{} moved to category {}", friend.user_id, friend.category);
    Ok(())
}

/// A category given by id, or by exact name.
async fn resolve_category(client: &Client, given: &str) -> Result<CategoryId> {
    if let Ok(id) = given.parse::<u64>() {
        return Ok(CategoryId(id));
    }
    let categories = client.categories().await?;
    match categories.into_iter().find(|c| c.name == given) {
        Some(category) => Ok(category.id),
        None => bail!("no category named {given:?} (see `qun categories`)"),
    }
}

async fn like(conn: &Conn, user: UserId) -> Result<()> {
    let result = Session::open(conn)?.client.like(user).await?;
    println!(
        "liked {user} ({} today, {} left)",
        result.today, result.remaining
    );
    Ok(())
}

// ---- categories and blacklist ----

async fn categories(conn: &Conn, output: &Output) -> Result<()> {
    let list = Session::open(conn)?.client.categories().await?;
    if output.json {
        return print_json(&list);
    }
    for c in &list {
        println!("{:>4}  {}", c.id, c.name);
    }
    Ok(())
}

async fn category_add(conn: &Conn, name: &str) -> Result<()> {
    let category = Session::open(conn)?.client.create_category(name).await?;
    println!("category {} created: {}", category.id, category.name);
    Ok(())
}

async fn category_rename(conn: &Conn, id: CategoryId, name: &str) -> Result<()> {
    let category = Session::open(conn)?
        .client
        .rename_category(id, name)
        .await?;
    println!("category {} renamed to {}", category.id, category.name);
    Ok(())
}

async fn category_delete(conn: &Conn, id: CategoryId) -> Result<()> {
    Session::open(conn)?.client.delete_category(id).await?;
    println!("category {id} deleted");
    Ok(())
}

async fn block(conn: &Conn, user: UserId) -> Result<()> {
    Session::open(conn)?.client.block(user).await?;
    println!("{user} blocked");
    Ok(())
}

async fn unblock(conn: &Conn, user: UserId) -> Result<()> {
    Session::open(conn)?.client.unblock(user).await?;
    println!("{user} unblocked");
    Ok(())
}

async fn blacklist(conn: &Conn, output: &Output) -> Result<()> {
    let list = Session::open(conn)?.client.blacklist().await?;
    if output.json {
        return print_json(&list);
    }
    if list.is_empty() {
        println!("(nobody)");
    }
    for b in &list {
        println!("{:<10} since {}", b.user_id, format_time(b.since));
    }
    Ok(())
}

// ---- conversations and messages ----

async fn conversations(conn: &Conn, output: &Output) -> Result<()> {
    let session = Session::open(conn)?;
    let list = session.client.conversations().await?;
    if output.json {
        return print_json(&list);
    }
    let names = Names::load(&session).await;
    for c in &list.conversations {
        let with = conversation_name(c, &names);
        let mentions = if c.mentions > 0 {
            format!("  (@ {})", c.mentions)
        } else {
            String::new()
        };
        println!(
            "{:>6}  {with}  last #{}  read #{}  unread {}{mentions}",
            c.conversation, c.last_seq, c.read_seq, c.unread
        );
    }
    Ok(())
}

/// "with alice" or "group 100001".
fn conversation_name(c: &ConversationView, names: &Names) -> String {
    match (c.kind, c.peer, c.group) {
        (ConversationKind::Group, _, Some(group)) => format!("group {group}"),
        (ConversationKind::Group, _, None) => "group ?".to_owned(),
        (ConversationKind::Direct, Some(peer), _) => format!("with {}", names.of(peer)),
        (ConversationKind::Direct, None, _) => "with ?".to_owned(),
    }
}

/// The 1:1 conversation with `user`: the direct one with a friend, else a
/// temporary session through a group both are in.
async fn direct(client: &Client, user: UserId) -> Result<ConversationId> {
    match client.direct_conversation(user).await {
        Ok(view) => Ok(view.conversation),
        Err(e) if e.code() == Some(codes::NOT_FRIENDS) => {
            match client.open_temp_session(user).await {
                Ok(view) => Ok(view.conversation),
                // With no group in common, "not friends" is the better explanation.
                Err(temp) if temp.code() == Some(codes::NO_SHARED_GROUP) => Err(e.into()),
                Err(temp) => Err(temp.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

async fn temp(conn: &Conn, user: UserId, output: &Output) -> Result<()> {
    let view = Session::open(conn)?.client.open_temp_session(user).await?;
    if output.json {
        return print_json(&view);
    }
    println!(
        "temporary session with {user}: conversation {} (last #{}, unread {}); \
         `qun send {user} ...` now reaches them",
        view.conversation, view.last_seq, view.unread
    );
    Ok(())
}

async fn send(conn: &Conn, user: UserId, text: &str) -> Result<()> {
    let client = Session::open(conn)?.client;
    let conversation = direct(&client, user).await?;
    let segments = vec![Segment::Text {
        text: text.to_owned(),
    }];
    let ack = client
        .send(conversation, &new_client_msg_id(), segments)
        .await?;
    println!("sent #{}", ack.seq);
    Ok(())
}

async fn history(
    conn: &Conn,
    user: UserId,
    limit: u32,
    before: Option<Seq>,
    output: &Output,
) -> Result<()> {
    let session = Session::open(conn)?;
    let conversation = direct(&session.client, user).await?;
    let page = session
        .client
        .history(conversation, None, before, Some(limit))
        .await?;
    if output.json {
        return print_json(&page);
    }
    let names = Names::load(&session).await;
    if page.more {
        let oldest = page.events.first().map(|e| e.seq().0).unwrap_or(0);
        println!("(older messages: qun history {user} --before {oldest})");
    }
    print_events(&page.events, &names);
    Ok(())
}

/// One line per event of a history page.
fn print_events(events: &[ConversationEvent], names: &Names) {
    for event in events {
        match event {
            ConversationEvent::Message(m) => println!(
                "#{} [{}] {}: {}",
                m.seq,
                format_time(m.time),
                names.of(m.sender),
                message_text(m)
            ),
            ConversationEvent::Recall(r) => println!(
                "#{} [{}] {} recalled #{}",
                r.seq,
                format_time(r.time),
                names.of(r.by),
                r.target_seq
            ),
            ConversationEvent::Notice(n) => println!(
                "#{} [{}] * {}",
                n.seq,
                format_time(n.time),
                notice_text(&n.notice, names)
            ),
        }
    }
}

async fn recall(conn: &Conn, user: UserId, seq: Seq) -> Result<()> {
    let client = Session::open(conn)?.client;
    let conversation = direct(&client, user).await?;
    let ack = client.recall(conversation, seq).await?;
    println!("recalled #{seq} (event #{})", ack.seq);
    Ok(())
}

async fn read(conn: &Conn, user: UserId, seq: Seq) -> Result<()> {
    let client = Session::open(conn)?.client;
    let conversation = direct(&client, user).await?;
    let state = client.read(conversation, seq).await?;
    println!("read up to #{}; {} unread", state.read_seq, state.unread);
    Ok(())
}

async fn follow(conn: &Conn) -> Result<()> {
    let session = Session::open(conn)?;
    let mut names = Names::load(&session).await;
    let (socket, hello) = Connection::connect(&session.server, &session.token).await?;
    names.me = Some(hello.user_id);
    eprintln!(
        "connected as {} (session {}); Ctrl-C to stop",
        hello.user_id, hello.session_id
    );
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            event = socket.next_event() => match event {
                Some(event) => {
                    println!("{}", describe_event(&event, &names));
                    names.learn(&event);
                }
                None => break,
            },
            _ = &mut ctrl_c => {
                socket.close();
                // Give the close handshake a moment so the server sees a clean goodbye.
                let drain = async { while socket.next_event().await.is_some() {} };
                let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
                return Ok(());
            }
        }
    }
    let (code, reason) = socket.close_info().unwrap_or((1006, String::new()));
    Err(ClientError::Closed { code, reason }.into())
}

/// One line for a live event.
fn describe_event(event: &Event, names: &Names) -> String {
    match event {
        Event::Conversation(ConversationEvent::Message(m)) => format!(
            "[{} #{}] {}: {}",
            m.conversation,
            m.seq,
            names.of(m.sender),
            message_text(m)
        ),
        Event::Conversation(ConversationEvent::Recall(r)) => format!(
            "[{} #{}] {} recalled #{}",
            r.conversation,
            r.seq,
            names.of(r.by),
            r.target_seq
        ),
        Event::Conversation(ConversationEvent::Notice(n)) => format!(
            "[{} #{}] * {}",
            n.conversation,
            n.seq,
            notice_text(&n.notice, names)
        ),
        Event::JoinRequest(r) => format!("* {}", join_request_text(r, names)),
        Event::JoinRequestResolved(r) => format!("* {}", join_request_text(r, names)),
        Event::Presence { user_id, state } => {
            format!("* {} is now {}", names.of(*user_id), presence_name(*state))
        }
        Event::FriendRequest(r) if Some(r.from) == names.me => {
            format!("* friend request #{} sent to {}", r.id, names.of(r.to))
        }
        Event::FriendRequest(r) => {
            format!(
                "* friend request #{} from {}: {:?}",
                r.id, r.from, r.message
            )
        }
        Event::FriendRequestRefused(r) => {
            format!(
                "* friend request #{} to {} was refused",
                r.id,
                names.of(r.to)
            )
        }
        Event::FriendAdded(f) => format!("* {} ({}) is now your friend", f.nickname, f.user_id),
        Event::FriendRemoved { user_id } => {
            format!("* {} is no longer your friend", names.of(*user_id))
        }
        Event::Read {
            conversation,
            read_seq,
        } => {
            format!("* [{conversation}] read up to #{read_seq} on another device")
        }
    }
}

// ---- groups ----

async fn group(conn: &Conn, output: &Output, cmd: GroupCommand) -> Result<()> {
    use GroupCommand as G;
    let session = Session::open(conn)?;
    let client = &session.client;
    let json = output.json;
    match cmd {
        G::Create {
            name,
            intro,
            category,
            tags,
            unlisted,
            join,
        } => {
            let request = CreateGroupRequest {
                name,
                intro,
                category,
                tags,
                listed: !unlisted,
                join_mode: join.unwrap_or(JoinMode::Approval),
            };
            let view = client.create_group(&request).await?;
            show(json, &view, |g| {
                println!(
                    "created group {} (conversation {})",
                    g.group_id, g.conversation
                );
            })
        }
        G::Search {
            number,
            keyword,
            category,
            limit,
        } => {
            let found = client
                .search_groups(
                    number.map(GroupId),
                    keyword.as_deref(),
                    category.as_deref(),
                    limit,
                )
                .await?;
            show(json, &found, |list| print_group_list(list))
        }
        G::List => {
            let mine = client.my_groups().await?;
            show(json, &mine, |list| print_group_list(list))
        }
        G::Info { id } => {
            let view = client.group(GroupId(id)).await?;
            let names = Names::load(&session).await;
            show(json, &view, |g| print_group(g, &names))
        }
        G::Set {
            id,
            name,
            intro,
            avatar,
            category,
            tags,
            no_tags,
            listed,
            join,
            members_may_invite,
            history,
        } => {
            let patch = GroupSettingsPatch {
                name,
                intro,
                avatar,
                category,
                tags: (no_tags || !tags.is_empty()).then_some(tags),
                listed,
                join_mode: join,
                members_may_invite,
                history: history.map(Into::into),
            };
            if patch == GroupSettingsPatch::default() {
                bail!("nothing to change: see `qun group set --help`");
            }
            let view = client.update_group(GroupId(id), &patch).await?;
            let names = Names::load(&session).await;
            show(json, &view, |g| print_group(g, &names))
        }
        G::Dissolve { id } => {
            client.dissolve_group(GroupId(id)).await?;
            done(json, format!("group {id} dissolved"))
        }
        G::Tier { id, tier } => {
            let view = client.set_group_tier(GroupId(id), tier).await?;
            show(json, &view, |g| {
                println!(
                    "group {} is now tier {} ({}), up to {} members",
                    g.group_id, g.tier, g.tier_name, g.max_members
                );
            })
        }
        G::Transfer { id, user } => {
            let view = client.transfer_group(GroupId(id), UserId(user)).await?;
            show(json, &view, |g| {
                println!("group {} now belongs to {}", g.group_id, g.owner);
            })
        }
        G::MuteAll { id, state } => {
            let view = client.mute_all(GroupId(id), state == Switch::On).await?;
            show(json, &view, |g| {
                let state = if g.muted { "muted" } else { "unmuted" };
                println!("group {} is {state} for plain members", g.group_id);
            })
        }
        G::Join {
            id,
            message,
            answer,
        } => {
            let result = client
                .join_group(GroupId(id), &message, answer.as_deref())
                .await?;
            show(json, &result, |r| print_join_result(r, Some(GroupId(id))))
        }
        G::Leave { id } => {
            client.leave_group(GroupId(id)).await?;
            done(json, format!("left group {id}"))
        }
        G::Members { id, after, limit } => {
            members(client, GroupId(id), after.map(UserId), limit, json).await
        }
        G::Changes { id, since } => {
            let delta = client.member_changes(GroupId(id), since).await?;
            show(json, &delta, |d| {
                println!("version {} (since {since})", d.version);
                for m in &d.changed {
                    println!("  changed  {}", member_line(m));
                }
                for user in &d.removed {
                    println!("  removed  {user}");
                }
            })
        }
        G::Me { id } => {
            let me = client.my_membership(GroupId(id)).await?;
            show(json, &me, |m| println!("{}", member_line(m)))
        }
        G::Kick { id, user, ban } => {
            client.kick(GroupId(id), UserId(user), ban).await?;
            let banned = if ban { " and banned" } else { "" };
            done(json, format!("{user} removed from group {id}{banned}"))
        }
        G::Unban { id, user } => {
            client.unban(GroupId(id), UserId(user)).await?;
            done(json, format!("{user} may ask to join group {id} again"))
        }
        G::Mute { id, user, secs } => {
            let member = client.mute_member(GroupId(id), UserId(user), secs).await?;
            show(json, &member, |m| match m.muted_until {
                Some(until) => println!("{} muted until {}", m.user_id, format_time(until)),
                None => println!("{} unmuted", m.user_id),
            })
        }
        G::Admin { id, user, state } => {
            let role = if state == Switch::On {
                Role::Admin
            } else {
                Role::Member
            };
            let member = client.set_role(GroupId(id), UserId(user), role).await?;
            show(json, &member, |m| {
                println!("{} is now {} of group {id}", m.user_id, role_name(m.role));
            })
        }
        G::Title {
            id,
            user,
            title,
            expires_in,
        } => {
            let member = client
                .set_title(GroupId(id), UserId(user), title.as_deref(), expires_in)
                .await?;
            show(json, &member, |m| match (&m.title, m.title_expires_at) {
                (Some(title), Some(until)) => println!(
                    "{} has the title {title:?} until {}",
                    m.user_id,
                    format_time(until)
                ),
                (Some(title), None) => println!("{} has the title {title:?}", m.user_id),
                (None, _) => println!("title of {} cleared", m.user_id),
            })
        }
        G::Card { id, user, card } => {
            let member = client
                .set_card(GroupId(id), UserId(user), card.as_deref())
                .await?;
            show(json, &member, |m| match &m.card {
                Some(card) => println!("{} is shown as {card:?} in group {id}", m.user_id),
                None => println!("card of {} cleared", m.user_id),
            })
        }
        G::Invite { id, user } => {
            let invitation = client.invite(GroupId(id), UserId(user)).await?;
            show(json, &invitation, |r| {
                println!("invitation #{} sent to {}", r.id, r.user_id);
            })
        }
        G::Link {
            id,
            expires_in,
            max_uses,
        } => {
            let link = client
                .create_invite_link(GroupId(id), expires_in, max_uses)
                .await?;
            show(json, &link, |l| {
                let expires = l.expires_at.map_or("never".to_owned(), format_time);
                let uses = l.max_uses.map_or("unlimited".to_owned(), |n| n.to_string());
                println!("invite link for group {}: {}", l.group_id, l.code);
                println!("expires: {expires}; uses: {} of {uses}", l.uses);
                println!("join with: qun group join-link {}", l.code);
            })
        }
        G::JoinLink { code } => {
            let result = client.join_by_link(&code).await?;
            show(json, &result, |r| print_join_result(r, None))
        }
        G::Requests { id } => {
            let list = client.join_requests(GroupId(id)).await?;
            let names = Names::load(&session).await;
            show(json, &list, |list| print_join_requests(list, &names))
        }
        G::MyRequests => {
            let list = client.my_join_requests().await?;
            let names = Names::load(&session).await;
            show(json, &list, |list| print_join_requests(list, &names))
        }
        G::Review {
            request,
            decision,
            reason,
        } => {
            let approve = decision == Review::Approve;
            let reviewed = client
                .review_join_request(JoinRequestId(request), approve, reason.as_deref())
                .await?;
            show(json, &reviewed, |r| {
                println!(
                    "request #{} of {} to group {}: {}",
                    r.id,
                    r.user_id,
                    r.group_id,
                    request_status(r.status)
                );
            })
        }
        G::Answer { request, decision } => {
            let accept = decision == Answer::Accept;
            let result = client
                .answer_invitation(JoinRequestId(request), accept)
                .await?;
            show(json, &result, |r| print_join_result(r, None))
        }
        G::Announce {
            id,
            title,
            body,
            flags,
        } => {
            let draft = flags.draft(title, body);
            let created = client.create_announcement(GroupId(id), &draft).await?;
            show(json, &created, |a| {
                println!("announcement #{} published in group {}", a.id, a.group_id);
            })
        }
        G::AnnouncementEdit {
            id,
            aid,
            title,
            body,
            flags,
        } => {
            let draft = flags.draft(title, body);
            let edited = client
                .edit_announcement(GroupId(id), AnnouncementId(aid), &draft)
                .await?;
            show(json, &edited, |a| println!("announcement #{} edited", a.id))
        }
        G::Announcements { id } => {
            let list = client.announcements(GroupId(id)).await?;
            let names = Names::load(&session).await;
            show(json, &list, |list| print_announcements(list, &names))
        }
        G::AnnouncementDelete { id, aid } => {
            client
                .delete_announcement(GroupId(id), AnnouncementId(aid))
                .await?;
            done(json, format!("announcement #{aid} deleted"))
        }
        G::Confirm { id, aid } => {
            client
                .confirm_announcement(GroupId(id), AnnouncementId(aid))
                .await?;
            done(json, format!("announcement #{aid} confirmed"))
        }
        G::Confirmations { id, aid } => {
            let list = client
                .announcement_confirmations(GroupId(id), AnnouncementId(aid))
                .await?;
            let names = Names::load(&session).await;
            show(json, &list, |list| {
                println!("{} confirmation(s)", list.len());
                for c in list {
                    println!("  {:<10} {}", names.of(c.user_id), format_time(c.at));
                }
            })
        }
        G::Essence {
            id,
            seq: Some(seq),
            unset,
        } => {
            client.set_essence(GroupId(id), Seq(seq), !unset).await?;
            let what = if unset {
                "no longer essence"
            } else {
                "essence"
            };
            done(json, format!("#{seq} is {what}"))
        }
        G::Essence { id, seq: None, .. } => {
            let list = client.essence(GroupId(id)).await?;
            let names = Names::load(&session).await;
            show(json, &list, |list| {
                if list.is_empty() {
                    println!("(no essence messages)");
                }
                for e in list {
                    println!(
                        "#{}  marked by {} at {}",
                        e.seq,
                        names.of(e.by),
                        format_time(e.at)
                    );
                }
            })
        }
        G::Receipts { id, seq } => {
            let receipts = client.receipts(GroupId(id), Seq(seq)).await?;
            let names = Names::load(&session).await;
            show(json, &receipts, |r| {
                println!("#{seq} read by {}", r.count);
                if let Some(readers) = r.readers.as_ref().filter(|r| !r.is_empty()) {
                    let readers: Vec<String> = readers.iter().map(|u| names.of(*u)).collect();
                    println!("  {}", readers.join(", "));
                }
            })
        }
        G::Honours { id } => {
            let list = client.honours(GroupId(id)).await?;
            let names = Names::load(&session).await;
            show(json, &list, |list| {
                if list.is_empty() {
                    println!("(nobody has spoken today)");
                }
                for (rank, h) in list.iter().enumerate() {
                    println!(
                        "{:>3}. {:<10} {} message(s)",
                        rank + 1,
                        names.of(h.user_id),
                        h.messages
                    );
                }
            })
        }
        G::Quota { id } => {
            let quota = client.at_all_quota(GroupId(id)).await?;
            show(json, &quota, |q| {
                println!(
                    "@all left today: {} for you, {} for the group",
                    q.mine_remaining, q.group_remaining
                );
            })
        }
        G::Send {
            id,
            at,
            at_all,
            text,
        } => {
            let conversation = client.group(GroupId(id)).await?.conversation;
            let mentions: Vec<UserId> = at.into_iter().map(UserId).collect();
            let segments = group_segments(at_all, &mentions, &text.join(" "));
            let ack = client
                .send(conversation, &new_client_msg_id(), segments)
                .await?;
            show(json, &ack, |a| println!("sent #{}", a.seq))
        }
        G::History { id, limit, before } => {
            let conversation = client.group(GroupId(id)).await?.conversation;
            let page = client
                .history(conversation, None, before.map(Seq), Some(limit))
                .await?;
            if json {
                return print_json(&page);
            }
            let names = Names::load(&session).await;
            if page.more {
                let oldest = page.events.first().map(|e| e.seq().0).unwrap_or(0);
                println!("(older messages: qun group history {id} --before {oldest})");
            }
            print_events(&page.events, &names);
            Ok(())
        }
        G::Recall { id, seq } => {
            let conversation = client.group(GroupId(id)).await?.conversation;
            let ack = client.recall(conversation, Seq(seq)).await?;
            show(json, &ack, |a| {
                println!("recalled #{seq} (event #{})", a.seq)
            })
        }
        G::Read { id, seq } => {
            let conversation = client.group(GroupId(id)).await?.conversation;
            let state = client.read(conversation, Seq(seq)).await?;
            show(json, &state, |s| {
                println!("read up to #{}; {} unread", s.read_seq, s.unread);
            })
        }
    }
}

impl AnnouncementFlags {
    fn draft(&self, title: String, body: String) -> AnnouncementDraft {
        AnnouncementDraft {
            title,
            body,
            pinned: self.pinned,
            require_confirm: self.confirm,
            entrance: self.entrance,
        }
    }
}

/// Prints `value` as JSON, or for people with `human`.
fn show<T: Serialize>(json: bool, value: &T, human: impl FnOnce(&T)) -> Result<()> {
    if json {
        return print_json(value);
    }
    human(value);
    Ok(())
}

/// Reports an operation the server answers with no content; with `--json`
/// there is nothing to print, and the exit status says it worked.
fn done(json: bool, message: String) -> Result<()> {
    if !json {
        println!("{message}");
    }
    Ok(())
}

/// One page of members when `after` or `limit` is given, else every member,
/// page after page.
async fn members(
    client: &Client,
    id: GroupId,
    after: Option<UserId>,
    limit: Option<u32>,
    json: bool,
) -> Result<()> {
    if after.is_some() || limit.is_some() {
        let page = client.members(id, after, limit).await?;
        return show(json, &page, |p| {
            for m in &p.members {
                println!("{}", member_line(m));
            }
            if let (Some(limit), Some(last)) = (limit, p.members.last()) {
                if p.members.len() >= limit as usize {
                    println!(
                        "(more: qun group members {id} --after {} --limit {limit})",
                        last.user_id
                    );
                }
            }
        });
    }
    let mut all = Vec::new();
    let mut after = None;
    let version = loop {
        let page = client.members(id, after, None).await?;
        let last = page.members.last().map(|m| m.user_id);
        // A page that does not move forward ends the walk even if the server
        // ignored `after`, rather than looping forever.
        let Some(last) = last.filter(|last| after.is_none_or(|after| *last > after)) else {
            break page.version;
        };
        all.extend(page.members);
        after = Some(last);
    };
    let page = qun_wire::MemberPage {
        members: all,
        version,
    };
    show(json, &page, |p| {
        for m in &p.members {
            println!("{}", member_line(m));
        }
        println!(
            "({} member(s), list version {})",
            p.members.len(),
            p.version
        );
    })
}

/// The segments of a group message: mentions first, as people type them.
fn group_segments(at_all: bool, mentions: &[UserId], text: &str) -> Vec<Segment> {
    let mut segments = Vec::new();
    if at_all {
        segments.push(Segment::MentionAll);
    }
    segments.extend(mentions.iter().map(|user| Segment::Mention { user: *user }));
    let text = if segments.is_empty() {
        text.to_owned()
    } else {
        format!(" {text}")
    };
    segments.push(Segment::Text { text });
    segments
}

fn print_group_list(groups: &[GroupView]) {
    if groups.is_empty() {
        println!("(no groups)");
    }
    for g in groups {
        let category = if g.category.is_empty() {
            String::new()
        } else {
            format!("  [{}]", g.category)
        };
        let dissolved = if g.dissolved_at.is_some() {
            "  (dissolved)"
        } else {
            ""
        };
        println!(
            "{:>8}  {}  {}/{} members{category}{dissolved}",
            g.group_id, g.name, g.member_count, g.max_members
        );
    }
}

fn print_group(g: &GroupView, names: &Names) {
    println!(
        "{} (group {}, conversation {})",
        g.name, g.group_id, g.conversation
    );
    if !g.intro.is_empty() {
        println!("intro: {}", g.intro);
    }
    if let Some(avatar) = &g.avatar {
        println!("avatar: {avatar}");
    }
    let listed = if g.listed { "listed" } else { "unlisted" };
    println!(
        "category: {}  tags: {}  ({listed})",
        if g.category.is_empty() {
            "-"
        } else {
            &g.category
        },
        if g.tags.is_empty() {
            "-".to_owned()
        } else {
            g.tags.join(", ")
        }
    );
    println!(
        "members: {}/{} (tier {}, {})",
        g.member_count, g.max_members, g.tier, g.tier_name
    );
    println!("owner: {}", names.of(g.owner));
    println!("join: {}", join_mode_text(&g.join_mode));
    println!(
        "members may invite: {}; newcomers read: {}",
        yes_no(g.members_may_invite),
        history_text(g.history)
    );
    if g.muted {
        println!("muted: everyone but owner and admins");
    }
    println!("created: {}", format_time(g.created_at));
    if let Some(at) = g.dissolved_at {
        println!("dissolved: {} (read-only)", format_time(at));
    }
}

fn join_mode_text(mode: &JoinMode) -> String {
    match mode {
        JoinMode::Open => "open to anyone".to_owned(),
        JoinMode::Approval => "by approval".to_owned(),
        JoinMode::Question { question } => format!("answer {question:?}, then approval"),
        // The answer is blanked for people who may not see it.
        JoinMode::QuestionAuto { question, answer } if answer.is_empty() => {
            format!("at once on answering {question:?} correctly")
        }
        JoinMode::QuestionAuto { question, answer } => {
            format!("at once on answering {question:?} with {answer:?}")
        }
        JoinMode::InviteOnly => "by invitation only".to_owned(),
        JoinMode::Closed => "closed".to_owned(),
    }
}

fn member_line(m: &MemberView) -> String {
    let mut line = format!(
        "{:<10} {:<6} level {:>2}",
        m.user_id,
        role_name(m.role),
        m.level
    );
    if let Some(card) = &m.card {
        line.push_str(&format!("  card {card:?}"));
    }
    if let Some(title) = &m.title {
        line.push_str(&format!("  title {title:?}"));
        if let Some(until) = m.title_expires_at {
            line.push_str(&format!(" until {}", format_time(until)));
        }
    }
    if let Some(until) = m.muted_until {
        line.push_str(&format!("  muted until {}", format_time(until)));
    }
    line.push_str(&format!("  joined {}", format_time(m.joined_at)));
    line
}

/// "joined group 7 as member", or the state of the request that now waits.
fn print_join_result(result: &JoinResult, group: Option<GroupId>) {
    let group = group
        .or(result.request.as_ref().map(|r| r.group_id))
        .map_or("the group".to_owned(), |g| format!("group {g}"));
    match (&result.member, &result.request) {
        (Some(m), _) => println!("joined {group} as {}", role_name(m.role)),
        (None, Some(r)) => {
            let what = match r.kind {
                JoinKind::Application => "request",
                JoinKind::Invitation => "invitation",
            };
            let reason = r
                .reason
                .as_ref()
                .map(|reason| format!(": {reason}"))
                .unwrap_or_default();
            println!(
                "{what} #{} to {group} is {}{reason}",
                r.id,
                request_status(r.status)
            );
        }
        (None, None) if result.joined => println!("joined {group}"),
        (None, None) => println!("not joined"),
    }
}

fn print_join_requests(list: &[JoinRequestView], names: &Names) {
    if list.is_empty() {
        println!("(none)");
    }
    for r in list {
        println!(
            "#{} [{}] {}  {}",
            r.id,
            request_status(r.status),
            join_request_text(r, names),
            format_time(r.created_at)
        );
    }
}

/// A join application or invitation in one line, with what to do about it
/// while it is pending.
fn join_request_text(r: &JoinRequestView, names: &Names) -> String {
    let mut text = match r.kind {
        JoinKind::Application => {
            let mut text = format!("{} asks to join group {}", names.of(r.user_id), r.group_id);
            if !r.message.is_empty() {
                text.push_str(&format!(": {:?}", r.message));
            }
            if let Some(answer) = &r.answer {
                text.push_str(&format!(" (answer {answer:?})"));
            }
            text
        }
        JoinKind::Invitation => {
            let inviter = r.inviter.map_or("someone".to_owned(), |u| names.of(u));
            format!(
                "{inviter} invites {} to group {}",
                names.of(r.user_id),
                r.group_id
            )
        }
    };
    match r.status {
        FriendRequestStatus::Pending => {
            let hint = match r.kind {
                JoinKind::Application => format!("qun group review {} approve|refuse", r.id),
                JoinKind::Invitation => format!("qun group answer {} accept|refuse", r.id),
            };
            text.push_str(&format!(" (request #{}: {hint})", r.id));
        }
        status => {
            text.push_str(&format!(" (request #{}): {}", r.id, request_status(status)));
            if let Some(reviewer) = r.reviewer {
                text.push_str(&format!(" by {}", names.of(reviewer)));
            }
            if let Some(reason) = &r.reason {
                text.push_str(&format!(", {reason:?}"));
            }
        }
    }
    text
}

fn print_announcements(list: &[AnnouncementView], names: &Names) {
    if list.is_empty() {
        println!("(no announcements)");
    }
    for a in list {
        let mut flags = Vec::new();
        if a.pinned {
            flags.push("pinned");
        }
        if a.require_confirm {
            flags.push("confirm");
        }
        if a.entrance {
            flags.push("entrance");
        }
        let flags = if flags.is_empty() {
            String::new()
        } else {
            format!(" [{}]", flags.join(", "))
        };
        let edited = a
            .edited_at
            .map(|at| format!(", edited {}", format_time(at)))
            .unwrap_or_default();
        println!(
            "#{} {}{flags}  by {} at {}{edited}",
            a.id,
            a.title,
            names.of(a.author),
            format_time(a.created_at)
        );
        for line in a.body.lines() {
            println!("    {line}");
        }
    }
}

/// A group notice as a sentence.
fn notice_text(notice: &GroupNotice, names: &Names) -> String {
    let who = |user: &UserId| names.of(*user);
    match notice {
        GroupNotice::Created { owner } => format!("{} created the group", who(owner)),
        GroupNotice::Joined {
            user,
            inviter,
            approver,
        } => {
            let mut text = format!("{} joined", who(user));
            if let Some(inviter) = inviter {
                text.push_str(&format!(", invited by {}", who(inviter)));
            }
            if let Some(approver) = approver {
                text.push_str(&format!(", approved by {}", who(approver)));
            }
            text
        }
        GroupNotice::Left { user } => format!("{} left", who(user)),
        GroupNotice::Kicked { user, by, banned } => {
            let banned = if *banned { " and banned" } else { "" };
            format!("{} removed {}{banned}", who(by), who(user))
        }
        GroupNotice::RoleChanged { user, role, by } => {
            format!("{} made {} {}", who(by), who(user), role_name(*role))
        }
        GroupNotice::OwnerTransferred { from, to } => {
            format!("{} handed the group to {}", who(from), who(to))
        }
        GroupNotice::Muted {
            user,
            until: Some(until),
            by,
        } => format!(
            "{} muted {} until {}",
            who(by),
            who(user),
            format_time(*until)
        ),
        GroupNotice::Muted {
            user,
            until: None,
            by,
        } => format!("{} unmuted {}", who(by), who(user)),
        GroupNotice::GroupMuted { muted: true, by } => format!("{} muted everyone", who(by)),
        GroupNotice::GroupMuted { muted: false, by } => format!("{} unmuted everyone", who(by)),
        GroupNotice::TitleSet {
            user,
            title: Some(title),
            expires_at,
        } => {
            let until = expires_at
                .map(|at| format!(" until {}", format_time(at)))
                .unwrap_or_default();
            format!("{} now has the title {title:?}{until}", who(user))
        }
        GroupNotice::TitleSet {
            user, title: None, ..
        } => format!("{} no longer has a title", who(user)),
        GroupNotice::CardSet { user, card, by } => {
            let whose = if user == by {
                format!("{} set their card", who(by))
            } else {
                format!("{} set the card of {}", who(by), who(user))
            };
            match card {
                Some(card) => format!("{whose} to {card:?}"),
                None => format!("{whose} to none"),
            }
        }
        GroupNotice::SettingsChanged { by, settings } => {
            format!(
                "{} changed the settings: {}",
                who(by),
                settings_text(settings)
            )
        }
        GroupNotice::TierChanged { tier, by } if by.0 == 0 => {
            format!("a server administrator moved the group to tier {tier}")
        }
        GroupNotice::TierChanged { tier, by } => {
            format!("{} moved the group to tier {tier}", who(by))
        }
        GroupNotice::Announcement { id, action, by } => {
            format!("{} {action} announcement #{id}", who(by))
        }
        GroupNotice::Essence { seq, set: true, by } => {
            format!("{} marked #{seq} as essence", who(by))
        }
        GroupNotice::Essence {
            seq,
            set: false,
            by,
        } => format!("{} unmarked #{seq} as essence", who(by)),
        GroupNotice::Dissolved { by } => format!("{} dissolved the group", who(by)),
    }
}

/// What a settings change changed, e.g. `name "Rust", join: closed`.
fn settings_text(patch: &GroupSettingsPatch) -> String {
    let mut parts = Vec::new();
    if let Some(name) = &patch.name {
        parts.push(format!("name {name:?}"));
    }
    if let Some(intro) = &patch.intro {
        parts.push(format!("intro {intro:?}"));
    }
    if let Some(avatar) = &patch.avatar {
        parts.push(if avatar.is_empty() {
            "avatar cleared".to_owned()
        } else {
            "new avatar".to_owned()
        });
    }
    if let Some(category) = &patch.category {
        parts.push(format!("category {category:?}"));
    }
    if let Some(tags) = &patch.tags {
        parts.push(format!("tags [{}]", tags.join(", ")));
    }
    if let Some(listed) = patch.listed {
        parts.push(if listed { "listed" } else { "unlisted" }.to_owned());
    }
    if let Some(mode) = &patch.join_mode {
        parts.push(format!("join: {}", join_mode_text(mode)));
    }
    if let Some(may) = patch.members_may_invite {
        parts.push(format!("members may invite: {}", yes_no(may)));
    }
    if let Some(history) = patch.history {
        parts.push(format!("newcomers read: {}", history_text(history)));
    }
    parts.join(", ")
}

fn history_text(history: HistoryVisibility) -> &'static str {
    match history {
        HistoryVisibility::FromJoin => "from their join",
        HistoryVisibility::Full => "everything",
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Owner => "owner",
        Role::Admin => "admin",
        Role::Member => "member",
    }
}

fn yes_no(value: bool) -> &'static str {
    if value {
        "yes"
    } else {
        "no"
    }
}

// ---- presentation ----

/// How people are shown: "me", a friend's remark or nickname, else the qun number.
struct Names {
    me: Option<UserId>,
    friends: HashMap<UserId, String>,
}

impl Names {
    /// Best effort: without the friend list, numbers are shown instead of names.
    async fn load(session: &Session) -> Names {
        let friends = session.client.friends().await.unwrap_or_default();
        Names {
            me: session.user_id,
            friends: friends
                .into_iter()
                .map(|f| (f.user_id, f.remark.unwrap_or(f.nickname)))
                .collect(),
        }
    }

    fn of(&self, user: UserId) -> String {
        if Some(user) == self.me {
            return "me".to_owned();
        }
        match self.friends.get(&user) {
            Some(name) => name.clone(),
            None => user.to_string(),
        }
    }

    fn learn(&mut self, event: &Event) {
        if let Event::FriendAdded(f) = event {
            let name = f.remark.clone().unwrap_or_else(|| f.nickname.clone());
            self.friends.insert(f.user_id, name);
        }
    }
}

fn message_text(message: &MessageView) -> String {
    if message.recalled {
        "(recalled)".to_owned()
    } else {
        render_segments(&message.segments)
    }
}

fn render_segments(segments: &[Segment]) -> String {
    segments
        .iter()
        .map(|segment| match segment {
            Segment::Text { text } => text.clone(),
            Segment::Face { id } => format!("[face {id}]"),
            Segment::Mention { user } => format!("@{user}"),
            Segment::MentionAll => "@all".to_owned(),
            Segment::Reply { seq } => format!("[reply to #{seq}] "),
            Segment::Image { file } => format!("[image {file}]"),
            Segment::File { name, size, .. } => format!("[file {name}, {size} bytes]"),
        })
        .collect()
}

fn presence_name(state: PresenceState) -> &'static str {
    match state {
        PresenceState::Qme => "Q me",
        PresenceState::Online => "online",
        PresenceState::Away => "away",
        PresenceState::Busy => "busy",
        PresenceState::DoNotDisturb => "do not disturb",
        PresenceState::Invisible => "invisible",
        PresenceState::Offline => "offline",
    }
}

fn device_name(kind: DeviceKind) -> &'static str {
    match kind {
        DeviceKind::Pc => "pc",
        DeviceKind::Mobile => "mobile",
        DeviceKind::Web => "web",
    }
}

fn request_status(status: FriendRequestStatus) -> &'static str {
    match status {
        FriendRequestStatus::Pending => "pending",
        FriendRequestStatus::Accepted => "accepted",
        FriendRequestStatus::Refused => "refused",
    }
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS` in UTC (std has no time zones).
fn format_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, day_secs) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days: days since 1970-01-01 to a Gregorian date.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        day_secs / 3600,
        day_secs % 3600 / 60,
        day_secs % 60
    )
}

fn print_json<T: Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A client message id unique enough for one sender: the clock in nanoseconds
/// and the process id keep two quick `qun send`s apart, and a counter keeps
/// calls within one process apart on clocks coarser than a nanosecond.
fn new_client_msg_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("cli-{nanos:x}-{:x}-{count}", std::process::id())
}

// ---- saved logins ----

/// What `qun login` saves for the other commands.
#[derive(Debug, Serialize, Deserialize)]
struct Credentials {
    server: String,
    user_id: UserId,
    token: String,
    session_id: String,
}

/// An authenticated client for one command.
struct Session {
    client: Client,
    server: String,
    token: String,
    /// Unknown when `QUN_TOKEN` supplies a token other than the saved one.
    user_id: Option<UserId>,
}

impl Session {
    fn open(conn: &Conn) -> Result<Session> {
        let saved = load_credentials(&conn.profile)?;
        let env_token = std::env::var("QUN_TOKEN").ok().filter(|t| !t.is_empty());
        let (token, user_id) = match (env_token, &saved) {
            (Some(token), Some(saved)) if token == saved.token => (token, Some(saved.user_id)),
            (Some(token), _) => (token, None),
            (None, Some(saved)) => (saved.token.clone(), Some(saved.user_id)),
            (None, None) => bail!(
                "not logged in (profile {:?}): run `qun login` or set QUN_TOKEN",
                conn.profile
            ),
        };
        let server = pick_server(conn, saved.as_ref());
        Ok(Session {
            client: Client::new(&server).with_token(token.clone()),
            server,
            token,
            user_id,
        })
    }
}

/// `--server`/`QUN_SERVER`, else the saved login's server, else the default.
fn pick_server(conn: &Conn, saved: Option<&Credentials>) -> String {
    conn.server
        .clone()
        .or_else(|| saved.map(|s| s.server.clone()))
        .unwrap_or_else(|| DEFAULT_SERVER.to_owned())
}

/// The server for commands that need no login.
fn server_for(conn: &Conn) -> Result<String> {
    Ok(pick_server(conn, load_credentials(&conn.profile)?.as_ref()))
}

fn qun_home() -> Result<PathBuf> {
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(home) = non_empty("QUN_HOME") {
        return Ok(PathBuf::from(home));
    }
    match non_empty("HOME").or_else(|| non_empty("USERPROFILE")) {
        Some(home) => Ok(PathBuf::from(home).join(".qun")),
        None => bail!("cannot find a home directory: set QUN_HOME"),
    }
}

fn credentials_path(profile: &str) -> Result<PathBuf> {
    // The profile becomes part of a file name: keep it from naming other files.
    let valid = !profile.is_empty()
        && profile
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        bail!("invalid profile name {profile:?}: use letters, digits, '-' and '_'");
    }
    Ok(qun_home()?.join(format!("credentials-{profile}.json")))
}

fn load_credentials(profile: &str) -> Result<Option<Credentials>> {
    let path = credentials_path(profile)?;
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let credentials = serde_json::from_str(&text)
        .with_context(|| format!("{} is damaged; run `qun login` again", path.display()))?;
    Ok(Some(credentials))
}

/// Writes the credentials readable by the owner only, replacing any earlier file
/// in one rename so a crash never leaves half a token behind.
fn save_credentials(profile: &str, credentials: &Credentials) -> Result<PathBuf> {
    use std::io::Write;

    let path = credentials_path(profile)?;
    let dir = qun_home()?;
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;

    let temp = dir.join(format!(".credentials-{profile}.json.tmp"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let write = || -> std::io::Result<()> {
        let mut file = options.open(&temp)?;
        // The mode above applies only to new files; a leftover temp file keeps its own.
        #[cfg(unix)]
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        file.write_all(serde_json::to_string_pretty(credentials)?.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temp, &path)
    };
    write().with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn remove_credentials(profile: &str) -> Result<()> {
    let path = credentials_path(profile)?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct TestCli {
        #[command(subcommand)]
        command: ClientCommand,
    }

    fn parse(args: &[&str]) -> ClientCommand {
        TestCli::try_parse_from(std::iter::once("qun").chain(args.iter().copied()))
            .unwrap()
            .command
    }

    #[test]
    fn command_definitions_are_consistent() {
        TestCli::command().debug_assert();
    }

    #[test]
    fn send_joins_every_remaining_word_even_dashed_ones() {
        match parse(&["send", "10002", "hello", "-", "world"]) {
            ClientCommand::Send { user, text, .. } => {
                assert_eq!(user, 10002);
                assert_eq!(text.join(" "), "hello - world");
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn commands_are_kebab_case() {
        assert!(matches!(
            parse(&["profile-set", "--nickname", "x"]),
            ClientCommand::ProfileSet { .. }
        ));
        assert!(matches!(
            parse(&["category-add", "Work"]),
            ClientCommand::CategoryAdd { .. }
        ));
        assert!(matches!(
            parse(&[
                "login",
                "--user",
                "10001",
                "--password",
                "p",
                "--device-kind",
                "mobile"
            ]),
            ClientCommand::Login {
                device_kind: DeviceArg::Mobile,
                ..
            }
        ));
    }

    #[test]
    fn times_are_shown_as_utc_dates() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00");
        assert_eq!(format_time(1_700_000_000_123), "2023-11-14 22:13:20");
        assert_eq!(format_time(951_825_600_000), "2000-02-29 12:00:00");
        assert_eq!(format_time(-1_000), "1969-12-31 23:59:59");
    }

    #[test]
    fn segments_render_as_one_line() {
        let segments = vec![
            Segment::Reply { seq: Seq(3) },
            Segment::Mention {
                user: UserId(10002),
            },
            Segment::Text {
                text: " hi ".into(),
            },
            Segment::Face { id: 14 },
            Segment::MentionAll,
        ];
        assert_eq!(
            render_segments(&segments),
            "[reply to #3] @10002 hi [face 14]@all"
        );
    }

    fn parse_group(args: &[&str]) -> (GroupCommand, Output, Conn) {
        let args: Vec<&str> = std::iter::once("group")
            .chain(args.iter().copied())
            .collect();
        match parse(&args) {
            ClientCommand::Group {
                command,
                output,
                conn,
            } => (command, output, conn),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn connection_options_may_follow_the_group_subcommand() {
        let (command, output, conn) =
            parse_group(&["info", "100001", "--json", "--server", "http://h:1"]);
        assert!(matches!(command, GroupCommand::Info { id: 100001 }));
        assert!(output.json);
        assert_eq!(conn.server.as_deref(), Some("http://h:1"));
        let (_, output, conn) = parse_group(&["--profile", "bob", "list"]);
        assert!(!output.json);
        assert_eq!(conn.profile, "bob");
    }

    #[test]
    fn group_send_takes_mentions_before_the_text() {
        let (command, ..) = parse_group(&[
            "send", "7", "--at", "10002", "--at", "10003", "--at-all", "hi", "--at", "-1",
        ]);
        match command {
            GroupCommand::Send {
                id,
                at,
                at_all,
                text,
            } => {
                assert_eq!((id, at, at_all), (7, vec![10002, 10003], true));
                assert_eq!(text.join(" "), "hi --at -1");
            }
            other => panic!("parsed as {other:?}"),
        }
        assert_eq!(
            group_segments(true, &[UserId(10002)], "hi"),
            vec![
                Segment::MentionAll,
                Segment::Mention {
                    user: UserId(10002)
                },
                Segment::Text { text: " hi".into() },
            ]
        );
        assert_eq!(
            group_segments(false, &[], "hi"),
            vec![Segment::Text { text: "hi".into() }]
        );
    }

    #[test]
    fn group_settings_parse_into_a_patch() {
        let (command, ..) = parse_group(&[
            "set",
            "7",
            "--listed",
            "false",
            "--members-may-invite",
            "true",
            "--history",
            "from_join",
            "--join",
            "auto:1+1=?=2",
        ]);
        match command {
            GroupCommand::Set {
                listed,
                members_may_invite,
                history,
                join,
                tags,
                no_tags,
                ..
            } => {
                assert_eq!(listed, Some(false));
                assert_eq!(members_may_invite, Some(true));
                assert_eq!(history, Some(HistoryArg::FromJoin));
                assert_eq!(
                    join,
                    Some(JoinMode::QuestionAuto {
                        question: "1+1=?".into(),
                        answer: "2".into()
                    })
                );
                assert!(tags.is_empty() && !no_tags);
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn join_modes_parse_from_their_short_names() {
        let check = |text: &str, expected: JoinMode| {
            assert_eq!(parse_join_mode(text), Ok(expected), "{text}");
        };
        check("open", JoinMode::Open);
        check("approval", JoinMode::Approval);
        check("invite", JoinMode::InviteOnly);
        check("closed", JoinMode::Closed);
        check(
            "question:Favourite crate?",
            JoinMode::Question {
                question: "Favourite crate?".into(),
            },
        );
        assert!(parse_join_mode("question:").is_err());
        assert!(parse_join_mode("auto:no answer").is_err());
        assert!(parse_join_mode("auto:q=").is_err());
        assert!(parse_join_mode("everyone").is_err());
    }

    #[test]
    fn essence_lists_without_a_seq_and_unset_needs_one() {
        let (command, ..) = parse_group(&["essence", "7"]);
        assert!(matches!(
            command,
            GroupCommand::Essence {
                seq: None,
                unset: false,
                ..
            }
        ));
        let (command, ..) = parse_group(&["essence", "7", "42", "--unset"]);
        assert!(matches!(
            command,
            GroupCommand::Essence {
                seq: Some(42),
                unset: true,
                ..
            }
        ));
        let bad = ["qun", "group", "essence", "7", "--unset"];
        assert!(TestCli::try_parse_from(bad).is_err());
    }

    #[test]
    fn switches_and_decisions_are_words() {
        let (command, ..) = parse_group(&["admin", "7", "10002", "on"]);
        assert!(matches!(
            command,
            GroupCommand::Admin {
                state: Switch::On,
                ..
            }
        ));
        let (command, ..) = parse_group(&["review", "3", "refuse", "--reason", "spam"]);
        assert!(matches!(
            command,
            GroupCommand::Review {
                decision: Review::Refuse,
                ..
            }
        ));
        let (command, ..) = parse_group(&["answer", "3", "accept"]);
        assert!(matches!(
            command,
            GroupCommand::Answer {
                decision: Answer::Accept,
                ..
            }
        ));
        let (command, ..) = parse_group(&["title", "7", "10002", "--expires-in", "60"]);
        assert!(matches!(
            command,
            GroupCommand::Title {
                title: None,
                expires_in: Some(60),
                ..
            }
        ));
    }

    fn names() -> Names {
        Names {
            me: Some(UserId(10001)),
            friends: HashMap::from([(UserId(10002), "bob".to_owned())]),
        }
    }

    #[test]
    fn notices_read_as_sentences() {
        let names = names();
        let check = |notice: GroupNotice, expected: &str| {
            assert_eq!(notice_text(&notice, &names), expected);
        };
        check(
            GroupNotice::Joined {
                user: UserId(10003),
                inviter: Some(UserId(10002)),
                approver: None,
            },
            "10003 joined, invited by bob",
        );
        check(
            GroupNotice::Kicked {
                user: UserId(10002),
                by: UserId(10001),
                banned: true,
            },
            "me removed bob and banned",
        );
        check(
            GroupNotice::Muted {
                user: UserId(10002),
                until: Some(0),
                by: UserId(10001),
            },
            "me muted bob until 1970-01-01 00:00:00",
        );
        check(
            GroupNotice::CardSet {
                user: UserId(10002),
                card: Some("B".into()),
                by: UserId(10002),
            },
            "bob set their card to \"B\"",
        );
        check(
            GroupNotice::TierChanged {
                tier: 2,
                by: UserId(0),
            },
            "a server administrator moved the group to tier 2",
        );
        check(
            GroupNotice::SettingsChanged {
                by: UserId(10002),
                settings: GroupSettingsPatch {
                    name: Some("Rust".into()),
                    join_mode: Some(JoinMode::Closed),
                    ..GroupSettingsPatch::default()
                },
            },
            "bob changed the settings: name \"Rust\", join: closed",
        );
    }

    #[test]
    fn pending_join_requests_say_what_to_do() {
        let request = JoinRequestView {
            id: JoinRequestId(5),
            group_id: GroupId(100001),
            user_id: UserId(10002),
            kind: JoinKind::Application,
            message: "hello".into(),
            answer: Some("2".into()),
            inviter: None,
            status: FriendRequestStatus::Pending,
            reviewer: None,
            reason: None,
            created_at: 0,
        };
        assert_eq!(
            join_request_text(&request, &names()),
            "bob asks to join group 100001: \"hello\" (answer \"2\") \
             (request #5: qun group review 5 approve|refuse)"
        );
        let invitation = JoinRequestView {
            kind: JoinKind::Invitation,
            user_id: UserId(10001),
            inviter: Some(UserId(10002)),
            status: FriendRequestStatus::Refused,
            ..request
        };
        assert_eq!(
            join_request_text(&invitation, &names()),
            "bob invites me to group 100001 (request #5): refused"
        );
    }

    #[test]
    fn profile_names_cannot_escape_the_qun_home() {
        assert!(credentials_path("../etc").is_err());
        assert!(credentials_path("").is_err());
        assert!(credentials_path("a/b").is_err());
    }

    #[test]
    fn client_msg_ids_differ_between_calls() {
        assert_ne!(new_client_msg_id(), new_client_msg_id());
    }
}
