import { Agent, request as httpRequest } from 'node:http';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { expect } from 'chai';
import { HealthServer } from '../lib/health.ts';
import { createMetrics, type Metrics } from '../lib/metrics.ts';
import { Readiness } from '../lib/readiness.ts';
import { logSink } from './helpers/log-sink.ts';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One request on a fresh connection (HEAD and odd methods included, which fetch makes awkward). */
function call(port: number, method: string, path: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, method, path, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => { body += chunk; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('health server', () => {
  let server: HealthServer | undefined;
  let readiness: Readiness;
  let metrics: Metrics;
  let port: number;

  async function startHealth(options: { metrics?: Metrics; details?: () => Record<string, unknown> } = {}): Promise<HealthServer> {
    readiness = new Readiness();
    metrics = options.metrics ?? createMetrics({ defaultMetrics: false });
    server = new HealthServer({ port: 0, readiness, metrics, logger: logSink().logger, ...(options.details && { details: options.details }) });
    await server.start();
    port = server.port ?? 0;
    return server;
  }

  afterEach(async () => {
    await server?.stop(AbortSignal.timeout(1_000));
    server = undefined;
  });

  it('GET /health → 200 {"status":"OK"} as JSON (the reference’s answer, which probes expect)', async () => {
    await startHealth();
    const answer = await call(port, 'GET', '/health');
    expect(answer.status).to.equal(200);
    expect(answer.headers['content-type']).to.equal('application/json');
    expect(JSON.parse(answer.body)).to.deep.equal({ status: 'OK' });
  });

  it('/health ignores a query string, and HEAD answers without a body', async () => {
    await startHealth();
    expect((await call(port, 'GET', '/health?probe=1')).status).to.equal(200);
    const head = await call(port, 'HEAD', '/health');
    expect(head.status).to.equal(200);
    expect(head.body).to.equal('');
  });

  it('/health answers 200 even while the agent is not ready', async () => {
    await startHealth();
    readiness.declare('poller', 'no poll cycle completed yet');
    expect((await call(port, 'GET', '/health')).status).to.equal(200);
  });

  it('/ready → 503 naming every condition that does not hold, then 200 once they all do', async () => {
    await startHealth();
    const listening = readiness.declare('local server', 'not listening yet');
    const polled = readiness.declare('poller', 'no poll cycle completed yet');
    let answer = await call(port, 'GET', '/ready');
    expect(answer.status).to.equal(503);
    expect(answer.headers['content-type']).to.equal('application/json');
    expect(JSON.parse(answer.body)).to.deep.equal({
      status: 'not ready', notReady: ['local server: not listening yet', 'poller: no poll cycle completed yet'],
    });
    listening(true);
    answer = await call(port, 'GET', '/ready');
    expect(JSON.parse(answer.body)).to.deep.equal({ status: 'not ready', notReady: ['poller: no poll cycle completed yet'] });
    polled(true);
    answer = await call(port, 'GET', '/ready');
    expect(answer.status).to.equal(200);
    expect(JSON.parse(answer.body)).to.deep.equal({ status: 'ready' });
  });

  it('/ready carries the details the agent reports, read at each request, ready or not', async () => {
    let count = 1;
    await startHealth({ details: () => ({ keptnApiVersion: '1.x', subscriptions: { source: 'control plane', count } }) });
    const polled = readiness.declare('poller', 'no poll cycle completed yet');
    expect(JSON.parse((await call(port, 'GET', '/ready')).body)).to.deep.equal({
      status: 'not ready', notReady: ['poller: no poll cycle completed yet'], keptnApiVersion: '1.x', subscriptions: { source: 'control plane', count: 1 },
    });
    polled(true);
    count = 2;
    expect(JSON.parse((await call(port, 'GET', '/ready')).body)).to.deep.equal({
      status: 'ready', keptnApiVersion: '1.x', subscriptions: { source: 'control plane', count: 2 },
    });
  });

  it('/metrics serves the registry in Prometheus text format, default process metrics included', async () => {
    await startHealth({ metrics: createMetrics() });
    metrics.polls.inc({ topic: 'sh.keptn.event.test.triggered', outcome: 'success' });
    metrics.registered.set(1);
    const answer = await call(port, 'GET', '/metrics');
    expect(answer.status).to.equal(200);
    expect(answer.headers['content-type']).to.equal(metrics.registry.contentType);
    expect(answer.body).to.include('keptn_distributor_polls_total{topic="sh.keptn.event.test.triggered",outcome="success"} 1');
    expect(answer.body).to.include('keptn_distributor_registered 1');
    expect(answer.body).to.include('# TYPE keptn_distributor_poll_duration_seconds histogram');
    expect(answer.body).to.include('process_cpu_user_seconds_total');
    expect(answer.body).to.include('nodejs_eventloop_lag_seconds');
  });

  it('another path → 404 JSON; another method → 405 with Allow', async () => {
    await startHealth();
    const missing = await call(port, 'GET', '/healthz');
    expect(missing.status).to.equal(404);
    expect(JSON.parse(missing.body)).to.deep.equal({ message: 'no such path: /healthz (try /health, /ready or /metrics)' });
    const post = await call(port, 'POST', '/health');
    expect(post.status).to.equal(405);
    expect(post.headers.allow).to.equal('GET, HEAD');
    expect(JSON.parse(post.body)).to.deep.equal({ message: 'method POST not allowed: use GET or HEAD' });
  });

  it('listens on all interfaces, as the reference (kubelet probes come from outside the pod)', async () => {
    const logs = logSink();
    const health = new HealthServer({ port: 0, readiness: new Readiness(), metrics: createMetrics({ defaultMetrics: false }), logger: logs.logger });
    server = health;
    await health.start();
    expect(logs.entries().find((entry) => entry.message === 'health server listening')).to.deep.include({ host: '0.0.0.0', port: health.port });
    expect((await call(health.port ?? 0, 'GET', '/health')).status).to.equal(200);
  });

  it('a port in use → start rejects with a message naming the port and HEALTH_ENDPOINT_PORT', async () => {
    const blocker: Server = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const busy = (blocker.address() as AddressInfo).port;
    try {
      const health = new HealthServer({ port: busy, readiness: new Readiness(), metrics: createMetrics({ defaultMetrics: false }), logger: logSink().logger });
      const error = await health.start().then(() => undefined, (e: unknown) => e);
      expect((error as Error).message).to.equal(
        `cannot listen on 0.0.0.0:${busy} for /health, /ready and /metrics (HEALTH_ENDPOINT_PORT): the port is already in use`);
      await health.stop(AbortSignal.timeout(100));
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });

  it('stop closes the port at once, even with an idle keep-alive connection open', async () => {
    await startHealth();
    const agent = new Agent({ keepAlive: true });
    await new Promise<void>((resolve, reject) => {
      httpRequest({ host: '127.0.0.1', port, path: '/health', agent }, (res) => { res.resume(); res.on('end', resolve); }).on('error', reject).end();
    });
    const started = Date.now();
    await server?.stop(AbortSignal.timeout(5_000));
    server = undefined;
    expect(Date.now() - started).to.be.below(1_000);
    const refused = await call(port, 'GET', '/health').then(() => undefined, (e: unknown) => e);
    expect((refused as NodeJS.ErrnoException).code).to.equal('ECONNREFUSED');
    agent.destroy();
  });

  it('stop cuts a connection still busy when the deadline passes', async () => {
    readiness = new Readiness();
    // A registry whose collection never ends holds a /metrics request open.
    const stuck = createMetrics({ defaultMetrics: false });
    let collecting!: () => void;
    const collected = new Promise<void>((resolve) => { collecting = resolve; });
    stuck.registry.metrics = () => {
      collecting();
      return new Promise<string>(() => undefined);
    };
    server = new HealthServer({ port: 0, readiness, metrics: stuck, logger: logSink().logger });
    await server.start();
    port = server.port ?? 0;
    const pending = call(port, 'GET', '/metrics').then(() => 'answered', () => 'cut');
    await collected;
    const started = Date.now();
    await server.stop(AbortSignal.timeout(50));
    server = undefined;
    expect(Date.now() - started).to.be.below(1_000);
    expect(await pending).to.equal('cut');
  });
});
