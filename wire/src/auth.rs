//! Who may connect: the authentication policy and the SCRAM-SHA-256 user store.
//!
//! Policy (checked per connection, by peer address):
//! - a loopback peer is trusted when `trust_loopback` is on (the default), otherwise it
//!   authenticates like anyone else;
//! - any other peer must authenticate with SCRAM-SHA-256 against a configured user,
//!   unless the operator explicitly forced `trust_remote`.
//!
//! Passwords are never kept: each user's salted password (PBKDF2, 4096 iterations) is
//! derived once at startup, and the SCRAM verifier from it per login.

use std::collections::HashMap;
use std::net::IpAddr;

use pgwire::api::auth::sasl::scram::{ScramSecret, gen_salted_password};

/// SCRAM iteration count (PostgreSQL's default).
pub const SCRAM_ITERATIONS: usize = 4096;

/// How a connection must authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Trust,
    Scram,
    /// Refused before any exchange (no user could ever authenticate).
    Reject(String),
}

/// The server's authentication settings.
#[derive(Clone, Default)]
pub struct AuthConfig {
    /// Trust connections from loopback addresses without a password.
    pub trust_loopback: bool,
    /// Trust every connection (explicitly forced by the operator).
    pub trust_remote: bool,
    /// Per user: salt and SCRAM salted password (the verifier is derived from them).
    users: HashMap<String, (Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("trust_loopback", &self.trust_loopback)
            .field("trust_remote", &self.trust_remote)
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl AuthConfig {
    /// Loopback trusted, no users.
    pub fn loopback_trust() -> Self {
        AuthConfig {
            trust_loopback: true,
            trust_remote: false,
            users: HashMap::new(),
        }
    }

    /// Add a user who logs in with `password` (SCRAM-SHA-256).
    pub fn add_user(&mut self, name: &str, password: &str) {
        let salt: [u8; 16] = rand_salt();
        let salted = gen_salted_password(password, &salt, SCRAM_ITERATIONS);
        self.users.insert(name.to_string(), (salt.to_vec(), salted));
    }

    pub fn has_users(&self) -> bool {
        !self.users.is_empty()
    }

    /// Whether `name` is a configured user.
    pub fn has_user(&self, name: &str) -> bool {
        self.users.contains_key(name)
    }

    /// The method for a peer.
    pub fn method_for(&self, peer: IpAddr) -> Method {
        if self.trust_remote || (self.trust_loopback && peer.is_loopback()) {
            Method::Trust
        } else if self.users.is_empty() {
            Method::Reject(format!(
                "no authentication is configured for connections from {peer}: \
                 configure users (SCRAM-SHA-256) or connect over loopback"
            ))
        } else {
            Method::Scram
        }
    }

    /// Whether `password` is `user`'s (for protocols that send the password itself,
    /// over TLS: Arrow Flight's basic authentication). Compared in constant time.
    pub fn verify_password(&self, user: &str, password: &str) -> bool {
        let Some((salt, salted)) = self.users.get(user) else {
            return false;
        };
        let given = gen_salted_password(password, salt, SCRAM_ITERATIONS);
        given.len() == salted.len()
            && given
                .iter()
                .zip(salted)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    /// The verifier of a user, if the user exists.
    pub fn secret(&self, user: &str) -> Option<ScramSecret> {
        self.users.get(user).map(|(salt, salted)| {
            ScramSecret::verifier_from_salted_password(
                salt.clone(),
                salted.clone(),
                SCRAM_ITERATIONS,
            )
        })
    }
}

/// 16 random bytes for a salt, from the OS (via std's randomly seeded hasher, mixed
/// with the clock; the salt needs uniqueness, not secrecy).
fn rand_salt() -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    let mut out = [0u8; 16];
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_trusted_and_remote_needs_users() {
        let mut a = AuthConfig::loopback_trust();
        assert_eq!(a.method_for("127.0.0.1".parse().unwrap()), Method::Trust);
        assert!(matches!(
            a.method_for("10.0.0.1".parse().unwrap()),
            Method::Reject(_)
        ));
        a.add_user("alice", "pw");
        assert_eq!(a.method_for("10.0.0.1".parse().unwrap()), Method::Scram);
        assert!(a.secret("alice").is_some());
        assert!(a.secret("bob").is_none());
    }

    #[test]
    fn passwords_are_verified() {
        let mut a = AuthConfig::loopback_trust();
        a.add_user("alice", "s3cret");
        assert!(a.verify_password("alice", "s3cret"));
        assert!(!a.verify_password("alice", "s3cre"));
        assert!(!a.verify_password("bob", "s3cret"));
    }
}
