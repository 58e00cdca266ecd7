import { expect } from 'chai';
import { gatewayPath } from '../../lib/emulator/router.ts';
import { call, useEmulators } from './harness.ts';

const POLL = '/controlPlane/v1/event/triggered/sh.keptn.event.test.triggered';

describe('emulator: x-token authentication', () => {
  const start = useEmulators();

  const routes: Array<[string, string, unknown?]> = [
    ['GET', POLL],
    ['POST', '/v1/event', { type: 'x', source: 's', data: {} }],
    ['POST', '/controlPlane/v1/uniform/registration', {}],
    ['POST', '/controlPlane/v1/log', { logs: [] }],
    ['GET', '/mongodb-datastore/event'],
    ['GET', '/configuration-service/echo/x'],
  ];
  for (const [method, path, json] of routes) {
    it(`answers 401 {"code":401,"message"} to ${method} ${path} without a token and with a wrong one`, async () => {
      const emulator = await start({ token: 'secret' });
      for (const headers of [{}, { 'x-token': 'wrong' }]) {
        const answer = await call(`${emulator.url}${path}`, { method, json, headers });
        expect(answer.status, JSON.stringify(headers)).to.equal(401);
        expect(answer.headers.get('content-type')).to.equal('application/json; charset=utf-8');
        expect(answer.body).to.have.keys('code', 'message');
        expect(answer.body.code).to.equal(401);
      }
      expect(emulator.received()).to.deep.equal([]);
    });
  }

  it('lets the right token pass', async () => {
    const emulator = await start({ token: 'secret' });
    expect((await call(`${emulator.url}${POLL}`, { headers: { 'x-token': 'secret' } })).status).to.equal(200);
  });

  it('lets anything pass when no token is configured', async () => {
    const emulator = await start();
    expect((await call(`${emulator.url}${POLL}`)).status).to.equal(200);
    expect((await call(`${emulator.url}${POLL}`, { headers: { 'x-token': 'whatever' } })).status).to.equal(200);
  });

  it('needs no token for the inspection routes', async () => {
    const emulator = await start({ token: 'secret' });
    expect((await call(`${emulator.url}/emulator/events`)).status).to.equal(200);
    const triggered = await call(`${emulator.url}/emulator/trigger`, { json: { type: 'sh.keptn.event.test.triggered', project: 'p', stage: 's', service: 'c' } });
    expect(triggered.status).to.equal(201);
  });

  it('prints why a request was refused', async () => {
    const lines: string[] = [];
    const emulator = await start({ token: 'secret', log: (line) => lines.push(line) });
    await call(`${emulator.url}${POLL}`, { headers: { 'x-token': 'wrong' } });
    expect(lines).to.have.length(1);
    expect(lines[0]).to.match(/✗ 401 GET \/controlPlane\/v1\/event\/triggered\/sh\.keptn\.event\.test\.triggered: invalid x-token$/);
  });
});

describe('emulator: routing and error answers', () => {
  const start = useEmulators();

  it('answers 404 {code, message} to a path no route serves', async () => {
    const emulator = await start();
    const answer = await call(`${emulator.url}/v1/nothing-here`);
    expect(answer.status).to.equal(404);
    expect(answer.body).to.deep.equal({ code: 404, message: 'no route for GET /v1/nothing-here' });
  });

  it('answers a /controlPlane route it lacks as the shipyard-controller’s router does: 404 in plain text', async () => {
    const emulator = await start();
    const response = await fetch(`${emulator.url}/controlPlane/v1/uniform/registration/x/ping`, { method: 'PUT' });
    expect(response.status).to.equal(404);
    expect(response.headers.get('content-type')).to.match(/^text\/plain/);
    expect(await response.text()).to.equal('404 page not found');
  });

  it('answers 405 {code, message} with Allow to a wrong method', async () => {
    const emulator = await start();
    const answer = await call(`${emulator.url}${POLL}`, { method: 'DELETE' });
    expect(answer.status).to.equal(405);
    expect(answer.headers.get('allow')).to.equal('GET');
    expect(answer.body).to.have.keys('code', 'message');
  });

  it('answers 413 {code, message} to a body over the limit', async () => {
    const emulator = await start({ bodyLimit: 1024 });
    const answer = await call(`${emulator.url}/v1/event`, { json: { type: 'x', source: 's', data: { blob: 'x'.repeat(2048) } } });
    expect(answer.status).to.equal(413);
    expect(answer.body).to.have.keys('code', 'message');
    expect(emulator.received()).to.deep.equal([]);
  });

  it('answers 400 {code, message} to malformed JSON on every JSON route', async () => {
    const emulator = await start();
    for (const path of ['/v1/event', '/controlPlane/v1/uniform/registration', '/controlPlane/v1/log', '/emulator/trigger']) {
      const answer = await call(`${emulator.url}${path}`, { body: '{not json', headers: { 'content-type': 'application/json' } });
      expect(answer.status, path).to.equal(400);
      expect(answer.body, path).to.have.keys('code', 'message');
    }
  });

  it('also serves everything under /api, the public gateway\'s prefix', async () => {
    const emulator = await start();
    expect((await call(`${emulator.url}/api${POLL}`)).status).to.equal(200);
  });

  it('decodes the path once, as the gateway does, before matching', () => {
    expect(gatewayPath('/api/configuration-service/x/resource/helm%252Fvalues.yaml')).to.equal('/configuration-service/x/resource/helm%2Fvalues.yaml');
    expect(gatewayPath('/v1/event')).to.equal('/v1/event');
    expect(gatewayPath('/bad%zz')).to.equal(undefined);
  });

  it('counts requests per route key', async () => {
    const emulator = await start({ token: 'secret' });
    await call(`${emulator.url}${POLL}`);
    await call(`${emulator.url}${POLL}`, { headers: { 'x-token': 'secret' } });
    await call(`${emulator.url}/emulator/events`);
    expect(emulator.requests).to.include({ poll: 2, inspect: 1, event: 0 });
  });
});
