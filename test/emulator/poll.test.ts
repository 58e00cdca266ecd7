import { expect } from 'chai';
import type { Emulator, TriggeredEvent } from '../../lib/emulator/server.ts';
import { call, fixture, useEmulators, type Answer } from './harness.ts';

interface PollAnswer {
  events: TriggeredEvent[];
  nextPageKey: string;
  totalCount?: number;
}

const TYPE = 'sh.keptn.event.deployment.triggered';

/** `count` open deployment tasks, event i one second after event i-1, ids `event-00`, `event-01`, … */
function openTasks(emulator: Emulator, count: number, place: { project?: string; stage?: string; service?: string } = {}): TriggeredEvent[] {
  return Array.from({ length: count }, (_, index) => emulator.trigger({
    type: TYPE,
    project: place.project ?? 'sockshop',
    stage: place.stage ?? 'dev',
    service: place.service ?? 'carts',
    id: `${place.project ?? 'sockshop'}-event-${String(index).padStart(2, '0')}`,
    time: new Date(Date.UTC(2021, 6, 26, 10, 0, index)).toISOString(),
  }));
}

function poll(emulator: Emulator, query = '', type = TYPE): Promise<Answer<PollAnswer>> {
  return call<PollAnswer>(`${emulator.url}/controlPlane/v1/event/triggered/${type}${query}`);
}

describe('emulator: GET /controlPlane/v1/event/triggered/{type} (spec §4.8)', () => {
  const start = useEmulators();

  describe('response shape (§4.8.2)', () => {
    it('answers {events, nextPageKey, totalCount} with events in the shipyard-controller model, keys in Go order', async () => {
      const emulator = await start();
      const [opened] = openTasks(emulator, 1);
      const answer = await poll(emulator);
      expect(answer.status).to.equal(200);
      expect(answer.headers.get('content-type')).to.equal('application/json; charset=utf-8');
      expect(Object.keys(answer.body)).to.deep.equal(['events', 'nextPageKey', 'totalCount']);
      expect(answer.body.nextPageKey).to.equal('0');
      expect(answer.body.totalCount).to.equal(1);
      const [event] = answer.body.events;
      expect(Object.keys(event ?? {})).to.deep.equal(['data', 'id', 'shkeptncontext', 'source', 'specversion', 'time', 'type']);
      expect(event).to.deep.equal(opened);
      expect(event?.source).to.equal('shipyard-controller');
      expect(event?.specversion).to.equal('1.0');
      expect(Object.keys(event?.data ?? {})).to.deep.equal(['project', 'service', 'stage']);
    });

    it('drops datacontenttype, shkeptnspecversion and unknown extensions from a real .triggered event (D24)', async () => {
      const emulator = await start();
      emulator.addTriggered({ ...fixture('deployment.triggered.json'), gitcommitid: 'abc' });
      const { body } = await poll(emulator);
      const [event] = body.events;
      expect(event).to.not.have.any.keys('datacontenttype', 'shkeptnspecversion', 'gitcommitid');
      expect(event).to.include({ id: '3f3a5cd6-5ac5-4b4d-b8a4-0a7d6c0d9d3f', shkeptncontext: '0c1f5f5c-4f7e-4fd4-8a40-9a8f0b5b7f7e', time: '2021-07-26T10:15:30.123Z' });
      expect(Object.keys(event?.data ?? {})).to.deep.equal(['configurationChange', 'deployment', 'message', 'project', 'result', 'service', 'stage', 'status']);
    });

    it('answers exactly {"events":[],"nextPageKey":"0"} when nothing is open: no totalCount, no pageSize', async () => {
      const emulator = await start();
      const answer = await poll(emulator);
      expect(answer.status).to.equal(200);
      expect(answer.text).to.equal('{"events":[],"nextPageKey":"0"}');
    });

    it('matches the type exactly: no other type, no wildcard', async () => {
      const emulator = await start();
      openTasks(emulator, 1);
      emulator.trigger({ type: 'sh.keptn.event.release.triggered', project: 'sockshop', stage: 'dev', service: 'carts' });
      expect((await poll(emulator)).body.events.map((event) => event.type)).to.deep.equal([TYPE]);
      expect((await poll(emulator, '', 'sh.keptn.event.*.triggered')).body.events).to.deep.equal([]);
    });

    it('lists newest first within a project, projects in the order they first appeared', async () => {
      const emulator = await start();
      openTasks(emulator, 3, { project: 'b-project' });
      openTasks(emulator, 2, { project: 'a-project' });
      const { body } = await poll(emulator);
      expect(body.events.map((event) => event.id)).to.deep.equal([
        'b-project-event-02', 'b-project-event-01', 'b-project-event-00', 'a-project-event-01', 'a-project-event-00',
      ]);
    });
  });

  describe('pagination (§4.8.3)', () => {
    it('serves 45 events in pages of 20 correctly by default: nextPageKey "20", "40", "0", no duplicates', async () => {
      const emulator = await start();
      const opened = openTasks(emulator, 45);
      const keys: string[] = [];
      const seen: string[] = [];
      let query = '?pageSize=20';
      for (let page = 0; page < 3; page++) {
        const { body } = await poll(emulator, query);
        expect(body.totalCount).to.equal(45);
        keys.push(body.nextPageKey);
        seen.push(...body.events.map((event) => event.id));
        query = `?pageSize=20&nextPageKey=${body.nextPageKey}`;
      }
      expect(keys).to.deep.equal(['20', '40', '0']);
      expect(seen).to.have.length(45);
      expect(new Set(seen).size).to.equal(45);
      expect([...seen].sort()).to.deep.equal(opened.map((event) => event.id).sort());
    });

    it('uses pages of 20 when no pageSize is given', async () => {
      const emulator = await start();
      openTasks(emulator, 21);
      const { body } = await poll(emulator);
      expect(body.events).to.have.length(20);
      expect(body.nextPageKey).to.equal('20');
    });

    it('with paginationBug reproduces the spec\'s 21-event example: page 2 repeats item 0, item 20 is never served', async () => {
      const emulator = await start({ paginationBug: true });
      openTasks(emulator, 21);
      const first = await poll(emulator);
      expect(first.body.events).to.have.length(20);
      expect(first.body.nextPageKey).to.equal('20');
      const second = await poll(emulator, '?nextPageKey=20');
      expect(second.body.nextPageKey).to.equal('0');
      expect(second.body.events).to.deep.equal([first.body.events[0]]);
      const served = [...first.body.events, ...second.body.events].map((event) => event.id);
      // Newest first: item 20 of the list is the oldest event, event-00.
      expect(served).to.not.include('sockshop-event-00');
      expect(served.filter((id) => id === 'sockshop-event-20')).to.have.length(2);
    });

    it('with paginationBug the later pages of 45 events repeat the first items', async () => {
      const emulator = await start({ paginationBug: true });
      openTasks(emulator, 45);
      const first = await poll(emulator, '?pageSize=20');
      const third = await poll(emulator, '?pageSize=20&nextPageKey=40');
      expect(third.body.nextPageKey).to.equal('0');
      expect(third.body.events).to.deep.equal(first.body.events.slice(0, 5));
    });

    it('reads a nextPageKey that is not a number as 0, as Go\'s Atoi does', async () => {
      const emulator = await start();
      openTasks(emulator, 3);
      const { body } = await poll(emulator, '?pageSize=2&nextPageKey=abc');
      expect(body.events.map((event) => event.id)).to.deep.equal(['sockshop-event-02', 'sockshop-event-01']);
      expect(body.nextPageKey).to.equal('2');
    });

    it('answers an empty page past the end', async () => {
      const emulator = await start();
      openTasks(emulator, 3);
      const { body } = await poll(emulator, '?nextPageKey=10');
      expect(body).to.deep.equal({ events: [], nextPageKey: '0', totalCount: 3 });
    });

    for (const pageSize of ['abc', '0', '-1', '2.5']) {
      it(`answers one 400 {code, message} for pageSize=${pageSize} (without the real server's second body)`, async () => {
        const emulator = await start();
        const answer = await poll(emulator, `?pageSize=${pageSize}`);
        expect(answer.status).to.equal(400);
        expect(answer.body).to.have.keys('code', 'message');
        expect((answer.body as unknown as { code: number }).code).to.equal(400);
      });
    }
  });

  describe('filters (§4.8.1)', () => {
    it('filters on stage, service and eventID by equality', async () => {
      const emulator = await start();
      openTasks(emulator, 2, { stage: 'dev', service: 'carts' });
      emulator.trigger({ type: TYPE, project: 'sockshop', stage: 'prod', service: 'carts', id: 'prod-carts' });
      emulator.trigger({ type: TYPE, project: 'sockshop', stage: 'prod', service: 'orders', id: 'prod-orders' });
      const ids = async (query: string): Promise<string[]> => (await poll(emulator, query)).body.events.map((event) => event.id).sort();
      expect(await ids('?stage=prod')).to.deep.equal(['prod-carts', 'prod-orders']);
      expect(await ids('?stage=prod&service=carts')).to.deep.equal(['prod-carts']);
      expect(await ids('?eventID=sockshop-event-01')).to.deep.equal(['sockshop-event-01']);
      expect(await ids('?service=payment')).to.deep.equal([]);
    });

    it('searches only the named project', async () => {
      const emulator = await start();
      openTasks(emulator, 2, { project: 'sockshop' });
      openTasks(emulator, 1, { project: 'podtato' });
      const { body } = await poll(emulator, '?project=podtato');
      expect(body.events.map((event) => event.id)).to.deep.equal(['podtato-event-00']);
      expect(body.totalCount).to.equal(1);
    });

    it('answers 500 "no matching event found" to a project query without a match (keptn#5132)', async () => {
      const emulator = await start();
      openTasks(emulator, 1, { project: 'sockshop' });
      for (const query of ['?project=unknown', '?project=sockshop&stage=prod']) {
        const answer = await poll(emulator, query);
        expect(answer.status, query).to.equal(500);
        expect(answer.body, query).to.deep.equal({ code: 500, message: 'no matching event found' });
      }
    });

    it('answers an empty list, not a 500, to a query without project that matches nothing', async () => {
      const emulator = await start();
      openTasks(emulator, 1);
      const answer = await poll(emulator, '?stage=prod');
      expect(answer.status).to.equal(200);
      expect(answer.body).to.deep.equal({ events: [], nextPageKey: '0' });
    });
  });
});
