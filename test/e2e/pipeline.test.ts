/**
 * The execution-plane pipeline end to end: the real agent polls the
 * emulated control plane and dispatches to a real recipient, both on
 * 127.0.0.1. Exactly-once is checked by counting what the recipient got.
 */
import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { startEmulator, type Emulator, type TriggeredEvent } from '../../lib/emulator/server.ts';
import { Recipient } from '../helpers/recipient.ts';
import { startTestAgent, type RunningAgent } from '../helpers/start-agent.ts';
import { until } from '../helpers/until.ts';

const TOKEN = 'e2e-pipeline-token';
const DEPLOYMENT = 'sh.keptn.event.deployment.triggered';
const TEST = 'sh.keptn.event.test.triggered';
const EVALUATION = 'sh.keptn.event.evaluation.triggered';

describe('e2e: poll, deduplicate, dispatch', () => {
  let emulator: Emulator;
  let recipient: Recipient;
  let agent: RunningAgent | undefined;

  beforeEach(async () => {
    emulator = await startEmulator({ port: 0, token: TOKEN });
    recipient = await Recipient.start();
  });
  afterEach(async () => {
    await agent?.stop();
    agent = undefined;
    await emulator.close();
    await recipient.close();
  });

  async function start(env: Record<string, string> = {}): Promise<RunningAgent> {
    agent = await startTestAgent({
      KEPTN_API_ENDPOINT: `${emulator.url}/api`,
      KEPTN_API_TOKEN: TOKEN,
      PUBSUB_TOPIC: DEPLOYMENT,
      ...recipient.env,
      ...env,
    });
    return agent;
  }

  /** Resolves after the agent has polled `cycles` more times (per topic polled). */
  async function polls(cycles: number, timeout = 5_000): Promise<void> {
    const target = emulator.requests.poll + cycles;
    await emulator.waitFor(() => emulator.requests.poll >= target, { timeout, what: `${cycles} more polls` });
  }

  function trigger(type = DEPLOYMENT, place: Partial<{ project: string; stage: string; service: string }> = {}): TriggeredEvent {
    return emulator.trigger({ type, project: 'sockshop', stage: 'dev', service: 'carts', ...place });
  }

  /** How often each id reached the recipient. */
  function deliveries(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const id of recipient.ids()) counts.set(id, (counts.get(id) ?? 0) + 1);
    return counts;
  }

  function expectEachOnce(ids: readonly string[]): void {
    expect([...deliveries().entries()].sort()).to.deep.equal([...ids].sort().map((id) => [id, 1]));
  }

  async function metric(name: 'polls' | 'eventsDispatched', labels: Record<string, string>): Promise<number> {
    const { values } = await agent!.metrics[name].get();
    return values.filter((value) => Object.entries(labels).every(([key, label]) => (value.labels as Record<string, unknown>)[key] === label))
      .reduce((total, value) => total + value.value, 0);
  }

  it('many polls → exactly one dispatch per id, the polled JSON unchanged', async () => {
    await start();
    const events = Array.from({ length: 5 }, () => trigger());
    await recipient.received(5);
    await polls(10);
    expectEachOnce(events.map((event) => event.id));
    for (const event of events) {
      const request = recipient.requests.find((candidate) => candidate.json().id === event.id);
      expect(request?.headers['content-type']).to.equal('application/cloudevents+json');
      expect(request?.headers).to.not.have.property('x-token');
      expect(request?.json()).to.deep.equal(event);
    }
  });

  it('the first poll happens at start, not one interval later', async () => {
    const event = trigger();
    await start({ HTTP_POLLING_INTERVAL: '1m' });
    await recipient.received(1);
    expect(recipient.ids()).to.deep.equal([event.id]);
  });

  it('several topics: each polled, each event dispatched once; other types are not', async () => {
    await start({ PUBSUB_TOPIC: `${DEPLOYMENT}, ${TEST},${EVALUATION}` });
    const events = [trigger(DEPLOYMENT), trigger(TEST), trigger(EVALUATION), trigger(TEST)];
    const other = trigger('sh.keptn.event.release.triggered');
    await recipient.received(4);
    await polls(12);
    expectEachOnce(events.map((event) => event.id));
    expect(deliveries().has(other.id)).to.equal(false);
    for (const type of [DEPLOYMENT, TEST, EVALUATION]) expect(await metric('polls', { topic: type, outcome: 'success' })).to.be.at.least(3);
  });

  for (const [name, arm] of [
    ['a 500', (target: Emulator) => target.faults.fail('poll', { times: 3, status: 500 })],
    ['a 502 HTML page from the gateway', (target: Emulator) => target.faults.fail('poll', { times: 3, status: 502, body: '<html><body>502 Bad Gateway</body></html>' })],
    ['a connection reset', (target: Emulator) => target.faults.drop('poll', { times: 3 })],
  ] as const) {
    it(`failed polls (${name}) cause no re-dispatch`, async () => {
      await start();
      const first = trigger();
      await recipient.received(1);
      arm(emulator);
      await until(() => agent!.logs.entries().some((entry) => entry.message === 'cannot poll the control plane: known events are kept, polls back off'),
        { what: 'the failure logged' });
      const second = trigger();
      await recipient.received(2);
      await polls(5);
      expectEachOnce([first.id, second.id]);
      expect(agent!.logs.entries().filter((entry) => entry.message === 'polling the control plane works again')).to.have.length(1);
    });
  }

  it('a poll that hangs past the time limit causes no re-dispatch', async () => {
    await start();
    const first = trigger();
    await recipient.received(1);
    // The limit is 1 s at a 20 ms interval (three intervals, at least 1 s).
    emulator.faults.delay('poll', 1_500);
    await until(() => agent!.logs.entries().some((entry) => entry.code === 'ETIMEDOUT'), { what: 'the timeout logged', timeout: 4_000 });
    const second = trigger();
    await recipient.received(2);
    await polls(5);
    expectEachOnce([first.id, second.id]);
    expect(await metric('polls', { outcome: 'failure' })).to.equal(1);
  });

  it('a control plane that refuses the token: logged once with Keptn’s message, nothing dispatched', async () => {
    trigger();
    agent = await startTestAgent({ KEPTN_API_ENDPOINT: `${emulator.url}/api`, KEPTN_API_TOKEN: 'wrong', PUBSUB_TOPIC: DEPLOYMENT, ...recipient.env });
    await polls(3);
    const failures = agent.logs.entries().filter((entry) => entry.level === 'warn' && entry.component === 'poller');
    expect(failures).to.have.length(1);
    expect(failures[0]).to.include({ status: 401, error: '401: invalid x-token' });
    expect(recipient.requests).to.have.length(0);
    expect(agent.logs.text()).to.not.include('wrong"');
  });

  it('the recipient down, then up → dispatched exactly once', async () => {
    await recipient.down();
    await start();
    const event = trigger();
    await until(async () => (await metric('eventsDispatched', { outcome: 'failed' })) >= 1, { what: 'a failed dispatch', timeout: 5_000 });
    await recipient.up();
    await recipient.received(1);
    await polls(10);
    expectEachOnce([event.id]);
  });

  it('the concurrency cap holds with a recipient that hangs; in-flight ids are not re-sent; each event once when it answers', async () => {
    recipient.hang();
    await start({ MAX_CONCURRENT_DISPATCHES: '3', DISPATCH_TIMEOUT: '20s' });
    const first = Array.from({ length: 3 }, () => trigger());
    await recipient.received(3);
    // Polls go on while the three hang (nothing queued): each lists them again, none is sent again.
    await polls(10);
    expect(recipient.requests).to.have.length(3);
    const more = Array.from({ length: 7 }, () => trigger());
    const queuedAll = () => more.every((event) => agent!.logs.entries().some((entry) => entry.message === 'new triggered event' && entry.eventId === event.id));
    await until(queuedAll, { what: 'the 7 new events queued' });
    expect(recipient.requests, 'the cap holds').to.have.length(3);
    recipient.release();
    await recipient.received(10);
    await polls(5);
    expectEachOnce([...first, ...more].map((event) => event.id));
    expect(recipient.maxConcurrent).to.equal(3);
  });

  it('filters with comma lists and missing fields: only matching events are dispatched, never the others', async () => {
    await start({ PROJECT_FILTER: 'sockshop, podtato', STAGE_FILTER: 'dev,staging', SERVICE_FILTER: 'carts' });
    const matching = [
      trigger(DEPLOYMENT, { project: 'sockshop', stage: 'dev' }),
      trigger(DEPLOYMENT, { project: 'podtato', stage: 'staging' }),
    ];
    const filtered = [
      trigger(DEPLOYMENT, { project: 'other' }),
      trigger(DEPLOYMENT, { stage: 'production' }),
      trigger(DEPLOYMENT, { service: 'orders' }),
      emulator.addTriggered({ type: DEPLOYMENT, data: { project: 'sockshop', stage: 'dev' } }),
      emulator.addTriggered({ type: DEPLOYMENT, data: { project: 'sockshop', service: 'carts' } }),
    ];
    await recipient.received(2);
    await polls(10);
    expectEachOnce(matching.map((event) => event.id));
    for (const event of filtered) expect(deliveries().has(event.id)).to.equal(false);
    // SERVICE_FILTER names one service, so the poll asks for ?service=carts: the control plane
    // leaves out the two events of other or no services, the agent filters the other three.
    const { values } = await agent!.metrics.eventsFiltered.get();
    expect(values.reduce((total, value) => total + value.value, 0)).to.equal(filtered.length - 2);
  });

  it('one project in PROJECT_FILTER polls with ?project=; "no matching event found" is an empty list, not a failure', async () => {
    await start({ PROJECT_FILTER: 'sockshop' });
    await polls(3);
    const event = trigger();
    trigger(DEPLOYMENT, { project: 'other' });
    await recipient.received(1);
    await polls(3);
    expectEachOnce([event.id]);
    expect(await metric('polls', { outcome: 'failure' })).to.equal(0);
    expect(agent!.logs.entries().filter((entry) => entry.level === 'warn')).to.deep.equal([]);
  });

  it('the server’s pagination bug (§4.8.3): the events it shows are dispatched once, nothing forgotten, the hidden one later', async () => {
    await emulator.close();
    emulator = await startEmulator({ port: 0, token: TOKEN, paginationBug: true });
    // One more than the agent's page (1,000): newest first, so the oldest is hidden by the bug.
    const base = Date.parse('2021-07-26T10:00:00.000Z');
    const events = Array.from({ length: 1_001 }, (_, n) => emulator.trigger({
      type: DEPLOYMENT, project: 'sockshop', stage: 'dev', service: 'carts', time: new Date(base + n * 1_000).toISOString(),
    }));
    const [hidden, ...visible] = events as [TriggeredEvent, ...TriggeredEvent[]];
    await start({ MAX_CONCURRENT_DISPATCHES: '64' });
    await recipient.received(1_000, { timeout: 10_000 });
    // Poll cycles, not page requests: each cycle here fetches two pages.
    const partialBefore = await metric('polls', { outcome: 'partial' });
    await until(async () => await metric('polls', { outcome: 'partial' }) >= partialBefore + 5, { what: '5 more partial polls' });
    expectEachOnce(visible.map((event) => event.id));
    expect(deliveries().has(hidden.id), 'never listed, so never dispatched').to.equal(false);
    expect(await metric('polls', { outcome: 'success' })).to.equal(0);

    // A task finishes: the hidden event moves onto the first page.
    await finish(emulator, visible[visible.length - 1]!);
    await recipient.received(1_001);
    await polls(5);
    expectEachOnce(events.map((event) => event.id));
    expect(await metric('polls', { outcome: 'success' })).to.be.at.least(1);
  });
});

/** Closes a task as a Keptn-service would: `.started`, then `.finished`, from the same source. */
async function finish(emulator: Emulator, triggered: TriggeredEvent): Promise<void> {
  for (const kind of ['started', 'finished'] as const) {
    const response = await fetch(`${emulator.url}/api/v1/event`, {
      method: 'POST',
      headers: { 'content-type': 'application/cloudevents+json', 'x-token': TOKEN },
      body: JSON.stringify({
        specversion: '1.0', id: randomUUID(), source: 'e2e-service', type: triggered.type.replace(/\.triggered$/, `.${kind}`),
        shkeptncontext: triggered.shkeptncontext, triggeredid: triggered.id,
        data: { ...triggered.data, ...(kind === 'finished' && { status: 'succeeded', result: 'pass' }) },
      }),
    });
    await response.arrayBuffer();
    expect(response.status).to.equal(200);
  }
  await emulator.waitFor(() => !emulator.openTriggered().some((event) => event.id === triggered.id), { what: 'the task closed' });
}
