//! The outbox's tables: their names (a prefix, and a PostgreSQL schema) and
//! the migrations that make them, shipped in the crate.

use crate::error::Error;

/// The schema version this build writes and reads; a database at a higher
/// one is refused ([`Error::SchemaMismatch`]).
pub(crate) const SCHEMA_VERSION: i64 = 2;

/// The names of one store's tables.
#[derive(Clone, Debug)]
pub struct Tables {
    /// The PostgreSQL schema, if any.
    pub(crate) schema: Option<String>,
    /// What every table's name starts with (`warren_`).
    pub(crate) prefix: String,
}

impl Tables {
    /// Checks the names: plain SQL identifiers, so that they can be
    /// written into statements unquoted.
    pub(crate) fn new(schema: Option<String>, prefix: String) -> Result<Self, Error> {
        let ident = |s: &str| {
            s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && s.len() <= 40
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        if !prefix.is_empty() && !ident(&prefix) {
            return Err(Error::Config(format!(
                "outbox table prefix `{prefix}`: use lowercase letters, digits and `_`, starting with a letter or `_`, at most 40 characters"
            )));
        }
        if let Some(schema) = &schema {
            if !ident(schema) {
                return Err(Error::Config(format!(
                    "outbox schema `{schema}`: use lowercase letters, digits and `_`, starting with a letter or `_`, at most 40 characters"
                )));
            }
        }
        Ok(Self { schema, prefix })
    }

    /// The bare name of table `what` (`warren_outbox`), for indexes.
    pub(crate) fn bare(&self, what: &str) -> String {
        format!("{}{what}", self.prefix)
    }

    /// The qualified name of table `what` (`app.warren_outbox`).
    pub(crate) fn name(&self, what: &str) -> String {
        match &self.schema {
            Some(schema) => format!("{schema}.{}{what}", self.prefix),
            None => self.bare(what),
        }
    }

    /// The outbox table.
    pub(crate) fn outbox(&self) -> String {
        self.name("outbox")
    }

    /// The inbox table.
    pub(crate) fn inbox(&self) -> String {
        self.name("inbox")
    }

    /// The table of the relays' lease (SQLite).
    pub(crate) fn lease(&self) -> String {
        self.name("lease")
    }

    /// The table recording the migrations applied.
    pub(crate) fn migrations(&self) -> String {
        self.name("migrations")
    }

    /// The PostgreSQL channel the outbox notifies on commit.
    pub(crate) fn channel(&self) -> String {
        match &self.schema {
            Some(schema) => format!("{schema}_{}outbox", self.prefix),
            None => self.bare("outbox"),
        }
    }

    /// How the tables are named, for errors.
    pub(crate) fn describe(&self) -> String {
        self.name("*")
    }

    /// Migration `version`'s statements for a database whose types are
    /// `id` (an auto-incremented 64-bit key) and `text`, in order.
    pub(crate) fn migration(&self, version: i64, id: &str) -> Vec<String> {
        let outbox = self.outbox();
        let inbox = self.inbox();
        let bare = |t: &str| self.bare(t);
        match version {
            1 => vec![
                format!(
                    "CREATE TABLE IF NOT EXISTS {outbox} (
                        id {id},
                        event_id TEXT NOT NULL UNIQUE,
                        ordering_key TEXT NOT NULL,
                        event_type TEXT NOT NULL,
                        version BIGINT NOT NULL,
                        payload TEXT NOT NULL,
                        created_ms BIGINT NOT NULL,
                        sent_ms BIGINT
                    )"
                ),
                format!(
                    "CREATE INDEX IF NOT EXISTS {} ON {outbox} (ordering_key, id) WHERE sent_ms IS NULL",
                    bare("outbox_pending")
                ),
                format!(
                    "CREATE INDEX IF NOT EXISTS {} ON {outbox} (sent_ms) WHERE sent_ms IS NOT NULL",
                    bare("outbox_sent")
                ),
                format!(
                    "CREATE TABLE IF NOT EXISTS {inbox} (
                        service TEXT NOT NULL,
                        event_id TEXT NOT NULL,
                        handled_ms BIGINT NOT NULL,
                        PRIMARY KEY (service, event_id)
                    )"
                ),
                format!(
                    "CREATE INDEX IF NOT EXISTS {} ON {inbox} (handled_ms)",
                    bare("inbox_handled")
                ),
            ],
            // One-way requests: the address they go to (an event has none);
            // their method is in `event_type`, their id in `event_id`.
            // And the lease that lets one relay at a time publish from a
            // SQLite file (PostgreSQL's relays share the work by row locks).
            2 => vec![
                format!("ALTER TABLE {outbox} ADD COLUMN address TEXT"),
                // The trace each row was added in, so that the relay
                // publishes it in that trace.
                format!("ALTER TABLE {outbox} ADD COLUMN traceparent TEXT"),
                format!(
                    "CREATE TABLE IF NOT EXISTS {} (
                        name TEXT PRIMARY KEY,
                        owner TEXT NOT NULL,
                        expires_ms BIGINT NOT NULL
                    )",
                    self.lease()
                ),
            ],
            _ => Vec::new(),
        }
    }
}

/// Milliseconds since the Unix epoch, as the tables store times.
pub(crate) fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// `ms` milliseconds since the Unix epoch as a time.
pub(crate) fn time_of(ms: i64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// A duration in milliseconds, for arithmetic with stored times.
pub(crate) fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let t = Tables::new(Some("app".into()), "warren_".into()).unwrap();
        assert_eq!(t.outbox(), "app.warren_outbox");
        assert_eq!(t.bare("outbox"), "warren_outbox");
        assert_eq!(t.channel(), "app_warren_outbox");
        let t = Tables::new(None, String::new()).unwrap();
        assert_eq!(t.inbox(), "inbox");
        for bad in ["Warren", "a-b", "x;drop", "1a"] {
            assert!(Tables::new(None, bad.into()).is_err(), "{bad}");
            assert!(Tables::new(Some(bad.into()), "w_".into()).is_err(), "{bad}");
        }
    }
}
