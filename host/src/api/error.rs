//! API errors as JSON in the gateway seed's style:
//! `{"code": 400, "status": "fail", "error": "...", "field": "devEui"}`.

use crate::model::FieldError;
use crate::plugin::PluginError;
use crate::store::StoreError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), field: None }
    }
    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("{what} '{id}' not found"))
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({
            "code": self.status.as_u16(),
            "status": "fail",
            "error": self.message,
        });
        if let Some(f) = self.field {
            body["field"] = f.into();
        }
        (self.status, Json(body)).into_response()
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        Self { status: StatusCode::BAD_REQUEST, message: e.to_string(), field: Some(e.field) }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::AlreadyExists { .. } => Self::new(StatusCode::CONFLICT, e.to_string()),
            other => {
                tracing::error!(error = %other, "store failure");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal storage error")
            }
        }
    }
}

impl From<PluginError> for ApiError {
    fn from(e: PluginError) -> Self {
        let status = match &e {
            PluginError::NotFound(_) => StatusCode::NOT_FOUND,
            PluginError::Invalid(_) | PluginError::WrongKind { .. } => StatusCode::BAD_REQUEST,
            PluginError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
            // The plugin failed, not the host.
            PluginError::Trap { .. } | PluginError::Timeout { .. } | PluginError::OutOfMemory { .. } => StatusCode::BAD_GATEWAY,
        };
        Self::new(status, e.to_string())
    }
}

impl From<crate::distributed::rmc_core::CoreError> for ApiError {
    fn from(e: crate::distributed::rmc_core::CoreError) -> Self {
        use crate::distributed::rmc_core::CoreError;
        match e {
            CoreError::Store(e) => e.into(),
            CoreError::NotStartable(_) | CoreError::NotRunning | CoreError::Conflict(_) => Self::new(StatusCode::CONFLICT, e.to_string()),
            CoreError::NoAgent { .. } | CoreError::NoAnswer(_) => Self::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            CoreError::Invalid(_) => Self::new(StatusCode::BAD_REQUEST, e.to_string()),
            CoreError::Bus(_) => {
                tracing::error!(error = %e, "the broker failed");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
        }
    }
}
