//! The operator's web console: one page of plain HTML, CSS and JavaScript
//! embedded in the binary (no build step, nothing from a CDN), served at
//! `/` behind a sign-in with an API token. The page calls the same REST API
//! as any client, with the session cookie in place of the bearer token, so
//! roles apply exactly as in the API.

mod sessions;

pub use sessions::{session_cookie, Sessions};

use crate::api::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};

const LOGIN_HTML: &str = include_str!("assets/login.html");
const APP_HTML: &str = include_str!("assets/app.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// Nothing but this host's own assets and API: no inline script, no CDN,
/// no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(page))
        .route("/console/sign-in", post(sign_in))
        .route("/console/sign-out", post(sign_out))
        .route("/console/session", get(session))
        .route("/console/app.js", get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }))
        .route("/console/app.css", get(|| async { asset("text/css; charset=utf-8", APP_CSS) }))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::X_CONTENT_TYPE_OPTIONS, "nosniff"), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

fn html(status: StatusCode, body: String) -> Response {
    let headers = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    (status, headers, body).into_response()
}

fn signed_in(state: &AppState, headers: &HeaderMap) -> Option<(String, crate::api::Role)> {
    session_cookie(headers).and_then(|id| state.console.identify(&state.auth, id))
}

/// The console to a signed-in operator, else the sign-in form.
async fn page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers) {
        Some(_) => html(StatusCode::OK, APP_HTML.to_string()),
        None => html(StatusCode::OK, LOGIN_HTML.replace("{{error}}", "")),
    }
}

#[derive(serde::Deserialize)]
struct SignIn {
    token: String,
}

fn cookie(value: &str, max_age_s: u64) -> HeaderValue {
    // Secure: browsers keep it to HTTPS, and to http://127.0.0.1 and
    // localhost, which they count as secure.
    HeaderValue::from_str(&format!("{}={value}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={max_age_s}", sessions::COOKIE)).expect("a cookie of hex digits is a valid header")
}

async fn sign_in(State(state): State<AppState>, Form(form): Form<SignIn>) -> Response {
    match state.console.sign_in(&state.auth, form.token.trim()) {
        Some(id) => {
            let mut response = Redirect::to("/").into_response();
            response.headers_mut().insert(header::SET_COOKIE, cookie(&id, sessions::IDLE_LIMIT.as_secs()));
            response
        }
        None => html(StatusCode::UNAUTHORIZED, LOGIN_HTML.replace("{{error}}", r#"<p class="error" role="alert">That token is not valid here.</p>"#)),
    }
}

async fn sign_out(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers) {
        state.console.sign_out(id);
    }
    let mut response = Redirect::to("/").into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie("", 0));
    response
}

/// Who is signed in: the page enables only what the role may do.
async fn session(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers) {
        Some((name, role)) => Json(serde_json::json!({"name": name, "role": role})).into_response(),
        None => crate::api::ApiError::new(StatusCode::UNAUTHORIZED, "not signed in").into_response(),
    }
}
