#!/usr/bin/env python3
"""Calls a warren service from Python with pika and JSON, following
docs/PROTOCOL.md alone. Exits non-zero (with a traceback) on any mismatch.

Usage: call_warren.py AMQP_URL SERVICE_TYPE INSTANCE_ID EXCHANGE

The service must implement `Calc.add` ({"a", "b"} -> a + b) and
`Calc.context` (returns what its handler saw of the call).
"""
import json
import sys
import time
import uuid

import pika

REPLY_TO = "amq.rabbitmq.reply-to"


class Caller:
    """One connection, one channel, one direct reply-to consumer."""

    def __init__(self, url, callback_queue=False):
        self.conn = pika.BlockingConnection(pika.URLParameters(url))
        self.ch = self.conn.channel()
        # Publisher confirms + mandatory: an address nobody listens at
        # fails at once (UnroutableError) instead of at the deadline.
        self.ch.confirm_delivery()
        self.replies = {}
        self.reply_to = REPLY_TO
        if callback_queue:
            # The tutorial's way works too: a private queue for replies.
            self.reply_to = self.ch.queue_declare("", exclusive=True).method.queue
        # Consume the replies (no-ack) BEFORE publishing; direct reply-to
        # needs this consumer on the channel that publishes.
        self.ch.basic_consume(
            queue=self.reply_to, on_message_callback=self._on_reply, auto_ack=True
        )

    def _on_reply(self, _ch, _method, props, body):
        # every(type) and all() may bring several replies per call.
        self.replies.setdefault(props.correlation_id, []).append((props, body))

    def call(self, routing_key, method, body, exchange="",
             content_type="application/json", timeout_ms=5000,
             headers=None, timeout_header=False, expiration=True,
             app_id="python/py-0"):
        correlation_id = str(uuid.uuid4())
        message_id = str(uuid.uuid4())
        headers = dict(headers or {})
        if timeout_header:
            headers["x-timeout-ms"] = timeout_ms
        props = pika.BasicProperties(
            message_id=message_id,
            correlation_id=correlation_id,
            reply_to=self.reply_to,
            type=method,
            content_type=content_type,
            timestamp=int(time.time()),
            expiration=str(timeout_ms) if expiration else None,
            delivery_mode=1,  # transient: a call is worthless after its deadline
            app_id=app_id,  # the sender, "<type>/<id>"
            headers=headers or None,
        )
        self.ch.basic_publish(exchange, routing_key, body, props, mandatory=True)
        deadline = time.monotonic() + timeout_ms / 1000
        while correlation_id not in self.replies:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no reply to {method} within {timeout_ms} ms")
            self.conn.process_data_events(time_limit=left)
        props, body = self.replies.pop(correlation_id)[0]
        return props, body, message_id


def status_of(props):
    """The reply's status: the x-status header, absent meaning ok."""
    return (props.headers or {}).get("x-status", "ok")


def expect_eq(what, got, want):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


def main():
    url, service, instance, exchange = sys.argv[1:5]
    caller = Caller(url)

    # any(type): the type's work queue, through the default exchange.
    props, body, _ = caller.call(service, "Calc.add", json.dumps({"a": 2, "b": 40}))
    expect_eq("status", status_of(props), "ok")
    expect_eq("content type", props.content_type, "application/json")
    expect_eq("sender", props.app_id, f"{service}/{instance}")
    expect_eq("no header table on an ok reply", props.headers, None)
    print("add:", json.loads(body))

    # instance(id): the topic exchange, routing key message.<id>; no
    # content type (taken as JSON), deadline only in `expiration`.
    props, body, _ = caller.call(
        f"message.{instance}", "Calc.add", json.dumps({"a": 1, "b": 1}),
        exchange=exchange, content_type=None, timeout_header=False,
    )
    expect_eq("status", status_of(props), "ok")
    expect_eq("content type", props.content_type, "application/json")
    print("instance add:", json.loads(body))

    # every(type) and all(): the topic exchange, message.<type> and
    # message.all; one reply per instance (one instance here).
    for key in (f"message.{service}", "message.all"):
        props, body, _ = caller.call(key, "Calc.add", json.dumps({"a": 1, "b": 2}),
                                     exchange=exchange)
        expect_eq(key, json.loads(body), 3)
    print("every, all: 3")

    # Replies to a tutorial-style callback queue instead of direct reply-to.
    tutorial = Caller(url, callback_queue=True)
    props, body, _ = tutorial.call(service, "Calc.add", json.dumps({"a": 3, "b": 4}))
    expect_eq("status", status_of(props), "ok")
    print("callback queue add:", json.loads(body))
    tutorial.conn.close()

    # What the handler saw: headers as strings, the sender, the deadline
    # (here only in the x-timeout-ms header that older peers send).
    props, body, message_id = caller.call(
        service, "Calc.context", json.dumps({}), timeout_ms=4000, expiration=False,
        timeout_header=True, app_id="python/py-1",
        headers={"tenant": "acme", "n": 5, "traceparent":
                 "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    )
    expect_eq("status", status_of(props), "ok")
    seen = json.loads(body)
    expect_eq("message id", seen.pop("message_id"), message_id)
    deadline_ms = seen.pop("deadline_ms")
    if not 0 < deadline_ms <= 4000:
        raise AssertionError(f"deadline {deadline_ms} ms not in (0, 4000]")
    print("context:", json.dumps(seen, sort_keys=True))

    # Arguments that do not decode: bad_request, status object body.
    props, body, _ = caller.call(service, "Calc.add", json.dumps({"a": "x"}))
    expect_eq("status", status_of(props), "bad_request")
    expect_eq("body code", json.loads(body)["code"], "bad_request")
    print("bad args:", status_of(props))

    # A method the service does not have.
    props, body, _ = caller.call(service, "Calc.nope", json.dumps({}))
    expect_eq("content type", props.content_type, "application/json")
    status = json.loads(body)
    expect_eq("status", status_of(props), "unknown_method")
    expect_eq("body code", status["code"], "unknown_method")
    if not isinstance(status.get("message"), str):
        raise AssertionError(f"status without a message: {status}")
    print("unknown:", status["code"], "details" in status)

    # Nobody there: the broker returns the mandatory message at once.
    try:
        caller.call(f"{service}-nobody", "Calc.add", json.dumps({"a": 0, "b": 0}))
        raise AssertionError("a call to a queue that does not exist was routed")
    except pika.exceptions.UnroutableError:
        print("no route: unroutable")

    caller.conn.close()


if __name__ == "__main__":
    main()
