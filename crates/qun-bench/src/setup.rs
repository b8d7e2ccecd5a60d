//! Creating the population of a run over REST: users (registered and logged
//! in), an open group they all join, pairs of friends. Nothing is cached
//! between runs; each run starts from accounts it registers itself.

use std::future::Future;

use anyhow::Context;
use futures_util::StreamExt;
use qun_client::qun_wire::{
    AcceptFriendRequest, ConversationId, CreateGroupRequest, DeviceKind, GroupId, JoinMode, UserId,
};
use qun_client::{Client, Connection};

use crate::report::bar;

/// Every bench user's password.
const PASSWORD: &str = "qun-bench password";

/// A registered, logged-in user.
#[derive(Clone)]
pub struct User {
    /// qun number.
    pub id: UserId,
    /// Session token (for REST and the socket's `auth` frame).
    pub token: String,
    /// REST client with that token.
    pub client: Client,
}

/// Runs `f(i)` for every `i < n` with at most `concurrency` at once, in order
/// of completion, and returns the results in index order.
pub async fn bounded<T, F, Fut>(
    n: usize,
    concurrency: usize,
    label: &str,
    f: F,
) -> anyhow::Result<Vec<T>>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let progress = bar(n as u64, label);
    let mut results: Vec<Option<T>> = (0..n).map(|_| None).collect();
    let mut stream = futures_util::stream::iter(0..n)
        .map(|i| {
            let fut = f(i);
            async move { (i, fut.await) }
        })
        .buffer_unordered(concurrency.max(1));
    while let Some((i, result)) = stream.next().await {
        results[i] = Some(result.with_context(|| format!("{label} #{i}"))?);
        progress.inc(1);
    }
    progress.finish_and_clear();
    Ok(results.into_iter().flatten().collect())
}

/// Registers and logs in `n` users.
pub async fn users(
    base: &Client,
    n: usize,
    concurrency: usize,
    tag: &str,
) -> anyhow::Result<Vec<User>> {
    bounded(n, concurrency, "registering users", |i| {
        let base = base.clone();
        let nickname = format!("{tag}{i}");
        async move {
            let id = base.register(&nickname, PASSWORD).await?.user_id;
            let login = base.login(id, PASSWORD, DeviceKind::Pc, "bench").await?;
            Ok(User {
                id,
                client: base.clone().with_token(login.token.clone()),
                token: login.token,
            })
        }
    })
    .await
}

/// An open group owned by `users[0]` that every other user joins; returns
/// its number and conversation.
pub async fn group(
    users: &[User],
    concurrency: usize,
) -> anyhow::Result<(GroupId, ConversationId)> {
    let owner = users.first().context("a group needs at least one user")?;
    let view = owner
        .client
        .create_group(&CreateGroupRequest {
            name: "bench".into(),
            intro: String::new(),
            category: String::new(),
            tags: Vec::new(),
            listed: false,
            join_mode: JoinMode::Open,
        })
        .await
        .context("creating the group")?;
    let id = view.group_id;
    let members = &users[1..];
    bounded(members.len(), concurrency, "joining the group", |i| {
        let client = members[i].client.clone();
        async move {
            client.join_group(id, "", None).await?;
            Ok(())
        }
    })
    .await?;
    Ok((id, view.conversation))
}

/// Makes `users[2k]` and `users[2k+1]` friends; returns each pair's conversation.
pub async fn pairs(users: &[User], concurrency: usize) -> anyhow::Result<Vec<ConversationId>> {
    bounded(users.len() / 2, concurrency, "befriending pairs", |k| {
        let (a, b) = (users[2 * k].clone(), users[2 * k + 1].clone());
        async move {
            let request = a.client.send_friend_request(b.id, "bench").await?;
            let friend = b
                .client
                .accept_friend_request(request.id, &AcceptFriendRequest::default())
                .await?;
            Ok(friend.conversation)
        }
    })
    .await
}

/// Opens one `qun-client` connection per token.
pub async fn connect_all(
    base_url: &str,
    tokens: &[String],
    concurrency: usize,
) -> anyhow::Result<Vec<Connection>> {
    bounded(tokens.len(), concurrency, "connecting", |i| {
        let token = tokens[i].clone();
        async move {
            let (conn, _hello) = Connection::connect(base_url, &token).await?;
            Ok(conn)
        }
    })
    .await
}
