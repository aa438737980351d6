//! Connection startup: protocol negotiation, authentication (trust, reject or
//! SCRAM-SHA-256, with an unknown user failing only at the end of the exchange),
//! startup parameters, and the ParameterStatus / BackendKeyData reply.

use std::net::SocketAddr;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use hindsight_sql::Session;
use pgwire::api::auth::sasl::scram::{ScramSecret, ScramServerAuth};
use pgwire::messages::PgWireBackendMessage as B;
use pgwire::messages::PgWireFrontendMessage as F;
use pgwire::messages::startup::{
    Authentication, BackendKeyData, NegotiateProtocolVersion, ParameterStatus, SecretKey, Startup,
};

use crate::auth::Method;
use crate::codec::Frame;
use crate::metrics::Metrics;
use crate::shared::Shared;
use crate::sqlstate::{ProtocolError, WireError};

use super::state::*;

impl Connection {
    pub(super) fn apply_startup_parameters(&mut self, startup: &Startup) {
        if self.shared.config.statement_timeout_ms > 0 {
            let _ = self.session.set_variable(
                "statement_timeout",
                &self.shared.config.statement_timeout_ms.to_string(),
            );
        }
        for (k, v) in &startup.parameters {
            match k.as_str() {
                "user" | "database" | "replication" => {}
                "options" => {
                    // `-c name=value` pairs (PGOPTIONS).
                    let words: Vec<&str> = v.split_whitespace().collect();
                    let mut i = 0;
                    while i < words.len() {
                        let w = words.get(i).copied().unwrap_or_default();
                        let pair = if w == "-c" {
                            i += 1;
                            words.get(i).copied().unwrap_or_default()
                        } else {
                            w.strip_prefix("-c").unwrap_or(w)
                        };
                        if let Some((name, value)) = pair.split_once('=') {
                            let _ = self.session.set_variable(&name.replace('-', "_"), value);
                        }
                        i += 1;
                    }
                }
                name if name.starts_with("_pq_.") => {}
                name => {
                    if let Err(e) = self.session.set_variable(name, v) {
                        tracing::debug!(name, error = %e, "startup parameter ignored");
                    }
                }
            }
        }
    }

    pub(super) async fn send_startup_reply(&mut self, user: &str) -> std::io::Result<()> {
        let setting = |s: &Session, k: &str, d: &str| s.setting(k).unwrap_or(d).to_string();
        // A cluster follower is a hot standby: libpq's target_session_attrs and
        // pgjdbc's targetServerType read these two.
        let standby = !self.shared.engine.db().role().takes_writes();
        let on_off = |b: bool| if b { "on" } else { "off" }.to_string();
        let params = [
            (
                "server_version",
                setting(&self.session, "server_version", "16.0"),
            ),
            ("server_encoding", "UTF8".to_string()),
            ("client_encoding", "UTF8".to_string()),
            ("DateStyle", setting(&self.session, "datestyle", "ISO, MDY")),
            ("TimeZone", setting(&self.session, "timezone", "UTC")),
            ("IntervalStyle", "postgres".to_string()),
            ("integer_datetimes", "on".to_string()),
            ("standard_conforming_strings", "on".to_string()),
            ("is_superuser", "on".to_string()),
            ("session_authorization", user.to_string()),
            (
                "application_name",
                setting(&self.session, "application_name", ""),
            ),
            ("in_hot_standby", on_off(standby)),
            ("default_transaction_read_only", on_off(standby)),
        ];
        self.socket
            .feed(B::Authentication(Authentication::Ok).into())
            .await?;
        for (name, value) in params {
            self.socket
                .feed(B::ParameterStatus(ParameterStatus::new(name.to_string(), value)).into())
                .await?;
        }
        self.socket
            .feed(
                B::BackendKeyData(BackendKeyData::new(
                    self.reg.pid,
                    SecretKey::I32(self.reg.secret),
                ))
                .into(),
            )
            .await?;
        self.ready_for_query().await
    }
}

/// Negotiate down to protocol 3.0 when the client asked for a newer minor version or
/// sent protocol options (`_pq_.*`) we do not support.
pub(super) async fn negotiate_minor(socket: &mut Socket, startup: &Startup) -> std::io::Result<()> {
    let unsupported: Vec<String> = startup
        .parameters
        .keys()
        .filter(|k| k.starts_with("_pq_."))
        .cloned()
        .collect();
    if startup.protocol_number_minor > 0 || !unsupported.is_empty() {
        socket
            .feed(B::NegotiateProtocolVersion(NegotiateProtocolVersion::new(0, unsupported)).into())
            .await?;
    }
    Ok(())
}

/// The startup message of a new socket, or `None` when the connection ends here:
/// a cancel request (acted on), a closed socket, a timeout, or a first message that
/// is refused (answered with FATAL).
pub(super) async fn read_startup(
    socket: &mut Socket,
    shared: &Shared,
) -> std::io::Result<Option<Startup>> {
    let first = tokio::time::timeout(STARTUP_TIMEOUT, socket.next()).await;
    match first {
        Ok(Some(Ok(Frame::Message(F::Startup(s))))) => return Ok(Some(s)),
        Ok(Some(Ok(Frame::Message(F::CancelRequest(c))))) => {
            if let Some(secret) = c.secret_key.as_i32() {
                shared.cancel(c.pid, secret);
            }
        }
        Ok(Some(Ok(Frame::Refused(e) | Frame::RefusedExtended(e)))) => fatal(socket, e).await?,
        Ok(Some(Ok(Frame::Message(_) | Frame::Bind(_)))) => {
            let e = ProtocolError::Violation("expected a startup message".into());
            fatal(socket, e).await?;
        }
        Ok(Some(Err(e))) => return Err(e),
        Ok(None) | Err(_) => {}
    }
    Ok(None)
}

/// Check the protocol version, negotiate the minor version and authenticate
/// `user`. False when the connection ends here (refused with FATAL, or the
/// exchange timed out).
pub(super) async fn admit(
    socket: &mut Socket,
    shared: &Shared,
    peer: SocketAddr,
    startup: &Startup,
    user: &str,
) -> std::io::Result<bool> {
    if startup.protocol_number_major != 3 {
        let e = ProtocolError::Violation(format!(
            "unsupported frontend protocol {}.{}: server supports 3.0",
            startup.protocol_number_major, startup.protocol_number_minor
        ));
        fatal(socket, e).await?;
        return Ok(false);
    }
    negotiate_minor(socket, startup).await?;
    let auth =
        tokio::time::timeout(STARTUP_TIMEOUT, authenticate(socket, shared, peer, user)).await;
    match auth {
        Ok(Ok(())) => Ok(true),
        Ok(Err(e)) => {
            Metrics::inc(&shared.metrics.auth_failures);
            tracing::info!(%peer, user, error = %e, "authentication failed");
            fatal(socket, e).await?;
            Ok(false)
        }
        Err(_) => Ok(false),
    }
}

/// Run the authentication exchange the policy asks for.
pub(super) async fn authenticate(
    socket: &mut Socket,
    shared: &Shared,
    peer: SocketAddr,
    user: &str,
) -> Result<(), WireError> {
    let io = |e: std::io::Error| WireError::from(ProtocolError::Violation(e.to_string()));
    match shared.config.auth.method_for(peer.ip()) {
        Method::Trust => Ok(()),
        Method::Reject(msg) => Err(ProtocolError::AuthRequired(msg).into()),
        Method::Scram => {
            let failed = || WireError::from(ProtocolError::AuthFailed(user.to_string()));
            // An unknown user goes through the same exchange and fails at the end.
            let known = shared.config.auth.secret(user);
            let known_user = known.is_some();
            let secret = known.unwrap_or_else(|| {
                ScramSecret::verifier_from_salted_password(vec![0; 16], vec![0; 32], 4096)
            });
            socket
                .send(B::Authentication(Authentication::SASL(vec!["SCRAM-SHA-256".into()])).into())
                .await
                .map_err(io)?;
            let first = password_message(socket)
                .await
                .ok_or_else(failed)?
                .into_sasl_initial_response()
                .map_err(|e| ProtocolError::Violation(e.to_string()))?;
            if first.auth_method != "SCRAM-SHA-256" {
                return Err(failed());
            }
            let data = first.data.unwrap_or_default();
            let (server_first, waiting) = ScramServerAuth::new()
                .on_client_first_message_with_secret(&data, secret)
                .map_err(|_| failed())?;
            socket
                .send(
                    B::Authentication(Authentication::SASLContinue(Bytes::from(server_first)))
                        .into(),
                )
                .await
                .map_err(io)?;
            let fin = password_message(socket)
                .await
                .ok_or_else(failed)?
                .into_sasl_response()
                .map_err(|e| ProtocolError::Violation(e.to_string()))?;
            let server_final = waiting
                .on_client_final_message(&fin.data)
                .map_err(|_| failed())?;
            if !known_user {
                return Err(failed());
            }
            socket
                .feed(
                    B::Authentication(Authentication::SASLFinal(Bytes::from(server_final))).into(),
                )
                .await
                .map_err(io)?;
            Ok(())
        }
    }
}

/// The next message, if it is a password/SASL response.
pub(super) async fn password_message(
    socket: &mut Socket,
) -> Option<pgwire::messages::startup::PasswordMessageFamily> {
    match socket.next().await {
        Some(Ok(Frame::Message(F::PasswordMessageFamily(p)))) => Some(p),
        _ => None,
    }
}

/// Send a FATAL error and end the connection.
pub(super) async fn fatal(socket: &mut Socket, e: impl Into<WireError>) -> std::io::Result<()> {
    let e: WireError = e.into();
    let mut r = e.to_response();
    for f in r.fields.iter_mut() {
        if f.0 == b'S' || f.0 == b'V' {
            f.1 = "FATAL".into();
        }
    }
    socket.feed(B::ErrorResponse(r).into()).await?;
    socket.flush().await?;
    let _ = socket.close().await;
    Ok(())
}
