//! Reconnection and back-pressure settings: how long to wait between
//! connection attempts, and what calls do while the broker cannot take them.

use crate::error::Error;
use std::time::Duration;

/// Exponential backoff with jitter between connection attempts.
///
/// After the `n`-th failed round (every URL tried once) the supervisor waits
/// a random time in `[d/2, d]`, where `d = initial * factor^(n-1)`, capped at
/// `max`. The cap also bounds how long a connection stays down after the
/// broker is back: at most `max` plus one handshake.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Backoff {
    /// The first delay.
    pub initial: Duration,
    /// How much the delay grows after each failed round (at least 1).
    pub factor: f64,
    /// The longest delay.
    pub max: Duration,
    /// Failed rounds before [`Connection::connect`](crate::Connection::connect)
    /// gives up and the state turns [`Down`](crate::ConnectionState::Down);
    /// `None`: never. The supervisor itself never gives up: after that it
    /// keeps trying every `max`.
    pub max_attempts: Option<u32>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            factor: 2.0,
            max: Duration::from_secs(2),
            // About ten seconds: long enough for a broker that is starting,
            // short enough that a wrong URL is an error, not a hang.
            max_attempts: Some(10),
        }
    }
}

impl Backoff {
    crate::message::setters! {
        /// Sets the first delay.
        #[must_use]
        fn initial(initial: Duration);
        /// Sets the factor each delay grows by (at least 1).
        #[must_use]
        fn factor(factor: f64);
        /// Sets the longest delay.
        #[must_use]
        fn max(max: Duration);
        /// Sets how many failed rounds make the connection `Down` (`None`:
        /// never).
        #[must_use]
        fn max_attempts(max_attempts: Option<u32>);
    }

    /// The delay after failed round number `attempt` (0-based): a random
    /// point in `[d/2, d]` where `d = initial * factor^attempt`, capped at `max`.
    #[must_use]
    pub fn delay(&self, attempt: u32) -> Duration {
        let grown = self.initial.as_secs_f64() * self.factor.powi(attempt.min(1000) as i32);
        let exp = if grown.is_finite() && grown < self.max.as_secs_f64() {
            Duration::from_secs_f64(grown)
        } else {
            self.max
        };
        let half = exp / 2;
        half + half.mul_f64(random())
    }

    pub(super) fn validate(&self) -> Result<(), Error> {
        if !(self.factor.is_finite() && self.factor >= 1.0) {
            return Err(Error::Config(format!(
                "backoff factor {} must be a number of at least 1",
                self.factor
            )));
        }
        if self.initial.is_zero() || self.max < self.initial {
            return Err(Error::Config(format!(
                "backoff delays must be positive with initial <= max (initial {:?}, max {:?})",
                self.initial, self.max
            )));
        }
        Ok(())
    }
}

/// A number in `[0, 1)`, random enough for spreading reconnects and
/// connections.
pub(super) fn random() -> f64 {
    use std::hash::BuildHasher;
    let state = std::collections::hash_map::RandomState::new();
    (state.hash_one(std::time::SystemTime::now()) >> 11) as f64 / (1u64 << 53) as f64
}

/// What calls and sends do when the broker cannot take them right now:
/// while the connection is down or being re-established, and while the
/// broker blocks publishing (`connection.blocked`, sent when a memory or
/// disk alarm is on).
///
/// | situation | `Wait` | `FailFast` |
/// | --- | --- | --- |
/// | no connection, new call | waits for it, up to the deadline; then [`Error::Unavailable`] | [`Error::Unavailable`] at once |
/// | broker blocking, new call | waits for the unblock, up to the deadline; then [`Error::Unavailable`] with the broker's reason | [`Error::Unavailable`] with the broker's reason, at once |
/// | broker starts blocking while a call is in flight | waits, up to the deadline; then [`Error::Blocked`] | [`Error::Blocked`] at once |
/// | connection lost while a call is in flight | [`Error::ConnectionLost`] at once | the same |
///
/// [`Error::Unavailable`] means the request was not sent; [`Error::Blocked`]
/// and [`Error::ConnectionLost`] that it may or may not have run. RabbitMQ
/// tells a connection it is blocked only when it publishes, so the first call
/// after an alarm starts is the one that finds out.
///
/// A one-way request ([`Delivery::OneWay`](crate::Delivery::OneWay)) interrupted by a lost connection
/// is sent again on the next one whatever the policy, until its deadline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum WhenDisconnected {
    /// Wait for the broker, up to the call's deadline.
    #[default]
    Wait,
    /// Fail at once.
    FailFast,
}

impl std::str::FromStr for WhenDisconnected {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "wait" => Ok(Self::Wait),
            "fail-fast" | "failfast" => Ok(Self::FailFast),
            other => Err(Error::Config(format!(
                "`{other}` is not a disconnection policy; use `wait` or `fail-fast`"
            ))),
        }
    }
}

/// A duration from the environment: milliseconds, or a number with a unit
/// (`ms`, `s`, `m`).
pub(super) fn duration(name: &str, v: &str) -> Result<Duration, Error> {
    let v = v.trim();
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().map_err(|_| {
        Error::Config(format!(
            "{name}=`{v}` is not a duration (`500`, `500ms`, `2s`)"
        ))
    })?;
    let secs = match unit.trim() {
        "" | "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => {
            return Err(Error::Config(format!(
                "{name}=`{v}`: unknown unit; use ms, s or m"
            )))
        }
    };
    Duration::try_from_secs_f64(secs)
        .map_err(|_| Error::Config(format!("{name}=`{v}` is out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    #[test]
    fn backoff_grows_and_is_capped() {
        for factor in [1.0, 1.5, 2.0, 10.0] {
            let b = Backoff::default().factor(factor);
            for attempt in 0..2000 {
                let d = b.delay(attempt);
                let full = b
                    .initial
                    .mul_f64(factor.powi(attempt.min(60) as i32).min(1e6))
                    .min(b.max);
                // (Within a microsecond: f64 rounding.)
                let slack = Duration::from_micros(1);
                assert!(
                    d + slack >= full / 2 && d <= full + slack,
                    "{factor} {attempt}: {d:?}"
                );
            }
        }
        let bad = Backoff::default().factor(0.5);
        assert!(Config::default().backoff(bad).validate().is_err());
    }
}
