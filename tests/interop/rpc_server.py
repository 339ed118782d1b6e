#!/usr/bin/env python3
"""A plain RPC server in the style of the RabbitMQ tutorial: it consumes one
queue, replies to `reply_to` with the `correlation_id` and a JSON body, and
sets no warren headers (no x-status, no content type) on success.

Usage: rpc_server.py AMQP_URL QUEUE

Prints `ready` once it consumes, then one JSON line per one-way message.
Methods: `Calc.add` ({"a", "b"} -> {"sum", and what it saw of the request}),
`Calc.fail` (an `application` error the way a warren server sends one).
"""
import json
import sys

import pika


def main():
    url, queue = sys.argv[1:3]
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    # auto_delete: the queue goes away with this process.
    ch.queue_declare(queue=queue, auto_delete=True)
    ch.basic_qos(prefetch_count=1)

    def on_request(ch, method, props, body):
        args = json.loads(body)
        headers = props.headers or {}
        if props.reply_to is None:
            # A one-way message (warren `send`): nobody waits for a reply.
            print(json.dumps({
                "send": props.type, "args": args,
                "delivery_mode": props.delivery_mode,
                "correlation_id": props.correlation_id,
                "expiration": props.expiration,
            }), flush=True)
            ch.basic_ack(delivery_tag=method.delivery_tag)
            return
        reply_props = pika.BasicProperties(correlation_id=props.correlation_id)
        if props.type == "Calc.fail":
            reply_props.content_type = "application/json"
            reply_props.headers = {"x-status": "application"}
            result = {"code": "application", "message": "no luck",
                      "details": {"reason": args.get("reason")}}
        else:
            result = {
                "sum": args["a"] + args["b"],
                "method": props.type,
                "content_type": props.content_type,
                "headers": headers,
                "expiration": props.expiration,
                "sender": props.app_id,
                "reply_to": props.reply_to.startswith("amq.rabbitmq.reply-to"),
            }
        ch.basic_publish(exchange="", routing_key=props.reply_to,
                         properties=reply_props, body=json.dumps(result))
        ch.basic_ack(delivery_tag=method.delivery_tag)

    ch.basic_consume(queue=queue, on_message_callback=on_request)
    print("ready", flush=True)
    ch.start_consuming()


if __name__ == "__main__":
    main()
