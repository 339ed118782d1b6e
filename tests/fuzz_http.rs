//! Property test of a node's HTTP endpoint: 300 generated requests written
//! straight to its socket (any method and path, headers with any bytes,
//! lying or missing lengths, random, deep and lying bodies, both codecs).
//! Every one gets a well-formed HTTP answer with a status warren documents,
//! or the connection is closed; none runs a handler twice; and the endpoint
//! keeps answering a well-formed call.
#![cfg(feature = "http")]
#[path = "support/degraded.rs"]
mod degraded;
mod support;

use degraded::http_config;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use std::time::Duration;
use support::handler::{echo, Hits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren::Node;

const CASES: usize = 300;

/// The status codes the endpoint documents (docs/FALLBACK.md), and those
/// its HTTP server answers malformed requests with.
const KNOWN: [u16; 14] = [
    200, 400, 401, 404, 405, 408, 411, 413, 415, 421, 422, 500, 503, 504,
];

#[derive(Debug, Clone)]
struct Case {
    method: String,
    path: String,
    headers: Vec<(String, Vec<u8>)>,
    length: Option<Option<usize>>,
    body: Vec<u8>,
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        "[ -~]{0,40}".prop_map(|s| serde_json::to_vec(&s).unwrap()),
        (1usize..4000).prop_map(|n| ("[".repeat(n) + &"]".repeat(n)).into_bytes()),
        (1usize..4000).prop_map(|n| [vec![0x91u8; n], vec![0xc0]].concat()),
        (
            prop::sample::select(vec![0xc6u8, 0xdb, 0xdd, 0xdf]),
            any::<u32>()
        )
            .prop_map(|(m, len)| [&[m][..], &len.to_be_bytes()].concat()),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let method = prop_oneof![
        4 => Just("POST".to_owned()),
        1 => prop::sample::select(vec!["GET", "PUT", "DELETE", "OPTIONS", "HEAD"]).prop_map(str::to_owned),
        1 => "[A-Z]{1,8}",
    ];
    let path = prop_oneof![
        4 => prop::sample::select(vec!["Echo.say", "Echo.upper", "Echo.fail", "Echo.panic", "Echo.nope", ""])
            .prop_map(|m| format!("/rpc/{m}")),
        1 => "/rpc/[!-~]{0,40}",
        1 => Just("/health".to_owned()),
        1 => "/[a-z/%.]{0,30}",
    ];
    let header = (
        prop_oneof![
            4 => prop::sample::select(vec![
                "content-type", "x-timeout-ms", "x-idempotent", "traceparent", "authorization",
                "x-sender-id", "x-sender-service", "accept", "transfer-encoding", "expect",
            ])
            .prop_map(str::to_owned),
            1 => "[a-z-]{1,20}",
        ],
        prop_oneof![
            3 => prop::sample::select(vec![
                "application/json", "application/msgpack", "text/plain", "-5", "0",
                "18446744073709551616", "chunked", "100-continue", "",
            ])
            .prop_map(|v| v.as_bytes().to_vec()),
            1 => proptest::collection::vec(32u8..127, 0..40),
            1 => proptest::collection::vec(any::<u8>(), 0..20)
                .prop_map(|v| v.into_iter().filter(|b| *b != b'\r' && *b != b'\n').collect()),
        ],
    );
    (
        method,
        path,
        proptest::collection::vec(header, 0..4),
        prop_oneof![
            4 => Just(None),
            1 => Just(Some(None)),
            1 => (0usize..100_000).prop_map(|n| Some(Some(n))),
        ],
        body(),
    )
        .prop_map(|(method, path, headers, length, body)| Case {
            method,
            path,
            headers,
            length,
            body,
        })
}

/// The bytes of `case` as an HTTP/1.1 request that closes its connection.
fn request(case: &Case) -> Vec<u8> {
    let mut out = format!(
        "{} {} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n",
        case.method, case.path
    )
    .into_bytes();
    for (name, value) in &case.headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    match case.length {
        // The true length.
        None => {
            out.extend_from_slice(format!("content-length: {}\r\n", case.body.len()).as_bytes());
        }
        // No length at all.
        Some(None) => {}
        // A length that may lie.
        Some(Some(n)) => out.extend_from_slice(format!("content-length: {n}\r\n").as_bytes()),
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&case.body);
    out
}

/// Sends `bytes` on a new connection; the status of the answer, or `None`
/// if the server closed the connection without one.
async fn exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> Option<u16> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before reading everything.
    let _ = tcp.write_all(bytes).await;
    let _ = tcp.shutdown().await;
    let mut answer = Vec::new();
    // A lying length leaves the server waiting for bytes that never come;
    // after the write side is shut it must answer or close.
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut answer))
        .await
        .expect("the endpoint answers or closes within 10 s")
        .ok()?;
    if answer.is_empty() {
        return None;
    }
    let head = String::from_utf8_lossy(&answer[..answer.len().min(64)]).into_owned();
    assert!(
        head.starts_with("HTTP/1.1 "),
        "not an HTTP answer: {head:?}"
    );
    Some(head[9..12].parse().expect("a status code"))
}

#[tokio::test]
async fn generated_requests_get_documented_statuses_and_the_endpoint_keeps_serving() {
    let conn = support::connect(support::config().max_body(64 * 1024)).await;
    let hits = Hits::default();
    let node = Node::builder(support::service_type("fuzzhttp"))
        .http(http_config())
        .serve(&conn, echo(&hits))
        .await
        .unwrap();
    let addr = node.http_addr().unwrap();

    let mut runner = TestRunner::deterministic();
    let strategy = case();
    let ok_call = |n: usize| {
        let body = format!("\"probe {n}\"");
        format!(
            "POST /rpc/Echo.upper HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    for n in 0..CASES {
        let case = strategy.new_tree(&mut runner).unwrap().current();
        let before = hits.count();
        if let Some(status) = exchange(addr, &request(&case)).await {
            assert!(
                KNOWN.contains(&status),
                "case {n}: status {status} for {case:?}"
            );
        }
        assert!(
            hits.count() - before <= 1,
            "case {n} ran a handler twice: {case:?}"
        );
        if n % 25 == 24 {
            let status = exchange(addr, ok_call(n).as_bytes()).await;
            assert_eq!(
                status,
                Some(200),
                "the endpoint stopped serving after case {n}"
            );
        }
    }
    node.shutdown().await;
}
