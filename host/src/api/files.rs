//! File upload (multipart, streamed to a content-addressed blob with a size
//! limit), download, and Smart Delta public keys.

use super::openapi::{Doc, Routes};
use axum::http::Method;
use super::json::parse_json;
use super::objects::load;
use super::{ApiError, AppState};
use crate::model::{public_view, FileInput, SmartDeltaKey, StoredFile};
use axum::extract::{Multipart, Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::Value;

pub fn routes() -> Routes {
    Routes::new()
        .route(Method::POST, "/api/files", upload, Doc::new("Upload a file").multipart("`file`: the content; `metadata`: optional JSON (FileInput)"))
        .route(Method::GET, "/api/files/{id}/content", download, Doc::new("Download a file's content"))
        .route(Method::GET, "/api/smart-delta-keys/{id}/public-key", public_key, Doc::new("A Smart Delta key's public part (raw X‖Y hex and PEM)"))
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    ApiError::new(e.status(), format!("multipart: {}", e.body_text()))
}

/// Multipart parts: `file` (the content) and optional `metadata` (JSON of
/// the file's metadata fields). The content streams to disk and is refused
/// past the upload limit with 413, leaving nothing behind.
async fn upload(State(s): State<AppState>, mut form: Multipart) -> Result<(StatusCode, Json<Value>), ApiError> {
    let mut stored: Option<(String, u64, String)> = None;
    let mut metadata = FileInput::default();
    while let Some(mut field) = form.next_field().await.map_err(multipart_error)? {
        match field.name() {
            Some("file") => {
                let filename = field.file_name().unwrap_or("").to_string();
                let mut writer = s.store.blobs().writer(s.upload_limit).map_err(internal)?;
                while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                    writer.write_chunk(&chunk).map_err(|e| too_large_or_internal(e, s.upload_limit))?;
                }
                let (hash, len) = writer.finish().map_err(internal)?;
                stored = Some((hash, len, filename));
            }
            Some("metadata") => {
                let bytes = field.bytes().await.map_err(multipart_error)?;
                metadata = parse_json(&bytes)?;
            }
            other => return Err(ApiError::bad_request(format!("unexpected form field '{}'", other.unwrap_or("")))),
        }
    }
    let (hash, len, filename) = stored.ok_or_else(|| ApiError { field: Some("file".into()), ..ApiError::bad_request("file: missing") })?;
    if len == 0 {
        return Err(ApiError { field: Some("file".into()), ..ApiError::bad_request("file: is empty") });
    }
    if metadata.name.is_empty() {
        metadata.name = filename;
    }
    let prior = s.store.get::<StoredFile>(&hash)?.filter(|p| !p.archived);
    let file = StoredFile::with_metadata(hash, len, metadata, prior.as_ref(), &s.input_context())?;
    // A file is its content: the same bytes again are the same file, and
    // may not quietly change what a campaign referencing it verifies.
    if let Some(prior) = prior {
        if prior.same_metadata(&file) {
            return Ok((StatusCode::OK, Json(public_view(&prior))));
        }
        return Err(ApiError {
            field: Some("metadata".into()),
            ..ApiError::new(StatusCode::CONFLICT, format!("this content is already stored as file {} with other metadata; change that with PUT /api/files/{}", prior.id, prior.id))
        });
    }
    s.store.put(&file)?;
    tracing::info!(id = %file.id, size = file.size, "file stored");
    Ok((StatusCode::CREATED, Json(public_view(&file))))
}

fn internal(e: std::io::Error) -> ApiError {
    tracing::error!(error = %e, "blob storage failure");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal storage error")
}

fn too_large_or_internal(e: std::io::Error, limit: u64) -> ApiError {
    if e.get_ref().is_some_and(|inner| inner.is::<crate::store::TooLarge>()) {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("file exceeds the upload limit of {limit} bytes"))
    } else {
        internal(e)
    }
}

async fn download(State(s): State<AppState>, Path(id): Path<String>) -> Result<impl IntoResponse, ApiError> {
    let file = load::<StoredFile>(&s, &id)?;
    let bytes = s.store.blobs().read(&file.id).map_err(internal)?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes))
}

/// The public part of a Smart Delta key, for device builds: raw X‖Y hex
/// and SPKI PEM. The private part never leaves the store.
async fn public_key(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let key = load::<SmartDeltaKey>(&s, &id)?;
    let signing = crate::keys::smart_delta::unseal(&s.vault, &key).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(serde_json::json!({
        "id": key.id,
        "raw": hex::encode(crate::keys::smart_delta::public_raw(&signing)),
        "pem": crate::keys::smart_delta::public_pem(&signing),
    })))
}
