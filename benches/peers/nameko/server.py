"""Nameko's side of the bench: an `echo` service run in-process by
`ServiceRunner`, as `nameko run` does.

Nameko's defaults, all kept: the service consumes the durable queue
`rpc-echo` bound to the `nameko-rpc` topic exchange; at most 10 workers
(`max_workers`), which is also the consumer's prefetch; JSON bodies; replies
published persistent (delivery mode 2) with publisher confirms, each publish
waiting for its confirm.
"""

import warnings

# eventlet (which Nameko 2.x is built on) says at import that it is deprecated.
warnings.filterwarnings("ignore", r"\s*Eventlet is deprecated")

import eventlet  # noqa: E402

eventlet.monkey_patch()  # as `nameko run` does, before anything else

import os  # noqa: E402

from kombu import Connection  # noqa: E402
from nameko.rpc import rpc  # noqa: E402
from nameko.runners import ServiceRunner  # noqa: E402

import harness  # noqa: E402


class Echo:
    name = "echo"

    @rpc
    def echo(self, body):
        return body


runner = ServiceRunner({"AMQP_URI": harness.URL})
runner.add_service(Echo)
with eventlet.Timeout(30):  # fail rather than hang if the broker is unreachable
    runner.start()  # returns once the service consumes its queue
harness.emit("ready")

# The driver closes our stdin to stop us. Wait for it in the hub: a plain
# read of the (blocking) pipe would stop every green thread.
while True:
    eventlet.hubs.trampoline(0, read=True)
    if not os.read(0, 4096):
        break
runner.stop()

# Leave the broker as we found it: the durable service queue would outlive
# the run (Nameko never deletes it).
with Connection(harness.URL) as conn:
    conn.default_channel.queue_delete("rpc-echo")
