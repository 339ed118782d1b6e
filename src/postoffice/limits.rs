//! The bounds a PostOffice keeps, so that no client can make it grow
//! without bound.

use crate::error::Error;
use std::time::Duration;

/// Limits of a PostOffice, per connection and in all. The defaults are
/// those of docs/POSTOFFICE.md.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections held at once; one more is refused with HTTP 503
    /// before the upgrade (default 10 000). [`PostOffice::serve`] bounds
    /// its listener's connections (WebSockets and plain requests) with
    /// the same number: there, one more is closed at once.
    ///
    /// [`PostOffice::serve`]: super::PostOffice::serve
    pub max_connections: usize,
    /// The largest frame answered normally; a larger one gets a
    /// `frame_too_large` error frame. One over 4× this closes the
    /// connection (1009) without being read whole (default 64 KiB).
    pub max_frame_bytes: usize,
    /// Requests of one connection in flight at once; one more is
    /// answered with a `too_many_in_flight` error frame (default 64).
    pub max_in_flight: usize,
    /// Frames queued for one connection; a client that lets the queue
    /// fill is closed with `4008` (default 256).
    pub send_queue: usize,
    /// How often an idle connection is pinged (default 20 s).
    pub ping_every: Duration,
    /// A connection from which nothing (not even a pong) came for this
    /// long is closed with `4002` (default 60 s). Under
    /// [`PostOffice::serve`], also the idle timeout of connections not
    /// upgraded (keep-alive, nothing in flight).
    ///
    /// [`PostOffice::serve`]: super::PostOffice::serve
    pub idle_timeout: Duration,
    /// Under [`PostOffice::serve`], the time a client has to send its
    /// request's headers, TLS handshake included (default 10 s).
    ///
    /// [`PostOffice::serve`]: super::PostOffice::serve
    pub header_read_timeout: Duration,
    /// How long a new connection has to send its `auth` frame (default 10 s).
    pub auth_timeout: Duration,
    /// The deadline of a request without `timeout_ms` (default 10 s).
    pub default_timeout: Duration,
    /// The longest `timeout_ms` taken; longer ones are cut to it
    /// (default 60 s).
    pub max_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_frame_bytes: 64 * 1024,
            max_in_flight: 64,
            send_queue: 256,
            ping_every: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(10),
            auth_timeout: Duration::from_secs(10),
            default_timeout: Duration::from_secs(10),
            max_timeout: Duration::from_secs(60),
        }
    }
}

impl Limits {
    /// The defaults, overridden by `WARREN_POSTOFFICE_MAX_CONNECTIONS`,
    /// `…_MAX_FRAME_BYTES`, `…_MAX_IN_FLIGHT`, `…_SEND_QUEUE`,
    /// `…_PING_MS`, `…_IDLE_TIMEOUT_MS`, `…_HEADER_TIMEOUT_MS`,
    /// `…_AUTH_TIMEOUT_MS`, `…_DEFAULT_TIMEOUT_MS` and `…_MAX_TIMEOUT_MS`
    /// where `lookup` has them.
    ///
    /// # Errors
    /// [`Error::Config`] naming a variable that is not a positive whole
    /// number (zero included: no limit is zero).
    pub fn with_env_from(mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let number = |name: &str| -> Result<Option<u64>, Error> {
            let var = format!("WARREN_POSTOFFICE_{name}");
            lookup(&var)
                .map(|v| crate::listen::positive(&var, &v))
                .transpose()
        };
        let count = |name: &str, into: &mut usize| -> Result<(), Error> {
            if let Some(n) = number(name)? {
                *into = usize::try_from(n).unwrap_or(usize::MAX);
            }
            Ok(())
        };
        count("MAX_CONNECTIONS", &mut self.max_connections)?;
        count("MAX_FRAME_BYTES", &mut self.max_frame_bytes)?;
        count("MAX_IN_FLIGHT", &mut self.max_in_flight)?;
        count("SEND_QUEUE", &mut self.send_queue)?;
        let millis = |name: &str, into: &mut Duration| -> Result<(), Error> {
            if let Some(n) = number(name)? {
                *into = Duration::from_millis(n);
            }
            Ok(())
        };
        millis("PING_MS", &mut self.ping_every)?;
        millis("IDLE_TIMEOUT_MS", &mut self.idle_timeout)?;
        millis("HEADER_TIMEOUT_MS", &mut self.header_read_timeout)?;
        millis("AUTH_TIMEOUT_MS", &mut self.auth_timeout)?;
        millis("DEFAULT_TIMEOUT_MS", &mut self.default_timeout)?;
        millis("MAX_TIMEOUT_MS", &mut self.max_timeout)?;
        Ok(self)
    }

    /// Checks that no limit is zero (a PostOffice that could hold no
    /// connection, or close every one at once, is a mistake).
    ///
    /// # Errors
    /// [`Error::Config`] naming the first limit that is zero.
    pub fn check(&self) -> Result<(), Error> {
        let zero = [
            ("max_connections", self.max_connections == 0),
            ("max_frame_bytes", self.max_frame_bytes == 0),
            ("max_in_flight", self.max_in_flight == 0),
            ("send_queue", self.send_queue == 0),
            ("ping_every", self.ping_every.is_zero()),
            ("idle_timeout", self.idle_timeout.is_zero()),
            ("header_read_timeout", self.header_read_timeout.is_zero()),
            ("auth_timeout", self.auth_timeout.is_zero()),
            ("default_timeout", self.default_timeout.is_zero()),
            ("max_timeout", self.max_timeout.is_zero()),
        ];
        match zero.iter().find(|(_, z)| *z) {
            Some((name, _)) => Err(Error::Config(format!(
                "the PostOffice limit `{name}` is zero; it must be positive"
            ))),
            None => Ok(()),
        }
    }

    /// The listener settings of [`PostOffice::serve`](super::PostOffice::serve):
    /// these limits' connections, idle and header-read timeouts.
    pub(crate) fn listen(&self) -> crate::listen::ListenConfig {
        crate::listen::ListenConfig::default()
            .max_connections(self.max_connections)
            .idle_timeout(self.idle_timeout)
            .header_read_timeout(self.header_read_timeout)
    }

    /// The frame size past which a connection is closed unread.
    pub(crate) fn hard_frame_limit(&self) -> usize {
        self.max_frame_bytes.saturating_mul(4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_read_the_environment() {
        let env = |k: &str| match k {
            "WARREN_POSTOFFICE_MAX_IN_FLIGHT" => Some("3".to_owned()),
            "WARREN_POSTOFFICE_IDLE_TIMEOUT_MS" => Some("1500".to_owned()),
            _ => None,
        };
        let l = Limits::default().with_env_from(env).unwrap();
        assert_eq!(l.max_in_flight, 3);
        assert_eq!(l.idle_timeout, Duration::from_millis(1500));
        assert_eq!(l.max_connections, 10_000);
        let bad = |k: &str| (k == "WARREN_POSTOFFICE_SEND_QUEUE").then(|| "lots".to_owned());
        let err = Limits::default().with_env_from(bad).unwrap_err();
        assert!(
            err.to_string().contains("WARREN_POSTOFFICE_SEND_QUEUE"),
            "{err}"
        );
    }

    #[test]
    fn zero_is_an_error_not_one() {
        for var in [
            "MAX_CONNECTIONS",
            "SEND_QUEUE",
            "IDLE_TIMEOUT_MS",
            "HEADER_TIMEOUT_MS",
        ] {
            let name = format!("WARREN_POSTOFFICE_{var}");
            let zero = |k: &str| (k == name).then(|| "0".to_owned());
            let err = Limits::default().with_env_from(zero).unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{err}");
            assert!(err.to_string().contains(&name), "{err}");
        }
        let limits = Limits {
            max_in_flight: 0,
            ..Limits::default()
        };
        let err = limits.check().unwrap_err();
        assert!(err.to_string().contains("max_in_flight"), "{err}");
        assert!(Limits::default().check().is_ok());
    }
}
