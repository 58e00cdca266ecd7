import { expect } from 'chai';
import { integrationId } from '../../lib/emulator/registration.ts';
import type { Emulator, Integration, LogEntry } from '../../lib/emulator/server.ts';
import { call, useEmulators, type Answer } from './harness.ts';

/** The 0.8.7 registration body (spec §9.2). */
function registration(name = 'my-service', namespace = 'keptn', filter = { project: '', stage: '', service: '' }): Record<string, unknown> {
  return {
    id: '',
    name,
    metadata: {
      hostname: 'node-1',
      integrationversion: '0.8.3',
      distributorversion: '0.1.0',
      location: 'remote-execution-plane',
      kubernetesmetadata: { namespace, podname: `${name}-pod`, deploymentname: name },
    },
    subscription: { topics: ['sh.keptn.event.deployment.triggered'], status: '', filter },
  };
}

function register(emulator: Emulator, body: unknown): Promise<Answer<{ id?: string; code?: number; message?: string }>> {
  return call(`${emulator.url}/controlPlane/v1/uniform/registration`, { json: body });
}

describe('emulator: uniform registration (spec §9.2–9.5)', () => {
  const start = useEmulators();

  it('derives the id as SHA-1 of name-namespace-filters: my-service/keptn → adf006ef… (spec §9.3)', async () => {
    expect(integrationId('my-service', 'keptn', { project: '', stage: '', service: '' })).to.equal('adf006ef73806b4c4ebf87307e030ad6fec90d3f');
    const emulator = await start();
    const answer = await register(emulator, registration());
    expect(answer.status).to.equal(200);
    expect(answer.body).to.deep.equal({ id: 'adf006ef73806b4c4ebf87307e030ad6fec90d3f' });
  });

  it('ignores the client\'s id, upserts under the same id and stamps metadata.lastseen', async () => {
    let now = new Date('2021-07-26T10:00:00.000Z');
    const emulator = await start({ now: () => now });
    await register(emulator, { ...registration(), id: 'chosen-by-client' });
    now = new Date('2021-07-26T10:00:10.000Z');
    const again = await register(emulator, registration());
    expect(again.body.id).to.equal('adf006ef73806b4c4ebf87307e030ad6fec90d3f');
    const stored = emulator.registrations();
    expect(stored).to.have.length(1);
    expect(stored[0]?.metadata.lastseen).to.equal('2021-07-26T10:00:10.000Z');
    expect(stored[0]?.subscription).to.deep.equal(registration().subscription);
  });

  it('gives a registration with other filters another id', async () => {
    const emulator = await start();
    const plain = await register(emulator, registration());
    const filtered = await register(emulator, registration('my-service', 'keptn', { project: 'sockshop', stage: '', service: '' }));
    expect(filtered.body.id).to.equal(integrationId('my-service', 'keptn', { project: 'sockshop', stage: '', service: '' }));
    expect(filtered.body.id).to.not.equal(plain.body.id);
    expect(emulator.registrations()).to.have.length(2);
  });

  for (const [what, body] of [
    ['no name', registration('')],
    ['no namespace', registration('my-service', '')],
    ['no metadata', { name: 'my-service' }],
  ] as const) {
    it(`answers 400 "incomplete integration ID…" to a registration with ${what}`, async () => {
      const emulator = await start();
      const answer = await register(emulator, body);
      expect(answer.status).to.equal(400);
      expect(answer.body).to.deep.equal({ code: 400, message: "incomplete integration ID. At least 'name' and 'namespace' must be set" });
    });
  }

  it('answers 400 to 1.x-style array filters', async () => {
    const emulator = await start();
    const answer = await register(emulator, registration('my-service', 'keptn', { project: ['a'] } as never));
    expect(answer.status).to.equal(400);
  });

  it('lists registrations on GET, filtered by name and raw filter strings', async () => {
    const emulator = await start();
    await register(emulator, registration('helm-service'));
    await register(emulator, registration('jmeter-service', 'keptn', { project: 'sockshop', stage: '', service: '' }));
    const all = await call<Integration[]>(`${emulator.url}/controlPlane/v1/uniform/registration`);
    expect(all.body.map((integration) => integration.name)).to.deep.equal(['helm-service', 'jmeter-service']);
    const byProject = await call<Integration[]>(`${emulator.url}/controlPlane/v1/uniform/registration?project=sockshop`);
    expect(byProject.body.map((integration) => integration.name)).to.deep.equal(['jmeter-service']);
  });

  it('deletes a registration with 200 {} and answers 404 {code, message} to an unknown id', async () => {
    const emulator = await start();
    const { body } = await register(emulator, registration());
    const url = `${emulator.url}/controlPlane/v1/uniform/registration/${body.id}`;
    const deleted = await call(url, { method: 'DELETE' });
    expect(deleted.status).to.equal(200);
    expect(deleted.body).to.deep.equal({});
    expect(emulator.registrations()).to.deep.equal([]);
    const again = await call(url, { method: 'DELETE' });
    expect(again.status).to.equal(404);
    expect(again.body).to.have.keys('code', 'message');
  });
});

describe('emulator: log ingestion (spec §8.4)', () => {
  const start = useEmulators();
  const entry = {
    integrationid: 'adf006ef73806b4c4ebf87307e030ad6fec90d3f',
    message: 'helm upgrade failed: timed out waiting for the condition',
    time: '0001-01-01T00:00:00Z',
    shkeptncontext: '0c1f5f5c-4f7e-4fd4-8a40-9a8f0b5b7f7e',
    task: 'deployment',
    triggeredid: '3f3a5cd6-5ac5-4b4d-b8a4-0a7d6c0d9d3f',
  };

  it('stores the entries, answers 200 {}, and stamps a zero time with the time of receipt', async () => {
    const emulator = await start({ now: () => new Date('2021-07-26T10:20:00.000Z') });
    const answer = await call(`${emulator.url}/controlPlane/v1/log`, { json: { logs: [entry, { ...entry, time: '2021-07-26T10:19:00Z', message: 'second' }] } });
    expect(answer.status).to.equal(200);
    expect(answer.body).to.deep.equal({});
    expect(emulator.logs()).to.deep.equal([
      { ...entry, time: '2021-07-26T10:20:00.000Z' },
      { ...entry, time: '2021-07-26T10:19:00Z', message: 'second' },
    ]);
  });

  it('serves them back on GET /controlPlane/v1/log?integrationId=, with numeric page keys', async () => {
    const emulator = await start();
    await call(`${emulator.url}/controlPlane/v1/log`, { json: { logs: [entry, { ...entry, integrationid: 'other' }] } });
    const answer = await call<{ logs: LogEntry[]; nextPageKey: number; totalCount: number }>(`${emulator.url}/controlPlane/v1/log?integrationId=other`);
    expect(answer.body.logs.map((log) => log.integrationid)).to.deep.equal(['other']);
    expect(answer.body).to.include({ nextPageKey: 0, totalCount: 1 });
  });

  for (const [what, body] of [
    ['no logs list', { entries: [entry] }],
    ['an entry that is no object', { logs: ['oops'] }],
    ['a message that is no string', { logs: [{ ...entry, message: 42 }] }],
    ['a time that is not RFC 3339', { logs: [{ ...entry, time: 'yesterday' }] }],
  ] as const) {
    it(`answers 400 {code, message} to ${what}`, async () => {
      const emulator = await start();
      const answer = await call(`${emulator.url}/controlPlane/v1/log`, { json: body });
      expect(answer.status).to.equal(400);
      expect(answer.body).to.have.keys('code', 'message');
      expect(emulator.logs()).to.deep.equal([]);
    });
  }
});
