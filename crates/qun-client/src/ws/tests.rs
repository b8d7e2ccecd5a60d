//! Connection behaviour against a scripted in-process WebSocket server.

use std::future::Future;

use qun_wire::{MessageId, MessageView};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;

use super::*;

type ServerSocket = WebSocketStream<TcpStream>;

/// Starts a server that accepts one socket, expects `auth` with token "tok",
/// answers with a hello announcing `heartbeat_secs`, then runs `script`.
async fn fake_server<F, Fut>(heartbeat_secs: u64, script: F) -> (String, JoinHandle<()>)
where
    F: FnOnce(ServerSocket) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        let auth = recv_frame(&mut ws).await;
        assert_eq!(auth["type"], "auth");
        assert_eq!(auth["id"], "auth");
        assert_eq!(auth["token"], "tok");
        send_json(
            &mut ws,
            json!({"type": "hello", "v": 1, "user_id": 10001, "session_id": "s1",
                   "heartbeat_secs": heartbeat_secs, "server_time": 42}),
        )
        .await;
        script(ws).await;
    });
    (base, task)
}

/// The next text frame from the client, as JSON.
async fn recv_frame(ws: &mut ServerSocket) -> Value {
    loop {
        match ws.next().await.unwrap().unwrap() {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Close(frame) => panic!("client closed: {frame:?}"),
            _ => {}
        }
    }
}

async fn send_json(ws: &mut ServerSocket, value: Value) {
    ws.send(Message::text(value.to_string())).await.unwrap();
}

async fn close_with(ws: &mut ServerSocket, code: u16, reason: &str) {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    };
    ws.send(Message::Close(Some(frame))).await.unwrap();
    // Drain until the client's answering close ends the stream.
    while let Some(Ok(_)) = ws.next().await {}
}

fn message(seq: u64) -> Value {
    serde_json::to_value(ConversationEvent::Message(MessageView {
        conversation: ConversationId(7),
        seq: Seq(seq),
        message_id: MessageId(100 + seq),
        sender: UserId(10002),
        client_msg_id: format!("c{seq}"),
        time: 1_000 + seq as i64,
        segments: vec![Segment::Text {
            text: format!("m{seq}"),
        }],
        recalled: false,
    }))
    .unwrap()
}

const SHORT: Duration = Duration::from_secs(5);

fn options() -> ConnectOptions {
    ConnectOptions {
        heartbeat: false,
        request_timeout: SHORT,
    }
}

#[test]
fn ws_url_swaps_scheme_and_appends_gateway_path() {
    assert_eq!(
        ws_url("http://127.0.0.1:8080").unwrap(),
        "ws://127.0.0.1:8080/api/v1/ws"
    );
    assert_eq!(
        ws_url("https://chat.example/qun/").unwrap(),
        "wss://chat.example/qun/api/v1/ws"
    );
    assert_eq!(ws_url("ws://h:1").unwrap(), "ws://h:1/api/v1/ws");
    assert!(ws_url("ftp://h").is_err());
    assert!(ws_url("127.0.0.1:8080").is_err());
}

#[tokio::test]
async fn hello_is_returned_and_answers_reach_their_request_out_of_order() {
    let (base, server) = fake_server(30, |mut ws| async move {
        let first = recv_frame(&mut ws).await;
        let second = recv_frame(&mut ws).await;
        // Answer in reverse order: routing is by id, not by arrival.
        for frame in [&second, &first] {
            let data = json!({"echo": frame["type"]});
            send_json(
                &mut ws,
                json!({"type": "ok", "v": 1, "id": frame["id"], "data": data}),
            )
            .await;
        }
        close_with(&mut ws, 1000, "").await;
    })
    .await;
    let (conn, hello) = Connection::connect_with(&base, "tok", options())
        .await
        .unwrap();
    assert_eq!(
        hello,
        Hello {
            user_id: UserId(10001),
            session_id: "s1".into(),
            heartbeat_secs: 30,
            server_time: 42
        }
    );
    let other = conn.clone();
    let (a, b) = tokio::join!(
        conn.request(Request::Ping),
        other.request(Request::Conversations)
    );
    assert_eq!(a.unwrap(), json!({"echo": "ping"}));
    assert_eq!(b.unwrap(), json!({"echo": "conversations"}));
    server.await.unwrap();
}

#[tokio::test]
async fn error_answers_carry_the_wire_code() {
    let (base, server) = fake_server(30, |mut ws| async move {
        let request = recv_frame(&mut ws).await;
        assert_eq!(request["type"], "recall");
        let error = json!({"code": "recall_window_passed", "message": "too late"});
        send_json(
            &mut ws,
            json!({"type": "error", "v": 1, "id": request["id"], "error": error}),
        )
        .await;
        close_with(&mut ws, 1000, "").await;
    })
    .await;
    let (conn, _) = Connection::connect_with(&base, "tok", options())
        .await
        .unwrap();
    let err = conn.recall(ConversationId(7), Seq(3)).await.unwrap_err();
    assert_eq!(err.code(), Some("recall_window_passed"));
    assert_eq!(err.status(), Some(0));
    server.await.unwrap();
}

#[tokio::test]
async fn refused_auth_fails_connect_with_the_code() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        recv_frame(&mut ws).await;
        let error = json!({"code": "session_revoked", "message": "revoked"});
        send_json(
            &mut ws,
            json!({"type": "error", "v": 1, "id": "auth", "error": error}),
        )
        .await;
        close_with(&mut ws, 4003, "session revoked").await;
    });
    let err = Connection::connect_with(&base, "tok", options())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("session_revoked"));
    server.await.unwrap();
}

#[tokio::test]
async fn close_without_hello_fails_connect_with_close_code() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        recv_frame(&mut ws).await;
        close_with(&mut ws, 4001, "unauthenticated").await;
    });
    let err = Connection::connect_with(&base, "tok", options())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Closed { code: 4001, reason } if reason == "unauthenticated"),
        "{err:?}"
    );
    server.await.unwrap();
}

#[tokio::test]
async fn server_close_ends_events_and_fails_requests_with_its_code() {
    let (base, server) = fake_server(30, |mut ws| async move {
        let event: ConversationEvent = serde_json::from_value(message(1)).unwrap();
        let event = serde_json::to_value(Event::Conversation(event)).unwrap();
        send_json(&mut ws, json!({"type": "event", "v": 1, "event": event})).await;
        // A request arrives but is never answered: the close must fail it.
        recv_frame(&mut ws).await;
        close_with(&mut ws, 4003, "session revoked").await;
    })
    .await;
    let (conn, _) = Connection::connect_with(&base, "tok", options())
        .await
        .unwrap();
    let event = conn.next_event_timeout(SHORT).await.unwrap().unwrap();
    assert!(
        matches!(&event, Event::Conversation(ConversationEvent::Message(m)) if m.seq == Seq(1)),
        "{event:?}"
    );
    let err = conn.ping().await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Closed { code: 4003, .. }),
        "{err:?}"
    );
    assert!(conn.next_event_timeout(SHORT).await.unwrap().is_none());
    assert_eq!(
        conn.close_info(),
        Some((4003, "session revoked".to_owned()))
    );
    assert!(conn.is_closed());
    let err = conn.ping().await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Closed { code: 4003, .. }),
        "{err:?}"
    );
    server.await.unwrap();
}

#[tokio::test]
async fn raw_frames_and_their_errors_reach_the_protocol_error_stream() {
    let (base, server) = fake_server(30, |mut ws| async move {
        let raw = ws.next().await.unwrap().unwrap();
        assert_eq!(raw, Message::text("{nope"));
        let error = json!({"code": "invalid_json", "message": "bad frame"});
        send_json(
            &mut ws,
            json!({"type": "error", "v": 1, "id": null, "error": error}),
        )
        .await;
        let error = json!({"code": "unknown_type", "message": "what is bogus"});
        send_json(
            &mut ws,
            json!({"type": "error", "v": 1, "id": "x", "error": error}),
        )
        .await;
        close_with(&mut ws, 1000, "").await;
    })
    .await;
    let (conn, _) = Connection::connect_with(&base, "tok", options())
        .await
        .unwrap();
    conn.send_raw_text("{nope").unwrap();
    let first = conn.next_protocol_error_timeout(SHORT).await.unwrap();
    assert_eq!(first.code, "invalid_json");
    let second = conn.next_protocol_error_timeout(SHORT).await.unwrap();
    assert_eq!(second.code, "unknown_type");
    server.await.unwrap();
}

#[tokio::test]
async fn catch_up_pages_forward_until_no_more() {
    let (base, server) = fake_server(30, |mut ws| async move {
        for (after, seqs, more) in [
            (0, vec![1, 2], true),
            (2, vec![3, 4], true),
            (4, vec![5], false),
        ] {
            let request = recv_frame(&mut ws).await;
            assert_eq!(request["type"], "history");
            assert_eq!(request["conversation"], 7);
            assert_eq!(request["after"], after);
            assert_eq!(request["limit"], 2);
            let events: Vec<Value> = seqs.into_iter().map(message).collect();
            let data = json!({"events": events, "more": more});
            send_json(
                &mut ws,
                json!({"type": "ok", "v": 1, "id": request["id"], "data": data}),
            )
            .await;
        }
        close_with(&mut ws, 1000, "").await;
    })
    .await;
    let (conn, _) = Connection::connect_with(&base, "tok", options())
        .await
        .unwrap();
    let events = conn.catch_up(ConversationId(7), Seq(0), 2).await.unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq().0).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    server.await.unwrap();
}

#[tokio::test]
async fn unanswered_request_times_out_and_a_late_answer_is_harmless() {
    let (base, server) = fake_server(30, |mut ws| async move {
        let request = recv_frame(&mut ws).await;
        let late = recv_frame(&mut ws).await;
        let data = json!({"conversation": 7, "seq": 9, "message_id": 1, "server_time": 5});
        send_json(
            &mut ws,
            json!({"type": "ok", "v": 1, "id": request["id"], "data": {}}),
        )
        .await;
        send_json(
            &mut ws,
            json!({"type": "ok", "v": 1, "id": late["id"], "data": data}),
        )
        .await;
        close_with(&mut ws, 1000, "").await;
    })
    .await;
    let quick = ConnectOptions {
        heartbeat: false,
        request_timeout: Duration::from_millis(100),
    };
    let (conn, _) = Connection::connect_with(&base, "tok", quick).await.unwrap();
    let err = conn.ping().await.unwrap_err();
    assert!(matches!(err, ClientError::Timeout), "{err:?}");
    // The next request still gets its own answer, not the stale one.
    let ack = conn.recall(ConversationId(7), Seq(8)).await.unwrap();
    assert_eq!(ack.seq, Seq(9));
    server.await.unwrap();
}

#[tokio::test]
async fn heartbeat_pings_without_id_at_a_third_of_the_interval() {
    // heartbeat_secs 3 gives the shortest period, one second.
    let (base, server) = fake_server(3, |mut ws| async move {
        let ping = recv_frame(&mut ws).await;
        assert_eq!(ping, json!({"v": 1, "type": "ping"}));
        close_with(&mut ws, 1000, "").await;
    })
    .await;
    let heartbeat = ConnectOptions {
        heartbeat: true,
        request_timeout: SHORT,
    };
    let (conn, _) = Connection::connect_with(&base, "tok", heartbeat)
        .await
        .unwrap();
    tokio::time::timeout(SHORT, server).await.unwrap().unwrap();
    assert_eq!(conn.close_info().map(|c| c.0), Some(1000));
}

#[tokio::test]
async fn dropping_the_last_clone_closes_the_socket_normally() {
    let (base, server) = fake_server(30, |mut ws| async move {
        match ws.next().await.unwrap().unwrap() {
            Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Normal),
            other => panic!("expected a close, got {other:?}"),
        }
    })
    .await;
    let (conn, _) = Connection::connect_with(&base, "tok", options())
        .await
        .unwrap();
    let clone = conn.clone();
    drop(conn);
    drop(clone);
    tokio::time::timeout(SHORT, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn explicit_close_is_answered_and_recorded() {
    let (base, server) = fake_server(30, |mut ws| async move {
        // tungstenite answers the client's close by itself while we read.
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    let (conn, _) = Connection::connect_with(&base, "tok", options())
        .await
        .unwrap();
    conn.close();
    assert!(conn.next_event_timeout(SHORT).await.unwrap().is_none());
    assert_eq!(conn.close_info().map(|c| c.0), Some(1000));
    server.await.unwrap();
}
