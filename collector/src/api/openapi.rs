//! The OpenAPI 3 document, generated from the handlers' annotations and the types they
//! take and answer, so it cannot drift from the code. CI runs schemathesis against it.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::routes::{activity, auth, containers, hosts, join_tokens, profiles, resources, users};

#[derive(OpenApi)]
#[openapi(
    info(title = "Dockermon API", description = "Fleet-wide Docker monitoring: hosts, containers, stats, activity, users."),
    paths(
        auth::login, auth::refresh, auth::logout, auth::me, auth::update_me, auth::change_password,
        auth::clear_locks,
        users::list, users::create, users::one, users::update,
        hosts::list, hosts::one, hosts::delete, hosts::images, hosts::volumes,
        hosts::networks, hosts::usage, hosts::latest_usage, hosts::latest_stats,
        join_tokens::create, join_tokens::list, join_tokens::revoke,
        containers::list, containers::one, containers::stats, containers::act,
        activity::list,
        profiles::start, profiles::list, profiles::one, profiles::stop, profiles::samples,
        resources::apply, resources::list, resources::read, resources::remove,
    ),
    modifiers(&BearerAuth, &CommonErrors),
    tags(
        (name = "auth", description = "Signing in and the signed-in user"),
        (name = "users", description = "People (admins only)"),
        (name = "hosts", description = "Monitored Docker hosts and what is on them"),
        (name = "containers", description = "Containers and their stats"),
        (name = "activity", description = "Docker events and people's actions"),
        (name = "profiles", description = "1-second profiles of one container"),
        (name = "resources", description = "DockerHost and ProfileSession resources, without Kubernetes"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Answers any operation can give, documented once here rather than on every handler:
/// 503 when the database is unavailable, and for operations with a body, 413 (too large)
/// and 415 (not JSON).
struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, ResponseBuilder, content::ContentBuilder};
        let error = |description: &str| -> RefOr<utoipa::openapi::Response> {
            let content = ContentBuilder::new()
                .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                .build();
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content("application/json", content)
                    .build(),
            )
        };
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.patch,
                &mut item.delete,
                &mut item.put,
            ]
            .into_iter()
            .flatten()
            {
                let responses = &mut operation.responses.responses;
                responses.insert(
                    "503".into(),
                    error("the database is unavailable; see Retry-After"),
                );
                if operation.request_body.is_some() {
                    responses.insert("413".into(), error("the body is larger than 64 KiB"));
                    responses.insert("415".into(), error("the body is not JSON"));
                }
            }
        }
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
