//! What the broker's refusals mean. lapin reports them as protocol errors
//! (a reply code and the broker's text) or as I/O errors; the ones a caller
//! acts on become typed [`Error`]s here:
//!
//! | lapin reports | when | warren's error |
//! | --- | --- | --- |
//! | `ACCESS_REFUSED` (403) while connecting | a wrong user name or password | [`Error::AuthenticationRefused`] |
//! | `NOT_ALLOWED` (530) `vhost … not found` | an unknown vhost | [`Error::VhostNotFound`] |
//! | `NOT_ALLOWED` `access to vhost … refused for user …` (nothing after) | a user without permissions on the vhost | [`Error::AuthenticationRefused`] |
//! | I/O `InvalidData` on an `amqps://` URL | TLS spoken to a plain port, an untrusted certificate or host name, a client certificate missing or refused | [`Error::Tls`] (its `reason` says which) |
//! | `PRECONDITION_FAILED` (406) on a declare | a queue or exchange with other arguments | [`Error::TopologyMismatch`] |
//! | `ACCESS_REFUSED` on an exclusive consume | an instance id in use | [`Error::InstanceInUse`] |
//! | `ACCESS_REFUSED` on anything else | a user without the permission | [`Error::AccessRefused`] |
//!
//! Every other connection failure is transient and retried: refused, reset
//! or timed out, a name that does not resolve (DNS may come back), a vhost
//! at its connection limit or not yet started (`NOT_ALLOWED - access to
//! vhost … refused …: connection limit …`, `… is down`).

use crate::config::BrokerUrl;
use crate::error::Error;
use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::ErrorKind;
use std::sync::Arc;

/// Why one connection attempt failed.
pub(super) enum ConnectFailure {
    /// Worth retrying: the broker or the network may come back.
    Transient(String),
    /// Retrying cannot help until a setting or the broker's users or
    /// vhosts change.
    Permanent(Error),
}

/// Classifies the failure of a connection attempt to `url`, whose vhost
/// `vhost` replaced if set (with the setting it came from).
pub(super) fn connect_failure(
    e: &lapin::Error,
    url: &BrokerUrl,
    vhost: Option<(&str, &'static str)>,
) -> ConnectFailure {
    let uri = url.expose().parse::<lapin::uri::AMQPUri>().ok();
    let login_refused = |reason: &str| Error::AuthenticationRefused {
        url: url.to_string(),
        user: uri
            .as_ref()
            .map(|u| u.authority.userinfo.username.clone())
            .unwrap_or_default(),
        setting: url.setting().to_owned(),
        reason: reason.to_owned(),
    };
    let permanent = match e.kind() {
        ErrorKind::ProtocolError(p) => match (p.kind(), p.get_message().as_str()) {
            (AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED), reason) => {
                Some(login_refused(reason))
            }
            (AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED), reason) => {
                let reason = reason.strip_prefix("NOT_ALLOWED - ").unwrap_or(reason);
                if reason.starts_with("vhost ") && reason.ends_with(" not found") {
                    let (vhost, setting) = match vhost {
                        Some((vhost, setting)) => (vhost.to_owned(), setting),
                        None => (
                            uri.as_ref().map(|u| u.vhost.clone()).unwrap_or_default(),
                            url.setting(),
                        ),
                    };
                    Some(Error::VhostNotFound {
                        url: url.to_string(),
                        vhost,
                        setting: setting.to_owned(),
                    })
                } else if reason.starts_with("access to vhost ")
                    && reason.contains(" refused for user ")
                    // A reason after the user ('…': connection limit (0)
                    // is reached) is a state of the vhost, not of the user.
                    && reason.ends_with('\'')
                {
                    Some(login_refused(reason))
                } else {
                    None
                }
            }
            _ => None,
        },
        // rustls reports a handshake it cannot parse (a plain AMQP port
        // answering a ClientHello) or a certificate it does not trust as
        // invalid data; neither changes by retrying.
        ErrorKind::IOError(io)
            if io.kind() == std::io::ErrorKind::InvalidData
                && url.expose().starts_with("amqps://") =>
        {
            Some(Error::Tls {
                url: url.to_string(),
                setting: url.setting().to_owned(),
                reason: tls_reason(&io.to_string(), uri.as_ref()),
                source: io.clone(),
            })
        }
        _ => None,
    };
    permanent.map_or_else(
        || ConnectFailure::Transient(e.to_string()),
        ConnectFailure::Permanent,
    )
}

/// The broker's account of a declaration it refused because the queue or
/// exchange exists with other arguments (`PRECONDITION_FAILED`).
pub(crate) struct Mismatch {
    /// The argument the broker named (`x-expires`, `durable`, `type`).
    pub(crate) argument: String,
    /// Its value on the existing queue or exchange (`None`: not set).
    pub(crate) existing: Option<String>,
}

/// The broker's refusal in `e` (a channel closed with a soft error code)
/// and its text, if that is what `e` is.
fn soft(e: &lapin::Error) -> Option<(&AMQPSoftError, &str)> {
    let ErrorKind::ProtocolError(p) = e.kind() else {
        return None;
    };
    let AMQPErrorKind::Soft(code) = p.kind() else {
        return None;
    };
    Some((code, p.get_message().as_str()))
}

/// Reads a `PRECONDITION_FAILED - inequivalent arg 'x-expires' for queue
/// 'q' in vhost '/': received '2000' but current is '1000'` refusal.
pub(crate) fn mismatch(e: &lapin::Error) -> Option<Mismatch> {
    let (AMQPSoftError::PRECONDITIONFAILED, text) = soft(e)? else {
        return None;
    };
    let rest = text.split_once("inequivalent arg '")?.1;
    let (argument, rest) = rest.split_once('\'')?;
    let current = rest.split_once(" but current is ")?.1;
    Some(Mismatch {
        argument: argument.to_owned(),
        existing: value(current),
    })
}

/// A value as RabbitMQ prints it in a mismatch: `none`, `'1000'`, or
/// `the value '1000' of type 'long'`.
fn value(s: &str) -> Option<String> {
    let s = s.strip_prefix("the value ").unwrap_or(s);
    let quoted = s.strip_prefix('\'')?;
    let end = quoted.find("' of type '").unwrap_or(quoted.len());
    Some(quoted[..end].trim_end_matches('\'').to_owned())
}

/// Whether the broker refused an exclusive consume because another
/// consumer holds the queue (`ACCESS_REFUSED - queue … in exclusive use`).
pub(crate) fn in_exclusive_use(e: &lapin::Error) -> bool {
    matches!(soft(e), Some((AMQPSoftError::ACCESSREFUSED, _)))
}

/// Whether the broker answered that a queue or exchange does not exist
/// (`NOT_FOUND`, as a passive declare of a missing queue is answered).
pub(crate) fn not_found(e: &lapin::Error) -> bool {
    matches!(soft(e), Some((AMQPSoftError::NOTFOUND, _)))
}

/// What a failed TLS handshake means, from what rustls said.
fn tls_reason(said: &str, uri: Option<&lapin::uri::AMQPUri>) -> String {
    let host = uri.map_or("", |u| u.authority.host.as_str());
    if said.contains("UnknownIssuer") || said.contains("BadSignature") {
        "the broker's certificate is not signed by a CA this process trusts; give that CA's \
         certificate in WARREN_TLS_CA (Config::tls_ca)"
            .to_owned()
    } else if said.contains("not valid for name") || said.contains("NotValidForName") {
        format!(
            "the broker's certificate is not valid for `{host}`; connect by a name the \
             certificate lists ({said})"
        )
    } else if said.contains("Expired") || said.contains("NotValidYet") {
        format!("the broker's certificate is out of its validity period ({said})")
    } else if said.contains("CertificateRequired") {
        "the broker asks for a client certificate; give one in WARREN_TLS_CERT and \
         WARREN_TLS_KEY (Config::tls_client)"
            .to_owned()
    } else if said.contains("alert") {
        format!("the broker refused the handshake, perhaps the client certificate ({said})")
    } else {
        "the port may speak plain AMQP: for a plain port (5672) use amqp://, for TLS use \
         amqps:// with the broker's TLS port (usually 5671)"
            .to_owned()
    }
}

/// Any other failed broker operation, with lapin's error as the source;
/// a refused permission is [`Error::AccessRefused`].
pub(crate) fn broker(context: impl Into<String>, e: lapin::Error) -> Error {
    let context: String = context.into();
    if let Some((AMQPSoftError::ACCESSREFUSED, reason)) = soft(&e) {
        return Error::AccessRefused {
            context: context
                .strip_prefix("cannot ")
                .unwrap_or(&context)
                .to_owned(),
            reason: reason.to_owned(),
        };
    }
    Error::Broker {
        context,
        source: Some(Arc::new(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::value;

    #[test]
    fn reads_the_values_rabbitmq_prints() {
        assert_eq!(value("'1000'"), Some("1000".into()));
        assert_eq!(
            value("the value '1000' of type 'long'"),
            Some("1000".into())
        );
        assert_eq!(value("none"), None);
    }
}
