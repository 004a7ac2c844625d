//! Password hashes: Argon2id (memory-hard), stored as PHC strings with their
//! own salt and parameters, so stronger parameters later still verify old
//! hashes.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::error::{Error, Result};

/// The longest password accepted, in bytes (hashing cost grows with it).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// OWASP's first Argon2id choice: 19 MiB, two passes, one lane.
fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A new hash of `password`.
pub fn hash(password: &str) -> Result<String> {
    check(password)?;
    let salt = SaltString::generate(&mut OsRng);
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("cannot hash a password: {e}")))
}

/// Whether `password` matches `stored`; a hash that does not parse matches
/// nothing.
pub fn verify(password: &str, stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    password.len() <= MAX_PASSWORD_BYTES
        && hasher()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
}

/// Spends the time of one verification, so that an unknown user name takes
/// as long to refuse as a wrong password.
pub fn verify_nothing(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash("not a password of anyone").unwrap_or_default());
    let _ = verify(password, dummy);
}

/// A password pitlake accepts: not empty, not huge.
pub fn check(password: &str) -> Result<()> {
    if password.is_empty() {
        return Err(Error::Invalid("a password cannot be empty".into()));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(Error::Invalid(format!(
            "a password has at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_only_their_password() {
        let stored = hash("s3cret").expect("hash");
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(!stored.contains("s3cret"));
        assert!(verify("s3cret", &stored));
        assert!(!verify("s3cret ", &stored));
        assert!(!verify("s3cret", "not a hash"));
        assert_ne!(stored, hash("s3cret").expect("hash"), "salted");
        assert!(hash("").is_err());
        assert!(hash(&"x".repeat(MAX_PASSWORD_BYTES + 1)).is_err());
    }
}
