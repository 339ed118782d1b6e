//! The PostOffice, for real: a broker, services on it, PostOffices serving
//! their router on free ports, and WebSocket clients (tokio-tungstenite)
//! speaking the JSON protocol of docs/POSTOFFICE.md.
mod support;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use warren::http::HttpConfig;
use warren::postoffice::{Caller, Identity, Limits, PostOffice, Pusher, TokenList};
use warren::{Client, Code, Connection, Node, Request, Response, ServiceType, Status};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const WAIT: Duration = Duration::from_secs(10);

/// A PostOffice serving its router on a free loopback port.
struct Gateway {
    office: Arc<PostOffice>,
    addr: SocketAddr,
}

fn tokens() -> TokenList {
    TokenList::new()
        .token("ann-token", Identity::user("ann").with_client("web"))
        .unwrap()
        .token("bob-token", Identity::user("bob"))
        .unwrap()
}

async fn gateway(conn: &Connection, service: &ServiceType, limits: Limits) -> Gateway {
    let office = PostOffice::builder()
        .service(service.clone())
        .limits(limits)
        .authenticator(tokens())
        .start(conn)
        .await
        .expect("the PostOffice starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let office = Arc::new(office);
    let serving = office.clone();
    // warren's listener (its limits) serves the WebSockets.
    tokio::spawn(async move { serving.serve(listener, std::future::pending()).await });
    Gateway { office, addr }
}

/// The router alone, served by `axum::serve` as an application embedding
/// it would.
async fn embedded(office: &PostOffice) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = office.router();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// Connects without authenticating.
async fn connect(addr: SocketAddr) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .expect("the WebSocket upgrade");
    ws
}

async fn send(ws: &mut Ws, frame: &Value) {
    ws.send(Message::text(frame.to_string())).await.unwrap();
}

/// The next JSON frame (pings are answered by the client library).
async fn recv(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame within 10 s")
            .expect("the connection is open")
            .expect("a valid frame");
        match m {
            Message::Text(t) => return serde_json::from_str(&t).expect("a JSON frame"),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// Reads until the server closes; its close code, if it sent one.
async fn close_code(ws: &mut Ws) -> Option<u16> {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("closed within 10 s")
        {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code.into()),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return None,
        }
    }
}

/// Connects and authenticates with `token`; the welcome frame too.
async fn login(addr: SocketAddr, token: &str) -> (Ws, Value) {
    let mut ws = connect(addr).await;
    send(&mut ws, &json!({"auth": token})).await;
    let welcome = recv(&mut ws).await;
    assert!(welcome["welcome"]["connection"].is_string(), "{welcome}");
    (ws, welcome["welcome"].clone())
}

async fn call(ws: &mut Ws, frame: Value) -> Value {
    send(ws, &frame).await;
    recv(ws).await
}

/// Echoes (`Echo.say`), tells who called (`Echo.whoami`), fails
/// (`Echo.fail`), holds until released (`Echo.hold`), records one-way
/// notes (`Echo.note`).
fn echo(notes: mpsc::UnboundedSender<Value>, gate: Arc<Semaphore>) -> support::handler::Handler {
    support::handler::Handler::new(tower::service_fn(move |req: Request| {
        let (notes, gate) = (notes.clone(), gate.clone());
        async move {
            match req.method.as_str() {
                "Echo.say" => Ok(Response::ok(req.content_type, req.body)),
                "Echo.whoami" => {
                    let c = Caller::current().expect("the caller's headers");
                    Response::encode(
                        req.content_type,
                        &json!({"user": c.user, "client": c.client, "connection": c.connection}),
                    )
                }
                "Echo.fail" => Err(Status::application(&"no such order", req.content_type)
                    .unwrap()
                    .into()),
                "Echo.hold" => {
                    let _pass = gate.acquire().await;
                    Ok(Response::ok(req.content_type, req.body))
                }
                "Echo.note" => {
                    let _ = notes.send(req.decode::<Value>()?);
                    Ok(Response::ok(req.content_type, bytes::Bytes::new()))
                }
                other => Ok(Response::error(
                    req.content_type,
                    &Status::new(Code::UnknownMethod, format!("no method {other}")),
                )),
            }
        }
    }))
}

struct Services {
    conn: Connection,
    echo: ServiceType,
    office_type: ServiceType,
    notes: mpsc::UnboundedReceiver<Value>,
    gate: Arc<Semaphore>,
    nodes: Vec<Node>,
}

/// A connection on a fresh exchange, with `n` echo nodes on it.
async fn services(n: usize, http: Option<HttpConfig>) -> Services {
    let conn = support::connect(support::config()).await;
    let echo_type = support::service_type("po-echo");
    let (tx, notes) = mpsc::unbounded_channel();
    let gate = Arc::new(Semaphore::new(0));
    let mut nodes = Vec::new();
    for _ in 0..n {
        let mut b = Node::builder(echo_type.clone()).methods(["Echo.say", "Echo.whoami"]);
        if let Some(h) = &http {
            b = b.http(h.clone());
        }
        nodes.push(
            b.serve(&conn, echo(tx.clone(), gate.clone()))
                .await
                .unwrap(),
        );
    }
    Services {
        conn,
        echo: echo_type,
        office_type: support::service_type("po"),
        notes,
        gate,
        nodes,
    }
}

#[tokio::test]
async fn calls_one_way_and_every_reach_services_with_the_callers_identity() {
    let mut s = services(2, None).await;
    let g = gateway(&s.conn, &s.office_type, Limits::default()).await;
    let (mut ws, welcome) = login(g.addr, "ann-token").await;
    assert_eq!(welcome["user"], "ann");
    let any = format!("any:{}", s.echo);

    let r = call(
        &mut ws,
        json!({"id": 1, "to": any, "method": "Echo.say", "body": {"a": [1, 2]}}),
    )
    .await;
    assert_eq!(r, json!({"id": 1, "status": "ok", "body": {"a": [1, 2]}}));

    // The service reads who called from its Context.
    let r = call(
        &mut ws,
        json!({"id": "w", "to": any, "method": "Echo.whoami"}),
    )
    .await;
    assert_eq!(r["status"], "ok");
    assert_eq!(
        r["body"],
        json!({"user": "ann", "client": "web", "connection": welcome["connection"]})
    );

    // Error statuses: the application's, an unknown method, nobody there.
    let r = call(&mut ws, json!({"id": 2, "to": any, "method": "Echo.fail"})).await;
    assert_eq!(r["status"], "application");
    assert_eq!(r["body"]["details"], "no such order");
    let r = call(&mut ws, json!({"id": 3, "to": any, "method": "Echo.nope"})).await;
    assert_eq!(r["status"], "unknown_method");
    let r = call(
        &mut ws,
        json!({"id": 4, "to": "any:nobody-here", "method": "X.y"}),
    )
    .await;
    assert_eq!(r["status"], "no_route");
    let id = s.nodes[0].id().to_string();
    let r = call(
        &mut ws,
        json!({"id": 5, "to": format!("instance:{id}"), "method": "Echo.say", "body": 7}),
    )
    .await;
    assert_eq!(r["body"], 7);

    // One-way: acknowledged once the broker took it; the service gets it.
    let r = call(
        &mut ws,
        json!({"id": 6, "to": any, "method": "Echo.note", "body": "hi", "oneway": true}),
    )
    .await;
    assert_eq!(r, json!({"id": 6, "status": "ok", "body": null}));
    let note = tokio::time::timeout(WAIT, s.notes.recv()).await.unwrap();
    assert_eq!(note, Some(json!("hi")));

    // every: one frame, one entry per replying instance.
    let every = format!("every:{}", s.echo);
    let r = call(&mut ws, json!({"id": 7, "to": every, "method": "Echo.say", "body": "x", "expect": 2, "timeout_ms": 5000})).await;
    assert_eq!(r["status"], "ok");
    let mut from: Vec<String> = r["body"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!((&e["status"], &e["body"]), (&json!("ok"), &json!("x")));
            e["from"].as_str().unwrap().to_owned()
        })
        .collect();
    from.sort();
    let mut ids: Vec<String> = s.nodes.iter().map(|n| n.id().to_string()).collect();
    ids.sort();
    assert_eq!(from, ids);

    // A deadline that passes is deadline_exceeded.
    let r = call(
        &mut ws,
        json!({"id": 8, "to": any, "method": "Echo.hold", "timeout_ms": 200}),
    )
    .await;
    assert_eq!(r["status"], "deadline_exceeded");
    s.gate.add_permits(100);
}

#[tokio::test]
async fn unauthenticated_and_wrong_token_connections_are_closed_and_nothing_is_routed() {
    let mut s = services(1, None).await;
    let g = gateway(&s.conn, &s.office_type, Limits::default()).await;
    let note = json!({"id": 1, "to": format!("any:{}", s.echo), "method": "Echo.note", "body": "leak", "oneway": true});

    let mut ws = connect(g.addr).await;
    send(&mut ws, &json!({"auth": "guess"})).await;
    send(&mut ws, &note).await;
    assert_eq!(close_code(&mut ws).await, Some(4001));

    let mut ws = connect(g.addr).await;
    send(&mut ws, &note).await;
    assert_eq!(close_code(&mut ws).await, Some(4001));

    let mut ws = connect(g.addr).await;
    ws.send(Message::binary(b"\x00".to_vec())).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(4001));

    // An authenticated one-way note goes through, and is the only one.
    let (mut ws, _) = login(g.addr, "bob-token").await;
    let mut good = note.clone();
    good["body"] = json!("ok");
    assert_eq!(call(&mut ws, good).await["status"], "ok");
    let first = tokio::time::timeout(WAIT, s.notes.recv()).await.unwrap();
    assert_eq!(first, Some(json!("ok")));
    assert!(
        s.notes.try_recv().is_err(),
        "a refused connection's frame was routed"
    );
    assert_eq!(g.office.stats().refused, 3);
}

#[tokio::test]
async fn malformed_and_oversized_frames_get_error_frames_and_the_connection_goes_on() {
    let s = services(1, None).await;
    let limits = Limits {
        max_frame_bytes: 1024,
        max_in_flight: 1,
        ..Limits::default()
    };
    let g = gateway(&s.conn, &s.office_type, limits).await;
    let (mut ws, _) = login(g.addr, "ann-token").await;
    let any = format!("any:{}", s.echo);

    ws.send(Message::text("{not json")).await.unwrap();
    assert_eq!(recv(&mut ws).await["error"], "bad_json");
    let r = call(
        &mut ws,
        json!({"id": 1, "to": any, "method": "Echo.say", "timeout": 5}),
    )
    .await;
    assert_eq!(r["error"], "bad_frame");
    assert_eq!(r["id"], 1);
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `timeout`"),
        "{r}"
    );
    let r = call(
        &mut ws,
        json!({"id": 2, "to": "calc", "method": "Echo.say"}),
    )
    .await;
    assert_eq!(r["error"], "bad_address");
    let r = call(
        &mut ws,
        json!({"id": 3, "to": any, "method": "Echo.say", "body": "x".repeat(2000)}),
    )
    .await;
    assert_eq!(r["error"], "frame_too_large");
    ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(recv(&mut ws).await["error"], "binary_not_supported");
    let r = call(&mut ws, json!({"auth": "ann-token"})).await;
    assert_eq!(r["error"], "already_authenticated");

    // One request in flight at most: the second is refused, by id.
    send(
        &mut ws,
        &json!({"id": "held", "to": any, "method": "Echo.hold"}),
    )
    .await;
    let r = call(
        &mut ws,
        json!({"id": "more", "to": any, "method": "Echo.say"}),
    )
    .await;
    assert_eq!(
        (&r["error"], &r["id"]),
        (&json!("too_many_in_flight"), &json!("more"))
    );
    s.gate.add_permits(1);
    assert_eq!(recv(&mut ws).await["id"], "held");

    // Still serving.
    let r = call(
        &mut ws,
        json!({"id": 4, "to": any, "method": "Echo.say", "body": 1}),
    )
    .await;
    assert_eq!(r["status"], "ok");
}

#[tokio::test]
async fn a_client_that_does_not_read_is_closed_and_the_others_are_not() {
    let s = services(1, None).await;
    let limits = Limits {
        send_queue: 4,
        ..Limits::default()
    };
    let g = gateway(&s.conn, &s.office_type, limits).await;
    let (mut slow, _) = login(g.addr, "ann-token").await;
    let (mut reader, _) = login(g.addr, "bob-token").await;
    let pusher = Pusher::new(Client::new(&s.conn)).service(s.office_type.clone());

    // The reader reads everything while pushes fill the other's socket
    // buffers, then its queue.
    let body = "p".repeat(60_000);
    let n = 300;
    let reading = tokio::spawn(async move {
        for _ in 0..n {
            let frame = recv(&mut reader).await;
            assert_eq!(frame["push"], "bulk");
        }
        reader
    });
    for _ in 0..n {
        pusher.to_all("bulk", &body).await.unwrap();
    }
    let mut reader = reading.await.unwrap();
    assert_eq!(g.office.stats().slow_readers, 1);
    assert_eq!(g.office.stats().connections, 1);

    // The slow one finds its connection closed once it reads.
    let mut closed = false;
    while let Ok(Some(m)) = tokio::time::timeout(WAIT, slow.next()).await {
        match m {
            Ok(Message::Close(f)) => {
                assert_eq!(f.map(|f| u16::from(f.code)), Some(4008));
                closed = true;
                break;
            }
            Ok(_) => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(closed, "the slow reader's connection stayed open");
    let r = call(
        &mut reader,
        json!({"id": 1, "to": format!("any:{}", s.echo), "method": "Echo.say", "body": 2}),
    )
    .await;
    assert_eq!(r["status"], "ok");
}

#[tokio::test]
async fn pushes_reach_clients_on_another_postoffice_through_the_broker() {
    let s = services(
        1,
        Some(
            HttpConfig::default()
                .listen("127.0.0.1:0".parse().unwrap())
                .announce_every(Duration::from_millis(300)),
        ),
    )
    .await;
    let one = gateway(&s.conn, &s.office_type, Limits::default()).await;
    let two = gateway(&s.conn, &s.office_type, Limits::default()).await;
    let (mut ann1, w1) = login(one.addr, "ann-token").await;
    let (mut bob2, w2) = login(two.addr, "bob-token").await;
    let (mut ann2, _) = login(two.addr, "ann-token").await;
    // A service pushes, from its own node.
    let pusher = Pusher::new(s.nodes[0].client().clone()).service(s.office_type.clone());

    pusher
        .to_connection(
            w2["connection"].as_str().unwrap(),
            "direct",
            &json!({"n": 1}),
        )
        .await
        .unwrap();
    let p = recv(&mut bob2).await;
    assert_eq!(
        p,
        json!({"push": "direct", "from": s.nodes[0].id().to_string(), "body": {"n": 1}})
    );

    pusher.to_user("ann", "mine", &2).await.unwrap();
    assert_eq!(recv(&mut ann1).await["push"], "mine");
    assert_eq!(recv(&mut ann2).await["push"], "mine");

    pusher.to_all("everyone", &3).await.unwrap();
    for ws in [&mut ann1, &mut bob2, &mut ann2] {
        assert_eq!(
            recv(ws).await,
            json!({"push": "everyone", "from": s.nodes[0].id().to_string(), "body": 3})
        );
    }
    // Nothing else came: bob was not pushed "mine".
    let r = call(
        &mut bob2,
        json!({"id": 1, "to": format!("any:{}", s.echo), "method": "Echo.say"}),
    )
    .await;
    assert_eq!(r["id"], 1);

    // A connection gone: dropped there, and counted.
    let gone = w1["connection"].as_str().unwrap().to_owned();
    ann1.close(None).await.unwrap();
    tokio::time::timeout(WAIT, async {
        while one.office.stats().connections > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    pusher.to_connection(&gone, "late", &4).await.unwrap();
    tokio::time::timeout(WAIT, async {
        while one.office.stats().pushes_dropped == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the push to a gone connection is counted as dropped");
    assert!(pusher
        .to_connection("not-a-connection", "x", &0)
        .await
        .is_err());

    // Discovery: the frame (asked of `two`) and GET /services (of `one`)
    // list the announced echo node, once each has heard of it.
    for office in [&one.office, &two.office] {
        office
            .peers()
            .wait_until(|p| p.iter().any(|p| p.service == s.echo))
            .await;
    }
    let r = call(&mut bob2, json!({"services": s.echo.to_string(), "id": 9})).await;
    assert_eq!(r["id"], 9);
    assert_eq!(r["services"][0]["id"], s.nodes[0].id().to_string());
    assert_eq!(r["services"][0]["http_url"], s.nodes[0].http_url().unwrap());
    assert_eq!(
        r["services"][0]["methods"],
        json!(["Echo.say", "Echo.whoami"])
    );
    let listed: Value = reqwest_get(one.addr, "/services").await;
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == s.echo.to_string()),
        "{listed}"
    );
}

/// GET over a plain TCP connection (HTTP/1.0, the body to the end).
async fn reqwest_get(addr: SocketAddr, path: &str) -> Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut raw = String::new();
    tcp.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    serde_json::from_str(body).unwrap()
}

#[tokio::test]
async fn with_the_broker_cut_calls_go_over_http_and_pushes_wait_for_the_postoffice() {
    let http = HttpConfig::default()
        .listen("127.0.0.1:0".parse().unwrap())
        .announce_every(Duration::from_millis(300));
    let s = services(2, Some(http)).await;
    // The PostOffice's broker connection runs through a proxy that can cut it.
    let proxy = support::proxy::Proxy::to_url(&support::url()).await;
    let cfg = s
        .conn
        .config()
        .clone()
        .url(proxy.url_for(&support::url()))
        .unwrap()
        .when_disconnected(warren::WhenDisconnected::FailFast)
        .backoff(
            warren::Backoff::default()
                .initial(Duration::from_millis(50))
                .max(Duration::from_millis(300))
                .max_attempts(None),
        );
    let po_conn = support::connect(cfg).await;
    let g = gateway(&po_conn, &s.office_type, Limits::default()).await;
    tokio::time::timeout(
        WAIT,
        g.office
            .peers()
            .wait_until(|p| p.iter().filter(|p| p.service == s.echo).count() >= 2),
    )
    .await
    .expect("the echo nodes' announcements arrive");
    let (mut ws, welcome) = login(g.addr, "ann-token").await;
    let any = format!("any:{}", s.echo);
    for n in 0..3 {
        say(&mut ws, &any, n).await;
    }

    // Cut: calls go on over HTTP to the announced endpoints.
    proxy.partition();
    let mut state = po_conn.state();
    tokio::time::timeout(
        Duration::from_secs(20),
        state.wait_for(|s| !s.is_connected()),
    )
    .await
    .expect("the PostOffice sees the cut")
    .unwrap();
    for n in 10..15 {
        say(&mut ws, &any, n).await;
    }
    // A push meanwhile waits in the PostOffice's queue on the broker.
    let pusher = Pusher::new(s.nodes[0].client().clone()).service(s.office_type.clone());
    let connection = welcome["connection"].as_str().unwrap();
    pusher
        .to_connection(connection, "waited", &1)
        .await
        .unwrap();

    // Restored: the push arrives, and calls go on.
    proxy.resume();
    let p = recv(&mut ws).await;
    assert_eq!((&p["push"], &p["body"]), (&json!("waited"), &json!(1)));
    for n in 20..25 {
        say(&mut ws, &any, n).await;
    }
}

/// One `Echo.say` call through the PostOffice, its reply checked.
async fn say(ws: &mut Ws, to: &str, n: u64) {
    let r = call(
        ws,
        json!({"id": n, "to": to, "method": "Echo.say", "body": n}),
    )
    .await;
    assert_eq!(
        (&r["id"], &r["status"], &r["body"]),
        (&json!(n), &json!("ok"), &json!(n)),
        "{r}"
    );
}

#[tokio::test]
async fn idle_clients_are_closed_and_connections_over_the_limit_refused() {
    let s = services(1, None).await;
    let limits = Limits {
        ping_every: Duration::from_millis(100),
        idle_timeout: Duration::from_millis(400),
        max_connections: 1,
        ..Limits::default()
    };
    let g = gateway(&s.conn, &s.office_type, limits).await;
    let (mut idle, _) = login(g.addr, "ann-token").await;

    // One connection at most: the listener closes the next at once...
    let refused = tokio_tungstenite::connect_async(format!("ws://{}/ws", g.addr)).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Io(_))
        | Err(tokio_tungstenite::tungstenite::Error::Protocol(_))
        | Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed) => {}
        other => panic!("expected the connection closed, got {other:?}"),
    }
    // ...and the router alone refuses the next upgrade with 503.
    let embedded = embedded(&g.office).await;
    let refused = tokio_tungstenite::connect_async(format!("ws://{embedded}/ws")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 503),
        other => panic!("expected a 503 refusal, got {other:?}"),
    }

    // Not reading, it answers no ping: closed as idle. (Reading before
    // then would answer the pings.)
    tokio::time::timeout(WAIT, async {
        while g.office.stats().connections > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the idle connection is closed");
    assert_eq!(close_code(&mut idle).await, Some(4002));
}

#[test]
fn the_binary_lists_its_settings_and_refuses_to_start_without_an_authenticator() {
    let bin = env!("CARGO_BIN_EXE_postoffice");
    let help = std::process::Command::new(bin)
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let text = String::from_utf8(help.stdout).unwrap();
    for var in [
        "WARREN_POSTOFFICE_LISTEN",
        "WARREN_AMQP_URL",
        "WARREN_POSTOFFICE_TOKENS",
        "WARREN_POSTOFFICE_JWT_SECRET",
        "WARREN_POSTOFFICE_MAX_IN_FLIGHT",
        "WARREN_POSTOFFICE_HEADER_TIMEOUT_MS",
        "WARREN_POSTOFFICE_TLS_CERT",
    ] {
        assert!(text.contains(var), "--help does not list {var}:\n{text}");
    }
    let bare = std::process::Command::new(bin)
        .env_remove("WARREN_POSTOFFICE_TOKENS")
        .env_remove("WARREN_POSTOFFICE_JWT_SECRET")
        .env_remove("WARREN_POSTOFFICE_JWT_PUBLIC_KEY")
        .output()
        .unwrap();
    assert_eq!(bare.status.code(), Some(1));
    let err = String::from_utf8(bare.stderr).unwrap();
    assert!(err.contains("set one authenticator"), "{err}");
    // A limit of zero is refused, naming the variable (it is not taken
    // as 1).
    for var in [
        "WARREN_POSTOFFICE_MAX_CONNECTIONS",
        "WARREN_POSTOFFICE_HEADER_TIMEOUT_MS",
    ] {
        let zero = std::process::Command::new(bin)
            .env("WARREN_POSTOFFICE_TOKENS", "s3cret=ann")
            .env(var, "0")
            .output()
            .unwrap();
        assert_eq!(zero.status.code(), Some(1));
        let err = String::from_utf8(zero.stderr).unwrap();
        assert!(err.contains(var), "{err}");
    }
}

/// `GET /health/ready` on `addr`: its status code and body.
async fn readiness(addr: SocketAddr) -> (u16, warren::health::Readiness) {
    let resp = reqwest::get(format!("http://{addr}/health/ready"))
        .await
        .expect("GET /health/ready");
    let status = resp.status().as_u16();
    let body = resp.bytes().await.expect("a readiness body");
    (
        status,
        serde_json::from_slice(&body).expect("a readiness body"),
    )
}

/// Polls readiness on `addr` until its status is `status` (at most 10 s).
async fn until_ready(addr: SocketAddr, status: u16) -> warren::health::Readiness {
    tokio::time::timeout(WAIT, async {
        loop {
            let (now, body) = readiness(addr).await;
            if now == status {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("readiness never answered {status}"))
}

#[tokio::test]
async fn readiness_says_whether_it_accepts_clients_up_to_its_limit_and_until_shutdown() {
    let s = services(0, None).await;
    let office = PostOffice::builder()
        .service(s.office_type.clone())
        .limits(Limits {
            max_connections: 1,
            ..Limits::default()
        })
        .authenticator(tokens())
        .start(&s.conn)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let office = Arc::new(office);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = office.clone();
    let served = tokio::spawn(async move {
        serving
            .serve(listener, async {
                let _ = stopped.await;
            })
            .await
    });
    // Probed on the router alone: the listener itself holds one
    // connection at most.
    let probe = embedded(&office).await;

    let r = until_ready(probe, 200).await;
    assert_eq!((r.ready, r.accepting), (true, Some(true)), "{r:?}");
    assert_eq!(r.broker, ["connected"]);

    // At its limit: not ready, not accepting, and why.
    let (ws, _) = login(addr, "ann-token").await;
    let r = until_ready(probe, 503).await;
    assert_eq!((r.ready, r.accepting), (false, Some(false)), "{r:?}");
    assert!(
        r.reasons.iter().any(|w| w.contains("connection limit (1)")),
        "{r:?}"
    );
    // Below it again once the client leaves.
    drop(ws);
    let r = until_ready(probe, 200).await;
    assert_eq!(r.accepting, Some(true), "{r:?}");

    // Shutting down: not accepting any more.
    stop.send(()).unwrap();
    served.await.unwrap().unwrap();
    let r = until_ready(probe, 503).await;
    assert_eq!(r.accepting, Some(false), "{r:?}");
    assert!(
        r.reasons.iter().any(|w| w.contains("shutting down")),
        "{r:?}"
    );
}
