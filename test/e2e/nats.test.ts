/**
 * NATS (in-cluster) mode end to end: the real agent, in-process, against a
 * real nats-server and a real recipient on 127.0.0.1.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import nock from 'nock';
import type { NatsConnection } from '@nats-io/transport-node';
import { useNock } from '../helpers/nock-scope.ts';
import { NatsServer } from '../helpers/nats-server.ts';
import { Recipient } from '../helpers/recipient.ts';
import { startTestAgent, type RunningAgent } from '../helpers/start-agent.ts';
import { TcpCable } from '../helpers/tcp-cable.ts';
import { until } from '../helpers/until.ts';

const DEPLOYMENT = 'sh.keptn.event.deployment.triggered';
const TEST = 'sh.keptn.event.test.triggered';

/** A triggered event as the shipyard-controller publishes it. */
function triggered(id: string, type = DEPLOYMENT, project = 'sockshop'): Record<string, unknown> {
  return {
    specversion: '1.0', id, source: 'shipyard-controller', type, time: '2026-01-01T00:00:00.000Z',
    shkeptncontext: `context-${id}`, datacontenttype: 'application/json',
    data: { project, stage: 'dev', service: 'carts' },
  };
}

/** What a Keptn-service answers to a task. */
function started(id: string): Record<string, unknown> {
  return {
    specversion: '1.0', id, source: 'e2e-service', type: 'sh.keptn.event.deployment.started',
    shkeptncontext: `context-${id}`, triggeredid: `triggered-${id}`, data: { project: 'sockshop', stage: 'dev', service: 'carts' },
  };
}

async function publish(client: NatsConnection, event: Record<string, unknown>, subject = String(event.type)): Promise<void> {
  client.publish(subject, JSON.stringify(event));
  await client.flush();
}

/** Collects what arrives on `subject` (parsed), from now on. */
async function collect(client: NatsConnection, subject: string, into: Array<Record<string, unknown>>): Promise<void> {
  client.subscribe(subject, { callback: (_error, message) => { into.push({ subject: message.subject, ...message.json<Record<string, unknown>>() }); } });
  await client.flush();
}

describe('e2e: NATS mode', function () {
  this.timeout(30_000);
  let server: NatsServer;
  let clients: NatsConnection[];
  let agents: RunningAgent[];
  let recipients: Recipient[];
  let closers: Array<() => Promise<void>>;

  before(async () => {
    server = await NatsServer.start();
  });
  after(async () => {
    await server.close();
  });
  beforeEach(() => {
    clients = [];
    agents = [];
    recipients = [];
    closers = [];
  });
  afterEach(async () => {
    for (const agent of agents) await agent.stop();
    for (const client of clients) await client.close();
    for (const recipient of recipients) await recipient.close();
    for (const close of closers) await close();
    // A test that restarted the server leaves it up again.
    await server.up();
  });

  async function client(): Promise<NatsConnection> {
    const connection = await server.client();
    clients.push(connection);
    return connection;
  }

  async function recipient(): Promise<Recipient> {
    const started = await Recipient.start();
    recipients.push(started);
    return started;
  }

  /** An agent in NATS mode, returned once it is subscribed (its /ready says so). */
  async function agent(env: Record<string, string>, to: Recipient): Promise<RunningAgent> {
    const running = await startTestAgent({ ...server.env, ...to.env, ...env });
    agents.push(running);
    await until(async () => (await fetch(`http://127.0.0.1:${running.addresses.healthPort}/ready`)).status === 200,
      { what: 'the agent to subscribe' });
    return running;
  }

  function relay(running: RunningAgent, event: Record<string, unknown>): Promise<Response> {
    return fetch(`http://127.0.0.1:${running.addresses.proxyPort}/event`, {
      method: 'POST', headers: { 'content-type': 'application/cloudevents+json' }, body: JSON.stringify(event),
    });
  }

  async function metric(running: RunningAgent, name: string): Promise<number> {
    const values = (await running.metrics.registry.getSingleMetric(name)?.get())?.values ?? [];
    return values.reduce((sum, value) => sum + value.value, 0);
  }

  it('Test_ReceiveFromNATSAndForwardEvent (spec §14.7): dispatches an event published on a subscribed subject to the recipient, as a structured CloudEvent', async () => {
    const to = await recipient();
    await agent({ PUBSUB_TOPIC: DEPLOYMENT }, to);
    const event = triggered('delivered-1');
    await publish(await client(), event);
    await to.received(1);
    expect(to.requests[0]!.headers['content-type']).to.equal('application/cloudevents+json');
    expect(to.requests[0]!.json()).to.deep.equal(event);
  });

  it('never logs the credentials of PUBSUB_URL', async () => {
    const to = await recipient();
    const running = await agent({ PUBSUB_URL: `nats://distributor:n4ts-s3cret@127.0.0.1:${server.port}`, PUBSUB_TOPIC: DEPLOYMENT }, to);
    await publish(await client(), triggered('with-credentials-1'));
    await to.received(1);
    expect(running.logs.text()).to.include('"natsUrl"');
    expect(running.logs.text()).not.to.include('n4ts-s3cret');
  });

  it('subscribes with the > wildcard: sh.keptn.> gets every Keptn subject and nothing else', async () => {
    const to = await recipient();
    await agent({ PUBSUB_TOPIC: 'sh.keptn.>', MAX_CONCURRENT_DISPATCHES: '1' }, to);
    const nats = await client();
    await publish(nats, triggered('deploy-1', DEPLOYMENT));
    await publish(nats, triggered('other-1', 'other.subject'));
    await publish(nats, triggered('test-1', TEST));
    await to.received(2);
    // One dispatch at a time, in arrival order: had other.subject been received, it would have come before test-1.
    expect(to.ids()).to.deep.equal(['deploy-1', 'test-1']);
  });

  it('subscribes with the * wildcard: one token only', async () => {
    const to = await recipient();
    await agent({ PUBSUB_TOPIC: 'sh.keptn.event.*.triggered', MAX_CONCURRENT_DISPATCHES: '1' }, to);
    const nats = await client();
    await publish(nats, triggered('started-1', 'sh.keptn.event.deployment.started'));
    await publish(nats, triggered('deep-1', 'sh.keptn.event.a.b.triggered'));
    await publish(nats, triggered('test-1', TEST));
    await to.received(1);
    expect(to.ids()).to.deep.equal(['test-1']);
  });

  it('applies PROJECT_FILTER as in HTTP mode', async () => {
    const to = await recipient();
    const running = await agent({ PUBSUB_TOPIC: DEPLOYMENT, PROJECT_FILTER: 'sockshop', MAX_CONCURRENT_DISPATCHES: '1' }, to);
    const nats = await client();
    await publish(nats, triggered('elsewhere-1', DEPLOYMENT, 'podtato'));
    await publish(nats, triggered('mine-1'));
    await to.received(1);
    expect(to.ids()).to.deep.equal(['mine-1']);
    expect(await metric(running, 'keptn_distributor_events_filtered_total')).to.equal(1);
  });

  it('skips a message that is not a valid CloudEvent, says so, and goes on', async () => {
    const to = await recipient();
    const running = await agent({ PUBSUB_TOPIC: DEPLOYMENT, MAX_CONCURRENT_DISPATCHES: '1' }, to);
    const nats = await client();
    nats.publish(DEPLOYMENT, 'not json');
    nats.publish(DEPLOYMENT, JSON.stringify({ id: 'no-specversion', type: DEPLOYMENT }));
    await publish(nats, triggered('valid-1'));
    await to.received(1);
    expect(to.ids()).to.deep.equal(['valid-1']);
    expect(await metric(running, 'keptn_distributor_events_invalid_total')).to.equal(2);
    expect(running.logs.text()).to.include('skipping a NATS message that is not a valid Keptn CloudEvent');
  });

  it('dispatches an event once when two subscribed subjects match it', async () => {
    const to = await recipient();
    const running = await agent({ PUBSUB_TOPIC: `sh.keptn.>,${DEPLOYMENT}`, MAX_CONCURRENT_DISPATCHES: '1' }, to);
    const nats = await client();
    await publish(nats, triggered('twice-1'));
    await publish(nats, triggered('after-1', TEST));
    await to.received(2);
    expect(to.ids()).to.deep.equal(['twice-1', 'after-1']);
    expect(await metric(running, 'keptn_distributor_events_deduplicated_total')).to.equal(1);
  });

  it('shares the events between two agents in one queue group: each event reaches exactly one of them', async () => {
    const [toA, toB] = [await recipient(), await recipient()];
    await agent({ PUBSUB_TOPIC: 'sh.keptn.>', PUBSUB_GROUP: 'carts-service' }, toA);
    await agent({ PUBSUB_TOPIC: 'sh.keptn.>', PUBSUB_GROUP: 'carts-service' }, toB);
    const nats = await client();
    const ids = Array.from({ length: 60 }, (_, i) => `shared-${i}`);
    for (const id of ids) nats.publish(DEPLOYMENT, JSON.stringify(triggered(id)));
    await nats.flush();
    await until(() => toA.requests.length + toB.requests.length >= ids.length, { what: 'every event dispatched' });
    const all = [...toA.ids(), ...toB.ids()];
    expect(all).to.have.length(ids.length);
    expect(new Set(all)).to.deep.equal(new Set(ids));
    // The server spreads a group's messages at random: with 60 of them, each agent gets some.
    expect(toA.requests.length).to.be.above(0);
    expect(toB.requests.length).to.be.above(0);
  });

  it('forms the queue group from K8S_DEPLOYMENT_NAME: replicas share, other deployments get every event', async () => {
    const [replicaA, replicaB, other] = [await recipient(), await recipient(), await recipient()];
    await agent({ PUBSUB_TOPIC: DEPLOYMENT, K8S_DEPLOYMENT_NAME: 'helm-service' }, replicaA);
    await agent({ PUBSUB_TOPIC: DEPLOYMENT, K8S_DEPLOYMENT_NAME: 'helm-service' }, replicaB);
    await agent({ PUBSUB_TOPIC: DEPLOYMENT, K8S_DEPLOYMENT_NAME: 'jmeter-service' }, other);
    const nats = await client();
    const ids = Array.from({ length: 20 }, (_, i) => `group-${i}`);
    for (const id of ids) nats.publish(DEPLOYMENT, JSON.stringify(triggered(id)));
    await nats.flush();
    await other.received(ids.length);
    await until(() => replicaA.requests.length + replicaB.requests.length >= ids.length, { what: 'the replicas to get every event' });
    expect(new Set(other.ids())).to.deep.equal(new Set(ids));
    const replicas = [...replicaA.ids(), ...replicaB.ids()];
    expect(replicas).to.have.length(ids.length);
    expect(new Set(replicas)).to.deep.equal(new Set(ids));
  });

  it('Test_ForwardEventsToNATS (spec §14.4): publishes a relayed event on the subject equal to its type, unchanged', async () => {
    const to = await recipient();
    const running = await agent({ PUBSUB_TOPIC: DEPLOYMENT }, to);
    const seen: Array<Record<string, unknown>> = [];
    await collect(await client(), 'sh.keptn.>', seen);
    const event = { ...started('relayed-1'), time: '2026-01-01T00:00:01.000Z' };
    const response = await relay(running, event);
    expect(response.status).to.equal(202);
    await until(() => seen.length === 1, { what: 'the relayed event on NATS' });
    expect(seen[0]).to.deep.equal({ subject: 'sh.keptn.event.deployment.started', ...event });
  });

  it('relays over HTTP instead when HTTP_EVENT_FORWARDING_ENDPOINT is set, as in 0.8.0', async () => {
    const to = await recipient();
    const api = await recipient();
    const seen: Array<Record<string, unknown>> = [];
    await collect(await client(), 'sh.keptn.>', seen);
    const running = await agent({ PUBSUB_TOPIC: DEPLOYMENT, HTTP_EVENT_FORWARDING_ENDPOINT: `http://127.0.0.1:${api.port}/v1/event` }, to);
    expect((await relay(running, started('over-http-1'))).status).to.equal(202);
    await api.received(1);
    expect(api.requests[0]!.path).to.equal('/v1/event');
    expect(api.requests[0]!.json().id).to.equal('over-http-1');
    expect(seen).to.deep.equal([]);
  });

  it('loses nothing across a NATS server restart: relayed events wait in the outbox, subscriptions come back', async () => {
    // The agent reaches the server through a cable the test plugs in only once its own subscriber is back.
    const cable = await TcpCable.start(server.port);
    closers.push(() => cable.close());
    const dir = await mkdtemp(join(tmpdir(), 'nats-e2e-'));
    closers.push(() => rm(dir, { recursive: true, force: true }));
    const to = await recipient();
    const running = await agent({ PUBSUB_URL: `nats://127.0.0.1:${cable.port}`, PUBSUB_TOPIC: DEPLOYMENT, STATE_DIR: dir }, to);
    const seen: Array<Record<string, unknown>> = [];
    const before = await server.client();
    await collect(before, 'sh.keptn.event.deployment.started', seen);

    for (let i = 0; i < 10; i++) expect((await relay(running, started(`before-${i}`))).status).to.equal(202);
    await publish(before, triggered('triggered-before'));
    await until(() => seen.length === 10, { what: 'the events relayed before the restart' });
    await to.received(1);

    await server.down();
    cable.unplug();
    await before.close();
    // Events relayed once the agent knows NATS is gone (one published just before would be sent again: a duplicate).
    await until(() => running.logs.text().includes('lost the connection to NATS'), { what: 'the agent to notice the outage' });
    for (let i = 0; i < 10; i++) expect((await relay(running, started(`during-${i}`))).status).to.equal(202);
    expect(await metric(running, 'keptn_distributor_outbox_depth')).to.equal(10);

    await server.up();
    const after = await client();
    await collect(after, 'sh.keptn.event.deployment.started', seen);
    cable.plug();
    await until(() => seen.length >= 20, { timeout: 15_000, what: 'the events relayed during the outage' });
    // Each event once (different Keptn contexts: no order among them).
    expect(seen.map((event) => event.id).sort()).to.deep.equal([
      ...Array.from({ length: 10 }, (_, i) => `before-${i}`), ...Array.from({ length: 10 }, (_, i) => `during-${i}`),
    ].sort());
    expect(running.logs.text()).to.match(/connected to NATS again|reconnected to NATS/);
    // The agent published after it reconnected, so its subscription is registered again by now.
    await publish(after, triggered('triggered-after'));
    await to.received(2);
    expect(to.ids()).to.deep.equal(['triggered-before', 'triggered-after']);
  });
});

describe('e2e: NATS mode, the in-cluster services', function () {
  this.timeout(20_000);
  // The in-cluster host names do not resolve here: nock answers for them, and only for them.
  useNock();
  let server: NatsServer;
  let running: RunningAgent | undefined;

  before(async () => {
    server = await NatsServer.start();
  });
  after(async () => {
    await server.close();
  });
  afterEach(async () => {
    await running?.stop();
    running = undefined;
    nock.cleanAll();
  });

  it('registers with the shipyard-controller inside the cluster, location control-plane, without a token (spec §9, §11.3)', async () => {
    let body: Record<string, unknown> | undefined;
    let token: unknown;
    const scope = nock('http://shipyard-controller:8080')
      .post('/v1/uniform/registration', (sent: Record<string, unknown>) => { body = sent; return true; })
      .reply(function () {
        token = this.req.headers['x-token'];
        return [200, { id: 'in-cluster-id' }];
      });
    running = await startTestAgent({
      ...server.env, PUBSUB_TOPIC: 'sh.keptn.>', DISABLE_REGISTRATION: 'false', KEPTN_API_TOKEN: 'not-for-in-cluster',
      K8S_DEPLOYMENT_NAME: 'jmeter-service', K8S_NAMESPACE: 'keptn',
    });
    await until(() => scope.isDone(), { what: 'the registration' });
    expect((body?.metadata as Record<string, unknown>).location).to.equal('control-plane');
    expect(body?.name).to.equal('jmeter-service');
    expect(token).to.equal(undefined);
  });

  it('proxies each prefix to its in-cluster service, without a token (spec §7.3.2)', async () => {
    const datastore = nock('http://mongodb-datastore:8080', { badheaders: ['x-token'] })
      .get('/event/type/sh.keptn.event.evaluation.finished').query({ pageSize: '1' })
      .reply(200, { events: [] });
    const shipyard = nock('http://shipyard-controller:8080', { badheaders: ['x-token'] })
      .get('/v1/project/sockshop').reply(200, { projectName: 'sockshop' });
    running = await startTestAgent({ ...server.env, PUBSUB_TOPIC: 'sh.keptn.>', KEPTN_API_TOKEN: 'not-for-in-cluster' });
    const base = `http://127.0.0.1:${running.addresses.proxyPort}`;
    const events = await fetch(`${base}/mongodb-datastore/event/type/sh.keptn.event.evaluation.finished?pageSize=1`);
    expect(events.status).to.equal(200);
    expect(await events.json()).to.deep.equal({ events: [] });
    const project = await fetch(`${base}/controlPlane/v1/project/sockshop`);
    expect(await project.json()).to.deep.equal({ projectName: 'sockshop' });
    expect(datastore.isDone() && shipyard.isDone()).to.equal(true);
  });
});
