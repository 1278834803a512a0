//! Bearer tokens with roles. Tokens are kept as SHA-256 hashes; the
//! required role follows from the method and the path.

use super::{ApiError, AppState};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Also creates and changes fleet objects, files and campaigns.
    Operator,
    /// Also loads plugins and configures backend instances.
    Admin,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenEntry {
    pub name: String,
    pub role: Role,
    /// SHA-256 hex of the token.
    pub sha256: String,
}

/// The tokens the API accepts. Those from `<data_dir>/tokens.json` can be
/// created and revoked through the API; those from the environment (or
/// given by an embedding program) are fixed.
#[derive(Debug, Default)]
pub struct Auth {
    tokens: std::sync::RwLock<Vec<TokenEntry>>,
    /// Where tokens are kept, when they may be changed.
    file: Option<std::path::PathBuf>,
}

/// Why a token could not be created or revoked.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("tokens come from {TOKENS_ENV}: change them there")]
    Fixed,
    #[error("a token named '{0}' exists")]
    Exists(String),
    #[error("no token named '{0}'")]
    Unknown(String),
    #[error("the last admin token cannot be revoked")]
    LastAdmin,
    #[error("name: 1 to 64 letters, digits, '-', '_' or '.'")]
    BadName,
    #[error("tokens file: {0}")]
    Io(#[from] std::io::Error),
}

/// Environment variable with `name:role:token` entries separated by `;`.
pub const TOKENS_ENV: &str = "AIRLIFT_API_TOKENS";

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Auth {
    pub fn with_tokens(tokens: &[(&str, Role, &str)]) -> Self {
        let tokens = tokens.iter().map(|(n, r, t)| TokenEntry { name: n.to_string(), role: *r, sha256: hash(t) }).collect();
        Self { tokens: std::sync::RwLock::new(tokens), file: None }
    }

    /// Tokens from `AIRLIFT_API_TOKENS`, else `<data_dir>/tokens.json`.
    /// On first start with neither, an admin token is created and written
    /// to `<data_dir>/admin.token` (mode 0600) for the CLI to use.
    pub fn load(data_dir: &Path) -> std::io::Result<Self> {
        if let Ok(spec) = std::env::var(TOKENS_ENV) {
            let mut tokens = Vec::new();
            for entry in spec.split(';').filter(|e| !e.trim().is_empty()) {
                let parts: Vec<&str> = entry.trim().splitn(3, ':').collect();
                let role = parts.get(1).and_then(|r| serde_json::from_value(serde_json::json!(r)).ok());
                match (parts.as_slice(), role) {
                    ([name, _, token], Some(role)) if !token.is_empty() => {
                        tokens.push(TokenEntry { name: name.to_string(), role, sha256: hash(token) })
                    }
                    _ => return Err(std::io::Error::other(format!("{TOKENS_ENV}: entries are name:role:token"))),
                }
            }
            return Ok(Self { tokens: std::sync::RwLock::new(tokens), file: None });
        }
        let file = data_dir.join("tokens.json");
        if file.exists() {
            let tokens = serde_json::from_slice(&std::fs::read(&file)?).map_err(std::io::Error::other)?;
            return Ok(Self { tokens: std::sync::RwLock::new(tokens), file: Some(file) });
        }
        let token = hex::encode(rand::random::<[u8; 24]>());
        crate::keys::write_private(&data_dir.join("admin.token"), token.as_bytes())?;
        let tokens = vec![TokenEntry { name: "admin".into(), role: Role::Admin, sha256: hash(&token) }];
        crate::keys::write_private(&file, &serde_json::to_vec_pretty(&tokens).unwrap())?;
        tracing::info!(path = %data_dir.join("admin.token").display(), "created an admin API token");
        Ok(Self { tokens: std::sync::RwLock::new(tokens), file: Some(file) })
    }

    pub fn role_of(&self, token: &str) -> Option<Role> {
        self.identify(token).map(|(_, role)| role)
    }

    /// The name and role of a token.
    pub fn identify(&self, token: &str) -> Option<(String, Role)> {
        self.identify_sha256(&hash(token))
    }

    /// The name and role of the token whose SHA-256 hex is `sha256`.
    pub fn identify_sha256(&self, sha256: &str) -> Option<(String, Role)> {
        self.read().iter().find(|t| t.sha256 == sha256).map(|t| (t.name.clone(), t.role))
    }

    /// Names and roles (never the hashes).
    pub fn list(&self) -> Vec<(String, Role)> {
        self.read().iter().map(|t| (t.name.clone(), t.role)).collect()
    }

    /// A new token with `role`; its only copy is returned. On disk before
    /// it is returned.
    pub fn create(&self, name: &str, role: Role) -> Result<String, TokenError> {
        let valid = (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !valid {
            return Err(TokenError::BadName);
        }
        let token = hex::encode(rand::random::<[u8; 24]>());
        self.change(|tokens| {
            if tokens.iter().any(|t| t.name == name) {
                return Err(TokenError::Exists(name.into()));
            }
            tokens.push(TokenEntry { name: name.into(), role, sha256: hash(&token) });
            Ok(())
        })?;
        Ok(token)
    }

    /// Revoke a token by name; the last admin token stays.
    pub fn revoke(&self, name: &str) -> Result<(), TokenError> {
        self.change(|tokens| {
            let at = tokens.iter().position(|t| t.name == name).ok_or_else(|| TokenError::Unknown(name.into()))?;
            if tokens[at].role == Role::Admin && tokens.iter().filter(|t| t.role == Role::Admin).count() == 1 {
                return Err(TokenError::LastAdmin);
            }
            tokens.remove(at);
            Ok(())
        })
    }

    /// Apply `edit`, write the file, and only then let the change count.
    fn change(&self, edit: impl FnOnce(&mut Vec<TokenEntry>) -> Result<(), TokenError>) -> Result<(), TokenError> {
        let file = self.file.as_ref().ok_or(TokenError::Fixed)?;
        let mut tokens = self.tokens.write().unwrap_or_else(|p| p.into_inner());
        let mut edited = tokens.clone();
        edit(&mut edited)?;
        let tmp = file.with_extension("json.tmp");
        crate::keys::write_private(&tmp, &serde_json::to_vec_pretty(&edited).expect("tokens serialize"))?;
        std::fs::rename(&tmp, file)?;
        *tokens = edited;
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<TokenEntry>> {
        self.tokens.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// The role a request needs.
pub fn required_role(method: &Method, path: &str) -> Role {
    if path.starts_with("/api/tokens") {
        Role::Admin
    } else if method == Method::GET || method == Method::HEAD {
        Role::Viewer
    } else if path.starts_with("/api/plugins") || path.starts_with("/api/backend-instances") {
        Role::Admin
    } else {
        Role::Operator
    }
}

/// The token of an `Authorization: Bearer <token>` header; the scheme is
/// case-insensitive (RFC 9110 §11.1).
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The header the console sends with every request it makes. A cross-site
/// form cannot set it, and a cross-site script may not without a CORS
/// preflight this host never grants: with the SameSite cookie, this keeps
/// other sites from acting with an operator's session.
pub const CONSOLE_HEADER: &str = "x-airlift-console";

/// Who makes a request: a bearer token, else the console's session cookie
/// (with the console's header on anything that may write).
fn caller(state: &AppState, req: &Request) -> Result<(String, Role), ApiError> {
    let headers = req.headers();
    if let Some(token) = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer_token) {
        return state.auth.identify(token).ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "missing or invalid bearer token"));
    }
    let Some(who) = crate::console::session_cookie(headers).and_then(|id| state.console.identify(&state.auth, id)) else {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "missing or invalid bearer token"));
    };
    let reads = matches!(*req.method(), Method::GET | Method::HEAD);
    if !reads && !headers.contains_key(CONSOLE_HEADER) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, format!("a request with the console's session must carry {CONSOLE_HEADER}")));
    }
    Ok(who)
}

pub async fn require_role(State(state): State<AppState>, req: Request, next: Next) -> Result<Response, ApiError> {
    let (name, role) = caller(&state, &req)?;
    if let Some(limit) = &state.rate_limit {
        if let Err(too_many) = limit.check(&name) {
            return Ok(too_many);
        }
    }
    let needed = required_role(req.method(), req.uri().path());
    if role < needed {
        return Err(ApiError::new(StatusCode::FORBIDDEN, format!("this needs the {needed:?} role").to_lowercase()));
    }
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_scheme_is_case_insensitive() {
        for header in ["Bearer abc", "bearer abc", "BEARER  abc ", " bEaReR abc"] {
            assert_eq!(bearer_token(header), Some("abc"), "{header:?}");
        }
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }
}
