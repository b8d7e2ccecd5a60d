//! `qun admin`: account administration straight on the data folder. It works
//! while the server runs (SQLite allows it); open sockets of a disabled account
//! are closed by the server's periodic session check.

use std::sync::Arc;

use clap::Subcommand;
use qun_domain::bus::{Notification, NotificationSink};
use qun_domain::{LocalBus, Qun, SystemClock, UserId};

use crate::config::Config;

/// Administration commands.
#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Create an account, optionally with a chosen ("pretty") number.
    CreateUser {
        /// Nickname.
        #[arg(long)]
        nickname: String,
        /// Password.
        #[arg(long)]
        password: String,
        /// A chosen qun number.
        #[arg(long)]
        number: Option<u64>,
    },
    /// Disable an account: no more logins, every session revoked.
    Disable {
        /// qun number.
        user: u64,
    },
    /// Enable a disabled account.
    Enable {
        /// qun number.
        user: u64,
    },
    /// Show an account, its sessions and friends.
    Inspect {
        /// qun number.
        user: u64,
    },
    /// Move a group to a tier without charging (administrator override).
    GroupTier {
        /// Group number.
        group: u64,
        /// Tier index in the configured ladder.
        tier: u32,
    },
    /// List accounts.
    Users {
        /// Start after this number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

/// Notifications have no sockets to reach from here.
struct NoSockets;

impl NotificationSink for NoSockets {
    fn deliver(&self, _: &Notification) {}
}

/// Runs one administration command.
pub async fn run(config: Config, command: AdminCommand) -> anyhow::Result<()> {
    let backend = crate::backend::Backend::open(&config).await?;
    let store = backend.store();
    let bus = Arc::new(LocalBus::new(Arc::new(NoSockets)));
    let qun = Qun::new(
        store.clone(),
        bus,
        config.limits.clone(),
        Arc::new(SystemClock),
    );
    let result = execute(&qun, command).await;
    drop(qun);
    backend.close(std::time::Duration::from_secs(10)).await;
    result
}

async fn execute(qun: &Qun, command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::CreateUser {
            nickname,
            password,
            number,
        } => {
            let id = qun
                .create_user(&nickname, &password, number.map(UserId))
                .await?;
            println!("{id}");
        }
        AdminCommand::Disable { user } => {
            qun.set_disabled(UserId(user), true).await?;
            println!("{user} disabled; its sessions are revoked");
        }
        AdminCommand::Enable { user } => {
            qun.set_disabled(UserId(user), false).await?;
            println!("{user} enabled");
        }
        AdminCommand::Inspect { user } => {
            let u = qun.profile(UserId(user)).await?;
            let store = qun.store();
            let sessions = store.sessions(u.id).await?;
            let friends = store.friends(u.id).await?;
            println!("number:     {}", u.id);
            println!("nickname:   {}", u.nickname);
            println!("signature:  {}", u.signature);
            println!("disabled:   {}", u.disabled);
            println!("created_at: {}", u.created_at);
            println!("likes:      {}", u.likes);
            println!("friends:    {}", friends.len());
            println!("sessions:   {}", sessions.len());
            for s in sessions {
                println!(
                    "  {} {} {:?} expires {}",
                    s.id,
                    s.device_kind.as_str(),
                    s.device_name,
                    s.expires_at
                );
            }
        }
        AdminCommand::GroupTier { group, tier } => {
            let g = qun.admin_set_tier(qun_domain::GroupId(group), tier).await?;
            println!("group {} is now on tier {}", g.id, g.tier);
        }
        AdminCommand::Users { after, limit } => {
            for u in qun.store().users(UserId(after), limit).await? {
                let flag = if u.disabled { " (disabled)" } else { "" };
                println!("{}\t{}{}", u.id, u.nickname, flag);
            }
        }
    }
    Ok(())
}
