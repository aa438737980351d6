//! Who may call: Flight's basic authentication exchanged for a bearer token, under
//! the same policy and users as the Postgres listener ([`AuthConfig`]).
//!
//! - A peer the policy trusts (loopback by default) may call without credentials;
//!   if it sends basic credentials of a configured user, they must be right.
//! - Any other peer first calls `Handshake` with `authorization: Basic
//!   base64(user:password)`; a right password earns a random 256-bit token, sent back
//!   as `authorization: Bearer <token>`, that later calls carry. Tokens expire after
//!   the configured lifetime and are forgotten at restart.
//! - With no users configured, remote peers are refused outright (as on pgwire).
//!
//! Passwords travel in the clear inside the gRPC stream: configure TLS for remote
//! clients, as for pgwire's cleartext-free SCRAM the channel is still worth securing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::alphabet::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hindsight_wire::AuthConfig;
use hindsight_wire::auth::Method;
use tonic::Status;
use tonic::metadata::MetadataMap;

/// Base64 with or without padding: Go's Flight client (ADBC's driver) sends it
/// unpadded, most others padded.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Most tokens held at once; the oldest are dropped first past this.
const MAX_TOKENS: usize = 100_000;

/// The caller of one request, once admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    /// The authenticated user; `None` for a trusted peer that gave no name.
    pub(crate) user: Option<String>,
}

/// The authentication policy and the live bearer tokens.
#[derive(Debug)]
pub(crate) struct Authenticator {
    config: AuthConfig,
    ttl: Duration,
    tokens: Mutex<Tokens>,
}

/// Live tokens: token -> (user, expiry).
type Tokens = HashMap<String, (String, Instant)>;

impl Authenticator {
    pub(crate) fn new(config: AuthConfig, ttl: Duration) -> Self {
        Authenticator {
            config,
            ttl,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// A `Handshake`: check the basic credentials (or the trust policy) and issue a
    /// token; the value for the response's `authorization` header.
    pub(crate) fn handshake(
        &self,
        headers: &MetadataMap,
        peer: Option<IpAddr>,
    ) -> Result<String, Status> {
        let user = match basic_credentials(headers)? {
            Some((user, password)) => {
                self.check_password(&user, &password, peer)?;
                user
            }
            None => {
                self.check_trusted(peer)?;
                String::new()
            }
        };
        Ok(format!("Bearer {}", self.issue(user)?))
    }

    /// Admit a request: by bearer token, by basic credentials sent with it, or by
    /// the trust policy for its peer.
    pub(crate) fn admit(
        &self,
        headers: &MetadataMap,
        peer: Option<IpAddr>,
    ) -> Result<Caller, Status> {
        if let Some(token) = bearer_token(headers)? {
            return self.check_token(&token).map(|user| Caller {
                user: (!user.is_empty()).then_some(user),
            });
        }
        if let Some((user, password)) = basic_credentials(headers)? {
            self.check_password(&user, &password, peer)?;
            return Ok(Caller { user: Some(user) });
        }
        self.check_trusted(peer)?;
        Ok(Caller { user: None })
    }

    fn check_trusted(&self, peer: Option<IpAddr>) -> Result<(), Status> {
        match peer.map(|p| (p, self.config.method_for(p))) {
            Some((_, Method::Trust)) => Ok(()),
            Some((_, Method::Reject(why))) => Err(Status::unauthenticated(why)),
            Some((p, Method::Scram)) => Err(Status::unauthenticated(format!(
                "connections from {p} must authenticate: send basic credentials in a Handshake \
                 and the bearer token it returns with every call"
            ))),
            None => Err(Status::unauthenticated("the peer address is unknown")),
        }
    }

    fn check_password(
        &self,
        user: &str,
        password: &str,
        peer: Option<IpAddr>,
    ) -> Result<(), Status> {
        if let Some(Method::Reject(why)) = peer.map(|p| self.config.method_for(p)) {
            return Err(Status::unauthenticated(why));
        }
        let trusted = peer.is_some_and(|p| self.config.method_for(p) == Method::Trust);
        if self.config.verify_password(user, password) || (trusted && !self.config.has_user(user)) {
            return Ok(());
        }
        Err(Status::unauthenticated(format!(
            "password authentication failed for user \"{user}\""
        )))
    }

    fn issue(&self, user: String) -> Result<String, Status> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw)
            .map_err(|e| Status::internal(format!("no randomness for a token: {e}")))?;
        let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let mut tokens = self.lock()?;
        let now = Instant::now();
        tokens.retain(|_, (_, expires)| *expires > now);
        if tokens.len() >= MAX_TOKENS {
            let oldest = tokens
                .iter()
                .min_by_key(|(_, (_, e))| *e)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                tokens.remove(&k);
            }
        }
        tokens.insert(token.clone(), (user, now + self.ttl));
        Ok(token)
    }

    fn check_token(&self, token: &str) -> Result<String, Status> {
        let tokens = self.lock()?;
        match tokens.get(token) {
            Some((user, expires)) if *expires > Instant::now() => Ok(user.clone()),
            Some(_) => Err(Status::unauthenticated(
                "the bearer token expired: authenticate again with a Handshake",
            )),
            None => Err(Status::unauthenticated(
                "unknown bearer token: authenticate with a Handshake",
            )),
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Tokens>, Status> {
        self.tokens
            .lock()
            .map_err(|_| Status::internal("the token table is poisoned"))
    }
}

/// The `authorization` header's value, if any.
fn authorization(headers: &MetadataMap) -> Result<Option<&str>, Status> {
    headers
        .get("authorization")
        .map(|v| {
            v.to_str()
                .map_err(|_| Status::invalid_argument("the authorization header is not ASCII"))
        })
        .transpose()
}

fn bearer_token(headers: &MetadataMap) -> Result<Option<String>, Status> {
    Ok(authorization(headers)?
        .and_then(|a| strip_scheme(a, "bearer"))
        .map(str::to_string))
}

fn basic_credentials(headers: &MetadataMap) -> Result<Option<(String, String)>, Status> {
    let Some(encoded) = authorization(headers)?.and_then(|a| strip_scheme(a, "basic")) else {
        return Ok(None);
    };
    let bad = || Status::invalid_argument("malformed basic credentials");
    let bytes = BASE64.decode(encoded).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (user, password) = text.split_once(':').ok_or_else(bad)?;
    Ok(Some((user.to_string(), password.to_string())))
}

/// `value` without its case-insensitive `scheme ` prefix.
fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (s, rest) = value.split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", auth.parse().unwrap());
        m
    }

    fn basic(user: &str, pw: &str) -> MetadataMap {
        headers(&format!("Basic {}", BASE64.encode(format!("{user}:{pw}"))))
    }

    fn remote() -> Option<IpAddr> {
        Some("10.1.2.3".parse().unwrap())
    }

    fn authenticator() -> Authenticator {
        let mut c = AuthConfig::loopback_trust();
        c.add_user("alice", "pw");
        Authenticator::new(c, Duration::from_secs(60))
    }

    #[test]
    fn remote_peers_need_a_token_from_a_right_password() {
        let a = authenticator();
        assert!(a.admit(&MetadataMap::new(), remote()).is_err());
        assert!(a.handshake(&basic("alice", "nope"), remote()).is_err());
        assert!(a.handshake(&basic("bob", "pw"), remote()).is_err());
        let bearer = a.handshake(&basic("alice", "pw"), remote()).unwrap();
        let caller = a.admit(&headers(&bearer), remote()).unwrap();
        assert_eq!(caller.user.as_deref(), Some("alice"));
        assert!(a.admit(&headers("Bearer 00"), remote()).is_err());
    }

    #[test]
    fn loopback_is_trusted_but_a_wrong_password_is_not() {
        let a = authenticator();
        let lo = Some("127.0.0.1".parse().unwrap());
        assert_eq!(a.admit(&MetadataMap::new(), lo).unwrap().user, None);
        assert!(a.handshake(&basic("alice", "nope"), lo).is_err());
        assert!(a.handshake(&basic("anyone", "x"), lo).is_ok());
    }

    #[test]
    fn unpadded_base64_is_accepted() {
        let a = authenticator();
        // "alice:pwx" padded is "YWxpY2U6cHd4"; "alice:pw" needs padding ("=").
        assert!(a.handshake(&headers("Basic YWxpY2U6cHc"), remote()).is_ok());
        assert!(
            a.handshake(&headers("Basic YWxpY2U6cHc="), remote())
                .is_ok()
        );
    }

    #[test]
    fn tokens_expire() {
        let mut c = AuthConfig::loopback_trust();
        c.add_user("alice", "pw");
        let a = Authenticator::new(c, Duration::ZERO);
        let bearer = a.handshake(&basic("alice", "pw"), remote()).unwrap();
        assert!(a.admit(&headers(&bearer), remote()).is_err());
    }

    #[test]
    fn no_users_refuses_remote_peers() {
        let a = Authenticator::new(AuthConfig::loopback_trust(), Duration::from_secs(60));
        let e = a.handshake(&basic("alice", "pw"), remote()).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
    }
}
