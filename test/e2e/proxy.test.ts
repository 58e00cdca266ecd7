/**
 * The Keptn API proxy end to end: the real agent, in-process, against the
 * control-plane emulator (its echo routes answer exactly what arrived).
 */
import http from 'node:http';
import { expect } from 'chai';
import { startEmulator, type Emulator } from '../../lib/emulator/server.ts';
import { startTestAgent, type RunningAgent } from '../helpers/start-agent.ts';

const TOKEN = 'e2e-proxy-token';

function rawGet(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    const path = url.slice(target.origin.length);
    http.get({ host: target.hostname, port: target.port, path }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => { body += chunk; });
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    }).on('error', reject);
  });
}

interface Echo {
  method: string;
  path: string;
  query: string;
  headers: Record<string, string>;
  body: string;
}

describe('e2e: Keptn API proxy', () => {
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

  async function start(env: Record<string, string> = {}): Promise<string> {
    agent = await startTestAgent({ KEPTN_API_ENDPOINT: `${emulator.url}/api`, KEPTN_API_TOKEN: TOKEN, PUBSUB_TOPIC: 'sh.keptn.event.unused.triggered', ...env });
    return `http://127.0.0.1:${agent.addresses.proxyPort}`;
  }

  for (const prefix of ['/controlPlane/v1', '/configuration-service', '/mongodb-datastore']) {
    it(`${prefix}: GET with a query goes to the same prefix under the endpoint, with the agent's token`, async () => {
      const local = await start();
      const response = await fetch(`${local}${prefix}/echo/a/b?x=1&y=%20z`, { headers: { accept: 'application/json', 'x-custom': 'kept' } });
      expect(response.status).to.equal(200);
      const echo = (await response.json()) as Echo;
      expect(echo).to.include({ method: 'GET', path: `/api${prefix}/echo/a/b`, query: 'x=1&y=%20z' });
      expect(echo.headers).to.include({ 'x-token': TOKEN, 'x-custom': 'kept', accept: 'application/json' });
    });

    it(`${prefix}: POST with a body passes method and body through`, async () => {
      const local = await start();
      const body = JSON.stringify({ hello: 'world', list: [1, 2, 3] });
      const response = await fetch(`${local}${prefix}/echo/post`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
      const echo = (await response.json()) as Echo;
      expect(echo).to.include({ method: 'POST', body });
      expect(echo.headers['content-type']).to.equal('application/json');
    });
  }

  it('passes the upstream status, headers and body back', async () => {
    const local = await start();
    const missing = await fetch(`${local}/controlPlane/v1/project/nope`);
    expect(missing.status).to.equal(404);
    expect(await missing.json()).to.deep.include({ message: 'Project not found: nope' });

    emulator.faults.fail('proxy', { status: 503, headers: { 'retry-after': '7' }, body: { code: 503, message: 'busy' } });
    const busy = await fetch(`${local}/controlPlane/v1/echo/x`);
    expect(busy.status).to.equal(503);
    expect(busy.headers.get('retry-after')).to.equal('7');
    expect(await busy.json()).to.deep.equal({ code: 503, message: 'busy' });
  });

  it('replaces a client x-token with the agent’s (the emulator refuses any other)', async () => {
    const local = await start();
    const response = await fetch(`${local}/controlPlane/v1/echo/token`, { headers: { 'x-token': 'the-recipient-has-no-token' } });
    expect(response.status).to.equal(200);
    expect(((await response.json()) as Echo).headers['x-token']).to.equal(TOKEN);
  });

  it('keeps the configuration-service resource escaping: a resource URI escaped once is found', async () => {
    const local = await start();
    const resource = `${local}/configuration-service/v1/project/p/stage/s/service/c/resource/helm%2Fvalues.yaml`;
    const put = await fetch(resource, { method: 'PUT', body: JSON.stringify({ resourceContent: Buffer.from('a: 1').toString('base64') }), headers: { 'content-type': 'application/json' } });
    expect(put.status).to.equal(201);
    const get = await fetch(resource);
    expect(get.status).to.equal(200);
    expect(await get.json()).to.deep.include({ resourceURI: 'helm/values.yaml' });
  });

  it('refuses paths that climb out of their prefix, without calling Keptn', async () => {
    const local = await start();
    // node:http sends the path as written; fetch would resolve the dot segments itself.
    for (const path of ['/controlPlane/../v1/event', '/controlPlane/%2e%2e/v1/event', '/mongodb-datastore/..%2F..%2Fv1/event', '/configuration-service/%252e%252e/x']) {
      const { status, body } = await rawGet(`${local}${path}`);
      expect(status, path).to.equal(400);
      expect((JSON.parse(body) as { message: string }).message).to.match(/\.\./);
    }
    expect(emulator.requests.proxy).to.equal(0);
  });

  it('unknown prefixes are 404, /controlPlaneX too', async () => {
    const local = await start();
    for (const path of ['/v1/metadata', '/controlPlaneX/v1/echo/x', '/api/controlPlane/v1/echo/x']) {
      expect((await fetch(`${local}${path}`)).status, path).to.equal(404);
    }
  });

  it('an unreachable control plane is a 502 with a JSON message', async () => {
    const local = await start();
    await emulator.stop();
    const response = await fetch(`${local}/controlPlane/v1/echo/x`);
    expect(response.status).to.equal(502);
    expect(((await response.json()) as { message: string }).message).to.match(/unreachable/);
  });

  it('with API_PROXY_PATH=/keptn-api, the path is stripped before mapping', async () => {
    const local = await start({ API_PROXY_PATH: '/keptn-api' });
    const echo = (await (await fetch(`${local}/keptn-api/mongodb-datastore/echo/x`)).json()) as Echo;
    expect(echo.path).to.equal('/api/mongodb-datastore/echo/x');
    expect((await fetch(`${local}/mongodb-datastore/echo/x`)).status).to.equal(404);
  });

  it('Test_APIProxy (reference §14.4, HTTP mode): a call through the local port reaches the Keptn API once', async () => {
    const local = await start();
    const response = await fetch(`${local}/controlPlane/v1/echo/testpath`);
    expect(response.status).to.equal(200);
    expect(emulator.requests.proxy).to.equal(1);
  });

  it('never logs the token', async () => {
    const local = await start();
    await (await fetch(`${local}/controlPlane/v1/echo/x`)).text();
    await emulator.stop();
    await (await fetch(`${local}/controlPlane/v1/echo/x`)).text();
    expect(agent!.logs.text()).not.to.include(TOKEN);
  });
});
