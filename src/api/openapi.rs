//! The API's OpenAPI document, served at `GET /openapi.json`: generated with
//! utoipa from the wire types ([`super::types`]) and each handler's
//! `#[utoipa::path]` description, so it cannot say something the server does
//! not. utoipa writes OpenAPI 3.1.
//!
//! Tests check that the document describes every route the router serves
//! ([`super::routes`]) and no other, and that every schema it refers to is in it.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

use super::server;
use super::types::ErrorAnswer;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "pgmaint control API",
        description = "Maintenance control plane for self-hosted PostgreSQL fleets. Served on a Unix socket \
            (mode 0600, or 0660 to a group) and optionally on TCP, where every request needs \
            `Authorization: Bearer <token>`. Errors are `{\"error\": \"...\"}`."
    ),
    paths(
        server::list_databases,
        server::create_database,
        server::adopt_database,
        server::database_info,
        server::destroy_database,
        server::require_maintenance,
        server::show_maintenance,
        server::set_window,
        server::set_labels,
        server::run_maintenance,
        server::history,
        server::wait_idle,
        server::copy_database,
        server::upgrade_database,
        server::unfollow_database,
        server::promote_database,
        server::rotate_credentials,
        server::create_app,
        server::app_maintenance,
        server::set_app_maintenance,
        server::attach,
        server::show_config,
        server::set_config,
        server::unset_config,
        server::releases,
        server::release_info,
        server::rollback,
        server::list_rollouts,
        server::create_rollout,
        server::show_rollout,
        server::act_on_rollout,
        server::plan_rollout,
        server::openapi_document,
        server::render_metrics,
    ),
    components(schemas(ErrorAnswer)),
    modifiers(&BearerAndCommonErrors)
)]
struct ApiDoc;

/// The document.
pub fn document() -> Document {
    ApiDoc::openapi()
}

/// The bearer scheme of the TCP listener (the Unix socket needs none), and
/// the 401 and 500 answers every operation can give.
struct BearerAndCommonErrors;

impl Modify for BearerAndCommonErrors {
    fn modify(&self, doc: &mut Document) {
        doc.components.get_or_insert_with(Default::default).add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        doc.security = Some(vec![SecurityRequirement::default(), SecurityRequirement::new("bearer", Vec::<String>::new())]);
        for item in doc.paths.paths.values_mut() {
            for operation in [&mut item.get, &mut item.put, &mut item.post, &mut item.delete].into_iter().flatten() {
                let responses = &mut operation.responses.responses;
                responses.entry("401".into()).or_insert_with(|| error("Missing or wrong bearer token (TCP listener only)"));
                responses.entry("500".into()).or_insert_with(|| error("Internal error"));
            }
        }
    }
}

fn error(description: &str) -> RefOr<Response> {
    let content = ContentBuilder::new().schema(Some(Ref::from_schema_name(ErrorAnswer::name()))).build();
    ResponseBuilder::new().description(description).content("application/json", content).build().into()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn documents_every_served_route_and_no_other() {
        let doc = serde_json::to_value(document()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);
        let served: BTreeSet<(String, String)> = super::super::routes().iter().map(|r| (r.verb.as_str().to_string(), r.path.to_string())).collect();
        let methods = ["get", "put", "post", "delete", "patch", "head", "options", "trace"];
        let documented: BTreeSet<(String, String)> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| methods.iter().filter(|m| item[**m].is_object()).map(move |m| (m.to_string(), path.clone())))
            .collect();
        assert_eq!(served, documented);
        for (method, path) in &served {
            let responses = doc["paths"][path][method]["responses"].as_object().unwrap();
            assert!(responses.keys().any(|code| code.starts_with('2')), "{method} {path} has no success answer");
            assert!(responses.contains_key("401") && responses.contains_key("500"), "{method} {path} lacks the common errors");
        }
    }

    #[test]
    fn every_reference_resolves() {
        let doc = serde_json::to_value(document()).unwrap();
        let text = doc.to_string();
        let mut references = 0;
        for reference in text.split("\"#/components/schemas/").skip(1) {
            let name = &reference[..reference.find('"').unwrap()];
            assert!(doc["components"]["schemas"][name].is_object(), "dangling $ref {name}");
            references += 1;
        }
        assert!(references > 20, "only {references} references: the schemas are not shared");
        // The facts the CLI reads are in the schemas, not only in prose.
        let schemas = &doc["components"]["schemas"];
        assert!(schemas["RunReportBody"]["properties"]["postponed_because"].is_object(), "{}", schemas["RunReportBody"]);
        assert!(schemas["ReleaseOutcome"].to_string().contains("rolled_back_to"), "{}", schemas["ReleaseOutcome"]);
        assert!(schemas["FollowerFate"]["properties"]["fate"].is_object(), "{}", schemas["FollowerFate"]);
    }
}
