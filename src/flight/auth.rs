//! Authentication: Basic credentials in the handshake buy a bearer token;
//! every other call presents the token. Tokens expire; comparisons of secrets
//! take constant time; no secret appears in an error or a log.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::error::{Error, Result};
use crate::session::Session;

/// Basic credentials in the standard alphabet, padded or not: RFC 7617 pads,
/// the ADBC Flight SQL driver does not.
const BASIC: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Who may connect.
#[derive(Debug, Clone)]
pub enum Users {
    /// No authentication at all (`--insecure-no-auth`): local play only.
    Anyone,
    /// `user → password`.
    Passwords(HashMap<String, String>),
}

impl Users {
    /// Reads `user:password` lines (blank lines and `#` comments skipped).
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, password) = line.split_once(':').ok_or_else(|| {
                Error::Invalid(format!(
                    "{} line {}: expected user:password",
                    path.display(),
                    i + 1
                ))
            })?;
            users.insert(user.to_string(), password.to_string());
        }
        Ok(Users::Passwords(users))
    }
}

/// A random secret: 32 bytes from the OS, hex-encoded.
pub fn random_secret() -> String {
    let mut out = String::with_capacity(64);
    for _ in 0..2 {
        out.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    out
}

/// The `authorization` header's value after `scheme` (`"Basic "`, `"Bearer "`).
fn credentials<'a>(
    metadata: &'a MetadataMap,
    scheme: &str,
    missing: &'static str,
) -> std::result::Result<&'a str, Status> {
    let header = metadata
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Status::unauthenticated(missing))?;
    header
        .strip_prefix(scheme)
        .ok_or_else(|| Status::unauthenticated(format!("expected {scheme}authentication")))
}

/// Equality that takes the same time wherever the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(x ^ y);
    }
    diff == 0
}

struct Grant {
    expires: Instant,
    session: Session,
}

/// Users, issued tokens and the session each token drives.
pub struct Authenticator {
    users: Users,
    token_lifetime: Duration,
    tokens: Mutex<HashMap<String, Grant>>,
    /// The one session of an unauthenticated server.
    shared: Session,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

impl Authenticator {
    pub fn new(users: Users, token_lifetime: Duration, shared: Session) -> Self {
        Authenticator {
            users,
            token_lifetime,
            tokens: Mutex::new(HashMap::new()),
            shared,
        }
    }

    /// Checks `authorization: Basic ...` and issues a token with a fresh session.
    pub async fn handshake(&self, metadata: &MetadataMap) -> std::result::Result<String, Status> {
        let Users::Passwords(users) = &self.users else {
            return Ok(String::new());
        };
        let encoded = credentials(
            metadata,
            "Basic ",
            "missing credentials: use Basic authentication",
        )?;
        let decoded = BASIC
            .decode(encoded.trim())
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .ok_or_else(|| Status::unauthenticated("malformed Basic credentials"))?;
        let (user, password) = decoded
            .split_once(':')
            .ok_or_else(|| Status::unauthenticated("malformed Basic credentials"))?;
        // Compare against every user so timing does not reveal which names exist.
        let mut ok = false;
        for (name, expected) in users {
            let matches = constant_time_eq(name.as_bytes(), user.as_bytes())
                & constant_time_eq(expected.as_bytes(), password.as_bytes());
            ok |= matches;
        }
        if !ok {
            return Err(Status::unauthenticated("invalid user name or password"));
        }
        let token = random_secret();
        let session = Session::with_warehouse(self.shared.warehouse().clone())
            .await
            .map_err(super::status::to_status)?
            .with_query_memory_limit(self.shared.query_memory_limit());
        let mut tokens = self
            .tokens
            .lock()
            .map_err(|_| Status::internal("token table poisoned"))?;
        let now = Instant::now();
        tokens.retain(|_, grant| grant.expires > now);
        tokens.insert(
            token.clone(),
            Grant {
                expires: now + self.token_lifetime,
                session,
            },
        );
        Ok(token)
    }

    /// The session of the caller's bearer token.
    pub fn session(&self, metadata: &MetadataMap) -> std::result::Result<Session, Status> {
        if matches!(self.users, Users::Anyone) {
            return Ok(self.shared.clone());
        }
        let token = credentials(
            metadata,
            "Bearer ",
            "missing bearer token: authenticate with a handshake first",
        )?;
        let tokens = self
            .tokens
            .lock()
            .map_err(|_| Status::internal("token table poisoned"))?;
        let now = Instant::now();
        // Constant-time comparison against every live token.
        let mut found = None;
        for (candidate, grant) in tokens.iter() {
            if constant_time_eq(candidate.as_bytes(), token.as_bytes()) && grant.expires > now {
                found = Some(grant.session.clone());
            }
        }
        found.ok_or_else(|| Status::unauthenticated("invalid or expired token: authenticate again"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_decode_padded_or_not() {
        for text in ["Ym9iOmh1bnRlcjI=", "Ym9iOmh1bnRlcjI"] {
            assert_eq!(BASIC.decode(text).expect(text), b"bob:hunter2");
        }
        assert!(BASIC.decode("Ym9iOmh1bnRlcjI=x").is_err());
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret!"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn secrets_are_long_and_distinct() {
        let (a, b) = (random_secret(), random_secret());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
