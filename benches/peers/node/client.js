// node's side of the bench: calls through rabbitmq-client's `RPCClient`
// (direct reply-to), N async loops each making one call after the other.
//
// rabbitmq-client's defaults, kept: requests transient, no publisher
// confirms, a 30 s timeout sent as each request's `expiration`. In the
// persistent mode: requests persistent (`durable`) on a confirm channel
// (`confirm: true`: each send awaits its confirm, then its reply).
//
// Set here, on both sides: `noDelay` (TCP_NODELAY), which the library
// documents "for reduced latency" and leaves off. With Nagle's algorithm on,
// a request waits for the ACK of the previous segment, which the broker
// delays up to 40 ms: one call in flight then measured ~45 calls/s, 16 in
// flight ~1,500/s. lapin and Nameko's py-amqp set TCP_NODELAY themselves.
'use strict'

const { Connection } = require('rabbitmq-client')
const { settings, emit, result } = require('./harness')

const rabbit = new Connection({ url: settings.url, noDelay: true })
rabbit.on('error', err => console.error('node client connection:', err))
const rpc = rabbit.createRPCClient({ confirm: settings.persistent })
const body = Buffer.alloc(settings.body, 'x')
const envelope = { routingKey: settings.queue, durable: settings.persistent }

const latencies = []
let phase = 'warmup'
let errors = 0
let firstError = null

async function caller() {
  while (phase !== 'stop') {
    const sent = process.hrtime.bigint()
    try {
      const reply = await rpc.send(envelope, body)
      if (!body.equals(reply.body)) throw new Error('the reply is not the request body')
    } catch (err) {
      errors += 1
      firstError = firstError || String(err)
      return
    }
    if (phase === 'measure') latencies.push(Number((process.hrtime.bigint() - sent) / 1000n))
  }
}

async function main() {
  const callers = Array.from({ length: settings.inFlight }, caller)
  await new Promise(resolve => setTimeout(resolve, settings.warmupMs))
  const start = process.hrtime.bigint()
  phase = 'measure'
  emit('start')
  await new Promise(resolve => setTimeout(resolve, settings.measureMs))
  phase = 'stop'
  const seconds = Number(process.hrtime.bigint() - start) / 1e9
  emit('end')
  await Promise.all(callers)
  await rpc.close()
  await rabbit.close()
  result(latencies, seconds, errors, firstError)
}

main().catch(err => {
  console.error('node client:', err)
  process.exit(1)
})
