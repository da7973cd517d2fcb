//! The API's OpenAPI 3.0 document, written by hand and served at `GET /openapi.json`.
//!
//! [`ROUTES`] lists every route the server answers; a unit test checks the
//! document describes each of them, and the integration test checks the
//! served document against the routes the verbs use.

use serde_json::{json, Value};

/// Every route of the API as `(method, path)`, in OpenAPI's path syntax.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/v1/databases"),
    ("post", "/v1/databases"),
    ("get", "/v1/databases/{name}"),
    ("delete", "/v1/databases/{name}"),
    ("post", "/v1/databases/{name}/maintenance"),
    ("get", "/v1/databases/{name}/maintenance"),
    ("put", "/v1/databases/{name}/window"),
    ("post", "/v1/databases/{name}/maintenance/run"),
    ("get", "/v1/databases/{name}/maintenance/history"),
    ("post", "/v1/databases/{name}/wait"),
    ("post", "/v1/databases/{name}/copy"),
    ("post", "/v1/databases/{name}/upgrade"),
    ("post", "/v1/databases/{name}/unfollow"),
    ("post", "/v1/databases/{name}/promote"),
    ("post", "/v1/apps"),
    ("put", "/v1/apps/{name}/maintenance"),
    ("get", "/v1/apps/{name}/maintenance"),
    ("post", "/v1/apps/{name}/attachments"),
    ("get", "/v1/apps/{name}/config"),
    ("put", "/v1/apps/{name}/config"),
    ("delete", "/v1/apps/{name}/config/{key}"),
    ("get", "/v1/apps/{name}/releases"),
    ("get", "/v1/apps/{name}/releases/{version}"),
    ("post", "/v1/apps/{name}/rollback"),
    ("get", "/openapi.json"),
    ("get", "/metrics"),
];

fn schema(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn json_body(name: &str) -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": schema(name) } } })
}

fn ok(description: &str, body: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": body } } })
}

fn error(description: &str) -> Value {
    ok(description, schema("Error"))
}

fn name_param(what: &str) -> Value {
    json!({ "name": "name", "in": "path", "required": true, "description": what, "schema": { "type": "string" } })
}

/// Adds the errors every route of a kind can answer.
fn with_errors(mut responses: Value, codes: &[(&str, &str)]) -> Value {
    let map = responses.as_object_mut().expect("responses object");
    for (code, description) in codes {
        map.insert((*code).to_string(), error(description));
    }
    map.insert("401".into(), error("Missing or wrong bearer token (TCP listener only)"));
    map.insert("500".into(), error("Internal error"));
    responses
}

const NOT_FOUND: (&str, &str) = ("404", "Unknown database (`database NAME not found`) or app");
const BAD: (&str, &str) = ("400", "Bad input");

/// The document.
pub fn document() -> Value {
    let database = name_param("Database name");
    let app = name_param("App name");
    let mut doc = json!({
        "openapi": "3.0.3",
        "info": {
            "title": "pgmaint control API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Maintenance control plane for self-hosted PostgreSQL fleets. Served on a Unix socket \
                (mode 0600, or 0660 to a group) and optionally on TCP, where every request needs \
                `Authorization: Bearer <token>`. Errors are `{\"error\": \"...\"}`."
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": schemas()
        },
        "security": [ {}, { "bearer": [] } ],
        "paths": {
            "/v1/databases": {
                "get": {
                    "operationId": "listDatabases",
                    "summary": "List the fleet's databases",
                    "responses": with_errors(json!({ "200": ok("Databases", json!({ "type": "array", "items": schema("DatabaseSummary") })) }), &[])
                },
                "post": {
                    "operationId": "createDatabase",
                    "summary": "Create a database (a primary, or a follower with `follow`); answers once it is available",
                    "requestBody": json_body("CreateDatabase"),
                    "responses": with_errors(json!({ "201": ok("The new database's info", schema("DatabaseInfo")) }), &[BAD, NOT_FOUND, ("409", "A database of that name exists")])
                }
            },
            "/v1/databases/{name}": {
                "parameters": [database],
                "get": {
                    "operationId": "databaseInfo",
                    "summary": "The `info` block: plan, status, data size, following, HA, maintenance, window, endpoint",
                    "responses": with_errors(json!({ "200": ok("Info", schema("DatabaseInfo")) }), &[NOT_FOUND])
                },
                "delete": {
                    "operationId": "destroyDatabase",
                    "summary": "Destroy a database, its servers and records",
                    "parameters": [{ "name": "confirm", "in": "query", "required": true, "description": "Must repeat the database's name", "schema": { "type": "string" } }],
                    "responses": with_errors(json!({ "200": ok("Destroyed", json!({ "type": "object", "properties": { "destroyed": { "type": "string" } } })) }), &[NOT_FOUND, ("409", "Confirmation missing or wrong, or the database has followers")])
                }
            },
            "/v1/databases/{name}/maintenance": {
                "parameters": [database],
                "post": {
                    "operationId": "requireMaintenance",
                    "summary": "Record a required maintenance and plan it into the window",
                    "requestBody": json_body("RequireMaintenance"),
                    "responses": with_errors(json!({ "201": ok("The planned maintenance", schema("MaintenanceView")) }), &[BAD, NOT_FOUND, ("409", "A maintenance is already open")])
                },
                "get": {
                    "operationId": "showMaintenance",
                    "summary": "The pending maintenance and its one-line status",
                    "responses": with_errors(json!({ "200": ok("Status", schema("MaintenanceStatus")) }), &[NOT_FOUND])
                }
            },
            "/v1/databases/{name}/window": {
                "parameters": [database],
                "put": {
                    "operationId": "setWindow",
                    "summary": "Set the weekly window (4 hours) and re-plan the pending maintenance into it",
                    "requestBody": json_body("SetWindow"),
                    "responses": with_errors(json!({ "200": ok("The new window and status", schema("WindowStatus")) }), &[BAD, NOT_FOUND])
                }
            },
            "/v1/databases/{name}/maintenance/run": {
                "parameters": [database],
                "post": {
                    "operationId": "runMaintenance",
                    "summary": "Run the pending maintenance now and answer when it has finished; refused unless every attached app is in maintenance mode or `force` is set",
                    "requestBody": json_body("RunMaintenance"),
                    "responses": with_errors(json!({ "200": ok("The run's report", schema("RunReport")) }), &[NOT_FOUND, ("409", "Not in maintenance mode (use force), nothing required, or being run elsewhere")])
                }
            },
            "/v1/databases/{name}/maintenance/history": {
                "parameters": [database],
                "get": {
                    "operationId": "maintenanceHistory",
                    "summary": "Every maintenance of the database, newest first",
                    "responses": with_errors(json!({ "200": ok("History", json!({ "type": "array", "items": schema("HistoryEntry") })) }), &[NOT_FOUND])
                }
            },
            "/v1/databases/{name}/wait": {
                "parameters": [database],
                "post": {
                    "operationId": "waitIdle",
                    "summary": "Block until the database is not being created, prepared or maintained",
                    "requestBody": json_body("WaitIdle"),
                    "responses": with_errors(json!({ "200": ok("Idle", json!({ "type": "object", "properties": { "name": { "type": "string" }, "busy": { "type": "boolean" } } })) }), &[BAD, NOT_FOUND, ("409", "Still busy when the timeout passed")])
                }
            },
            "/v1/databases/{name}/copy": {
                "parameters": [database],
                "post": {
                    "operationId": "copyDatabase",
                    "summary": "Replace this database's data with a copy of another's; the source refuses writes (SQLSTATE 25006) while it runs",
                    "requestBody": json_body("CopyDatabase"),
                    "responses": with_errors(json!({ "200": {
                        "description": "Newline-delimited JSON events: `progress` lines, then one `done` (with the report) or `error` (with `error` and `status`)",
                        "content": { "application/x-ndjson": { "schema": schema("CopyEvent") } }
                    } }), &[BAD, NOT_FOUND, ("409", "Confirmation missing or wrong, or a follower named")])
                }
            },
            "/v1/databases/{name}/upgrade": {
                "parameters": [database],
                "post": {
                    "operationId": "upgradeDatabase",
                    "summary": "Change the plan: standard tier and up requires a `plan-change` maintenance onto a replacement built on the new plan (answered at once); essential copies the data into a new server at once, read-only meanwhile (answered when done)",
                    "requestBody": json_body("UpgradeDatabase"),
                    "responses": with_errors(json!({ "200": ok("The planned maintenance or the finished run", schema("UpgradeAnswer")) }), &[BAD, NOT_FOUND, ("409", "Already open maintenance, followers of a database going essential, or the run is held by another daemon")])
                }
            },
            "/v1/databases/{name}/unfollow": {
                "parameters": [database],
                "post": {
                    "operationId": "unfollowDatabase",
                    "summary": "A follower stops following for good and becomes a writable database (`Forked From` its leader)",
                    "requestBody": json_body("Unfollow"),
                    "responses": with_errors(json!({ "200": ok("The database", schema("DatabaseInfo")) }), &[BAD, NOT_FOUND, ("409", "Not a follower, confirmation wrong, or a maintenance open")])
                }
            },
            "/v1/databases/{name}/promote": {
                "parameters": [database],
                "post": {
                    "operationId": "promoteDatabase",
                    "summary": "Make the database an app's DATABASE_URL (release `Promote NAME`); the default-named pooler attachment moves with it; the previous primary's followers are listed, or repointed where they can follow",
                    "requestBody": json_body("PromoteDatabase"),
                    "responses": with_errors(json!({ "200": ok("The promotion", schema("Promotion")) }), &[BAD, NOT_FOUND, ("409", "Still a follower, or already the DATABASE_URL")])
                }
            },
            "/v1/apps": {
                "post": {
                    "operationId": "createApp",
                    "summary": "Create an app attached to a database as DATABASE_URL (release v1), with optional maintenance-mode hooks, env file and restart hook",
                    "requestBody": json_body("CreateApp"),
                    "responses": with_errors(json!({ "201": ok("The app", schema("AppView")) }), &[BAD, NOT_FOUND, ("409", "An app of that name exists")])
                }
            },
            "/v1/apps/{name}/maintenance": {
                "parameters": [app],
                "put": {
                    "operationId": "setAppMaintenance",
                    "summary": "Turn the app's maintenance mode on or off (running its hook)",
                    "requestBody": json_body("SetAppMaintenance"),
                    "responses": with_errors(json!({ "200": ok("The app", schema("AppView")) }), &[BAD, NOT_FOUND, ("409", "The hook failed")])
                },
                "get": {
                    "operationId": "appMaintenance",
                    "summary": "The app's maintenance mode",
                    "responses": with_errors(json!({ "200": ok("The app", schema("AppView")) }), &[NOT_FOUND])
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "responses": { "200": ok("OpenAPI 3.0 document", json!({ "type": "object" })) }
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics: pgmaint_maintenances{state}, pgmaint_outbox_depth, pgmaint_last_write_pause_ms, pgmaint_tick_seconds",
                    "responses": { "200": { "description": "Prometheus text exposition format", "content": { "text/plain": { "schema": { "type": "string" } } } } }
                }
            }
        }
    });
    if let Value::Object(paths) = release_paths(app) {
        doc["paths"].as_object_mut().expect("paths object").extend(paths);
    }
    if let Value::Object(schemas) = release_schemas() {
        doc["components"]["schemas"].as_object_mut().expect("schemas object").extend(schemas);
    }
    doc
}

const APP_NOT_FOUND: (&str, &str) = ("404", "Unknown app, database, config var or release");

/// The routes of releases: attachments, config, releases and rollback.
fn release_paths(app: Value) -> Value {
    let released = |description: &str| json!({ "200": ok(description, schema("ReleaseOutcome")) });
    json!({
        "/v1/apps/{name}/attachments": {
            "parameters": [app],
            "post": {
                "operationId": "attachDatabase",
                "summary": "Attach a database to the app as `NAME_URL` (default: the database's name upper-cased, `-` as `_`); a new release `Attach DB`",
                "requestBody": json_body("AttachDatabase"),
                "responses": with_errors(json!({ "201": ok("The new release", schema("ReleaseOutcome")) }), &[BAD, APP_NOT_FOUND, ("409", "The app already has an attachment of that name")])
            }
        },
        "/v1/apps/{name}/config": {
            "parameters": [app],
            "get": {
                "operationId": "showConfig",
                "summary": "The app's current config (its latest release's)",
                "responses": with_errors(json!({ "200": ok("Config", schema("ConfigView")) }), &[APP_NOT_FOUND])
            },
            "put": {
                "operationId": "setConfig",
                "summary": "Set config vars (others are kept); a new release `Set KEY1, KEY2`, then the env file and restart hook",
                "requestBody": json_body("SetConfig"),
                "responses": with_errors(released("The new release"), &[BAD, APP_NOT_FOUND])
            }
        },
        "/v1/apps/{name}/config/{key}": {
            "parameters": [app, { "name": "key", "in": "path", "required": true, "description": "Config var", "schema": { "type": "string" } }],
            "delete": {
                "operationId": "unsetConfig",
                "summary": "Unset a config var; a new release `Unset KEY`",
                "responses": with_errors(released("The new release"), &[APP_NOT_FOUND])
            }
        },
        "/v1/apps/{name}/releases": {
            "parameters": [app],
            "get": {
                "operationId": "listReleases",
                "summary": "The app's releases, newest first; `expired` ones cannot be rolled back to",
                "responses": with_errors(json!({ "200": ok("Releases", json!({ "type": "array", "items": schema("ReleaseSummary") })) }), &[APP_NOT_FOUND])
            }
        },
        "/v1/apps/{name}/releases/{version}": {
            "parameters": [app, { "name": "version", "in": "path", "required": true, "description": "`v3` or `3`", "schema": { "type": "string" } }],
            "get": {
                "operationId": "releaseInfo",
                "summary": "One release: change, who, when, and its config (null once expired)",
                "responses": with_errors(json!({ "200": ok("Release", schema("ReleaseInfo")) }), &[BAD, APP_NOT_FOUND])
            }
        },
        "/v1/apps/{name}/rollback": {
            "parameters": [app],
            "post": {
                "operationId": "rollback",
                "summary": "A new release `Rollback to vN` copying vN's config (the previous release's without a version); undoes no provisioning, warns about URLs of databases that no longer exist",
                "requestBody": json_body("Rollback"),
                "responses": with_errors(released("The new release"), &[BAD, APP_NOT_FOUND, ("409", "The release has expired, or there is none before the latest")])
            }
        }
    })
}

fn release_schemas() -> Value {
    let text = json!({ "type": "string" });
    let config = json!({ "type": "object", "additionalProperties": { "type": "string" } });
    let summary = json!({
        "app": text, "version": { "type": "integer" }, "release": { "type": "string", "example": "v3" },
        "change": { "type": "string", "example": "Set READ_ONLY" }, "made_by": text,
        "created_at": { "type": "string", "format": "date-time" }, "expired": { "type": "boolean" }
    });
    let mut info = summary.clone();
    info["config"] = json!({ "allOf": [config.clone()], "nullable": true, "description": "null once expired" });
    let mut outcome = info.clone();
    outcome["warnings"] = json!({ "type": "array", "items": text });
    outcome["restart_error"] = json!({ "type": "string", "nullable": true, "description": "The env file could not be written or the restart hook failed" });
    json!({
        "AttachDatabase": { "type": "object", "required": ["database"], "properties": { "database": text, "name": { "type": "string", "description": "Attach as NAME_URL" } } },
        "SetConfig": { "type": "object", "required": ["config"], "properties": { "config": config } },
        "Rollback": { "type": "object", "properties": { "version": { "type": "integer", "minimum": 1, "description": "Default: the release before the latest" } } },
        "ConfigView": { "type": "object", "properties": { "app": text, "version": { "type": "integer", "nullable": true }, "config": config } },
        "ReleaseSummary": { "type": "object", "properties": summary },
        "ReleaseInfo": { "type": "object", "properties": info },
        "ReleaseOutcome": { "type": "object", "properties": outcome }
    })
}

fn schemas() -> Value {
    let text = json!({ "type": "string" });
    let opt_text = json!({ "type": "string", "nullable": true });
    let time = json!({ "type": "string", "format": "date-time" });
    let opt_time = json!({ "type": "string", "format": "date-time", "nullable": true });
    json!({
        "Error": { "type": "object", "required": ["error"], "properties": { "error": text } },
        "CreateDatabase": {
            "type": "object", "required": ["name", "plan"],
            "properties": {
                "name": { "type": "string", "description": "1-40 lowercase letters, digits, '-' or '_', starting with a letter" },
                "plan": { "type": "string", "example": "standard-0", "description": "<tier>-<size>, tier one of essential, standard, premium, private, shield" },
                "follow": { "type": "string", "description": "Leader database: create a streaming follower" },
                "window": { "type": "string", "example": "Sunday 14:30 Europe/Berlin", "default": super::DEFAULT_WINDOW },
                "owners": { "type": "array", "items": { "type": "string", "format": "email" } }
            }
        },
        "RequireMaintenance": {
            "type": "object", "required": ["reason", "required_by"],
            "properties": {
                "reason": { "type": "string", "enum": ["os-patch", "minor-upgrade", "settings", "plan-change", "periodic"] },
                "required_by": time
            }
        },
        "SetWindow": { "type": "object", "required": ["window"], "properties": { "window": { "type": "string", "example": "Tuesday 14:30" } } },
        "RunMaintenance": { "type": "object", "properties": { "force": { "type": "boolean", "default": false } } },
        "CopyDatabase": {
            "type": "object", "required": ["source", "confirm"],
            "properties": { "source": text, "confirm": { "type": "string", "description": "The target's name again" }, "workers": { "type": "integer", "minimum": 1, "maximum": 32, "default": 4 } }
        },
        "CopyEvent": {
            "type": "object", "required": ["event"],
            "properties": {
                "event": { "type": "string", "enum": ["progress", "done", "error"] },
                "phase": { "type": "string", "enum": ["schema", "data", "post-data", "sequences", "verify"] },
                "bytes": { "type": "integer" }, "bytes_estimate": { "type": "integer" },
                "tables_done": { "type": "integer" }, "tables_total": { "type": "integer" },
                "elapsed_seconds": { "type": "number" }, "eta_seconds": { "type": "number", "nullable": true },
                "report": { "type": "object", "description": "done: tables (table, rows, bytes), sequences, bytes, rows, seconds per phase, seconds" },
                "error": text, "status": { "type": "integer" }
            }
        },
        "UpgradeDatabase": {
            "type": "object", "required": ["plan"],
            "properties": { "plan": { "type": "string", "example": "standard-4" }, "required_by": { "type": "string", "format": "date-time", "description": "Deadline of a scheduled plan change (default: a week from now)" } }
        },
        "UpgradeAnswer": {
            "type": "object",
            "properties": {
                "database": text, "from_plan": text, "to_plan": text,
                "strategy": { "type": "string", "enum": ["switchover", "copy"] },
                "maintenance": { "allOf": [schema("MaintenanceView")], "nullable": true },
                "run": { "allOf": [schema("RunReport")], "nullable": true }
            }
        },
        "Unfollow": { "type": "object", "required": ["confirm"], "properties": { "confirm": { "type": "string", "description": "The database's name, or an app attached to it or to its leader" } } },
        "PromoteDatabase": {
            "type": "object", "required": ["app"],
            "properties": { "app": text, "repoint_followers": { "type": "boolean", "default": false } }
        },
        "Promotion": {
            "type": "object",
            "properties": {
                "database": text, "app": text, "previous": opt_text,
                "moved": { "type": "array", "items": text }, "previous_attached_as": opt_text,
                "reattach": { "type": "array", "items": text, "description": "Keys still pointing at the previous database" },
                "followers": { "type": "array", "items": { "type": "object", "properties": { "name": text, "outcome": text } } },
                "release": schema("ReleaseOutcome")
            }
        },
        "WaitIdle": { "type": "object", "required": ["timeout_seconds"], "properties": { "timeout_seconds": { "type": "integer", "minimum": 0 } } },
        "CreateApp": {
            "type": "object", "required": ["name", "attach"],
            "properties": { "name": text, "attach": text, "on_hook": text, "off_hook": text, "env_file": text, "restart_hook": text }
        },
        "SetAppMaintenance": { "type": "object", "required": ["on"], "properties": { "on": { "type": "boolean" } } },
        "AppView": { "type": "object", "properties": { "name": text, "maintenance": { "type": "boolean" }, "release": schema("ReleaseOutcome") } },
        "DatabaseSummary": {
            "type": "object",
            "properties": {
                "name": text, "plan": text, "role": { "type": "string", "enum": ["primary", "follower"] },
                "following": opt_text, "status": text, "window": text
            }
        },
        "DatabaseInfo": {
            "type": "object",
            "properties": {
                "name": text, "plan": text, "role": { "type": "string", "enum": ["primary", "follower"] },
                "status": text, "endpoint_url": text, "following": opt_text, "forked_from": opt_text,
                "behind_by": { "type": "integer", "nullable": true, "description": "Commits behind the leader (followers)" },
                "caught_up": { "type": "boolean", "nullable": true, "description": "Within 200 commits of the leader (followers)" },
                "ha": { "type": "string", "nullable": true, "description": "`available`, or why not (HA tiers)" },
                "data_size_bytes": { "type": "integer", "nullable": true },
                "maintenance": { "allOf": [schema("MaintenanceView")], "nullable": true },
                "window": { "type": "string", "example": "Tuesdays 14:30 to 18:30 UTC" }
            }
        },
        "MaintenanceView": {
            "type": "object",
            "properties": {
                "id": { "type": "integer" }, "reason": text,
                "strategy": { "type": "string", "enum": ["restart", "switchover", "failover", "copy"] },
                "state": { "type": "string", "enum": ["pending", "preparing", "ready", "running", "completed", "failed"] },
                "step": opt_text, "required_by": time, "scheduled_for": opt_time, "window_end": opt_time,
                "forced": { "type": "boolean" }, "forced_reason": opt_text,
                "replacement": { "type": "string", "enum": ["being_prepared", "ready"], "nullable": true },
                "status_line": text, "info_field": text,
                "target_plan": opt_text,
                "progress": { "type": "object", "nullable": true, "description": "phase (base_backup, catching_up, ready, copying), plan, and bytes done/total or behind" },
                "progress_line": opt_text
            }
        },
        "MaintenanceStatus": {
            "type": "object",
            "properties": {
                "maintenance": { "allOf": [schema("MaintenanceView")], "nullable": true },
                "status_line": { "type": "string", "description": "The one-line status, or `No maintenance required`" }
            }
        },
        "WindowStatus": {
            "type": "object",
            "properties": {
                "window": text,
                "maintenance": { "allOf": [schema("MaintenanceView")], "nullable": true },
                "status_line": text
            }
        },
        "RunReport": {
            "type": "object",
            "properties": {
                "maintenance_id": { "type": "integer" },
                "strategy": { "type": "string", "enum": ["restart", "switchover", "failover", "copy"] },
                "outcome": { "type": "string", "description": "`completed` or `postponed: <why>`" },
                "write_pause_ms": { "type": "number", "nullable": true },
                "steps": { "type": "array", "items": { "type": "object", "properties": { "step": text, "seconds": { "type": "number" } } } }
            }
        },
        "HistoryEntry": {
            "type": "object",
            "properties": {
                "id": { "type": "integer" }, "strategy": text, "reason": text, "state": text,
                "required_by": time, "scheduled_for": opt_time, "started_at": opt_time, "finished_at": opt_time,
                "duration_seconds": { "type": "number", "nullable": true },
                "write_pause_ms": { "type": "number", "nullable": true },
                "outcome": opt_text, "error": opt_text
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_every_route_and_resolves_every_reference() {
        let doc = document();
        for (method, path) in ROUTES {
            assert!(doc["paths"][path][method].is_object(), "{method} {path} missing");
            assert!(doc["paths"][path][method]["responses"].is_object(), "{method} {path} has no responses");
        }
        let text = doc.to_string();
        for reference in text.split("\"#/components/schemas/").skip(1) {
            let name = &reference[..reference.find('"').unwrap()];
            assert!(doc["components"]["schemas"][name].is_object(), "dangling $ref {name}");
        }
    }
}
