//! The envelope every event travels in, and the foreign shapes a
//! subscription can read instead ([`Format`]).
//!
//! A body (JSON or MessagePack, a map in both):
//!
//! ```json
//! {"eventId": "5f0c…", "version": 1, "eventType": "ticket.created",
//!  "timestamp": "2026-12-02T14:00:03.123Z", "payload": {"id": 7}}
//! ```
//!
//! with the AMQP properties `message_id` = eventId, `type` = eventType,
//! `timestamp` (seconds), `content_type` and `delivery_mode` 2
//! (persistent); the routing key is the eventType. `docs/PROTOCOL.md` has
//! the whole contract.

use crate::codec::ContentType;
use serde::de::{self, DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a subscriber knows of an event besides its payload.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventMeta {
    /// The eventId (for foreign shapes without one: the `message_id`
    /// property, else a fresh id).
    pub id: String,
    /// The event type, such as `ticket.created`.
    pub event_type: String,
    /// The schema version the payload was written with (1 when the shape
    /// has none).
    pub version: u32,
    /// When it was published, as the producer wrote it (RFC 3339), if it
    /// did; [`EventMeta::time`] parses it.
    pub timestamp: Option<String>,
    /// The routing key it was published with.
    pub routing_key: String,
    /// Its encoding.
    pub content_type: ContentType,
}

impl EventMeta {
    /// The timestamp as a [`SystemTime`], if there is one in RFC 3339
    /// (a time without an offset is read as UTC).
    #[must_use]
    pub fn time(&self) -> Option<SystemTime> {
        self.timestamp.as_deref().and_then(parse_rfc3339)
    }
}

/// The shape of the bodies a subscription reads: warren's envelope, or
/// what another producer writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// `{eventId, version, eventType, timestamp, payload}` (this module's
    /// docs). `version` may also be written `"v1"` or `"1"`.
    #[default]
    Envelope,
    /// `{event_type, timestamp, data}` (plus `event_id` and `version` if
    /// present): the eventId is `event_id`, else the `message_id` property.
    TypeAndData,
    /// A bare payload: the type is the routing key, the eventId the
    /// `message_id` property, the version 1.
    Bare,
}

/// The version as written: a number, or `"v1"` / `"1"`.
struct Version(u32);

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Version;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a version: a positive integer, or a string such as \"v2\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Version, E> {
                u32::try_from(v)
                    .map(Version)
                    .map_err(|_| E::custom("version out of range"))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Version, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom("negative version"))
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Version, E> {
                let digits = v.strip_prefix(['v', 'V']).unwrap_or(v);
                digits.parse().map(Version).map_err(|_| {
                    E::custom(format!("version `{v}` is not a number nor `v<number>`"))
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// The envelope's fields, the payload skipped.
#[derive(Deserialize)]
struct Head {
    #[serde(rename = "eventId", alias = "event_id")]
    event_id: Option<String>,
    version: Option<Version>,
    #[serde(rename = "eventType", alias = "event_type")]
    event_type: String,
    timestamp: Option<String>,
    #[serde(alias = "data")]
    payload: IgnoredAny,
}

/// The envelope's payload alone.
#[derive(Deserialize)]
struct Body<T> {
    #[serde(alias = "data")]
    payload: T,
}

/// The envelope as written.
#[derive(Serialize)]
struct Out<'a, P: ?Sized> {
    #[serde(rename = "eventId")]
    event_id: &'a str,
    version: u32,
    #[serde(rename = "eventType")]
    event_type: &'a str,
    timestamp: &'a str,
    payload: &'a P,
}

/// Encodes an envelope.
pub(crate) fn encode<P: Serialize + ?Sized>(
    content_type: ContentType,
    meta: &EventMeta,
    payload: &P,
) -> Result<bytes::Bytes, crate::Error> {
    let out = Out {
        event_id: &meta.id,
        version: meta.version,
        event_type: &meta.event_type,
        timestamp: meta.timestamp.as_deref().unwrap_or_default(),
        payload,
    };
    Ok(content_type.encode(&out)?)
}

/// What a delivery says of itself, for [`read_meta`].
pub(crate) struct Wire<'a> {
    pub(crate) body: &'a [u8],
    pub(crate) content_type: ContentType,
    pub(crate) message_id: Option<&'a str>,
    /// The routing key it was first published with.
    pub(crate) routing_key: &'a str,
}

/// Reads an event's meta data in `format`.
///
/// # Errors
/// Why the body is not an event in this format (for the DLQ's reason).
pub(crate) fn read_meta(format: Format, wire: &Wire<'_>) -> Result<EventMeta, String> {
    let fallback_id = || {
        wire.message_id
            .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
    };
    let (id, event_type, version, timestamp) = match format {
        Format::Bare => (fallback_id(), wire.routing_key.to_owned(), 1, None),
        Format::Envelope | Format::TypeAndData => {
            let head: Head = wire
                .content_type
                .decode(wire.body)
                .map_err(|e| format!("not an event envelope: {e}"))?;
            let _ = head.payload;
            let id = match (format, head.event_id) {
                (_, Some(id)) => id,
                (Format::Envelope, None) => return Err("the envelope has no eventId".into()),
                _ => fallback_id(),
            };
            let version = match (format, head.version) {
                (_, Some(Version(v))) => v,
                (Format::Envelope, None) => return Err("the envelope has no version".into()),
                _ => 1,
            };
            (id, head.event_type, version, head.timestamp)
        }
    };
    Ok(EventMeta {
        id,
        event_type,
        version,
        timestamp,
        routing_key: wire.routing_key.to_owned(),
        content_type: wire.content_type,
    })
}

/// Decodes the payload of a body in `format`.
///
/// # Errors
/// Why it is not a `T`.
pub(crate) fn read_payload<T: DeserializeOwned>(
    format: Format,
    content_type: ContentType,
    body: &[u8],
) -> Result<T, String> {
    let decoded = match format {
        Format::Bare => content_type.decode::<T>(body),
        Format::Envelope | Format::TypeAndData => {
            content_type.decode::<Body<T>>(body).map(|b| b.payload)
        }
    };
    decoded.map_err(|e| format!("the payload does not decode: {e}"))
}

/// `t` in RFC 3339, UTC, with milliseconds: `2026-12-02T14:00:03.123Z`.
pub(crate) fn format_rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(since.as_secs()).unwrap_or(i64::MAX);
    let (days, day_secs) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        day_secs / 3600,
        day_secs % 3600 / 60,
        day_secs % 60,
        since.subsec_millis()
    )
}

/// Parses an RFC 3339 time: `2026-12-02T14:00:03Z`, with an optional
/// fraction and a `Z` or `±hh:mm` offset (none: UTC); `T` may be a space.
pub(crate) fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut nanos = 0u32;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        let digits = &frac[..n.min(9)];
        nanos = digits.parse::<u32>().ok()? * 10u32.pow(9 - digits.len() as u32);
        rest = &frac[n..];
    }
    let offset = match rest.as_bytes() {
        [] | [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digits = [*h1, *h2, *m1, *m2];
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let v = |a: u8, b: u8| i64::from(a - b'0') * 10 + i64::from(b - b'0');
            let off = v(*h1, *h2) * 3600 + v(*m1, *m2) * 60;
            if *sign == b'-' {
                -off
            } else {
                off
            }
        }
        _ => return None,
    };
    let mo = u32::try_from(mo).ok()?;
    let d = u32::try_from(d).ok()?;
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// (year, month, day) of a day count since 1970-01-01 (proleptic
/// Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The day count since 1970-01-01 of a date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let (m, d) = (i64::from(m), i64::from(d));
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        let t = UNIX_EPOCH + Duration::from_millis(1_796_220_003_123);
        let s = format_rfc3339(t);
        assert_eq!(s, "2026-12-02T14:00:03.123Z");
        assert_eq!(parse_rfc3339(&s), Some(t));
        assert_eq!(format_rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            parse_rfc3339("2024-02-29T01:30:00+01:30"),
            parse_rfc3339("2024-02-29T00:00:00Z")
        );
        assert_eq!(
            parse_rfc3339("2024-01-15T10:30:00"),
            parse_rfc3339("2024-01-15 10:30:00z")
        );
        for bad in [
            "",
            "2024-13-01T00:00:00Z",
            "2024-01-01",
            "2024-01-01T00:00:00+1",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    fn wire(body: &[u8]) -> Wire<'_> {
        Wire {
            body,
            content_type: ContentType::Json,
            message_id: Some("m-1"),
            routing_key: "ticket.created",
        }
    }

    #[test]
    fn reads_each_format() {
        let body = br#"{"eventId":"e-1","version":"v2","eventType":"ticket.created","timestamp":"2024-01-01T00:00:00Z","payload":{"id":7}}"#;
        let meta = read_meta(Format::Envelope, &wire(body)).unwrap();
        assert_eq!((meta.id.as_str(), meta.version), ("e-1", 2));
        let id: serde_json::Value =
            read_payload(Format::Envelope, ContentType::Json, body).unwrap();
        assert_eq!(id["id"], 7);

        let foreign = br#"{"event_type":"user.registered","timestamp":"2024-01-15T10:30:00","data":{"user_id":1}}"#;
        assert!(read_meta(Format::Envelope, &wire(foreign)).is_err());
        let meta = read_meta(Format::TypeAndData, &wire(foreign)).unwrap();
        assert_eq!(
            (meta.id.as_str(), meta.event_type.as_str()),
            ("m-1", "user.registered")
        );
        assert!(meta.time().is_some());

        let meta = read_meta(Format::Bare, &wire(b"{\"id\":1}")).unwrap();
        assert_eq!(
            (meta.event_type.as_str(), meta.version),
            ("ticket.created", 1)
        );
        let err = read_meta(Format::Envelope, &wire(b"\xff")).unwrap_err();
        assert!(err.starts_with("not an event envelope"), "{err}");
    }
}
