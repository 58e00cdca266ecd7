/**
 * `npm run bench`: the real agent (its own process) against the in-process
 * emulator and a recipient, all on 127.0.0.1, side by side with the limit of
 * the same work done bare. Prints a Markdown table of medians.
 *
 *   (a) dispatch: 10,000 open triggered events → recipient, vs a bare node:http loop
 *   (b) relay: 5,000 .finished events (1,000 contexts × 5, in order) posted at concurrency 32 → control plane, vs posting directly;
 *       and 1,000 events paced at 200 events/s (open loop), the load of a busy Keptn-service, not a saturated one,
 *       vs a bare relay process (bench/bare-relay.ts) and vs posting directly
 *   (c) footprint: idle-polling 5 topics × 200 open events for 10 s
 *
 * Options: --runs N (default 3); --only dispatch|relay|idle (one part, e.g.
 * while profiling with BENCH_AGENT_NODE_ARGS='--cpu-prof --cpu-prof-dir=DIR').
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { Agent, request } from 'node:http';
import { createServer } from 'node:net';
import { createInterface } from 'node:readline';
import { cpus, totalmem } from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import { startEmulator, type Emulator } from '../lib/emulator/server.ts';
import { PAGE_SIZE } from '../lib/poller.ts';
import { startAgentProcess } from './agent-process.ts';
import { startCountingRecipient } from './counting-recipient.ts';
import { processStats } from './process-stats.ts';

const DISPATCH_EVENTS = 10_000;
const RELAY_EVENTS = 5_000;
const RELAY_CONCURRENCY = 32;
const RELAY_EVENTS_PER_CONTEXT = 5;
const PACED_EVENTS = 1_000;
const PACED_RATE = 200;
/** Paced events sent first and not measured: a long-running agent has its code compiled and its connections open. */
const PACED_WARMUP = 200;
const IDLE_TOPICS = 5;
const IDLE_EVENTS_PER_TOPIC = 200;
const IDLE_SECONDS = 10;
const RSS_SAMPLE_MS = 50;
const DISPATCH_CONCURRENCY = 16;
const TYPE = 'sh.keptn.event.bench.triggered';

function option(name: string): string | undefined {
  const at = process.argv.indexOf(name);
  return at < 0 ? undefined : process.argv[at + 1];
}
const runs = Number(option('--runs') ?? 3) || 3;
const only = option('--only');
if (only !== undefined && !['dispatch', 'relay', 'idle'].includes(only)) throw new Error(`--only ${only}: expected dispatch, relay or idle`);
const part = (name: string): boolean => only === undefined || only === name;

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function openEvents(emulator: Emulator, type: string, count: number): void {
  for (let i = 0; i < count; i++) {
    emulator.trigger({ type, project: 'bench', stage: 'dev', service: `svc-${i % 10}`, data: { index: i } });
  }
}

/** The time of the emulator's first poll request from now on. */
function firstPoll(emulator: Emulator): Promise<number> {
  return new Promise((resolve) => {
    const onRequest = (answered: { key: string | undefined }): void => {
      if (answered.key !== 'poll') return;
      emulator.off('request', onRequest);
      resolve(performance.now());
    };
    emulator.on('request', onRequest);
  });
}

/** Waits for `n` more poll requests. */
async function polls(emulator: Emulator, n: number): Promise<void> {
  for (let seen = 0; seen < n;) {
    const [answered] = await once(emulator, 'request') as [{ key: string | undefined }];
    if (answered.key === 'poll') seen += 1;
  }
}

interface DispatchRun { eventsPerSecond: number; duplicates: number; peakRssMiB?: number; cpuSeconds?: number }

async function dispatchRun(runner: 'agent' | 'bare', nodeArgs: readonly string[] = []): Promise<DispatchRun> {
  const emulator = await startEmulator({ port: 0 });
  const recipient = await startCountingRecipient();
  openEvents(emulator, TYPE, DISPATCH_EVENTS);
  const start = firstPoll(emulator);
  const recipientUrl = new URL(recipient.url);
  try {
    if (runner === 'bare') {
      const child = spawn(process.execPath, ['--import', 'tsx', new URL('./bare-dispatch.ts', import.meta.url).pathname,
        `${emulator.url}/controlPlane/v1/event/triggered/${TYPE}`, recipient.url, String(PAGE_SIZE), String(DISPATCH_CONCURRENCY)], { stdio: 'inherit' });
      const done = await recipient.received(DISPATCH_EVENTS);
      await once(child, 'exit');
      return { eventsPerSecond: DISPATCH_EVENTS / ((done - await start) / 1_000), duplicates: recipient.duplicates };
    }
    const agent = await startAgentProcess({
      KEPTN_API_ENDPOINT: emulator.url, PUBSUB_TOPIC: TYPE, HTTP_POLLING_INTERVAL: '1',
      PUBSUB_RECIPIENT: `http://${recipientUrl.hostname}`, PUBSUB_RECIPIENT_PORT: recipientUrl.port,
      MAX_CONCURRENT_DISPATCHES: String(DISPATCH_CONCURRENCY),
    }, { relayPort: await freePort(), nodeArgs });
    const done = await recipient.received(DISPATCH_EVENTS);
    const elapsed = (done - await start) / 1_000;
    // Two more complete polls list all 10,000 again: none may be dispatched twice.
    await polls(emulator, 2 * Math.ceil(DISPATCH_EVENTS / PAGE_SIZE));
    const stats = processStats(agent.pid);
    await agent.stop();
    return { eventsPerSecond: DISPATCH_EVENTS / elapsed, duplicates: recipient.duplicates, peakRssMiB: stats.peakRssMiB, cpuSeconds: stats.cpuSeconds };
  } finally {
    await recipient.close();
    await emulator.close();
  }
}

interface RelayRun { eventsPerSecond: number; p50Ms: number; p99Ms: number; lost: number; reordered: number }

/** One `.finished` event of the relay runs, `index` within its context. */
function finishedEvent(id: string, context: number | string, index: number): string {
  return JSON.stringify({
    specversion: '1.0', id, source: 'bench', type: 'sh.keptn.event.bench.finished', time: new Date().toISOString(),
    shkeptncontext: `ctx-${context}`, triggeredid: `triggered-${context}`,
    data: { project: 'bench', stage: 'dev', service: 'svc', status: 'succeeded', result: 'pass', index },
  });
}

/**
 * Posts `.finished` events; latency = post start → the control plane has it.
 * The events come in contexts of RELAY_EVENTS_PER_CONTEXT, posted in order, so
 * that order within a context is checked at the control plane too.
 *
 * `closed`: RELAY_EVENTS at RELAY_CONCURRENCY, each poster sending its next
 * event when the last is answered (saturation). `paced`: PACED_EVENTS at
 * PACED_RATE events/s, each sent on schedule whatever the answers (open loop),
 * after PACED_WARMUP unmeasured ones; consecutive events of a context are a
 * second apart.
 */
async function relayRun(target: 'agent' | 'bare' | 'direct', load: 'closed' | 'paced' = 'closed'): Promise<RelayRun> {
  const total = load === 'closed' ? RELAY_EVENTS : PACED_EVENTS;
  const emulator = await startEmulator({ port: 0 });
  const sentAt = new Map<string, number>();
  const latencies: number[] = [];
  const lastIndexOf = new Map<string, number>();
  let reordered = 0;
  let last = 0;
  emulator.on('event', (received) => {
    const t0 = sentAt.get(String(received.event.id));
    if (t0 === undefined) return;
    last = performance.now();
    latencies.push(last - t0);
    const context = String(received.event.shkeptncontext);
    const index = Number((received.event.data as { index?: number } | undefined)?.index);
    if (index < (lastIndexOf.get(context) ?? -1)) reordered += 1;
    lastIndexOf.set(context, index);
  });
  const relayPort = await freePort();
  const agent = target === 'agent'
    ? await startAgentProcess({ KEPTN_API_ENDPOINT: emulator.url, PUBSUB_TOPIC: TYPE, HTTP_POLLING_INTERVAL: '10' }, { relayPort })
    : undefined;
  const bare = target === 'bare' ? await startBareRelay(relayPort, `${emulator.url}/v1/event`) : undefined;
  const url = new URL(agent ? `${agent.relayUrl}/event` : bare ? `http://127.0.0.1:${relayPort}/event` : `${emulator.url}/v1/event`);
  const httpAgent = new Agent({ keepAlive: true, maxSockets: RELAY_CONCURRENCY });
  const post = (body: string): Promise<number> => new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', agent: httpAgent, headers: { 'content-type': 'application/cloudevents+json' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
  try {
    const send = async (context: number | string, index: number): Promise<void> => {
      const id = `relay-${context}-${index}`;
      const body = finishedEvent(id, context, index);
      if (typeof context === 'number') sentAt.set(id, performance.now());
      const status = await post(body);
      if (status >= 300) throw new Error(`${target}: answered ${status}`);
    };
    const contexts = total / RELAY_EVENTS_PER_CONTEXT;
    if (load === 'paced') {
      const start = performance.now();
      const warming: Array<Promise<void>> = [];
      for (let n = 0; n < PACED_WARMUP; n++) {
        const slot = start + (n * 1_000) / PACED_RATE - performance.now();
        if (slot > 0) await delay(slot);
        warming.push(send(`warmup-${n}`, 0));
      }
      await Promise.all(warming);
    }
    const first = performance.now();
    if (load === 'closed') {
      let nextContext = 0;
      const poster = async (): Promise<void> => {
        while (nextContext < contexts) {
          const context = nextContext++;
          for (let index = 0; index < RELAY_EVENTS_PER_CONTEXT; index++) await send(context, index);
        }
      };
      await Promise.all(Array.from({ length: RELAY_CONCURRENCY }, poster));
    } else {
      const sending: Array<Promise<void>> = [];
      for (let n = 0; n < total; n++) {
        // The load generator's clock, not a synchronisation: event n leaves at its slot.
        const slot = first + (n * 1_000) / PACED_RATE - performance.now();
        if (slot > 0) await delay(slot);
        sending.push(send(n % contexts, Math.floor(n / contexts)));
      }
      await Promise.all(sending);
    }
    await emulator.waitFor(() => latencies.length >= total, { timeout: 60_000, what: 'every relayed event' });
    latencies.sort((a, b) => a - b);
    const at = (q: number): number => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
    return { eventsPerSecond: total / ((last - first) / 1_000), p50Ms: at(0.5), p99Ms: at(0.99), lost: total - latencies.length, reordered };
  } finally {
    httpAgent.destroy();
    await agent?.stop();
    if (bare) {
      bare.kill('SIGTERM');
      await once(bare, 'exit');
    }
    await emulator.close();
  }
}

/** bench/bare-relay.ts in its own process, once it listens. */
async function startBareRelay(port: number, eventUrl: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', new URL('./bare-relay.ts', import.meta.url).pathname, String(port), eventUrl],
    { stdio: ['ignore', 'pipe', 'inherit'] });
  const [line] = await once(createInterface({ input: child.stdout! }), 'line') as [string];
  if (line !== 'listening') throw new Error(`bare relay: ${line}`);
  return child;
}

interface IdleRun { cpuPercent: number; peakRssMiB: number }

async function idleRun(nodeArgs: readonly string[] = []): Promise<IdleRun> {
  const emulator = await startEmulator({ port: 0 });
  const recipient = await startCountingRecipient();
  const topics = Array.from({ length: IDLE_TOPICS }, (_, i) => `sh.keptn.event.idle${i}.triggered`);
  for (const topic of topics) openEvents(emulator, topic, IDLE_EVENTS_PER_TOPIC);
  const recipientUrl = new URL(recipient.url);
  const agent = await startAgentProcess({
    KEPTN_API_ENDPOINT: emulator.url, PUBSUB_TOPIC: topics.join(','),
    PUBSUB_RECIPIENT: `http://${recipientUrl.hostname}`, PUBSUB_RECIPIENT_PORT: recipientUrl.port,
  }, { relayPort: await freePort(), nodeArgs });
  try {
    await recipient.received(IDLE_TOPICS * IDLE_EVENTS_PER_TOPIC);
    // Measured from the second cycle after the dispatches on: the start-up, the first
    // dispatches and the garbage collections that follow a burst are not idling. One page per topic.
    await polls(emulator, 2 * IDLE_TOPICS);
    const before = processStats(agent.pid);
    // The peak of this window, sampled: the process's own peak (VmHWM) dates from the first dispatches.
    let peakRssMiB = before.rssMiB;
    const sampler = setInterval(() => { peakRssMiB = Math.max(peakRssMiB, processStats(agent.pid).rssMiB); }, RSS_SAMPLE_MS);
    await delay(IDLE_SECONDS * 1_000);
    clearInterval(sampler);
    const after = processStats(agent.pid);
    return { cpuPercent: ((after.cpuSeconds - before.cpuSeconds) / IDLE_SECONDS) * 100, peakRssMiB: Math.max(peakRssMiB, after.rssMiB) };
  } finally {
    await agent.stop();
    await recipient.close();
    await emulator.close();
  }
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

async function repeat<T>(label: string, run: () => Promise<T>): Promise<T[]> {
  const results: T[] = [];
  for (let i = 1; i <= runs; i++) {
    process.stderr.write(`${label}: run ${i}/${runs}\n`);
    results.push(await run());
  }
  return results;
}

const fmt = (n: number, digits = 0): string => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

const agentDispatch = part('dispatch') ? await repeat('dispatch (agent)', () => dispatchRun('agent')) : [];
const bareDispatch = part('dispatch') ? await repeat('dispatch (bare loop)', () => dispatchRun('bare')) : [];
// The same, with V8 trading some CPU for a smaller heap: what an operator can choose (README, Performance).
const smallDispatch = part('dispatch') ? await repeat('dispatch (agent, node --optimize-for-size)', () => dispatchRun('agent', ['--optimize-for-size'])) : [];
const agentRelay = part('relay') ? await repeat('relay (agent)', () => relayRun('agent')) : [];
const directRelay = part('relay') ? await repeat('relay (direct)', () => relayRun('direct')) : [];
const agentPaced = part('relay') ? await repeat(`relay (agent, ${PACED_RATE} events/s)`, () => relayRun('agent', 'paced')) : [];
const barePaced = part('relay') ? await repeat(`relay (bare relay process, ${PACED_RATE} events/s)`, () => relayRun('bare', 'paced')) : [];
const directPaced = part('relay') ? await repeat(`relay (direct, ${PACED_RATE} events/s)`, () => relayRun('direct', 'paced')) : [];
const idle = part('idle') ? await repeat('idle', () => idleRun()) : [];
const smallIdle = part('idle') ? await repeat('idle (node --optimize-for-size)', () => idleRun(['--optimize-for-size'])) : [];

const m = <T>(items: T[], pick: (item: T) => number): number => median(items.map(pick));
const rows: string[][] = [];
if (part('dispatch')) {
  const dispatchAgent = m(agentDispatch, (r) => r.eventsPerSecond);
  const dispatchBare = m(bareDispatch, (r) => r.eventsPerSecond);
  rows.push(
    ['(a) dispatch 10,000 events', `${fmt(dispatchAgent)} events/s`, `${fmt(dispatchBare)} events/s (bare loop)`, `${fmt(dispatchAgent / dispatchBare, 2)} (target ≥ 0.9)`],
    ['(a) duplicates dispatched', fmt(Math.max(...agentDispatch.map((r) => r.duplicates))), '', 'must be 0'],
  );
}
if (part('relay')) {
  const relayAgent = m(agentRelay, (r) => r.eventsPerSecond);
  const relayDirect = m(directRelay, (r) => r.eventsPerSecond);
  rows.push(
    ['(b) relay 5,000 events, concurrency 32', `${fmt(relayAgent)} events/s`, `${fmt(relayDirect)} events/s (direct)`, fmt(relayAgent / relayDirect, 2)],
    ['(b) p50 post → control plane', `${fmt(m(agentRelay, (r) => r.p50Ms), 2)} ms`, `${fmt(m(directRelay, (r) => r.p50Ms), 2)} ms`,
      `+${fmt(m(agentRelay, (r) => r.p50Ms) - m(directRelay, (r) => r.p50Ms), 2)} ms`],
    ['(b) p99 post → control plane', `${fmt(m(agentRelay, (r) => r.p99Ms), 2)} ms`, `${fmt(m(directRelay, (r) => r.p99Ms), 2)} ms`,
      `+${fmt(m(agentRelay, (r) => r.p99Ms) - m(directRelay, (r) => r.p99Ms), 2)} ms (target < 2 ms)`],
    ['(b) events lost / out of order in their context', `${fmt(Math.max(...agentRelay.map((r) => r.lost)))} / ${fmt(Math.max(...agentRelay.map((r) => r.reordered)))}`, '', 'must be 0 / 0'],
    ...(['p50Ms', 'p99Ms'] as const).map((q) => {
      const [agentMs, bareMs, directMs] = [agentPaced, barePaced, directPaced].map((runs) => m(runs, (r) => r[q]));
      return [`(b) paced, ${fmt(PACED_EVENTS)} events at ${PACED_RATE}/s: ${q.slice(0, 3)} post → control plane`, `${fmt(agentMs!, 2)} ms`,
        `${fmt(bareMs!, 2)} ms (bare relay process); ${fmt(directMs!, 2)} ms (direct)`,
        `+${fmt(agentMs! - bareMs!, 2)} ms vs bare; +${fmt(agentMs! - directMs!, 2)} ms vs direct${q === 'p99Ms' ? ' (target < 2 ms)' : ''}`];
    }),
    ['(b) paced: events lost / out of order', `${fmt(Math.max(...agentPaced.map((r) => r.lost)))} / ${fmt(Math.max(...agentPaced.map((r) => r.reordered)))}`, '', 'must be 0 / 0'],
  );
}
if (part('idle')) {
  rows.push(
    ['(c) idle CPU, 5 topics × 200 events, 10 s', `${fmt(m(idle, (r) => r.cpuPercent), 2)} % of a core`, '', 'target < 0.5 %'],
    ['(c) peak RSS idle', `${fmt(m(idle, (r) => r.peakRssMiB), 1)} MiB`, '', 'target < 60 MiB'],
    ['(c) with `node --optimize-for-size`: idle CPU, peak RSS idle', `${fmt(m(smallIdle, (r) => r.cpuPercent), 2)} %, ${fmt(m(smallIdle, (r) => r.peakRssMiB), 1)} MiB`, '', ''],
  );
}
if (part('dispatch')) {
  rows.push(
    ['(c) peak RSS during (a)', `${fmt(m(agentDispatch, (r) => r.peakRssMiB ?? NaN), 1)} MiB`, '', 'target < 80 MiB'],
    ['(c) CPU during (a)', `${fmt(m(agentDispatch, (r) => r.cpuSeconds ?? NaN), 2)} s`, '', ''],
    ['(c) with `node --optimize-for-size`: peak RSS, CPU during (a)', `${fmt(m(smallDispatch, (r) => r.peakRssMiB ?? NaN), 1)} MiB, ${fmt(m(smallDispatch, (r) => r.cpuSeconds ?? NaN), 2)} s`, '', ''],
  );
}

console.log(`Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'CPU'}, ${fmt(totalmem() / 2 ** 30, 0)} GiB, Node ${process.version}; median of ${runs} runs; ${new Date().toISOString().slice(0, 10)}\n`);
console.log('| measure | agent | limit | agent/limit |');
console.log('|---|---|---|---|');
for (const row of rows) console.log(`| ${row.join(' | ')} |`);
