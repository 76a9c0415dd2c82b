//! Bearer-token authentication with `read` and `admin` scopes. Reads need
//! `read` (or `admin`), writes need `admin`. Tokens come from flags, the
//! environment or a tokens file (which keeps secrets out of the process
//! list) and are never logged or returned; the token *id* is what the
//! audit log records as the actor.

use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use crate::error::{ErrorCode, ServiceError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Read,
    Admin,
}

/// One API token: `id:scope:secret` on the command line.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    pub id: String,
    pub scope: Scope,
    secret: String,
}

impl std::fmt::Debug for Token {
    // The secret never appears in logs or debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("id", &self.id)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// Tokens from the text of a tokens file: one `id:scope:secret` per line;
/// blank lines and lines starting with `#` are skipped. A bad line fails
/// with its 1-based number and what is wrong with it (never the secret).
pub fn parse_token_lines(text: &str) -> Result<Vec<Token>, (usize, String)> {
    text.lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
        .map(|(number, line)| line.parse().map_err(|e| (number, e)))
        .collect()
}

impl FromStr for Token {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.splitn(3, ':');
        let (Some(id), Some(scope), Some(secret)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err("expected id:scope:secret (scope is read or admin)".to_owned());
        };
        let scope = match scope {
            "read" => Scope::Read,
            "admin" => Scope::Admin,
            other => return Err(format!("unknown scope `{other}` (use read or admin)")),
        };
        if id.is_empty() || secret.len() < 8 {
            return Err("the id must not be empty and the secret needs 8+ characters".to_owned());
        }
        Ok(Self {
            id: id.to_owned(),
            scope,
            secret: secret.to_owned(),
        })
    }
}

/// Compares without an early exit, so timing does not leak the secret.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The configured tokens; empty means authentication is off.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    tokens: Vec<Token>,
}

/// Who made the request: the token id, or `api` without authentication.
#[derive(Debug, Clone)]
pub struct Actor(pub String);

impl Auth {
    pub fn new(tokens: Vec<Token>) -> Self {
        Self { tokens }
    }

    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Checks a presented secret for `needed`; returns the token id.
    pub fn check(
        &self,
        presented: Option<&str>,
        needed: Scope,
    ) -> Result<Option<String>, ServiceError> {
        if !self.enabled() {
            return Ok(None);
        }
        let presented = presented.ok_or_else(|| {
            ServiceError::new(ErrorCode::Unauthenticated, "a bearer token is required")
        })?;
        let token = self
            .tokens
            .iter()
            .find(|t| same(t.secret.as_bytes(), presented.as_bytes()))
            .ok_or_else(|| ServiceError::new(ErrorCode::Unauthenticated, "unknown token"))?;
        if token.scope < needed {
            return Err(ServiceError::new(
                ErrorCode::PermissionDenied,
                "this token may only read; writes need an admin token",
            ));
        }
        Ok(Some(token.id.clone()))
    }
}

/// The secret from `Authorization: Bearer <secret>`, or (for WebSocket
/// clients that cannot set headers) the `access_token` query parameter.
fn presented(req: &Request) -> Option<String> {
    if let Some(v) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return v.strip_prefix("Bearer ").map(|s| s.trim().to_owned());
    }
    req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("access_token="))
            .map(str::to_owned)
    })
}

/// Paths anyone may read: liveness and the API description.
pub(crate) fn is_public(path: &str) -> bool {
    matches!(path, "/api/health" | "/api/openapi.json")
}

/// Requests that change nothing: reads, plus the dry runs (validate, rule
/// test) which are POSTs only because they carry a body.
pub(crate) fn is_read_only(method: &Method, path: &str) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        || (*method == Method::POST
            && (path == "/api/config/validate"
                || (path.starts_with("/api/rules/") && path.ends_with("/test"))))
}

pub async fn require(State(auth): State<Arc<Auth>>, mut req: Request, next: Next) -> Response {
    if !auth.enabled() || is_public(req.uri().path()) {
        return next.run(req).await;
    }
    let needed = if is_read_only(req.method(), req.uri().path()) {
        Scope::Read
    } else {
        Scope::Admin
    };
    match auth.check(presented(&req).as_deref(), needed) {
        Ok(id) => {
            if let Some(id) = id {
                req.extensions_mut().insert(Actor(id));
            }
            next.run(req).await
        }
        Err(e) => {
            let unauthenticated = e.code == ErrorCode::Unauthenticated;
            let mut resp = ApiError(e).into_response();
            if unauthenticated {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
            }
            resp
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Actor>()
            .cloned()
            .unwrap_or_else(|| Actor("api".to_owned())))
    }
}
