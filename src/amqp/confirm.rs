//! A publisher confirm that is never dropped unresolved.
//!
//! lapin keeps every confirm future dropped before the broker answered in a
//! list that only `wait_for_confirms` empties; a call that ends early (its
//! reply came first, its deadline passed, its caller dropped it) would grow
//! that list for the life of the channel. [`Confirm`] hands such a confirm
//! to a small task that awaits it instead.

use crate::address::Address;
use crate::error::Error;
use lapin::{Confirmation, PublisherConfirm};

/// How the broker answered a publish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Settled {
    /// Acked: stored in every queue it reached.
    Taken,
    /// Came back: no queue is bound for it (a mandatory publish).
    Unroutable,
    /// Nacked: a queue refused it (full, with overflow reject-publish) or
    /// the broker could not store it.
    Refused,
}

/// The broker's answer to one publish, still to come.
pub(crate) struct Confirm(Option<PublisherConfirm>);

impl Confirm {
    pub(crate) fn new(confirm: PublisherConfirm) -> Self {
        Self(Some(confirm))
    }

    /// Waits for the broker: `Ok` once it took the message, [`Error::NoRoute`]
    /// if it came back unroutable.
    pub(crate) async fn outcome(&mut self, address: &Address) -> Result<(), Error> {
        self.routed()
            .await?
            .then_some(())
            .ok_or_else(|| Error::no_route(address))
    }

    /// Waits for the broker: `Ok(true)` once it took the message,
    /// `Ok(false)` if it came back unroutable (a mandatory publish no queue
    /// was bound for).
    pub(crate) async fn routed(&mut self) -> Result<bool, Error> {
        match self.settled().await? {
            Settled::Taken => Ok(true),
            Settled::Unroutable => Ok(false),
            Settled::Refused => Err(Error::Broker {
                context: "the broker could not take the message (nack); it was not delivered"
                    .into(),
                source: None,
            }),
        }
    }

    /// Waits for the broker's answer; [`Error::ConnectionLost`] if the
    /// connection or channel went first.
    pub(crate) async fn settled(&mut self) -> Result<Settled, Error> {
        let Some(confirm) = self.0.as_mut() else {
            return Ok(Settled::Taken);
        };
        let result = confirm.await;
        self.0 = None;
        match result {
            Ok(Confirmation::Ack(None) | Confirmation::NotRequested) => Ok(Settled::Taken),
            Ok(Confirmation::Ack(Some(_)) | Confirmation::Nack(Some(_))) => Ok(Settled::Unroutable),
            Ok(Confirmation::Nack(None)) => Ok(Settled::Refused),
            Err(_) => Err(Error::ConnectionLost),
        }
    }
}

impl Drop for Confirm {
    fn drop(&mut self) {
        if let (Some(confirm), Ok(rt)) = (self.0.take(), tokio::runtime::Handle::try_current()) {
            rt.spawn(async move {
                let _ = confirm.await;
            });
        }
    }
}
