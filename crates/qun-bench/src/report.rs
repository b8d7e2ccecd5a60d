//! What a run tells: progress bars while it runs, then a table for people and
//! a JSON document (`scenario`, `params`, `metrics`, goals) for programs.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Map, Value};

use crate::track::Integrity;
use crate::Opts;

/// A progress bar on stderr (drawn only when stderr is a terminal).
pub fn bar(len: u64, label: &str) -> ProgressBar {
    let style = ProgressStyle::with_template(
        "{msg:>24} [{bar:32.cyan/blue}] {human_pos}/{human_len} {elapsed_precise}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    let bar = ProgressBar::new(len).with_style(style);
    bar.set_message(label.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Whether a goal is a floor or a ceiling.
#[derive(Clone, Copy)]
enum Bound {
    AtLeast(f64),
    AtMost(f64),
}

/// The goals for this machine (2 cores, loopback), by metric name.
const GOALS: &[(&str, Bound, &str)] = &[
    ("rss_bytes_per_connection", Bound::AtMost(8192.0), ""),
    (
        "deliveries_per_server_cpu_second",
        Bound::AtLeast(150_000.0),
        "",
    ),
    (
        "p99_ms",
        Bound::AtMost(25.0),
        "for 1,000 members at half the saturating rate",
    ),
    ("acked_per_second", Bound::AtLeast(30_000.0), "on SQLite"),
    (
        "ack_p99_ms",
        Bound::AtMost(10.0),
        "at half the saturating rate",
    ),
    ("server_extra_bytes", Bound::AtMost(1_048_576.0), ""),
    ("others_p99_ratio", Bound::AtMost(1.1), ""),
    (
        "resync_seconds",
        Bound::AtMost(10.0),
        "10,000 clients x 100 missed",
    ),
    ("qun_to_baseline_ratio", Bound::AtLeast(0.5), ""),
    ("lost", Bound::AtMost(0.0), ""),
    ("duplicated", Bound::AtMost(0.0), ""),
    ("reordered", Bound::AtMost(0.0), ""),
];

/// The result of one scenario.
pub struct Report {
    scenario: &'static str,
    params: Map<String, Value>,
    metrics: Map<String, Value>,
    /// What makes the run a failure (integrity, dropped connections...).
    failures: Vec<String>,
    notes: Vec<String>,
    server: String,
}

impl Report {
    /// An empty report of `scenario` against `server` (a description).
    pub fn new(scenario: &'static str, server: &str) -> Report {
        Report {
            scenario,
            params: Map::new(),
            metrics: Map::new(),
            failures: Vec::new(),
            notes: Vec::new(),
            server: server.to_owned(),
        }
    }

    /// Records a parameter of the run.
    pub fn param(&mut self, name: &str, value: impl Into<Value>) {
        self.params.insert(name.to_owned(), value.into());
    }

    /// Records a figure.
    pub fn metric(&mut self, name: &str, value: impl Into<Value>) {
        self.metrics.insert(name.to_owned(), value.into());
    }

    /// Records a figure rounded to three decimals (or null when unknown).
    pub fn figure(&mut self, name: &str, value: Option<f64>) {
        let value = match value {
            Some(v) if v.is_finite() => json!((v * 1000.0).round() / 1000.0),
            _ => Value::Null,
        };
        self.metrics.insert(name.to_owned(), value);
    }

    /// Marks the run failed.
    pub fn fail(&mut self, why: impl Into<String>) {
        self.failures.push(why.into());
    }

    /// Adds a remark for the reader.
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// Records loss, duplication and reordering; any of them fails the run.
    pub fn integrity(&mut self, integrity: Integrity) {
        self.metric("lost", integrity.lost);
        self.metric("duplicated", integrity.duplicated);
        self.metric("reordered", integrity.reordered);
        if !integrity.clean() {
            self.fail(format!(
                "integrity: {} lost, {} duplicated, {} reordered",
                integrity.lost, integrity.duplicated, integrity.reordered
            ));
        }
    }

    fn goals(&self) -> Map<String, Value> {
        let mut goals = Map::new();
        for (name, bound, condition) in GOALS {
            let Some(value) = self.metrics.get(*name).and_then(Value::as_f64) else {
                continue;
            };
            let (text, met) = match *bound {
                Bound::AtLeast(goal) => (format!(">= {goal}"), value >= goal),
                Bound::AtMost(goal) => (format!("<= {goal}"), value <= goal),
            };
            goals.insert(
                (*name).to_owned(),
                json!({"goal": text, "condition": condition, "met": met}),
            );
        }
        goals
    }

    /// The JSON document.
    pub fn to_json(&self) -> Value {
        let date = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        json!({
            "scenario": self.scenario,
            "params": self.params,
            "metrics": self.metrics,
            "goals": self.goals(),
            "server": self.server,
            "unix_time": date,
            "load_average_at_end": load_average(),
            "notes": self.notes,
            "failures": self.failures,
        })
    }

    /// The table for people.
    pub fn table(&self) -> String {
        let goals = self.goals();
        let mut out = format!("\nqun-bench {} against {}\n", self.scenario, self.server);
        if let Some(load) = load_average() {
            out.push_str(&format!("machine load average (1 min): {load}\n"));
        }
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        out.push_str(&format!("params: {}\n\n", params.join(" ")));
        out.push_str(&format!(
            "{:<38} {:>16}  {:<14} {}\n",
            "metric", "value", "goal", ""
        ));
        for (name, value) in &self.metrics {
            let (goal, verdict) = match goals.get(name) {
                Some(g) => (
                    g["goal"].as_str().unwrap_or_default().to_owned(),
                    if g["met"].as_bool() == Some(true) {
                        "met"
                    } else {
                        "MISSED"
                    },
                ),
                None => (String::new(), ""),
            };
            out.push_str(&format!(
                "{name:<38} {:>16}  {goal:<14} {verdict}\n",
                value.to_string()
            ));
        }
        for note in &self.notes {
            out.push_str(&format!("note: {note}\n"));
        }
        for failure in &self.failures {
            out.push_str(&format!("FAILED: {failure}\n"));
        }
        out
    }
}

/// The machine's 1-minute load average: other work on the same 2 cores
/// shows in every figure, so reports carry it.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Prints the report, writes `--json`, and says whether the run passed.
pub fn finish(result: anyhow::Result<Report>, opts: &Opts) -> anyhow::Result<bool> {
    let report = result?;
    println!("{}", report.table());
    if let Some(path) = &opts.json {
        let text = serde_json::to_string_pretty(&report.to_json())?;
        std::fs::write(path, text + "\n")
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    }
    Ok(report.failures.is_empty())
}
