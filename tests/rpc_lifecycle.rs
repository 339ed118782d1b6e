//! A node's life: shutdown finishes the work in flight and hands back the
//! rest, a restarted instance gets what waited for it, an id can run
//! only once at a time, and a queue declared with other arguments is told
//! apart.
mod support;

use lapin::options::{BasicGetOptions, BasicNackOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use std::time::Duration;
use support::handler::{echo, Hits};
use support::raw::Raw;
use support::request;
use warren::events::QueueType;
use warren::{Address, Client, ContentType, Delivery, Error, Node, ServiceId};

/// Waits until `queue` has exactly `n` consumers; fails the test after 10 s.
async fn consumers(raw: &Raw, queue: &str, n: u32) {
    let count = || async {
        raw.channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap()
            .consumer_count()
    };
    tokio::time::timeout(Duration::from_secs(10), async {
        while count().await != n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("`{queue}` never had {n} consumers"));
}

#[tokio::test]
async fn shutdown_finishes_work_in_flight_and_hands_back_the_rest() {
    let conn = support::connect(support::config()).await;
    let t = support::service_type("shutdown");
    let (hits_a, hits_b) = (Hits::default(), Hits::default());
    let a = Node::builder(t.clone())
        .concurrency(1)
        .serve(&conn, echo(&hits_a))
        .await
        .unwrap();
    let a_id = a.id().clone();
    let client = Client::new(&conn);
    let call = |method: &str, body: i32| {
        let (client, req) = (
            client.clone(),
            request(Address::Any(t.clone()), method, ContentType::Json, &body),
        );
        tokio::spawn(async move { client.call(req).await })
    };
    let held = call("Echo.hold", 0);
    hits_a.wait_for(1).await;
    // These reach `a` too (it is the only consumer), and wait there.
    let waiting = [call("Echo.say", 1), call("Echo.say", 2)];
    let raw = Raw::open().await;
    let b = support::echo_node(&conn, &t, &hits_b).await;
    consumers(&raw, t.as_str(), 2).await;

    let stopping = tokio::spawn(a.shutdown());
    // `a` stops taking deliveries at once, though its handler still runs.
    consumers(&raw, t.as_str(), 1).await;
    assert!(!stopping.is_finished());
    hits_a.release();
    let reply = held.await.unwrap().expect("the call in flight is answered");
    assert_eq!(reply.from.id.as_deref(), Some(a_id.as_str()));
    stopping.await.unwrap();
    for (i, w) in waiting.into_iter().enumerate() {
        let reply = w
            .await
            .unwrap()
            .expect("a call not yet started is answered by another instance");
        assert_eq!(reply.decode::<usize>().unwrap(), i + 1);
        assert_eq!(reply.from.id.as_deref(), Some(b.id().as_str()));
    }
    assert_eq!((hits_a.count(), hits_b.count()), (1, 2));
    b.shutdown().await;
}

#[tokio::test]
async fn a_restarted_instance_gets_what_was_sent_to_it_while_it_was_down() {
    let conn = support::connect(support::config()).await;
    let t = support::service_type("restart");
    let id = ServiceId::new(support::unique("fixed")).unwrap();
    let start = |hits: &Hits| {
        Node::builder(t.clone())
            .id(id.clone())
            .queue_expires(Duration::from_secs(60))
            .serve(&conn, echo(hits))
    };
    start(&Hits::default()).await.unwrap().shutdown().await;

    let client = Client::new(&conn);
    let to = Address::Instance(id.clone());
    client
        .call(
            request(
                to.clone(),
                "Echo.say",
                ContentType::MsgPack,
                &"while you were out",
            )
            .with_delivery(Delivery::OneWay),
        )
        .await
        .expect("the instance queue outlives the instance");
    // It waits in the instance's queue, persistent.
    let raw = Raw::open().await;
    let queue = format!("{t}-{id}");
    let waiting = raw
        .channel
        .basic_get(queue.as_str().into(), BasicGetOptions::default())
        .await
        .unwrap()
        .expect("the send waits in the instance queue");
    assert_eq!(waiting.delivery.properties.delivery_mode(), &Some(2));
    waiting
        .delivery
        .acker
        .nack(BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        })
        .await
        .unwrap();

    let hits = Hits::default();
    let node = start(&hits).await.expect("the same id starts again");
    hits.wait_for(1).await;
    let reply = client
        .call(request(to, "Echo.say", ContentType::MsgPack, &"back"))
        .await
        .unwrap();
    assert_eq!(reply.from.id.as_deref(), Some(id.as_str()));
    assert_eq!(hits.count(), 2);
    node.shutdown().await;
}

#[tokio::test]
async fn an_id_already_in_use_cannot_start_again() {
    let conn = support::connect(support::config()).await;
    let other = support::connect(conn.config().clone()).await;
    let t = support::service_type("dup");
    let hits = Hits::default();
    let first = support::echo_node(&conn, &t, &hits).await;
    for c in [&conn, &other] {
        let err = Node::builder(t.clone())
            .id(first.id().clone())
            .serve(c, echo(&Hits::default()))
            .await
            .unwrap_err();
        match &err {
            Error::InstanceInUse { service, id } => {
                assert_eq!((service, id), (&t, first.id()));
            }
            other => panic!("not InstanceInUse: {other}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains(first.id().as_str()) && msg.contains("already running"),
            "unclear: {msg}"
        );
    }
    let reply = Client::new(&conn)
        .call(request(
            Address::Instance(first.id().clone()),
            "Echo.say",
            ContentType::Json,
            &1,
        ))
        .await
        .unwrap();
    assert_eq!(reply.from.id.as_deref(), Some(first.id().as_str()));
    first.shutdown().await;
}

#[tokio::test]
async fn a_queue_declared_with_other_arguments_is_a_topology_mismatch() {
    let conn = support::connect(support::config()).await;
    let t = support::service_type("args");
    let first = Node::builder(t.clone())
        .queue_expires(Duration::from_secs(60))
        .serve(&conn, echo(&Hits::default()))
        .await
        .unwrap();
    // Another instance of the type, with another expiry for the work queue
    // they share.
    let err = Node::builder(t.clone())
        .queue_expires(Duration::from_secs(30))
        .serve(&conn, echo(&Hits::default()))
        .await
        .unwrap_err();
    let Error::TopologyMismatch {
        entity,
        declared,
        existing,
        hint,
    } = &err
    else {
        panic!("not TopologyMismatch: {err}");
    };
    assert_eq!(entity, &format!("queue `{t}`"));
    assert_eq!(declared.get("x-expires").map(String::as_str), Some("30000"));
    assert_eq!(existing.get("x-expires"), Some(&Some("60000".to_owned())));
    assert!(hint.contains("queue_expires"), "{hint}");
    let msg = err.to_string();
    assert!(
        msg.contains("`30000` here, `60000` on the existing one"),
        "{msg}"
    );
    first.shutdown().await;
}

/// Every process of a deployment must use the same `Config::queue_type`: a
/// work queue that exists as classic is not declared again as quorum, nor
/// the other way round; either is a typed mismatch naming `x-queue-type`.
#[tokio::test]
async fn a_work_queue_of_another_type_is_a_topology_mismatch() {
    let classic = support::connect(support::config()).await;
    let quorum = support::connect(support::config().queue_type(QueueType::Quorum)).await;
    // (A classic queue is declared without `x-queue-type`: not set.)
    for (first, second, existing) in [
        (&classic, &quorum, None),
        (&quorum, &classic, Some("quorum")),
    ] {
        let t = support::service_type("typed");
        let node = Node::builder(t.clone())
            .serve(first, echo(&Hits::default()))
            .await
            .unwrap();
        let err = Node::builder(t.clone())
            .serve(second, echo(&Hits::default()))
            .await
            .unwrap_err();
        let Error::TopologyMismatch {
            entity,
            existing: theirs,
            hint,
            ..
        } = &err
        else {
            panic!("not TopologyMismatch: {err}");
        };
        assert_eq!(entity, &format!("queue `{t}`"), "{err}");
        assert!(
            theirs
                .get("x-queue-type")
                .is_some_and(|v| v.as_deref() == existing),
            "{err}"
        );
        assert!(hint.contains("WARREN_QUEUE_TYPE"), "{hint}");
        node.shutdown().await;
    }
}

/// The broker cancels a node's consumer when its queue goes away (deleted,
/// or crashed and restarted): the node declares its queues again and
/// consumes on both, instead of going on with its instance queue alone.
#[tokio::test]
async fn a_node_consumes_again_after_the_broker_cancels_its_consumer() {
    let conn = support::connect(support::config()).await;
    let t = support::service_type("cancelled");
    let node = support::echo_node(&conn, &t, &Hits::default()).await;
    let raw = Raw::open().await;
    raw.channel
        .queue_delete(t.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    let client = Client::new(&conn);
    let call = |address: Address| client.call(request(address, "Echo.say", ContentType::Json, &1));
    // Calls to any instance find no queue until the node declared it again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let reply = loop {
        match call(Address::any(&t).unwrap()).await {
            Ok(reply) => break reply,
            Err(Error::NoRoute { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the node did not serve its work queue again: {e}"),
        }
    };
    assert_eq!(reply.from.id.as_deref(), Some(node.id().as_str()));
    consumers(&raw, t.as_str(), 1).await;
    consumers(&raw, &format!("{t}-{}", node.id()), 1).await;
    let reply = call(Address::Instance(node.id().clone())).await.unwrap();
    assert_eq!(reply.from.id.as_deref(), Some(node.id().as_str()));
    node.shutdown().await;
}
