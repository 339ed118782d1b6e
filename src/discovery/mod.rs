//! Discovery: who can be reached over HTTP. A node serving HTTP announces
//! its URL on the broker; a caller's [`Peers`] registry holds the peers it
//! was configured with and those it learned from announcements
//! ([`Peers::learn_from`]), for the [`HttpClient`](crate::http::HttpClient)
//! and the fallback to use while the broker is down.
//!
//! The announcements travel over AMQP; this module is the HTTP transport's
//! address book, not part of it.

mod announce;
mod peers;

pub(crate) use announce::announce;
pub use announce::{Announcement, ANNOUNCE_KEY};
pub use peers::{KnownPeer, Peers};
pub(crate) use peers::{Route, Target};
