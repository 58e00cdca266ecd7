import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import { HTTP } from 'cloudevents';
import type { KeptnCloudEvent } from '../lib/cloudevents.ts';
import { Dispatcher, type DispatcherOptions, type DispatchOutcome } from '../lib/dispatcher.ts';
import { createMetrics, type Metrics } from '../lib/metrics.ts';
import { logSink, type LogSink } from './helpers/log-sink.ts';
import { Recipient } from './helpers/recipient.ts';
import { until } from './helpers/until.ts';

const TOPIC = 'sh.keptn.event.test.triggered';
const FIXTURE = JSON.parse(readFileSync(new URL('./fixtures/test-triggered.json', import.meta.url), 'utf8')) as KeptnCloudEvent;

function event(id: string, extra: Record<string, unknown> = {}): KeptnCloudEvent {
  return { ...FIXTURE, id, ...extra };
}

async function dispatched(metrics: Metrics, outcome: DispatchOutcome['kind']): Promise<number> {
  const { values } = await metrics.eventsDispatched.get();
  return values.find((value) => value.labels.outcome === outcome && value.labels.topic === TOPIC)?.value ?? 0;
}

describe('dispatcher', () => {
  let recipient: Recipient;
  let metrics: Metrics;
  let logs: LogSink;
  let delays: number[];
  const dispatchers: Dispatcher[] = [];

  function dispatcher(options: Partial<DispatcherOptions> = {}): Dispatcher {
    const created = new Dispatcher({
      recipientUrl: new URL(`http://127.0.0.1:${recipient.port}/events`),
      timeoutMs: 2_000,
      concurrency: 4,
      logger: logs.logger,
      metrics,
      random: () => 0.5,
      // Records the backoff instead of waiting it out.
      sleep: async (ms) => { delays.push(ms); },
      ...options,
    });
    dispatchers.push(created);
    return created;
  }

  beforeEach(async () => {
    recipient = await Recipient.start();
    metrics = createMetrics({ defaultMetrics: false });
    logs = logSink();
    delays = [];
  });
  afterEach(async () => {
    recipient.release();
    for (const created of dispatchers.splice(0)) await created.stop(AbortSignal.timeout(1_000));
    await recipient.close();
  });

  it('POSTs a structured CloudEvent: application/cloudevents+json, the polled JSON unchanged, no token', async () => {
    const original = event('4fe1eed1-49e2-49a9-91af-a42c8b0f7811', {
      time: '2021-05-13T07:46:09.546123456+02:00',
      triggeredid: '9c3d7e0e-0d5a-4a4c-a2bd-c0a0f6d9e7a1',
      shkeptnspecversion: '0.2.3',
      gitcommitid: 'eb5fc3d5253b1845d3d399c880c329374bbbb30e',
      datacontenttype: 'application/json',
      myextension: 'kept',
    });
    const outcome = await dispatcher().dispatch(TOPIC, original);
    expect(outcome).to.deep.equal({ kind: 'delivered', status: 200, attempts: 1 });
    const [request] = recipient.requests;
    expect(request?.method).to.equal('POST');
    expect(request?.path).to.equal('/events');
    expect(request?.headers['content-type']).to.equal('application/cloudevents+json');
    expect(request?.headers).to.not.have.property('x-token');
    expect(request?.body).to.equal(JSON.stringify(original));
    const body = request?.json();
    expect(body).to.deep.equal(original);
    // The CloudEvents SDK reads it as the same event, extensions included.
    const read = HTTP.toEvent({ headers: request!.headers, body: request!.body });
    expect(read).to.not.be.an('array');
    expect(read).to.include({ id: original.id, type: original.type, source: original.source, triggeredid: original.triggeredid, myextension: 'kept' });
    expect(body).to.include({
      time: '2021-05-13T07:46:09.546123456+02:00',
      shkeptncontext: '138f7bf1-f027-42c4-b705-9033b5f5871e',
      triggeredid: '9c3d7e0e-0d5a-4a4c-a2bd-c0a0f6d9e7a1',
      shkeptnspecversion: '0.2.3',
      gitcommitid: 'eb5fc3d5253b1845d3d399c880c329374bbbb30e',
      myextension: 'kept',
    });
    expect(body?.data).to.deep.equal(FIXTURE.data);
    expect(await dispatched(metrics, 'delivered')).to.equal(1);
  });

  it('retries a 5xx with exponential backoff and jitter, then delivers', async () => {
    recipient.fail(503, 2);
    const outcome = await dispatcher().dispatch(TOPIC, event('e1'));
    expect(outcome).to.deep.equal({ kind: 'delivered', status: 200, attempts: 3 });
    expect(recipient.requests).to.have.length(3);
    // base 200 ms, doubling, ×(0.5 + random) with random = 0.5
    expect(delays).to.deep.equal([200, 400]);
  });

  it('the jitter spreads each delay over ×0.5–1.5', async () => {
    recipient.fail(500, 2);
    await dispatcher({ random: () => 0 }).dispatch(TOPIC, event('low'));
    recipient.fail(500, 2);
    await dispatcher({ random: () => 0.999 }).dispatch(TOPIC, event('high'));
    expect(delays.slice(0, 2)).to.deep.equal([100, 200]);
    expect(delays[2]).to.be.closeTo(299.8, 0.1);
    expect(delays[3]).to.be.closeTo(599.6, 0.1);
  });

  it('a persistent 5xx fails after 4 attempts: the event is released for a later poll, logged once', async () => {
    recipient.fail(500, 8);
    const sender = dispatcher();
    const first = await sender.dispatch(TOPIC, event('e1'));
    const second = await sender.dispatch(TOPIC, event('e2'));
    expect(first).to.deep.equal({ kind: 'failed', reason: 'answered 500', attempts: 4 });
    expect(second.kind).to.equal('failed');
    expect(recipient.requests).to.have.length(8);
    expect(delays).to.deep.equal([200, 400, 800, 200, 400, 800]);
    expect(await dispatched(metrics, 'failed')).to.equal(2);
    const warnings = logs.entries().filter((entry) => entry.level === 'warn');
    expect(warnings.map((entry) => entry.message)).to.deep.equal(['the recipient cannot be reached or fails']);

    await sender.dispatch(TOPIC, event('e3'));
    expect(logs.entries().filter((entry) => entry.message === 'the recipient answers again')).to.have.length(1);
  });

  it('a 429 or 503 honours Retry-After as the least delay, capped at 5 s', async () => {
    recipient.fail(429, 1, { 'retry-after': '2' });
    recipient.fail(503, 1, { 'retry-after': '60' });
    recipient.fail(429, 1);
    expect(await dispatcher().dispatch(TOPIC, event('e1'))).to.deep.equal({ kind: 'delivered', status: 200, attempts: 4 });
    expect(delays).to.deep.equal([2_000, 5_000, 800]);
  });

  it('a 4xx is rejected: not retried, logged as an error, counted', async () => {
    recipient.fail(400, 1);
    const outcome = await dispatcher().dispatch(TOPIC, event('e1'));
    expect(outcome).to.deep.equal({ kind: 'rejected', status: 400, attempts: 1 });
    expect(recipient.requests).to.have.length(1);
    expect(delays).to.deep.equal([]);
    const error = logs.entries().find((entry) => entry.level === 'error');
    expect(error).to.include({ eventId: 'e1', keptnContext: FIXTURE.shkeptncontext, status: 400 });
    expect(await dispatched(metrics, 'rejected')).to.equal(1);
  });

  it('a timeout counts as delivered and is never re-sent (the recipient may be working on it)', async () => {
    recipient.hang();
    const outcome = await dispatcher({ timeoutMs: 100 }).dispatch(TOPIC, event('e1'));
    expect(outcome).to.deep.equal({ kind: 'timeout', reason: 'no answer within DISPATCH_TIMEOUT (100 ms)', attempts: 1 });
    expect(recipient.requests).to.have.length(1);
    expect(logs.entries().find((entry) => entry.level === 'warn')).to.include({ eventId: 'e1', message: 'dispatched without an answer: counted as delivered, not sent again' });
    expect(await dispatched(metrics, 'timeout')).to.equal(1);
  });

  it('a connection reset after the request went out is ambiguous too: not re-sent', async () => {
    recipient.reset(1);
    const outcome = await dispatcher().dispatch(TOPIC, event('e1'));
    expect(outcome.kind).to.equal('timeout');
    expect(recipient.requests).to.have.length(1);
  });

  it('a reset on a reused keep-alive connection before any answer is retried on a new one, and delivered once', async () => {
    // How a recipient closing an idle connection just as a request reuses it looks (Node's http docs,
    // `reusedSocket`). One slot, so the second dispatch waits for the first one's socket and reuses it.
    const sender = dispatcher({ concurrency: 1 });
    expect((await sender.dispatch(TOPIC, event('e1'))).kind).to.equal('delivered');
    recipient.drop(1);
    const outcome = await sender.dispatch(TOPIC, event('e2'));
    expect(outcome).to.deep.equal({ kind: 'delivered', status: 200, attempts: 2 });
    expect(recipient.ids()).to.deep.equal(['e1', 'e2']);
  });

  it('a refused connection (nothing sent) is retried, then released', async () => {
    await recipient.down();
    const outcome = await dispatcher().dispatch(TOPIC, event('e1'));
    expect(outcome).to.deep.equal({ kind: 'failed', reason: 'not sent: ECONNREFUSED', attempts: 4 });
    expect(delays).to.deep.equal([200, 400, 800]);
  });

  it('a recipient that comes back during the retries gets the event once', async () => {
    await recipient.down();
    const sender = dispatcher({ sleep: async (ms) => { delays.push(ms); if (delays.length === 2) await recipient.up(); } });
    const outcome = await sender.dispatch(TOPIC, event('e1'));
    expect(outcome).to.deep.equal({ kind: 'delivered', status: 200, attempts: 3 });
    expect(recipient.ids()).to.deep.equal(['e1']);
  });

  it('caps the dispatches in flight at the concurrency, with a recipient that hangs', async () => {
    recipient.hang();
    const sender = dispatcher({ concurrency: 3 });
    const outcomes = Array.from({ length: 10 }, (_, n) => sender.dispatch(TOPIC, event(`e${n}`)));
    await recipient.received(3);
    await until(() => sender.queued === 7, { what: '7 queued' });
    expect(sender.inFlight).to.equal(3);
    expect((await metrics.dispatchesInFlight.get()).values[0]?.value).to.equal(3);
    expect(recipient.requests).to.have.length(3);
    recipient.release();
    const results = await Promise.all(outcomes);
    expect(results.every((result) => result.kind === 'delivered')).to.equal(true);
    expect(recipient.maxConcurrent).to.equal(3);
    expect(recipient.requests).to.have.length(10);
    expect((await metrics.dispatchesInFlight.get()).values[0]?.value).to.equal(0);
  });

  it('beforeSend runs first; when it throws, nothing is sent (cancelled)', async () => {
    const order: string[] = [];
    const sender = dispatcher();
    const ok = await sender.dispatch(TOPIC, event('e1'), { beforeSend: async () => { order.push(`before:${recipient.requests.length}`); } });
    const refused = await sender.dispatch(TOPIC, event('e2'), { beforeSend: async () => { throw new Error('cannot record it'); } });
    expect(order).to.deep.equal(['before:0']);
    expect(ok.kind).to.equal('delivered');
    expect(refused).to.deep.equal({ kind: 'cancelled', reason: 'cannot record it' });
    expect(recipient.ids()).to.deep.equal(['e1']);
  });

  it('stop: queued dispatches are cancelled, in-flight ones finish', async () => {
    recipient.hang();
    const sender = dispatcher({ concurrency: 1 });
    const first = sender.dispatch(TOPIC, event('e1'));
    const second = sender.dispatch(TOPIC, event('e2'));
    await recipient.received(1);
    const stopped = sender.stop(AbortSignal.timeout(5_000));
    recipient.release();
    expect((await first).kind).to.equal('delivered');
    expect(await second).to.deep.equal({ kind: 'cancelled', reason: 'shutting down' });
    await stopped;
    expect(await sender.dispatch(TOPIC, event('e3'))).to.deep.equal({ kind: 'cancelled', reason: 'shutting down' });
    expect(recipient.ids()).to.deep.equal(['e1']);
  });

  it('stop: at the deadline, requests in flight are cut and count as sent (timeout)', async () => {
    recipient.hang();
    const sender = dispatcher();
    const first = sender.dispatch(TOPIC, event('e1'));
    await recipient.received(1);
    const deadline = new AbortController();
    const stopped = sender.stop(deadline.signal);
    deadline.abort();
    await stopped;
    expect(await first).to.deep.equal({ kind: 'timeout', reason: 'cut at the shutdown deadline after it was sent', attempts: 1 });
  });

  it('stop ends a retry wait: the event is released', async () => {
    recipient.fail(503, 1);
    let waiting!: () => void;
    const waitStarted = new Promise<void>((resolve) => { waiting = resolve; });
    const sender = dispatcher({
      sleep: (_ms, signal) => new Promise((_resolve, reject) => {
        waiting();
        signal.addEventListener('abort', () => reject(new Error('aborted')), { once: true });
      }),
    });
    const outcome = sender.dispatch(TOPIC, event('e1'));
    await waitStarted;
    await sender.stop(AbortSignal.timeout(1_000));
    expect(await outcome).to.deep.equal({ kind: 'failed', reason: 'answered 503; not retried: shutting down', attempts: 1 });
  });
});
