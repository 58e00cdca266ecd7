import { once } from 'node:events';
import { expect } from 'chai';
import type { DatastoreEvent, Emulator, ReceivedEvent, TriggeredEvent } from '../../lib/emulator/server.ts';
import { answerTo, call, fixture, useEmulators, type Answer } from './harness.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function postEvent(emulator: Emulator, event: unknown, contentType = 'application/json'): Promise<Answer<{ keptnContext: string; code?: number; message?: string }>> {
  return call(`${emulator.url}/v1/event`, { json: event, headers: { 'content-type': contentType } });
}

function openDeployment(emulator: Emulator): TriggeredEvent {
  return emulator.trigger({ type: 'sh.keptn.event.deployment.triggered', project: 'sockshop', stage: 'dev', service: 'carts' });
}

describe('emulator: POST /v1/event (api-service, spec §7.2.5)', () => {
  const start = useEmulators();

  for (const contentType of ['application/json', 'application/cloudevents+json', 'application/cloudevents+json; charset=utf-8']) {
    it(`accepts ${contentType} and answers 200 {"keptnContext"} with the event's context`, async () => {
      const emulator = await start();
      const started = fixture('deployment.started.json');
      const answer = await postEvent(emulator, started, contentType);
      expect(answer.status).to.equal(200);
      expect(answer.body).to.deep.equal({ keptnContext: '0c1f5f5c-4f7e-4fd4-8a40-9a8f0b5b7f7e' });
    });
  }

  it('gives an event without shkeptncontext a new UUID context', async () => {
    const emulator = await start();
    const answer = await postEvent(emulator, { type: 'sh.keptn.event.test.status.changed', source: 'svc', data: {} });
    expect(answer.body.keptnContext).to.match(UUID);
    expect(emulator.received()[0]?.keptnContext).to.equal(answer.body.keptnContext);
  });

  it('keeps the JSON as posted, and the event as the api-service re-created it (new id and time)', async () => {
    const emulator = await start();
    const started = fixture('deployment.started.json');
    await postEvent(emulator, started);
    const [received] = emulator.received();
    expect(received?.event).to.deep.equal(started);
    expect(received?.stored.id).to.match(UUID).and.not.equal(started.id);
    expect(received?.stored.time).to.not.equal(started.time);
    expect(received?.stored).to.include({ type: started.type, source: started.source, triggeredid: started.triggeredid, datacontenttype: 'application/json' });
  });

  it('lists received events in arrival order and filters them by type and context', async () => {
    const emulator = await start();
    await postEvent(emulator, { type: 'a.one', source: 's', data: {}, shkeptncontext: 'ctx-1' });
    await postEvent(emulator, { type: 'a.two', source: 's', data: {}, shkeptncontext: 'ctx-2' });
    await postEvent(emulator, { type: 'a.one', source: 's', data: {}, shkeptncontext: 'ctx-2' });
    expect(emulator.received().map((received) => received.event.type)).to.deep.equal(['a.one', 'a.two', 'a.one']);
    expect(emulator.received({ type: 'a.one' })).to.have.length(2);
    expect(emulator.received({ keptnContext: 'ctx-2', type: 'a.one' })).to.have.length(1);
  });

  describe('refusals (schema violations are 422, as go-swagger answers them)', () => {
    const cases: Array<[string, unknown, string]> = [
      ['no data', { type: 'sh.keptn.event.test.started', source: 'svc' }, 'data in body is required'],
      ['data null', { type: 'sh.keptn.event.test.started', source: 'svc', data: null }, 'data in body is required'],
      ['no type', { source: 'svc', data: {} }, 'type in body is required'],
      ['no source', { type: 'sh.keptn.event.test.started', data: {} }, 'source in body is required'],
      ['a type that is no string', { type: 42, source: 'svc', data: {} }, 'type in body must be of type string'],
      ['a time that is not RFC 3339', { type: 'x', source: 'svc', data: {}, time: '26.07.2021 10:15' }, 'time in body must be of type date-time'],
      ['an array', [{ type: 'x', source: 'svc', data: {} }], 'body in body must be of type object'],
    ];
    for (const [what, body, message] of cases) {
      it(`answers 422 {code, message} to ${what}`, async () => {
        const emulator = await start();
        const answer = await postEvent(emulator, body);
        expect(answer.status).to.equal(422);
        expect(answer.body.code).to.equal(422);
        expect(answer.body.message).to.include(message);
        expect(emulator.received()).to.deep.equal([]);
      });
    }

    it('answers 400 to a body that is not JSON', async () => {
      const emulator = await start();
      const answer = await call(`${emulator.url}/v1/event`, { body: '{"type": ', headers: { 'content-type': 'application/json' } });
      expect(answer.status).to.equal(400);
      expect(answer.body).to.have.keys('code', 'message');
    });

    it('answers 415 to a content type other than JSON', async () => {
      const emulator = await start();
      const answer = await call(`${emulator.url}/v1/event`, { body: '{}', headers: { 'content-type': 'text/plain' } });
      expect(answer.status).to.equal(415);
      expect(answer.body).to.include({ code: 415 });
    });
  });
});

describe('emulator: the lifecycle of a .triggered event (spec §4.8.4)', () => {
  const start = useEmulators();

  it('keeps a .triggered event open after .started, and closes it on the .finished from the same source', async () => {
    const emulator = await start();
    const triggered = openDeployment(emulator);
    await postEvent(emulator, answerTo(triggered, 'started'));
    expect(emulator.openTriggered()).to.deep.equal([triggered]);
    const completed = once(emulator, 'completed') as Promise<[ReceivedEvent]>;
    await postEvent(emulator, answerTo(triggered, 'finished'));
    const [finished] = await completed;
    expect(finished.outcome).to.deep.equal({ kind: 'closed', triggeredId: triggered.id });
    expect(emulator.openTriggered()).to.deep.equal([]);
    expect(emulator.received().map((received) => received.outcome.kind)).to.deep.equal(['started', 'closed']);
  });

  it('closes the real fixtures\' deployment task (triggered → started → finished)', async () => {
    const emulator = await start();
    emulator.addTriggered(fixture('deployment.triggered.json'));
    await postEvent(emulator, fixture('deployment.started.json'));
    await postEvent(emulator, fixture('deployment.finished.json'));
    expect(emulator.openTriggered()).to.deep.equal([]);
  });

  it('rejects a .finished without .started: the task stays open for ever', async () => {
    const lines: string[] = [];
    const emulator = await start({ log: (line) => lines.push(line) });
    const triggered = openDeployment(emulator);
    await postEvent(emulator, answerTo(triggered, 'finished'));
    expect(emulator.openTriggered()).to.deep.equal([triggered]);
    const [finished] = emulator.received();
    expect(finished?.outcome.kind).to.equal('rejected');
    expect(lines.at(-1)).to.match(/← sh\.keptn\.event\.deployment\.finished .*→ rejected: no sh\.keptn\.event\.deployment\.started/);
  });

  it('rejects a .started whose triggeredid is not open, or names another project', async () => {
    const emulator = await start();
    const triggered = openDeployment(emulator);
    await postEvent(emulator, { ...answerTo(triggered, 'started'), triggeredid: 'not-open' });
    await postEvent(emulator, answerTo({ ...triggered, data: { ...triggered.data, project: 'other' } }, 'started'));
    await postEvent(emulator, answerTo({ ...triggered, type: 'sh.keptn.event.release.triggered' }, 'started'));
    expect(emulator.received().map((received) => received.outcome.kind)).to.deep.equal(['rejected', 'rejected', 'rejected']);
    // And so a .finished after them cannot close the task.
    await postEvent(emulator, answerTo(triggered, 'finished'));
    expect(emulator.openTriggered()).to.have.length(1);
  });

  it('with two services on one task, stays open until the last of them has finished', async () => {
    const emulator = await start();
    const triggered = openDeployment(emulator);
    await postEvent(emulator, answerTo(triggered, 'started', { source: 'helm-service' }));
    await postEvent(emulator, answerTo(triggered, 'started', { source: 'jmeter-service' }));
    await postEvent(emulator, answerTo(triggered, 'finished', { source: 'helm-service' }));
    expect(emulator.received().at(-1)?.outcome).to.deep.equal({ kind: 'waiting', triggeredId: triggered.id, remaining: 1 });
    expect(emulator.openTriggered()).to.have.length(1);
    await postEvent(emulator, answerTo(triggered, 'finished', { source: 'jmeter-service' }));
    expect(emulator.received().at(-1)?.outcome.kind).to.equal('closed');
    expect(emulator.openTriggered()).to.deep.equal([]);
  });

  it('leaves the task open for ever when one source sent .started twice (both are deleted by its .finished)', async () => {
    const emulator = await start();
    const triggered = openDeployment(emulator);
    await postEvent(emulator, answerTo(triggered, 'started'));
    await postEvent(emulator, answerTo(triggered, 'started'));
    await postEvent(emulator, answerTo(triggered, 'finished'));
    expect(emulator.received().at(-1)?.outcome).to.deep.equal({ kind: 'waiting', triggeredId: triggered.id, remaining: 0 });
    await postEvent(emulator, answerTo(triggered, 'finished'));
    expect(emulator.received().at(-1)?.outcome.kind).to.equal('rejected');
    expect(emulator.openTriggered()).to.have.length(1);
  });

  it('ignores a .finished from shipyard-controller', async () => {
    const emulator = await start();
    const triggered = openDeployment(emulator);
    await postEvent(emulator, answerTo(triggered, 'started'));
    await postEvent(emulator, answerTo(triggered, 'finished', { source: 'shipyard-controller' }));
    expect(emulator.received().at(-1)?.outcome.kind).to.equal('ignored');
    expect(emulator.openTriggered()).to.have.length(1);
  });

  it('opens a .triggered event posted to /v1/event, under the id the api-service gave it', async () => {
    const emulator = await start();
    const opened = once(emulator, 'opened') as Promise<[TriggeredEvent]>;
    await postEvent(emulator, { type: 'sh.keptn.event.test.triggered', source: 'my-cli', id: 'posted-id', shkeptncontext: 'ctx-posted', data: { project: 'p', stage: 's', service: 'c' } });
    const [event] = await opened;
    expect(event.id).to.not.equal('posted-id');
    expect(event).to.include({ shkeptncontext: 'ctx-posted', source: 'my-cli', type: 'sh.keptn.event.test.triggered' });
    expect(emulator.openTriggered('sh.keptn.event.test.triggered')).to.deep.equal([event]);
    expect(emulator.received()[0]?.outcome).to.deep.equal({ kind: 'opened', triggeredId: event.id });
  });

  it('does not open a .triggered event posted by shipyard-controller', async () => {
    const emulator = await start();
    await postEvent(emulator, { type: 'sh.keptn.event.test.triggered', source: 'shipyard-controller', data: { project: 'p' } });
    expect(emulator.openTriggered()).to.deep.equal([]);
  });

  it('prints one line per event with what became of it', async () => {
    const lines: string[] = [];
    const emulator = await start({ log: (line) => lines.push(line), now: () => new Date(2021, 6, 26, 12, 0, 1) });
    const triggered = openDeployment(emulator);
    await postEvent(emulator, answerTo(triggered, 'started', { source: 'helm-service' }));
    await postEvent(emulator, answerTo(triggered, 'finished', { source: 'helm-service' }));
    const short = `${triggered.id.slice(0, 8)}…`;
    expect(lines).to.have.length(3);
    expect(lines[0]).to.equal(`12:00:01 → open     sh.keptn.event.deployment.triggered  id ${short}  ctx ${triggered.shkeptncontext.slice(0, 8)}…  sockshop/dev/carts`);
    expect(lines[1]).to.match(new RegExp(`^12:00:01 ← sh\\.keptn\\.event\\.deployment\\.started  from helm-service  ctx .*  → started ${short}$`));
    expect(lines[2]).to.match(new RegExp(`^12:00:01 ← sh\\.keptn\\.event\\.deployment\\.finished  from helm-service  ctx .*  succeeded/pass  → closed triggered ${short}$`));
  });
});

describe('emulator: GET /mongodb-datastore/event (datastore query)', () => {
  const start = useEmulators();

  interface DatastoreAnswer { events: DatastoreEvent[]; nextPageKey: string; pageSize: number; totalCount: number }

  it('finds a .started by keptnContext and type, as the agent\'s outbox asks', async () => {
    const emulator = await start();
    const triggered = openDeployment(emulator);
    await postEvent(emulator, answerTo(triggered, 'started'));
    const url = `${emulator.url}/mongodb-datastore/event?keptnContext=${triggered.shkeptncontext}&type=sh.keptn.event.deployment.started&pageSize=100`;
    const answer = await call<DatastoreAnswer>(url);
    expect(answer.status).to.equal(200);
    expect(Object.keys(answer.body)).to.deep.equal(['events', 'nextPageKey', 'pageSize', 'totalCount']);
    expect(answer.body).to.include({ nextPageKey: '0', pageSize: 1, totalCount: 1 });
    expect(answer.body.events[0]).to.include({ type: 'sh.keptn.event.deployment.started', triggeredid: triggered.id, source: 'my-service' });
  });

  it('holds the opened .triggered events too, newest first, and pages with string keys', async () => {
    const emulator = await start();
    const first = openDeployment(emulator);
    const second = openDeployment(emulator);
    const page = await call<DatastoreAnswer>(`${emulator.url}/mongodb-datastore/event?type=sh.keptn.event.deployment.triggered&pageSize=1`);
    expect(page.body).to.include({ nextPageKey: '1', pageSize: 1, totalCount: 2 });
    expect(page.body.events[0]?.id).to.equal(second.id);
    const next = await call<DatastoreAnswer>(`${emulator.url}/mongodb-datastore/event?type=sh.keptn.event.deployment.triggered&pageSize=1&nextPageKey=1`);
    expect(next.body.events[0]?.id).to.equal(first.id);
    expect(next.body.nextPageKey).to.equal('0');
  });

  it('answers 400 to a pageSize beyond the datastore\'s 100', async () => {
    const emulator = await start();
    const answer = await call(`${emulator.url}/mongodb-datastore/event?pageSize=101`);
    expect(answer.status).to.equal(400);
    expect(answer.body).to.have.keys('code', 'message');
  });
});
