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

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Default)]
pub struct Auth {
    tokens: Vec<TokenEntry>,
}

/// Environment variable with `name:role:token` entries separated by `;`.
pub const TOKENS_ENV: &str = "AIRLIFT_API_TOKENS";

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Auth {
    pub fn with_tokens(tokens: &[(&str, Role, &str)]) -> Self {
        Self { tokens: tokens.iter().map(|(n, r, t)| TokenEntry { name: n.to_string(), role: *r, sha256: hash(t) }).collect() }
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
            return Ok(Self { tokens });
        }
        let file = data_dir.join("tokens.json");
        if file.exists() {
            let tokens = serde_json::from_slice(&std::fs::read(&file)?).map_err(std::io::Error::other)?;
            return Ok(Self { tokens });
        }
        let token = hex::encode(rand::random::<[u8; 24]>());
        crate::keys::write_private(&data_dir.join("admin.token"), token.as_bytes())?;
        let tokens = vec![TokenEntry { name: "admin".into(), role: Role::Admin, sha256: hash(&token) }];
        crate::keys::write_private(&file, &serde_json::to_vec_pretty(&tokens).unwrap())?;
        tracing::info!(path = %data_dir.join("admin.token").display(), "created an admin API token");
        Ok(Self { tokens })
    }

    pub fn role_of(&self, token: &str) -> Option<Role> {
        let h = hash(token);
        self.tokens.iter().find(|t| t.sha256 == h).map(|t| t.role)
    }
}

/// The role a request needs.
pub fn required_role(method: &Method, path: &str) -> Role {
    if method == Method::GET || method == Method::HEAD {
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

pub async fn require_role(State(state): State<AppState>, req: Request, next: Next) -> Result<Response, ApiError> {
    let token = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    let Some(role) = token.and_then(|t| state.auth.role_of(t)) else {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "missing or invalid bearer token"));
    };
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
