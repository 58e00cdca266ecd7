import { once } from 'node:events';
import { expect } from 'chai';
import type { AnsweredRequest } from '../../lib/emulator/server.ts';
import { call, useEmulators } from './harness.ts';

const POLL = '/controlPlane/v1/event/triggered/sh.keptn.event.test.triggered';
const EVENT = { type: 'sh.keptn.event.test.status.changed', source: 'svc', data: {} };

/** The error `promise` rejects with; fails the test if it resolves. */
async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected the request to fail, but it succeeded');
}

describe('emulator: fault switches', () => {
  const start = useEmulators();

  describe('fail', () => {
    it('fails the next N calls of a route with a Keptn error body, then answers normally', async () => {
      const emulator = await start();
      emulator.faults.fail('poll', { times: 2, status: 503 });
      const answers = [await call(`${emulator.url}${POLL}`), await call(`${emulator.url}${POLL}`), await call(`${emulator.url}${POLL}`)];
      expect(answers.map((answer) => answer.status)).to.deep.equal([503, 503, 200]);
      expect(answers[0]?.body).to.have.keys('code', 'message');
      expect(answers[0]?.body.code).to.equal(503);
      expect(emulator.faults.pending('poll')).to.equal(0);
    });

    it('sends a string body as is: nginx\'s HTML 401 page', async () => {
      const emulator = await start();
      const page = '<html><head><title>401 Authorization Required</title></head><body><center><h1>401 Authorization Required</h1></center><hr><center>nginx</center></body></html>';
      emulator.faults.fail('poll', { status: 401, body: page });
      const answer = await call(`${emulator.url}${POLL}`);
      expect(answer.status).to.equal(401);
      expect(answer.headers.get('content-type')).to.equal('text/html');
      expect(answer.text).to.equal(page);
    });

    it('sends extra headers, e.g. Retry-After with a 429', async () => {
      const emulator = await start();
      emulator.faults.fail('event', { status: 429, body: 'Too Many Requests', headers: { 'retry-after': '2' } });
      const answer = await call(`${emulator.url}/v1/event`, { json: EVENT });
      expect(answer.status).to.equal(429);
      expect(answer.headers.get('retry-after')).to.equal('2');
      expect(answer.headers.get('content-type')).to.equal('text/plain');
    });

    it('leaves the control plane unchanged: a failed post is not recorded', async () => {
      const emulator = await start();
      emulator.faults.fail('event');
      expect((await call(`${emulator.url}/v1/event`, { json: EVENT })).status).to.equal(500);
      expect(emulator.received()).to.deep.equal([]);
      expect((await call(`${emulator.url}/v1/event`, { json: EVENT })).status).to.equal(200);
      expect(emulator.received()).to.have.length(1);
    });

    it('comes before the token check, as the gateway does', async () => {
      const emulator = await start({ token: 'secret' });
      emulator.faults.fail('poll', { status: 502 });
      expect((await call(`${emulator.url}${POLL}`)).status).to.equal(502);
      expect((await call(`${emulator.url}${POLL}`)).status).to.equal(401);
    });

    it('stays on with times: Infinity until cleared', async () => {
      const emulator = await start();
      emulator.faults.fail('poll', { times: Infinity });
      for (let index = 0; index < 3; index++) expect((await call(`${emulator.url}${POLL}`)).status).to.equal(500);
      expect(emulator.faults.pending('poll')).to.equal(Infinity);
      emulator.faults.clear('poll');
      expect((await call(`${emulator.url}${POLL}`)).status).to.equal(200);
    });
  });

  describe('drop', () => {
    it('destroys the connection without an answer; the call has no effect', async () => {
      const emulator = await start();
      emulator.faults.drop('event');
      const answered = once(emulator, 'request') as Promise<[AnsweredRequest]>;
      await rejection(call(`${emulator.url}/v1/event`, { json: EVENT }));
      expect((await answered)[0]).to.deep.equal({ key: 'event', method: 'POST', path: '/v1/event', status: 'dropped' });
      expect(emulator.received()).to.deep.equal([]);
      expect(emulator.requests.event).to.equal(1);
      expect((await call(`${emulator.url}/v1/event`, { json: EVENT })).status).to.equal(200);
    });

    it('with afterEffect, lets the call take effect and then destroys the connection (the ambiguous case)', async () => {
      const emulator = await start();
      emulator.faults.drop('event', { afterEffect: true });
      await rejection(call(`${emulator.url}/v1/event`, { json: EVENT }));
      expect(emulator.received()).to.have.length(1);
    });
  });

  describe('delay', () => {
    it('answers late, but normally', async () => {
      const emulator = await start();
      emulator.faults.delay('poll', 20);
      const answer = await call(`${emulator.url}${POLL}`);
      expect(answer.status).to.equal(200);
      expect(answer.body).to.deep.equal({ events: [], nextPageKey: '0' });
    });

    it('lets the call take effect at once: a client that gives up has still changed the control plane', async () => {
      const emulator = await start();
      emulator.faults.delay('event', 60_000);
      const client = new AbortController();
      const received = once(emulator, 'event');
      const posting = call(`${emulator.url}/v1/event`, { json: EVENT, signal: client.signal });
      await received;
      client.abort();
      expect((await rejection(posting)).name).to.equal('AbortError');
      expect(emulator.received()).to.have.length(1);
    });

    it('is cancelled by close(): the waiting client fails at once instead of hanging', async () => {
      const emulator = await start();
      emulator.faults.delay('poll', 600_000);
      const polling = call(`${emulator.url}${POLL}`);
      await emulator.waitFor(() => emulator.requests.poll === 1, { what: 'the poll to arrive' });
      await emulator.close();
      await rejection(polling);
    });

    it('is cancelled by stop() as well', async () => {
      const emulator = await start();
      emulator.faults.delay('poll', 600_000);
      const polling = call(`${emulator.url}${POLL}`);
      await emulator.waitFor(() => emulator.requests.poll === 1, { what: 'the poll to arrive' });
      await emulator.stop();
      await rejection(polling);
    });
  });

  it('applies faults armed on one route in the order they were armed', async () => {
    const emulator = await start();
    emulator.faults.fail('poll', { status: 500 }).drop('poll').fail('poll', { status: 502 });
    expect(emulator.faults.pending('poll')).to.equal(3);
    expect((await call(`${emulator.url}${POLL}`)).status).to.equal(500);
    await rejection(call(`${emulator.url}${POLL}`));
    expect((await call(`${emulator.url}${POLL}`)).status).to.equal(502);
    expect((await call(`${emulator.url}${POLL}`)).status).to.equal(200);
  });

  it('affects only the route it was armed on', async () => {
    const emulator = await start();
    emulator.faults.fail('register', { times: Infinity });
    expect((await call(`${emulator.url}${POLL}`)).status).to.equal(200);
    expect((await call(`${emulator.url}/v1/event`, { json: EVENT })).status).to.equal(200);
  });

  it('refuses nonsense arguments with a RangeError', async () => {
    const emulator = await start();
    expect(() => emulator.faults.fail('poll', { status: 700 })).to.throw(RangeError);
    expect(() => emulator.faults.fail('poll', { times: 0 })).to.throw(RangeError);
    expect(() => emulator.faults.fail('poll', { times: 1.5 })).to.throw(RangeError);
    expect(() => emulator.faults.delay('poll', -1)).to.throw(RangeError);
    expect(() => emulator.faults.drop('nope' as 'poll')).to.throw(RangeError, /unknown route/);
  });
});

describe('emulator: stop and restart', () => {
  const start = useEmulators();

  it('stops listening and listens again on the same port, keeping the memory', async () => {
    const emulator = await start();
    const triggered = emulator.trigger({ type: 'sh.keptn.event.test.triggered', project: 'p', stage: 's', service: 'c' });
    await call(`${emulator.url}/controlPlane/v1/uniform/registration`, { json: { name: 'svc', metadata: { kubernetesmetadata: { namespace: 'ns' } } } });
    const { port, url } = emulator;

    await emulator.stop();
    const refused = await rejection(call(`${url}${POLL}`));
    expect((refused.cause as { code?: string } | undefined)?.code).to.equal('ECONNREFUSED');

    await emulator.restart();
    expect(emulator.port).to.equal(port);
    const answer = await call<{ events: Array<{ id: string }> }>(`${url}${POLL}`);
    expect(answer.body.events.map((event) => event.id)).to.deep.equal([triggered.id]);
    expect(emulator.registrations()).to.have.length(1);
  });

  it('cannot restart once closed, and closes idempotently', async () => {
    const emulator = await start();
    await Promise.all([emulator.close(), emulator.close()]);
    await emulator.close();
    expect((await rejection(emulator.restart())).message).to.match(/closed/);
  });

  it('rejects when the port is in use', async () => {
    const first = await start();
    expect((await rejection(start({ port: first.port })) as NodeJS.ErrnoException).code).to.equal('EADDRINUSE');
  });

  it('refuses a port outside 0–65535', async () => {
    expect((await rejection(start({ port: 65536 }))).name).to.equal('RangeError');
    expect((await rejection(start({ port: 1.5 }))).name).to.equal('RangeError');
  });
});

describe('emulator: waitFor', () => {
  const start = useEmulators();

  it('resolves when the condition comes true, without polling', async () => {
    const emulator = await start();
    const waiting = emulator.waitFor(() => emulator.received().length >= 3, { what: '3 events' });
    for (let index = 0; index < 3; index++) await call(`${emulator.url}/v1/event`, { json: EVENT });
    await waiting;
  });

  it('resolves at once when the condition holds already', async () => {
    const emulator = await start();
    await emulator.waitFor(() => true);
  });

  it('rejects after its timeout, naming what it waited for', async () => {
    const emulator = await start();
    const error = await rejection(emulator.waitFor(() => false, { timeout: 10, what: 'a miracle' }));
    expect(error.message).to.equal('timed out after 10 ms waiting for a miracle');
  });

  it('rejects when the emulator closes', async () => {
    const emulator = await start();
    const waiting = rejection(emulator.waitFor(() => false, { timeout: 60_000 }));
    await emulator.close();
    expect((await waiting).message).to.match(/closed/);
  });

  it('rejects with what the predicate threw', async () => {
    const emulator = await start();
    const error = await rejection(emulator.waitFor(() => { throw new Error('bad predicate'); }));
    expect(error.message).to.equal('bad predicate');
  });
});
