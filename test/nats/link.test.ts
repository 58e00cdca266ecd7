import { expect } from 'chai';
import { NatsLink, RECONNECT_INITIAL_MS, RECONNECT_MAX_MS, reconnectDelayMs } from '../../lib/nats/link.ts';
import { logSink, type LogSink } from '../helpers/log-sink.ts';
import { NatsServer } from '../helpers/nats-server.ts';
import { until } from '../helpers/until.ts';

describe('nats/link', function () {
  this.timeout(20_000);

  describe('reconnectDelayMs', () => {
    it('doubles per attempt, between half and all of it, up to the cap', () => {
      expect(reconnectDelayMs(1, () => 0)).to.equal(RECONNECT_INITIAL_MS / 2);
      expect(reconnectDelayMs(1, () => 1)).to.equal(RECONNECT_INITIAL_MS);
      expect(reconnectDelayMs(3, () => 1)).to.equal(RECONNECT_INITIAL_MS * 4);
      expect(reconnectDelayMs(50, () => 1)).to.equal(RECONNECT_MAX_MS);
      expect(reconnectDelayMs(50, () => 0)).to.equal(RECONNECT_MAX_MS / 2);
    });
  });

  describe('against a real nats-server', () => {
    let server: NatsServer;
    let link: NatsLink | undefined;
    let logs: LogSink;

    beforeEach(async () => {
      server = await NatsServer.start();
      logs = logSink();
    });
    afterEach(async () => {
      await link?.stop(AbortSignal.timeout(2_000));
      link = undefined;
      await server.close();
    });

    it('starts without waiting for NATS, keeps trying, and connects once the server is there', async () => {
      await server.down();
      link = new NatsLink({ url: server.url, logger: logs.logger });
      let ups = 0;
      link.onUp(() => { ups++; });
      await link.start();
      expect(link.connected).to.equal(false);
      await until(() => logs.text().includes('cannot connect to NATS'), { what: 'the first failed attempt' });
      await server.up();
      await until(() => link!.connected, { what: 'the connection' });
      expect(ups).to.equal(1);
      // Said once, not per attempt.
      expect(logs.entries().filter((entry) => entry.message === 'cannot connect to NATS: retrying with backoff')).to.have.length(1);
    });

    it('notices an outage and a reconnect, and runs onUp again', async () => {
      link = new NatsLink({ url: server.url, logger: logs.logger });
      let ups = 0;
      link.onUp(() => { ups++; });
      const connections: unknown[] = [];
      link.onConnect((connection) => { connections.push(connection); });
      await link.start();
      await until(() => link!.connected, { what: 'the connection' });
      await server.down();
      await until(() => !link!.connected, { what: 'the outage to be noticed' });
      await server.up();
      await until(() => link!.connected, { what: 'the reconnect' });
      expect(ups).to.equal(2);
      // The client reconnected the same connection (its subscriptions with it): no new one.
      expect(connections).to.have.length(1);
      const messages = logs.entries().map((entry) => entry.message);
      expect(messages).to.include('lost the connection to NATS: reconnecting with backoff');
      expect(messages).to.include('reconnected to NATS');
    });

    it('stops while still trying to connect', async () => {
      await server.down();
      link = new NatsLink({ url: server.url, logger: logs.logger });
      await link.start();
      await until(() => logs.text().includes('cannot connect to NATS'), { what: 'the first failed attempt' });
      await link.stop(AbortSignal.timeout(2_000));
      expect(link.connection).to.equal(undefined);
    });
  });
});
