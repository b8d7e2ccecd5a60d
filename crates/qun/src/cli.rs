//! The command-line client: `qun register`, `qun login`, `qun send`, `qun follow`...
//!
//! Each command is one small function over [`qun_client`]. `qun login` saves
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
    AcceptFriendRequest, CategoryId, ConversationEvent, ConversationId, DeviceKind, Event,
    FriendPatch, FriendRequestId, FriendRequestStatus, FriendRequestView, MessageView,
    PresenceState, ProfilePatch, Segment, Seq, UserId,
};
use serde::{Deserialize, Serialize};

/// Where the client connects when neither `--server` nor a saved login says otherwise.
const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// Which server and which saved login a command uses.
#[derive(Args, Debug, Clone)]
pub struct Conn {
    /// Server base URL [default: the saved login's server, else http://127.0.0.1:8080]
    #[arg(long, env = "QUN_SERVER")]
    server: Option<String>,
    /// Name of the saved login to use (several accounts can be logged in at once)
    #[arg(long, env = "QUN_PROFILE", default_value = "default")]
    profile: String,
}

/// Print machine-readable JSON instead of text.
#[derive(Args, Debug, Clone)]
pub struct Output {
    /// Print the server's answer as JSON
    #[arg(long)]
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
    /// Send a text message to a friend
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
    /// Print live events (messages, presence, friend requests) until Ctrl-C
    Follow {
        #[command(flatten)]
        conn: Conn,
    },
}

/// Runs one client command. Failures are printed as `error: <code>: <message>`
/// and end the process with status 1.
pub async fn run(cmd: ClientCommand) -> Result<()> {
    if let Err(e) = execute(cmd).await {
        eprintln!("error: {e:#}");
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
            conn,
        } => {
            profile_set(
                &conn,
                ProfilePatch {
                    nickname,
                    signature,
                    avatar,
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
        C::Follow { conn } => follow(&conn).await,
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
    if patch.nickname.is_none() && patch.signature.is_none() && patch.avatar.is_none() {
        bail!("nothing to change: give --nickname, --signature or --avatar");
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
        let with = c
            .peer
            .map(|p| names.of(p))
            .unwrap_or_else(|| "?".to_owned());
        println!(
            "{:>6}  with {with}  last #{}  read #{}  unread {}",
            c.conversation, c.last_seq, c.read_seq, c.unread
        );
    }
    Ok(())
}

/// The 1:1 conversation with `user`.
async fn direct(client: &Client, user: UserId) -> Result<ConversationId> {
    Ok(client.direct_conversation(user).await?.conversation)
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
    for event in &page.events {
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
        }
    }
    Ok(())
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
        ];
        assert_eq!(
            render_segments(&segments),
            "[reply to #3] @10002 hi [face 14]"
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
