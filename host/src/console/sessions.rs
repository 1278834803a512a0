//! Console sign-in sessions: a random id in an HttpOnly cookie stands for
//! an API token the operator typed once. Only hashes are kept (of the id,
//! and of the token), so a revoked token ends its sessions too.

use crate::api::{Auth, Role};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The session cookie's name.
pub const COOKIE: &str = "airlift_session";

/// How long a session lasts without being used.
pub const IDLE_LIMIT: Duration = Duration::from_secs(12 * 3600);

/// Sessions at most: signing in past this drops the oldest (the map is
/// filled only by correct tokens, but it must stay bounded).
const MAX_SESSIONS: usize = 10_000;

struct Session {
    token_sha256: String,
    last_used: Instant,
}

#[derive(Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

fn hash(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

impl Sessions {
    /// A new session for `token` when `auth` knows it: the id for the
    /// cookie (its only copy).
    pub fn sign_in(&self, auth: &Auth, token: &str) -> Option<String> {
        auth.identify(token)?;
        let id = hex::encode(rand::random::<[u8; 32]>());
        let mut sessions = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.last_used).map(|(k, _)| k.clone()) {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(hash(&id), Session { token_sha256: hash(token), last_used: Instant::now() });
        Some(id)
    }

    /// The token name and role of a live session, whose token is still valid.
    pub fn identify(&self, auth: &Auth, id: &str) -> Option<(String, Role)> {
        let key = hash(id);
        let mut sessions = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        let session = sessions.get_mut(&key)?;
        let who = auth.identify_sha256(&session.token_sha256);
        if session.last_used.elapsed() > IDLE_LIMIT || who.is_none() {
            sessions.remove(&key);
            return None;
        }
        session.last_used = Instant::now();
        who
    }

    pub fn sign_out(&self, id: &str) {
        self.by_id.lock().unwrap_or_else(|p| p.into_inner()).remove(&hash(id));
    }
}

/// The session id a request's `Cookie` headers carry.
pub fn session_cookie(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_stands_for_its_token_until_the_token_is_revoked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tokens.json"), "[]").unwrap();
        let auth = Auth::load(dir.path()).unwrap();
        let admin = auth.create("root", Role::Admin).unwrap();
        let viewer = auth.create("look", Role::Viewer).unwrap();
        let sessions = Sessions::default();
        assert!(sessions.sign_in(&auth, "not a token").is_none());
        let id = sessions.sign_in(&auth, &viewer).unwrap();
        assert_eq!(sessions.identify(&auth, &id), Some(("look".into(), Role::Viewer)));
        assert_eq!(sessions.identify(&auth, "forged"), None);
        auth.revoke("look").unwrap();
        assert_eq!(sessions.identify(&auth, &id), None, "the revoked token's session ended");
        let id = sessions.sign_in(&auth, &admin).unwrap();
        sessions.sign_out(&id);
        assert_eq!(sessions.identify(&auth, &id), None);
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut headers = axum::http::HeaderMap::new();
        headers.append(axum::http::header::COOKIE, "a=1; airlift_session=abc; b=2".parse().unwrap());
        assert_eq!(session_cookie(&headers), Some("abc"));
        headers.clear();
        headers.append(axum::http::header::COOKIE, "airlift_sessionx=abc".parse().unwrap());
        assert_eq!(session_cookie(&headers), None);
    }
}
