/**
 * Graceful shutdown of the in-process agent (the SIGTERM path): order of the
 * parts, error logs flushed, unregistering only when asked, health last, and
 * the grace period respected.
 */
import { expect } from 'chai';
import { startEmulator, type AnsweredRequest, type Emulator } from '../../lib/emulator/server.ts';
import { Recipient } from '../helpers/recipient.ts';
import { startTestAgent, type RunningAgent } from '../helpers/start-agent.ts';
import { until } from '../helpers/until.ts';

const TOKEN = 'e2e-shutdown-token';
const TOPIC = 'sh.keptn.event.deployment.triggered';

describe('e2e: graceful shutdown', () => {
  let emulator: Emulator;
  let recipient: Recipient;
  let agent: RunningAgent | undefined;
  let answered: AnsweredRequest[];

  beforeEach(async () => {
    emulator = await startEmulator({ port: 0, token: TOKEN });
    recipient = await Recipient.start();
    answered = [];
    emulator.on('request', (request) => answered.push(request));
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
      PUBSUB_TOPIC: TOPIC,
      DISABLE_REGISTRATION: 'false',
      REGISTRATION_INTERVAL: '20ms',
      ...recipient.env,
      ...env,
    });
  }

  async function registered(running: RunningAgent): Promise<string> {
    await until(() => running.logs.entries().some((entry) => String(entry.message).startsWith('registered as')), { what: 'the registration' });
    return emulator.registrations()[0]?.id ?? '';
  }

  async function relayFailure(running: RunningAgent, message: string): Promise<void> {
    const response = await fetch(`http://127.0.0.1:${running.addresses.proxyPort}/event`, {
      method: 'POST',
      headers: { 'content-type': 'application/cloudevents+json' },
      body: JSON.stringify({
        specversion: '1.0', id: `finished-${message}`, source: 'e2e-service', type: 'sh.keptn.event.deployment.finished',
        shkeptncontext: 'ctx', triggeredid: 'trig', data: { project: 'p', stage: 's', service: 'c', status: 'errored', result: 'fail', message },
      }),
    });
    await response.arrayBuffer();
    expect(response.status).to.equal(202);
  }

  it('flushes pending error logs at stop, without waiting for the flush interval', async () => {
    agent = await start();
    const id = await registered(agent);
    await relayFailure(agent, 'first');
    await relayFailure(agent, 'second');
    expect(emulator.logs()).to.deep.equal([]);
    await agent.stop();
    expect(emulator.logs().map((entry) => [entry.integrationid, entry.message])).to.deep.equal([[id, 'first'], [id, 'second']]);
  });

  it('stops in order: polling first, then logs are flushed, then the registration is deleted (UNREGISTER_ON_SHUTDOWN=true)', async () => {
    agent = await start({ UNREGISTER_ON_SHUTDOWN: 'true' });
    const id = await registered(agent);
    await relayFailure(agent, 'at shutdown');
    await emulator.waitFor(() => answered.some((request) => request.key === 'poll'), { what: 'a poll' });
    await agent.stop();
    const keys = answered.map((request) => request.key);
    const logAt = keys.indexOf('log');
    const unregisterAt = keys.indexOf('unregister');
    expect(logAt, 'the logs were sent').to.be.above(-1);
    expect(unregisterAt, 'the registration was deleted after the logs were sent').to.be.above(logAt);
    expect(keys.slice(logAt), 'no poll once the flush began').not.to.include('poll');
    expect(keys.slice(unregisterAt), 'no registration after the DELETE').not.to.include('register');
    expect(answered[unregisterAt]).to.deep.include({ method: 'DELETE', path: `/api/controlPlane/v1/uniform/registration/${id}`, status: 200 });
    expect(emulator.registrations()).to.deep.equal([]);
    expect(agent.logs.entries().some((entry) => entry.message === 'unregistered')).to.equal(true);
  });

  it('UNREGISTER_ON_SHUTDOWN=false (the default): no DELETE, the registration stays', async () => {
    agent = await start();
    await registered(agent);
    await agent.stop();
    expect(emulator.requests.unregister).to.equal(0);
    expect(emulator.registrations()).to.have.length(1);
  });

  it('while it drains, /health still answers 200 and /ready 503 "agent: shutting down"; the health server goes last', async () => {
    agent = await start({ DISABLE_REGISTRATION: 'true' });
    const health = `http://127.0.0.1:${agent.addresses.healthPort}`;
    await until(async () => (await fetch(`${health}/ready`)).status === 200, { what: '/ready 200' });
    await relayFailure(agent, 'held');
    // The log API takes the entries at once and answers late: shutdown waits in the error-log flush.
    emulator.faults.delay('log', 60_000);
    const stopped = agent.stop();
    await emulator.waitFor(() => emulator.logs().length === 1, { what: 'the flush at shutdown' });
    const [live, ready] = await Promise.all([fetch(`${health}/health`), fetch(`${health}/ready`)]);
    expect(live.status).to.equal(200);
    expect(ready.status).to.equal(503);
    expect(await ready.json()).to.deep.include({ status: 'not ready' }).and.have.property('notReady').that.includes('agent: shutting down');
    await live.arrayBuffer();
    emulator.faults.clear('log');
    await emulator.stop();
    await stopped;
    const refused = await fetch(`${health}/health`).then(() => 'answered', () => 'refused');
    expect(refused).to.equal('refused');
  });

  it('gives up at SHUTDOWN_TIMEOUT: a log API that never answers does not hold the shutdown, and the entries are counted lost', async () => {
    agent = await start({ DISABLE_REGISTRATION: 'true', SHUTDOWN_TIMEOUT: '200ms' });
    await relayFailure(agent, 'never sent');
    emulator.faults.delay('log', 60_000);
    const started = Date.now();
    await agent.stop();
    expect(Date.now() - started).to.be.below(2_000);
    const lost = (await agent.metrics.logEntries.get()).values.find((value) => value.labels.outcome === 'lost')?.value;
    expect(lost).to.equal(1);
    expect(agent.logs.entries().some((entry) => entry.level === 'error'
      && entry.message === '1 error log entries could not be sent before shutdown and are lost')).to.equal(true);
  });
});
