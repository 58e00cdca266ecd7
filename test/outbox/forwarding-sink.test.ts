import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type Socket } from 'node:net';
import { expect } from 'chai';
import { KeptnCredentials } from '../../lib/credentials.ts';
import { ForwardingSink } from '../../lib/outbox/forwarding-sink.ts';
import { keptnApiFailure } from '../helpers/keptn-api-failure.ts';

const TOKEN = 'api-token-123';
const JSON_TEXT = '{"specversion":"1.0","id":"1","type":"sh.keptn.event.test.finished","source":"s","data":{"z":1,"a":2}}';

interface Received { method: string | undefined; url: string | undefined; headers: IncomingMessage['headers']; body: string }

/** A loopback HTTP server answering with `answer`; records what it received. */
async function server(answer: (response: ServerResponse) => void): Promise<{ url: URL; received: Received[]; close(): Promise<void> }> {
  const received: Received[] = [];
  const http: Server = createHttpServer((request, response) => {
    let body = '';
    request.setEncoding('utf8');
    request.on('data', (chunk: string) => { body += chunk; });
    request.on('end', () => {
      received.push({ method: request.method, url: request.url, headers: request.headers, body });
      answer(response);
    });
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const { port } = http.address() as { port: number };
  return {
    url: new URL(`http://127.0.0.1:${port}/api/v1/event`),
    received,
    close: () => { http.closeAllConnections(); return new Promise((resolve) => http.close(() => resolve())); },
  };
}

const NO_PROXIES = { httpsProxy: undefined, httpProxy: undefined, proxyBypass: [] };

function sink(url: URL, timeoutMs = 2_000): ForwardingSink {
  return new ForwardingSink({
    url, credentials: new KeptnCredentials(TOKEN), proxies: NO_PROXIES, sslVerify: true, timeoutMs, maxSockets: 4,
    datastore: { eventsByContext: (context, type) => Promise.resolve([{ context, type }]) },
  });
}

describe('outbox/forwarding-sink', () => {
  const closers: (() => Promise<void> | void)[] = [];
  afterEach(async () => {
    for (const close of closers.splice(0)) await close();
  });

  async function started(answer: (response: ServerResponse) => void): Promise<{ url: URL; received: Received[]; sink: ForwardingSink }> {
    const control = await server(answer);
    const forwarding = sink(control.url);
    closers.push(() => control.close(), () => { forwarding.close(); });
    return { url: control.url, received: control.received, sink: forwarding };
  }

  it('POSTs the JSON text unchanged with x-token and the CloudEvents content type', async () => {
    const { received, sink: forwarding } = await started((response) => response.writeHead(200).end('{"keptnContext":"c"}'));
    await forwarding.postEvent(JSON_TEXT);
    expect(received).to.have.length(1);
    expect(received[0]).to.include({ method: 'POST', url: '/api/v1/event', body: JSON_TEXT });
    expect(received[0]!.headers).to.include({ 'x-token': TOKEN, 'content-type': 'application/cloudevents+json' });
  });

  it('sends no x-token without a token', async () => {
    const control = await server((response) => response.writeHead(204).end());
    const forwarding = new ForwardingSink({ url: control.url, credentials: KeptnCredentials.none(), proxies: NO_PROXIES, sslVerify: true, timeoutMs: 2_000, maxSockets: 1, datastore: { eventsByContext: () => Promise.resolve([]) } });
    closers.push(() => control.close(), () => { forwarding.close(); });
    await forwarding.postEvent(JSON_TEXT);
    expect(control.received[0]!.headers).to.not.have.property('x-token');
  });

  it('a non-2xx answer is a status error with Keptn’s message and Retry-After', async () => {
    const { sink: forwarding } = await started((response) => {
      response.writeHead(429, { 'content-type': 'application/json', 'retry-after': '7' }).end('{"code":429,"message":"slow down"}');
    });
    const error = await keptnApiFailure(forwarding.postEvent(JSON_TEXT));
    expect(error.toJSON()).to.deep.equal({ status: 429, message: '429: slow down' });
    expect(error.kind).to.equal('status');
    expect(error.retryAfterMs).to.equal(7_000);
  });

  it('a redirect is not followed: a status error', async () => {
    const { received, sink: forwarding } = await started((response) => response.writeHead(301, { location: '/elsewhere' }).end());
    const error = await keptnApiFailure(forwarding.postEvent(JSON_TEXT));
    expect(error.status).to.equal(301);
    expect(received).to.have.length(1);
  });

  it('an HTML error page from a gateway becomes short text', async () => {
    const { sink: forwarding } = await started((response) => response.writeHead(502).end('<html><body><h1>502 Bad Gateway</h1></body></html>'));
    expect((await keptnApiFailure(forwarding.postEvent(JSON_TEXT))).message).to.equal('502: 502 Bad Gateway');
  });

  it('a refused connection sent nothing: "unreachable"', async () => {
    const probe = createNetServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const { port } = probe.address() as { port: number };
    await new Promise((resolve) => probe.close(resolve));
    const forwarding = sink(new URL(`http://127.0.0.1:${port}/v1/event`));
    closers.push(() => { forwarding.close(); });
    const error = await keptnApiFailure(forwarding.postEvent(JSON_TEXT));
    expect(error).to.include({ kind: 'unreachable', code: 'ECONNREFUSED' });
  });

  it('no answer within the time limit after the request went out is "ambiguous"', async () => {
    const control = await server(() => undefined);
    const forwarding = sink(control.url, 100);
    closers.push(() => control.close(), () => { forwarding.close(); });
    const error = await keptnApiFailure(forwarding.postEvent(JSON_TEXT));
    expect(error).to.include({ kind: 'ambiguous', code: 'ETIMEDOUT' });
    expect(control.received).to.have.length(1);
  });

  it('a connection cut after the request was read is "ambiguous"', async () => {
    const sockets: Socket[] = [];
    const cutter = createNetServer((socket) => {
      sockets.push(socket);
      socket.once('data', () => socket.destroy());
    });
    await new Promise<void>((resolve) => cutter.listen(0, '127.0.0.1', resolve));
    const { port } = cutter.address() as { port: number };
    const forwarding = sink(new URL(`http://127.0.0.1:${port}/v1/event`));
    closers.push(() => new Promise<void>((resolve) => { for (const socket of sockets) socket.destroy(); cutter.close(() => resolve()); }), () => { forwarding.close(); });
    expect((await keptnApiFailure(forwarding.postEvent(JSON_TEXT))).kind).to.equal('ambiguous');
  });

  it('an aborted send rejects; aborted before it starts, nothing is sent', async () => {
    const { received, sink: forwarding } = await started(() => undefined);
    const controller = new AbortController();
    const pending = forwarding.postEvent(JSON_TEXT, controller.signal);
    const error = keptnApiFailure(pending);
    setImmediate(() => controller.abort());
    expect((await error).code).to.equal('ABORT_ERR');
    const before = await keptnApiFailure(forwarding.postEvent(JSON_TEXT, AbortSignal.abort()));
    expect(before).to.include({ kind: 'unreachable', code: 'ABORT_ERR' });
    expect(received.length).to.be.at.most(1);
  });

  it('asks the datastore through the API client', async () => {
    const { sink: forwarding } = await started((response) => response.writeHead(200).end());
    expect(await forwarding.eventsByContext('ctx', 'sh.keptn.event.test.started')).to.deep.equal([{ context: 'ctx', type: 'sh.keptn.event.test.started' }]);
  });
});
