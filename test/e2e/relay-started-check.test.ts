/**
 * An unanswered `.started` (the request went out, the connection died before
 * the answer) is not re-sent blindly: a duplicate `.started` leaves a 0.8.x
 * task open for ever (spec §4.8.4). The agent asks the datastore first, about
 * 5 s later (the real datastore learns of events asynchronously), so this
 * file takes that long.
 */
import { expect } from 'chai';
import { startEmulator, type Emulator, type TriggeredEvent } from '../../lib/emulator/server.ts';
import { startTestAgent, type RunningAgent } from '../helpers/start-agent.ts';
import { until } from '../helpers/until.ts';

const TOKEN = 'e2e-started-token';

describe('e2e: an unanswered .started is checked before it is sent again', () => {
  let emulator: Emulator;
  let agent: RunningAgent | undefined;

  beforeEach(async () => {
    emulator = await startEmulator({ port: 0, token: TOKEN });
  });
  afterEach(async () => {
    await agent?.stop();
    agent = undefined;
    await emulator.close();
  });

  const started = (task: TriggeredEvent, kind = 'started'): Record<string, unknown> => ({
    specversion: '1.0', id: `${task.id}-${kind}`, source: 'e2e-service', type: task.type.replace(/triggered$/, kind),
    shkeptncontext: task.shkeptncontext, triggeredid: task.id, data: { ...(task.data as object), status: 'succeeded', result: 'pass' },
  });

  it('arrived → not sent again (the task closes); lost → sent again', async function () {
    this.timeout(15_000);
    agent = await startTestAgent({ KEPTN_API_ENDPOINT: `${emulator.url}/api`, KEPTN_API_TOKEN: TOKEN, PUBSUB_TOPIC: 'sh.keptn.event.unused.triggered' });
    const url = `http://127.0.0.1:${agent.addresses.proxyPort}/event`;
    const post = async (event: Record<string, unknown>): Promise<number> =>
      (await fetch(url, { method: 'POST', headers: { 'content-type': 'application/cloudevents+json' }, body: JSON.stringify(event) })).status;
    const [arrives, lost] = [0, 1].map((i) => emulator.trigger({ type: 'sh.keptn.event.test.triggered', project: 'p', stage: 's', service: `svc-${i}` }));

    // The first send takes effect and then loses its connection; the second is lost before it takes effect.
    emulator.faults.drop('event', { afterEffect: true }).drop('event');
    expect(await post(started(arrives!))).to.equal(202);
    expect(await post(started(arrives!, 'finished'))).to.equal(202);
    await emulator.waitFor(() => emulator.requests.event === 1, { what: 'the first send' });
    expect(await post(started(lost!))).to.equal(202);
    expect(await post(started(lost!, 'finished'))).to.equal(202);

    await emulator.waitFor(() => emulator.received().length === 4, { timeout: 10_000, what: 'both tasks answered' });
    await until(async () => (await agent!.metrics.outboxDepth.get()).values[0]?.value === 0, { what: 'an empty outbox' });
    const sends = (task: TriggeredEvent): string[] => emulator.received().filter((r) => r.keptnContext === task.shkeptncontext).map((r) => String(r.event.id));
    expect(sends(arrives!)).to.deep.equal([`${arrives!.id}-started`, `${arrives!.id}-finished`]);
    expect(sends(lost!)).to.deep.equal([`${lost!.id}-started`, `${lost!.id}-finished`]);
    expect(emulator.requests.datastore).to.equal(2);
    // Exactly one .started each: the control plane closed both tasks.
    expect(emulator.openTriggered()).to.deep.equal([]);
    const messages = agent.logs.entries().map((entry) => entry.message);
    expect(messages).to.include('an earlier, unanswered send of this .started event did arrive: not sending it again');
    expect(messages).to.include('an earlier, unanswered send of this .started event did not arrive: sending it again');
  });
});
