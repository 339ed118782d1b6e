//! Who can be reached over HTTP: peers from configuration and peers learned
//! from announcements while the broker was up.
//!
//! A learned peer is forgotten when it has not announced itself for three
//! announcement periods *while we were listening*: during a broker outage
//! nobody can announce, and forgetting everyone then would leave the
//! fallback with nowhere to go exactly when it is needed. A peer that
//! refuses connections is marked down for a while and tried last.

use crate::address::{Address, ServiceId, ServiceType};
use crate::error::Error;
use crate::http::{HttpConfig, PeerUrl};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long a peer that refused a connection is tried last.
const DOWN_FOR: Duration = Duration::from_secs(5);

struct Entry {
    service: ServiceType,
    url: String,
    /// `None` for a configured peer, which never expires.
    learned: Option<Learned>,
    /// The methods it announced (none for a configured peer).
    methods: Vec<String>,
    down_until: Option<Instant>,
    /// Whether it consumes on the broker, as far as we know: cleared when
    /// our connection is lost (the broker may have been restarted), set
    /// again by its next announcement (a node announces only while it
    /// consumes).
    consuming: bool,
}

impl Entry {
    /// A peer just heard of, taken to consume.
    fn new(
        service: ServiceType,
        url: String,
        learned: Option<Learned>,
        methods: Vec<String>,
    ) -> Self {
        Self {
            service,
            url,
            learned,
            methods,
            down_until: None,
            consuming: true,
        }
    }
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
    /// How long after our reconnection calls are held back from the broker
    /// for peers not heard from again ([`Config::settle`]).
    ///
    /// [`Config::settle`]: crate::Config::settle
    settle: Duration,
    /// Whether our connection was lost since the registry was made.
    after_loss: bool,
    /// Addresses the broker answered for since our last loss.
    answered: BTreeSet<String>,
    /// Addresses with a call in flight over the broker to find that out.
    probing: BTreeSet<String>,
}

/// How a call to an address goes while our broker connection is up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Over the broker.
    Amqp,
    /// Over HTTP: the broker may not deliver there yet.
    Http,
    /// Over the broker, as the one call that finds out whether it delivers
    /// there again; the others go over HTTP meanwhile. Report the outcome
    /// with [`Peers::probed`].
    Probe,
}

impl State {
    /// Whether our connection is settling: from a loss until `settle` after
    /// announcements reach us again.
    fn settling(&self, now: Instant) -> bool {
        self.after_loss
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

#[derive(Default)]
struct Inner {
    state: RwLock<State>,
    next: AtomicUsize,
    version: watch::Sender<u64>,
}

/// The HTTP peers a caller knows. Cheap to clone; clones share one registry.
#[derive(Clone, Default)]
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
    /// The methods it announced (empty if it did not say, or configured).
    pub methods: Vec<String>,
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

impl Peers {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry holding the peers of `config` (`WARREN_HTTP_PEERS`).
    #[must_use]
    pub fn from_config(config: &HttpConfig) -> Self {
        let peers = Self::new();
        config.peers.iter().cloned().for_each(|p| peers.insert(p));
        peers
    }

    /// Adds (or replaces) a configured peer; it never expires.
    pub fn insert(&self, peer: PeerUrl) {
        let entry = Entry::new(peer.service, peer.url, None, Vec::new());
        self.write(|s| {
            s.entries.insert(peer.id, entry);
        });
    }

    /// Records an announcement. A configured peer keeps its configured URL.
    pub(crate) fn learn(
        &self,
        service: ServiceType,
        id: ServiceId,
        url: String,
        every: Duration,
        methods: Vec<String>,
    ) {
        self.write(|s| {
            let seen = Learned {
                last_seen: Instant::now(),
                ttl: every.saturating_mul(3),
            };
            match s.entries.get_mut(&id) {
                Some(e) if e.learned.is_none() => {
                    e.methods = methods;
                    e.down_until = None;
                    e.consuming = true;
                }
                _ => {
                    s.entries
                        .insert(id, Entry::new(service, url, Some(seen), methods));
                }
            }
        });
    }

    /// Tells whether announcements can reach us now.
    pub(crate) fn listening(&self, yes: bool) {
        self.write(|s| s.listening_since = yes.then(Instant::now));
    }

    /// Our broker connection was lost: after it comes back, the broker is
    /// taken to deliver to a peer only once the peer announced itself again
    /// (a node announces only while it consumes) and a call over the broker
    /// was answered, or once the settling time passed.
    pub(crate) fn connection_lost(&self, settle: Duration) {
        self.write(|s| {
            s.settle = settle;
            s.after_loss = true;
            s.answered.clear();
            s.probing.clear();
            for e in s.entries.values_mut() {
                e.consuming = false;
            }
        });
    }

    /// How a call to `address` goes while our broker connection is up.
    /// Settled (or no peer known there): over the broker. Settling after a
    /// loss: over HTTP while no peer there announced itself again; then
    /// one call at a time over the broker ([`Route::Probe`]) and the others
    /// over HTTP, until one is answered. A gather (`every`, `all`) goes over
    /// the broker once every peer there announced itself again.
    pub(crate) fn route(&self, address: &Address) -> Route {
        let now = Instant::now();
        if !self.read().settling(now) {
            return Route::Amqp;
        }
        let key = address.to_string();
        let mut s = self.lock();
        if s.answered.contains(&key) {
            return Route::Amqp;
        }
        let consuming: Vec<bool> = s
            .entries
            .iter()
            .filter(|(id, e)| !s.expired(e, now) && address.reaches(id, &e.service))
            .map(|(_, e)| e.consuming)
            .collect();
        match address {
            _ if consuming.is_empty() => Route::Amqp,
            Address::Every(_) | Address::All if consuming.iter().all(|c| *c) => Route::Amqp,
            Address::Every(_) | Address::All => Route::Http,
            _ if consuming.contains(&true) && s.probing.insert(key) => Route::Probe,
            _ => Route::Http,
        }
    }

    /// The outcome of a [`Route::Probe`] call: `answered` if the broker
    /// delivered it (a reply came, an error reply included).
    pub(crate) fn probed(&self, address: &Address, answered: bool) {
        let key = address.to_string();
        let mut s = self.lock();
        s.probing.remove(&key);
        if answered && s.after_loss {
            s.answered.insert(key);
        }
    }

    /// Every peer known now.
    #[must_use]
    pub fn list(&self) -> Vec<KnownPeer> {
        let now = Instant::now();
        let s = self.read();
        s.entries
            .iter()
            .filter(|(_, e)| !s.expired(e, now))
            .map(|(id, e)| KnownPeer {
                service: e.service.clone(),
                id: id.clone(),
                url: e.url.clone(),
                learned: e.learned.is_some(),
                down: e.down_until.is_some_and(|t| t > now),
                methods: e.methods.clone(),
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
    /// `every`/`all`; [`Error::NoRoute`] if no peer is known there.
    pub(crate) fn targets(&self, address: &Address) -> Result<Vec<Target>, Error> {
        let mut known: Vec<_> = self
            .list()
            .into_iter()
            .filter(|p| address.reaches(&p.id, &p.service))
            .collect();
        if known.is_empty() {
            return Err(Error::no_route(address));
        }
        if matches!(address, Address::Any(_)) {
            let n = self.inner.next.fetch_add(1, Ordering::Relaxed) % known.len();
            known.rotate_left(n);
            // Stable: the up ones keep their rotated order, then the down ones.
            known.sort_by_key(|p| p.down);
        }
        Ok(known
            .into_iter()
            .map(|p| Target {
                id: p.id,
                url: p.url,
            })
            .collect())
    }

    /// Marks a peer as refusing connections.
    pub(crate) fn mark_down(&self, id: &ServiceId) {
        self.set_down_until(id, Some(Instant::now() + DOWN_FOR));
    }

    /// Marks a peer as answering again.
    pub(crate) fn mark_up(&self, id: &ServiceId) {
        let down = self
            .read()
            .entries
            .get(id)
            .is_some_and(|e| e.down_until.is_some());
        if down {
            self.set_down_until(id, None);
        }
    }

    fn set_down_until(&self, id: &ServiceId, until: Option<Instant>) {
        self.write(|s| {
            if let Some(e) = s.entries.get_mut(id) {
                e.down_until = until;
            }
        });
    }

    /// A handle that does not keep the registry alive (for the learning
    /// task, which ends when the last `Peers` is dropped).
    pub(crate) fn downgrade(&self) -> WeakPeers {
        WeakPeers(Arc::downgrade(&self.inner))
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.inner.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The state to change, without telling the waiters ([`Peers::write`]).
    fn lock(&self) -> RwLockWriteGuard<'_, State> {
        self.inner.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the state and tells those waiting for a change.
    fn write(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.lock());
        self.inner.version.send_modify(|v| *v += 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(t: &str, id: &str) -> PeerUrl {
        PeerUrl::parse(&format!("{t}/{id}=http://{id}:1")).unwrap()
    }

    /// Records an announcement of `calc/<name>` at `http://<name>:2`.
    fn heard(peers: &Peers, name: &str, every: Duration, methods: Vec<String>) {
        let (t, id) = ("calc".parse().unwrap(), name.parse().unwrap());
        peers.learn(t, id, format!("http://{name}:2"), every, methods);
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
            .map(|_| peers.targets(&any).unwrap()[0].id.to_string())
            .collect();
        assert_eq!(firsts.len(), 3, "{firsts:?}");
        peers.mark_down(&"b".parse().unwrap());
        for _ in 0..3 {
            let t = peers.targets(&any).unwrap();
            assert_eq!(t.len(), 3);
            assert_eq!(t[2].id.as_str(), "b");
        }
        peers.mark_up(&"b".parse().unwrap());
        assert!(peers.list().iter().all(|p| !p.down));
        assert_eq!(peers.targets(&Address::all()).unwrap().len(), 4);
        let one = peers.targets(&Address::instance("z").unwrap()).unwrap();
        assert_eq!(one[0].url, "http://z:1");
    }

    #[test]
    fn learned_peers_expire_only_while_listening() {
        let peers = Peers::new();
        heard(&peers, "a", Duration::ZERO, Vec::new());
        std::thread::sleep(Duration::from_millis(5));
        // Not listening (the broker is down): kept.
        assert_eq!(peers.list().len(), 1);
        peers.listening(true);
        std::thread::sleep(Duration::from_millis(5));
        assert!(peers.list().is_empty());
    }

    #[test]
    fn after_a_loss_calls_wait_for_announcements_and_one_answer() {
        let peers = Peers::new();
        let t: ServiceType = "calc".parse().unwrap();
        let hear = |id| heard(&peers, id, Duration::from_secs(10), Vec::new());
        hear("a");
        hear("b");
        let (any, every) = (Address::Any(t.clone()), Address::Every(t));
        let a = Address::instance("a").unwrap();
        assert_eq!(peers.route(&any), Route::Amqp, "no loss yet");
        peers.listening(false);
        peers.connection_lost(Duration::from_secs(60));
        peers.listening(true);
        assert_eq!(peers.route(&any), Route::Http);
        assert_eq!(peers.route(&a), Route::Http);
        assert_eq!(
            peers.route(&Address::any("other").unwrap()),
            Route::Amqp,
            "no peer there"
        );
        hear("a");
        assert_eq!(peers.route(&any), Route::Probe);
        assert_eq!(peers.route(&any), Route::Http, "one probe at a time");
        assert_eq!(peers.route(&every), Route::Http, "b is not back");
        peers.probed(&any, false);
        assert_eq!(peers.route(&any), Route::Probe);
        peers.probed(&any, true);
        assert_eq!(peers.route(&any), Route::Amqp);
        assert_eq!(peers.route(&a), Route::Probe, "each address finds out");
        hear("b");
        assert_eq!(peers.route(&every), Route::Amqp);
        // The settling time bounds it all.
        peers.connection_lost(Duration::ZERO);
        peers.listening(true);
        assert_eq!(peers.route(&any), Route::Amqp);
    }

    #[test]
    fn configuration_wins_over_announcements() {
        let peers = Peers::new();
        peers.insert(peer("calc", "a"));
        heard(&peers, "a", Duration::from_secs(1), vec!["Calc.add".into()]);
        let list = peers.list();
        assert_eq!(list[0].url, "http://a:1");
        assert_eq!(list[0].methods, ["Calc.add"]);
        assert!(!list[0].learned);
    }
}
