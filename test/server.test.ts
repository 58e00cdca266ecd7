import http, { type Server } from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { LocalServer, MAX_RELAY_BODY_BYTES, type LocalServerOptions } from '../lib/server.ts';
import { Outbox } from '../lib/outbox/outbox.ts';
import { MemoryStore } from '../lib/outbox/memory-store.ts';
import { LogDeadLetters } from '../lib/outbox/dead-letter.ts';
import { KeptnCredentials } from '../lib/credentials.ts';
import { EgressAgents } from '../lib/egress-proxy.ts';
import { ApiProxy } from '../lib/proxy.ts';
import type { KeptnCloudEvent } from '../lib/cloudevents.ts';
import { Readiness } from '../lib/readiness.ts';
import { createMetrics, type Metrics } from '../lib/metrics.ts';
import { logSink } from './helpers/log-sink.ts';
import { FakeSink, refused } from './outbox/fakes.ts';

const NO_PROXIES = { httpsProxy: undefined, httpProxy: undefined, proxyBypass: [] };

const EVENT = {
  specversion: '1.0', id: 'e1', source: 'helm-service', type: 'sh.keptn.event.deployment.started',
  time: '2021-07-26T10:15:41.002Z', shkeptncontext: 'ctx', triggeredid: 't1', data: { project: 'p' },
};

interface Running {
  server: LocalServer;
  url: string;
  sink: FakeSink;
  outbox: Outbox;
  metrics: Metrics;
  readiness: Readiness;
  seen: KeptnCloudEvent[];
}

describe('local server', () => {
  let running: Running | undefined;
  let upstream: Server | undefined;

  async function start(options: Partial<LocalServerOptions> & { maxEvents?: number } = {}): Promise<Running> {
    const sink = new FakeSink();
    const logs = logSink();
    const metrics = createMetrics({ defaultMetrics: false });
    const readiness = new Readiness();
    const outbox = new Outbox({
      sink, store: new MemoryStore(), deadLetters: new LogDeadLetters(logs.logger), logger: logs.logger, metrics,
      maxAgeMs: 60_000, canCheckArrival: true, ...(options.maxEvents !== undefined && { maxEvents: options.maxEvents }),
    });
    const seen: KeptnCloudEvent[] = [];
    const server = new LocalServer({
      bindAddress: '127.0.0.1', port: 0, apiProxyPath: '/', eventForwardingPath: '/event', outbox, proxy: undefined,
      logger: logs.logger, metrics, readiness, onEvent: (event) => seen.push(event), ...options,
    });
    expect(readiness.report().notReady).to.include('local server: not listening yet');
    await server.start();
    running = { server, url: `http://127.0.0.1:${server.port}`, sink, outbox, metrics, readiness, seen };
    return running;
  }

  afterEach(async () => {
    await running?.server.stop(AbortSignal.timeout(1_000));
    running = undefined;
    if (upstream) await new Promise((resolve) => upstream!.close(resolve));
    upstream = undefined;
  });

  const post = (url: string, body: string | object, headers: Record<string, string> = { 'content-type': 'application/cloudevents+json' }): Promise<Response> =>
    fetch(url, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body), headers });

  async function relays(metrics: Metrics, outcome: string): Promise<number> {
    return (await metrics.relays.get()).values.find((value) => value.labels.outcome === outcome)?.value ?? 0;
  }

  it('is ready once it listens', async () => {
    const { readiness } = await start();
    expect(readiness.report()).to.deep.equal({ ready: true, notReady: [] });
  });

  it('answers 202 to a valid event, relays it, and tells the listener', async () => {
    const { url, sink, outbox, seen, metrics } = await start();
    const response = await post(`${url}/event`, EVENT);
    expect(response.status).to.equal(202);
    await outbox.idle();
    expect(sink.posted).to.deep.equal([JSON.stringify(EVENT)]);
    expect(seen.map((event) => event.id)).to.deep.equal(['e1']);
    expect(await relays(metrics, 'accepted')).to.equal(1);
  });

  it('answers 202 to sh.keptn.log.error and tells the listener, but does not relay it', async () => {
    const { url, sink, seen, outbox } = await start();
    const response = await post(`${url}/event`, { ...EVENT, type: 'sh.keptn.log.error', data: { message: 'boom' } });
    expect(response.status).to.equal(202);
    expect(outbox.depth).to.equal(0);
    expect(sink.posted).to.have.length(0);
    expect(seen.map((event) => event.type)).to.deep.equal(['sh.keptn.log.error']);
  });

  it('a throwing listener does not fail the relay', async () => {
    const { url } = await start({ onEvent: () => { throw new Error('listener bug'); } });
    expect((await post(`${url}/event`, EVENT)).status).to.equal(202);
  });

  it('answers 400 with {"message"} for bad input, and counts it', async () => {
    const { url, metrics, seen } = await start();
    const response = await post(`${url}/event`, { ...EVENT, data: undefined });
    expect(response.status).to.equal(400);
    expect(response.headers.get('content-type')).to.match(/^application\/json/);
    expect(await response.json()).to.deep.equal({ message: 'invalid CloudEvent: missing "data"' });
    expect(await relays(metrics, 'rejected')).to.equal(1);
    expect(seen).to.have.length(0);
  });

  it('answers 415 for an unsupported content type', async () => {
    const { url } = await start();
    expect((await post(`${url}/event`, 'hello', { 'content-type': 'text/plain' })).status).to.equal(415);
  });

  it('accepts a binary-mode event', async () => {
    const { url, sink, outbox } = await start();
    const response = await post(`${url}/event`, EVENT.data, {
      'content-type': 'application/json', 'ce-specversion': '1.0', 'ce-id': 'b1', 'ce-source': 'svc', 'ce-type': 'sh.keptn.event.test.finished',
      'ce-shkeptncontext': 'ctx',
    });
    expect(response.status).to.equal(202);
    await outbox.idle();
    expect(JSON.parse(sink.posted[0]!)).to.include({ id: 'b1', source: 'svc', shkeptncontext: 'ctx' });
  });

  it('answers 405 with Allow for another method on the relay path', async () => {
    const { url } = await start();
    const response = await fetch(`${url}/event`);
    expect(response.status).to.equal(405);
    expect(response.headers.get('allow')).to.equal('POST');
    expect(((await response.json()) as { message: string }).message).to.match(/POST/);
  });

  it('answers 413 past 1 MiB, whether declared or streamed', async () => {
    const { url, metrics } = await start();
    const big = JSON.stringify({ ...EVENT, data: { blob: 'x'.repeat(MAX_RELAY_BODY_BYTES) } });
    expect((await post(`${url}/event`, big)).status).to.equal(413);
    // Chunked, no Content-Length: the limit is found while reading.
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request(`${url}/event`, { method: 'POST', headers: { 'content-type': 'application/cloudevents+json' } }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      });
      req.on('error', reject);
      for (let i = 0; i < 20; i++) req.write('x'.repeat(64 * 1024));
      req.end();
    });
    expect(status).to.equal(413);
    expect(await relays(metrics, 'rejected')).to.equal(2);
  });

  it('the limit is maxBodyBytes (API_PROXY_MAX_PAYLOAD_BYTES_KB): exactly it passes, one byte more is a 413 naming the setting', async () => {
    const { url } = await start({ maxBodyBytes: 2048 });
    const skeleton = JSON.stringify({ ...EVENT, data: { blob: '' } });
    const body = (size: number): string => JSON.stringify({ ...EVENT, data: { blob: 'x'.repeat(size - skeleton.length) } });
    expect((await post(`${url}/event`, body(2048))).status).to.equal(202);
    const response = await post(`${url}/event`, body(2049));
    expect(response.status).to.equal(413);
    expect(await response.json()).to.deep.equal({ message: 'the event is larger than 2048 bytes, the limit set by API_PROXY_MAX_PAYLOAD_BYTES_KB' });
  });

  it('accepts a body of exactly 1 MiB', async () => {
    const { url } = await start();
    const skeleton = JSON.stringify({ ...EVENT, data: { blob: '' } });
    const body = JSON.stringify({ ...EVENT, data: { blob: 'x'.repeat(MAX_RELAY_BODY_BYTES - skeleton.length) } });
    expect(Buffer.byteLength(body)).to.equal(MAX_RELAY_BODY_BYTES);
    expect((await post(`${url}/event`, body)).status).to.equal(202);
  });

  it('answers 404 for an unknown path, and for /event/x', async () => {
    const { url } = await start();
    for (const path of ['/nothing', '/event/x', '/controlPlaneX/v1']) {
      const response = await fetch(`${url}${path}`);
      expect(response.status, path).to.equal(404);
      expect(((await response.json()) as { message: string }).message).to.be.a('string');
    }
  });

  it('answers 404 saying why for a proxied path without KEPTN_API_ENDPOINT', async () => {
    const { url } = await start();
    const response = await fetch(`${url}/controlPlane/v1/project`);
    expect(response.status).to.equal(404);
    expect(((await response.json()) as { message: string }).message).to.match(/KEPTN_API_ENDPOINT/);
  });

  it('answers 503 with Retry-After when the outbox is full', async () => {
    const { url, sink } = await start({ maxEvents: 1 });
    sink.answer = () => refused();
    expect((await post(`${url}/event`, EVENT)).status).to.equal(202);
    const response = await post(`${url}/event`, { ...EVENT, id: 'e2' });
    expect(response.status).to.equal(503);
    expect(response.headers.get('retry-after')).to.equal('5');
  });

  it('with API_PROXY_PATH /api: strips it before mapping, and 404s outside it', async () => {
    upstream = http.createServer((req, res) => { res.end(req.url); });
    await new Promise<void>((resolve) => upstream!.listen(0, '127.0.0.1', resolve));
    const endpoint = new URL(`http://127.0.0.1:${(upstream.address() as AddressInfo).port}/keptn`);
    const logs = logSink();
    const { url } = await start({ apiProxyPath: '/api', proxy: new ApiProxy({ endpoint, credentials: new KeptnCredentials('t'), agents: new EgressAgents(NO_PROXIES), timeoutMs: 2_000, maxBodyBytes: 1024 * 1024, logger: logs.logger }) });
    expect(await (await fetch(`${url}/api/controlPlane/v1/project?x=1`)).text()).to.equal('/keptn/controlPlane/v1/project?x=1');
    expect((await fetch(`${url}/controlPlane/v1/project`)).status).to.equal(404);
    expect((await fetch(`${url}/apiX/controlPlane/v1/project`)).status).to.equal(404);
    expect((await post(`${url}/event`, EVENT)).status).to.equal(202);
  });

  it('while stopping: a call in flight completes, a new relay gets 503 with Retry-After, then the outbox is drained', async () => {
    let upstreamGot!: () => void;
    const upstreamReached = new Promise<void>((resolve) => { upstreamGot = resolve; });
    let answerUpstream!: () => void;
    upstream = http.createServer((_req, res) => {
      answerUpstream = () => res.end('slow answer');
      upstreamGot();
    });
    await new Promise<void>((resolve) => upstream!.listen(0, '127.0.0.1', resolve));
    const endpoint = new URL(`http://127.0.0.1:${(upstream.address() as AddressInfo).port}`);
    const logs = logSink();
    const { server, sink, outbox, readiness } = await start({ proxy: new ApiProxy({ endpoint, credentials: new KeptnCredentials('t'), agents: new EgressAgents(NO_PROXIES), timeoutMs: 2_000, maxBodyBytes: 1024 * 1024, logger: logs.logger }) });
    sink.answers = [refused()];
    expect((await post(`http://127.0.0.1:${server.port}/event`, EVENT)).status).to.equal(202);

    // A slow proxied call keeps the connection busy through the stop.
    const body = JSON.stringify({ ...EVENT, id: 'late' });
    const socket = net.connect(server.port!, '127.0.0.1');
    let received = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => { received += chunk; });
    const ended = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.write('GET /controlPlane/v1/slow HTTP/1.1\r\nHost: x\r\n\r\n');
    await upstreamReached;

    const stopped = server.stop(AbortSignal.timeout(2_000));
    expect(readiness.report().notReady).to.include('local server: shutting down');
    // The connection is busy, so it stays open; a relay sent on it now is refused.
    socket.write(`POST /event HTTP/1.1\r\nHost: x\r\nContent-Type: application/cloudevents+json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    answerUpstream();
    await ended;
    const [first, second] = received.split(/(?=HTTP\/1\.1 )/);
    expect(first).to.match(/^HTTP\/1\.1 200/);
    expect(first).to.include('slow answer');
    expect(second).to.match(/^HTTP\/1\.1 503/);
    expect(second).to.match(/retry-after: 5/i);
    expect(second).to.match(/connection: close/i);
    await stopped;
    expect(outbox.depth).to.equal(0);
    expect(sink.ids()).to.deep.equal(['e1', 'e1']);
    running = undefined;
  });

  it('fails to start, clearly, on a port in use', async () => {
    const first = await start();
    const logs = logSink();
    const outbox = new Outbox({ sink: new FakeSink(), store: new MemoryStore(), deadLetters: new LogDeadLetters(logs.logger), logger: logs.logger, maxAgeMs: 1, canCheckArrival: false });
    const second = new LocalServer({
      bindAddress: '127.0.0.1', port: first.server.port!, apiProxyPath: '/', eventForwardingPath: '/event', outbox, proxy: undefined, logger: logs.logger,
    });
    let message = '';
    await second.start().catch((error: Error) => { message = error.message; });
    expect(message).to.match(/cannot listen on 127\.0\.0\.1:\d+: .*EADDRINUSE/);
    await second.stop(AbortSignal.timeout(100));
  });
});
