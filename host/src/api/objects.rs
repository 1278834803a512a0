//! Create / read / update / archive for every editable object kind, one
//! generic set of handlers.

use super::json::JsonBody;
use super::{ApiError, AppState};
use crate::model::{public_view, BackendInstance, Campaign, CampaignStatus, Editable, FieldError, Object, StoredFile};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use super::openapi::{Doc, Routes};
use axum::http::Method;
use utoipa::ToSchema;
use axum::Json;
use serde::Deserialize;
use serde_json::Value;

/// A page of a list: `?limit=N` (default and most [`MAX_PAGE`]) objects
/// after the id `after`; the `x-next-after` header of the answer says where
/// the next page starts, when there is one.
#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pub archived: bool,
    pub limit: Option<usize>,
    pub after: Option<String>,
}

/// The most objects one list answer carries.
pub const MAX_PAGE: usize = 1000;

/// All routes of an object kind: `/api/{kind}` and `/api/{kind}/{id}`.
pub fn routes<T: Editable>() -> Routes
where
    T::Input: ToSchema,
{
    read_update_routes::<T>().route(Method::POST, &format!("/api/{}", T::KIND), create::<T>, Doc::new("Create an object").json::<T::Input>())
}

/// Kinds created elsewhere (files, by upload).
pub fn read_update_routes<T: Editable>() -> Routes
where
    T::Input: ToSchema,
{
    let (list_path, one) = (format!("/api/{}", T::KIND), format!("/api/{}/{{id}}", T::KIND));
    Routes::new()
        .route(Method::GET, &list_path, list::<T>, Doc::new("List objects, in pages").query(&["archived", "limit", "after"]))
        .route(Method::GET, &one, read::<T>, Doc::new("Read an object"))
        .route(Method::PUT, &one, update::<T>, Doc::new("Change an object").json::<T::Input>())
        .route(Method::DELETE, &one, archive::<T>, Doc::new("Archive an object"))
}

pub async fn list<T: Object>(State(s): State<AppState>, Query(q): Query<ListQuery>) -> Result<impl IntoResponse, ApiError> {
    let (page, next) = s.store.list_page::<T>(q.archived, q.after.as_deref(), page_size(q.limit))?;
    Ok(page_answer(&page, next))
}

/// A page's size: as asked, within 1 and [`MAX_PAGE`].
pub(super) fn page_size(limit: Option<usize>) -> usize {
    limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE)
}

/// A page of objects as the API answers it, with where the next page
/// starts in `x-next-after`.
pub(super) fn page_answer<T: Object>(page: &[T], next: Option<String>) -> impl IntoResponse {
    let body = Json(page.iter().map(public_view).collect::<Vec<_>>());
    let next = next.and_then(|n| HeaderValue::from_str(&n).ok()).map(|n| [(HeaderName::from_static("x-next-after"), n)]);
    (next.into_iter().flatten().collect::<HeaderMap>(), body)
}

pub fn load<T: Object>(s: &AppState, id: &str) -> Result<T, ApiError> {
    s.store.get::<T>(id)?.ok_or_else(|| ApiError::not_found(T::KIND.trim_end_matches('s'), id))
}

/// Natural keys (EUIs) are accepted in any written form.
pub(super) fn normalise_id(id: &str) -> String {
    id.parse::<crate::model::Eui>().map(|e| e.to_string()).unwrap_or_else(|_| id.to_string())
}

pub(super) async fn read<T: Object>(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(public_view(&load::<T>(&s, &normalise_id(&id))?)))
}

/// What a kind's plugin says about an object before it is stored: a
/// backend instance needs a loaded backend plugin whose `validate` passes.
async fn check_with_plugin<T: Object>(s: &AppState, obj: &T) -> Result<(), ApiError> {
    if let Some(instance) = (obj as &dyn std::any::Any).downcast_ref::<BackendInstance>() {
        crate::backend::validate(&s.runtime, instance.clone()).await.map_err(|why| FieldError::new("settings", why))?;
    }
    Ok(())
}

/// A file a running campaign sends may not change or go.
fn check_not_in_use<T: Object>(s: &AppState, obj: &T) -> Result<(), ApiError> {
    if (obj as &dyn std::any::Any).is::<StoredFile>() {
        let id = obj.id();
        let running = s.store.list::<Campaign>(false)?.into_iter().find(|c| c.status == CampaignStatus::Running && c.file.as_deref() == Some(id.as_str()));
        if let Some(c) = running {
            return Err(ApiError::new(StatusCode::CONFLICT, format!("campaign {} is sending this file; change it once the campaign is over", c.id)));
        }
    }
    Ok(())
}

pub(super) async fn create<T: Editable>(State(s): State<AppState>, JsonBody(input): JsonBody<T::Input>) -> Result<(StatusCode, Json<Value>), ApiError> {
    let obj = T::from_input(input, None, &s.input_context())?;
    check_with_plugin(&s, &obj).await?;
    s.store.insert_new(&obj)?;
    tracing::info!(kind = T::KIND, id = %obj.id(), "created");
    Ok((StatusCode::CREATED, Json(public_view(&obj))))
}

pub(super) async fn update<T: Editable>(State(s): State<AppState>, Path(id): Path<String>, body: axum::body::Bytes) -> Result<Json<Value>, ApiError>
where
    T::Input: ToSchema,
{
    let prior = load::<T>(&s, &normalise_id(&id))?;
    let input = parse_edit::<T>(&body, &prior)?;
    check_not_in_use(&s, &prior)?;
    let obj = T::from_input(input, Some(&prior), &s.input_context())?;
    check_with_plugin(&s, &obj).await?;
    s.store.put(&obj)?;
    tracing::info!(kind = T::KIND, id = %obj.id(), "updated");
    Ok(Json(public_view(&obj)))
}

/// An edit's body. What a GET answered may come back as it was: fields
/// the object only shows (its id, dates, status, archived flag, the `…Set`
/// flags of its secrets) are dropped; any other field the input does not
/// take is still an error, so a misspelt one is never ignored.
fn parse_edit<T: Editable>(body: &[u8], prior: &T) -> Result<T::Input, ApiError>
where
    T::Input: ToSchema,
{
    let mut value: Value = super::json::parse_json(body)?;
    let taken: std::collections::BTreeSet<String> = match <T::Input as utoipa::PartialSchema>::schema() {
        utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::Object(o)) => o.properties.keys().cloned().collect(),
        _ => Default::default(),
    };
    if let (Some(fields), Value::Object(shown)) = (value.as_object_mut(), public_view(prior)) {
        fields.retain(|name, _| taken.contains(name) || !shown.contains_key(name));
    }
    super::json::parse_json(&serde_json::to_vec(&value).unwrap_or_default())
}

pub(super) async fn archive<T: Object>(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let mut obj = load::<T>(&s, &normalise_id(&id))?;
    check_not_in_use(&s, &obj)?;
    obj.set_archived();
    s.store.put(&obj)?;
    tracing::info!(kind = T::KIND, id = %obj.id(), "archived");
    Ok(Json(public_view(&obj)))
}
