//! The REST half of the client: one typed method per `/api/v1` route.

use std::time::Duration;

use qun_wire::{
    AcceptFriendRequest, Ack, BlockedView, CategoryId, CategoryName, CategoryView,
    ChangePasswordRequest, ConversationId, ConversationList, ConversationView, DeviceKind,
    DirectRequest, FriendPatch, FriendRequestCreate, FriendRequestId, FriendRequestList,
    FriendRequestView, FriendView, Health, HistoryPage, LikeResult, LoginRequest, LoginResponse,
    ProfilePatch, ProfileView, ReadRequest, ReadState, RegisterRequest, RegisterResponse,
    RevokedCount, Segment, SendRequest, Seq, SessionView, TempSessionRequest, UserId,
};
use reqwest::header::CONTENT_TYPE;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::ClientError;

mod groups;

/// How long one REST call may take before it fails with [`ClientError::Timeout`].
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A body for [`Client::raw`], which sends whatever it is given, valid or not.
#[derive(Debug, Clone)]
pub enum RawBody {
    /// A JSON value, sent as `application/json`.
    Json(serde_json::Value),
    /// Arbitrary text sent as `application/json` (for malformed-body tests).
    Text(String),
    /// Arbitrary text with a chosen content type.
    Typed {
        /// The `Content-Type` header.
        content_type: String,
        /// The body.
        body: String,
    },
}

/// A REST client bound to one server and, optionally, one session token.
///
/// Cloning is cheap and shares the connection pool, so a load generator can
/// keep one `Client` per simulated user: `base.clone().with_token(token)`.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    /// A client for the server at `base_url` (e.g. `http://127.0.0.1:8080`),
    /// without credentials.
    pub fn new(base_url: &str) -> Self {
        // Building fails only when a TLS backend cannot initialise; this crate
        // enables none, and the default client is the same minus the timeout.
        let http = reqwest::Client::builder()
            .timeout(DEFAULT_TIMEOUT)
            .build()
            .unwrap_or_default();
        Client {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            token: None,
        }
    }

    /// The same client, authenticating with `token` (from [`Client::login`]).
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Sets or clears the bearer token used by later calls.
    pub fn set_token(&mut self, token: Option<String>) {
        self.token = token;
    }

    /// The bearer token in use, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The server's base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    // ---- accounts and sessions ----

    /// `POST /api/v1/accounts`: creates an account and returns its qun number.
    pub async fn register(
        &self,
        nickname: &str,
        password: &str,
    ) -> Result<RegisterResponse, ClientError> {
        let body = RegisterRequest {
            nickname: nickname.to_owned(),
            password: password.to_owned(),
        };
        self.call(Method::POST, "/api/v1/accounts", Some(&body))
            .await
    }

    /// `POST /api/v1/sessions`: logs a device in. The client itself is not
    /// changed; use [`Client::with_token`] with the answer's token.
    pub async fn login(
        &self,
        user_id: UserId,
        password: &str,
        device_kind: DeviceKind,
        device_name: &str,
    ) -> Result<LoginResponse, ClientError> {
        let body = LoginRequest {
            user_id,
            password: password.to_owned(),
            device_kind,
            device_name: device_name.to_owned(),
        };
        self.call(Method::POST, "/api/v1/sessions", Some(&body))
            .await
    }

    /// `GET /api/v1/sessions`: the account's logged-in devices.
    pub async fn sessions(&self) -> Result<Vec<SessionView>, ClientError> {
        self.get("/api/v1/sessions").await
    }

    /// `DELETE /api/v1/sessions/current`: logs this session out.
    pub async fn logout(&self) -> Result<(), ClientError> {
        self.call_empty(Method::DELETE, "/api/v1/sessions/current", None::<&()>)
            .await
    }

    /// `DELETE /api/v1/sessions/{session_id}`: logs another device out.
    pub async fn revoke_session(&self, session_id: &str) -> Result<(), ClientError> {
        let path = format!("/api/v1/sessions/{}", encode_segment(session_id));
        self.call_empty(Method::DELETE, &path, None::<&()>).await
    }

    /// `PUT /api/v1/account/password`: changes the password, revoking the
    /// account's other sessions.
    pub async fn change_password(
        &self,
        old_password: &str,
        new_password: &str,
    ) -> Result<RevokedCount, ClientError> {
        let body = ChangePasswordRequest {
            old_password: old_password.to_owned(),
            new_password: new_password.to_owned(),
        };
        self.call(Method::PUT, "/api/v1/account/password", Some(&body))
            .await
    }

    // ---- profiles ----

    /// `PATCH /api/v1/account/profile`: changes the caller's own profile.
    pub async fn update_profile(&self, patch: &ProfilePatch) -> Result<ProfileView, ClientError> {
        self.call(Method::PATCH, "/api/v1/account/profile", Some(patch))
            .await
    }

    /// `GET /api/v1/users/{user_id}`: a public profile.
    pub async fn profile(&self, user_id: UserId) -> Result<ProfileView, ClientError> {
        self.get(&format!("/api/v1/users/{user_id}")).await
    }

    // ---- friends ----

    /// `GET /api/v1/friends`: the caller's friends with presence and remarks.
    pub async fn friends(&self) -> Result<Vec<FriendView>, ClientError> {
        self.get("/api/v1/friends").await
    }

    /// `PATCH /api/v1/friends/{user_id}`: changes a friend's remark or category.
    pub async fn update_friend(
        &self,
        user_id: UserId,
        patch: &FriendPatch,
    ) -> Result<FriendView, ClientError> {
        self.call(
            Method::PATCH,
            &format!("/api/v1/friends/{user_id}"),
            Some(patch),
        )
        .await
    }

    /// `DELETE /api/v1/friends/{user_id}`: ends a friendship.
    pub async fn remove_friend(&self, user_id: UserId) -> Result<(), ClientError> {
        self.call_empty(
            Method::DELETE,
            &format!("/api/v1/friends/{user_id}"),
            None::<&()>,
        )
        .await
    }

    /// `POST /api/v1/friends/{user_id}/likes`: likes a friend's profile.
    pub async fn like(&self, user_id: UserId) -> Result<LikeResult, ClientError> {
        self.call(
            Method::POST,
            &format!("/api/v1/friends/{user_id}/likes"),
            None::<&()>,
        )
        .await
    }

    /// `GET /api/v1/friend-requests`: pending requests to and from the caller.
    pub async fn friend_requests(&self) -> Result<FriendRequestList, ClientError> {
        self.get("/api/v1/friend-requests").await
    }

    /// `POST /api/v1/friend-requests`: asks `to` to become a friend.
    pub async fn send_friend_request(
        &self,
        to: UserId,
        message: &str,
    ) -> Result<FriendRequestView, ClientError> {
        let body = FriendRequestCreate {
            to,
            message: message.to_owned(),
        };
        self.call(Method::POST, "/api/v1/friend-requests", Some(&body))
            .await
    }

    /// `POST /api/v1/friend-requests/{id}/accept`: accepts a request sent to the caller.
    pub async fn accept_friend_request(
        &self,
        id: FriendRequestId,
        accept: &AcceptFriendRequest,
    ) -> Result<FriendView, ClientError> {
        let path = format!("/api/v1/friend-requests/{id}/accept");
        self.call(Method::POST, &path, Some(accept)).await
    }

    /// `POST /api/v1/friend-requests/{id}/refuse`: refuses a request sent to the caller.
    pub async fn refuse_friend_request(
        &self,
        id: FriendRequestId,
    ) -> Result<FriendRequestView, ClientError> {
        let path = format!("/api/v1/friend-requests/{id}/refuse");
        self.call(Method::POST, &path, None::<&()>).await
    }

    // ---- friend categories ----

    /// `GET /api/v1/friend-categories`: the caller's categories, default included.
    pub async fn categories(&self) -> Result<Vec<CategoryView>, ClientError> {
        self.get("/api/v1/friend-categories").await
    }

    /// `POST /api/v1/friend-categories`: creates a category.
    pub async fn create_category(&self, name: &str) -> Result<CategoryView, ClientError> {
        let body = CategoryName {
            name: name.to_owned(),
        };
        self.call(Method::POST, "/api/v1/friend-categories", Some(&body))
            .await
    }

    /// `PATCH /api/v1/friend-categories/{id}`: renames a category.
    pub async fn rename_category(
        &self,
        id: CategoryId,
        name: &str,
    ) -> Result<CategoryView, ClientError> {
        let body = CategoryName {
            name: name.to_owned(),
        };
        self.call(
            Method::PATCH,
            &format!("/api/v1/friend-categories/{id}"),
            Some(&body),
        )
        .await
    }

    /// `DELETE /api/v1/friend-categories/{id}`: deletes a category.
    pub async fn delete_category(&self, id: CategoryId) -> Result<(), ClientError> {
        let path = format!("/api/v1/friend-categories/{id}");
        self.call_empty(Method::DELETE, &path, None::<&()>).await
    }

    // ---- blacklist ----

    /// `GET /api/v1/blacklist`: the users the caller blocked.
    pub async fn blacklist(&self) -> Result<Vec<BlockedView>, ClientError> {
        self.get("/api/v1/blacklist").await
    }

    /// `PUT /api/v1/blacklist/{user_id}`: blocks a user.
    pub async fn block(&self, user_id: UserId) -> Result<(), ClientError> {
        self.call_empty(
            Method::PUT,
            &format!("/api/v1/blacklist/{user_id}"),
            None::<&()>,
        )
        .await
    }

    /// `DELETE /api/v1/blacklist/{user_id}`: unblocks a user.
    pub async fn unblock(&self, user_id: UserId) -> Result<(), ClientError> {
        self.call_empty(
            Method::DELETE,
            &format!("/api/v1/blacklist/{user_id}"),
            None::<&()>,
        )
        .await
    }

    // ---- conversations and messages ----

    /// `GET /api/v1/conversations`: all conversations with sync and unread state.
    pub async fn conversations(&self) -> Result<ConversationList, ClientError> {
        self.get("/api/v1/conversations").await
    }

    /// `POST /api/v1/conversations/direct`: the 1:1 conversation with a friend.
    pub async fn direct_conversation(
        &self,
        user_id: UserId,
    ) -> Result<ConversationView, ClientError> {
        let body = DirectRequest { user_id };
        self.call(Method::POST, "/api/v1/conversations/direct", Some(&body))
            .await
    }

    /// `POST /api/v1/temp-sessions`: a temporary 1:1 conversation with a member
    /// of a group the caller is in, for talking to someone who is not a friend.
    pub async fn open_temp_session(
        &self,
        user_id: UserId,
    ) -> Result<ConversationView, ClientError> {
        let body = TempSessionRequest { user_id };
        self.call(Method::POST, "/api/v1/temp-sessions", Some(&body))
            .await
    }

    /// `GET /api/v1/conversations/{id}/events`: a page of history, forward
    /// after `after` or backward before `before`.
    pub async fn history(
        &self,
        conversation: ConversationId,
        after: Option<Seq>,
        before: Option<Seq>,
        limit: Option<u32>,
    ) -> Result<HistoryPage, ClientError> {
        let query = history_query(after, before, limit);
        self.get(&format!(
            "/api/v1/conversations/{conversation}/events{query}"
        ))
        .await
    }

    /// `POST /api/v1/conversations/{id}/messages`: sends a message. Retrying
    /// with the same `client_msg_id` returns the first acknowledgement.
    pub async fn send(
        &self,
        conversation: ConversationId,
        client_msg_id: &str,
        segments: Vec<Segment>,
    ) -> Result<Ack, ClientError> {
        let body = SendRequest {
            client_msg_id: client_msg_id.to_owned(),
            segments,
        };
        let path = format!("/api/v1/conversations/{conversation}/messages");
        self.call(Method::POST, &path, Some(&body)).await
    }

    /// `POST /api/v1/conversations/{id}/events/{seq}/recall`: recalls a message.
    pub async fn recall(&self, conversation: ConversationId, seq: Seq) -> Result<Ack, ClientError> {
        let path = format!("/api/v1/conversations/{conversation}/events/{seq}/recall");
        self.call(Method::POST, &path, None::<&()>).await
    }

    /// `PUT /api/v1/conversations/{id}/read`: moves the read position forward.
    pub async fn read(
        &self,
        conversation: ConversationId,
        seq: Seq,
    ) -> Result<ReadState, ClientError> {
        let path = format!("/api/v1/conversations/{conversation}/read");
        self.call(Method::PUT, &path, Some(&ReadRequest { seq }))
            .await
    }

    // ---- operations ----

    /// `GET /healthz`: whether the process is alive.
    pub async fn health(&self) -> Result<Health, ClientError> {
        self.get("/healthz").await
    }

    /// `GET /readyz`: whether the server can serve requests (storage reachable).
    pub async fn ready(&self) -> Result<Health, ClientError> {
        self.get("/readyz").await
    }

    // ---- plumbing ----

    /// Sends any request and returns the status and body text without judging
    /// either, so tests can send malformed bodies and check exact statuses.
    /// `method` is an HTTP method name (`"GET"`, `"POST"`...); `path` starts
    /// with `/`. The bearer token is sent if one is set.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<RawBody>,
    ) -> Result<(u16, String), ClientError> {
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|e| ClientError::Transport(format!("bad method {method:?}: {e}")))?;
        let mut request = self.request(method, path);
        request = match body {
            None => request,
            Some(RawBody::Json(value)) => request.json(&value),
            Some(RawBody::Text(text)) => {
                request.header(CONTENT_TYPE, "application/json").body(text)
            }
            Some(RawBody::Typed { content_type, body }) => {
                request.header(CONTENT_TYPE, content_type).body(body)
            }
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(transport)?;
        Ok((status, text))
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends a request and returns the body of a 2xx answer, or the error answer.
    async fn exchange<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Vec<u8>, ClientError> {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport)?;
        if status.is_success() {
            Ok(bytes.to_vec())
        } else {
            Err(ClientError::from_answer(status.as_u16(), &bytes))
        }
    }

    async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let bytes = self.exchange(method, path, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            ClientError::Decode(format!("{path}: {e}: {}", String::from_utf8_lossy(&bytes)))
        })
    }

    async fn call_empty<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<(), ClientError> {
        self.exchange(method, path, body).await.map(|_| ())
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::GET, path, None::<&()>).await
    }
}

fn transport(e: reqwest::Error) -> ClientError {
    if e.is_timeout() {
        ClientError::Timeout
    } else {
        ClientError::transport(&e)
    }
}

/// The query string of a history request, empty when no bound is given.
fn history_query(after: Option<Seq>, before: Option<Seq>, limit: Option<u32>) -> String {
    query_string(&[
        ("after", after.map(|s| s.to_string())),
        ("before", before.map(|s| s.to_string())),
        ("limit", limit.map(|n| n.to_string())),
    ])
}

/// `?name=value&...` for the parameters that have a value, percent-encoded;
/// empty when none has.
fn query_string(params: &[(&str, Option<String>)]) -> String {
    let params: Vec<String> = params
        .iter()
        .filter_map(|(name, value)| {
            let value = value.as_deref()?;
            Some(format!("{name}={}", encode_segment(value)))
        })
        .collect();
    if params.is_empty() {
        String::new()
    } else {
        format!("?{}", params.join("&"))
    }
}

/// Percent-encodes one path segment or query value: everything but RFC 3986
/// unreserved characters.
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[test]
    fn history_query_lists_only_given_bounds() {
        assert_eq!(history_query(None, None, None), "");
        assert_eq!(
            history_query(Some(Seq(5)), None, Some(20)),
            "?after=5&limit=20"
        );
        assert_eq!(history_query(None, Some(Seq(9)), None), "?before=9");
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            query_string(&[
                ("keyword", Some("rust & go".into())),
                ("number", None),
                ("category", Some("游戏".into())),
            ]),
            "?keyword=rust%20%26%20go&category=%E6%B8%B8%E6%88%8F"
        );
        assert_eq!(query_string(&[("limit", None)]), "");
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(encode_segment("abc-DEF_1.~"), "abc-DEF_1.~");
        assert_eq!(encode_segment("a/b c?"), "a%2Fb%20c%3F");
    }

    #[test]
    fn base_url_loses_its_trailing_slash() {
        assert_eq!(Client::new("http://h:1/").base_url(), "http://h:1");
    }

    /// Serves one HTTP request with a canned answer and returns what was asked.
    pub(super) async fn one_shot_server(
        status: &'static str,
        body: &'static str,
    ) -> (String, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            // Headers end with a blank line; bodies in these tests are small
            // enough to arrive with them or right after.
            loop {
                let n = socket.read(&mut buf).await.unwrap();
                seen.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&seen);
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if seen.len() >= end + 4 + length {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            let answer = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(answer.as_bytes()).await.unwrap();
            socket.shutdown().await.unwrap();
            String::from_utf8_lossy(&seen).into_owned()
        });
        (base, task)
    }

    #[tokio::test]
    async fn typed_call_sends_bearer_and_json_and_decodes_answer() {
        let (base, server) = one_shot_server("201 Created", r#"{"user_id":10001}"#).await;
        let client = Client::new(&base).with_token("tok");
        let answer = client.register("alice", "secret-pw").await.unwrap();
        assert_eq!(answer.user_id, UserId(10001));
        let request = server.await.unwrap();
        assert!(
            request.starts_with("POST /api/v1/accounts HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request
                .to_ascii_lowercase()
                .contains("authorization: bearer tok\r\n"),
            "{request}"
        );
        assert!(
            request.ends_with(r#"{"nickname":"alice","password":"secret-pw"}"#),
            "{request}"
        );
    }

    #[tokio::test]
    async fn error_answers_become_api_errors() {
        let (base, server) = one_shot_server(
            "429 Too Many Requests",
            r#"{"code":"rate_limited","message":"slow down","retry_after_secs":7}"#,
        )
        .await;
        let err = Client::new(&base).friends().await.unwrap_err();
        assert_eq!(err.code(), Some("rate_limited"));
        assert_eq!(err.status(), Some(429));
        assert_eq!(err.body().and_then(|b| b.retry_after_secs), Some(7));
        assert!(server
            .await
            .unwrap()
            .starts_with("GET /api/v1/friends HTTP/1.1\r\n"));
    }

    #[tokio::test]
    async fn raw_sends_malformed_text_and_reports_status() {
        let (base, server) = one_shot_server("400 Bad Request", "oops").await;
        let (status, body) = Client::new(&base)
            .raw(
                "POST",
                "/api/v1/accounts",
                Some(RawBody::Text("{not json".into())),
            )
            .await
            .unwrap();
        assert_eq!((status, body.as_str()), (400, "oops"));
        let request = server.await.unwrap();
        assert!(request
            .to_ascii_lowercase()
            .contains("content-type: application/json\r\n"));
        assert!(request.ends_with("{not json"));
    }

    #[tokio::test]
    async fn refused_connection_is_a_transport_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let err = Client::new(&base).health().await.unwrap_err();
        assert!(matches!(err, ClientError::Transport(_)), "{err:?}");
    }
}
