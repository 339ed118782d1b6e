//! Who can be reached over HTTP: peers from configuration and peers learned
//! from announcements while the broker was up.
//!
//! A learned peer is forgotten when it has not announced itself for three
//! announcement periods *while we were listening*: during a broker outage
//! nobody can announce, and forgetting everyone then would leave the
//! fallback with nowhere to go exactly when it is needed. A peer that
//! refuses connections is marked down for a while and tried last.

use super::config::{HttpConfig, PeerUrl};
use crate::address::{Address, ServiceId, ServiceType};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long a peer that refused a connection is tried last.
const DOWN_FOR: Duration = Duration::from_secs(5);

struct Entry {
    service: ServiceType,
    url: String,
    /// `None` for a configured peer, which never expires.
    learned: Option<Learned>,
    down_until: Option<Instant>,
    /// Whether it consumes on the broker, as far as we know: cleared when
    /// our connection is lost (the broker may have been restarted), set
    /// again by its next announcement (a node announces only while it
    /// consumes).
    consuming: bool,
}

struct Learned {
    last_seen: Instant,
    /// Forgotten after this long without an announcement.
    ttl: Duration,
}

#[derive(Default)]
struct State {
    entries: BTreeMap<ServiceId, Entry>,
    /// Since when announcements can reach us; `None` while disconnected.
    listening_since: Option<Instant>,
    /// How long after our reconnection a peer not heard from is still
    /// taken for one whose node is not consuming yet ([`Config::settle`]).
    ///
    /// [`Config::settle`]: crate::Config::settle
    settle: Duration,
}

impl State {
    /// Whether the broker may not deliver to `e` yet: our connection came
    /// back (or is coming back) and `e` has not announced itself since,
    /// within the settling time.
    fn unsettled(&self, e: &Entry, now: Instant) -> bool {
        !e.consuming
            && self
                .listening_since
                .is_none_or(|since| now < since + self.settle)
    }

    fn expired(&self, e: &Entry, now: Instant) -> bool {
        match (&e.learned, self.listening_since) {
            (Some(l), Some(since)) => now.saturating_duration_since(l.last_seen.max(since)) > l.ttl,
            _ => false,
        }
    }
}

struct Inner {
    state: RwLock<State>,
    next: AtomicUsize,
    version: watch::Sender<u64>,
}

/// The HTTP peers a caller knows. Cheap to clone; clones share one registry.
#[derive(Clone)]
pub struct Peers {
    inner: Arc<Inner>,
}

/// One known peer, as [`Peers::list`] shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownPeer {
    /// Its service type.
    pub service: ServiceType,
    /// Its instance id.
    pub id: ServiceId,
    /// Its HTTP base URL.
    pub url: String,
    /// Whether it was learned from an announcement (else configured).
    pub learned: bool,
    /// Whether it refused a connection recently.
    pub down: bool,
}

/// A [`Peers`] that does not keep the registry alive.
pub(crate) struct WeakPeers(std::sync::Weak<Inner>);

impl WeakPeers {
    pub(crate) fn upgrade(&self) -> Option<Peers> {
        self.0.upgrade().map(|inner| Peers { inner })
    }
}

/// Where one HTTP attempt goes.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub(crate) id: ServiceId,
    pub(crate) url: String,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers")
            .field("known", &self.list())
            .finish()
    }
}

impl Default for Peers {
    fn default() -> Self {
        Self::new()
    }
}

impl Peers {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                state: RwLock::new(State::default()),
                next: AtomicUsize::new(0),
                version: watch::channel(0).0,
            }),
        }
    }

    /// A registry holding the peers of `config` (`WARREN_HTTP_PEERS`).
    #[must_use]
    pub fn from_config(config: &HttpConfig) -> Self {
        let peers = Self::new();
        for p in &config.peers {
            peers.insert(p.clone());
        }
        peers
    }

    /// Adds (or replaces) a configured peer; it never expires.
    pub fn insert(&self, peer: PeerUrl) {
        self.write(|s| {
            s.entries.insert(
                peer.id,
                Entry {
                    service: peer.service,
                    url: peer.url,
                    learned: None,
                    down_until: None,
                    consuming: true,
                },
            );
        });
    }

    /// Records an announcement. A configured peer keeps its configured URL.
    pub(crate) fn learn(&self, service: ServiceType, id: ServiceId, url: String, every: Duration) {
        self.write(|s| {
            let seen = Learned {
                last_seen: Instant::now(),
                ttl: every.saturating_mul(3),
            };
            match s.entries.get_mut(&id) {
                Some(e) if e.learned.is_none() => {
                    e.down_until = None;
                    e.consuming = true;
                }
                _ => {
                    s.entries.insert(
                        id,
                        Entry {
                            service,
                            url,
                            learned: Some(seen),
                            down_until: None,
                            consuming: true,
                        },
                    );
                }
            }
        });
    }

    /// Tells whether announcements can reach us now.
    pub(crate) fn listening(&self, yes: bool) {
        self.write(|s| s.listening_since = yes.then(Instant::now));
    }

    /// Our broker connection was lost: after it comes back, a peer counts
    /// as consuming again only once it announced itself (or `settle` after
    /// we listen again).
    pub(crate) fn connection_lost(&self, settle: Duration) {
        self.write(|s| {
            s.settle = settle;
            for e in s.entries.values_mut() {
                e.consuming = false;
            }
        });
    }

    /// Whether calls to `address` should stay on HTTP although our broker
    /// connection is up: it came back after a loss, and the broker cannot
    /// deliver to the peers there yet, as far as announcements tell
    /// (`instance`: that peer; `any`: every peer of the type; `every`,
    /// `all`: any peer there). An address with no known peer is not held.
    pub(crate) fn unsettled(&self, address: &Address) -> bool {
        let now = Instant::now();
        let s = self.inner.state.read().unwrap_or_else(|e| e.into_inner());
        let mut there = s.entries.iter().filter(|(id, e)| {
            !s.expired(e, now)
                && match address {
                    Address::Instance(want) => *id == want,
                    Address::Any(t) | Address::Every(t) => &e.service == t,
                    _ => true,
                }
        });
        match address {
            Address::Any(_) => {
                let mut any = false;
                there.all(|(_, e)| {
                    any = true;
                    s.unsettled(e, now)
                }) && any
            }
            _ => there.any(|(_, e)| s.unsettled(e, now)),
        }
    }

    /// Every peer known now.
    #[must_use]
    pub fn list(&self) -> Vec<KnownPeer> {
        let now = Instant::now();
        let s = self.inner.state.read().unwrap_or_else(|e| e.into_inner());
        s.entries
            .iter()
            .filter(|(_, e)| !s.expired(e, now))
            .map(|(id, e)| KnownPeer {
                service: e.service.clone(),
                id: id.clone(),
                url: e.url.clone(),
                learned: e.learned.is_some(),
                down: e.down_until.is_some_and(|t| t > now),
            })
            .collect()
    }

    /// Waits until `pred` holds for the known peers (checked now and after
    /// every change).
    pub async fn wait_until(&self, mut pred: impl FnMut(&[KnownPeer]) -> bool) {
        let mut rx = self.inner.version.subscribe();
        while !pred(&self.list()) {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Where to send a request for `address`: one target for an instance;
    /// the live instances of a type (rotated, so calls spread, and those
    /// that refused recently last) for `any`; every known one for
    /// `every`/`all`.
    pub(crate) fn targets(&self, address: &Address) -> Vec<Target> {
        let mut known: Vec<_> = self
            .list()
            .into_iter()
            .filter(|p| match address {
                Address::Instance(id) => &p.id == id,
                Address::Any(t) | Address::Every(t) => &p.service == t,
                _ => true,
            })
            .collect();
        if matches!(address, Address::Any(_)) && !known.is_empty() {
            let n = self.inner.next.fetch_add(1, Ordering::Relaxed) % known.len();
            known.rotate_left(n);
            // Stable: the up ones keep their rotated order, then the down ones.
            known.sort_by_key(|p| p.down);
        }
        known
            .into_iter()
            .map(|p| Target {
                id: p.id,
                url: p.url,
            })
            .collect()
    }

    /// Marks a peer as refusing connections.
    pub(crate) fn mark_down(&self, id: &ServiceId) {
        self.write(|s| {
            if let Some(e) = s.entries.get_mut(id) {
                e.down_until = Some(Instant::now() + DOWN_FOR);
            }
        });
    }

    /// Marks a peer as answering again.
    pub(crate) fn mark_up(&self, id: &ServiceId) {
        let down = {
            let s = self.inner.state.read().unwrap_or_else(|e| e.into_inner());
            s.entries.get(id).is_some_and(|e| e.down_until.is_some())
        };
        if down {
            self.write(|s| {
                if let Some(e) = s.entries.get_mut(id) {
                    e.down_until = None;
                }
            });
        }
    }

    /// A handle that does not keep the registry alive (for the learning
    /// task, which ends when the last `Peers` is dropped).
    pub(crate) fn downgrade(&self) -> WeakPeers {
        WeakPeers(Arc::downgrade(&self.inner))
    }

    fn write(&self, f: impl FnOnce(&mut State)) {
        {
            let mut s = self.inner.state.write().unwrap_or_else(|e| e.into_inner());
            f(&mut s);
        }
        self.inner.version.send_modify(|v| *v += 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(t: &str, id: &str) -> PeerUrl {
        PeerUrl::parse(&format!("{t}/{id}=http://{id}:1")).unwrap()
    }

    #[test]
    fn any_rotates_and_tries_down_peers_last() {
        let peers = Peers::new();
        for id in ["a", "b", "c"] {
            peers.insert(peer("calc", id));
        }
        peers.insert(peer("other", "z"));
        let any = Address::any("calc").unwrap();
        let firsts: std::collections::BTreeSet<_> = (0..3)
            .map(|_| peers.targets(&any)[0].id.to_string())
            .collect();
        assert_eq!(firsts.len(), 3, "{firsts:?}");
        peers.mark_down(&"b".parse().unwrap());
        for _ in 0..3 {
            let t = peers.targets(&any);
            assert_eq!(t.len(), 3);
            assert_eq!(t[2].id.as_str(), "b");
        }
        peers.mark_up(&"b".parse().unwrap());
        assert!(peers.list().iter().all(|p| !p.down));
        assert_eq!(peers.targets(&Address::all()).len(), 4);
        let one = peers.targets(&Address::instance("z").unwrap());
        assert_eq!(one[0].url, "http://z:1");
    }

    #[test]
    fn learned_peers_expire_only_while_listening() {
        let peers = Peers::new();
        let (t, id) = ("calc".parse().unwrap(), "a".parse().unwrap());
        peers.learn(t, id, "http://a:1".into(), Duration::ZERO);
        std::thread::sleep(Duration::from_millis(5));
        // Not listening (the broker is down): kept.
        assert_eq!(peers.list().len(), 1);
        peers.listening(true);
        std::thread::sleep(Duration::from_millis(5));
        assert!(peers.list().is_empty());
    }

    #[test]
    fn configuration_wins_over_announcements() {
        let peers = Peers::new();
        peers.insert(peer("calc", "a"));
        peers.learn(
            "calc".parse().unwrap(),
            "a".parse().unwrap(),
            "http://elsewhere:2".into(),
            Duration::from_secs(1),
        );
        let list = peers.list();
        assert_eq!(list[0].url, "http://a:1");
        assert!(!list[0].learned);
    }
}
