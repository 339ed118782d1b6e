//! Load: a thousand concurrent calls through one client, several clients at
//! once, each reply matched to its own call; a dropped call leaves nothing
//! behind.
mod support;

use futures::future::join_all;
use std::time::Duration;
use support::handler::Hits;
use support::{echo_node, request};
use warren::{Address, Client, ContentType, Gather};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_calls_through_one_client_each_get_their_own_reply() {
    let conn = support::connect(support::config()).await;
    let t = support::service_type("load");
    let (hits_a, hits_b) = (Hits::default(), Hits::default());
    let a = echo_node(&conn, &t, &hits_a).await;
    let b = echo_node(&conn, &t, &hits_b).await;
    let client = Client::new(&conn);
    let calls = (0..1000u32).map(|i| {
        let client = client.clone();
        let body = format!("call {i} of 1000");
        let req = request(
            Address::Any(t.clone()),
            "Echo.say",
            ContentType::MsgPack,
            &body,
        );
        async move { (body, client.call(req).await) }
    });
    for (body, reply) in join_all(calls).await {
        let reply = reply.unwrap_or_else(|e| panic!("{body}: {e}"));
        assert_eq!(reply.decode::<String>().unwrap(), body);
    }
    assert_eq!(hits_a.count() + hits_b.count(), 1000);
    assert_eq!(client.in_flight(), 0);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_clients_at_once() {
    let server = support::connect(support::config()).await;
    let t = support::service_type("clients");
    let node = echo_node(&server, &t, &Hits::default()).await;
    // Two connections of their own, two clients on each.
    let mut clients = Vec::new();
    for _ in 0..2 {
        let conn = support::connect(server.config().clone()).await;
        clients.push(Client::new(&conn));
        clients.push(Client::new(&conn));
    }
    let runs = clients.iter().enumerate().map(|(c, client)| {
        let t = t.clone();
        async move {
            let calls = (0..200).map(|i| {
                let body = (c, i);
                let ct = if i % 2 == 0 {
                    ContentType::Json
                } else {
                    ContentType::MsgPack
                };
                let req = request(Address::Any(t.clone()), "Echo.say", ct, &body);
                async move { (body, client.call(req).await.unwrap()) }
            });
            for (body, reply) in join_all(calls).await {
                assert_eq!(reply.decode::<(usize, i32)>().unwrap(), body);
            }
            assert_eq!(client.in_flight(), 0);
        }
    });
    join_all(runs).await;
    node.shutdown().await;
}

#[tokio::test]
async fn a_dropped_call_leaves_no_pending_entry() {
    let conn = support::connect(support::config()).await;
    let t = support::service_type("drop");
    let hits = Hits::default();
    let node = echo_node(&conn, &t, &hits).await;
    let client = Client::new(&conn);
    let held = || {
        request(
            Address::Any(t.clone()),
            "Echo.hold",
            ContentType::Json,
            &"held",
        )
    };

    // Aborted while it waits: seen in flight first, gone after.
    let task = tokio::spawn({
        let (client, req) = (client.clone(), held());
        async move { client.call(req).await }
    });
    hits.wait_for(1).await;
    assert_eq!(client.in_flight(), 1);
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert_eq!(client.in_flight(), 0);

    // Given up on by a timeout around it.
    let call = client.call(held());
    assert!(tokio::time::timeout(Duration::from_millis(100), call)
        .await
        .is_err());
    assert_eq!(client.in_flight(), 0);

    // A gather, likewise.
    let gather = client.gather(Gather::new(request(
        Address::Every(t.clone()),
        "Echo.hold",
        ContentType::Json,
        &"held",
    )));
    assert!(tokio::time::timeout(Duration::from_millis(100), gather)
        .await
        .is_err());
    assert_eq!(client.in_flight(), 0);

    // The replies that come late find no one, and harm nothing.
    hits.release();
    let reply = client
        .call(request(
            Address::Any(t.clone()),
            "Echo.say",
            ContentType::Json,
            &1,
        ))
        .await
        .unwrap();
    assert_eq!(reply.decode::<i32>().unwrap(), 1);
    assert_eq!(client.in_flight(), 0);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_finishing_out_of_order_are_each_acknowledged_once() {
    // Handlers of different lengths finish out of order. A tag acked
    // twice would make the broker close the node's channel (calls would
    // fail); a tag never acked would be delivered again to the next
    // consumer.
    let conn = support::connect(support::config()).await;
    let t = support::service_type("acks");
    let hits = Hits::default();
    let counted = hits.clone();
    let uneven = tower::service_fn(move |req: warren::Request| {
        let hits = counted.clone();
        async move {
            let n: u64 = req.decode()?;
            tokio::time::sleep(Duration::from_millis(n * 7 % 13)).await;
            hits.hit();
            warren::Response::encode(req.content_type, &n)
        }
    });
    let node = warren::Node::builder(t.clone())
        .concurrency(16)
        .serve(&conn, uneven)
        .await
        .unwrap();
    let client = Client::new(&conn);
    let calls = (0..400u64).map(|n| {
        let client = client.clone();
        let req = request(
            Address::Any(t.clone()),
            "Uneven.get",
            ContentType::MsgPack,
            &n,
        );
        async move { (n, client.call(req).await) }
    });
    for (n, reply) in join_all(calls).await {
        let reply = reply.unwrap_or_else(|e| panic!("call {n}: {e}"));
        assert_eq!(reply.decode::<u64>().unwrap(), n);
    }
    assert_eq!(hits.count(), 400);
    node.shutdown().await;

    // Anything left unacknowledged went back to the queue on shutdown.
    let again = Hits::default();
    let next = echo_node(&conn, &t, &again).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(again.count(), 0, "requests were delivered twice");
    next.shutdown().await;
}
