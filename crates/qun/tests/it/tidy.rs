//! The architecture's forbidden edges, checked on the manifests: the domain
//! knows no transport, SQL or JSON; the gateway never touches a store; clients
//! see only the wire crate.

use std::path::Path;

/// Names in a manifest's `[dependencies]` table (not dev-dependencies).
fn dependencies(krate: &str) -> Vec<String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(krate)
        .join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let mut in_deps = false;
    let mut deps = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['=', '.', ' ']).next().unwrap_or_default();
            deps.push(name.to_string());
        }
    }
    assert!(!deps.is_empty(), "{krate} has no dependencies table?");
    deps
}

fn check(krate: &str, forbidden: &[&str]) {
    for dep in dependencies(krate) {
        assert!(
            !forbidden.iter().any(
                |f| dep == *f || (f.ends_with('*') && dep.starts_with(f.trim_end_matches('*')))
            ),
            "{krate} must not depend on {dep}"
        );
    }
}

#[test]
fn dependencies_point_one_way() {
    check("qun-wire", &["qun-*", "axum", "tokio"]);
    check(
        "qun-domain",
        &[
            "qun-wire",
            "qun-gateway",
            "qun-store-*",
            "qun-client",
            "axum",
            "hyper",
            "rusqlite",
            "tokio-postgres",
            "async-nats",
            "serde_json",
            "utoipa",
        ],
    );
    check(
        "qun-store-sqlite",
        &["qun-wire", "qun-gateway", "qun-client", "axum"],
    );
    check(
        "qun-gateway",
        &[
            "qun-store-*",
            "qun-client",
            "rusqlite",
            "tokio-postgres",
            "async-nats",
        ],
    );
    check(
        "qun-client",
        &["qun-domain", "qun-gateway", "qun-store-*", "axum"],
    );
}
