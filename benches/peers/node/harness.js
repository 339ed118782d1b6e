// The bench's side of a node peer process: what the driver
// (benches/rpc/driver.rs) expects of every server and client process.
//
// One JSON event per line on stdout (`proto.rs`); logs and errors on stderr.
// The driver passes the run in the environment: WARREN_AMQP_URL, the mode's
// id (WARREN_BENCH_MODE) and what it means for a peer (WARREN_BENCH_IN_FLIGHT,
// WARREN_BENCH_BODY, WARREN_BENCH_PERSISTENT), and the warm-up and measured
// window in seconds (WARREN_BENCH_WARMUP_S, WARREN_BENCH_MEASURE_S).
'use strict'

const fs = require('node:fs')

const env = process.env
const settings = {
  url: env.WARREN_AMQP_URL || 'amqp://guest:guest@127.0.0.1:5672/%2f',
  mode: env.WARREN_BENCH_MODE,
  inFlight: Number(env.WARREN_BENCH_IN_FLIGHT),
  body: Number(env.WARREN_BENCH_BODY),
  persistent: env.WARREN_BENCH_PERSISTENT === '1',
  warmupMs: 1000 * Number(env.WARREN_BENCH_WARMUP_S),
  measureMs: 1000 * Number(env.WARREN_BENCH_MEASURE_S),
}

// The request queue, as the lapin baseline's (`Mode::queue`): a durable one
// of its own for the persistent mode.
settings.queue = settings.persistent ? 'bench-rpc-node-persistent' : 'bench-rpc-node'

// Prints one event line (the driver reads it at once: stdout to a pipe is
// written synchronously on Linux).
function emit(event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + '\n')
}

// This process's peak resident set (VmHWM), in KiB.
function hwmKib() {
  const line = fs.readFileSync('/proc/self/status', 'utf8').split('\n').find(l => l.startsWith('VmHWM:'))
  return line ? parseInt(line.split(/\s+/)[1], 10) : 0
}

// Nearest-rank percentile, as `proto::percentile`.
function percentile(sorted, q) {
  if (sorted.length === 0) return 0
  const rank = Math.ceil(q * sorted.length)
  return sorted[Math.min(Math.max(rank, 1), sorted.length) - 1]
}

// The client's last line: the figures of the measured window.
function result(latenciesUs, seconds, errors, firstError) {
  latenciesUs.sort((a, b) => a - b)
  emit('result', {
    calls: latenciesUs.length,
    seconds,
    errors,
    first_error: firstError,
    p50_us: percentile(latenciesUs, 0.5),
    p99_us: percentile(latenciesUs, 0.99),
    p999_us: percentile(latenciesUs, 0.999),
    max_us: latenciesUs.length ? latenciesUs[latenciesUs.length - 1] : 0,
    hwm_kib: hwmKib(),
    memory: null,
  })
}

module.exports = { settings, emit, result }
