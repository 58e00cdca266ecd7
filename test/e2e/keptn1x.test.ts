/**
 * Keptn 1.x control planes end to end: the real agent against the emulator in
 * 1.x mode (subscriptions owned by the control plane, heartbeat, subscription
 * API) and in 0.8 mode (KEPTN_API_VERSION=auto must tell them apart).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { startEmulator, type Emulator } from '../../lib/emulator/server.ts';
import type { Subscription } from '../../lib/emulator/state.ts';
import { Recipient, type ReceivedRequest } from '../helpers/recipient.ts';
import { startTestAgent, type RunningAgent } from '../helpers/start-agent.ts';
import { until } from '../helpers/until.ts';

const TOKEN = 'e2e-keptn1x-token';
const DEPLOYMENT = 'sh.keptn.event.deployment.triggered';
const TEST = 'sh.keptn.event.test.triggered';

interface DispatchedEvent {
  id: string;
  type: string;
  data: { project?: string; temporaryData?: { distributor?: { subscriptionID?: string } } };
}

const eventOf = (request: ReceivedRequest): DispatchedEvent => request.json() as unknown as DispatchedEvent;

describe('e2e: Keptn 1.x control planes', () => {
  let emulator: Emulator;
  let recipient: Recipient;
  let agent: RunningAgent | undefined;

  afterEach(async () => {
    await agent?.stop();
    agent = undefined;
    await emulator.close();
    await recipient.close();
  });

  async function start(apiVersion: '0.8' | '1.x', env: Record<string, string> = {}): Promise<RunningAgent> {
    emulator = await startEmulator({ port: 0, token: TOKEN, apiVersion });
    recipient = await Recipient.start();
    return startTestAgent({
      KEPTN_API_ENDPOINT: `${emulator.url}/api`,
      KEPTN_API_TOKEN: TOKEN,
      PUBSUB_TOPIC: DEPLOYMENT,
      DISABLE_REGISTRATION: 'false',
      K8S_DEPLOYMENT_NAME: 'my-service', K8S_NAMESPACE: 'plane-a', K8S_NODE_NAME: 'node-1',
      HEARTBEAT_INTERVAL: '20ms',
      ...recipient.env,
      ...env,
    });
  }

  /** The subscription API of the emulated control plane, as the Bridge uses it. */
  async function subscriptionApi(method: string, path: string, body?: object): Promise<Record<string, unknown>> {
    const [integration] = emulator.registrations();
    const response = await fetch(`${emulator.url}/api/controlPlane/v1/uniform/registration/${integration?.id ?? 'none'}/subscription${path}`, {
      method, headers: { 'x-token': TOKEN, 'content-type': 'application/json' }, ...(body && { body: JSON.stringify(body) }),
    });
    expect(response.status, `${method} subscription${path}`).to.be.oneOf([200, 201]);
    return await response.json() as Record<string, unknown>;
  }

  function subscriptions(): readonly Subscription[] {
    return emulator.registrations()[0]?.subscriptions ?? [];
  }

  /**
   * Waits until the agent polls what the control plane lists: one cycle after its heartbeat brought the change.
   * A heartbeat that answers before the poller starts makes those the first cycle's subscriptions: nothing to follow then.
   */
  async function agentFollows(count: number, since = 0): Promise<void> {
    const polls = (message: unknown): boolean => message === 'polling follows the new subscriptions' || message === 'first poll cycle completed';
    await until(() => agent!.logs.entries().slice(since).some((entry) => polls(entry.message)
      && Array.isArray(entry.subscriptions) && entry.subscriptions.length === count), { what: `the agent to poll ${count} subscriptions` });
  }

  /** Waits for `cycles` more polls of `type`: what the agent would have dispatched by then, it has queued. */
  async function polledAgain(cycles = 3): Promise<void> {
    const before = emulator.requests.poll;
    await until(() => emulator.requests.poll >= before + cycles, { what: `${cycles} more polls` });
  }

  it('auto: registers the PUBSUB_TOPIC seed, detects 1.x from the heartbeat and stamps the subscription id', async () => {
    agent = await start('1.x');
    await until(() => subscriptions().length === 1, { what: 'the registration' });
    const [seeded] = subscriptions();
    expect(seeded).to.deep.include({ event: DEPLOYMENT, filter: { projects: [], stages: [], services: [] } });
    await until(() => agent!.logs.entries().some((entry) => /^Keptn 1\.x control plane detected/.test(String(entry.message))),
      { what: 'the detection' });
    await agentFollows(1);

    const task = emulator.trigger({ type: DEPLOYMENT, project: 'sockshop', stage: 'dev', service: 'carts', data: { keep: { me: 1 } } });
    await recipient.received(1);
    const dispatched = eventOf(recipient.requests[0]!);
    expect(dispatched.id).to.equal(task.id);
    expect(dispatched.data).to.deep.equal({
      ...task.data, temporaryData: { distributor: { subscriptionID: seeded!.id } },
    });
    expect(agent.logs.entries().some((entry) => entry.message === 'integration identity' && entry.nodeName === 'node-1')).to.equal(true);
    expect(await ready()).to.deep.include({
      keptnApiVersion: '1.x', subscriptions: { source: 'control plane', count: 1 }, heartbeat: { failures: 0 },
    });
  });

  /** The body of the agent's /ready. */
  async function ready(): Promise<Record<string, unknown>> {
    const response = await fetch(`http://127.0.0.1:${agent!.addresses.healthPort}/ready`);
    return await response.json() as Record<string, unknown>;
  }

  it('subscriptions added, changed and removed in the control plane change what is polled, without a restart', async () => {
    agent = await start('1.x');
    await agentFollows(1);

    // Added: a second subscription, filtered to one project.
    const { id: testSubscription } = await subscriptionApi('POST', '', { event: TEST, filter: { projects: ['sockshop'] } });
    await agentFollows(2);
    emulator.trigger({ type: TEST, project: 'podtato', stage: 'dev', service: 'carts' });
    const wanted = emulator.trigger({ type: TEST, project: 'sockshop', stage: 'dev', service: 'carts' });
    await recipient.received(1);
    expect(eventOf(recipient.requests[0]!)).to.deep.include({ id: wanted.id });
    expect(eventOf(recipient.requests[0]!).data.temporaryData?.distributor?.subscriptionID).to.equal(testSubscription);

    // Changed: the filter now names the other project; the sockshop event is not dispatched again.
    await subscriptionApi('PUT', `/${String(testSubscription)}`, { event: TEST, filter: { projects: ['podtato'] } });
    await recipient.received(2);
    expect(eventOf(recipient.requests[1]!).data.project).to.equal('podtato');

    // Removed: the deployment subscription; a new deployment task is no longer polled.
    const deployment = subscriptions().find((subscription) => subscription.event === DEPLOYMENT);
    const since = agent.logs.entries().length;
    await subscriptionApi('DELETE', `/${deployment!.id}`);
    await agentFollows(1, since);
    emulator.trigger({ type: DEPLOYMENT, project: 'sockshop', stage: 'dev', service: 'carts' });
    await polledAgain();
    expect(recipient.requests).to.have.length(2);
  });

  it('an event two subscriptions match is dispatched once per subscription, each with its id, and never twice for one', async () => {
    agent = await start('1.x');
    await agentFollows(1);
    const { id: second } = await subscriptionApi('POST', '', { event: DEPLOYMENT, filter: { stages: ['dev'] } });
    await agentFollows(2);
    emulator.trigger({ type: DEPLOYMENT, project: 'sockshop', stage: 'dev', service: 'carts' });
    await recipient.received(2);
    await polledAgain();
    const ids = recipient.requests.map((request) => eventOf(request).data.temporaryData?.distributor?.subscriptionID);
    expect(ids).to.have.members([subscriptions()[0]!.id, second]);
  });

  it('a failing heartbeat keeps the last subscriptions, is never fatal, and its recovery dispatches nothing again', async () => {
    agent = await start('1.x');
    await agentFollows(1);
    const before = emulator.trigger({ type: DEPLOYMENT, project: 'sockshop', stage: 'dev', service: 'carts' });
    await recipient.received(1);

    emulator.faults.fail('ping', { status: 503, times: Infinity });
    await until(() => agent!.logs.entries().some((entry) => /^heartbeat failing/.test(String(entry.message))), { what: 'the failure' });
    const during = emulator.trigger({ type: DEPLOYMENT, project: 'sockshop', stage: 'prod', service: 'carts' });
    await recipient.received(2);
    expect(eventOf(recipient.requests[1]!).id).to.equal(during.id);

    emulator.faults.clear('ping');
    await until(() => agent!.logs.entries().some((entry) => entry.message === 'heartbeat works again'), { what: 'the recovery' });
    await polledAgain();
    expect(recipient.requests.map((request) => eventOf(request).id)).to.deep.equal([before.id, during.id]);
    expect(agent.logs.entries().filter((entry) => /^heartbeat failing/.test(String(entry.message)))).to.have.length(1);
  });

  it('an integration deleted on the control plane: the ping gets 404, the agent registers again and dispatches nothing twice', async () => {
    agent = await start('1.x', { REGISTRATION_INTERVAL: '1h' });
    await agentFollows(1);
    const open = emulator.trigger({ type: DEPLOYMENT, project: 'sockshop', stage: 'dev', service: 'carts' });
    await recipient.received(1);
    const [integration] = emulator.registrations();
    const oldSubscription = subscriptions()[0]!.id;
    const response = await fetch(`${emulator.url}/api/controlPlane/v1/uniform/registration/${integration!.id}`, { method: 'DELETE', headers: { 'x-token': TOKEN } });
    expect(response.status).to.equal(200);

    const since = agent.logs.entries().length;
    await until(() => subscriptions().length === 1 && subscriptions()[0]!.id !== oldSubscription, { what: 'the new registration' });
    await agentFollows(1, since);
    await polledAgain();
    expect(recipient.requests.map((request) => eventOf(request).id)).to.deep.equal([open.id]);
  });

  it('with STATE_DIR, a restart dispatches nothing again: not before the heartbeat answers, nor after', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'keptn1x-e2e-'));
    try {
      agent = await start('1.x', { STATE_DIR: dir });
      const { id: second } = await subscriptionApi('POST', '', { event: DEPLOYMENT, filter: { stages: ['dev'] } });
      await agentFollows(2);
      const open = emulator.trigger({ type: DEPLOYMENT, project: 'sockshop', stage: 'dev', service: 'carts' });
      await recipient.received(2);
      await agent.stop();
      agent = undefined;

      // The same integration (name, namespace, node name) and the same STATE_DIR, against the same control plane.
      agent = await startTestAgent({
        KEPTN_API_ENDPOINT: `${emulator.url}/api`, KEPTN_API_TOKEN: TOKEN, PUBSUB_TOPIC: DEPLOYMENT, DISABLE_REGISTRATION: 'false',
        K8S_DEPLOYMENT_NAME: 'my-service', K8S_NAMESPACE: 'plane-a', K8S_NODE_NAME: 'node-1', HEARTBEAT_INTERVAL: '20ms',
        STATE_DIR: dir, ...recipient.env,
      });
      await agentFollows(2);
      await polledAgain();
      const stamped = recipient.requests.map((request) => [eventOf(request).id, eventOf(request).data.temporaryData?.distributor?.subscriptionID]);
      expect(stamped).to.have.deep.members([[open.id, subscriptions()[0]!.id], [open.id, second]]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('auto against a 0.8 control plane: the ping is 404, 0.8 is decided once, events go out as they are', async () => {
    const pings: Array<string | number> = [];
    agent = await start('0.8');
    emulator.on('request', (request) => { if (request.method === 'PUT' && request.path.endsWith('/ping')) pings.push(request.status); });
    await until(() => agent!.logs.entries().some((entry) => /^Keptn 0\.8 control plane detected/.test(String(entry.message))),
      { what: 'the detection' });
    const task = emulator.trigger({ type: DEPLOYMENT, project: 'sockshop', stage: 'dev', service: 'carts' });
    await recipient.received(1);
    expect(eventOf(recipient.requests[0]!).data).to.deep.equal(task.data);
    await polledAgain();
    expect(agent.logs.entries().filter((entry) => /control plane detected/.test(String(entry.message)))).to.have.length(1);
    // Listening began after the start: the one ping may have been answered before; none follows.
    expect(pings.filter((status) => status !== 404)).to.deep.equal([]);
    expect(pings.length).to.be.at.most(1);
    expect(await ready()).to.deep.equal({ status: 'ready', keptnApiVersion: '0.8', subscriptions: { source: 'environment', count: 1 } });
  });
});
