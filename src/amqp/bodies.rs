//! Bodies over `Config::max_body` refused before they are buffered.
//!
//! lapin assembles a delivery's whole body before handing it over, so a
//! size check on the delivery comes after the memory is spent. warren
//! therefore reads the broker's frames on their way to lapin ([`Filter`]):
//! when a content header announces a body over the limit for a
//! `basic.deliver` or `basic.get-ok`, its body size is rewritten to 0 in
//! place, the announced size is noted in [`Oversized`] under the
//! delivery's channel and tag, and the body frames that follow on that
//! channel are dropped as they arrive. lapin then yields the delivery with
//! an empty body, and its reader (a node, the reply consumer, an event
//! subscriber) finds the size in [`Oversized`] and refuses it.
//!
//! The filter holds back at most [`HELD`] bytes between reads (a frame
//! header or a body size split by a read) and otherwise works in lapin's
//! own read buffer: frames pass untouched, and bytes are moved only where
//! dropped frames leave a gap.

use futures::io::{AsyncRead, AsyncWrite};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// Frame types (AMQP 0-9-1, 4.2.3).
const METHOD: u8 = 1;
const HEADER: u8 = 2;
const BODY: u8 = 3;
/// A frame header: type, channel, payload size.
const FRAME_HEADER: usize = 7;
/// A content header's body size: payload bytes 4..12.
const SIZE_AT: u32 = 4;
/// A heartbeat frame.
const HEARTBEAT: [u8; 8] = [8, 0, 0, 0, 0, 0, 0, 0xCE];
/// The most bytes held back between two reads.
pub(crate) const HELD: usize = 8;

/// The most deliveries noted in [`Oversized`] at once.
const MAX_NOTED: usize = 4096;

/// The deliveries whose bodies were over the limit: (channel, delivery tag)
/// to the announced size. An entry lives until its delivery is read or its
/// channel closes; at most [`MAX_NOTED`].
#[derive(Debug, Default)]
pub(crate) struct Oversized {
    map: Mutex<HashMap<(u16, u64), u64>>,
    /// Entries in `map`: the filter locks only when there are some.
    len: AtomicUsize,
}

impl Oversized {
    /// Runs `f` on the locked map, keeping `len` in step.
    fn update<R>(&self, f: impl FnOnce(&mut HashMap<(u16, u64), u64>) -> R) -> R {
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let result = f(&mut map);
        self.len.store(map.len(), Ordering::Release);
        result
    }

    fn insert(&self, channel: u16, tag: u64, size: u64) {
        self.update(|map| {
            if map.len() >= MAX_NOTED {
                // Deliveries nobody reads the note of (a watcher's consumer):
                // forget one; its reader sees an empty body.
                if let Some(&key) = map.keys().next() {
                    map.remove(&key);
                }
            }
            map.insert((channel, tag), size);
        });
    }

    /// The announced size of the delivery `tag` on `channel`, if its body
    /// was dropped for being over the limit; forgets it.
    pub(crate) fn take(&self, channel: u16, tag: u64) -> Option<u64> {
        if self.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.update(|map| map.remove(&(channel, tag)))
    }

    fn close_channel(&self, channel: u16) {
        if self.len.load(Ordering::Acquire) > 0 {
            self.update(|map| map.retain(|&(c, _), _| c != channel));
        }
    }

    fn clear(&self) {
        self.update(HashMap::clear);
    }
}

/// What a channel's next content belongs to.
#[derive(Clone, Copy, Debug, Default)]
struct ChannelState {
    /// The delivery tag of the last `basic.deliver`/`basic.get-ok`, until
    /// its content header.
    tag: Option<u64>,
    /// Body bytes still to drop.
    skip: u64,
}

/// Where the filter is in the frame stream.
#[derive(Clone, Copy, Debug)]
enum Position {
    /// At a frame's first byte.
    FrameStart,
    /// Inside a frame's payload, `at` bytes in; `left` bytes remain
    /// (the frame-end octet included).
    Payload {
        kind: u8,
        channel: u16,
        at: u32,
        left: u64,
        drop: bool,
    },
}

/// The state of a method frame's reading: its class and method, and the
/// delivery tag of a `basic.deliver`/`basic.get-ok`.
#[derive(Clone, Copy, Debug, Default)]
struct MethodScan {
    ids: u32,
    /// The payload offset of the delivery tag, once known.
    tag_at: Option<u32>,
    tag: u64,
    /// The payload offset where reading stops: the rest passes in bulk.
    end: u32,
}

/// The frame filter of one connection (see the module documentation).
#[derive(Debug)]
pub(crate) struct Filter {
    limit: u64,
    table: Arc<Oversized>,
    position: Position,
    scan: MethodScan,
    channels: Vec<ChannelState>,
    held: [u8; HELD],
    held_len: usize,
    /// Whether what lapin was given ends at a frame's end.
    at_boundary: bool,
    /// Whether the last [`Filter::filter`] dropped bytes.
    dropped: bool,
}

impl Filter {
    /// A filter for a new connection: dropping bodies over `limit` bytes,
    /// noting them in `table` (which it clears: channels start over).
    pub(crate) fn new(limit: u64, table: Arc<Oversized>) -> Self {
        table.clear();
        Self {
            limit,
            table,
            position: Position::FrameStart,
            scan: MethodScan::default(),
            channels: Vec::new(),
            held: [0; HELD],
            held_len: 0,
            at_boundary: true,
            dropped: false,
        }
    }

    fn channel(&mut self, id: u16) -> &mut ChannelState {
        let i = usize::from(id);
        if self.channels.len() <= i {
            self.channels.resize(i + 1, ChannelState::default());
        }
        &mut self.channels[i]
    }

    /// Filters `buf` in place: `buf` starts with the bytes held back last
    /// time, then what was read. Returns how many bytes at its front are
    /// for lapin; the bytes to hold back until the next read go to `held`.
    fn filter(&mut self, buf: &mut [u8]) -> usize {
        let len = buf.len();
        self.dropped = false;
        let mut r = 0;
        let mut w = 0;
        // Keeps buf[r..r + n].
        let keep = |buf: &mut [u8], r: &mut usize, w: &mut usize, n: usize| {
            if *w != *r {
                buf.copy_within(*r..*r + n, *w);
            }
            *r += n;
            *w += n;
        };
        while r < len {
            match self.position {
                Position::FrameStart => {
                    if len - r < FRAME_HEADER {
                        break;
                    }
                    let h = &buf[r..r + FRAME_HEADER];
                    let kind = h[0];
                    let channel = u16::from_be_bytes([h[1], h[2]]);
                    let size = u32::from_be_bytes([h[3], h[4], h[5], h[6]]);
                    let mut drop = false;
                    if kind == BODY {
                        let state = self.channel(channel);
                        if state.skip > 0 {
                            drop = true;
                            state.skip = state.skip.saturating_sub(u64::from(size));
                        }
                    }
                    if kind == METHOD {
                        // Class and method first.
                        self.scan = MethodScan {
                            end: 4,
                            ..MethodScan::default()
                        };
                    }
                    self.position = Position::Payload {
                        kind,
                        channel,
                        at: 0,
                        left: u64::from(size) + 1,
                        drop,
                    };
                    if drop {
                        r += FRAME_HEADER;
                        self.dropped = true;
                    } else {
                        keep(buf, &mut r, &mut w, FRAME_HEADER);
                        self.at_boundary = false;
                    }
                }
                Position::Payload {
                    kind,
                    channel,
                    at,
                    left,
                    drop,
                } => {
                    let avail = (len - r) as u64;
                    // How many bytes to pass (or drop) in one go.
                    let n = match kind {
                        // The whole start of the frame at hand: read at once.
                        METHOD
                            if at == 0
                                && self
                                    .method_at_once(channel, &buf[r..r + left.min(avail) as usize])
                                    .is_some() =>
                        {
                            left.min(avail)
                        }
                        HEADER if at == 0 && avail >= 12 && left > 12 => {
                            self.content_header(channel, &mut buf[r + 4..r + 12]);
                            left.min(avail)
                        }
                        // Split by a read: byte by byte.
                        METHOD if at < self.scan.end => match self.scan.tag_at {
                            // The consumer tag, before the delivery tag.
                            Some(tag_at) if at < tag_at => u64::from(tag_at - at).min(avail),
                            _ => {
                                self.scan_method(channel, at, buf[r]);
                                1
                            }
                        },
                        HEADER if at < SIZE_AT => u64::from(SIZE_AT - at).min(avail).min(left),
                        HEADER if at == SIZE_AT && left > 8 => {
                            if avail < 8 {
                                break;
                            }
                            self.content_header(channel, &mut buf[r..r + 8]);
                            8
                        }
                        _ => left.min(avail),
                    };
                    let n = n.min(left);
                    let n_usize = n as usize;
                    if drop {
                        r += n_usize;
                    } else {
                        keep(buf, &mut r, &mut w, n_usize);
                        self.at_boundary = left == n;
                    }
                    self.position = if left == n {
                        Position::FrameStart
                    } else {
                        Position::Payload {
                            kind,
                            channel,
                            at: at.saturating_add(n as u32),
                            left: left - n,
                            drop,
                        }
                    };
                }
            }
        }
        let rest = len - r;
        self.held[..rest].copy_from_slice(&buf[r..]);
        self.held_len = rest;
        w
    }

    /// What a method other than `basic.deliver`/`basic.get-ok` changes.
    fn other_method(&mut self, channel: u16, ids: u32) {
        match ids {
            // channel.close, channel.close-ok: the channel starts over.
            CHANNEL_CLOSE | CHANNEL_CLOSE_OK => {
                *self.channel(channel) = ChannelState::default();
                self.table.close_channel(channel);
            }
            // Any other content (basic.return) is not a delivery.
            BASIC_RETURN => self.channel(channel).tag = None,
            _ => {}
        }
    }

    /// Reads what matters of a method frame from `p`, its payload's first
    /// bytes, if they hold it all; `None` if the frame is split before.
    fn method_at_once(&mut self, channel: u16, p: &[u8]) -> Option<()> {
        let ids = u32::from_be_bytes(p.get(..4)?.try_into().ok()?);
        let tag_at = match ids {
            DELIVER => 5 + usize::from(*p.get(4)?),
            GET_OK => 4,
            _ => {
                self.other_method(channel, ids);
                self.scan.end = 0;
                return Some(());
            }
        };
        let tag = p.get(tag_at..tag_at + 8)?.try_into().ok()?;
        self.channel(channel).tag = Some(u64::from_be_bytes(tag));
        self.scan.end = 0;
        Some(())
    }

    /// Reads one byte of a method frame's payload, at offset `at`.
    fn scan_method(&mut self, channel: u16, at: u32, byte: u8) {
        let scan = &mut self.scan;
        if at < 4 {
            scan.ids = scan.ids << 8 | u32::from(byte);
            if at == 3 {
                let ids = scan.ids;
                match ids {
                    // basic.deliver: the consumer tag's length next.
                    DELIVER => scan.end = 5,
                    // basic.get-ok: the tag comes first.
                    GET_OK => {
                        scan.tag_at = Some(4);
                        scan.end = 12;
                    }
                    _ => self.other_method(channel, ids),
                }
            }
            return;
        }
        if scan.ids == DELIVER && at == 4 {
            // After the consumer tag (a short string: length, bytes).
            let tag_at = 5 + u32::from(byte);
            scan.tag_at = Some(tag_at);
            scan.end = tag_at + 8;
            return;
        }
        let Some(tag_at) = scan.tag_at else { return };
        if (tag_at..tag_at + 8).contains(&at) {
            scan.tag = scan.tag << 8 | u64::from(byte);
            if at == tag_at + 7 {
                let tag = scan.tag;
                self.channel(channel).tag = Some(tag);
            }
        }
    }

    /// Reads (and may rewrite) a content header's body size.
    fn content_header(&mut self, channel: u16, size: &mut [u8]) {
        let declared = u64::from_be_bytes(size.try_into().unwrap_or([0; 8]));
        let limit = self.limit;
        let state = self.channel(channel);
        let Some(tag) = state.tag.take() else { return };
        if declared > limit {
            size.fill(0);
            state.skip = declared;
            self.table.insert(channel, tag, declared);
        } else {
            // A delivery within the limit may reuse the key of one never
            // read (its channel was lost): forget that one.
            self.table.take(channel, tag);
        }
    }
}

const DELIVER: u32 = 60 << 16 | 60;
const GET_OK: u32 = 60 << 16 | 71;
const BASIC_RETURN: u32 = 60 << 16 | 50;
const CHANNEL_CLOSE: u32 = 20 << 16 | 40;
const CHANNEL_CLOSE_OK: u32 = 20 << 16 | 41;

/// A transport whose reads go through a [`Filter`].
#[derive(Debug)]
pub(crate) struct Filtered<S> {
    inner: S,
    filter: Filter,
    /// Filtered bytes that did not fit a small read buffer.
    spill: [u8; 2 * HELD],
    spill_at: usize,
    spill_len: usize,
}

impl<S> Filtered<S> {
    pub(crate) fn new(inner: S, filter: Filter) -> Self {
        Self {
            inner,
            filter,
            spill: [0; 2 * HELD],
            spill_at: 0,
            spill_len: 0,
        }
    }

    /// Copies what fits of `bytes` to `buf` and spills the rest for the
    /// next read; returns how many bytes `buf` got.
    fn hand_over(&mut self, buf: &mut [u8], bytes: &[u8]) -> usize {
        let give = bytes.len().min(buf.len());
        buf[..give].copy_from_slice(&bytes[..give]);
        let rest = &bytes[give..];
        self.spill[..rest.len()].copy_from_slice(rest);
        self.spill_at = 0;
        self.spill_len = rest.len();
        give
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Filtered<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.spill_len > 0 {
            let n = this.spill_len.min(buf.len());
            buf[..n].copy_from_slice(&this.spill[this.spill_at..this.spill_at + n]);
            this.spill_at += n;
            this.spill_len -= n;
            return Poll::Ready(Ok(n));
        }
        loop {
            let held = this.filter.held_len;
            // A read buffer with no room beyond the held bytes (the end
            // of lapin's ring buffer): read into the spill area instead.
            let small = buf.len() <= held;
            let mut spill = [0u8; 2 * HELD];
            let target: &mut [u8] = if small { &mut spill } else { &mut *buf };
            target[..held].copy_from_slice(&this.filter.held[..held]);
            let n = match Pin::new(&mut this.inner).poll_read(cx, &mut target[held..]) {
                Poll::Ready(Ok(n)) => n,
                other => return other,
            };
            if n == 0 {
                return Poll::Ready(Ok(0));
            }
            let kept = this.filter.filter(&mut target[..held + n]);
            if kept == 0 {
                if this.filter.dropped && this.filter.at_boundary {
                    // All dropped: lapin gets a heartbeat instead, so that
                    // a long body being dropped neither looks like a dead
                    // connection to it nor keeps it from running.
                    return Poll::Ready(Ok(this.hand_over(buf, &HEARTBEAT)));
                }
                // Held back: read on.
                continue;
            }
            if small {
                return Poll::Ready(Ok(this.hand_over(buf, &spill[..kept])));
            }
            return Poll::Ready(Ok(kept));
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Filtered<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

// What async-rs asks of a socket it registers (its own name for these is
// private).
#[cfg(unix)]
use std::os::fd::{AsFd as AsSys, AsRawFd as AsRawSys};
#[cfg(windows)]
use std::os::windows::io::{AsRawSocket as AsRawSys, AsSocket as AsSys};

/// The plain or TLS connection to the broker that the filter reads.
pub(crate) type Transport =
    lapin::tcp::AsyncTcpStream<<async_rs::Tokio as async_rs::traits::Reactor>::TcpStream>;

/// The runtime lapin's connections run on: tokio's, except that the
/// connection lapin reads is a [`Filtered`] one (plain or TLS below it).
/// warren opens the connection itself (see `supervisor.rs`); a TCP
/// connection lapin asked the runtime for would have no filter.
#[derive(Clone, Debug)]
pub(crate) struct Kit {
    tokio: async_rs::Tokio,
}

impl Kit {
    /// lapin's runtime on the current tokio runtime.
    pub(crate) fn runtime() -> async_rs::Runtime<Self> {
        async_rs::Runtime::new(Self {
            tokio: async_rs::Tokio::current(),
        })
    }
}

impl async_rs::traits::RuntimeKit for Kit {}

impl async_rs::traits::Executor for Kit {
    type Task<T: Send + 'static> = <async_rs::Tokio as async_rs::traits::Executor>::Task<T>;

    fn block_on<T, F: Future<Output = T>>(&self, f: F) -> T {
        self.tokio.block_on(f)
    }

    fn spawn<T: Send + 'static, F: Future<Output = T> + Send + 'static>(
        &self,
        f: F,
    ) -> async_rs::util::Task<Self::Task<T>> {
        self.tokio.spawn(f)
    }

    fn spawn_blocking<T: Send + 'static, F: FnOnce() -> T + Send + 'static>(
        &self,
        f: F,
    ) -> async_rs::util::Task<Self::Task<T>> {
        self.tokio.spawn_blocking(f)
    }
}

impl async_rs::traits::Reactor for Kit {
    type TcpStream = Filtered<Transport>;
    type Sleep = <async_rs::Tokio as async_rs::traits::Reactor>::Sleep;

    fn register<H>(
        &self,
        socket: H,
    ) -> io::Result<impl AsyncRead + AsyncWrite + Send + Unpin + 'static>
    where
        H: std::io::Read + std::io::Write + AsSys + AsRawSys + Send + 'static,
    {
        self.tokio.register(socket)
    }

    fn sleep(&self, dur: std::time::Duration) -> Self::Sleep {
        self.tokio.sleep(dur)
    }

    fn interval(
        &self,
        dur: std::time::Duration,
    ) -> impl futures::Stream<Item = std::time::Instant> + Send + 'static {
        self.tokio.interval(dur)
    }

    fn tcp_connect_addr(
        &self,
        addr: std::net::SocketAddr,
    ) -> impl Future<Output = io::Result<Self::TcpStream>> + Send + 'static {
        let connect = self.tokio.tcp_connect_addr(addr);
        async move {
            let plain = lapin::tcp::AsyncTcpStream::Plain(connect.await?);
            // A filter that drops nothing.
            Ok(Filtered::new(plain, Filter::new(u64::MAX, Arc::default())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::AsyncReadExt;
    use proptest::prelude::*;

    fn frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![kind];
        f.extend_from_slice(&channel.to_be_bytes());
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        f.push(0xCE);
        f
    }

    fn deliver(channel: u16, ctag: &str, tag: u64) -> Vec<u8> {
        let mut p = vec![0, 60, 0, 60, ctag.len() as u8];
        p.extend_from_slice(ctag.as_bytes());
        p.extend_from_slice(&tag.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0, 0]); // redelivered, exchange, routing key
        frame(METHOD, channel, &p)
    }

    fn get_ok(channel: u16, tag: u64) -> Vec<u8> {
        let mut p = vec![0, 60, 0, 71];
        p.extend_from_slice(&tag.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0]);
        frame(METHOD, channel, &p)
    }

    fn header(channel: u16, size: u64) -> Vec<u8> {
        let mut p = vec![0, 60, 0, 0];
        p.extend_from_slice(&size.to_be_bytes());
        p.extend_from_slice(&[0x10, 0, 1, b'x']); // a flag and a short string
        frame(HEADER, channel, &p)
    }

    /// The frames of a stream (which must be whole frames), heartbeats
    /// apart: those lapin may get besides the broker's.
    fn frames(stream: &[u8]) -> (Vec<&[u8]>, usize) {
        let (mut frames, mut heartbeats, mut at) = (Vec::new(), 0, 0);
        while at < stream.len() {
            let size = u32::from_be_bytes(stream[at + 3..at + 7].try_into().unwrap()) as usize;
            let frame = &stream[at..at + 8 + size];
            assert_eq!(
                frame.last(),
                Some(&0xCE),
                "a frame ends at {}",
                at + 7 + size
            );
            if frame == HEARTBEAT {
                heartbeats += 1;
            } else {
                frames.push(frame);
            }
            at += 8 + size;
        }
        (frames, heartbeats)
    }

    /// `out` is `seen`, plus heartbeats between frames.
    fn same_frames(out: &[u8], seen: &[u8]) -> bool {
        let (out, out_beats) = frames(out);
        let (seen, seen_beats) = frames(seen);
        out == seen && out_beats >= seen_beats
    }

    /// One message: its channel, its body size, and whether it comes as a
    /// `basic.get-ok` rather than a `basic.deliver`.
    type Message = (u16, usize, bool);

    const LIMIT: u64 = 100;

    /// A frame as sent, and as lapin must see it (empty: dropped).
    type Frame = (Vec<u8>, Vec<u8>);

    /// Deliveries cut: channel, tag, announced size.
    type Cut = Vec<(u16, u64, u64)>;

    /// The stream the broker sends, and what lapin must see. Messages are
    /// interleaved frame by frame across channels, with heartbeats.
    fn streams(messages: &[Message], frame_max: usize) -> (Vec<u8>, Vec<u8>, Cut) {
        let (mut sent, mut seen, mut cut) = (Vec::new(), Vec::new(), Vec::new());
        // Per channel, the frames still to send.
        let mut queues: Vec<(u16, Vec<Frame>)> = Vec::new();
        for (i, &(channel, size, get)) in messages.iter().enumerate() {
            let tag = i as u64 + 1;
            let method = if get {
                get_ok(channel, tag)
            } else {
                deliver(channel, "amq.ctag-x", tag)
            };
            let over = size as u64 > LIMIT;
            let mut frames = vec![
                (method.clone(), method),
                (
                    header(channel, size as u64),
                    header(channel, if over { 0 } else { size as u64 }),
                ),
            ];
            let body: Vec<u8> = (0..size).map(|i| i as u8).collect();
            for chunk in body.chunks(frame_max) {
                let f = frame(BODY, channel, chunk);
                frames.push((f.clone(), if over { Vec::new() } else { f }));
            }
            if over {
                cut.push((channel, tag, size as u64));
            }
            match queues.iter_mut().find(|(c, _)| *c == channel) {
                Some((_, q)) => q.extend(frames),
                None => queues.push((channel, frames)),
            }
        }
        let mut round = 0;
        while queues.iter().any(|(_, q)| !q.is_empty()) {
            for (_, q) in &mut queues {
                if !q.is_empty() {
                    let (s, e) = q.remove(0);
                    sent.extend(s);
                    seen.extend(e);
                }
            }
            round += 1;
            if round % 3 == 0 {
                sent.extend(HEARTBEAT);
                seen.extend(HEARTBEAT);
            }
        }
        (sent, seen, cut)
    }

    /// Reads in the chunks given, at most `max` bytes at a time.
    struct Chunks {
        data: Vec<u8>,
        at: usize,
        cuts: Vec<usize>,
    }

    impl AsyncRead for Chunks {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            let next = self
                .cuts
                .iter()
                .copied()
                .find(|&c| c > self.at)
                .unwrap_or(self.data.len())
                .min(self.data.len());
            let n = (next - self.at).min(buf.len());
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Poll::Ready(Ok(n))
        }
    }

    /// What lapin reads of `sent` through a filter, and the filter's notes.
    fn run(sent: &[u8], cuts: Vec<usize>, read_size: usize) -> (Vec<u8>, Arc<Oversized>) {
        let chunks = Chunks {
            data: sent.to_vec(),
            at: 0,
            cuts,
        };
        let table = Arc::new(Oversized::default());
        let mut f = Filtered::new(chunks, Filter::new(LIMIT, table.clone()));
        let mut out = Vec::new();
        let mut buf = vec![0; read_size];
        futures::executor::block_on(async {
            loop {
                let n = f.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
        });
        (out, table)
    }

    fn message() -> impl Strategy<Value = Message> {
        (
            1u16..4,
            prop_oneof![0usize..=100, 101usize..400],
            any::<bool>(),
        )
    }

    #[test]
    fn nothing_over_the_limit_passes_unchanged() {
        let messages = [(1, 50, false), (2, 100, true), (1, 0, false)];
        let (sent, seen, _) = streams(&messages, 16);
        assert_eq!(sent, seen);
        for split in 1..sent.len() {
            for read_size in [1, 5, 7, 8, 13, 4096] {
                let (out, _) = run(&sent, vec![split, split + 9], read_size);
                assert_eq!(out, sent, "split at {split}, reads of {read_size}");
            }
        }
    }

    #[test]
    fn every_split_point() {
        let messages = [
            (1, 50, false),
            (2, 300, false),
            (1, 101, true),
            (3, 100, false),
        ];
        let (sent, seen, cut) = streams(&messages, 64);
        for split in 1..sent.len() {
            for read_size in [1, 3, 7, 8, 64, 4096] {
                let (out, table) = run(&sent, vec![split], read_size);
                assert!(
                    same_frames(&out, &seen),
                    "split at {split}, reads of {read_size}"
                );
                for &(c, t, s) in &cut {
                    assert_eq!(table.take(c, t), Some(s));
                }
                assert_eq!(table.len.load(Ordering::Relaxed), 0);
            }
        }
    }

    #[test]
    fn a_closed_channel_is_forgotten() {
        let mut sent = deliver(5, "c", 1);
        sent.extend(header(5, 1000));
        sent.extend(frame(METHOD, 5, &[0, 20, 0, 41]));
        let (_, table) = run(&sent, vec![], 4096);
        assert_eq!(table.take(5, 1), None);
    }

    proptest! {
        #[test]
        fn frames_pass_or_are_cut(
            messages in proptest::collection::vec(message(), 0..8),
            frame_max in 16usize..200,
            cuts in proptest::collection::vec(1usize..4000, 0..30),
            read_size in prop_oneof![1usize..16, 16usize..5000],
        ) {
            let (sent, seen, cut) = streams(&messages, frame_max);
            let (out, table) = run(&sent, cuts, read_size);
            prop_assert!(same_frames(&out, &seen));
            for &(c, t, s) in &cut {
                prop_assert_eq!(table.take(c, t), Some(s));
            }
        }
    }
}
