import type { IncomingHttpHeaders } from 'node:http';
import { expect } from 'chai';
import { parseRelayRequest, type RelayInput } from '../lib/relay.ts';
import { binaryToStructured, isJsonMediaType } from '../lib/cloudevents.ts';

const NOW = new Date('2021-07-26T10:15:41.002Z');
const now = (): Date => NOW;

/** What a Keptn-service built on go-utils posts (spec §7.2.4). */
const STARTED = {
  specversion: '1.0',
  id: 'a9d1f4a2-52d0-4b77-9f0e-6f5b2f0f6c11',
  source: 'helm-service',
  type: 'sh.keptn.event.deployment.started',
  datacontenttype: 'application/json',
  time: '2021-07-26T10:15:41.002Z',
  shkeptncontext: '0c1f5f5c-4f7e-4fd4-8a40-9a8f0b5b7f7e',
  triggeredid: '3f3a5cd6-5ac5-4b4d-b8a4-0a7d6c0d9d3f',
  shkeptnspecversion: '0.2.1',
  data: { project: 'sockshop', stage: 'dev', service: 'carts', status: 'succeeded' },
};

function parse(headers: IncomingHttpHeaders, body: string | object): RelayInput {
  return parseRelayRequest(headers, Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)), now);
}

function accepted(input: RelayInput): Extract<RelayInput, { ok: true }> {
  if (!input.ok) throw new Error(`expected acceptance, got ${input.status} ${input.message}`);
  return input;
}

const CE_JSON = { 'content-type': 'application/cloudevents+json' };

/** A copy of `record` without `key`. */
function without<T extends object>(record: T, key: keyof T): Partial<T> {
  const copy: Partial<T> = { ...record };
  delete copy[key];
  return copy;
}

describe('relay input', () => {
  describe('structured mode', () => {
    it('accepts application/cloudevents+json and keeps the original JSON text', () => {
      const text = JSON.stringify(STARTED);
      const input = accepted(parse(CE_JSON, text));
      expect(input.json).to.equal(text);
      expect(input.event.id).to.equal(STARTED.id);
      expect(input.mode).to.equal('structured');
    });

    it('accepts a charset parameter and any letter case in the media type', () => {
      accepted(parse({ 'content-type': 'Application/CloudEvents+JSON; charset=utf-8' }, STARTED));
    });

    it('accepts application/json carrying specversion', () => {
      accepted(parse({ 'content-type': 'application/json' }, STARTED));
    });

    it('reads a body without Content-Type as JSON, as the reference did', () => {
      accepted(parse({}, STARTED));
    });

    it('fills a missing time with the current time', () => {
      const withoutTime = without(STARTED, 'time');
      const input = accepted(parse(CE_JSON, withoutTime));
      expect(input.event.time).to.equal(NOW.toISOString());
      expect(JSON.parse(input.json)).to.deep.equal({ ...withoutTime, time: NOW.toISOString() });
    });

    it('puts a pretty-printed event on one line (the journal is line-oriented)', () => {
      const input = accepted(parse(CE_JSON, JSON.stringify(STARTED, null, 2)));
      expect(input.json).not.to.include('\n');
      expect(JSON.parse(input.json)).to.deep.equal(STARTED);
    });

    it('accepts the reference forwarder test fixtures (data "")', () => {
      accepted(parse(CE_JSON, { specversion: '1.0', id: '1', source: 'test', type: 'sh.keptn.events.task.started', data: '' }));
    });

    it('Test_decodeCloudEvent (spec §14.8): a 1.0 event with data "" and shkeptncontext decodes; an empty body does not', () => {
      const input = accepted(parse(CE_JSON, { specversion: '1.0', id: '1', source: 'test', type: 'sh.keptn.events.task.started', shkeptncontext: 'ctx', data: '' }));
      expect(input.event).to.include({ specversion: '1.0', type: 'sh.keptn.events.task.started', shkeptncontext: 'ctx' });
      const empty = parse(CE_JSON, '');
      expect(empty.ok).to.equal(false);
    });
  });

  describe('bad input answers 400 saying what is wrong', () => {
    const cases: Array<[string, string | object, RegExp]> = [
      ['invalid JSON', '{"specversion": "1.0",', /not valid JSON/],
      ['an empty body', '', /empty/],
      ['a batch (JSON array)', [STARTED], /batches .* not supported/],
      ['a JSON value that is no object', '"text"', /must be a JSON object/],
      ['missing specversion', { ...STARTED, specversion: undefined }, /missing "specversion"/],
      ['an unknown specversion', { ...STARTED, specversion: '2.0' }, /"specversion" must be/],
      ['missing id', { ...STARTED, id: undefined }, /missing "id"/],
      ['missing source', { ...STARTED, source: undefined }, /missing "source"/],
      ['missing type', { ...STARTED, type: undefined }, /missing "type"/],
      ['an empty type', { ...STARTED, type: '' }, /"type" must be a non-empty string/],
      ['missing data', { ...STARTED, data: undefined }, /missing "data"/],
      ['null data', { ...STARTED, data: null }, /missing "data"/],
      ['a time that is not RFC 3339', { ...STARTED, time: '26.07.2021 10:15' }, /"time" must be an RFC 3339/],
      ['a date without time', { ...STARTED, time: '2021-07-26' }, /"time" must be an RFC 3339/],
      ['a non-string shkeptncontext', { ...STARTED, shkeptncontext: 42 }, /"shkeptncontext" must be a string/],
    ];
    for (const [what, body, message] of cases) {
      it(what, () => {
        const input = parse(CE_JSON, body);
        expect(input.ok).to.equal(false);
        if (input.ok) return;
        expect(input.status).to.equal(400);
        expect(input.message).to.match(message);
      });
    }

    it('an application/json body without specversion', () => {
      const input = parse({ 'content-type': 'application/json' }, without(STARTED, 'specversion'));
      expect(input).to.deep.include({ ok: false, status: 400 });
      expect(input.ok ? '' : input.message).to.match(/missing "specversion"/);
    });

    it('the CloudEvents batch content type', () => {
      expect(parse({ 'content-type': 'application/cloudevents-batch+json' }, [STARTED])).to.deep.include({ ok: false, status: 400 });
    });
  });

  describe('unsupported content types answer 415', () => {
    for (const contentType of ['text/plain', 'application/xml', 'application/cloudevents+xml']) {
      it(contentType, () => {
        const input = parse({ 'content-type': contentType }, STARTED);
        expect(input).to.deep.include({ ok: false, status: 415 });
        expect(input.ok ? '' : input.message).to.include(contentType.split('/')[1]!);
      });
    }
  });

  describe('binary mode', () => {
    const headers = {
      'ce-specversion': '1.0',
      'ce-id': STARTED.id,
      'ce-source': STARTED.source,
      'ce-type': STARTED.type,
      'ce-time': STARTED.time,
      'ce-shkeptncontext': STARTED.shkeptncontext,
      'ce-triggeredid': STARTED.triggeredid,
      'content-type': 'application/json',
    };

    it('turns ce-* headers and a JSON body into the structured JSON that is relayed', () => {
      const input = accepted(parse(headers, STARTED.data));
      expect(input.mode).to.equal('binary');
      expect(JSON.parse(input.json)).to.deep.equal({
        specversion: '1.0', id: STARTED.id, source: STARTED.source, type: STARTED.type, time: STARTED.time,
        shkeptncontext: STARTED.shkeptncontext, triggeredid: STARTED.triggeredid,
        datacontenttype: 'application/json', data: STARTED.data,
      });
    });

    it('fills a missing ce-time', () => {
      expect(accepted(parse(without(headers, 'ce-time') as IncomingHttpHeaders, STARTED.data)).event.time).to.equal(NOW.toISOString());
    });

    it('keeps non-JSON data as text', () => {
      const input = accepted(parse({ ...headers, 'content-type': 'text/plain' }, 'hello'));
      expect(input.event.data).to.equal('hello');
      expect(input.event.datacontenttype).to.equal('text/plain');
    });

    it('percent-decodes header values (HTTP binding)', () => {
      const input = accepted(parse({ ...headers, 'ce-source': 'https%3A%2F%2Fexample.com%2Fsvc' }, STARTED.data));
      expect(input.event.source).to.equal('https://example.com/svc');
    });

    it('refuses a binary event without data', () => {
      const input = parse(headers, '');
      expect(input).to.deep.include({ ok: false, status: 400 });
      expect(input.ok ? '' : input.message).to.match(/missing "data"/);
    });

    it('refuses a binary event without ce-type', () => {
      expect(parse(without(headers, 'ce-type') as IncomingHttpHeaders, STARTED.data)).to.deep.include({ ok: false, status: 400 });
    });

    it('refuses JSON data that does not parse', () => {
      const input = parse(headers, '{broken');
      expect(input.ok ? '' : input.message).to.match(/not valid JSON/);
    });

    it('a structured content type wins over ce-* headers', () => {
      expect(accepted(parse({ ...headers, 'content-type': 'application/cloudevents+json' }, STARTED)).mode).to.equal('structured');
    });
  });

  describe('binaryToStructured', () => {
    it('without Content-Type, a body that parses is JSON data, else text', () => {
      const json = binaryToStructured({ 'ce-id': '1' }, Buffer.from('{"a":1}'));
      expect(json).to.deep.equal({ ok: true, raw: { id: '1', data: { a: 1 } } });
      const text = binaryToStructured({ 'ce-id': '1' }, Buffer.from('plain'));
      expect(text).to.deep.equal({ ok: true, raw: { id: '1', data: 'plain' } });
    });

    it('refuses a header that is not validly percent-encoded', () => {
      expect(binaryToStructured({ 'ce-id': '%E0%A4%A' }, Buffer.alloc(0)).ok).to.equal(false);
    });

    it('isJsonMediaType', () => {
      expect(['application/json', 'application/json; charset=utf-8', 'text/json', 'application/vnd.x+json'].map(isJsonMediaType))
        .to.deep.equal([true, true, true, true]);
      expect(['text/plain', 'application/xml', undefined].map(isJsonMediaType)).to.deep.equal([false, false, false]);
    });
  });
});
