//! qun's integration tests: the domain in-process on a real SQLite store with a
//! controlled clock, and end-to-end suites against real `qun serve` processes
//! (those run when `QUN_E2E=1`, as the README's test command sets).

// Test code: a panic is how a check fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bad_input;
mod bench_smoke;
mod domain;
mod durability;
mod flows;
mod groups_domain;
mod groups_e2e;
mod harness;
mod multinode;
mod tidy;
