//! Routing: `instance`, `any`, `every` and `all` with several instances of a
//! type, `NoRoute` at once, fire-and-forget sends, and both codecs.
mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use support::handler::Hits;
use support::{echo_node, request};
use warren::{Address, Client, ContentType, Error, Gather, Node, Response, Transport};

/// The ids of the nodes that sent `replies`, each once.
fn senders(replies: &[Response]) -> BTreeSet<String> {
    replies.iter().map(|r| r.from.id.clone().unwrap()).collect()
}

fn ids<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> BTreeSet<String> {
    nodes.into_iter().map(|n| n.id().to_string()).collect()
}

#[tokio::test]
async fn instance_reaches_only_that_instance() {
    let conn = support::connect(support::config()).await;
    let t = support::service_type("route");
    let (hits_a, hits_b) = (Hits::default(), Hits::default());
    let a = echo_node(&conn, &t, &hits_a).await;
    let b = echo_node(&conn, &t, &hits_b).await;
    let client = Client::new(&conn);
    for i in 0..20u32 {
        let to = Address::Instance(b.id().clone());
        let reply = client
            .call(request(to, "Echo.say", ContentType::MsgPack, &i))
            .await
            .unwrap();
        assert_eq!(reply.from.id.as_deref(), Some(b.id().as_str()));
        assert_eq!(reply.decode::<u32>().unwrap(), i);
    }
    assert_eq!((hits_a.count(), hits_b.count()), (0, 20));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn any_reaches_exactly_one_instance_and_spreads_the_load() {
    let conn = support::connect(support::config()).await;
    let t = support::service_type("route");
    let hits: Vec<Hits> = (0..3).map(|_| Hits::default()).collect();
    let mut nodes = Vec::new();
    for h in &hits {
        nodes.push(echo_node(&conn, &t, h).await);
    }
    let client = Client::new(&conn);
    let calls = 60;
    for i in 0..calls {
        let reply = client
            .call(request(
                Address::Any(t.clone()),
                "Echo.say",
                ContentType::Json,
                &i,
            ))
            .await
            .unwrap();
        assert_eq!(reply.decode::<usize>().unwrap(), i);
    }
    let counts: Vec<usize> = hits.iter().map(Hits::count).collect();
    assert_eq!(
        counts.iter().sum::<usize>(),
        calls,
        "each call ran once: {counts:?}"
    );
    // The work queue hands calls round-robin to its consumers; a generous
    // bound still tells "spread" from "all on one instance".
    assert!(
        counts.iter().all(|&c| c >= calls / 6),
        "load not spread over the instances: {counts:?}"
    );
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test]
async fn every_reaches_each_instance_of_the_type_once() {
    let conn = support::connect(support::config()).await;
    let t = support::service_type("route");
    let other = support::service_type("other");
    let hits: Vec<Hits> = (0..3).map(|_| Hits::default()).collect();
    let mut nodes = Vec::new();
    for h in &hits {
        nodes.push(echo_node(&conn, &t, h).await);
    }
    let other_hits = Hits::default();
    let bystander = echo_node(&conn, &other, &other_hits).await;
    let client = Client::new(&conn);
    // No expected count: gather until the deadline, so a duplicate or a
    // stray reply would be seen.
    let replies = client
        .gather(Gather::new(
            request(
                Address::Every(t.clone()),
                "Echo.say",
                ContentType::MsgPack,
                &"ping",
            )
            .with_timeout(Duration::from_millis(400)),
        ))
        .await
        .unwrap();
    assert_eq!(replies.len(), 3, "{replies:?}");
    assert_eq!(senders(&replies), ids(&nodes));
    for r in &replies {
        assert_eq!(r.decode::<String>().unwrap(), "ping");
    }
    assert!(hits.iter().all(|h| h.count() == 1));
    assert_eq!(other_hits.count(), 0);

    // With a count, it returns as soon as that many replied.
    let start = Instant::now();
    let replies = client
        .gather(
            Gather::new(
                request(Address::Every(t.clone()), "Echo.say", ContentType::Json, &1)
                    .with_timeout(Duration::from_secs(10)),
            )
            .expect(3),
        )
        .await
        .unwrap();
    assert_eq!(senders(&replies), ids(&nodes));
    assert!(start.elapsed() < Duration::from_secs(10));
    for n in nodes {
        n.shutdown().await;
    }
    bystander.shutdown().await;
}

#[tokio::test]
async fn all_reaches_every_node_of_every_type() {
    let conn = support::connect(support::config()).await;
    let hits: Vec<Hits> = (0..3).map(|_| Hits::default()).collect();
    let types = [
        support::service_type("alpha"),
        support::service_type("alpha"),
        support::service_type("beta"),
    ];
    let mut nodes = Vec::new();
    for (t, h) in types.iter().zip(&hits) {
        nodes.push(echo_node(&conn, t, h).await);
    }
    // A second instance of the first type.
    let extra = Hits::default();
    nodes.push(echo_node(&conn, &types[0], &extra).await);
    let client = Client::new(&conn);
    let replies = client
        .gather(Gather::new(
            request(Address::all(), "Echo.say", ContentType::Json, &"all")
                .with_timeout(Duration::from_millis(400)),
        ))
        .await
        .unwrap();
    assert_eq!(replies.len(), 4, "{replies:?}");
    assert_eq!(senders(&replies), ids(&nodes));
    assert!(hits.iter().chain([&extra]).all(|h| h.count() == 1));
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test]
async fn no_route_is_reported_at_once() {
    let conn = support::connect(support::config()).await;
    let client = Client::new(&conn);
    let nobody = support::service_type("nobody");
    let addresses = [
        Address::Any(nobody.clone()),
        Address::instance(support::unique("ghost")).unwrap(),
        Address::Every(nobody.clone()),
    ];
    // First with no node at all on this exchange, then with one running
    // (so the exchange exists) but none at these addresses.
    // The first call of a client also opens its reply channel; that is
    // not what is measured here.
    let _ = client
        .call(request(
            addresses[0].clone(),
            "Echo.say",
            ContentType::Json,
            &0,
        ))
        .await;
    let hits = Hits::default();
    for round in 0..2 {
        let node = if round == 1 {
            Some(echo_node(&conn, &support::service_type("someone"), &hits).await)
        } else {
            None
        };
        // Transient calls learn it from the returned message, persistent
        // ones from their publisher confirm: both at once.
        for (to, persistent) in addresses.iter().flat_map(|a| [(a, false), (a, true)]) {
            let req = request(to.clone(), "Echo.say", ContentType::Json, &1)
                .with_timeout(Duration::from_secs(10))
                .persistent(persistent);
            let start = Instant::now();
            let err = if to.is_multicast() {
                client.gather(Gather::new(req)).await.unwrap_err()
            } else {
                client.call(req).await.unwrap_err()
            };
            let took = start.elapsed();
            assert!(
                matches!(&err, Error::NoRoute { address } if address == to),
                "{to} (persistent: {persistent}): {err}"
            );
            assert!(
                took < Duration::from_millis(100),
                "{to} (persistent: {persistent}): NoRoute after {took:?}"
            );
        }
        if let Some(n) = node {
            n.shutdown().await;
        }
    }
    assert_eq!(hits.count(), 0);
    assert_eq!(client.in_flight(), 0);
}

/// While calls only wait, the client stops looking for returned requests
/// often (it costs CPU for nothing); a new call to nowhere must still hear
/// `NoRoute` at once.
#[tokio::test]
async fn no_route_is_reported_at_once_while_other_calls_wait_long() {
    let conn = support::connect(support::config()).await;
    let client = Client::new(&conn);
    let slow = support::service_type("slow");
    let service = support::service::Service {
        delay: Duration::from_secs(4),
        ..Default::default()
    };
    let node = Node::builder(slow.clone())
        .serve(&conn, service)
        .await
        .unwrap();
    let waiting = tokio::spawn({
        let client = client.clone();
        let to = Address::Any(slow);
        async move {
            client
                .call(support::service::echo(&to, Duration::from_secs(20)))
                .await
        }
    });
    // Long enough for the client to stop looking often.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(client.in_flight(), 1);
    let nowhere = Address::Any(support::service_type("nobody"));
    for _ in 0..3 {
        let start = Instant::now();
        let err = client
            .call(support::service::echo(&nowhere, Duration::from_secs(10)))
            .await
            .unwrap_err();
        let took = start.elapsed();
        assert!(matches!(&err, Error::NoRoute { .. }), "{err}");
        assert!(took < Duration::from_millis(100), "NoRoute after {took:?}");
        // And again once the client is back to looking seldom.
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let reply = waiting.await.unwrap().unwrap();
    assert_eq!(reply.decode::<String>().unwrap(), "ping");
    node.shutdown().await;
}

#[tokio::test]
async fn both_codecs_round_trip_and_replies_use_the_request_codec() {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Point {
        x: i64,
        label: String,
        tags: Vec<String>,
    }
    let conn = support::connect(support::config()).await;
    let t = support::service_type("codec");
    let node = echo_node(&conn, &t, &Hits::default()).await;
    let client = Client::new(&conn);
    for ct in [ContentType::MsgPack, ContentType::Json] {
        let p = Point {
            x: -7,
            label: format!("{ct}"),
            tags: vec!["a".into(), "é".into()],
        };
        let reply = client
            .call(request(Address::Any(t.clone()), "Echo.say", ct, &p))
            .await
            .unwrap();
        assert_eq!(reply.content_type, ct);
        assert_eq!(reply.decode::<Point>().unwrap(), p);
        let reply = client
            .call(request(Address::Any(t.clone()), "Echo.upper", ct, "shout"))
            .await
            .unwrap();
        assert_eq!(reply.decode::<String>().unwrap(), "SHOUT");
        assert_eq!(reply.transport, Transport::Amqp);
    }
    node.shutdown().await;
}

#[tokio::test]
async fn send_reaches_the_handler_without_a_reply() {
    let conn = support::connect(support::config()).await;
    let t = support::service_type("send");
    let hits = Hits::default();
    let node = echo_node(&conn, &t, &hits).await;
    let client = Client::new(&conn);
    for i in 0..3 {
        client
            .send(request(
                Address::Any(t.clone()),
                "Echo.say",
                ContentType::MsgPack,
                &i,
            ))
            .await
            .unwrap();
    }
    hits.wait_for(3).await;
    assert_eq!(client.in_flight(), 0);
    let err = client
        .send(request(
            Address::instance(support::unique("ghost")).unwrap(),
            "Echo.say",
            ContentType::MsgPack,
            &0,
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoRoute { .. }), "{err}");
    node.shutdown().await;
}

#[tokio::test]
async fn persistent_and_transient_calls_each_get_their_own_reply() {
    // They go out on different channels of the client (one with publisher
    // confirms, one without); every reply must still find its caller.
    let conn = support::connect(support::config()).await;
    let t = support::service_type("mixed");
    let hits = Hits::default();
    let node = echo_node(&conn, &t, &hits).await;
    let client = Client::new(&conn);
    let calls = (0..200).map(|i| {
        let client = client.clone();
        let req = request(
            Address::Any(t.clone()),
            "Echo.say",
            ContentType::MsgPack,
            &i,
        )
        .persistent(i % 2 == 0);
        async move { (i, client.call(req).await) }
    });
    for (i, reply) in futures::future::join_all(calls).await {
        let reply = reply.unwrap_or_else(|e| panic!("call {i}: {e}"));
        assert_eq!(reply.decode::<i32>().unwrap(), i);
    }
    assert_eq!(hits.count(), 200);
    assert_eq!(client.in_flight(), 0);
    node.shutdown().await;
}

#[tokio::test]
async fn a_call_carries_the_message_id_its_caller_gave_it() {
    let conn = support::connect(support::config()).await;
    let t = support::service_type("ids");
    let seen = tower::service_fn(|req: warren::Request| async move {
        let ctx = warren::Context::current().expect("handlers run in a context");
        Response::encode(req.content_type, &ctx.message_id)
    });
    let node = Node::builder(t.clone()).serve(&conn, seen).await.unwrap();
    let client = Client::new(&conn);
    let call = |id: Option<&str>| {
        let mut req = request(Address::Any(t.clone()), "Ids.get", ContentType::Json, &());
        req.message_id = id.map(str::to_owned);
        client.call(req)
    };
    let given = call(Some("order-42")).await.unwrap();
    assert_eq!(
        given.decode::<Option<String>>().unwrap().as_deref(),
        Some("order-42")
    );
    let none = call(None).await.unwrap();
    assert_eq!(none.decode::<Option<String>>().unwrap(), None);
    node.shutdown().await;
}
