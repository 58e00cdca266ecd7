import { expect } from 'chai';
import { Heartbeat, type HeartbeatOptions } from '../lib/heartbeat.ts';
import { KeptnApiError } from '../lib/keptn-api.ts';
import { createMetrics } from '../lib/metrics.ts';
import { SubscriptionSet, subscriptionsFromEnvironment } from '../lib/subscriptions.ts';
import { logSink, type LogSink } from './helpers/log-sink.ts';
import { until } from './helpers/until.ts';

const TYPE = 'sh.keptn.event.deployment.triggered';
const NONE = { projects: [], stages: [], services: [] };
const SEEDS = subscriptionsFromEnvironment([TYPE], NONE);
const integration = (subscriptions: object[]) => ({ id: 'int-1', name: 'svc', subscriptions });
const status = (code: number) => new KeptnApiError('status', `${code}: failing`, { status: code });

/** A heartbeat whose pings answer from `answers` in turn (an Error is thrown), the last one for ever. */
function fixture(answers: unknown[], options: Partial<HeartbeatOptions> = {}) {
  const logs: LogSink = logSink();
  const metrics = createMetrics({ defaultMetrics: false });
  const subscriptions = new SubscriptionSet(SEEDS, 'environment');
  const pinged: string[] = [];
  let registrations = 0;
  const heartbeat = new Heartbeat({
    api: {
      ping: async (id) => {
        pinged.push(id);
        const answer = answers.length > 1 ? answers.shift() : answers[0];
        if (answer instanceof Error) throw answer;
        return answer;
      },
    },
    registration: { id: 'int-1', registerOnce: async () => { registrations++; return 'int-1'; } },
    subscriptions, seeds: SEEDS, apiVersion: 'auto', intervalMs: 10, logger: logs.logger, metrics, random: () => 0.5,
    ...options,
  });
  return { heartbeat, logs, metrics, subscriptions, pinged, registrations: () => registrations };
}

const gauge = async (metrics: ReturnType<typeof createMetrics>, name: 'heartbeatOk' | 'subscriptions') => (await metrics[name].get()).values[0]?.value;

describe('heartbeat', () => {
  it('an integration in the answer means 1.x: its subscriptions replace the environment’s, logged once', async () => {
    const { heartbeat, logs, metrics, subscriptions } = fixture([integration([{ id: 's1', event: TYPE, filter: { projects: ['p'] } }])]);
    expect(await heartbeat.beatOnce()).to.equal('ok');
    expect(await heartbeat.beatOnce()).to.equal('ok');
    expect(heartbeat.generation).to.equal('1.x');
    expect(subscriptions.source).to.equal('control plane');
    expect(subscriptions.current).to.deep.equal([{ id: 's1', event: TYPE, filter: { projects: ['p'], stages: [], services: [] } }]);
    expect(logs.entries().filter((entry) => /detected|subscriptions from the control plane/.test(String(entry.message)))).to.have.length(2);
    expect(await gauge(metrics, 'heartbeatOk')).to.equal(1);
    expect(await gauge(metrics, 'subscriptions')).to.equal(1);
  });

  it('a control plane listing no subscription: PUBSUB_TOPIC seeds them, as the reference does', async () => {
    const { heartbeat, subscriptions } = fixture([integration([])]);
    await heartbeat.beatOnce();
    expect(subscriptions.current).to.equal(SEEDS);
    expect(subscriptions.source).to.equal('environment');
  });

  for (const code of [404, 405]) {
    it(`auto: ${code} to the first ping means a 0.8 control plane, the environment’s subscriptions stay and the loop ends`, async () => {
      const { heartbeat, logs, subscriptions, pinged } = fixture([status(code)]);
      await heartbeat.start();
      await until(() => heartbeat.generation !== undefined);
      await heartbeat.stop();
      expect(heartbeat.generation).to.equal('0.8');
      expect(pinged).to.have.length(1);
      expect(subscriptions.current).to.equal(SEEDS);
      expect(logs.entries().some((entry) => /^Keptn 0\.8 control plane detected/.test(String(entry.message)))).to.equal(true);
    });
  }

  it('once 1.x is known, a 404 means the integration was deleted: it registers again', async () => {
    const { heartbeat, registrations } = fixture([integration([]), status(404), integration([])]);
    expect(await heartbeat.beatOnce()).to.equal('ok');
    expect(await heartbeat.beatOnce()).to.equal('reregistered');
    expect(registrations()).to.equal(1);
    expect(heartbeat.generation).to.equal('1.x');
  });

  it('auto: a 404 carrying Keptn’s JSON error is a 1.x control plane that does not know the integration: it registers again', async () => {
    const unknown = new KeptnApiError('status', '404: integration not found', { status: 404, keptnBody: true });
    const { heartbeat, registrations } = fixture([unknown, integration([])]);
    expect(await heartbeat.beatOnce()).to.equal('reregistered');
    expect(heartbeat.generation, 'not taken for 0.8 for the rest of the run').to.equal('1.x');
    expect(registrations()).to.equal(1);
    expect(await heartbeat.beatOnce()).to.equal('ok');
  });

  it('a control plane that keeps forgetting the integration: re-registered with backoff, warned about once', async () => {
    const { heartbeat, registrations, logs } = fixture([integration([]), status(404)]);
    expect(await heartbeat.beatOnce()).to.equal('ok');
    expect(await heartbeat.beatOnce()).to.equal('reregistered');
    expect(await heartbeat.beatOnce()).to.equal('reregistered');
    expect(registrations()).to.equal(2);
    expect(heartbeat.failures, 'counted, so the beats back off').to.equal(2);
    expect(logs.entries().filter((entry) => String(entry.message).startsWith('the control plane no longer knows'))).to.have.length(1);
  });

  it('KEPTN_API_VERSION=1.x never decides 0.8: a 405 is a failure', async () => {
    const { heartbeat } = fixture([status(405)], { apiVersion: '1.x' });
    expect(await heartbeat.beatOnce()).to.equal('failed');
    expect(heartbeat.generation).to.equal('1.x');
  });

  it('failures keep the last subscriptions, are logged once per change of state, back off, and recovery is logged once', async () => {
    const waits: number[] = [];
    const answers = [integration([{ id: 's1', event: TYPE }]), status(503), status(503), status(503), status(502), integration([{ id: 's1', event: TYPE }])];
    const { heartbeat, logs, metrics, subscriptions } = fixture(answers, {
      sleep: async (ms) => { waits.push(ms); if (waits.length >= 6) heartbeat.stop().catch(() => undefined); },
    });
    await heartbeat.start();
    await until(() => waits.length >= 6);
    await heartbeat.stop();
    expect(subscriptions.current.map((subscription) => subscription.id)).to.deep.equal(['s1']);
    const failing = logs.entries().filter((entry) => /^heartbeat failing/.test(String(entry.message)));
    expect(failing).to.have.length(2);
    expect(logs.entries().filter((entry) => entry.message === 'heartbeat works again')).to.have.length(1);
    // 10 ms interval: 10 after success, then growing with the failures, back to 10 after the recovery.
    expect(waits[0]).to.equal(10);
    expect(waits[1]).to.be.greaterThan(10);
    expect(waits[3]).to.be.greaterThan(waits[1]!);
    expect(waits[5]).to.equal(10);
    expect(heartbeat.failures).to.equal(0);
    expect(await gauge(metrics, 'heartbeatOk')).to.equal(1);
  });

  it('an unreachable control plane at start decides nothing: the environment’s subscriptions are polled meanwhile', async () => {
    const { heartbeat, subscriptions, metrics } = fixture([new KeptnApiError('unreachable', 'connect ECONNREFUSED', { code: 'ECONNREFUSED' })]);
    expect(await heartbeat.beatOnce()).to.equal('failed');
    expect(heartbeat.generation).to.equal(undefined);
    expect(subscriptions.current).to.equal(SEEDS);
    expect(await gauge(metrics, 'heartbeatOk')).to.equal(0);
  });

  it('waits for the registration’s id before the first ping', async () => {
    const { heartbeat, pinged } = fixture([integration([])], { registration: { id: undefined, registerOnce: async () => 'x' } });
    expect(await heartbeat.beatOnce()).to.equal('waiting');
    expect(pinged).to.deep.equal([]);
  });
});
