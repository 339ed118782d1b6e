//! The transactional inbox: a subscription's handler run in a database
//! transaction that also records the eventId.

use super::tables::now_ms;
use super::{Backend, Store};
use crate::events::{Delivery, Event};
use futures::future::BoxFuture;
use sqlx::Transaction;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower::{BoxError, Service};
use tracing::{debug, warn};

/// How often an inbox deletes the eventIds older than
/// [`StoreOptions::inbox_retention`](super::StoreOptions::inbox_retention).
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// The inbox of one service in a [`Store`]: its handlers run in a
/// transaction of the store that also records the eventId, so a handler's
/// writes and "this event was handled" commit together. A duplicate
/// delivery (a redelivery after a crash between the commit and the ack, or
/// an event published twice) finds the eventId and is acked without
/// running the handler.
///
/// ```no_run
/// # async fn run(conn: warren::Connection, store: warren::outbox::Store<warren::outbox::Sqlite>) -> Result<(), warren::Error> {
/// use warren::events::{Delivery, Subscription};
/// use warren::outbox::{sqlx, TxInbox};
///
/// #[derive(serde::Serialize, serde::Deserialize, warren::Event)]
/// #[event(name = "ticket.created")]
/// struct TicketCreated {
///     id: i64,
/// }
///
/// let inbox = TxInbox::new(&store, "search");
/// let search = Subscription::new("search")
///     .on(inbox.handler(|mut tx, d: Delivery<TicketCreated>| async move {
///         sqlx::query("INSERT INTO search_index (ticket) VALUES (?)")
///             .bind(d.payload.id)
///             .execute(&mut *tx)
///             .await?;
///         Ok::<_, sqlx::Error>(tx)
///     }))
///     .start(&conn)
///     .await?;
/// # Ok(())
/// # }
/// ```
pub struct TxInbox<DB: Backend> {
    store: Store<DB>,
    service: Arc<str>,
    last_purge: Arc<Mutex<Option<Instant>>>,
}

impl<DB: Backend> Clone for TxInbox<DB> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            service: self.service.clone(),
            last_purge: self.last_purge.clone(),
        }
    }
}

impl<DB: Backend> fmt::Debug for TxInbox<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxInbox")
            .field("service", &self.service)
            .field("store", &self.store)
            .finish()
    }
}

impl<DB: Backend> TxInbox<DB> {
    /// The inbox of `service` (the eventIds are kept per service, so that
    /// services can share a database).
    #[must_use]
    pub fn new(store: &Store<DB>, service: impl Into<String>) -> Self {
        Self {
            store: store.clone(),
            service: service.into().into(),
            last_purge: Arc::default(),
        }
    }

    /// A subscription handler of `E` that begins a transaction, records the
    /// eventId in it, runs `handler` with the transaction and the delivery,
    /// and commits the transaction `handler` gives back. If the eventId is
    /// there already, the delivery is acked and `handler` does not run; if
    /// `handler` fails, the transaction rolls back (the eventId with it)
    /// and the event is retried as the subscription's
    /// [`RetryPolicy`](crate::events::RetryPolicy) says.
    pub fn handler<E, F, Fut, Er>(&self, handler: F) -> InboxHandler<DB, E, F>
    where
        E: Event,
        F: Fn(Transaction<'static, DB>, Delivery<E>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Transaction<'static, DB>, Er>> + Send + 'static,
        Er: Into<BoxError>,
    {
        InboxHandler {
            inbox: self.clone(),
            handler,
            _event: PhantomData,
        }
    }

    /// Deletes old eventIds now and then, in the background.
    fn maybe_purge(&self) {
        let now = Instant::now();
        {
            let mut last = self
                .last_purge
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.is_some_and(|t| now.duration_since(t) < PURGE_EVERY) {
                return;
            }
            *last = Some(now);
        }
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.purge().await {
                warn!(error = %e, "inbox clean-up failed");
            }
        });
    }
}

/// The handler [`TxInbox::handler`] makes: a `tower::Service` of
/// [`Delivery`] for [`Subscription::on`](crate::events::Subscription::on).
pub struct InboxHandler<DB: Backend, E, F> {
    inbox: TxInbox<DB>,
    handler: F,
    _event: PhantomData<fn(E)>,
}

impl<DB: Backend, E, F: Clone> Clone for InboxHandler<DB, E, F> {
    fn clone(&self) -> Self {
        Self {
            inbox: self.inbox.clone(),
            handler: self.handler.clone(),
            _event: PhantomData,
        }
    }
}

impl<DB: Backend, E, F> fmt::Debug for InboxHandler<DB, E, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboxHandler")
            .field("inbox", &self.inbox)
            .finish_non_exhaustive()
    }
}

impl<DB, E, F, Fut, Er> Service<Delivery<E>> for InboxHandler<DB, E, F>
where
    DB: Backend,
    E: Event,
    F: Fn(Transaction<'static, DB>, Delivery<E>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Transaction<'static, DB>, Er>> + Send + 'static,
    Er: Into<BoxError>,
{
    type Response = ();
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<(), BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, delivery: Delivery<E>) -> Self::Future {
        let inbox = self.inbox.clone();
        let handler = self.handler.clone();
        Box::pin(async move {
            inbox.maybe_purge();
            let store = &inbox.store;
            let mut tx = store.pool().begin().await?;
            let first = DB::record(
                &mut *tx,
                store.tables(),
                &inbox.service,
                &delivery.meta.id,
                now_ms(),
            )
            .await?;
            if !first {
                debug!(service = %inbox.service, event_id = %delivery.meta.id,
                    "duplicate event; skipped");
                tx.rollback().await?;
                return Ok(());
            }
            let tx = handler(tx, delivery)
                .await
                .map_err(Into::<BoxError>::into)?;
            tx.commit().await?;
            Ok(())
        })
    }
}
