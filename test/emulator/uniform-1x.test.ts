import { expect } from 'chai';
import { integrationId1x } from '../../lib/emulator/uniform-1x.ts';
import { call, useEmulators } from './harness.ts';

const REGISTRATION = '/api/controlPlane/v1/uniform/registration';
const TYPE = 'sh.keptn.event.deployment.triggered';
const body = (subscriptions: object[]) => ({
  name: 'my-service',
  metadata: { hostname: 'node-1', kubernetesmetadata: { namespace: 'plane-a' } },
  subscriptions,
});

describe('emulator: the Keptn 1.x uniform (--api-version 1.x)', () => {
  const emulatorWith = useEmulators();

  it('registers with the id SHA-1(name-namespace-hostname), 201, a UUID per subscription; ping answers the integration', async () => {
    const emulator = await emulatorWith({ port: 0, apiVersion: '1.x' });
    const registered = await call(`${emulator.url}${REGISTRATION}`, { json: body([{ event: TYPE, filter: { projects: ['p'] } }]) });
    expect(registered.status).to.equal(201);
    expect(registered.body).to.deep.equal({ id: integrationId1x('my-service', 'plane-a', 'node-1') });
    const ping = await call<{ subscriptions: Array<{ id: string; event: string; filter: object }> }>(
      `${emulator.url}${REGISTRATION}/${String(registered.body.id)}/ping`, { method: 'PUT' });
    expect(ping.status).to.equal(200);
    expect(ping.body.subscriptions).to.have.length(1);
    expect(ping.body.subscriptions[0]!.id).to.match(/^[0-9a-f-]{36}$/);
    expect(ping.body.subscriptions[0]).to.deep.include({ event: TYPE, filter: { projects: ['p'], stages: [], services: [] } });
  });

  it('re-registering keeps the subscriptions users edited (200), as the 1.4.5 shipyard-controller does', async () => {
    const emulator = await emulatorWith({ port: 0, apiVersion: '1.x' });
    const { body: { id } } = await call(`${emulator.url}${REGISTRATION}`, { json: body([{ event: TYPE }]) });
    const added = await call(`${emulator.url}${REGISTRATION}/${String(id)}/subscription`, {
      json: { event: 'sh.keptn.event.test.triggered', filter: { stages: ['dev'], services: ['carts'] } },
    });
    expect(added.status).to.equal(201);
    const again = await call(`${emulator.url}${REGISTRATION}`, { json: body([{ event: TYPE }]) });
    expect(again.status).to.equal(200);
    expect(again.body, 'found by name and namespace: another node name is the same integration').to.deep.equal({ id });
    const otherNode = await call(`${emulator.url}${REGISTRATION}`, {
      json: { ...body([]), metadata: { hostname: 'node-2', kubernetesmetadata: { namespace: 'plane-a' } } },
    });
    expect(otherNode.body).to.deep.equal({ id });
    const otherNamespace = await call(`${emulator.url}${REGISTRATION}`, {
      json: { ...body([]), metadata: { hostname: 'node-1', kubernetesmetadata: { namespace: 'plane-b' } } },
    });
    expect(otherNamespace.status).to.equal(201);
    expect(emulator.registrations()[0]?.subscriptions?.map((subscription) => subscription.event)).to.deep.equal([TYPE, 'sh.keptn.event.test.triggered']);
  });

  it('prints a line for each subscription added, changed or removed', async () => {
    const lines: string[] = [];
    const emulator = await emulatorWith({ port: 0, apiVersion: '1.x', log: (line) => lines.push(line) });
    const { body: { id } } = await call(`${emulator.url}${REGISTRATION}`, { json: body([]) });
    const base = `${emulator.url}${REGISTRATION}/${String(id)}/subscription`;
    const { body: { id: subscription } } = await call(base, { json: { event: TYPE, filter: { stages: ['dev'] } } });
    await call(`${base}/${String(subscription)}`, { method: 'PUT', json: { event: TYPE, filter: { projects: ['p'] } } });
    await call(`${base}/${String(subscription)}`, { method: 'DELETE' });
    const changes = lines.filter((line) => line.includes('⇄ subscription')).map((line) => line.slice(9).replace(/id \S+$/, 'id …'));
    expect(changes).to.deep.equal([
      `⇄ subscription added my-service  ${TYPE}  stage=dev  id …`,
      `⇄ subscription changed my-service  ${TYPE}  project=p  id …`,
      `⇄ subscription removed my-service  ${TYPE}  project=p  id …`,
    ]);
  });

  it('refuses a subscription without event, or with services but no stage (400); unknown ids are 404', async () => {
    const emulator = await emulatorWith({ port: 0, apiVersion: '1.x' });
    const { body: { id } } = await call(`${emulator.url}${REGISTRATION}`, { json: body([]) });
    const base = `${emulator.url}${REGISTRATION}/${String(id)}/subscription`;
    expect((await call(base, { json: { filter: {} } })).body).to.deep.equal({ code: 400, message: 'the event must be specified when setting up a subscription' });
    expect((await call(base, { json: { event: TYPE, filter: { services: ['carts'] } } })).status).to.equal(400);
    expect((await call(`${emulator.url}${REGISTRATION}/unknown/ping`, { method: 'PUT' })).status).to.equal(404);
    expect((await call(`${base}/unknown`)).status).to.equal(404);
  });

  it('the 0.8 mode has no heartbeat route: a ping is 404, as the 0.8.x gateway answers', async () => {
    const emulator = await emulatorWith({ port: 0 });
    expect((await call(`${emulator.url}${REGISTRATION}/any/ping`, { method: 'PUT' })).status).to.equal(404);
  });
});
