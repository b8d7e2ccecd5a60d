//! The OpenAPI 3 document of the REST API, generated from the handlers'
//! annotations (`GET /api/v1/openapi.json`).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{rest, rest_groups};

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
        rest_groups::create, rest_groups::search, rest_groups::mine, rest_groups::get,
        rest_groups::update, rest_groups::dissolve, rest_groups::tier, rest_groups::transfer,
        rest_groups::mute_all, rest_groups::join, rest_groups::leave, rest_groups::members,
        rest_groups::member_changes, rest_groups::me, rest_groups::kick, rest_groups::unban,
        rest_groups::mute, rest_groups::role, rest_groups::title, rest_groups::card,
        rest_groups::invite, rest_groups::create_link, rest_groups::join_link,
        rest_groups::join_requests, rest_groups::my_join_requests, rest_groups::review,
        rest_groups::answer, rest_groups::announcements, rest_groups::announce,
        rest_groups::edit_announcement, rest_groups::delete_announcement, rest_groups::confirm,
        rest_groups::confirmations, rest_groups::essences, rest_groups::set_essence,
        rest_groups::unset_essence, rest_groups::receipts, rest_groups::honours,
        rest_groups::at_all_quota, rest_groups::temp_session,
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
