import { expect } from 'chai';
import type { Integration, LogEntry, ReceivedEvent, StoredResource, TriggeredEvent } from '../../lib/emulator/server.ts';
import { answerTo, call, useEmulators } from './harness.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe('emulator: POST /emulator/trigger', () => {
  const start = useEmulators();

  it('answers 201 with a new .triggered event: fresh id and context, now, shipyard-controller, data merged', async () => {
    const now = new Date('2021-07-26T10:15:30.123Z');
    const emulator = await start({ now: () => now });
    const answer = await call<TriggeredEvent>(`${emulator.url}/emulator/trigger`, {
      json: { type: 'sh.keptn.event.deployment.triggered', project: 'sockshop', stage: 'dev', service: 'carts', data: { deployment: { deploymentstrategy: 'direct' }, project: 'ignored' } },
    });
    expect(answer.status).to.equal(201);
    const event = answer.body;
    expect(event.id).to.match(UUID);
    expect(event.shkeptncontext).to.match(UUID);
    expect(event).to.include({ source: 'shipyard-controller', specversion: '1.0', time: '2021-07-26T10:15:30.123Z', type: 'sh.keptn.event.deployment.triggered' });
    expect(event.data).to.deep.equal({ deployment: { deploymentstrategy: 'direct' }, project: 'sockshop', service: 'carts', stage: 'dev' });
    expect(emulator.openTriggered()).to.deep.equal([event]);
  });

  it('takes a source other than shipyard-controller', async () => {
    const emulator = await start();
    const answer = await call<TriggeredEvent>(`${emulator.url}/emulator/trigger`, { json: { type: 'sh.keptn.event.test.triggered', project: 'p', stage: 's', service: 'c', source: 'my-test' } });
    expect(answer.body.source).to.equal('my-test');
  });

  const invalid: Array<[string, unknown]> = [
    ['no type', { project: 'p', stage: 's', service: 'c' }],
    ['a type not ending in .triggered', { type: 'sh.keptn.event.test.started', project: 'p', stage: 's', service: 'c' }],
    ['a type outside sh.keptn.event', { type: 'my.event.triggered', project: 'p', stage: 's', service: 'c' }],
    ['no project', { type: 'sh.keptn.event.test.triggered', stage: 's', service: 'c' }],
    ['an empty stage', { type: 'sh.keptn.event.test.triggered', project: 'p', stage: '', service: 'c' }],
    ['data that is no object', { type: 'sh.keptn.event.test.triggered', project: 'p', stage: 's', service: 'c', data: [1] }],
    ['an array', []],
  ];
  for (const [what, body] of invalid) {
    it(`answers 400 {code, message} to ${what}`, async () => {
      const emulator = await start();
      const answer = await call(`${emulator.url}/emulator/trigger`, { json: body });
      expect(answer.status).to.equal(400);
      expect(answer.body).to.have.keys('code', 'message');
      expect(emulator.openTriggered()).to.deep.equal([]);
    });
  }

  it('throws a TypeError for the same mistakes made through the library', async () => {
    const emulator = await start();
    expect(() => emulator.trigger({ type: 'sh.keptn.event.test.started', project: 'p', stage: 's', service: 'c' })).to.throw(TypeError, /\.triggered/);
    expect(() => emulator.addTriggered({ type: 'sh.keptn.event.test.finished' })).to.throw(TypeError, /\.triggered/);
  });
});

describe('emulator: inspection routes', () => {
  const start = useEmulators();

  it('lists open .triggered events, received events, registrations and logs', async () => {
    const emulator = await start();
    const test = emulator.trigger({ type: 'sh.keptn.event.test.triggered', project: 'p', stage: 's', service: 'c' });
    emulator.trigger({ type: 'sh.keptn.event.other.triggered', project: 'p', stage: 's', service: 'c' });
    await call(`${emulator.url}/v1/event`, { json: answerTo(test, 'started') });
    await call(`${emulator.url}/controlPlane/v1/uniform/registration`, { json: { name: 'svc', metadata: { kubernetesmetadata: { namespace: 'ns' } } } });
    await call(`${emulator.url}/controlPlane/v1/log`, { json: { logs: [{ message: 'oops' }] } });

    const triggered = await call<{ events: TriggeredEvent[] }>(`${emulator.url}/emulator/triggered?type=sh.keptn.event.test.triggered`);
    expect(triggered.body.events).to.deep.equal([test]);
    const received = await call<{ events: ReceivedEvent[] }>(`${emulator.url}/emulator/events?type=sh.keptn.event.test.started&keptnContext=${test.shkeptncontext}`);
    expect(received.body.events.map((event) => event.outcome)).to.deep.equal([{ kind: 'started', triggeredId: test.id }]);
    const none = await call<{ events: ReceivedEvent[] }>(`${emulator.url}/emulator/events?type=sh.keptn.event.test.finished`);
    expect(none.body.events).to.deep.equal([]);
    const registrations = await call<{ registrations: Integration[] }>(`${emulator.url}/emulator/registrations`);
    expect(registrations.body.registrations.map((integration) => integration.name)).to.deep.equal(['svc']);
    const logs = await call<{ logs: LogEntry[] }>(`${emulator.url}/emulator/logs`);
    expect(logs.body.logs.map((entry) => entry.message)).to.deep.equal(['oops']);
  });
});

describe('emulator: routes for the agent\'s API proxy', () => {
  const start = useEmulators();

  for (const prefix of ['/controlPlane/v1/echo', '/configuration-service/echo', '/mongodb-datastore/echo']) {
    it(`${prefix} answers method, raw path, raw query, headers and body exactly as they arrived`, async () => {
      const emulator = await start({ token: 'secret' });
      const answer = await call<{ method: string; path: string; query: string; headers: Record<string, string>; body: string }>(
        `${emulator.url}${prefix}/a%2Fb/c?x=%2F&y=1&y=2`,
        { method: 'PATCH', body: 'raw body', headers: { 'x-token': 'secret', 'content-type': 'text/plain', 'x-custom': 'kept' } },
      );
      expect(answer.status).to.equal(200);
      expect(answer.body).to.include({ method: 'PATCH', path: `${prefix}/a%2Fb/c`, query: 'x=%2F&y=1&y=2', body: 'raw body' });
      expect(answer.body.headers).to.include({ 'x-token': 'secret', 'x-custom': 'kept', 'content-type': 'text/plain' });
    });
  }

  it('serves a project outline from the events seen, and 404 for an unknown project', async () => {
    const emulator = await start();
    emulator.trigger({ type: 'sh.keptn.event.deployment.triggered', project: 'sockshop', stage: 'dev', service: 'carts' });
    emulator.trigger({ type: 'sh.keptn.event.deployment.triggered', project: 'sockshop', stage: 'prod', service: 'carts' });
    const project = await call(`${emulator.url}/controlPlane/v1/project/sockshop`);
    expect(project.status).to.equal(200);
    expect(project.body).to.deep.equal({
      projectName: 'sockshop',
      shipyardVersion: 'spec.keptn.sh/0.2.0',
      stages: [{ stageName: 'dev', services: [{ serviceName: 'carts' }] }, { stageName: 'prod', services: [{ serviceName: 'carts' }] }],
    });
    const unknown = await call(`${emulator.url}/controlPlane/v1/project/nope`);
    expect(unknown.status).to.equal(404);
    expect(unknown.body).to.have.keys('code', 'message');
  });

  describe('configuration-service resources behind the gateway (spec §7.3.3)', () => {
    const resource = '/configuration-service/v1/project/sockshop/stage/dev/service/carts/resource';
    const content = Buffer.from('replicaCount: 1\n').toString('base64');

    it('stores and serves a nested resource URI that arrives escaped twice, keeping the raw path', async () => {
      const emulator = await start();
      const put = await call(`${emulator.url}${resource}/helm%252Fvalues.yaml`, { method: 'PUT', json: { resourceContent: content } });
      expect(put.status).to.equal(201);
      expect(put.body).to.deep.equal({ version: '1' });
      const get = await call(`${emulator.url}${resource}/helm%252Fvalues.yaml`);
      expect(get.status).to.equal(200);
      expect(get.body).to.deep.equal({ resourceURI: 'helm/values.yaml', resourceContent: content, metadata: { version: '1' } });
      const [stored] = emulator.resources();
      expect(stored).to.deep.include({ resourceURI: 'helm/values.yaml', rawPath: `${resource}/helm%252Fvalues.yaml` } satisfies Partial<StoredResource>);
    });

    it('answers 404 to a nested URI escaped only once: the gateway turns it into extra path segments', async () => {
      const emulator = await start();
      await call(`${emulator.url}${resource}/helm%252Fvalues.yaml`, { method: 'PUT', json: { resourceContent: content } });
      const once = await call(`${emulator.url}${resource}/helm%2Fvalues.yaml`);
      expect(once.status).to.equal(404);
      expect(once.body).to.have.keys('code', 'message');
    });

    it('answers 404 {code, message} to a resource never written, and 400 to a PUT without resourceContent', async () => {
      const emulator = await start();
      expect((await call(`${emulator.url}${resource}/values.yaml`)).status).to.equal(404);
      const bad = await call(`${emulator.url}${resource}/values.yaml`, { method: 'PUT', json: { content } });
      expect(bad.status).to.equal(400);
      expect(bad.body).to.have.keys('code', 'message');
    });
  });
});
