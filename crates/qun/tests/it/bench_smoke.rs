//! The load generator keeps working: each `qun-bench` scenario runs at a tiny
//! scale against a `qun serve` it spawns, exits 0, reports its figures and
//! counts nothing lost, duplicated or reordered. No timing is asserted.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::harness::TempDir;
use crate::require_e2e;

/// `qun-bench`, built beside `qun` by the README's test command.
fn bench_binary() -> PathBuf {
    let qun = PathBuf::from(env!("CARGO_BIN_EXE_qun"));
    let bench = qun.with_file_name(format!("qun-bench{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bench.exists(),
        "{} is missing: build every binary first (cargo build --workspace --bins, \
         as scripts/test.sh does)",
        bench.display()
    );
    bench
}

/// Runs one scenario and returns its JSON report.
fn run(scenario: &str, args: &[&str]) -> Value {
    let dir = TempDir::new("bench");
    let json = dir.path().join("report.json");
    let output = Command::new(bench_binary())
        .arg(scenario)
        .arg("--spawn")
        .arg("--qun-bin")
        .arg(env!("CARGO_BIN_EXE_qun"))
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "qun-bench {scenario} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["scenario"], scenario);
    assert!(report["params"].is_object(), "{report}");
    report
}

/// Asserts that every name is among the report's metrics.
fn has_metrics(report: &Value, names: &[&str]) {
    for name in names {
        assert!(
            report["metrics"].get(name).is_some(),
            "{} lacks {name}: {report}",
            report["scenario"]
        );
    }
}

fn nothing_lost(report: &Value) {
    for name in ["lost", "duplicated", "reordered"] {
        assert_eq!(report["metrics"][name], 0, "{name}: {report}");
    }
}

const TINY: &[&str] = &["--duration", "1", "--rate", "20", "--drain", "10"];

#[test]
fn fanout_scenario_runs_at_tiny_scale() {
    require_e2e!();
    let report = run(
        "fanout",
        &[TINY, &["--members", "5", "--senders", "2"]].concat(),
    );
    has_metrics(
        &report,
        &[
            "deliveries_per_second",
            "deliveries_per_server_cpu_second",
            "p50_ms",
            "p99_ms",
            "max_ms",
        ],
    );
    nothing_lost(&report);
    // 20 messages to 5 members each.
    assert_eq!(report["metrics"]["deliveries"], 100, "{report}");
}

#[test]
fn direct_scenario_runs_at_tiny_scale() {
    require_e2e!();
    let report = run("direct", &[TINY, &["--clients", "3"]].concat());
    has_metrics(&report, &["acked_per_second", "ack_p99_ms"]);
    nothing_lost(&report);
    assert_eq!(report["metrics"]["messages_acked"], 20, "{report}");
}

#[test]
fn slow_consumer_scenario_runs_at_tiny_scale() {
    require_e2e!();
    let report = run("slow-consumer", &[TINY, &["--members", "5"]].concat());
    has_metrics(&report, &["server_extra_bytes", "others_p99_ratio"]);
    nothing_lost(&report);
}

#[test]
fn reconnect_scenario_runs_at_tiny_scale() {
    require_e2e!();
    let report = run("reconnect", &["--clients", "5", "--missed", "12"]);
    has_metrics(&report, &["resync_seconds"]);
    nothing_lost(&report);
    assert_eq!(report["metrics"]["resynced_clients"], 5, "{report}");
}

#[test]
fn baseline_scenario_runs_at_tiny_scale() {
    require_e2e!();
    let report = run(
        "baseline",
        &[TINY, &["--members", "5", "--senders", "2"]].concat(),
    );
    has_metrics(
        &report,
        &[
            "qun_to_baseline_ratio",
            "qun_deliveries_per_server_cpu_second",
            "baseline_deliveries_per_server_cpu_second",
        ],
    );
    nothing_lost(&report);
}

#[test]
fn idle_scenario_runs_at_tiny_scale() {
    require_e2e!();
    // Two worker processes, so the re-executed worker path is exercised too.
    let report = run(
        "idle",
        &["--clients", "6", "--workers", "2", "--duration", "1"],
    );
    has_metrics(
        &report,
        &[
            "rss_bytes_per_connection",
            "idle_cpu_percent",
            "connections",
        ],
    );
    assert_eq!(report["metrics"]["connections"], 6, "{report}");
    assert_eq!(report["metrics"]["dropped"], 0, "{report}");
}
