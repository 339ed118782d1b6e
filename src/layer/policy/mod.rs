//! The caller's policy: one layer, one future per call, applied once.

mod future;
mod layer;

pub use future::PolicyFuture;
pub use layer::{Policy, PolicyLayer};

#[cfg(test)]
mod tests {
    use super::PolicyLayer;
    use crate::{Address, ContentType, Error, Gather, Request, Response};
    use std::time::{Duration, Instant};
    use tower::{service_fn, Layer, ServiceExt};

    fn request(address: Address, body: &'static str) -> Request {
        Request::new(address, "T.m", ContentType::Json, body).unwrap()
    }

    /// Answers with the time left of the deadline it was given, in ms.
    async fn remaining(request: Request) -> Result<Response, Error> {
        let left = request.fixed_deadline() - Instant::now();
        Response::encode(ContentType::Json, &left.as_millis())
    }

    #[tokio::test]
    async fn applies_once_however_deep() {
        let outer = PolicyLayer::new(Duration::from_secs(60), 10);
        let inner = PolicyLayer::new(Duration::from_millis(50), 1);
        let stack = outer.layer(inner.layer(service_fn(remaining)));
        // The outer default deadline and body limit hold; the inner ones,
        // which would refuse this body, do not apply again.
        let reply = stack
            .oneshot(request(Address::any("t").unwrap(), "\"12\""))
            .await
            .unwrap();
        let left: u64 = reply.decode().unwrap();
        assert!(left > 50_000, "{left} ms left");
    }

    #[tokio::test]
    async fn refuses_before_sending() {
        let policy = PolicyLayer::new(Duration::from_secs(1), 4);
        let refused = async |req: Request| {
            policy
                .layer(service_fn(remaining))
                .oneshot(req)
                .await
                .unwrap_err()
        };
        let every = Address::every("t").unwrap();
        let err = refused(request(every.clone(), "1")).await;
        assert!(matches!(&err, Error::MulticastCall { address } if *address == every));
        let err = refused(request(Address::any("t").unwrap(), "123456")).await;
        assert!(matches!(err, Error::BodyTooLarge { size: 6, limit: 4 }));
        // A gather to the same address is what multicast is for.
        let gathered = policy
            .layer(service_fn(|g: Gather| async move {
                Ok::<_, Error>(vec![remaining(g.request).await?])
            }))
            .oneshot(Gather::new(request(every, "1")))
            .await
            .unwrap();
        assert_eq!(gathered.len(), 1);
    }
}
