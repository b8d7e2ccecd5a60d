//! Accounts and sessions: registration, login per device, tokens, password
//! changes, profiles and administration.

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::bus::{Notification, RevokeReason};
use crate::model::{NewUser, ProfileUpdate, Session, User};
use crate::service::check;
use crate::{AuthError, Caller, Error, LoginInput, NewSession, Qun, Result, SessionId, UserId};

/// A valid hash of a random password, verified against when the account does
/// not exist so that timing does not reveal which numbers are taken.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$7CTeBwbxhJWHbuXEFsZOs4pZDfjMyIuUkTKo5XlWbVU";

impl Qun {
    /// Registers an account with the next free qun number.
    pub async fn register(&self, nickname: &str, password: &str) -> Result<UserId> {
        self.create_user(nickname, password, None).await
    }

    /// Creates an account, optionally with a chosen ("pretty") number; for
    /// administrators.
    pub async fn create_user(
        &self,
        nickname: &str,
        password: &str,
        number: Option<UserId>,
    ) -> Result<UserId> {
        let c = &self.config;
        check::text(
            "nickname",
            nickname,
            c.max_nickname_chars,
            "max_nickname_chars",
            true,
        )?;
        self.check_password("password", password)?;
        if let Some(n) = number {
            if n.0 == 0 || n.0 > i64::MAX as u64 {
                return Err(Error::invalid("number", "must be between 1 and 2^63-1"));
            }
        }
        let password_hash = self.hash_password(password).await?;
        self.store
            .create_user(NewUser {
                number,
                nickname: nickname.trim().to_string(),
                password_hash,
                created_at: self.clock.now_ms(),
                first_number: UserId(c.first_user_number),
            })
            .await
    }

    /// Logs one device in and returns its new token.
    pub async fn login(&self, input: LoginInput) -> Result<NewSession> {
        check::text(
            "device_name",
            &input.device_name,
            64,
            "max_device_name_chars",
            false,
        )?;
        if input.password.chars().count() > self.config.max_password_chars {
            return Err(Error::Auth(AuthError::BadCredentials));
        }
        self.login_limits.check(input.user, input.addr)?;
        // A number the store cannot hold names nobody: same answer as any unknown number.
        let user = match self.store.user(input.user).await {
            Err(Error::NotFound(_)) => None,
            other => other?,
        };
        let hash = user
            .as_ref()
            .map_or(DUMMY_HASH, |u| u.password_hash.as_str());
        let ok = self.verify_password(&input.password, hash).await?;
        let user = match user {
            Some(u) if ok => u,
            _ => return Err(Error::Auth(AuthError::BadCredentials)),
        };
        if user.disabled {
            return Err(Error::Auth(AuthError::Disabled));
        }
        let token = random_token(32);
        let now = self.clock.now_ms();
        let session = Session {
            id: SessionId(hex(&random_bytes(12))),
            user: user.id,
            token_hash: token_hash(&token),
            device_kind: input.device_kind,
            device_name: input.device_name,
            created_at: now,
            expires_at: now + (self.config.session_ttl_secs as i64) * 1000,
            revoked_at: None,
        };
        self.store.create_session(session.clone()).await?;
        Ok(NewSession { token, session })
    }

    /// Resolves a bearer token to its caller, or says why it cannot.
    pub async fn authenticate(&self, token: &str) -> Result<Caller> {
        if token.is_empty() || token.len() > 256 {
            return Err(Error::Auth(AuthError::InvalidToken));
        }
        let session = self
            .store
            .session_by_token(&token_hash(token))
            .await?
            .ok_or(Error::Auth(AuthError::InvalidToken))?;
        self.check_session(&session).await?;
        Ok(Caller {
            user: session.user,
            session: session.id,
        })
    }

    /// Whether a caller's session is still valid (for long-lived sockets).
    pub async fn revalidate(&self, caller: &Caller) -> Result<()> {
        let session = self
            .store
            .session(&caller.session)
            .await?
            .ok_or(Error::Auth(AuthError::InvalidToken))?;
        self.check_session(&session).await
    }

    /// The most fundamental cause wins: a disabled account, then revocation
    /// (disabling also revokes), then expiry.
    async fn check_session(&self, session: &Session) -> Result<()> {
        match self.store.user(session.user).await? {
            Some(u) if u.disabled => return Err(Error::Auth(AuthError::Disabled)),
            Some(_) => {}
            None => return Err(Error::Auth(AuthError::InvalidToken)),
        }
        if session.revoked_at.is_some() {
            return Err(Error::Auth(AuthError::Revoked));
        }
        if session.expires_at <= self.clock.now_ms() {
            return Err(Error::Auth(AuthError::Expired));
        }
        Ok(())
    }

    /// The caller's sessions that are not revoked.
    pub async fn sessions(&self, caller: &Caller) -> Result<Vec<Session>> {
        let now = self.clock.now_ms();
        let mut sessions = self.store.sessions(caller.user).await?;
        sessions.retain(|s| s.expires_at > now);
        Ok(sessions)
    }

    /// Logs the calling device out.
    pub async fn logout(&self, caller: &Caller) -> Result<()> {
        self.revoke(
            caller.user,
            Some(&caller.session),
            None,
            RevokeReason::Revoked,
        )
        .await?;
        Ok(())
    }

    /// Revokes one of the caller's sessions (their own devices only).
    pub async fn revoke_session(&self, caller: &Caller, id: &SessionId) -> Result<()> {
        match self.store.session(id).await? {
            Some(s) if s.user == caller.user => {}
            _ => return Err(Error::NotFound("session")),
        }
        self.revoke(caller.user, Some(id), None, RevokeReason::Revoked)
            .await?;
        Ok(())
    }

    /// Changes the password and revokes every other session of the account.
    pub async fn change_password(&self, caller: &Caller, old: &str, new: &str) -> Result<u64> {
        let user = self
            .store
            .user(caller.user)
            .await?
            .ok_or(Error::NotFound("user"))?;
        if old.chars().count() > self.config.max_password_chars
            || !self.verify_password(old, &user.password_hash).await?
        {
            return Err(Error::Auth(AuthError::BadCredentials));
        }
        self.check_password("new_password", new)?;
        let hash = self.hash_password(new).await?;
        self.store.set_password_hash(caller.user, &hash).await?;
        let revoked = self
            .revoke(
                caller.user,
                None,
                Some(&caller.session),
                RevokeReason::PasswordChanged,
            )
            .await?;
        Ok(revoked)
    }

    /// A user's profile.
    pub async fn profile(&self, user: UserId) -> Result<User> {
        self.store.user(user).await?.ok_or(Error::NotFound("user"))
    }

    /// Changes the caller's profile and returns it.
    pub async fn update_profile(&self, caller: &Caller, update: ProfileUpdate) -> Result<User> {
        let c = &self.config;
        if let Some(n) = &update.nickname {
            check::text(
                "nickname",
                n,
                c.max_nickname_chars,
                "max_nickname_chars",
                true,
            )?;
        }
        if let Some(s) = &update.signature {
            check::text(
                "signature",
                s,
                c.max_signature_chars,
                "max_signature_chars",
                false,
            )?;
        }
        if let Some(Some(a)) = &update.avatar {
            if a.len() > c.max_avatar_bytes {
                return Err(Error::TooLarge {
                    limit: "max_avatar_bytes",
                    max: c.max_avatar_bytes as u64,
                });
            }
            check::text("avatar", a, usize::MAX, "max_avatar_bytes", false)?;
        }
        let update = ProfileUpdate {
            nickname: update.nickname.map(|n| n.trim().to_string()),
            ..update
        };
        self.store.update_profile(caller.user, update).await?;
        self.profile(caller.user).await
    }

    /// Disables (closing every open socket at once) or re-enables an account.
    pub async fn set_disabled(&self, user: UserId, disabled: bool) -> Result<()> {
        self.store.set_disabled(user, disabled).await?;
        if disabled {
            self.revoke(user, None, None, RevokeReason::Disabled)
                .await?;
        }
        Ok(())
    }

    async fn revoke(
        &self,
        user: UserId,
        only: Option<&SessionId>,
        keep: Option<&SessionId>,
        reason: RevokeReason,
    ) -> Result<u64> {
        let sessions = self
            .store
            .revoke_sessions(user, only, keep, self.clock.now_ms())
            .await?;
        let count = sessions.len() as u64;
        // Disabling closes every socket of the user, even of sessions revoked earlier.
        if !sessions.is_empty() || reason == RevokeReason::Disabled {
            let sessions = if reason == RevokeReason::Disabled {
                Vec::new()
            } else {
                sessions
            };
            self.bus
                .publish(Notification::Revoke {
                    user,
                    sessions,
                    reason,
                })
                .await;
        }
        Ok(count)
    }

    fn check_password(&self, field: &'static str, password: &str) -> Result<()> {
        let n = password.chars().count();
        if n < self.config.min_password_chars {
            return Err(Error::invalid(
                field,
                format!(
                    "must have at least {} characters",
                    self.config.min_password_chars
                ),
            ));
        }
        if n > self.config.max_password_chars {
            return Err(Error::TooLarge {
                limit: "max_password_chars",
                max: self.config.max_password_chars as u64,
            });
        }
        Ok(())
    }

    fn argon2(&self) -> Result<Argon2<'static>> {
        let params = Params::new(
            self.config.argon2_memory_kib,
            self.config.argon2_iterations,
            1,
            None,
        )
        .map_err(|e| Error::Internal(format!("argon2 parameters: {e}")))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }

    /// Hashes on the blocking pool, at most `max_concurrent_password_hashes` at once.
    async fn hash_password(&self, password: &str) -> Result<String> {
        let argon = self.argon2()?;
        let password = password.to_owned();
        let _permit = self
            .hash_permits
            .acquire()
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            argon
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| Error::Internal(format!("hashing: {e}")))
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
    }

    async fn verify_password(&self, password: &str, hash: &str) -> Result<bool> {
        let password = password.to_owned();
        let hash = hash.to_owned();
        let _permit = self
            .hash_permits
            .acquire()
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&hash)
                .map_err(|e| Error::Internal(format!("stored hash: {e}")))?;
            Ok(Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok())
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
    }
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    OsRng.fill_bytes(&mut bytes);
    bytes
}

/// A URL-safe random token of `n` bytes of entropy.
pub(crate) fn random_token(n: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes(n))
}

/// What the store keeps instead of a token.
fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_only_their_hash_is_kept() {
        let a = random_token(32);
        let b = random_token(32);
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), token_hash(&b));
    }

    #[test]
    fn dummy_hash_parses() {
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
    }
}
