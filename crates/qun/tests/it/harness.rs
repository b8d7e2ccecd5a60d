//! Shared test plumbing: temporary folders, real `qun serve` processes, and
//! shortcuts for users, devices and friendships through `qun-client`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use qun_client::qun_wire::{
    AcceptFriendRequest, ConversationId, DeviceKind, Event, Segment, UserId,
};
use qun_client::{Client, Connection};

/// Whether the end-to-end suites run (`QUN_E2E=1`, set by the README's test command).
pub fn e2e() -> bool {
    std::env::var_os("QUN_E2E").is_some_and(|v| v != "0")
}

/// Skips an end-to-end test unless `QUN_E2E` is set.
#[macro_export]
macro_rules! require_e2e {
    () => {
        if !$crate::harness::e2e() {
            eprintln!("skipped: set QUN_E2E=1 to run end-to-end tests");
            return;
        }
    };
}

/// A folder removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh, empty folder.
    pub fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("qun-it-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A real `qun serve` process on a free loopback port. Killed when dropped.
pub struct Server {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    data: PathBuf,
    env: Vec<(String, String)>,
}

impl Server {
    /// Starts a server on `data` with extra environment (e.g. `QUN_LIMITS__...`).
    pub fn start(data: &Path, env: &[(&str, &str)]) -> Server {
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut server = Server {
            child: None,
            url: String::new(),
            data: data.to_owned(),
            env,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.join("server.log"))
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_qun"))
            .arg("serve")
            .arg("--data")
            .arg(&self.data)
            .arg("--listen")
            .arg("127.0.0.1:0")
            // Every test client logs in from 127.0.0.1; tests that check the
            // per-address limit override this.
            .env(
                "QUN_LIMITS__LOGIN_ATTEMPTS_PER_ADDRESS_PER_MINUTE",
                "100000",
            )
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("qun serve starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                let log = std::fs::read_to_string(self.data.join("server.log")).unwrap_or_default();
                panic!("qun serve did not start; log:\n{log}")
            });
        self.url = line
            .trim()
            .strip_prefix("qun listening on ")
            .expect("listening line")
            .to_string();
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait for the process to exit; returns whether it exited cleanly.
    pub fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        for _ in 0..300 {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Starts the server again on the same data folder (on a new port).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// An anonymous client of this server.
    pub fn client(&self) -> Client {
        Client::new(&self.url)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.join("server.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The password every test user gets.
pub const PASSWORD: &str = "correct horse battery";

/// A registered user with one logged-in REST client.
#[derive(Clone)]
pub struct User {
    /// qun number.
    pub id: UserId,
    /// Authenticated REST client.
    pub client: Client,
    /// The token of `client`.
    pub token: String,
}

impl User {
    /// Registers and logs in a new user.
    pub async fn new(server: &Server, nickname: &str) -> User {
        let anon = server.client();
        let id = anon.register(nickname, PASSWORD).await.unwrap().user_id;
        let login = anon
            .login(id, PASSWORD, DeviceKind::Pc, "rest")
            .await
            .unwrap();
        User {
            id,
            client: anon.with_token(login.token.clone()),
            token: login.token,
        }
    }

    /// Logs in another device and opens its socket.
    pub async fn device(&self, server: &Server, name: &str) -> (Connection, String) {
        let login = server
            .client()
            .login(self.id, PASSWORD, DeviceKind::Mobile, name)
            .await
            .unwrap();
        let (conn, hello) = Connection::connect(&server.url, &login.token)
            .await
            .unwrap();
        assert_eq!(hello.user_id, self.id);
        (conn, login.token)
    }
}

/// Makes two users friends; returns their conversation.
pub async fn befriend(a: &User, b: &User) -> ConversationId {
    let request = a.client.send_friend_request(b.id, "hello").await.unwrap();
    let friend = b
        .client
        .accept_friend_request(request.id, &AcceptFriendRequest::default())
        .await
        .unwrap();
    friend.conversation
}

/// A one-segment text message.
pub fn text(t: &str) -> Vec<Segment> {
    vec![Segment::Text {
        text: t.to_string(),
    }]
}

/// Waits for the next event matching `pred`, skipping others; panics after 5 s.
pub async fn expect_event<T>(conn: &Connection, mut pred: impl FnMut(&Event) -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match conn.next_event_timeout(left).await {
            Ok(Some(event)) => {
                if let Some(v) = pred(&event) {
                    return v;
                }
            }
            other => panic!("expected event did not arrive: {other:?}"),
        }
    }
}
