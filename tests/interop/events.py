"""A Python service on warren's events, written from docs/PROTOCOL.md alone.

    events.py URL EXCHANGE publish            publish one ticket.created, print its eventId
    events.py URL EXCHANGE consume SERVICE    consume one ticket.* event from SERVICE.q
"""
import datetime
import json
import sys
import time
import uuid

import pika

url, exchange, mode = sys.argv[1:4]
conn = pika.BlockingConnection(pika.URLParameters(url))
ch = conn.channel()
ch.exchange_declare(exchange, exchange_type="topic", durable=True)

if mode == "publish":
    ch.confirm_delivery()
    event_id = str(uuid.uuid4())
    now = datetime.datetime.now(datetime.timezone.utc)
    envelope = {
        "eventId": event_id,
        "version": 1,
        "eventType": "ticket.created",
        "timestamp": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "payload": {"id": 42, "title": "from python"},
    }
    props = pika.BasicProperties(
        content_type="application/json",
        delivery_mode=2,
        message_id=event_id,
        type="ticket.created",
        timestamp=int(time.time()),
    )
    ch.basic_publish(exchange, "ticket.created", json.dumps(envelope).encode(), props, mandatory=True)
    print(event_id, flush=True)
elif mode == "consume":
    queue = sys.argv[4] + ".q"
    ch.queue_declare(queue, durable=True)
    ch.queue_bind(queue, exchange, "ticket.*")
    print("ready", flush=True)
    for method, props, body in ch.consume(queue, inactivity_timeout=30):
        if method is None:
            sys.exit("no event within 30 s")
        assert props.content_type == "application/json", props.content_type
        envelope = json.loads(body)
        assert props.message_id == envelope["eventId"], (props.message_id, envelope)
        assert props.type == envelope["eventType"] == method.routing_key, (props.type, method)
        assert props.delivery_mode == 2 and props.timestamp > 0, props
        stamp = datetime.datetime.fromisoformat(envelope["timestamp"].replace("Z", "+00:00"))
        assert abs(stamp.timestamp() - props.timestamp) < 2, (stamp, props.timestamp)
        ch.basic_ack(method.delivery_tag)
        seen = {k: envelope[k] for k in ("eventType", "version", "payload")}
        print(json.dumps(seen, sort_keys=True), flush=True)
        break
conn.close()
