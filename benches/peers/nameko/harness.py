"""The bench's side of a Nameko peer process: what the driver
(benches/rpc/driver.rs) expects of every server and client process.

One JSON event per line on stdout (`proto.rs`); logs and errors on stderr.
The driver passes the run in the environment: WARREN_AMQP_URL, the mode's
id (WARREN_BENCH_MODE) and what it means for a peer (WARREN_BENCH_IN_FLIGHT,
WARREN_BENCH_BODY, WARREN_BENCH_PERSISTENT), and the warm-up and measured
window in seconds (WARREN_BENCH_WARMUP_S, WARREN_BENCH_MEASURE_S).
"""

import json
import math
import os
import sys

URL = os.environ.get("WARREN_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
MODE = os.environ["WARREN_BENCH_MODE"]
IN_FLIGHT = int(os.environ["WARREN_BENCH_IN_FLIGHT"])
BODY = int(os.environ["WARREN_BENCH_BODY"])
PERSISTENT = os.environ["WARREN_BENCH_PERSISTENT"] == "1"
WARMUP_S = float(os.environ["WARREN_BENCH_WARMUP_S"])
MEASURE_S = float(os.environ["WARREN_BENCH_MEASURE_S"])


def emit(event, **fields):
    """Prints one event line and flushes it (the driver reads it at once)."""
    sys.stdout.write(json.dumps(dict(event=event, **fields)) + "\n")
    sys.stdout.flush()


def hwm_kib():
    """This process's peak resident set (VmHWM), in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def percentile(sorted_us, q):
    """Nearest-rank percentile, as `proto::percentile`."""
    if not sorted_us:
        return 0
    rank = math.ceil(q * len(sorted_us))
    return sorted_us[min(max(rank, 1), len(sorted_us)) - 1]


def result(latencies_us, seconds, errors=0, first_error=None):
    """The client's last line: the figures of the measured window."""
    latencies_us.sort()
    emit(
        "result",
        calls=len(latencies_us),
        seconds=seconds,
        errors=errors,
        first_error=first_error,
        p50_us=percentile(latencies_us, 0.50),
        p99_us=percentile(latencies_us, 0.99),
        p999_us=percentile(latencies_us, 0.999),
        max_us=latencies_us[-1] if latencies_us else 0,
        hwm_kib=hwm_kib(),
        memory=None,
    )
