//! Extractors whose rejections are typed API errors instead of axum's plain text.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::{header, request::Parts, StatusCode};
use qun_domain::Caller;
use qun_wire::codes;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::AppState;

/// A JSON object body; bad JSON, a non-object or bad fields become
/// `invalid_json` / `invalid_field`, an oversized body `too_large`.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let bytes = json_body(req, state).await?;
        parse_object(&bytes).map(ApiJson)
    }
}

/// Like [`ApiJson`], but an empty body means the type's default (for bodies
/// whose fields are all optional).
pub struct ApiJsonOrDefault<T>(pub T);

impl<T: DeserializeOwned + Default> FromRequest<AppState> for ApiJsonOrDefault<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let empty = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v == "0")
            || (req.headers().get(header::CONTENT_TYPE).is_none()
                && !req.headers().contains_key(header::TRANSFER_ENCODING));
        if empty {
            let bytes = Bytes::from_request(req, state)
                .await
                .map_err(|e| ApiError::invalid_json(e.body_text()))?;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(ApiJsonOrDefault(T::default()));
            }
            return parse_object(&bytes).map(ApiJsonOrDefault);
        }
        let bytes = json_body(req, state).await?;
        parse_object(&bytes).map(ApiJsonOrDefault)
    }
}

/// The body of a request that must be JSON, within the body limit.
async fn json_body(req: Request, state: &AppState) -> Result<Bytes, ApiError> {
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            let m = m.trim();
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        });
    if !json {
        return Err(ApiError::invalid_json(
            "expected a body with Content-Type: application/json",
        ));
    }
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            let max = state.config.max_body_bytes;
            let mut api = ApiError::new(
                e.status(),
                codes::TOO_LARGE,
                format!("request body larger than {max} bytes"),
            );
            api.body.limit = Some("max_body_bytes".into());
            api.body.max = Some(max as u64);
            api
        } else {
            ApiError::invalid_json(e.body_text())
        }
    })
}

/// Parses a JSON object into `T`. Arrays and scalars are refused even where
/// serde would accept a sequence for a struct.
pub fn parse_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(ApiError::invalid_json("the body must be a JSON object"));
    }
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::invalid_field(e.to_string()),
        _ => ApiError::invalid_json(format!("not valid JSON: {e}")),
    })
}

/// Path parameters; a malformed one becomes `invalid_field`.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(value) = Path::<T>::from_request_parts(parts, state).await?;
        Ok(ApiPath(value))
    }
}

/// Query parameters; a malformed one becomes `invalid_field`.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(value) = Query::<T>::from_request_parts(parts, state).await?;
        Ok(ApiQuery(value))
    }
}

/// The caller behind `Authorization: Bearer <token>`, checked on every request.
pub struct Auth(pub Caller);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    codes::UNAUTHENTICATED,
                    "send the session token as Authorization: Bearer <token>",
                )
            })?;
        Ok(Auth(state.qun.authenticate(token.trim()).await?))
    }
}
