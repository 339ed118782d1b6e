#!/usr/bin/env python3
"""Serves a warren service type from Python with pika and JSON, following
docs/PROTOCOL.md alone: warren callers reach it with any(type),
instance(id), every(type) and all().

Usage: serve_warren.py AMQP_URL EXCHANGE SERVICE_TYPE INSTANCE_ID

Prints `ready` once it consumes, then one JSON line per one-way message.
Methods: `Calc.add` and `Calc.div`, arguments {"a", "b"}, result bare.
"""
import json
import sys
import time

import pika

QUEUE_ARGS = {"x-expires": 300000}  # must equal what warren nodes declare


def main():
    url, exchange, service, instance = sys.argv[1:5]
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()

    # Topology: the same declarations a warren node makes.
    ch.exchange_declare(exchange, "topic", durable=True)
    ch.queue_declare(service, durable=True, arguments=QUEUE_ARGS)
    own = f"{service}-{instance}"
    ch.queue_declare(own, durable=True, arguments=QUEUE_ARGS)
    for key in (f"message.{instance}", f"message.{service}", "message.all"):
        ch.queue_bind(own, exchange, routing_key=key)
    ch.basic_qos(prefetch_count=16)

    def timeout_ms(props):
        """The caller's deadline: x-timeout-ms (older peers), else expiration."""
        t = (props.headers or {}).get("x-timeout-ms")
        if t is None and props.expiration:
            t = int(props.expiration)
        return t

    def expired(props):
        """Whether the request is older than its timeout (redeliveries too)."""
        t = timeout_ms(props)
        if t is None or props.timestamp is None:
            return False
        age_ms = (time.time() - props.timestamp) * 1000
        return age_ms > t + 1000  # timestamps have whole-second resolution

    def run(method, args):
        """-> (status, body object): the method's result or a status object."""
        if method == "Calc.add":
            return "ok", args["a"] + args["b"]
        if method == "Calc.div":
            if args["b"] == 0:
                return "application", {"code": "application",
                                       "message": "divide by zero",
                                       "details": "DivideByZero"}
            return "ok", args["a"] // args["b"]
        return "unknown_method", {"code": "unknown_method",
                                  "message": f"no method {method!r}"}

    def on_request(ch, method, props, body):
        if expired(props):
            ch.basic_ack(method.delivery_tag)  # nobody waits any more
            return
        if props.content_type not in (None, "application/json"):
            status, result = "unsupported_content_type", {
                "code": "unsupported_content_type",
                "message": f"this service speaks JSON, not {props.content_type}"}
        else:
            try:
                status, result = run(props.type, json.loads(body))
            except (ValueError, KeyError, TypeError) as e:
                status, result = "bad_request", {"code": "bad_request",
                                                 "message": str(e)}
        if props.reply_to is None:
            # One-way message: nobody to answer; failures are dead-lettered.
            print(json.dumps({"send": props.type, "status": status}), flush=True)
            if status == "ok":
                ch.basic_ack(method.delivery_tag)
            else:
                ch.basic_reject(method.delivery_tag, requeue=False)
            return
        reply = pika.BasicProperties(
            correlation_id=props.correlation_id,
            content_type="application/json",
            app_id=f"{service}/{instance}",
            # No x-status means ok.
            headers=None if status == "ok" else {"x-status": status},
        )
        ch.basic_publish("", props.reply_to, json.dumps(result), reply)
        ch.basic_ack(method.delivery_tag)  # after the reply is out

    ch.basic_consume(service, on_request)
    ch.basic_consume(own, on_request, exclusive=True)
    print("ready", flush=True)
    ch.start_consuming()


if __name__ == "__main__":
    main()
