//! One client connection: authentication, then its frames read and
//! answered, with its limits kept (in-flight requests, frame size, send
//! queue, idleness).

use super::frames::{self, ClientFrame, ProtocolError, RequestFrame};
use super::hub::Outbox;
use super::{Identity, Shared, CLIENT_HEADER, CLOSE_IDLE, CLOSE_SLOW_READER};
use super::{CLOSE_UNAUTHENTICATED, CONNECTION_HEADER, USER_HEADER};
use crate::codec::ContentType;
use crate::context::Context;
use crate::message::{Delivery, Gather, Request};
use crate::tracecontext::{adopt, TraceContext};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;
use tracing::debug;
use tracing::Instrument as _;

/// How long a close frame to a slow or leaving client may take to go out.
const CLOSE_GRACE: Duration = Duration::from_millis(200);

/// How long a client closed by the PostOffice has to answer the close
/// frame, before the socket is dropped.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// Serves one upgraded connection until it ends.
pub(crate) async fn run(shared: Arc<Shared>, mut socket: WebSocket, _permit: OwnedSemaphorePermit) {
    let identity = match authenticate(&shared, &mut socket).await {
        Ok(identity) => identity,
        Err(reason) => {
            shared.hub.stats.refused.fetch_add(1, Ordering::Relaxed);
            let refusal = socket.send(close(CLOSE_UNAUTHENTICATED, &reason));
            if let Ok(Ok(())) = tokio::time::timeout(CLOSE_GRACE, refusal).await {
                drain(&mut socket).await;
            }
            return;
        }
    };
    let id = shared.connection_id();
    let (outbox, queue, slow) = Outbox::new(shared.limits.send_queue, shared.hub.stats.clone());
    shared
        .hub
        .insert(id.clone(), identity.user.clone(), outbox.clone());
    let welcome =
        json!({"welcome": {"connection": id, "user": identity.user, "client": identity.client}});
    outbox.text(welcome.to_string());
    let (sink, mut stream) = socket.split();
    let writer = tokio::spawn(write(sink, queue, slow.clone()));
    let connection = Connection {
        shared: shared.clone(),
        outbox,
        in_flight: Arc::new(Semaphore::new(shared.limits.max_in_flight)),
        identity,
        id: id.clone(),
    };
    let closing = connection.read(&mut stream, slow).await;
    shared.hub.remove(&id);
    if closing {
        drain(&mut stream).await;
    }
    // The writer ends once every request of the connection answered (they
    // hold the queue), or at once for a slow reader.
    drop(connection);
    let _ = writer.await;
}

/// Waits for the `auth` frame and asks the authenticator; `Err` holds
/// the close reason.
async fn authenticate(shared: &Shared, socket: &mut WebSocket) -> Result<Identity, String> {
    let deadline = tokio::time::sleep(shared.limits.auth_timeout);
    tokio::pin!(deadline);
    loop {
        let message = tokio::select! {
            m = socket.recv() => m,
            () = &mut deadline => return Err("no auth frame in time".into()),
        };
        let text = match message {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            _ => return Err("the first frame must be {\"auth\": token}".into()),
        };
        return match frames::read(&text) {
            Ok(ClientFrame::Auth(a)) => {
                shared.auth.authenticate(&a.auth).map_err(|e| e.to_string())
            }
            _ => Err("the first frame must be {\"auth\": token}".into()),
        };
    }
}

/// Sends the queued frames; on a slow reader's signal, tries to say so
/// and stops.
async fn write(
    mut sink: futures::stream::SplitSink<WebSocket, Message>,
    mut queue: mpsc::Receiver<Message>,
    mut slow: watch::Receiver<bool>,
) {
    loop {
        let message = tokio::select! {
            m = queue.recv() => match m {
                Some(m) => m,
                None => break,
            },
            _ = slow.wait_for(|s| *s) => break,
        };
        // Whatever else is queued goes out with it, in one flush.
        let mut batch = vec![message];
        while batch.len() < 64 {
            match queue.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let closing = batch.iter().any(|m| matches!(m, Message::Close(_)));
        let send = async {
            for m in batch {
                sink.feed(m).await?;
            }
            sink.flush().await
        };
        tokio::select! {
            sent = send => if sent.is_err() || closing { return },
            _ = slow.wait_for(|s| *s) => break,
        }
    }
    if *slow.borrow() {
        let goodbye = sink.send(close(
            CLOSE_SLOW_READER,
            "send queue full: the client does not read",
        ));
        let _ = tokio::time::timeout(CLOSE_GRACE, goodbye).await;
        return;
    }
    let _ = tokio::time::timeout(CLOSE_GRACE, sink.close()).await;
}

/// Reads (and ignores) what the client still sends until it answers our
/// close frame: a socket dropped with unread data is reset, and a reset
/// makes the client lose the close frame it has not read yet.
async fn drain<S>(stream: &mut S)
where
    S: futures::Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let answered = async {
        while let Some(Ok(m)) = stream.next().await {
            if matches!(m, Message::Close(_)) {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_WAIT, answered).await;
}

struct Connection {
    shared: Arc<Shared>,
    outbox: Outbox,
    in_flight: Arc<Semaphore>,
    identity: Identity,
    id: String,
}

impl Connection {
    /// Reads frames until the client leaves, idles out or is too slow;
    /// `true` when the PostOffice closed an idle connection.
    async fn read(
        &self,
        stream: &mut futures::stream::SplitStream<WebSocket>,
        mut slow: watch::Receiver<bool>,
    ) -> bool {
        let limits = &self.shared.limits;
        let mut ping = tokio::time::interval(limits.ping_every);
        ping.tick().await;
        let mut last_heard = Instant::now();
        loop {
            let message = tokio::select! {
                m = stream.next() => m,
                _ = ping.tick() => {
                    if last_heard.elapsed() >= limits.idle_timeout {
                        self.outbox.send(close(CLOSE_IDLE, "idle"));
                        return true;
                    }
                    self.outbox.send(Message::Ping(Default::default()));
                    continue;
                }
                _ = slow.wait_for(|s| *s) => return false,
            };
            last_heard = Instant::now();
            match message {
                Some(Ok(Message::Text(text))) => self.frame(&text),
                Some(Ok(Message::Binary(_))) => self.refuse(&ProtocolError::new(
                    "binary_not_supported",
                    "frames are JSON text frames",
                )),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | None => return false,
                Some(Err(e)) => {
                    debug!(connection = %self.id, error = %e, "WebSocket error; closing");
                    return false;
                }
            }
        }
    }

    fn refuse(&self, error: &ProtocolError) {
        self.outbox.text(error.to_frame());
    }

    fn frame(&self, text: &str) {
        let max = self.shared.limits.max_frame_bytes;
        if text.len() > max {
            return self.refuse(&ProtocolError::new(
                "frame_too_large",
                format!("the frame has {} bytes; the limit is {max}", text.len()),
            ));
        }
        match frames::read(text) {
            Ok(ClientFrame::Request(r)) => self.request(r),
            Ok(ClientFrame::Services(s)) => {
                let list = self.shared.services(s.services.as_deref());
                let mut answer = json!({"services": list});
                if !s.id.is_null() {
                    answer["id"] = s.id;
                }
                self.outbox.text(answer.to_string());
            }
            Ok(ClientFrame::Auth(_)) => self.refuse(&ProtocolError::new(
                "already_authenticated",
                "the connection authenticated already",
            )),
            Err(e) => self.refuse(&e),
        }
    }

    fn request(&self, frame: RequestFrame) {
        let RequestFrame {
            id,
            to,
            method,
            body,
            timeout_ms,
            oneway,
            expect,
            traceparent,
        } = frame;
        let received = match traceparent.as_deref().map(TraceContext::child_of) {
            None => None,
            Some(Ok(trace)) => Some(trace),
            Some(Err(e)) => {
                return self.refuse(&ProtocolError::new("bad_frame", e.to_string()).with_id(id))
            }
        };
        let span = tracing::info_span!("warren.postoffice.request", method = %method, to = %to);
        let trace = adopt(received, &span).unwrap_or_else(TraceContext::new_root);
        let context = Context::default().with_trace(trace);
        let request = match self.build(&to, method, &body, timeout_ms, oneway) {
            Ok(r) => r,
            Err(e) => return self.refuse(&e.with_id(id)),
        };
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            let limit = self.shared.limits.max_in_flight;
            return self.refuse(
                &ProtocolError::new(
                    "too_many_in_flight",
                    format!("{limit} requests of this connection are in flight already"),
                )
                .with_id(id),
            );
        };
        let transport = self.shared.transport.clone();
        let outbox = self.outbox.clone();
        // The call runs in the frame's trace (or a new one): the request
        // it sends carries it on.
        let call = async move {
            if request.address.is_multicast() && !oneway {
                let gather = Gather { request, expect };
                frames::gathered(&id, transport.oneshot(gather).await)
            } else {
                frames::reply(&id, transport.oneshot(request).await)
            }
        };
        let call = context.scope(call).instrument(span);
        tokio::spawn(async move {
            let frame = call.await;
            drop(permit);
            outbox.text(frame);
        });
    }

    /// The warren request for a frame, carrying the caller's identity.
    fn build(
        &self,
        to: &str,
        method: String,
        body: &Value,
        timeout_ms: Option<u64>,
        oneway: bool,
    ) -> Result<Request, ProtocolError> {
        let address = frames::address(to)?;
        let limits = &self.shared.limits;
        let timeout = timeout_ms
            .map_or(limits.default_timeout, Duration::from_millis)
            .min(limits.max_timeout);
        let delivery = if oneway {
            Delivery::OneWay
        } else {
            Delivery::Call
        };
        let mut request = Request::encode(address, method, ContentType::Json, body)
            .map_err(|e| ProtocolError::new("bad_frame", e.to_string()))?
            .with_timeout(timeout)
            .with_delivery(delivery)
            .with_header(USER_HEADER, self.identity.user.clone())
            .with_header(CONNECTION_HEADER, self.id.clone());
        if let Some(client) = &self.identity.client {
            request = request.with_header(CLIENT_HEADER, client.clone());
        }
        Ok(request)
    }
}
