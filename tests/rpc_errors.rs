//! Error replies: remote errors keep their code, message and details in both
//! codecs; a panicking handler answers `internal` and its node keeps serving.
mod support;

use support::handler::{Hits, Refused};
use support::{echo_node, request};
use warren::{Address, Client, Code, ContentType, Error};

#[tokio::test]
async fn remote_errors_carry_code_message_and_details_in_both_codecs() {
    let conn = support::connect(support::config()).await;
    let t = support::service_type("err");
    let node = echo_node(&conn, &t, &Hits::default()).await;
    let client = Client::new(&conn);
    for ct in [ContentType::MsgPack, ContentType::Json] {
        let err = client
            .call(request(
                Address::Any(t.clone()),
                "Echo.fail",
                ct,
                "too busy",
            ))
            .await
            .unwrap_err();
        let Error::Remote(status) = &err else {
            panic!("{ct}: not a remote error: {err}");
        };
        assert_eq!(status.code(), &Code::Application);
        assert_eq!(status.message(), "refused: too busy");
        assert_eq!(
            status.details::<Refused>().unwrap(),
            Some(Refused {
                reason: "too busy".into(),
                attempt: 3,
            })
        );

        let err = client
            .call(request(Address::Any(t.clone()), "Echo.nothing", ct, &()))
            .await
            .unwrap_err();
        let status = err.status().expect("a remote error");
        assert_eq!(status.code(), &Code::UnknownMethod);
        assert_eq!(status.message(), "no method `Echo.nothing`");
        assert_eq!(status.details::<Refused>().unwrap(), None);

        // A body the handler cannot decode is the caller's mistake.
        let err = client
            .call(request(Address::Any(t.clone()), "Echo.upper", ct, &[1, 2]))
            .await
            .unwrap_err();
        let status = err.status().expect("a remote error");
        assert_eq!(status.code(), &Code::BadRequest, "{status}");
        assert!(status.message().contains(ct.as_str()), "{status}");
    }
    assert_eq!(client.in_flight(), 0);
    node.shutdown().await;
}

#[tokio::test]
async fn a_panicking_handler_answers_internal_and_the_node_keeps_serving() {
    let conn = support::connect(support::config()).await;
    let t = support::service_type("panic");
    let hits = Hits::default();
    let node = echo_node(&conn, &t, &hits).await;
    let client = Client::new(&conn);
    for round in 0..3 {
        let err = client
            .call(request(
                Address::Any(t.clone()),
                "Echo.panic",
                ContentType::Json,
                &(),
            ))
            .await
            .unwrap_err();
        let status = err.status().expect("a remote error");
        assert_eq!(status.code(), &Code::Internal);
        // The panic's text is logged, not sent to the caller.
        assert_eq!(status.message(), warren::PANIC_MESSAGE);
        assert!(!status.message().contains("asked to panic"), "{status}");
        let reply = client
            .call(request(
                Address::Instance(node.id().clone()),
                "Echo.say",
                ContentType::Json,
                &round,
            ))
            .await
            .unwrap();
        assert_eq!(reply.decode::<i32>().unwrap(), round);
    }
    assert_eq!(hits.count(), 6);
    node.shutdown().await;
}
