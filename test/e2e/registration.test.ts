/**
 * Registration and error-log forwarding end to end: the real agent against
 * the control-plane emulator, events posted to the agent's relay as a
 * Keptn-service would.
 */
import { hostname } from 'node:os';
import { expect } from 'chai';
import { startEmulator, type Emulator } from '../../lib/emulator/server.ts';
import { integrationIdOf, integrationOf } from '../../lib/registration.ts';
import { Recipient } from '../helpers/recipient.ts';
import { startTestAgent, type RunningAgent } from '../helpers/start-agent.ts';
import { until } from '../helpers/until.ts';

const TOKEN = 'e2e-registration-token';
const TOPICS = 'sh.keptn.event.deployment.triggered,sh.keptn.event.test.triggered';

describe('e2e: registration and error logs', () => {
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

  function start(env: Record<string, string> = {}): Promise<RunningAgent> {
    return startTestAgent({
      KEPTN_API_ENDPOINT: `${emulator.url}/api`,
      KEPTN_API_TOKEN: TOKEN,
      PUBSUB_TOPIC: TOPICS,
      DISABLE_REGISTRATION: 'false',
      REGISTRATION_INTERVAL: '20ms',
      ...recipient.env,
      ...env,
    });
  }

  /** Posts an event to the agent's relay, as the recipient would. */
  async function relay(running: RunningAgent, event: Record<string, unknown>): Promise<number> {
    const response = await fetch(`http://127.0.0.1:${running.addresses.proxyPort}/event`, {
      method: 'POST',
      headers: { 'content-type': 'application/cloudevents+json' },
      body: JSON.stringify({ specversion: '1.0', source: 'e2e-service', id: `e2e-${Math.random()}`, ...event }),
    });
    await response.arrayBuffer();
    return response.status;
  }

  async function metric(running: RunningAgent, name: string): Promise<string> {
    const response = await fetch(`http://127.0.0.1:${running.addresses.healthPort}/metrics`);
    const text = await response.text();
    return text.split('\n').filter((line) => line.startsWith(name)).join('\n');
  }

  it('registers at start with the 0.8.x body, and the control plane’s id is the one predicted (spec §9.2, §9.3)', async () => {
    const env = {
      K8S_DEPLOYMENT_NAME: 'helm-service', K8S_NAMESPACE: 'keptn', K8S_POD_NAME: 'helm-service-abc', K8S_NODE_NAME: 'node-1',
      VERSION: '0.8.7', DISTRIBUTOR_VERSION: '9.9.9', PROJECT_FILTER: 'sockshop, podtato', STAGE_FILTER: 'dev',
    };
    agent = await start(env);
    await emulator.waitFor(() => emulator.registrations().length === 1, { what: 'the registration' });
    const [stored] = emulator.registrations();
    const { lastseen, ...metadata } = stored?.metadata ?? { lastseen: '' };
    expect(lastseen).to.be.a('string');
    expect(stored?.name).to.equal('helm-service');
    expect(metadata).to.deep.equal({
      hostname: 'node-1', integrationversion: '0.8.7', distributorversion: '9.9.9', location: 'remote-execution-plane',
      kubernetesmetadata: { namespace: 'keptn', podname: 'helm-service-abc', deploymentname: 'helm-service' },
    });
    expect(stored?.subscription).to.deep.equal({
      topics: TOPICS.split(','), status: '', filter: { project: 'sockshop,podtato', stage: 'dev', service: '' },
    });
    const predicted = integrationIdOf(integrationOf(agent.config));
    expect(stored?.id).to.equal(predicted);
    await until(() => agent?.logs.entries().some((entry) => entry.message === `registered as ${predicted}`) === true, { what: 'the log line' });
    const registeredLine = agent.logs.entries().find((entry) => entry.message === `registered as ${predicted}`);
    expect(registeredLine).to.deep.include({ level: 'info', component: 'registration', integrationId: predicted });
  });

  it('a VM without K8S_* registers too: INTEGRATION_NAME, the host name as namespace and hostname', async () => {
    agent = await start({ INTEGRATION_NAME: 'vm-service' });
    await emulator.waitFor(() => emulator.registrations().length === 1, { what: 'the registration' });
    const [stored] = emulator.registrations();
    expect(stored?.name).to.equal('vm-service');
    expect(stored?.metadata).to.deep.include({ hostname: hostname() });
    expect(stored?.metadata.kubernetesmetadata).to.deep.equal({ namespace: hostname(), podname: '', deploymentname: '' });
  });

  it('re-registers every REGISTRATION_INTERVAL, and publishes keptn_distributor_registered 1', async () => {
    agent = await start();
    await emulator.waitFor(() => emulator.requests.register >= 3, { what: 'three registrations' });
    expect(emulator.registrations()).to.have.length(1);
    expect(await metric(agent, 'keptn_distributor_registered')).to.equal('keptn_distributor_registered 1');
    expect(agent.logs.entries().filter((entry) => String(entry.message).startsWith('registered as'))).to.have.length(1);
  });

  it('a failing control plane does not hold start-up back; failures are logged once, then "registered again"', async () => {
    emulator.faults.fail('register', { times: 3, status: 503 });
    agent = await start();
    await until(() => agent?.logs.entries().some((entry) => String(entry.message).startsWith('registered as')) === true,
      { what: 'the registration after the failures' });
    const lines = agent.logs.entries().filter((entry) => entry.component === 'registration' && entry.level !== 'debug');
    expect(lines.map((entry) => entry.message)).to.deep.equal([
      'registration failing: 503: fault injected by the keptn-distributor emulator',
      `registered as ${emulator.registrations()[0]?.id ?? ''}`,
    ]);
    emulator.faults.fail('register', { times: 2, status: 500 });
    await until(() => agent?.logs.entries().some((entry) => entry.message === 'registered again') === true, { what: 'registered again' });
  });

  // With KEPTN_API_VERSION=auto (or 1.x) polling waits for the heartbeat, which needs the registration (SubscriptionSet.pollable).
  it('KEPTN_API_VERSION=0.8: a registration that hangs holds back neither start-up nor /ready', async () => {
    emulator.faults.delay('register', 60_000);
    agent = await start({ KEPTN_API_VERSION: '0.8' });
    const ready = agent.addresses.healthPort;
    await until(async () => (await fetch(`http://127.0.0.1:${ready}/ready`)).status === 200, { what: '/ready 200' });
    expect(emulator.requests.register).to.equal(1);
    expect(agent.logs.entries().some((entry) => String(entry.message).startsWith('registered as'))).to.equal(false);
  });

  it('a rejected token is an error line and registered 0, but the agent runs on', async () => {
    agent = await start({ KEPTN_API_TOKEN: 'wrong-token' });
    await emulator.waitFor(() => emulator.requests.register >= 2, { what: 'two attempts' });
    const errors = agent.logs.entries().filter((entry) => entry.component === 'registration' && entry.level === 'error');
    expect(errors.map((entry) => entry.message)).to.deep.equal(['registration failing: the control plane rejects the token (401: invalid x-token)']);
    expect(await metric(agent, 'keptn_distributor_registered')).to.equal('keptn_distributor_registered 0');
    expect(agent.logs.text()).not.to.include('wrong-token');
  });

  it('DISABLE_REGISTRATION=true: no registration request at all', async () => {
    agent = await start({ DISABLE_REGISTRATION: 'true' });
    await emulator.waitFor(() => emulator.requests.poll >= 2, { what: 'two polls' });
    expect(emulator.requests.register).to.equal(0);
    expect(await metric(agent, 'keptn_distributor_registered')).to.equal('keptn_distributor_registered 0');
  });

  it('a failed .finished and a sh.keptn.log.error become log entries with the registration id (spec §8.2)', async () => {
    agent = await start();
    await emulator.waitFor(() => emulator.registrations().length === 1, { what: 'the registration' });
    const id = emulator.registrations()[0]?.id;
    expect(await relay(agent, {
      type: 'sh.keptn.event.deployment.finished', shkeptncontext: 'ctx-1', triggeredid: 'trig-1', time: '2021-07-26T10:15:30.123Z',
      data: { project: 'p', stage: 's', service: 'c', status: 'errored', result: 'fail', message: 'helm upgrade failed' },
    })).to.equal(202);
    expect(await relay(agent, {
      type: 'sh.keptn.event.deployment.finished', shkeptncontext: 'ctx-2', triggeredid: 'trig-2',
      data: { project: 'p', stage: 's', service: 'c', status: 'succeeded', result: 'pass' },
    })).to.equal(202);
    expect(await relay(agent, {
      type: 'sh.keptn.log.error', shkeptncontext: 'ctx-3', triggeredid: 'trig-3', time: '2021-07-26T10:16:00Z',
      data: { message: 'could not reach the cluster', task: 'deployment', integrationid: '' },
    })).to.equal(202);
    await agent.stop();
    expect(emulator.logs()).to.deep.equal([
      { integrationid: id, message: 'helm upgrade failed', time: '2021-07-26T10:15:30.123Z', shkeptncontext: 'ctx-1', task: 'deployment', triggeredid: 'trig-1' },
      { integrationid: id, message: 'could not reach the cluster', time: '2021-07-26T10:16:00Z', shkeptncontext: 'ctx-3', task: 'deployment', triggeredid: 'trig-3' },
    ]);
  });

  it('without registration, log entries are sent with an empty integrationid rather than lost', async () => {
    agent = await start({ DISABLE_REGISTRATION: 'true' });
    expect(await relay(agent, {
      type: 'sh.keptn.event.test.finished', shkeptncontext: 'ctx-1', triggeredid: 'trig-1',
      data: { project: 'p', stage: 's', service: 'c', status: 'succeeded', result: 'fail', message: '2 of 5 tests failed' },
    })).to.equal(202);
    await agent.stop();
    expect(emulator.logs().map((entry) => [entry.integrationid, entry.task, entry.message])).to.deep.equal([['', 'test', '2 of 5 tests failed']]);
  });
});
