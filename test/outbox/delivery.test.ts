import { expect } from 'chai';
import { classify, needsArrivalCheck } from '../../lib/outbox/delivery.ts';
import { KeptnApiError } from '../../lib/keptn-api.ts';
import { noAnswer, refused, status } from './fakes.ts';

describe('outbox delivery: what a failure means', () => {
  const cases: Array<[string, unknown, string, Record<string, unknown>?]> = [
    ['connection refused (nothing sent)', refused(), 'retry', { cause: 'unavailable', ambiguous: false }],
    ['a timeout after the request went out', noAnswer(), 'retry', { cause: 'unavailable', ambiguous: true }],
    ['an unknown error', new Error('boom'), 'retry', { ambiguous: true }],
    ['401 (wrong token)', status(401), 'retry', { cause: 'token' }],
    ['403 (rotated token)', status(403), 'retry', { cause: 'token' }],
    ['429 with Retry-After', status(429, '429', 2_000), 'retry', { cause: 'unavailable', retryAfterMs: 2_000 }],
    ['408', status(408), 'retry'],
    ['500 (also the gateway while its rate limit bites)', status(500), 'retry'],
    ['502', status(502), 'retry'],
    ['503', status(503), 'retry'],
    ['a redirect (not followed)', status(302), 'retry'],
    ['400', status(400), 'rejected', { status: 400 }],
    ['404', status(404), 'rejected', { status: 404 }],
    ['413', status(413), 'rejected', { status: 413 }],
    ['415', status(415), 'rejected', { status: 415 }],
    ['422', status(422, '422: data in body is required'), 'rejected', { status: 422, reason: '422: data in body is required' }],
    ['409', status(409), 'rejected'],
    ['a 200 whose body is not JSON', new KeptnApiError('status', 'not JSON', { status: 200 }), 'delivered'],
  ];
  for (const [what, error, outcome, details] of cases) {
    it(`${what} → ${outcome}`, () => {
      const result = classify(error);
      expect(result.outcome).to.equal(outcome);
      if (details) expect(result).to.include(details);
    });
  }

  it('only a .started with a context is checked before a re-send', () => {
    expect(needsArrivalCheck({ id: '1', type: 'sh.keptn.event.test.started', source: 's', shkeptncontext: 'c' })).to.equal(true);
    expect(needsArrivalCheck({ id: '1', type: 'sh.keptn.event.test.started', source: 's' })).to.equal(false);
    expect(needsArrivalCheck({ id: '1', type: 'sh.keptn.event.test.finished', source: 's', shkeptncontext: 'c' })).to.equal(false);
  });
});
