//! The OpenAPI 3 document of the REST API, generated from the handlers'
//! annotations (`GET /api/v1/openapi.json`).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::rest;

#[derive(OpenApi)]
#[openapi(
    info(title = "qun", description = "qun's REST API. Live events and chat also travel over the WebSocket at /api/v1/ws (docs/protocol.md)."),
    paths(
        rest::register, rest::login, rest::sessions, rest::logout, rest::revoke_session,
        rest::change_password, rest::update_profile, rest::profile,
        rest::friends, rest::update_friend, rest::remove_friend, rest::like,
        rest::friend_requests, rest::request_friend, rest::accept_friend, rest::refuse_friend,
        rest::categories, rest::create_category, rest::rename_category, rest::delete_category,
        rest::blacklist, rest::block, rest::unblock,
        rest::conversations, rest::direct, rest::history, rest::send, rest::recall, rest::mark_read,
    ),
    components(schemas(qun_wire::ErrorBody, qun_wire::ConversationEvent, qun_wire::Segment)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as JSON.
pub fn openapi_json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_else(|e| {
        tracing::error!(error = %e, "openapi document not serialisable");
        "{}".into()
    })
}
