//! What is refused before anything is sent: a body over the limit
//! ([`Error::BodyTooLarge`]), and a single-reply call to an address where
//! many may answer ([`Error::MulticastCall`]; a generated client refuses
//! that already when it builds the request, with [`single_reply`]).

use crate::address::Address;
use crate::error::Error;
use crate::message::{Delivery, Message};

/// `Ok` if the transport can send `message`, with bodies up to `max_body`.
pub(super) fn check<M: Message>(message: &M, max_body: usize) -> Result<(), Error> {
    let request = message.request();
    // A one-way request awaits no reply, so any address takes it.
    if message.single_reply() && request.delivery != Delivery::OneWay {
        single_reply(&request.address)?;
    }
    let size = request.body.len();
    if size > max_body {
        return Err(Error::BodyTooLarge {
            size,
            limit: max_body,
        });
    }
    Ok(())
}

/// `Ok` if a call to `address` has one reply; else [`Error::MulticastCall`].
pub(crate) fn single_reply(address: &Address) -> Result<(), Error> {
    if address.is_multicast() {
        return Err(Error::MulticastCall {
            address: address.clone(),
        });
    }
    Ok(())
}
