//! What is refused before anything is sent: a body over the limit
//! ([`Error::BodyTooLarge`]), and a single-reply call to an address where
//! many may answer ([`Error::MulticastCall`]; a generated client refuses
//! that already when it builds the request, with [`single_reply`]).
//!
//! [`Error::BodyTooLarge`]: crate::Error::BodyTooLarge
//! [`Error::MulticastCall`]: crate::Error::MulticastCall

mod future;
mod layer;

pub(crate) use future::ResponseFuture;
pub(crate) use layer::ValidateLayer;

use crate::address::Address;
use crate::error::Error;

/// `Ok` if a call to `address` has one reply; else [`Error::MulticastCall`].
pub(crate) fn single_reply(address: &Address) -> Result<(), Error> {
    if address.is_multicast() {
        return Err(Error::MulticastCall {
            address: address.clone(),
        });
    }
    Ok(())
}

/// `Ok` if a body of `size` bytes is within `limit`.
pub(crate) fn body_size(size: usize, limit: usize) -> Result<(), Error> {
    if size > limit {
        return Err(Error::BodyTooLarge { size, limit });
    }
    Ok(())
}
