//! API tokens for admins: list (names and roles), create (the token is
//! shown once), revoke. Tokens from the environment are fixed.

use super::openapi::{Doc, Routes};
use axum::http::Method;
use super::auth::{Role, TokenError};
use super::json::JsonBody;
use super::{ApiError, AppState};
use crate::model::FieldError;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

pub fn routes() -> Routes {
    Routes::new()
        .route(Method::GET, "/api/tokens", list, Doc::new("List the API tokens' names and roles"))
        .route(Method::POST, "/api/tokens", create, Doc::new("Make an API token (answered once)").json::<NewToken>())
        .route(Method::DELETE, "/api/tokens/{name}", revoke, Doc::new("Revoke an API token"))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    role: Role,
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::BadName => FieldError::new("name", e.to_string()).into(),
            TokenError::Unknown(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            TokenError::Io(_) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            TokenError::Fixed | TokenError::Exists(_) | TokenError::LastAdmin => ApiError::new(StatusCode::CONFLICT, e.to_string()),
        }
    }
}

async fn list(State(s): State<AppState>) -> Json<Value> {
    Json(json!(s.auth.list().into_iter().map(|(name, role)| json!({"name": name, "role": role})).collect::<Vec<_>>()))
}

async fn create(State(s): State<AppState>, JsonBody(new): JsonBody<NewToken>) -> Result<(StatusCode, Json<Value>), ApiError> {
    let token = s.auth.create(&new.name, new.role)?;
    tracing::info!(name = %new.name, role = ?new.role, "API token created");
    Ok((StatusCode::CREATED, Json(json!({"name": new.name, "role": new.role, "token": token}))))
}

async fn revoke(State(s): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    s.auth.revoke(&name)?;
    tracing::info!(%name, "API token revoked");
    Ok(Json(json!({"name": name, "revoked": true})))
}
