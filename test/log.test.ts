import { expect } from 'chai';
import { REDACTED } from '../lib/log.ts';
import { logSink } from './helpers/log-sink.ts';

const TOKEN = 'tok-3f9a-secret';

describe('log', () => {
  it('writes JSON lines with level, message, timestamp and fields', () => {
    const sink = logSink({ level: 'info' });
    sink.logger.info('polled', { topic: 'sh.keptn.event.test.triggered', keptnContext: 'ctx-1', eventId: 'id-1' });
    const [entry] = sink.entries();
    expect(entry).to.include({ level: 'info', message: 'polled', keptnContext: 'ctx-1', eventId: 'id-1' });
    expect(entry?.timestamp).to.be.a('string');
  });

  it('honours the level', () => {
    const sink = logSink({ level: 'warn' });
    sink.logger.info('hidden');
    sink.logger.debug('hidden');
    sink.logger.warn('shown');
    expect(sink.entries().map((entry) => entry.message)).to.deep.equal(['shown']);
  });

  it('child loggers add their component', () => {
    const sink = logSink();
    sink.logger.child({ component: 'poller' }).info('cycle');
    expect(sink.entries()[0]).to.include({ component: 'poller', message: 'cycle' });
  });

  describe('never writes the API token, at any level, wherever it hides', () => {
    for (const level of ['error', 'warn', 'info', 'debug'] as const) {
      it(`at ${level}`, () => {
        const sink = logSink({ level: 'debug', secrets: [TOKEN] });
        const logger = sink.logger.child({ component: 'test' });
        logger[level](`token is ${TOKEN}`, {
          header: `x-token: ${TOKEN}`,
          nested: { deeper: [{ value: TOKEN }] },
          error: new Error(`request with ${TOKEN} failed`),
        });
        expect(sink.text()).not.to.include(TOKEN);
        const [entry] = sink.entries();
        expect(entry?.message).to.equal(`token is ${REDACTED}`);
        expect(entry?.header).to.equal(`x-token: ${REDACTED}`);
        expect(entry?.nested).to.deep.equal({ deeper: [{ value: REDACTED }] });
        expect(entry?.error).to.deep.equal({ name: 'Error', message: `request with ${REDACTED} failed` });
      });
    }

    it('in child logger metadata', () => {
      const sink = logSink({ secrets: [TOKEN] });
      sink.logger.child({ auth: TOKEN }).info('x');
      expect(sink.text()).not.to.include(TOKEN);
    });

    it('survives circular metadata', () => {
      const sink = logSink({ secrets: [TOKEN] });
      const loop: Record<string, unknown> = { token: TOKEN };
      loop.self = loop;
      sink.logger.info('circular', { loop });
      expect(sink.text()).not.to.include(TOKEN);
    });
  });
});
