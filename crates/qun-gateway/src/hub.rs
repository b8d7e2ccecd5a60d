//! The connection hub of one node: which sockets belong to which user, and the
//! fan-out of notifications to them. An event is serialised once and the same
//! bytes are queued on every recipient socket; a socket whose bounded queue is
//! full is cut off as a slow consumer instead of growing memory.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::ws::Utf8Bytes;
use qun_domain::bus::{Notification, NotificationSink, RevokeReason};
use qun_domain::{SessionId, UserId};
use qun_wire::{codes::close, ServerFrame, PROTOCOL_VERSION};
use tokio::sync::{mpsc, watch};

use crate::convert;

/// Why the server closes a socket: a close code and a snake_case reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseReason {
    /// WebSocket close code.
    pub code: u16,
    /// Stable reason text.
    pub reason: &'static str,
}

impl CloseReason {
    /// The socket's outbound queue overflowed.
    pub const SLOW_CONSUMER: CloseReason = CloseReason {
        code: close::SLOW_CONSUMER,
        reason: "slow_consumer",
    };
    /// The server is shutting down.
    pub const SHUTDOWN: CloseReason = CloseReason {
        code: close::SERVER_SHUTDOWN,
        reason: "server_shutdown",
    };
    /// Nothing arrived within the heartbeat timeout.
    pub const HEARTBEAT_TIMEOUT: CloseReason = CloseReason {
        code: close::HEARTBEAT_TIMEOUT,
        reason: "heartbeat_timeout",
    };
    /// The session was revoked.
    pub const REVOKED: CloseReason = CloseReason {
        code: close::SESSION_REVOKED,
        reason: "session_revoked",
    };
    /// A frame exceeded `max_frame_bytes`.
    pub const FRAME_TOO_LARGE: CloseReason = CloseReason {
        code: close::FRAME_TOO_LARGE,
        reason: "frame_too_large",
    };
    /// A text frame was not valid UTF-8.
    pub const INVALID_PAYLOAD: CloseReason = CloseReason {
        code: 1007,
        reason: "invalid_utf8",
    };
    /// The client broke the WebSocket protocol.
    pub const PROTOCOL_ERROR: CloseReason = CloseReason {
        code: 1002,
        reason: "protocol_error",
    };
    /// The client went away; nothing is wrong.
    pub const NORMAL: CloseReason = CloseReason {
        code: 1000,
        reason: "closed",
    };
    /// The account was disabled.
    pub const DISABLED: CloseReason = CloseReason {
        code: close::ACCOUNT_DISABLED,
        reason: "account_disabled",
    };
}

/// The sending side of one socket, as the hub holds it.
#[derive(Clone)]
pub(crate) struct ConnHandle {
    pub(crate) id: u64,
    pub(crate) session: SessionId,
    pub(crate) tx: mpsc::Sender<Utf8Bytes>,
    pub(crate) kill: watch::Sender<Option<CloseReason>>,
    /// Bytes of the frames in `tx` (the writer subtracts what it takes).
    pub(crate) queued: Arc<AtomicUsize>,
    /// Bytes of queued frames past which no more frame is let in: a frame
    /// is admitted while the queue holds less, so one large frame (a big
    /// history page asked for) always gets through a queue under budget.
    pub(crate) max_queued: usize,
}

impl ConnHandle {
    /// Queues a frame, or cuts the socket off if its queue is full, in
    /// frames or in bytes.
    pub(crate) fn push(&self, frame: Utf8Bytes) -> bool {
        let len = frame.len();
        let before = self.queued.fetch_add(len, Ordering::Relaxed);
        let over_budget = before >= self.max_queued;
        let full = over_budget
            || match self.tx.try_send(frame) {
                Ok(()) => return true,
                Err(mpsc::error::TrySendError::Full(_)) => true,
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            };
        self.queued.fetch_sub(len, Ordering::Relaxed);
        if full {
            metrics::counter!("qun_slow_consumer_disconnects_total").increment(1);
            self.close(CloseReason::SLOW_CONSUMER);
        }
        false
    }

    /// Asks the socket to close with a reason (the first reason wins).
    pub(crate) fn close(&self, reason: CloseReason) {
        self.kill.send_if_modified(|r| {
            if r.is_none() {
                *r = Some(reason);
                true
            } else {
                false
            }
        });
    }
}

/// All authenticated sockets of this node, by user.
#[derive(Default)]
pub struct Hub {
    users: RwLock<HashMap<UserId, Vec<ConnHandle>>>,
    shutting_down: AtomicBool,
}

impl Hub {
    /// An empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn register(&self, user: UserId, conn: ConnHandle) {
        let mut users = self.users.write().unwrap_or_else(|e| e.into_inner());
        users.entry(user).or_default().push(conn);
        metrics::gauge!("qun_connections").increment(1.0);
    }

    pub(crate) fn unregister(&self, user: UserId, conn_id: u64) {
        let mut users = self.users.write().unwrap_or_else(|e| e.into_inner());
        if let Some(conns) = users.get_mut(&user) {
            let before = conns.len();
            conns.retain(|c| c.id != conn_id);
            if conns.len() < before {
                metrics::gauge!("qun_connections").decrement(1.0);
            }
            if conns.is_empty() {
                users.remove(&user);
            }
        }
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Closes every socket with `server_shutdown` and refuses new ones.
    pub fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        let users = self.users.read().unwrap_or_else(|e| e.into_inner());
        for conn in users.values().flatten() {
            conn.close(CloseReason::SHUTDOWN);
        }
    }

    /// Number of open authenticated sockets.
    pub fn connection_count(&self) -> usize {
        let users = self.users.read().unwrap_or_else(|e| e.into_inner());
        users.values().map(Vec::len).sum()
    }
}

impl NotificationSink for Hub {
    fn deliver(&self, notification: &Notification) {
        match notification {
            Notification::Deliver {
                users: targets,
                event,
            } => {
                let frame = ServerFrame::Event {
                    v: PROTOCOL_VERSION,
                    event: convert::live_event(event),
                };
                let bytes = match serde_json::to_string(&frame) {
                    Ok(s) => Utf8Bytes::from(s),
                    Err(e) => {
                        tracing::error!(error = %e, "event not serialisable");
                        return;
                    }
                };
                let users = self.users.read().unwrap_or_else(|e| e.into_inner());
                let mut delivered = 0u64;
                for user in targets {
                    for conn in users.get(user).into_iter().flatten() {
                        delivered += u64::from(conn.push(bytes.clone()));
                    }
                }
                metrics::counter!("qun_deliveries_total").increment(delivered);
            }
            // Node announcements are the domain's business (`Qun::observe`).
            Notification::Presence { .. } | Notification::NodeAlive { .. } => {}
            Notification::Revoke {
                user,
                sessions,
                reason,
            } => {
                let close = match reason {
                    RevokeReason::Disabled => CloseReason::DISABLED,
                    RevokeReason::Revoked | RevokeReason::PasswordChanged => CloseReason::REVOKED,
                };
                let users = self.users.read().unwrap_or_else(|e| e.into_inner());
                for conn in users.get(user).into_iter().flatten() {
                    if sessions.is_empty() || sessions.contains(&conn.session) {
                        conn.close(close);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(max_queued: usize) -> (ConnHandle, mpsc::Receiver<Utf8Bytes>) {
        let (tx, rx) = mpsc::channel(512);
        let (kill, _) = watch::channel(None);
        let handle = ConnHandle {
            id: 1,
            session: SessionId("s".into()),
            tx,
            kill,
            queued: Arc::new(AtomicUsize::new(0)),
            max_queued,
        };
        (handle, rx)
    }

    fn frame(len: usize) -> Utf8Bytes {
        Utf8Bytes::from("x".repeat(len))
    }

    #[test]
    fn a_queue_over_its_byte_budget_cuts_the_socket_off() {
        let (handle, _rx) = handle(1_000);
        assert!(handle.push(frame(400)));
        assert!(handle.push(frame(400)));
        assert!(
            handle.push(frame(400)),
            "800 bytes queued: still under budget"
        );
        assert_eq!(handle.queued.load(Ordering::Relaxed), 1_200);
        assert!(!handle.push(frame(10)), "1,200 bytes queued: over budget");
        assert_eq!(*handle.kill.borrow(), Some(CloseReason::SLOW_CONSUMER));
        assert_eq!(
            handle.queued.load(Ordering::Relaxed),
            1_200,
            "the refused frame is not counted"
        );
    }

    #[test]
    fn a_large_frame_gets_through_a_queue_under_budget() {
        let (handle, mut rx) = handle(1_000);
        assert!(handle.push(frame(300)), "a live event waiting");
        assert!(
            handle.push(frame(5_000)),
            "a large page asked for still goes"
        );
        assert_eq!(*handle.kill.borrow(), None);
        while let Ok(taken) = rx.try_recv() {
            handle.queued.fetch_sub(taken.len(), Ordering::Relaxed);
        }
        assert!(handle.push(frame(900)), "taking frees the budget again");
        assert_eq!(*handle.kill.borrow(), None);
    }
}
