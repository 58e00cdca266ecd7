import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import nock from 'nock';
import { loadConfig } from '../lib/config.ts';
import { KeptnApi, keptnApiOptions } from '../lib/keptn-api.ts';
import { createMetrics, type Metrics } from '../lib/metrics.ts';
import {
  MAX_REGISTRATION_RETRY_AFTER_MS, Registration, integrationIdOf, integrationIdOf1x, integrationOf, registrationRetryDelay, type Integration,
} from '../lib/registration.ts';
import { logSink, type LogSink } from './helpers/log-sink.ts';
import { until } from './helpers/until.ts';
import { useNock } from './helpers/nock-scope.ts';

const ENDPOINT = 'https://keptn.example.com';
const TOKEN = 'registration-token';
const REGISTRATION_PATH = '/api/controlPlane/v1/uniform/registration';
const TOPICS = 'sh.keptn.event.deployment.triggered,sh.keptn.event.release.triggered';

function configOf(env: Record<string, string> = {}) {
  return loadConfig({ env: { KEPTN_API_ENDPOINT: `${ENDPOINT}/api`, KEPTN_API_TOKEN: TOKEN, PUBSUB_TOPIC: TOPICS, ...env } });
}

/** The settings of the reference's TestControlPlaneRegister (spec §14.2). */
const REFERENCE_ENV = {
  K8S_DEPLOYMENT_NAME: 'k8s-deployment',
  K8S_NAMESPACE: 'k8s-namespace',
  K8S_POD_NAME: 'k8s-podname',
  K8S_NODE_NAME: 'k8s-nodename',
  VERSION: '2.0',
  DISTRIBUTOR_VERSION: '1.0',
  LOCATION: 'location',
  PROJECT_FILTER: 'p-filter',
  STAGE_FILTER: 's-filter',
  SERVICE_FILTER: 'sv-filter',
};

interface Fixture {
  registration: Registration;
  logs: LogSink;
  metrics: Metrics;
}

function fixture({ env = REFERENCE_ENV, intervalMs = 10, unregisterOnShutdown = false }: {
  env?: Record<string, string>; intervalMs?: number; unregisterOnShutdown?: boolean;
} = {}): Fixture {
  const config = configOf(env);
  const logs = logSink({ secrets: [TOKEN] });
  const metrics = createMetrics({ defaultMetrics: false });
  const registration = new Registration({
    api: new KeptnApi(keptnApiOptions(config, 2_000)),
    integration: integrationOf(config, 'vm-host'),
    intervalMs,
    unregisterOnShutdown,
    logger: logs.logger,
    metrics,
    random: () => 0.5,
  });
  return { registration, logs, metrics };
}

async function gauge(metrics: Metrics): Promise<number | undefined> {
  return (await metrics.registered.get()).values[0]?.value;
}

/** The lines at info level and above, as `level message`. */
function stateLines(logs: LogSink): string[] {
  return logs.entries().filter((entry) => entry.level !== 'debug').map((entry) => `${String(entry.level)} ${String(entry.message)}`);
}

describe('registration', () => {
  let running: Registration | undefined;

  useNock();
  afterEach(async () => {
    await running?.stop(AbortSignal.timeout(1_000));
    running = undefined;
    const done = nock.isDone();
    const pending = nock.pendingMocks();
    nock.cleanAll();
    expect(done, `requests not made: ${pending.join(', ')}`).to.equal(true);
  });

  describe('the registration body (spec §9.2)', () => {
    it('is the 0.8.x Integration, every key present, filters as raw comma strings', () => {
      const integration = integrationOf(configOf({ ...REFERENCE_ENV, PROJECT_FILTER: 'a, b', SERVICE_FILTER: '' }), 'vm-host');
      expect(integration).to.deep.equal({
        id: '',
        name: 'k8s-deployment',
        metadata: {
          hostname: 'k8s-nodename',
          integrationversion: '2.0',
          distributorversion: '1.0',
          location: 'location',
          kubernetesmetadata: { namespace: 'k8s-namespace', podname: 'k8s-podname', deploymentname: 'k8s-deployment' },
        },
        subscription: {
          topics: ['sh.keptn.event.deployment.triggered', 'sh.keptn.event.release.triggered'],
          status: '',
          filter: { project: 'a,b', stage: 's-filter', service: '' },
        },
        subscriptions: [
          { id: '', event: 'sh.keptn.event.deployment.triggered', filter: { projects: ['a', 'b'], stages: ['s-filter'], services: [] } },
          { id: '', event: 'sh.keptn.event.release.triggered', filter: { projects: ['a', 'b'], stages: ['s-filter'], services: [] } },
        ],
      } satisfies Integration);
    });

    it('registers a VM without K8S_* too: name from INTEGRATION_NAME, namespace and hostname from the host name, location remote-execution-plane', () => {
      const integration = integrationOf(configOf({ INTEGRATION_NAME: 'my-vm-service' }), 'vm-host');
      expect(integration.name).to.equal('my-vm-service');
      expect(integration.metadata.hostname).to.equal('vm-host');
      expect(integration.metadata.location).to.equal('remote-execution-plane');
      expect(integration.metadata.kubernetesmetadata).to.deep.equal({ namespace: 'vm-host', podname: '', deploymentname: '' });
    });

    it('without INTEGRATION_NAME the name is the host name; K8S_DEPLOYMENT_NAME wins over INTEGRATION_NAME', () => {
      expect(integrationOf(configOf({}), 'vm-host').name).to.equal('vm-host');
      expect(integrationOf(configOf({ INTEGRATION_NAME: 'vm', K8S_DEPLOYMENT_NAME: 'deployment' }), 'vm-host').name).to.equal('deployment');
    });

    it('the control plane’s id is the SHA-1 of name-namespace-filters (spec §9.3 example)', () => {
      const integration = integrationOf(configOf({ K8S_DEPLOYMENT_NAME: 'my-service', K8S_NAMESPACE: 'keptn' }));
      expect(integrationIdOf(integration)).to.equal('adf006ef73806b4c4ebf87307e030ad6fec90d3f');
    });

    it('the 1.x id of a new integration is the SHA-1 of name-namespace-nodename', () => {
      const first = integrationOf(configOf({ K8S_DEPLOYMENT_NAME: 'my-service', K8S_NAMESPACE: 'keptn', K8S_NODE_NAME: 'plane-a' }));
      const second = integrationOf(configOf({ K8S_DEPLOYMENT_NAME: 'my-service', K8S_NAMESPACE: 'keptn', K8S_NODE_NAME: 'plane-b' }));
      expect(integrationIdOf1x(first)).to.equal(createHash('sha1').update('my-service-keptn-plane-a').digest('hex'));
      expect(integrationIdOf1x(second)).to.not.equal(integrationIdOf1x(first));
    });
  });

  describe('reference test cases (spec §14.2)', () => {
    it('TestControlPlaneRegister: POSTs the integration to …/uniform/registration and keeps the id, twice in a row', async () => {
      const { registration } = fixture();
      const expected = {
        id: '',
        name: 'k8s-deployment',
        metadata: {
          hostname: 'k8s-nodename', integrationversion: '2.0', distributorversion: '1.0', location: 'location',
          kubernetesmetadata: { namespace: 'k8s-namespace', podname: 'k8s-podname', deploymentname: 'k8s-deployment' },
        },
        subscription: { topics: TOPICS.split(','), status: '', filter: { project: 'p-filter', stage: 's-filter', service: 'sv-filter' } },
        subscriptions: TOPICS.split(',').map((event) => ({
          id: '', event, filter: { projects: ['p-filter'], stages: ['s-filter'], services: ['sv-filter'] },
        })),
      };
      nock(ENDPOINT, { reqheaders: { 'x-token': TOKEN, 'content-type': 'application/json' } })
        .post(REGISTRATION_PATH, expected).times(2).reply(200, { id: 'abcde' });
      expect(await registration.registerOnce()).to.equal('abcde');
      expect(await registration.registerOnce()).to.equal('abcde');
      expect(registration.id).to.equal('abcde');
    });

    it('TestControlPlaneRegisterFails: a 500 with an empty body is an error and no id', async () => {
      const { registration } = fixture();
      nock(ENDPOINT).post(REGISTRATION_PATH).reply(500, '');
      let failed = false;
      await registration.registerOnce().catch(() => { failed = true; });
      expect(failed).to.equal(true);
      expect(registration.id).to.equal(undefined);
    });

    it('TestControlPlaneUnregister: DELETEs …/registration/<id> after a registration', async () => {
      const { registration } = fixture();
      nock(ENDPOINT).post(REGISTRATION_PATH).reply(200, { id: 'abcde' });
      nock(ENDPOINT, { reqheaders: { 'x-token': TOKEN } }).delete(`${REGISTRATION_PATH}/abcde`).reply(200, {});
      await registration.registerOnce();
      await registration.unregister();
    });

    it('TestControlPlaneUnregisterFails: a 502 to the DELETE is an error', async () => {
      const { registration } = fixture();
      nock(ENDPOINT).post(REGISTRATION_PATH).reply(200, { id: 'abcde' });
      nock(ENDPOINT).delete(`${REGISTRATION_PATH}/abcde`).reply(502, 'Bad Gateway');
      await registration.registerOnce();
      const error = await registration.unregister().then(() => undefined, (e: unknown) => e);
      expect(error).to.be.instanceOf(Error);
      expect((error as Error).message).to.match(/^502/);
    });

    it('TestControlPlaneUnregisterWithoutPreviousRegister: an error, and no request', async () => {
      const { registration } = fixture();
      const deletion = nock(ENDPOINT).delete(/.*/).reply(200, {});
      const error = await registration.unregister().then(() => undefined, (e: unknown) => e);
      expect((error as Error).message).to.equal('cannot unregister: the agent never registered');
      expect(deletion.isDone()).to.equal(false);
      nock.cleanAll();
    });
  });

  describe('the loop', () => {
    it('registers at once at start, then every interval; logs "registered as <id>" once and publishes registered=1', async () => {
      const { registration, logs, metrics } = fixture();
      const scope = nock(ENDPOINT).post(REGISTRATION_PATH).times(3).reply(200, { id: 'abcde' });
      running = registration;
      await registration.start();
      await until(() => scope.isDone() && logs.entries().filter((entry) => entry.message === 're-registered').length === 2,
        { what: 'three registrations' });
      expect(registration.id).to.equal('abcde');
      expect(await gauge(metrics)).to.equal(1);
      await registration.stop(AbortSignal.timeout(1_000));
      expect(stateLines(logs)).to.deep.equal(['info registered as abcde']);
    });

    it('start does not wait for the control plane, and a stop aborts a registration in flight without a failure line', async () => {
      // A control plane that takes the request and never answers.
      let reached!: () => void;
      const requested = new Promise<void>((resolve) => { reached = resolve; });
      const server = createServer(() => reached());
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      try {
        const config = configOf({ KEPTN_API_ENDPOINT: `http://127.0.0.1:${(server.address() as AddressInfo).port}/api` });
        const logs = logSink();
        const registration = new Registration({
          api: new KeptnApi(keptnApiOptions(config, 10_000)), integration: integrationOf(config), intervalMs: 10,
          unregisterOnShutdown: false, logger: logs.logger, metrics: createMetrics({ defaultMetrics: false }),
        });
        await registration.start();
        await requested;
        const started = Date.now();
        await registration.stop(AbortSignal.timeout(5_000));
        expect(Date.now() - started).to.be.below(1_000);
        expect(registration.id).to.equal(undefined);
        expect(stateLines(logs)).to.deep.equal([]);
      } finally {
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
      }
    });

    it('logs a failure once per change of state, and "registered again" once after failures', async () => {
      const { registration, logs, metrics } = fixture();
      const scope = nock(ENDPOINT)
        .post(REGISTRATION_PATH).times(2).reply(500, { code: 500, message: 'db down' })
        .post(REGISTRATION_PATH).reply(503, 'Service Unavailable')
        .post(REGISTRATION_PATH).reply(200, { id: 'abcde' })
        .post(REGISTRATION_PATH).times(2).reply(500, { code: 500, message: 'db down' })
        .post(REGISTRATION_PATH).times(2).reply(200, { id: 'abcde' });
      running = registration;
      await registration.start();
      await until(() => scope.isDone(), { what: 'every answer used' });
      await registration.stop(AbortSignal.timeout(1_000));
      expect(stateLines(logs)).to.deep.equal([
        'warn registration failing: 500: db down',
        'warn registration failing: 503: Service Unavailable',
        'info registered as abcde',
        'warn registration failing: 500: db down',
        'info registered again',
      ]);
      expect(await gauge(metrics)).to.equal(1);
    });

    it('a rejected token is an error line, registered=0, and the loop keeps trying', async () => {
      const { registration, logs, metrics } = fixture();
      const scope = nock(ENDPOINT).post(REGISTRATION_PATH).times(3).reply(401, { code: 401, message: 'invalid token' });
      running = registration;
      await registration.start();
      await until(() => scope.isDone(), { what: 'three attempts' });
      await registration.stop(AbortSignal.timeout(1_000));
      expect(stateLines(logs)).to.deep.equal(['error registration failing: the control plane rejects the token (401: invalid token)']);
      expect(await gauge(metrics)).to.equal(0);
      expect(logs.text()).not.to.include(TOKEN);
    });

    it('an unreachable control plane is a failure too, logged once', async () => {
      const config = configOf({ KEPTN_API_ENDPOINT: 'http://127.0.0.1:1/api' });
      const logs = logSink();
      const registration = new Registration({
        api: new KeptnApi(keptnApiOptions(config, 2_000)), integration: integrationOf(config), intervalMs: 10,
        unregisterOnShutdown: false, logger: logs.logger, metrics: createMetrics({ defaultMetrics: false }),
      });
      running = registration;
      await registration.start();
      await until(() => logs.entries().filter((entry) => entry.message === 'registration failed again').length >= 2, { what: 'three attempts' });
      await registration.stop(AbortSignal.timeout(1_000));
      const warnings = stateLines(logs);
      expect(warnings).to.have.length(1);
      expect(warnings[0]).to.match(/^warn registration failing: .*ECONNREFUSED/);
    });
  });

  describe('stop', () => {
    it('UNREGISTER_ON_SHUTDOWN=true: DELETEs the registration once the loop ended', async () => {
      const { registration, logs, metrics } = fixture({ unregisterOnShutdown: true, intervalMs: 60_000 });
      nock(ENDPOINT).post(REGISTRATION_PATH).reply(200, { id: 'abcde' });
      const deletion = nock(ENDPOINT, { reqheaders: { 'x-token': TOKEN } }).delete(`${REGISTRATION_PATH}/abcde`).reply(200, {});
      await registration.start();
      await until(() => registration.id !== undefined, { what: 'the registration' });
      await registration.stop(AbortSignal.timeout(1_000));
      expect(deletion.isDone()).to.equal(true);
      expect(await gauge(metrics)).to.equal(0);
      expect(stateLines(logs)).to.deep.equal(['info registered as abcde', 'info unregistered']);
    });

    it('UNREGISTER_ON_SHUTDOWN=false (the default): no DELETE', async () => {
      const { registration } = fixture({ intervalMs: 60_000 });
      nock(ENDPOINT).post(REGISTRATION_PATH).reply(200, { id: 'abcde' });
      const deletion = nock(ENDPOINT).delete(/.*/).reply(200, {});
      await registration.start();
      await until(() => registration.id !== undefined, { what: 'the registration' });
      await registration.stop(AbortSignal.timeout(1_000));
      expect(deletion.isDone()).to.equal(false);
      nock.cleanAll();
    });

    it('UNREGISTER_ON_SHUTDOWN=true but never registered: a warning and no request', async () => {
      const { registration, logs } = fixture({ unregisterOnShutdown: true, intervalMs: 60_000 });
      const scope = nock(ENDPOINT).post(REGISTRATION_PATH).reply(500, '');
      const deletion = nock(ENDPOINT).delete(/.*/).reply(200, {});
      await registration.start();
      await until(() => scope.isDone(), { what: 'the failed attempt' });
      await registration.stop(AbortSignal.timeout(1_000));
      expect(deletion.isDone()).to.equal(false);
      expect(stateLines(logs).at(-1)).to.equal('warn not unregistering: the agent never registered');
      nock.cleanAll();
    });

    it('a failed DELETE is a warning, not an error of the shutdown', async () => {
      const { registration, logs } = fixture({ unregisterOnShutdown: true, intervalMs: 60_000 });
      nock(ENDPOINT).post(REGISTRATION_PATH).reply(200, { id: 'abcde' });
      nock(ENDPOINT).delete(`${REGISTRATION_PATH}/abcde`).reply(502, 'Bad Gateway');
      await registration.start();
      await until(() => registration.id !== undefined, { what: 'the registration' });
      await registration.stop(AbortSignal.timeout(1_000));
      const last = logs.entries().at(-1);
      expect(last?.level).to.equal('warn');
      expect(last?.message).to.equal('could not unregister');
      expect(last?.error).to.deep.equal({ status: 502, message: '502: Bad Gateway' });
    });
  });

  describe('retry delay after failures', () => {
    const cases: Array<[string, number, number, number | undefined, number, number]> = [
      ['first retry after 1 s (jitter 0 keeps 3/4)', 1, 10_000, undefined, 0, 750],
      ['first retry after 1 s (no jitter)', 1, 10_000, undefined, 1, 1_000],
      ['doubles per failure', 3, 10_000, undefined, 1, 4_000],
      ['never beyond the interval', 10, 10_000, undefined, 1, 10_000],
      ['a short interval caps it', 1, 20, undefined, 1, 20],
      ['Retry-After wins when longer', 1, 10_000, 30_000, 1, 30_000],
      ['Retry-After is bounded', 1, 10_000, 3_600_000, 1, MAX_REGISTRATION_RETRY_AFTER_MS],
      ['a shorter Retry-After does not shorten the backoff', 4, 10_000, 1_000, 1, 8_000],
    ];
    for (const [name, failures, interval, retryAfter, random, expected] of cases) {
      it(name, () => {
        expect(registrationRetryDelay(failures, interval, retryAfter, random)).to.equal(expected);
      });
    }
  });
});
