/**
 * The relay and the outbox end to end: the real agent, in-process, against
 * the control-plane emulator on 127.0.0.1.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { startEmulator, type Emulator, type TriggeredEvent } from '../../lib/emulator/server.ts';
import { startTestAgent, type RunningAgent } from '../helpers/start-agent.ts';
import { until } from '../helpers/until.ts';

const TOKEN = 'e2e-relay-token';
// The agent polls a type nothing triggers: these tests play the recipient themselves.
const TOPIC = 'sh.keptn.event.unused.triggered';

describe('e2e: relay and outbox', () => {
  let emulator: Emulator;
  let agents: RunningAgent[];
  let dirs: string[];

  beforeEach(async () => {
    emulator = await startEmulator({ port: 0, token: TOKEN });
    agents = [];
    dirs = [];
  });
  afterEach(async () => {
    for (const agent of agents) await agent.stop();
    await emulator.close();
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  async function start(env: Record<string, string> = {}): Promise<RunningAgent> {
    const agent = await startTestAgent({ KEPTN_API_ENDPOINT: `${emulator.url}/api`, KEPTN_API_TOKEN: TOKEN, PUBSUB_TOPIC: TOPIC, ...env });
    agents.push(agent);
    return agent;
  }

  async function stateDir(): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'relay-e2e-'));
    dirs.push(dir);
    return dir;
  }

  function relay(agent: RunningAgent, body: string | object, headers: Record<string, string> = { 'content-type': 'application/cloudevents+json' }, method = 'POST'): Promise<Response> {
    return fetch(`http://127.0.0.1:${agent.addresses.proxyPort}/event`, {
      method, headers, ...(method !== 'GET' && { body: typeof body === 'string' ? body : JSON.stringify(body) }),
    });
  }

  /** What a Keptn-service sends for a task: `.started`, then `.finished`. */
  function answer(task: TriggeredEvent, kind: 'started' | 'finished'): Record<string, unknown> {
    return {
      specversion: '1.0', id: `${task.id}-${kind}`, source: 'e2e-service', type: task.type.replace(/triggered$/, kind),
      shkeptncontext: task.shkeptncontext, triggeredid: task.id,
      data: { ...(task.data as object), status: 'succeeded', ...(kind === 'finished' && { result: 'pass' }) },
    };
  }

  function trigger(n: number): TriggeredEvent[] {
    return Array.from({ length: n }, (_, i) => emulator.trigger({ type: 'sh.keptn.event.test.triggered', project: 'p', stage: 's', service: `svc-${i}` }));
  }

  async function relays(agent: RunningAgent, outcome: string): Promise<number> {
    return (await agent.metrics.relays.get()).values.find((value) => value.labels.outcome === outcome)?.value ?? 0;
  }

  it('relays while the control plane is down, then up: every event delivered exactly once, in order per context', async () => {
    const tasks = trigger(3);
    await emulator.stop();
    const agent = await start();
    for (const task of tasks) expect((await relay(agent, answer(task, 'started'))).status).to.equal(202);
    for (const task of tasks) expect((await relay(agent, answer(task, 'finished'))).status).to.equal(202);
    await until(() => agent.logs.entries().some((entry) => String(entry.message).startsWith('cannot deliver relayed events')), { what: 'a failed delivery' });
    await emulator.restart();

    await emulator.waitFor(() => emulator.received().length === 6, { what: 'six events' });
    await until(async () => (await agent.metrics.outboxDepth.get()).values[0]?.value === 0, { what: 'an empty outbox' });
    const received = emulator.received();
    expect(received).to.have.length(6);
    expect(new Set(received.map((r) => r.event.id)).size).to.equal(6);
    for (const task of tasks) {
      const kinds = received.filter((r) => r.keptnContext === task.shkeptncontext).map((r) => r.event.type.split('.').pop());
      expect(kinds).to.deep.equal(['started', 'finished']);
    }
    // The control plane closed every task: no .finished overtook its .started.
    expect(emulator.openTriggered()).to.deep.equal([]);
    expect(await relays(agent, 'delivered')).to.equal(6);
  });

  it('sends the original JSON with x-token and the CloudEvents content type to /v1/event', async () => {
    const agent = await start();
    const [task] = trigger(1);
    const event = { ...answer(task!, 'started'), time: '2021-07-26T10:15:41.002Z', custom: 'extension kept' };
    expect((await relay(agent, event)).status).to.equal(202);
    await emulator.waitFor(() => emulator.received().length === 1);
    expect(emulator.received()[0]!.event).to.deep.equal(event);
  });

  it('a final 4xx is logged with Keptn’s message and counted, and the lane goes on', async () => {
    const agent = await start();
    emulator.faults.fail('event', { status: 422, body: { code: 422, message: 'data in body is required' } });
    const [task] = trigger(1);
    expect((await relay(agent, answer(task!, 'started'))).status).to.equal(202);
    expect((await relay(agent, answer(task!, 'finished'))).status).to.equal(202);
    await emulator.waitFor(() => emulator.received().length === 1, { what: 'the .finished' });
    await until(async () => (await relays(agent, 'failed')) === 1, { what: 'the failure counted' });
    const error = agent.logs.entries().find((entry) => entry.message === 'the control plane refused a relayed event for good');
    expect(error).to.include({ level: 'error', status: 422, reason: '422: data in body is required', keptnContext: task!.shkeptncontext });
    // Without STATE_DIR, the dead letter is the whole event in the log.
    expect(agent.logs.entries().some((entry) => String(entry.message).startsWith('dead letter') && (entry.event as { id: string }).id === `${task!.id}-started`)).to.equal(true);
  });

  it('a rejected token (401, even as HTML) holds events loudly, in /ready too, until it works again', async () => {
    const agent = await start();
    emulator.faults.fail('event', { status: 401, body: '<html><body><h1>401 Authorization Required</h1></body></html>', times: Infinity });
    const [task] = trigger(1);
    expect((await relay(agent, answer(task!, 'started'))).status).to.equal(202);
    const ready = `http://127.0.0.1:${agent.addresses.healthPort}/ready`;
    await until(async () => {
      const report = (await (await fetch(ready)).json()) as { notReady?: string[] };
      return report.notReady?.some((line) => line.startsWith('outbox: the control plane rejects the API token (401')) === true;
    }, { what: '/ready to report the token' });
    await emulator.waitFor(() => emulator.requests.event >= 3, { what: 'retries' });
    expect(emulator.received()).to.have.length(0);
    expect(agent.logs.entries().filter((entry) => String(entry.message).startsWith('the control plane rejects the API token'))).to.have.length(1);
    expect(await relays(agent, 'token-rejected')).to.be.greaterThan(1);

    emulator.faults.clear('event');
    await emulator.waitFor(() => emulator.received().length === 1, { timeout: 5_000, what: 'the held event' });
    await until(async () => (await fetch(ready)).status === 200, { what: '/ready 200' });
    expect(agent.logs.entries().some((entry) => String(entry.message).startsWith('the control plane accepts the API token again'))).to.equal(true);
  });

  it('with STATE_DIR, undelivered events survive a restart and are delivered afterwards, once, in order', async () => {
    const dir = await stateDir();
    const tasks = trigger(2);
    await emulator.stop();
    const first = await start({ STATE_DIR: dir, SHUTDOWN_TIMEOUT: '100ms' });
    for (const task of tasks) {
      expect((await relay(first, answer(task, 'started'))).status).to.equal(202);
      expect((await relay(first, answer(task, 'finished'))).status).to.equal(202);
    }
    await first.stop();
    expect(first.logs.entries().some((entry) => String(entry.message).startsWith('relayed events not delivered before shutdown stay in the outbox journal'))).to.equal(true);
    expect((await readFile(join(dir, 'outbox.log'), 'utf8')).split('\n').filter(Boolean)).to.have.length(4);

    await emulator.restart();
    const second = await start({ STATE_DIR: dir });
    await emulator.waitFor(() => emulator.received().length === 4, { what: 'the four events' });
    await until(async () => (await second.metrics.outboxDepth.get()).values[0]?.value === 0, { what: 'an empty outbox' });
    expect(emulator.received().map((r) => r.event.id)).to.have.members(tasks.flatMap((task) => [`${task.id}-started`, `${task.id}-finished`]));
    expect(emulator.openTriggered()).to.deep.equal([]);
    // The .started events were checked with the datastore before they were sent (their sends may have been under way).
    expect(emulator.requests.datastore).to.equal(2);
  });

  it('accepts a binary-mode event and relays it as structured JSON', async () => {
    const agent = await start();
    const [task] = trigger(1);
    const response = await relay(agent, { project: 'p', stage: 's', service: 'svc-0', status: 'succeeded' }, {
      'content-type': 'application/json', 'ce-specversion': '1.0', 'ce-id': 'binary-1', 'ce-source': 'e2e-service',
      'ce-type': 'sh.keptn.event.test.started', 'ce-shkeptncontext': task!.shkeptncontext, 'ce-triggeredid': task!.id,
    });
    expect(response.status).to.equal(202);
    await emulator.waitFor(() => emulator.received().length === 1);
    const event = emulator.received()[0]!.event;
    expect(event).to.include({ specversion: '1.0', id: 'binary-1', source: 'e2e-service', type: 'sh.keptn.event.test.started', triggeredid: task!.id });
    expect(event.data).to.deep.equal({ project: 'p', stage: 's', service: 'svc-0', status: 'succeeded' });
    expect(event.time).to.be.a('string');
  });

  describe('bad input is answered at once, never queued', () => {
    const good = { specversion: '1.0', id: 'x', source: 'svc', type: 'sh.keptn.event.test.started', data: {} };
    const cases: Array<[string, string | object, number, RegExp, Record<string, string>?]> = [
      ['invalid JSON', '{"specversion":', 400, /not valid JSON/],
      ['missing specversion', { ...good, specversion: undefined }, 400, /missing "specversion"/],
      ['missing id', { ...good, id: undefined }, 400, /missing "id"/],
      ['missing source', { ...good, source: undefined }, 400, /missing "source"/],
      ['missing type', { ...good, type: undefined }, 400, /missing "type"/],
      ['missing data', { ...good, data: undefined }, 400, /missing "data"/],
      ['a time that is not RFC 3339', { ...good, time: 'yesterday' }, 400, /RFC 3339/],
      ['a batch', [good], 400, /batches/],
      ['an unsupported content type', 'x', 415, /unsupported Content-Type/, { 'content-type': 'text/plain' }],
      ['more than 1 MiB', { ...good, data: { blob: 'x'.repeat(1024 * 1024) } }, 413, /larger than 1048576 bytes/],
    ];
    for (const [what, body, status, message, headers] of cases) {
      it(`${what} → ${status}`, async () => {
        const agent = await start();
        const response = await relay(agent, body, headers);
        expect(response.status).to.equal(status);
        expect(((await response.json()) as { message: string }).message).to.match(message);
        expect((await agent.metrics.outboxDepth.get()).values[0]?.value ?? 0).to.equal(0);
        expect(emulator.requests.event).to.equal(0);
      });
    }

    it('another method → 405, an unknown path → 404', async () => {
      const agent = await start();
      expect((await relay(agent, '', {}, 'GET')).status).to.equal(405);
      expect((await fetch(`http://127.0.0.1:${agent.addresses.proxyPort}/events`)).status).to.equal(404);
    });
  });

  describe('the reference forwarder tests (spec §14.4)', () => {
    // Its fixtures, typo included, with `data: ""`.
    const taskStartedEvent = { specversion: '1.0', id: 'started-1', source: 'test', type: 'sh.keptn.events.task.started', shkeptncontext: 'ctx-14-4', data: '' };
    const taskFinishedEvent = { specversion: '1.0', id: 'finished-1', source: 'test', type: 'sh.keptn.events.task.fnished', shkeptncontext: 'ctx-14-4', data: '' };

    it('Test_ForwardEventsToKeptnAPI: both posted events reach the Keptn API (path, token and body checked too)', async () => {
      const agent = await start();
      expect((await relay(agent, taskStartedEvent)).status).to.equal(202);
      expect((await relay(agent, taskFinishedEvent)).status).to.equal(202);
      await emulator.waitFor(() => emulator.received().length === 2, { what: 'two events' });
      expect(emulator.requests.event).to.equal(2);
      expect(emulator.received().map((r) => r.event.id)).to.deep.equal(['started-1', 'finished-1']);
      expect(emulator.received()[0]!.event).to.deep.include({ ...taskStartedEvent });
    });
  });
});
