//! Bad input end to end: malformed bodies and frames, wrong types, missing
//! fields, oversized payloads, other people's conversation ids, expired and
//! revoked tokens. Each must get its typed error (`docs/protocol.md`), never a
//! 500, and the server must keep serving everyone else.
//!
//! Answers are rendered as short strings such as
//! `"413 too_large limit=max_message_bytes max=16384"` or `"error r3 unknown_type"`
//! and compared with the expected string, so one case is one line. A test
//! reports all of its mismatches together before failing.
//!
//! Cases marked `REGRESSION` guard bugs this suite found and the server fixed;
//! they assert what the protocol promises.

// The helpers below are test code too: panicking is how they fail a test.
#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use qun_client::qun_wire::{
    CategoryId, ConversationEvent, ConversationId, DeviceKind, ErrorBody, Event, FriendRequestId,
    Segment, Seq, ServerFrame, UserId,
};
use qun_client::{Client, ClientError, Connection, RawBody};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::harness::{befriend, expect_event, text, Server, TempDir, User, PASSWORD};
use crate::require_e2e;

// ---------------------------------------------------------------------------
// Rendering answers and collecting mismatches
// ---------------------------------------------------------------------------

/// `code [field=F] [limit=L] [max=N]`, the parts of an error a client branches on.
fn describe(e: &ErrorBody) -> String {
    let mut s = e.code.clone();
    if let Some(f) = &e.field {
        let _ = write!(s, " field={f}");
    }
    if let Some(l) = &e.limit {
        let _ = write!(s, " limit={l}");
    }
    if let Some(m) = e.max {
        let _ = write!(s, " max={m}");
    }
    s
}

/// A typed error has a snake_case code and a message for people.
fn well_formed(e: &ErrorBody) -> bool {
    !e.code.is_empty()
        && e.code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        && !e.message.trim().is_empty()
}

fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(80).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// `"STATUS"` for a success, `"STATUS code ..."` for a typed error, and
/// `"STATUS untyped: BODY"` for an error body that is not a well-formed `ErrorBody`.
fn render_rest(status: u16, body: &str) -> String {
    if (200..300).contains(&status) {
        return status.to_string();
    }
    match serde_json::from_str::<ErrorBody>(body) {
        Ok(e) if well_formed(&e) => format!("{status} {}", describe(&e)),
        _ => format!("{status} untyped: {}", shorten(body)),
    }
}

/// `"ok"`, the error's description, or the client failure.
fn render_result<T>(r: Result<T, ClientError>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(ClientError::Api { error, .. }) if well_formed(&error) => describe(&error),
        Err(e) => format!("client error: {e}"),
    }
}

/// Every case that did not answer as expected.
#[derive(Default)]
struct Mismatches(Vec<String>);

impl Mismatches {
    /// Compares; an expectation ending in ` *` (`"400 *"`, `"error r1 *"`)
    /// accepts any well-formed typed error that starts the same.
    fn check(&mut self, case: &str, actual: &str, expect: &str) {
        let ok = match expect.strip_suffix(" *") {
            Some(prefix) => {
                actual.starts_with(&format!("{prefix} "))
                    && !actual.contains("untyped: ")
                    && !actual.contains("unparseable: ")
            }
            None => actual == expect,
        };
        if !ok {
            self.0.push(format!(
                "{case}\n      expected: {expect}\n      actual:   {actual}"
            ));
        }
    }

    fn assert_none(self, what: &str) {
        assert!(
            self.0.is_empty(),
            "{what}: {} case(s) answered wrongly:\n  {}",
            self.0.len(),
            self.0.join("\n  ")
        );
    }
}

/// Asserts the server logged neither a panic nor a 500.
fn assert_log_clean(server: &Server) {
    let log = server.log();
    for sign in ["panicked", "request failed inside the server"] {
        assert!(
            !log.contains(sign),
            "server log contains {sign:?}:\n{}",
            log.lines()
                .filter(|l| l.contains(sign))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

// ---------------------------------------------------------------------------
// REST cases
// ---------------------------------------------------------------------------

/// A REST client with a name for failure messages.
struct As {
    name: &'static str,
    client: Client,
}

fn json_body(v: Value) -> Option<RawBody> {
    Some(RawBody::Json(v))
}

fn text_body(t: &str) -> Option<RawBody> {
    Some(RawBody::Text(t.to_owned()))
}

fn typed_body(content_type: &str, body: &str) -> Option<RawBody> {
    Some(RawBody::Typed {
        content_type: content_type.to_owned(),
        body: body.to_owned(),
    })
}

fn summary(body: &Option<RawBody>) -> String {
    match body {
        None => "(no body)".into(),
        Some(RawBody::Json(v)) => shorten(&v.to_string()),
        Some(RawBody::Text(t)) => format!("text {:?}", shorten(t)),
        Some(RawBody::Typed { content_type, body }) => {
            format!("{content_type} {:?}", shorten(body))
        }
    }
}

/// Sends one request per case and records every wrong answer.
#[derive(Default)]
struct RestTable(Mismatches);

impl RestTable {
    async fn check(
        &mut self,
        who: &As,
        method: &str,
        path: impl AsRef<str>,
        body: Option<RawBody>,
        expect: &str,
    ) {
        let path = path.as_ref();
        let case = format!("{method} {path} {} as {}", summary(&body), who.name);
        let actual = match who.client.raw(method, path, body).await {
            Ok((status, text)) => render_rest(status, &text),
            Err(e) => format!("transport error: {e}"),
        };
        self.0.check(&case, &actual, expect);
    }
}

fn segments_of(n: usize) -> Value {
    Value::Array(vec![json!({"type": "text", "text": "x"}); n])
}

fn send_body(segments: Value) -> Option<RawBody> {
    json_body(json!({"client_msg_id": "bad-input", "segments": segments}))
}

/// What the REST cases run against: alice and bob are friends with one
/// message between them, carol has asked alice to be friends, alice has a
/// category. Fields drop in order: the server stops before its folder goes.
struct World {
    server: Server,
    anon: As,
    /// Clients whose token is missing or names no session.
    tokenless: [As; 4],
    alice: As,
    bob: As,
    carol: As,
    a: UserId,
    b: UserId,
    c: UserId,
    conv: ConversationId,
    pending: FriendRequestId,
    category: CategoryId,
    bob_session: String,
    _dir: TempDir,
}

fn named(name: &'static str, client: Client) -> As {
    As { name, client }
}

impl World {
    async fn new() -> World {
        let dir = TempDir::new("bad-rest");
        let server = Server::start(dir.path(), &[]);
        let alice = User::new(&server, "alice").await;
        let bob = User::new(&server, "bob").await;
        let carol = User::new(&server, "carol").await;
        let conv = befriend(&alice, &bob).await;
        alice.client.send(conv, "a-1", text("hello")).await.unwrap();
        let request = carol.client.send_friend_request(alice.id, "hi").await;
        let pending = request.unwrap().id;
        let category = alice.client.create_category("work").await.unwrap().id;
        let bob_session = bob.client.sessions().await.unwrap()[0].session_id.clone();
        World {
            anon: named("anonymous", server.client()),
            tokenless: [
                named("anonymous", server.client()),
                named("garbage token", server.client().with_token("not-a-token")),
                named("empty token", server.client().with_token("")),
                named(
                    "300-byte token",
                    server.client().with_token("t".repeat(300)),
                ),
            ],
            a: alice.id,
            b: bob.id,
            c: carol.id,
            alice: named("alice", alice.client),
            bob: named("bob", bob.client),
            carol: named("carol", carol.client),
            conv,
            pending,
            category,
            bob_session,
            server,
            _dir: dir,
        }
    }

    /// Every route of the router with a valid body (for those that take one),
    /// and whether it needs a session.
    #[rustfmt::skip]
    fn routes(&self) -> Vec<(&'static str, String, Option<Value>, bool)> {
        let World { a, b, c, conv, pending, category, bob_session, .. } = self;
        vec![
            ("POST", "/api/v1/accounts".into(), Some(json!({"nickname": "n", "password": PASSWORD})), false),
            ("POST", "/api/v1/sessions".into(), Some(json!({"user_id": a, "password": PASSWORD, "device_kind": "pc", "device_name": "x"})), false),
            ("GET", "/api/v1/sessions".into(), None, true),
            ("DELETE", "/api/v1/sessions/current".into(), None, true),
            ("DELETE", format!("/api/v1/sessions/{bob_session}"), None, true),
            ("PUT", "/api/v1/account/password".into(), Some(json!({"old_password": PASSWORD, "new_password": "another horse battery"})), true),
            ("PATCH", "/api/v1/account/profile".into(), Some(json!({"signature": "hi"})), true),
            ("GET", format!("/api/v1/users/{b}"), None, true),
            ("GET", "/api/v1/friends".into(), None, true),
            ("PATCH", format!("/api/v1/friends/{b}"), Some(json!({"remark": "b"})), true),
            ("DELETE", format!("/api/v1/friends/{b}"), None, true),
            ("POST", format!("/api/v1/friends/{b}/likes"), None, true),
            ("GET", "/api/v1/friend-requests".into(), None, true),
            ("POST", "/api/v1/friend-requests".into(), Some(json!({"to": c, "message": "hi"})), true),
            ("POST", format!("/api/v1/friend-requests/{pending}/accept"), Some(json!({})), true),
            ("POST", format!("/api/v1/friend-requests/{pending}/refuse"), None, true),
            ("GET", "/api/v1/friend-categories".into(), None, true),
            ("POST", "/api/v1/friend-categories".into(), Some(json!({"name": "x"})), true),
            ("PATCH", format!("/api/v1/friend-categories/{category}"), Some(json!({"name": "y"})), true),
            ("DELETE", format!("/api/v1/friend-categories/{category}"), None, true),
            ("GET", "/api/v1/blacklist".into(), None, true),
            ("PUT", format!("/api/v1/blacklist/{b}"), None, true),
            ("DELETE", format!("/api/v1/blacklist/{b}"), None, true),
            ("GET", "/api/v1/conversations".into(), None, true),
            ("POST", "/api/v1/conversations/direct".into(), Some(json!({"user_id": b})), true),
            ("GET", format!("/api/v1/conversations/{conv}/events"), None, true),
            ("POST", format!("/api/v1/conversations/{conv}/messages"), Some(json!({"client_msg_id": "m", "segments": [{"type": "text", "text": "hi"}]})), true),
            ("POST", format!("/api/v1/conversations/{conv}/events/1/recall"), None, true),
            ("PUT", format!("/api/v1/conversations/{conv}/read"), Some(json!({"seq": 1})), true),
        ]
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rest_endpoint_rejects_missing_and_bad_fields_with_typed_errors() {
    require_e2e!();
    let w = World::new().await;
    let mut t = RestTable::default();
    let routes = w.routes();
    // Without a valid token, every authenticated route is refused first.
    for (method, path, body, auth) in &routes {
        for who in w.tokenless.iter().filter(|_| *auth) {
            let body = body.clone().map(RawBody::Json);
            t.check(who, method, path, body, "401 unauthenticated")
                .await;
        }
    }
    // A body that is not JSON, or not declared as JSON, is invalid_json everywhere.
    for (method, path, body, auth) in &routes {
        let Some(valid) = body else { continue };
        let who = if *auth { &w.alice } else { &w.anon };
        // Routes whose body fields are all optional take an empty body as `{}`.
        let optional = path.ends_with("/accept");
        for bad in ["{nope", "", "{\"a\":1", "\u{feff}{}"] {
            if optional && bad.is_empty() {
                continue;
            }
            t.check(who, method, path, text_body(bad), "400 invalid_json")
                .await;
        }
        let plain = typed_body("text/plain", &valid.to_string());
        t.check(who, method, path, plain, "400 invalid_json").await;
    }
    account_cases(&w, &mut t).await;
    friend_cases(&w, &mut t).await;
    conversation_cases(&w, &mut t).await;
    huge_id_cases(&w, &mut t).await;
    router_cases(&w, &mut t).await;

    // Nothing above changed what the three users see, and the server still serves.
    let (alice, bob, carol) = (&w.alice.client, &w.bob.client, &w.carol.client);
    assert_eq!(alice.friends().await.unwrap().len(), 1);
    assert_eq!(carol.friends().await.unwrap().len(), 0);
    let requests = alice.friend_requests().await.unwrap();
    assert_eq!(requests.incoming.len(), 1, "the request is still pending");
    assert_eq!(alice.categories().await.unwrap().len(), 2);
    assert_eq!(bob.sessions().await.unwrap().len(), 1);
    let history = alice.history(w.conv, None, None, None).await.unwrap();
    assert_eq!(history.events.len(), 3, "hello and the two at the limits");
    assert_log_clean(&w.server);
    t.0.assert_none("REST bad input");
}

// The case tables keep one case per line; rustfmt would spread each over six.

/// Registration, login, sessions, password, profile, users.
#[rustfmt::skip]
async fn account_cases(w: &World, t: &mut RestTable) {
    let World { anon, alice, a, b, bob_session, .. } = w;
    // ---- accounts ----
    let p = "/api/v1/accounts";
    let deep = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    t.check(anon, "POST", p, json_body(json!({})), "400 invalid_field").await;
    t.check(anon, "POST", p, json_body(json!({"nickname": "n"})), "400 invalid_field").await;
    t.check(anon, "POST", p, json_body(json!({"nickname": 5, "password": PASSWORD})), "400 invalid_field").await;
    t.check(anon, "POST", p, json_body(json!({"nickname": "", "password": PASSWORD})), "400 invalid_field field=nickname").await;
    t.check(anon, "POST", p, json_body(json!({"nickname": "   ", "password": PASSWORD})), "400 invalid_field field=nickname").await;
    t.check(anon, "POST", p, json_body(json!({"nickname": "a\u{7}b", "password": PASSWORD})), "400 invalid_field field=nickname").await;
    t.check(anon, "POST", p, json_body(json!({"nickname": "x".repeat(33), "password": PASSWORD})), "413 too_large limit=max_nickname_chars max=32").await;
    // Limits count characters, not bytes.
    t.check(anon, "POST", p, json_body(json!({"nickname": "é".repeat(32), "password": PASSWORD})), "201").await;
    t.check(anon, "POST", p, json_body(json!({"nickname": "n", "password": "short"})), "400 invalid_field field=password").await;
    t.check(anon, "POST", p, json_body(json!({"nickname": "n", "password": "p".repeat(129)})), "413 too_large limit=max_password_chars max=128").await;
    // REGRESSION (body limit): too_large carries `limit` and `max`, but the
    // REST body limit's answer has no `max`.
    t.check(anon, "POST", p, json_body(json!({"nickname": "n", "password": PASSWORD, "pad": "x".repeat(70_000)})), "413 too_large limit=max_body_bytes max=65536").await;
    t.check(anon, "GET", p, None, "405 method_not_allowed").await;
    // Deep nesting in an ignored field neither overflows the stack nor matters.
    t.check(anon, "POST", p, text_body(&format!(r#"{{"nickname":"n","password":"{PASSWORD}","junk":{deep}}}"#)), "201").await;
    // REGRESSION (array bodies): protocol.md says a body that is "not an
    // object" is invalid_json; serde reads a JSON array as a struct's fields
    // in order, so arrays are answered invalid_field, or even accepted.
    t.check(anon, "POST", p, json_body(json!([])), "400 invalid_json").await;
    t.check(anon, "POST", p, json_body(json!(["n", PASSWORD])), "400 invalid_json").await;
    t.check(anon, "POST", p, text_body(&deep), "400 invalid_json").await;

    // ---- sessions ----
    let p = "/api/v1/sessions";
    let login = |user: Value, password: Value, kind: Value, name: Value| {
        json_body(json!({"user_id": user, "password": password, "device_kind": kind, "device_name": name}))
    };
    t.check(anon, "POST", p, json_body(json!({})), "400 invalid_field").await;
    t.check(anon, "POST", p, json_body(json!({"user_id": a, "password": PASSWORD})), "400 invalid_field").await;
    t.check(anon, "POST", p, login(json!("abc"), json!(PASSWORD), json!("pc"), json!("x")), "400 invalid_field").await;
    t.check(anon, "POST", p, login(json!(-5), json!(PASSWORD), json!("pc"), json!("x")), "400 invalid_field").await;
    t.check(anon, "POST", p, login(json!(a), json!(PASSWORD), json!("toaster"), json!("x")), "400 invalid_field").await;
    t.check(anon, "POST", p, login(json!(a), json!(5), json!("pc"), json!("x")), "400 invalid_field").await;
    t.check(anon, "POST", p, login(json!(a), json!(PASSWORD), json!("pc"), json!("d".repeat(65))), "413 too_large limit=max_device_name_chars max=64").await;
    t.check(anon, "POST", p, login(json!(a), json!("wrong password"), json!("pc"), json!("x")), "401 bad_credentials").await;
    t.check(anon, "POST", p, login(json!(99_999), json!(PASSWORD), json!("pc"), json!("x")), "401 bad_credentials").await;
    t.check(anon, "PUT", p, None, "405 method_not_allowed").await;
    t.check(alice, "DELETE", "/api/v1/sessions/nope", None, "404 not_found").await;
    // Another user's session is not found, not forbidden: ids reveal nothing.
    t.check(alice, "DELETE", format!("/api/v1/sessions/{bob_session}"), None, "404 not_found").await;
    t.check(alice, "GET", "/api/v1/sessions/current", None, "405 method_not_allowed").await;
    t.check(alice, "DELETE", "/api/v1/sessions/", None, "404 no_route").await;

    // ---- password and profile ----
    let p = "/api/v1/account/password";
    let change = |old: Value, new: Value| json_body(json!({"old_password": old, "new_password": new}));
    t.check(alice, "PUT", p, json_body(json!({})), "400 invalid_field").await;
    t.check(alice, "PUT", p, change(json!(5), json!("another horse battery")), "400 invalid_field").await;
    t.check(alice, "PUT", p, change(json!("wrong password"), json!("another horse battery")), "401 bad_credentials").await;
    t.check(alice, "PUT", p, change(json!(PASSWORD), json!("short")), "400 invalid_field field=new_password").await;
    t.check(alice, "PUT", p, change(json!(PASSWORD), json!("p".repeat(129))), "413 too_large limit=max_password_chars max=128").await;
    t.check(alice, "POST", p, None, "405 method_not_allowed").await;
    let p = "/api/v1/account/profile";
    t.check(alice, "PATCH", p, json_body(json!({"nickname": 5})), "400 invalid_field").await;
    t.check(alice, "PATCH", p, json_body(json!({"nickname": ""})), "400 invalid_field field=nickname").await;
    t.check(alice, "PATCH", p, json_body(json!({"nickname": "x".repeat(33)})), "413 too_large limit=max_nickname_chars max=32").await;
    t.check(alice, "PATCH", p, json_body(json!({"signature": "s".repeat(129)})), "413 too_large limit=max_signature_chars max=128").await;
    t.check(alice, "PATCH", p, json_body(json!({"signature": "two\nlines"})), "400 invalid_field field=signature").await;
    t.check(alice, "PATCH", p, json_body(json!({"avatar": "a".repeat(257)})), "413 too_large limit=max_avatar_bytes max=256").await;
    t.check(alice, "PATCH", p, json_body(json!({"avatar": 7})), "400 invalid_field").await;
    t.check(alice, "GET", p, None, "405 method_not_allowed").await;
    // REGRESSION (array bodies): an empty array is read as an empty patch and accepted.
    t.check(alice, "PATCH", p, json_body(json!([])), "400 invalid_json").await;
    t.check(alice, "PATCH", "/api/v1/account", None, "404 no_route").await;

    // ---- users ----
    t.check(alice, "GET", "/api/v1/users/abc", None, "400 invalid_field").await;
    t.check(alice, "GET", "/api/v1/users/-1", None, "400 invalid_field").await;
    t.check(alice, "GET", "/api/v1/users/1.5", None, "400 invalid_field").await;
    t.check(alice, "GET", "/api/v1/users/18446744073709551616", None, "400 invalid_field").await;
    t.check(alice, "GET", "/api/v1/users/99999", None, "404 not_found").await;
    t.check(alice, "GET", "/api/v1/users/", None, "404 no_route").await;
    t.check(alice, "DELETE", format!("/api/v1/users/{b}"), None, "405 method_not_allowed").await;
}

/// Friends, friend requests, categories, the blacklist.
#[rustfmt::skip]
async fn friend_cases(w: &World, t: &mut RestTable) {
    let World { alice, bob, carol, a, b, c, pending, category, .. } = w;
    // ---- friends ----
    t.check(alice, "PATCH", "/api/v1/friends/abc", json_body(json!({"remark": "x"})), "400 invalid_field").await;
    t.check(alice, "PATCH", format!("/api/v1/friends/{c}"), json_body(json!({"remark": "x"})), "403 not_friends").await;
    t.check(alice, "PATCH", "/api/v1/friends/99999", json_body(json!({"remark": "x"})), "403 not_friends").await;
    t.check(alice, "PATCH", format!("/api/v1/friends/{b}"), json_body(json!({"remark": "r".repeat(33)})), "413 too_large limit=max_remark_chars max=32").await;
    t.check(alice, "PATCH", format!("/api/v1/friends/{b}"), json_body(json!({"remark": 5})), "400 invalid_field").await;
    t.check(alice, "PATCH", format!("/api/v1/friends/{b}"), json_body(json!({"category": "work"})), "400 invalid_field").await;
    t.check(alice, "PATCH", format!("/api/v1/friends/{b}"), json_body(json!({"category": -1})), "400 invalid_field").await;
    t.check(alice, "PATCH", format!("/api/v1/friends/{b}"), json_body(json!({"category": 99_999})), "404 not_found").await;
    t.check(alice, "DELETE", "/api/v1/friends/abc", None, "400 invalid_field").await;
    t.check(alice, "DELETE", format!("/api/v1/friends/{c}"), None, "403 not_friends").await;
    t.check(alice, "POST", "/api/v1/friends/abc/likes", None, "400 invalid_field").await;
    t.check(alice, "POST", format!("/api/v1/friends/{c}/likes"), None, "403 not_friends").await;
    t.check(alice, "POST", format!("/api/v1/friends/{a}/likes"), None, "403 forbidden").await;
    t.check(alice, "GET", format!("/api/v1/friends/{b}"), None, "405 method_not_allowed").await;
    t.check(alice, "GET", "/api/v1/friends/", None, "404 no_route").await;

    // ---- friend requests ----
    let p = "/api/v1/friend-requests";
    t.check(alice, "POST", p, json_body(json!({})), "400 invalid_field").await;
    t.check(alice, "POST", p, json_body(json!({"to": "bob"})), "400 invalid_field").await;
    t.check(alice, "POST", p, json_body(json!({"to": c, "message": 5})), "400 invalid_field").await;
    t.check(alice, "POST", p, json_body(json!({"to": a})), "403 forbidden").await;
    t.check(alice, "POST", p, json_body(json!({"to": 99_999})), "404 not_found").await;
    t.check(alice, "POST", p, json_body(json!({"to": b})), "409 conflict").await;
    t.check(alice, "POST", p, json_body(json!({"to": c, "message": "m".repeat(129)})), "413 too_large limit=max_request_message_chars max=128").await;
    t.check(alice, "DELETE", p, None, "405 method_not_allowed").await;
    let accept = format!("/api/v1/friend-requests/{pending}/accept");
    t.check(alice, "POST", "/api/v1/friend-requests/abc/accept", json_body(json!({})), "400 invalid_field").await;
    t.check(alice, "POST", "/api/v1/friend-requests/99999/accept", json_body(json!({})), "404 not_found").await;
    // An empty body is `{}` on this route (all fields optional); an array is not an object.
    t.check(alice, "POST", &accept, text_body("[]"), "400 invalid_json").await;
    t.check(alice, "POST", &accept, json_body(json!({"remark": "r".repeat(33)})), "413 too_large limit=max_remark_chars max=32").await;
    t.check(alice, "POST", &accept, json_body(json!({"category": "x"})), "400 invalid_field").await;
    t.check(carol, "POST", &accept, json_body(json!({})), "403 forbidden").await;
    t.check(bob, "POST", &accept, json_body(json!({})), "404 not_found").await;
    t.check(alice, "GET", &accept, None, "405 method_not_allowed").await;
    let refuse = format!("/api/v1/friend-requests/{pending}/refuse");
    t.check(alice, "POST", "/api/v1/friend-requests/abc/refuse", None, "400 invalid_field").await;
    t.check(alice, "POST", "/api/v1/friend-requests/99999/refuse", None, "404 not_found").await;
    t.check(carol, "POST", &refuse, None, "403 forbidden").await;
    t.check(bob, "POST", &refuse, None, "404 not_found").await;

    // ---- friend categories ----
    let p = "/api/v1/friend-categories";
    t.check(alice, "POST", p, json_body(json!({})), "400 invalid_field").await;
    t.check(alice, "POST", p, json_body(json!({"name": 5})), "400 invalid_field").await;
    t.check(alice, "POST", p, json_body(json!({"name": ""})), "400 invalid_field field=name").await;
    t.check(alice, "POST", p, json_body(json!({"name": "c".repeat(33)})), "413 too_large limit=max_remark_chars max=32").await;
    t.check(alice, "PATCH", format!("{p}/abc"), json_body(json!({"name": "x"})), "400 invalid_field").await;
    t.check(alice, "PATCH", format!("{p}/0"), json_body(json!({"name": "x"})), "400 invalid_field field=id").await;
    t.check(alice, "PATCH", format!("{p}/99999"), json_body(json!({"name": "x"})), "404 not_found").await;
    t.check(alice, "PATCH", format!("{p}/{category}"), json_body(json!({"name": " "})), "400 invalid_field field=name").await;
    t.check(bob, "PATCH", format!("{p}/{category}"), json_body(json!({"name": "mine"})), "404 not_found").await;
    t.check(alice, "DELETE", format!("{p}/abc"), None, "400 invalid_field").await;
    t.check(alice, "DELETE", format!("{p}/0"), None, "400 invalid_field field=id").await;
    t.check(alice, "DELETE", format!("{p}/99999"), None, "404 not_found").await;
    t.check(bob, "DELETE", format!("{p}/{category}"), None, "404 not_found").await;
    t.check(alice, "GET", format!("{p}/{category}"), None, "405 method_not_allowed").await;

    // ---- blacklist ----
    t.check(alice, "PUT", "/api/v1/blacklist/abc", None, "400 invalid_field").await;
    t.check(alice, "PUT", format!("/api/v1/blacklist/{a}"), None, "403 forbidden").await;
    t.check(alice, "PUT", "/api/v1/blacklist/99999", None, "404 not_found").await;
    t.check(alice, "DELETE", "/api/v1/blacklist/abc", None, "400 invalid_field").await;
    t.check(alice, "DELETE", format!("/api/v1/blacklist/{c}"), None, "404 not_found").await;
    t.check(alice, "POST", "/api/v1/blacklist", None, "405 method_not_allowed").await;
}

/// Conversations, history, sending, recalling, reading.
#[rustfmt::skip]
async fn conversation_cases(w: &World, t: &mut RestTable) {
    let World { alice, bob, c, conv, .. } = w;
    // ---- conversations ----
    let p = "/api/v1/conversations/direct";
    t.check(alice, "POST", p, json_body(json!({})), "400 invalid_field").await;
    t.check(alice, "POST", p, json_body(json!({"user_id": "bob"})), "400 invalid_field").await;
    t.check(alice, "POST", p, json_body(json!({"user_id": c})), "403 not_friends").await;
    t.check(alice, "POST", p, json_body(json!({"user_id": 99_999})), "403 not_friends").await;
    t.check(alice, "GET", p, None, "405 method_not_allowed").await;
    t.check(alice, "POST", "/api/v1/conversations", None, "405 method_not_allowed").await;
    let events = format!("/api/v1/conversations/{conv}/events");
    t.check(alice, "GET", "/api/v1/conversations/abc/events", None, "400 invalid_field").await;
    t.check(alice, "GET", "/api/v1/conversations/99999/events", None, "404 not_found").await;
    t.check(alice, "GET", "/api/v1/conversations//events", None, "400 invalid_field").await;
    t.check(alice, "GET", format!("{events}?limit=0"), None, "400 invalid_field field=limit").await;
    t.check(alice, "GET", format!("{events}?limit=501"), None, "413 too_large limit=history_page_max max=500").await;
    t.check(alice, "GET", format!("{events}?limit=500"), None, "200").await;
    t.check(alice, "GET", format!("{events}?limit=-1"), None, "400 invalid_field").await;
    t.check(alice, "GET", format!("{events}?limit=4294967296"), None, "400 invalid_field").await;
    t.check(alice, "GET", format!("{events}?after=x"), None, "400 invalid_field").await;
    t.check(alice, "GET", format!("{events}?after=1&before=2"), None, "400 invalid_field").await;
    t.check(alice, "DELETE", &events, None, "405 method_not_allowed").await;

    let messages = format!("/api/v1/conversations/{conv}/messages");
    let m = messages.as_str();
    let send = |id: Value, segments: Value| json_body(json!({"client_msg_id": id, "segments": segments}));
    let hi = json!([{"type": "text", "text": "hi"}]);
    t.check(alice, "POST", m, json_body(json!({})), "400 invalid_field").await;
    t.check(alice, "POST", m, json_body(json!({"client_msg_id": "m1"})), "400 invalid_field").await;
    t.check(alice, "POST", m, json_body(json!({"segments": hi})), "400 invalid_field").await;
    t.check(alice, "POST", m, send(json!(5), hi.clone()), "400 invalid_field").await;
    t.check(alice, "POST", m, send(json!(""), hi.clone()), "400 invalid_field field=client_msg_id").await;
    t.check(alice, "POST", m, send(json!("c".repeat(65)), hi.clone()), "413 too_large limit=max_client_msg_id_bytes max=64").await;
    t.check(alice, "POST", m, send(json!("recall:1:1"), hi.clone()), "400 invalid_field field=client_msg_id").await;
    t.check(alice, "POST", m, send(json!("nul\u{0}"), hi.clone()), "400 invalid_field field=client_msg_id").await;
    t.check(alice, "POST", m, send(json!("m1"), json!("hi")), "400 invalid_field").await;
    t.check(alice, "POST", m, send_body(json!([])), "400 invalid_field field=segments").await;
    t.check(alice, "POST", m, send_body(segments_of(65)), "413 too_large limit=max_segments max=64").await;
    t.check(alice, "POST", m, send_body(json!([{"type": "text", "text": "x".repeat(16_385)}])), "413 too_large limit=max_message_bytes max=16384").await;
    // REGRESSION (body limit): no `max` in the answer.
    t.check(alice, "POST", m, send_body(json!([{"type": "text", "text": "x".repeat(70_000)}])), "413 too_large limit=max_body_bytes max=65536").await;
    t.check(alice, "POST", m, send_body(json!([{"type": "laser"}])), "400 invalid_field").await;
    t.check(alice, "POST", m, send_body(json!([{"type": "text"}])), "400 invalid_field").await;
    t.check(alice, "POST", m, send_body(json!([{"text": "no type"}])), "400 invalid_field").await;
    t.check(alice, "POST", m, send_body(json!([{"type": "text", "text": "   "}])), "400 invalid_field field=segments").await;
    t.check(alice, "POST", m, send_body(json!([{"type": "reply", "seq": 0}])), "400 invalid_field field=segments").await;
    t.check(alice, "POST", m, send_body(json!([{"type": "image", "file": ""}])), "400 invalid_field field=segments").await;
    t.check(alice, "POST", m, send_body(json!([{"type": "face", "id": -1}])), "400 invalid_field").await;
    t.check(alice, "POST", m, send_body(json!([{"type": "mention", "user": "bob"}])), "400 invalid_field").await;
    // The limits themselves are allowed.
    t.check(alice, "POST", m, send(json!("at-max-segments"), segments_of(64)), "200").await;
    t.check(alice, "POST", m, send(json!("at-max-bytes"), json!([{"type": "text", "text": "x".repeat(16_384)}])), "200").await;
    t.check(alice, "POST", "/api/v1/conversations/abc/messages", send(json!("m2"), hi.clone()), "400 invalid_field").await;
    t.check(alice, "POST", "/api/v1/conversations/99999/messages", send(json!("m3"), hi.clone()), "404 not_found").await;
    t.check(alice, "GET", m, None, "405 method_not_allowed").await;

    let recall = |seq: &str| format!("/api/v1/conversations/{conv}/events/{seq}/recall");
    t.check(alice, "POST", recall("abc"), None, "400 invalid_field").await;
    t.check(alice, "POST", recall("-1"), None, "400 invalid_field").await;
    t.check(alice, "POST", recall("999"), None, "404 not_found").await;
    t.check(alice, "POST", "/api/v1/conversations/99999/events/1/recall", None, "404 not_found").await;
    t.check(bob, "POST", recall("1"), None, "403 forbidden").await;
    t.check(alice, "GET", recall("1"), None, "405 method_not_allowed").await;

    let read = format!("/api/v1/conversations/{conv}/read");
    t.check(alice, "PUT", &read, json_body(json!({})), "400 invalid_field").await;
    t.check(alice, "PUT", &read, json_body(json!({"seq": -1})), "400 invalid_field").await;
    t.check(alice, "PUT", &read, json_body(json!({"seq": "1"})), "400 invalid_field").await;
    t.check(alice, "PUT", "/api/v1/conversations/abc/read", json_body(json!({"seq": 1})), "400 invalid_field").await;
    t.check(alice, "PUT", "/api/v1/conversations/99999/read", json_body(json!({"seq": 1})), "404 not_found").await;
    t.check(alice, "POST", &read, None, "405 method_not_allowed").await;
}

/// Ids that fit the declared u64 but not SQLite's i64.
#[rustfmt::skip]
async fn huge_id_cases(w: &World, t: &mut RestTable) {
    let World { anon, alice, b, conv, .. } = w;
    let hi = json!([{"type": "text", "text": "hi"}]);
    let send = json_body(json!({"client_msg_id": "m4", "segments": hi}));
    let login = json_body(json!({"user_id": u64::MAX, "password": PASSWORD, "device_kind": "pc", "device_name": "x"}));
    let events = format!("/api/v1/conversations/{conv}/events");
    let read = format!("/api/v1/conversations/{conv}/read");
    // REGRESSION (huge ids): they name nothing, so they should get what any
    // unknown id gets; the store answers invalid_field with a field "number"
    // that exists in none of these requests.
    let huge = u64::MAX;
    t.check(alice, "GET", format!("/api/v1/users/{huge}"), None, "404 not_found").await;
    t.check(alice, "GET", format!("/api/v1/conversations/{huge}/events"), None, "404 not_found").await;
    t.check(alice, "POST", format!("/api/v1/conversations/{huge}/messages"), send.clone(), "404 not_found").await;
    t.check(alice, "PUT", format!("/api/v1/conversations/{huge}/read"), json_body(json!({"seq": 1})), "404 not_found").await;
    t.check(alice, "POST", format!("/api/v1/conversations/{huge}/events/1/recall"), None, "404 not_found").await;
    t.check(alice, "POST", "/api/v1/friend-requests", json_body(json!({"to": huge})), "404 not_found").await;
    t.check(alice, "POST", format!("/api/v1/friend-requests/{huge}/accept"), json_body(json!({})), "404 not_found").await;
    t.check(alice, "POST", format!("/api/v1/friend-requests/{huge}/refuse"), None, "404 not_found").await;
    t.check(alice, "PUT", format!("/api/v1/blacklist/{huge}"), None, "404 not_found").await;
    t.check(alice, "DELETE", format!("/api/v1/blacklist/{huge}"), None, "404 not_found").await;
    t.check(alice, "PATCH", format!("/api/v1/friends/{huge}"), json_body(json!({"remark": "x"})), "404 not_found").await;
    t.check(alice, "DELETE", format!("/api/v1/friends/{huge}"), None, "404 not_found").await;
    t.check(alice, "POST", format!("/api/v1/friends/{huge}/likes"), None, "404 not_found").await;
    t.check(alice, "POST", "/api/v1/conversations/direct", json_body(json!({"user_id": huge})), "404 not_found").await;
    t.check(alice, "PATCH", format!("/api/v1/friend-categories/{huge}"), json_body(json!({"name": "x"})), "404 not_found").await;
    t.check(alice, "DELETE", format!("/api/v1/friend-categories/{huge}"), None, "404 not_found").await;
    t.check(alice, "PATCH", format!("/api/v1/friends/{b}"), json_body(json!({"category": huge})), "404 not_found").await;
    t.check(anon, "POST", "/api/v1/sessions", login, "401 bad_credentials").await;
    // Sequence numbers past the range are only positions: clamped, not refused.
    t.check(alice, "GET", format!("{events}?after={huge}"), None, "200").await;
    t.check(alice, "GET", format!("{events}?before={huge}"), None, "200").await;
    t.check(alice, "POST", format!("/api/v1/conversations/{conv}/events/{huge}/recall"), None, "404 not_found").await;
    t.check(alice, "PUT", &read, json_body(json!({"seq": huge})), "200").await;
}

/// The routes outside `/api/v1`'s handlers, and what is not routed at all.
#[rustfmt::skip]
async fn router_cases(w: &World, t: &mut RestTable) {
    let World { anon, alice, .. } = w;
    // REGRESSION: a plain GET of the socket route is answered by axum's
    // upgrade rejection in plain text, not an ErrorBody.
    t.check(anon, "GET", "/api/v1/ws", None, "400 *").await;
    t.check(anon, "POST", "/api/v1/ws", None, "405 method_not_allowed").await;
    t.check(anon, "POST", "/api/v1/openapi.json", None, "405 method_not_allowed").await;
    t.check(anon, "POST", "/healthz", None, "405 method_not_allowed").await;
    t.check(anon, "POST", "/readyz", None, "405 method_not_allowed").await;
    t.check(anon, "POST", "/metrics", None, "405 method_not_allowed").await;
    t.check(alice, "PROPFIND", "/api/v1/friends", None, "405 method_not_allowed").await;
    t.check(anon, "GET", "/", None, "404 no_route").await;
    t.check(anon, "GET", "/api/v1", None, "404 no_route").await;
    t.check(anon, "GET", "/api/v1/nope", None, "404 no_route").await;
    t.check(anon, "GET", "/api/v2/accounts", None, "404 no_route").await;
    t.check(alice, "GET", "/api/v1/conversations/1/events/1", None, "404 no_route").await;
    t.check(alice, "GET", "/api/v1/users/1/extra", None, "404 no_route").await;
}

// ---------------------------------------------------------------------------
// A bare WebSocket client
// ---------------------------------------------------------------------------

/// A WebSocket driven frame by frame, so tests can send what `qun-client`
/// never would (binary frames, frames past the server's limit, any request id)
/// and see every frame of the answer, request ids and close codes included.
struct RawSocket {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What a frame opens with: text or binary.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Binary,
}

/// How long a test waits for any one frame.
const FRAME_WAIT: Duration = Duration::from_secs(5);

impl RawSocket {
    /// Opens `/api/v1/ws` without authenticating.
    async fn open(base_url: &str) -> RawSocket {
        let url = qun_client::ws_url(base_url).unwrap();
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        RawSocket { ws }
    }

    /// Opens and authenticates with `token`.
    async fn authed(base_url: &str, token: &str) -> RawSocket {
        let mut socket = RawSocket::open(base_url).await;
        let auth = json!({"v": 1, "id": "auth", "type": "auth", "token": token});
        socket.send_text(&auth.to_string()).await;
        assert_eq!(socket.answer().await, "hello");
        socket
    }

    /// Writes one frame; fails when the server has already hung up.
    async fn try_send(&mut self, kind: Kind, payload: &str) -> Result<(), WsError> {
        let message = match kind {
            Kind::Text => Message::text(payload),
            Kind::Binary => Message::binary(payload.as_bytes().to_vec()),
        };
        self.ws.send(message).await
    }

    /// Writes one frame as given: any opcode and payload, final or not.
    async fn send_frame(&mut self, opcode: OpCode, payload: Vec<u8>, fin: bool) {
        let frame = Frame::message(payload, opcode, fin);
        let _ = self.ws.send(Message::Frame(frame)).await;
    }

    async fn send_text(&mut self, text: &str) {
        self.try_send(Kind::Text, text).await.unwrap();
    }

    /// The next frame, rendered: `hello`, `ok ID`, `error ID code ...`,
    /// `event`, `close CODE REASON`, `gone ...` (ended without a close frame).
    async fn next_rendered(&mut self) -> String {
        loop {
            let next = tokio::time::timeout(FRAME_WAIT, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no frame within {FRAME_WAIT:?}"));
            return match next {
                Some(Ok(Message::Text(t))) => render_frame(t.as_str()),
                Some(Ok(Message::Binary(_))) => "binary".into(),
                Some(Ok(Message::Close(Some(f)))) => {
                    format!("close {} {}", u16::from(f.code), f.reason)
                }
                Some(Ok(Message::Close(None))) => "close 1005".into(),
                // Pings and pongs are not answers.
                Some(Ok(_)) => continue,
                Some(Err(e)) => format!("gone {e}"),
                None => "gone".into(),
            };
        }
    }

    /// The next frame that is not an event.
    async fn answer(&mut self) -> String {
        loop {
            let frame = self.next_rendered().await;
            if frame != "event" {
                return frame;
            }
        }
    }

    /// Every frame until the socket closes, joined with ` | `.
    async fn until_closed(&mut self) -> String {
        let mut frames = Vec::new();
        loop {
            let frame = self.answer().await;
            let end = frame.starts_with("close ") || frame.starts_with("gone");
            frames.push(frame);
            if end || frames.len() > 10 {
                return frames.join(" | ");
            }
        }
    }
}

fn render_frame(text: &str) -> String {
    match serde_json::from_str::<ServerFrame>(text) {
        Ok(ServerFrame::Hello { .. }) => "hello".into(),
        Ok(ServerFrame::Event { .. }) => "event".into(),
        Ok(ServerFrame::Ok { id, .. }) => format!("ok {}", id.as_deref().unwrap_or("-")),
        Ok(ServerFrame::Error { id, error, .. }) if well_formed(&error) => {
            format!(
                "error {} {}",
                id.as_deref().unwrap_or("-"),
                describe(&error)
            )
        }
        _ => format!("unparseable: {}", shorten(text)),
    }
}

/// A frame that opens a fresh socket, answered up to the close.
async fn first_frame_answer(server: &Server, kind: Kind, payload: &str) -> String {
    let mut socket = RawSocket::open(&server.url).await;
    socket.try_send(kind, payload).await.unwrap();
    socket.until_closed().await
}

fn auth_frame(token: &str) -> String {
    json!({"v": 1, "id": "a", "type": "auth", "token": token}).to_string()
}

/// Waits until the connection is closed and returns its close code and reason.
async fn closed(conn: &Connection) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + FRAME_WAIT;
    while tokio::time::Instant::now() < deadline {
        if let Some(info) = conn.close_info() {
            return info;
        }
        let _ = conn.next_event_timeout(Duration::from_millis(20)).await;
    }
    panic!("socket still open after {FRAME_WAIT:?}");
}

/// The text of a message event sent by `from`.
fn message_from(from: UserId) -> impl FnMut(&Event) -> Option<String> {
    move |e| match e {
        Event::Conversation(ConversationEvent::Message(m)) if m.sender == from => {
            match m.segments.as_slice() {
                [Segment::Text { text }] => Some(text.clone()),
                _ => None,
            }
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// WebSocket frames
// ---------------------------------------------------------------------------

/// A send request frame on `conv`.
fn send_frame(id: &str, conv: ConversationId, client_msg_id: Value, segments: Value) -> String {
    json!({"v": 1, "id": id, "type": "send", "conversation": conv,
           "client_msg_id": client_msg_id, "segments": segments})
    .to_string()
}

/// Frames sent on an authenticated socket, each with the answer it must get.
#[rustfmt::skip]
fn frame_cases(conv: ConversationId, token: &str) -> Vec<(String, &'static str)> {
    let send = |id: &str, client_msg_id: Value, segments: Value| send_frame(id, conv, client_msg_id, segments);
    let request = |id: &str, kind: &str, fields: Value| {
        let mut frame = json!({"v": 1, "id": id, "type": kind});
        if let (Some(frame), Some(fields)) = (frame.as_object_mut(), fields.as_object()) {
            frame.extend(fields.clone());
        }
        frame.to_string()
    };
    let long_id = "i".repeat(65);
    vec![
        // Not a readable frame: no id to echo.
        ("{nope".into(), "error - invalid_json"),
        ("".into(), "error - invalid_json"),
        ("[1,2]".into(), "error - invalid_json"),
        ("\"ping\"".into(), "error - invalid_json"),
        ("null".into(), "error - invalid_json"),
        ("42".into(), "error - invalid_json"),
        // REGRESSION (array frames): a JSON array is "not an object", so
        // invalid_json; the server reads `[v, id, type]` positionally instead.
        (r#"[1,"r-array","ping"]"#.into(), "error - invalid_json"),
        // Readable frames with a bad header echo their id.
        (r#"{"id":"r1","type":"ping"}"#.into(), "error r1 invalid_field"),
        (r#"{"v":2,"id":"r2","type":"ping"}"#.into(), "error r2 unsupported_version"),
        (r#"{"v":0,"id":"r2b","type":"ping"}"#.into(), "error r2b unsupported_version"),
        (r#"{"v":1,"id":"r3","type":"teleport"}"#.into(), "error r3 unknown_type"),
        (r#"{"v":1,"id":"r4","type":7}"#.into(), "error r4 invalid_field"),
        (r#"{"v":1,"id":"r5"}"#.into(), "error r5 invalid_field"),
        (r#"{"v":1,"id":7,"type":"ping"}"#.into(), "error - invalid_field"),
        (request(&long_id, "ping", json!({})), "error - invalid_field"),
        (request(&long_id[1..], "ping", json!({})), "ok iiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiiii"),
        // Wrong types and missing fields per request type.
        (request("s1", "send", json!({"conversation": "x", "client_msg_id": "c", "segments": []})), "error s1 invalid_field"),
        (request("s2", "send", json!({"conversation": conv, "client_msg_id": "c"})), "error s2 invalid_field"),
        (request("s3", "send", json!({"conversation": conv, "segments": []})), "error s3 invalid_field"),
        (send("s4", json!("c"), json!("hi")), "error s4 invalid_field"),
        (send("s5", json!("c"), json!([{"type": "laser"}])), "error s5 invalid_field"),
        (send("s6", json!(""), json!([{"type": "text", "text": "hi"}])), "error s6 invalid_field field=client_msg_id"),
        (send("s7", json!("c".repeat(65)), json!([{"type": "text", "text": "hi"}])), "error s7 too_large limit=max_client_msg_id_bytes max=64"),
        (send("s8", json!("c"), json!([])), "error s8 invalid_field field=segments"),
        (send("s9", json!("c"), segments_of(65)), "error s9 too_large limit=max_segments max=64"),
        // Oversized content inside a frame the socket accepts.
        (send("s10", json!("c"), json!([{"type": "text", "text": "x".repeat(16_385)}])), "error s10 too_large limit=max_message_bytes max=16384"),
        (send("s11", json!("c"), json!([{"type": "text", "text": "x".repeat(60_000)}])), "error s11 too_large limit=max_message_bytes max=16384"),
        (request("s12", "send", json!({"conversation": 99_999, "client_msg_id": "c", "segments": [{"type": "text", "text": "hi"}]})), "error s12 not_found"),
        (request("d1", "read", json!({"conversation": conv, "seq": -1})), "error d1 invalid_field"),
        (request("d2", "read", json!({"conversation": conv})), "error d2 invalid_field"),
        (request("d3", "read", json!({"conversation": 99_999, "seq": 1})), "error d3 not_found"),
        (request("c1", "recall", json!({"conversation": conv, "seq": "x"})), "error c1 invalid_field"),
        (request("c2", "recall", json!({"conversation": conv, "seq": 999})), "error c2 not_found"),
        (request("h1", "history", json!({"conversation": conv, "limit": "ten"})), "error h1 invalid_field"),
        (request("h2", "history", json!({"conversation": conv, "limit": 0})), "error h2 invalid_field field=limit"),
        (request("h3", "history", json!({"conversation": conv, "limit": 501})), "error h3 too_large limit=history_page_max max=500"),
        (request("h4", "history", json!({"conversation": conv, "after": 1, "before": 2})), "error h4 invalid_field"),
        (request("h5", "history", json!({})), "error h5 invalid_field"),
        (request("h6", "history", json!({"conversation": conv, "limit": 5_000_000_000u64})), "error h6 invalid_field"),
        // REGRESSION (huge ids): answered invalid_field with field "number".
        (request("h7", "history", json!({"conversation": u64::MAX})), "error h7 not_found"),
        (request("p1", "set_presence", json!({"state": "sleepy"})), "error p1 invalid_field"),
        (request("p2", "set_presence", json!({})), "error p2 invalid_field"),
        (request("p3", "set_presence", json!({"state": "offline"})), "error p3 invalid_field field=state"),
        (request("a1", "auth", json!({"token": token})), "error a1 conflict"),
        (request("a2", "auth", json!({})), "error a2 invalid_field"),
        // The socket still answers in order after all of that.
        (request("ping", "ping", json!({})), "ok ping"),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_bad_frames_get_typed_errors_and_the_socket_keeps_working() {
    require_e2e!();
    let dir = TempDir::new("bad-ws");
    let server = Server::start(dir.path(), &[]);
    let alice = User::new(&server, "alice").await;
    let bob = User::new(&server, "bob").await;
    let conv = befriend(&alice, &bob).await;
    let (bob_phone, _) = bob.device(&server, "phone").await;
    let mut socket = RawSocket::authed(&server.url, &alice.token).await;

    let cases = frame_cases(conv, &alice.token);
    let mut m = Mismatches::default();
    for (frame, expect) in &cases {
        socket.send_text(frame).await;
        let actual = socket.answer().await;
        m.check(&format!("frame {}", shorten(frame)), &actual, expect);
    }
    socket
        .try_send(Kind::Binary, "\u{1}\u{2}binary")
        .await
        .unwrap();
    let actual = socket.answer().await;
    m.check("binary frame", &actual, "error - invalid_json");

    let deep = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    socket.send_text(&deep).await;
    let actual = socket.answer().await;
    m.check("20 000 nested arrays", &actual, "error - invalid_json");
    let deep_junk = format!(r#"{{"v":1,"id":"deep","type":"ping","junk":{deep}}}"#);
    socket.send_text(&deep_junk).await;
    let actual = socket.answer().await;
    m.check(
        "ping with a deeply nested unknown field",
        &actual,
        "error deep *",
    );

    // A normal send on the same socket works and reaches the peer.
    let hi = json!([{"type": "text", "text": "still here"}]);
    let normal = send_frame("ok-send", conv, json!("after-bad-frames"), hi);
    socket.send_text(&normal).await;
    let actual = socket.answer().await;
    m.check("normal send after bad frames", &actual, "ok ok-send");
    let got = expect_event(&bob_phone, message_from(alice.id)).await;
    assert_eq!(got, "still here");

    // A frame past max_frame_bytes (64 KiB) closes that socket with 1009...
    let text_70k = json!([{"type": "text", "text": "x".repeat(70_000)}]);
    let huge = send_frame("huge", conv, json!("huge"), text_70k);
    let _ = socket.try_send(Kind::Text, &huge).await;
    let actual = socket.until_closed().await;
    m.check("frame over 64 KiB", &actual, "close 1009 frame_too_large");

    // Invalid UTF-8 in a text frame, and a message over the limit in fragments.
    // REGRESSION: a text frame that is not UTF-8 is closed with 1000
    // "closed", as if all were well; RFC 6455 says 1007 (invalid payload).
    let mut other = RawSocket::authed(&server.url, &alice.token).await;
    other
        .send_frame(OpCode::Data(Data::Text), vec![b'"', 0xff, 0xfe, b'"'], true)
        .await;
    let actual = other.until_closed().await;
    m.check("text frame with invalid UTF-8", &actual, "close 1007 *");
    let mut other = RawSocket::authed(&server.url, &alice.token).await;
    other
        .send_frame(OpCode::Data(Data::Text), vec![b' '; 40_000], false)
        .await;
    other
        .send_frame(OpCode::Data(Data::Continue), vec![b' '; 40_000], true)
        .await;
    let actual = other.until_closed().await;
    m.check(
        "80 KB message in two fragments",
        &actual,
        "close 1009 frame_too_large",
    );

    // ...and nobody else notices: bob's socket, alice's REST and a new socket of hers work.
    bob_phone
        .send(conv, "bob-after", text("you there?"))
        .await
        .unwrap();
    let (alice_phone, _) = alice.device(&server, "phone").await;
    alice_phone.ping().await.unwrap();
    let history = alice.client.history(conv, None, None, None).await.unwrap();
    let texts: Vec<String> = history
        .events
        .iter()
        .filter_map(|e| match e {
            ConversationEvent::Message(m) => match m.segments.as_slice() {
                [Segment::Text { text }] => Some(text.clone()),
                _ => None,
            },
            ConversationEvent::Recall(_) | ConversationEvent::Notice(_) => None,
        })
        .collect();
    assert_eq!(
        texts,
        ["still here", "you there?"],
        "nothing bad was stored"
    );
    assert_log_clean(&server);
    m.assert_none("WebSocket bad frames");
}

// ---------------------------------------------------------------------------
// Other people's conversations
// ---------------------------------------------------------------------------

/// Everything carol might try on alice and bob's conversation, and on one
/// that does not exist, over REST and over her socket.
#[rustfmt::skip]
async fn stranger_cases(carol: &As, carol_phone: &Connection, conv: ConversationId, alice: UserId) -> Mismatches {
    let missing = ConversationId(987_654);
    let mut t = RestTable::default();
    let hi = json_body(json!({"client_msg_id": "carol-1", "segments": [{"type": "text", "text": "let me in"}]}));
    for (id, expect) in [(conv, "403 not_a_member"), (missing, "404 not_found")] {
        let base = format!("/api/v1/conversations/{id}");
        t.check(carol, "GET", format!("{base}/events"), None, expect).await;
        t.check(carol, "GET", format!("{base}/events?after=0"), None, expect).await;
        t.check(carol, "GET", format!("{base}/events?before=2&limit=1"), None, expect).await;
        t.check(carol, "POST", format!("{base}/messages"), hi.clone(), expect).await;
        t.check(carol, "POST", format!("{base}/events/1/recall"), None, expect).await;
        t.check(carol, "PUT", format!("{base}/read"), json_body(json!({"seq": 2})), expect).await;
    }
    t.check(carol, "POST", "/api/v1/conversations/direct", json_body(json!({"user_id": alice})), "403 not_friends").await;

    let mut m = t.0;
    let c = carol_phone;
    for (id, expect) in [(conv, "not_a_member"), (missing, "not_found")] {
        let case = |op: &str| format!("WebSocket {op} on conversation {id} as carol");
        m.check(&case("history"), &render_result(c.history(id, None, None, None).await), expect);
        m.check(&case("catch-up"), &render_result(c.history(id, Some(Seq(0)), None, Some(10)).await), expect);
        m.check(&case("send"), &render_result(c.send(id, "carol-2", text("let me in")).await), expect);
        m.check(&case("recall"), &render_result(c.recall(id, Seq(1)).await), expect);
        m.check(&case("read"), &render_result(c.read(id, Seq(2)).await), expect);
    }
    m
}

#[tokio::test(flavor = "multi_thread")]
async fn conversation_ids_of_others_are_refused() {
    require_e2e!();
    let dir = TempDir::new("bad-foreign");
    let server = Server::start(dir.path(), &[]);
    let alice = User::new(&server, "alice").await;
    let bob = User::new(&server, "bob").await;
    let carol = User::new(&server, "carol").await;
    let conv = befriend(&alice, &bob).await;
    alice.client.send(conv, "a-1", text("one")).await.unwrap();
    alice.client.send(conv, "a-2", text("two")).await.unwrap();
    bob.client.read(conv, Seq(1)).await.unwrap();
    let (bob_phone, _) = bob.device(&server, "phone").await;
    let (carol_phone, _) = carol.device(&server, "phone").await;
    let before = alice.client.history(conv, None, None, None).await.unwrap();
    let states_before = (
        alice.client.conversations().await.unwrap(),
        bob.client.conversations().await.unwrap(),
    );

    let stranger = As {
        name: "carol",
        client: carol.client.clone(),
    };
    let m = stranger_cases(&stranger, &carol_phone, conv, alice.id).await;

    // Nothing was stored or moved, and carol learned of no conversation.
    let after = alice.client.history(conv, None, None, None).await.unwrap();
    assert_eq!(after.events, before.events);
    let states_after = (
        alice.client.conversations().await.unwrap(),
        bob.client.conversations().await.unwrap(),
    );
    assert_eq!(
        format!("{:?}", states_after),
        format!("{:?}", states_before),
        "read positions and unread counts are unchanged"
    );
    let carols = carol.client.conversations().await.unwrap();
    assert!(carols.conversations.is_empty());
    let carols = carol_phone.conversations().await.unwrap();
    assert!(carols.conversations.is_empty());
    // Bob's next message event is alice's next message: nothing of carol's reached him.
    alice.client.send(conv, "a-3", text("three")).await.unwrap();
    let got = expect_event(&bob_phone, |e| match e {
        Event::Conversation(c) => Some(c.clone()),
        _ => None,
    })
    .await;
    assert_eq!(got.seq(), Seq(3));
    assert_log_clean(&server);
    m.assert_none("foreign conversation ids");
}

// ---------------------------------------------------------------------------
// Expired and revoked tokens
// ---------------------------------------------------------------------------

fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

/// First frames on a fresh socket that must not authenticate it, with the
/// frames that must answer them up to the close.
#[rustfmt::skip]
fn first_frame_cases(token: &str) -> Vec<(&'static str, Kind, String, &'static str)> {
    vec![
        ("garbage token", Kind::Text, auth_frame("garbage"), "error a unauthenticated | close 4001 unauthenticated"),
        ("empty token", Kind::Text, auth_frame(""), "error a unauthenticated | close 4001 unauthenticated"),
        ("300-byte token", Kind::Text, auth_frame(&"t".repeat(300)), "error a unauthenticated | close 4001 unauthenticated"),
        ("auth without token", Kind::Text, r#"{"v":1,"id":"a","type":"auth"}"#.into(), "error a invalid_field | close 4001 invalid_field"),
        ("numeric token", Kind::Text, r#"{"v":1,"id":"a","type":"auth","token":5}"#.into(), "error a invalid_field | close 4001 invalid_field"),
        ("ping first", Kind::Text, r#"{"v":1,"id":"p","type":"ping"}"#.into(), "error p unauthenticated | close 4001 unauthenticated"),
        ("send first", Kind::Text, r#"{"v":1,"id":"s","type":"send","conversation":1,"client_msg_id":"c","segments":[{"type":"text","text":"hi"}]}"#.into(), "error s unauthenticated | close 4001 unauthenticated"),
        ("unknown type first", Kind::Text, r#"{"v":1,"id":"x","type":"teleport"}"#.into(), "error x unknown_type | close 4001 unknown_type"),
        ("not JSON first", Kind::Text, "{nope".into(), "error - invalid_json | close 4001 invalid_json"),
        ("binary first", Kind::Binary, auth_frame(token), "error - unauthenticated | close 4001 unauthenticated"),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_and_revoked_tokens_are_refused() {
    require_e2e!();
    let dir = TempDir::new("bad-tokens");
    let server = Server::start(dir.path(), &[]);
    let alice = User::new(&server, "alice").await;
    let mut m = Mismatches::default();
    let sessions_as = |token: &str| server.client().with_token(token);
    async fn rest_sessions(client: &Client) -> String {
        match client.raw("GET", "/api/v1/sessions", None).await {
            Ok((status, body)) => render_rest(status, &body),
            Err(e) => format!("transport error: {e}"),
        }
    }

    // Logout: the token is revoked on REST and on a new socket.
    let laptop = server
        .client()
        .login(alice.id, PASSWORD, DeviceKind::Pc, "laptop")
        .await
        .unwrap();
    let laptop_client = sessions_as(&laptop.token);
    m.check(
        "laptop before logout",
        &rest_sessions(&laptop_client).await,
        "200",
    );
    laptop_client.logout().await.unwrap();
    m.check(
        "REST after logout",
        &rest_sessions(&laptop_client).await,
        "401 session_revoked",
    );
    let again = render_result(laptop_client.logout().await);
    m.check("second logout", &again, "session_revoked");
    let ws = first_frame_answer(&server, Kind::Text, &auth_frame(&laptop.token)).await;
    m.check(
        "socket auth after logout",
        &ws,
        "error a session_revoked | close 4001 session_revoked",
    );

    // A device revoked from another one: its open socket closes with 4003,
    // and its token is refused afterwards.
    let (phone, phone_token) = alice.device(&server, "phone").await;
    let phone_session = phone.hello().session_id.clone();
    alice.client.revoke_session(&phone_session).await.unwrap();
    let (code, reason) = closed(&phone).await;
    m.check(
        "open socket of the revoked device",
        &format!("{code} {reason}"),
        "4003 session_revoked",
    );
    m.check(
        "REST of the revoked device",
        &rest_sessions(&sessions_as(&phone_token)).await,
        "401 session_revoked",
    );
    let ws = first_frame_answer(&server, Kind::Text, &auth_frame(&phone_token)).await;
    m.check(
        "socket auth of the revoked device",
        &ws,
        "error a session_revoked | close 4001 session_revoked",
    );
    let again = render_result(alice.client.revoke_session(&phone_session).await);
    m.check("revoking it again", &again, "ok");

    // Unknown tokens and wrong first frames.
    for (name, kind, frame, expect) in first_frame_cases(&alice.token) {
        m.check(
            name,
            &first_frame_answer(&server, kind, &frame).await,
            expect,
        );
    }
    m.check(
        "REST with garbage token",
        &rest_sessions(&sessions_as("garbage")).await,
        "401 unauthenticated",
    );
    // Alice's own session outlived all of that.
    m.check(
        "REST of the surviving session",
        &rest_sessions(&alice.client).await,
        "200",
    );
    RawSocket::authed(&server.url, &alice.token).await;
    assert_log_clean(&server);
    drop(server);

    // Expiry: a server whose sessions last 2 s (a process boundary means
    // waiting for real time; 2 s leaves room to prove the token worked first).
    // Its auth timeout of 1 s runs out during the same wait.
    let dir = TempDir::new("bad-expiry");
    let env = [
        ("QUN_LIMITS__SESSION_TTL_SECS", "2"),
        ("QUN_GATEWAY__AUTH_TIMEOUT_SECS", "1"),
    ];
    let server = Server::start(dir.path(), &env);
    let mut silent = RawSocket::open(&server.url).await;
    let anon = server.client();
    let id = anon.register("eve", PASSWORD).await.unwrap().user_id;
    let login = anon
        .login(id, PASSWORD, DeviceKind::Web, "tab")
        .await
        .unwrap();
    let client = server.client().with_token(&login.token);
    m.check(
        "fresh short-lived token",
        &rest_sessions(&client).await,
        "200",
    );
    let (open, _) = Connection::connect(&server.url, &login.token)
        .await
        .unwrap();
    let wait = login.expires_at - now_ms() + 300;
    tokio::time::sleep(Duration::from_millis(u64::try_from(wait).unwrap_or(0))).await;
    m.check(
        "REST after expiry",
        &rest_sessions(&client).await,
        "401 token_expired",
    );
    let ws = first_frame_answer(&server, Kind::Text, &auth_frame(&login.token)).await;
    m.check(
        "socket auth after expiry",
        &ws,
        "error a token_expired | close 4001 token_expired",
    );
    let timed_out = silent.until_closed().await;
    m.check(
        "socket without any frame",
        &timed_out,
        "error - unauthenticated | close 4001 unauthenticated",
    );
    drop(open);
    assert_log_clean(&server);
    m.assert_none("expired and revoked tokens");
}

// ---------------------------------------------------------------------------
// Abuse next door
// ---------------------------------------------------------------------------

/// One user's worth of abuse: bad frames on an authenticated socket, bad
/// first frames, frames over the limit and bad REST requests, all at once.
async fn abuse(server: &Server, abuser: &User, conv: ConversationId) {
    let frames = [
        "{nope".to_string(),
        "[1,2]".into(),
        r#"{"v":2,"id":"x","type":"ping"}"#.into(),
        r#"{"v":1,"id":"x","type":"teleport"}"#.into(),
        r#"{"v":1,"id":"x","type":"send","conversation":"x"}"#.into(),
        send_frame(
            "x",
            conv,
            json!("spam"),
            json!([{"type": "text", "text": "spam"}]),
        ),
        json!({"v": 1, "id": "x", "type": "history", "conversation": conv}).to_string(),
        json!({"v": 1, "id": "x", "type": "read", "conversation": conv, "seq": 1}).to_string(),
        send_frame(
            "x",
            conv,
            json!("big"),
            json!([{"type": "text", "text": "x".repeat(20_000)}]),
        ),
    ];
    let sockets = async {
        let mut socket = RawSocket::authed(&server.url, &abuser.token).await;
        for _ in 0..4 {
            // Bursts stay under the server's outbound queue (512 frames).
            for i in 0..100 {
                socket.send_text(&frames[i % frames.len()]).await;
            }
            for _ in 0..100 {
                let answer = socket.answer().await;
                assert!(answer.starts_with("error "), "{answer}");
            }
        }
    };
    let strangers = async {
        for i in 0..10 {
            let frame = if i % 2 == 0 {
                "{nope".to_string()
            } else {
                auth_frame("garbage")
            };
            let answer = first_frame_answer(server, Kind::Text, &frame).await;
            assert!(
                answer.ends_with("close 4001 invalid_json")
                    || answer.ends_with("close 4001 unauthenticated"),
                "{answer}"
            );
        }
        for _ in 0..3 {
            let mut socket = RawSocket::authed(&server.url, &abuser.token).await;
            let _ = socket.try_send(Kind::Text, &" ".repeat(70_000)).await;
            assert_eq!(socket.until_closed().await, "close 1009 frame_too_large");
        }
    };
    let rest = async {
        let spam = json_body(
            json!({"client_msg_id": "spam", "segments": [{"type": "text", "text": "spam"}]}),
        );
        let messages = format!("/api/v1/conversations/{conv}/messages");
        let garbage = server.client().with_token("garbage");
        for _ in 0..30 {
            let (status, _) = abuser
                .client
                .raw("POST", &messages, spam.clone())
                .await
                .unwrap();
            assert_eq!(status, 403);
            let (status, _) = abuser
                .client
                .raw("POST", &messages, text_body("{nope"))
                .await
                .unwrap();
            assert_eq!(status, 400);
            let (status, _) = garbage.raw("GET", "/api/v1/friends", None).await.unwrap();
            assert_eq!(status, 401);
        }
    };
    tokio::join!(sockets, strangers, rest);
}

/// Sends `n` numbered messages and waits for the peer's `n`, in order.
async fn chat(
    me: &Connection,
    peer: UserId,
    conv: ConversationId,
    tag: &str,
    n: usize,
) -> Vec<String> {
    for i in 0..n {
        me.send(conv, &format!("{tag}-{i}"), text(&format!("{tag} {i}")))
            .await
            .unwrap();
    }
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        got.push(expect_event(me, message_from(peer)).await);
    }
    got
}

#[tokio::test(flavor = "multi_thread")]
async fn server_keeps_serving_others_during_abuse() {
    require_e2e!();
    let dir = TempDir::new("bad-abuse");
    let server = Server::start(dir.path(), &[]);
    let alice = User::new(&server, "alice").await;
    let bob = User::new(&server, "bob").await;
    let mallory = User::new(&server, "mallory").await;
    let conv = befriend(&alice, &bob).await;
    let (alice_pc, _) = alice.device(&server, "pc").await;
    let (bob_pc, _) = bob.device(&server, "pc").await;

    let n = 40;
    let (_, from_bob, from_alice) = tokio::join!(
        abuse(&server, &mallory, conv),
        chat(&alice_pc, bob.id, conv, "alice", n),
        chat(&bob_pc, alice.id, conv, "bob", n),
    );
    let expected = |tag: &str| (0..n).map(|i| format!("{tag} {i}")).collect::<Vec<_>>();
    assert_eq!(from_bob, expected("bob"));
    assert_eq!(from_alice, expected("alice"));

    // The stream holds exactly the 2n messages, numbered without gaps.
    let page = alice
        .client
        .history(conv, None, None, Some(500))
        .await
        .unwrap();
    let seqs: Vec<u64> = page.events.iter().map(|e| e.seq().0).collect();
    assert_eq!(seqs, (1..=2 * n as u64).collect::<Vec<_>>());
    assert!(mallory
        .client
        .conversations()
        .await
        .unwrap()
        .conversations
        .is_empty());
    assert_log_clean(&server);
}
