//! The server under test: a spawned `qun serve` (or baseline server), or an
//! external one, and what `/proc` says about its CPU time and memory.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};

use crate::Opts;

/// Member cap of the single group tier a spawned server is configured with,
/// so that every scenario's group fits (the default ladder stops at 3,000).
pub const SPAWNED_MAX_MEMBERS: u32 = 50_000;

/// Raises this process's soft open-file limit to its hard limit. Children
/// inherit it, which is how a spawned server gets the same allowance.
pub fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// This process's soft open-file limit.
pub fn fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: as above.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}

/// CPU time and resident memory of a process at one instant.
#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    /// User plus system CPU time, seconds.
    pub cpu_secs: f64,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
}

impl ProcSample {
    /// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`.
    pub fn read(pid: u32) -> anyhow::Result<ProcSample> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("reading /proc/{pid}/stat"))?;
        // The command name may hold spaces and parentheses; fields resume
        // after the last ')'. utime and stime are fields 14 and 15 overall.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .ok_or_else(|| anyhow!("unexpected /proc/{pid}/stat"))?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| -> anyhow::Result<u64> {
            fields
                .get(i)
                .and_then(|f| f.parse().ok())
                .ok_or_else(|| anyhow!("unexpected /proc/{pid}/stat"))
        };
        // fields[0] is field 3 (state), so field 14 is fields[11].
        let cpu_ticks = ticks(11)? + ticks(12)?;
        // SAFETY: sysconf has no memory effects.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("reading /proc/{pid}/status"))?;
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        Ok(ProcSample {
            cpu_secs: cpu_ticks as f64 / hz,
            rss_bytes: rss_kib * 1024,
        })
    }
}

/// A server to load: where it listens and, when known, its process.
pub struct Server {
    /// `http://HOST:PORT`.
    pub url: String,
    /// Its process id, for `/proc`.
    pub pid: Option<u32>,
    /// What it is, for the report.
    pub description: String,
    child: Option<Child>,
    data: Option<PathBuf>,
}

impl Server {
    /// The server named by the options: `--server` (with `--server-pid`),
    /// or a freshly spawned `qun serve` with `--spawn`.
    pub fn from_opts(opts: &Opts) -> anyhow::Result<Server> {
        match &opts.server {
            Some(url) => Ok(Server {
                url: url.trim_end_matches('/').to_owned(),
                pid: opts.server_pid,
                description: format!("external {url}"),
                child: None,
                data: None,
            }),
            None => Server::spawn_qun(opts.qun_bin.as_deref()),
        }
    }

    /// Starts `qun serve` on a new temporary data folder and a free port.
    pub fn spawn_qun(bin: Option<&Path>) -> anyhow::Result<Server> {
        let bin = match bin {
            Some(bin) => bin.to_owned(),
            None => sibling("qun")?,
        };
        let data = std::env::temp_dir().join(format!(
            "qun-bench-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
        let config = data.join("bench.toml");
        std::fs::write(&config, spawned_config())
            .with_context(|| format!("writing {}", config.display()))?;
        let log = std::fs::File::create(data.join("server.log"))?;
        let mut command = Command::new(&bin);
        command
            .arg("serve")
            .arg("--data")
            .arg(&data)
            .arg("--config")
            .arg(&config)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .envs(SPAWN_ENV.iter().copied())
            .env("RUST_LOG", "warn")
            .stderr(log);
        let mut server = Server::start(command, "qun listening on ")
            .with_context(|| format!("starting {}", bin.display()))?;
        server.description = format!("spawned {} (config {SPAWN_SUMMARY})", bin.display());
        server.data = Some(data);
        Ok(server)
    }

    /// Starts this executable's `baseline-server` on a free port.
    pub fn spawn_baseline() -> anyhow::Result<Server> {
        let exe = std::env::current_exe().context("finding qun-bench's own executable")?;
        let mut command = Command::new(exe);
        command
            .arg("baseline-server")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .stderr(Stdio::inherit());
        let mut server = Server::start(command, "baseline listening on ")?;
        server.description = "qun-bench baseline-server".into();
        Ok(server)
    }

    /// Spawns `command` and waits for its "<prefix>http://..." line on stdout.
    fn start(mut command: Command, prefix: &'static str) -> anyhow::Result<Server> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout from the child"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the child never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the server printed no listening line within 60 s");
            }
        };
        let url = line
            .trim()
            .strip_prefix(prefix)
            .ok_or_else(|| anyhow!("unexpected first line from the server: {line:?}"))?
            .to_owned();
        Ok(Server {
            url,
            pid: Some(child.id()),
            description: String::new(),
            child: Some(child),
            data: None,
        })
    }

    /// CPU and memory now, when the process is known.
    pub fn sample(&self) -> Option<ProcSample> {
        self.pid.and_then(|pid| ProcSample::read(pid).ok())
    }

    /// Fails if a spawned server has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(child) = &mut self.child {
            if let Ok(Some(status)) = child.try_wait() {
                let log = self
                    .data
                    .as_ref()
                    .and_then(|d| std::fs::read_to_string(d.join("server.log")).ok())
                    .unwrap_or_default();
                let tail: String = log.lines().rev().take(20).collect::<Vec<_>>().join("\n");
                bail!("the server exited ({status}); last log lines:\n{tail}");
            }
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(data) = self.data.take() {
            let _ = std::fs::remove_dir_all(data);
        }
    }
}

/// A counter from the server's Prometheus `/metrics` page, summed over its
/// labels (0 when it was never incremented, `None` when there is no page).
pub async fn metric(client: &qun_client::Client, name: &str) -> Option<f64> {
    let (status, body) = client.raw("GET", "/metrics", None).await.ok()?;
    if status != 200 {
        return None;
    }
    let labelled = format!("{name}{{");
    let mut total = 0.0;
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        if key == name || key.starts_with(&labelled) {
            total += value.parse::<f64>().unwrap_or(0.0);
        }
    }
    Some(total)
}

/// An executable in the same folder as this one (cargo puts every binary of
/// the workspace in one target folder).
fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("finding qun-bench's own executable")?;
    let dir = exe
        .parent()
        .ok_or_else(|| anyhow!("qun-bench's executable has no folder"))?;
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} not found: build it (cargo build --release -p qun) or pass --qun-bin",
            path.display()
        );
    }
    Ok(path)
}

/// Environment of a spawned server: cheap password hashing (setup registers
/// and logs in thousands of users) and no login throttling (they all come
/// from a few loopback addresses).
const SPAWN_ENV: &[(&str, &str)] = &[
    ("QUN_LIMITS__ARGON2_MEMORY_KIB", "1024"),
    ("QUN_LIMITS__ARGON2_ITERATIONS", "1"),
    (
        "QUN_LIMITS__LOGIN_ATTEMPTS_PER_ADDRESS_PER_MINUTE",
        "1000000",
    ),
    (
        "QUN_LIMITS__LOGIN_ATTEMPTS_PER_ACCOUNT_PER_MINUTE",
        "1000000",
    ),
];

/// One line for reports: how a spawned server differs from the defaults.
const SPAWN_SUMMARY: &str =
    "argon2 1 MiB x1, login limits off, one group tier of 50,000 members, RUST_LOG=warn";

/// The `--config` file of a spawned server: a single tier large enough for
/// every scenario's group; everything else stays at its default.
fn spawned_config() -> String {
    format!(
        "[[limits.groups.tiers]]\n\
         name = \"bench\"\n\
         max_members = {SPAWNED_MAX_MEMBERS}\n\
         max_admins = 20\n\
         drive_quota_bytes = 0\n\
         album_quota_bytes = 0\n\
         coins_per_day = 0\n"
    )
}
