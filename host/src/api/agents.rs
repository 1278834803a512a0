//! The RMC agents an `airlift core` has heard from, for operators: which
//! are live, what they carry, what they run. A host that runs campaigns
//! itself (`serve`) has none.

use super::openapi::{Doc, Routes};
use super::AppState;
use axum::extract::State;
use axum::http::Method;
use axum::Json;
use serde_json::{json, Value};

pub fn routes() -> Routes {
    Routes::new().route(Method::GET, "/api/agents", list, Doc::new("The RMC agents this core has heard from: live or not, plugins, running campaigns, devices in them"))
}

async fn list(State(s): State<AppState>) -> Json<Value> {
    Json(match &s.remote {
        Some(core) => json!({"mode": "core", "agents": core.agents_view()}),
        None => json!({"mode": "embedded", "agents": []}),
    })
}
