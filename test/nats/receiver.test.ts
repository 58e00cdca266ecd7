/**
 * The NATS receiver against a real nats-server, with a dispatcher stand-in
 * that records what it is handed. Includes the reference's
 * nats_connection_handler_test.go cases (spec §14.5).
 */
import { expect } from 'chai';
import type { NatsConnection } from '@nats-io/transport-node';
import type { KeptnCloudEvent } from '../../lib/cloudevents.ts';
import { ConfigError, loadConfig } from '../../lib/config.ts';
import type { DispatchOutcome } from '../../lib/dispatcher.ts';
import { createMetrics } from '../../lib/metrics.ts';
import { NatsLink } from '../../lib/nats/link.ts';
import { NatsReceiver } from '../../lib/nats/receiver.ts';
import { logSink, type LogSink } from '../helpers/log-sink.ts';
import { NatsServer } from '../helpers/nats-server.ts';
import { until } from '../helpers/until.ts';

class RecordingDispatcher {
  readonly events: Array<{ topic: string; event: KeptnCloudEvent }> = [];
  outcome: DispatchOutcome = { kind: 'delivered', status: 200, attempts: 1 };
  stopped = false;
  dispatch(topic: string, event: KeptnCloudEvent): Promise<DispatchOutcome> {
    this.events.push({ topic, event });
    return Promise.resolve(this.outcome);
  }
  stop(): Promise<void> {
    this.stopped = true;
    return Promise.resolve();
  }
}

function event(id: string, type = 'test-topic'): string {
  return JSON.stringify({ specversion: '1.0', id, source: 'test', type, data: { project: 'sockshop' } });
}

describe('nats/receiver', function () {
  this.timeout(20_000);
  let server: NatsServer;
  let link: NatsLink;
  let publisher: NatsConnection;
  let logs: LogSink;
  let receiver: NatsReceiver | undefined;
  let dispatcher: RecordingDispatcher;
  let ready: boolean;

  before(async () => {
    server = await NatsServer.start();
    publisher = await server.client();
  });
  after(async () => {
    await publisher.close();
    await server.close();
  });
  beforeEach(async () => {
    logs = logSink();
    link = new NatsLink({ url: server.url, logger: logs.logger });
    await link.start();
    dispatcher = new RecordingDispatcher();
    ready = false;
  });
  afterEach(async () => {
    await receiver?.stop(AbortSignal.timeout(1_000));
    receiver = undefined;
    await link.stop(AbortSignal.timeout(1_000));
  });

  async function start(topics: string[], group = ''): Promise<NatsReceiver> {
    receiver = new NatsReceiver({
      link, topics, group, dispatcher, filter: { projects: [], stages: [], services: [] },
      logger: logs.logger, metrics: createMetrics({ defaultMetrics: false }), setReady: (holds) => { ready = holds; },
    });
    await receiver.start();
    await until(() => ready, { what: 'the subscriptions' });
    return receiver;
  }

  describe('TestNatsConnectionHandler_SubscribeToTopics (reference §14.5)', () => {
    it('"Connect with single topic": a published message reaches the handler; stopping removes the subscriptions', async () => {
      const running = await start(['test-topic']);
      publisher.publish('test-topic', event('single-1'));
      await publisher.flush();
      await until(() => dispatcher.events.length === 1, { what: 'the message' });
      expect(dispatcher.events[0]!.topic).to.equal('test-topic');
      expect(dispatcher.events[0]!.event.id).to.equal('single-1');
      await running.stop(AbortSignal.timeout(1_000));
      receiver = undefined;
      expect(dispatcher.stopped).to.equal(true);
      // Unsubscribed: a later message is not handed over.
      publisher.publish('test-topic', event('single-2'));
      await publisher.flush();
      await link.connection!.flush();
      expect(dispatcher.events).to.have.length(1);
    });

    it('"Empty topic list": no subscription, said in the log, ready (the reference receiver does nothing, §11.1)', async () => {
      receiver = new NatsReceiver({
        link, topics: [], group: '', dispatcher, filter: { projects: [], stages: [], services: [] },
        logger: logs.logger, metrics: createMetrics({ defaultMetrics: false }), setReady: (holds) => { ready = holds; },
      });
      await receiver.start();
      expect(ready).to.equal(true);
      expect(logs.text()).to.include('PUBSUB_TOPIC is empty');
    });

    it('"Empty NATS URL": an explicitly empty --pubsub-url is a configuration error (an empty variable means the default)', () => {
      expect(() => loadConfig({ env: {}, flags: { pubsubUrl: '' } })).to.throw(ConfigError, /^--pubsub-url="": expected a NATS server URL/);
      expect(loadConfig({ env: { PUBSUB_URL: '' } }).pubsubUrl).to.equal('nats://keptn-nats-cluster');
    });
  });

  it('hands an event whose dispatch failed to the recipient again if it arrives again, and logs the loss', async () => {
    await start(['test-topic']);
    dispatcher.outcome = { kind: 'failed', reason: 'answered 503', attempts: 4 };
    publisher.publish('test-topic', event('failing-1'));
    await publisher.flush();
    await until(() => logs.text().includes('does not deliver it again: lost'), { what: 'the loss to be logged' });
    dispatcher.outcome = { kind: 'delivered', status: 200, attempts: 1 };
    publisher.publish('test-topic', event('failing-1'));
    await publisher.flush();
    await until(() => dispatcher.events.length === 2, { what: 'the second arrival' });
  });

  it('subscribes again on a new connection', async () => {
    await start(['test-topic']);
    // The client gives up (closed): the link connects anew and the receiver subscribes there.
    await link.connection!.close();
    await until(() => logs.text().includes('connecting anew'), { what: 'the new connection' });
    await until(() => link.connected, { what: 'the new connection' });
    await link.connection!.flush();
    publisher.publish('test-topic', event('anew-1'));
    await publisher.flush();
    await until(() => dispatcher.events.length === 1, { what: 'the message on the new connection' });
  });
});
