import { expect } from 'chai';
import type { NatsConnection } from '@nats-io/transport-node';
import { KeptnApiError } from '../../lib/keptn-api.ts';
import { NatsSink } from '../../lib/outbox/nats-sink.ts';
import { NatsServer } from '../helpers/nats-server.ts';
import { keptnEvent } from './fakes.ts';

const STARTED = 'sh.keptn.event.deployment.started';

async function failure(promise: Promise<unknown>): Promise<KeptnApiError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof KeptnApiError) return error;
    throw error;
  }
  throw new Error('expected a KeptnApiError');
}

describe('outbox/nats-sink', () => {
  let server: NatsServer;
  let publisher: NatsConnection;
  let watcher: NatsConnection;

  before(async () => {
    server = await NatsServer.start();
    publisher = await server.client();
    watcher = await server.client();
  });
  after(async () => {
    await publisher.close();
    await watcher.close();
    await server.close();
  });

  it('publishes the event, as it is, on the subject equal to its type, and resolves once NATS has it', async () => {
    const seen: Array<{ subject: string; text: string }> = [];
    watcher.subscribe('>', { callback: (_error, message) => { seen.push({ subject: message.subject, text: message.string() }); } });
    await watcher.flush();
    const { json } = keptnEvent('e1', STARTED, 'ctx');
    await new NatsSink({ link: { connected: true, connection: publisher } }).postEvent(json);
    await watcher.flush();
    expect(seen).to.deep.equal([{ subject: STARTED, text: json }]);
  });

  it('fails as unreachable, publishing nothing, while not connected: the outbox keeps the event', async () => {
    const sink = new NatsSink({ link: { connected: false, connection: publisher } });
    const error = await failure(sink.postEvent(keptnEvent('e2', STARTED, 'ctx').json));
    expect(error.kind).to.equal('unreachable');
  });

  it('fails as ambiguous when NATS does not confirm in time: it may have arrived', async () => {
    const silent = { publish: () => undefined, flush: () => new Promise<void>(() => undefined) } as unknown as NatsConnection;
    const sink = new NatsSink({ link: { connected: true, connection: silent }, confirmTimeoutMs: 20 });
    const error = await failure(sink.postEvent(keptnEvent('e3', STARTED, 'ctx').json));
    expect(error.kind).to.equal('ambiguous');
  });

  it('is never asked whether an event arrived (NATS mode checks no datastore)', async () => {
    const error = await failure(new NatsSink({ link: { connected: true, connection: publisher } }).eventsByContext());
    expect(error.kind).to.equal('unreachable');
  });
});
