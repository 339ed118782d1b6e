// node's side of the bench: an echo RPC server with rabbitmq-client's
// `createConsumer` and the `reply` it hands to the handler.
//
// rabbitmq-client's defaults, kept: no limit on handlers running at once
// (`concurrency`), replies published transient without confirms. Set here:
// `noDelay` (TCP_NODELAY, off by default: see client.js); prefetch 64, as
// the lapin baseline's and warren's; the queue declared as the baseline
// declares it (exclusive and auto-delete; durable in the persistent mode),
// so a run leaves nothing on the broker.
'use strict'

const { Connection } = require('rabbitmq-client')
const { settings, emit } = require('./harness')

const rabbit = new Connection({ url: settings.url, noDelay: true })
const queueOptions = settings.persistent
  ? { durable: true, autoDelete: true }
  : { exclusive: true, autoDelete: true }

const server = rabbit.createConsumer(
  { queue: settings.queue, queueOptions, qos: { prefetchCount: 64 } },
  async (msg, reply) => {
    await reply(msg.body)
  },
)
rabbit.on('error', err => console.error('node server connection:', err))
server.on('error', err => console.error('node server:', err))
// Fail rather than hang if the broker is unreachable (rabbitmq-client retries forever).
const notReady = setTimeout(() => {
  console.error('node server: not consuming after 30 s')
  process.exit(1)
}, 30_000)
server.once('ready', () => {
  clearTimeout(notReady)
  emit('ready')
})

// The driver closes our stdin to stop us.
process.stdin.on('data', () => {})
process.stdin.on('end', async () => {
  await server.close()
  await rabbit.close()
})
