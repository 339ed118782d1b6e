//! The example page in a real browser: Debian's headless Chromium loads
//! `examples/postoffice.html` from a PostOffice, authenticates, calls a
//! service and receives the push the service sends back; the test reads
//! the page's DOM over the DevTools protocol.
//!
//! Without a `chromium` on the PATH the test is skipped, unless
//! `WARREN_REQUIRE_CHROMIUM` is set (scripts/test sets it and installs
//! the package).
mod support;

use axum::response::Html;
use axum::routing::get;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;
use warren::postoffice::{Caller, Identity, PostOffice, Pusher, TokenList};
use warren::{Node, Request, Response};

fn chromium() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("chromium"))
        .find(|p| p.is_file())
}

/// A DevTools connection to the browser, with one page attached.
struct DevTools {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next: u64,
    session: Option<String>,
}

impl DevTools {
    async fn command(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let mut msg = json!({"id": self.next, "method": method, "params": params});
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        self.ws.send(Message::text(msg.to_string())).await.unwrap();
        loop {
            let m = tokio::time::timeout(Duration::from_secs(20), self.ws.next())
                .await
                .expect("DevTools answers")
                .expect("DevTools stays connected")
                .unwrap();
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["id"] == self.next {
                    assert!(v.get("error").is_none(), "{method}: {v}");
                    return v["result"].clone();
                }
            }
        }
    }
}

#[tokio::test]
async fn the_example_page_calls_a_service_and_receives_a_push_in_chromium() {
    let Some(chromium) = chromium() else {
        assert!(
            std::env::var_os("WARREN_REQUIRE_CHROMIUM").is_none(),
            "WARREN_REQUIRE_CHROMIUM is set but no `chromium` is on the PATH (apt-get install chromium)"
        );
        eprintln!("SKIPPED: no `chromium` on the PATH (apt-get install chromium to run this test)");
        return;
    };

    // A service that greets and pushes to the caller's connection.
    let conn = support::connect(support::config()).await;
    let office_type = support::service_type("po-browser");
    let pusher = Pusher::new(warren::Client::new(&conn)).service(office_type.clone());
    let greeter = tower::service_fn(move |req: Request| {
        let pusher = pusher.clone();
        async move {
            let name: String = req.decode()?;
            let caller = Caller::current().expect("called through the PostOffice");
            pusher
                .to_connection(
                    &caller.connection,
                    "greeted",
                    &format!("pushed to {}", caller.user),
                )
                .await?;
            Response::encode(req.content_type, &format!("hello {name}"))
        }
    });
    let greeter_type = support::service_type("greeter");
    let _node = Node::builder(greeter_type.clone())
        .serve(&conn, greeter)
        .await
        .unwrap();

    // The PostOffice and the example page, as the example serves them.
    let office = PostOffice::builder()
        .service(office_type)
        .authenticator(
            TokenList::new()
                .token("ann-token", Identity::user("ann"))
                .unwrap(),
        )
        .start(&conn)
        .await
        .unwrap();
    let app = office.router().route(
        "/",
        get(|| async { Html(include_str!("../examples/postoffice.html")) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    // Headless Chromium with the DevTools protocol on a free port.
    let profile = std::env::temp_dir().join(support::unique("warren-chromium"));
    let mut browser = tokio::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--remote-debugging-port=0",
            "about:blank",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("chromium starts");
    let mut lines = BufReader::new(browser.stderr.take().unwrap()).lines();
    let endpoint = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.strip_prefix("DevTools listening on ") {
                return url.trim().to_owned();
            }
        }
        panic!("chromium exited without a DevTools endpoint");
    })
    .await
    .expect("chromium's DevTools endpoint within 30 s");
    // Keep draining its stderr so that it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let (ws, _) = tokio_tungstenite::connect_async(&endpoint).await.unwrap();
    let mut tools = DevTools {
        ws,
        next: 0,
        session: None,
    };
    let page = format!(
        "http://{addr}/?token=ann-token&to=any:{greeter_type}&method=Echo.greet&body=%22browser%22&auto=1"
    );
    let target = tools
        .command("Target.createTarget", json!({"url": page}))
        .await;
    let attached = tools
        .command(
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        )
        .await;
    tools.session = Some(attached["sessionId"].as_str().unwrap().to_owned());

    // What the page wrote into its DOM, once the reply and the push came.
    let read = "JSON.stringify({status: document.getElementById('status').textContent, \
                reply: document.getElementById('reply').textContent, \
                pushes: document.getElementById('pushes').textContent, \
                errors: document.getElementById('errors').textContent})";
    let mut seen = Value::Null;
    for _ in 0..200 {
        let r = tools
            .command(
                "Runtime.evaluate",
                json!({"expression": read, "returnByValue": true}),
            )
            .await;
        if let Some(text) = r["result"]["value"].as_str() {
            seen = serde_json::from_str(text).unwrap();
            if seen["reply"] != "" && seen["pushes"] != "" {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if let Some(dir) = std::env::var_os("WARREN_SCREENSHOT_DIR") {
        let shot = tools.command("Page.captureScreenshot", json!({})).await;
        let png = shot["data"].as_str().unwrap_or_default();
        std::fs::write(
            std::path::Path::new(&dir).join("postoffice.png.base64"),
            png,
        )
        .unwrap();
    }
    let _ = browser.kill().await;
    let _ = std::fs::remove_dir_all(&profile);

    assert_eq!(seen["status"], "connected as ann", "{seen}");
    let reply: Value = serde_json::from_str(seen["reply"].as_str().unwrap()).unwrap();
    assert_eq!(
        reply,
        json!({"id": 1, "status": "ok", "body": "hello browser"})
    );
    let push: Value = serde_json::from_str(seen["pushes"].as_str().unwrap().trim()).unwrap();
    assert_eq!(
        (&push["push"], &push["body"]),
        (&json!("greeted"), &json!("pushed to ann"))
    );
    assert_eq!(seen["errors"], "");
}
