"""Nameko's side of the bench: calls to the `echo` service through the
standalone `ClusterRpcProxy`.

The standalone proxy is single-threaded (one connection, replies read by the
calling thread), so N calls in flight are N `call_async` requests kept
outstanding by one loop, each awaited with `.result()` in the order it was
made: the Nameko idiom for parallel calls from outside a service. Nameko's
defaults, all kept: JSON bodies; requests published persistent (delivery
mode 2), mandatory, with publisher confirms, each publish waiting for its
confirm before the next call can be made.
"""

import warnings

# eventlet (which Nameko 2.x is built on) says at import that it is deprecated.
warnings.filterwarnings("ignore", r"\s*Eventlet is deprecated")

import eventlet  # noqa: E402

eventlet.monkey_patch()

import collections  # noqa: E402
import time  # noqa: E402

from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402

import harness  # noqa: E402

# JSON has no bytes: the body is a string of the mode's size.
body = "x" * harness.BODY

# A call waits at most 30 s for its reply (default: forever).
with ClusterRpcProxy({"AMQP_URI": harness.URL}, timeout=30) as cluster:
    pending = collections.deque()  # (sent at, reply), oldest first
    latencies, errors, first_error = [], 0, None
    start, end = time.monotonic() + harness.WARMUP_S, None
    while True:
        now = time.monotonic()
        if end is None and now >= start:
            start, end = now, now + harness.MEASURE_S
            harness.emit("start")
        elif end is not None and now >= end:
            harness.emit("end")
            break
        while len(pending) < harness.IN_FLIGHT:
            pending.append((time.monotonic(), cluster.echo.echo.call_async(body)))
        sent, reply = pending.popleft()
        try:
            if reply.result() != body:
                raise ValueError("the reply is not the request's body")
        except Exception as error:  # the first failed call ends the run
            errors, first_error = 1, repr(error)
            break
        if end is not None:
            latencies.append(int((time.monotonic() - sent) * 1e6))
    seconds = time.monotonic() - start
    # Wait for the calls still out: none is left in the queue for the next run.
    for _, reply in pending:
        try:
            reply.result()
        except Exception:
            errors += 1

harness.result(latencies, seconds, errors, first_error)
