import { expect } from 'chai';
import type { KeptnCloudEvent } from '../lib/cloudevents.ts';
import {
  SubscriptionSet, dedupKeyOf, subscriptionsForRegistration, subscriptionsFromEnvironment, subscriptionsOfIntegration, withSubscriptionId,
} from '../lib/subscriptions.ts';

const NONE = { projects: [], stages: [], services: [] };
const TYPE = 'sh.keptn.event.deployment.triggered';

describe('subscriptions', () => {
  it('the environment gives one subscription per PUBSUB_TOPIC type, each with the *_FILTER settings and no id', () => {
    const filter = { projects: ['a'], stages: [], services: [] };
    expect(subscriptionsFromEnvironment([TYPE, 'sh.keptn.event.test.triggered'], filter)).to.deep.equal([
      { id: '', event: TYPE, filter },
      { id: '', event: 'sh.keptn.event.test.triggered', filter },
    ]);
  });

  it('reads the 1.x integration (go-utils models.Integration): ids, events, filter arrays; drops entries without an event', () => {
    const body = {
      id: 'integration', name: 'svc',
      subscriptions: [
        { id: 's1', event: TYPE, filter: { projects: ['p'], stages: ['dev', ''], services: null } },
        { id: 's2', event: '', filter: {} },
        'nonsense',
        { id: 's3', event: 'sh.keptn.event.test.triggered' },
      ],
    };
    expect(subscriptionsOfIntegration(body)).to.deep.equal([
      { id: 's1', event: TYPE, filter: { projects: ['p'], stages: ['dev'], services: [] } },
      { id: 's3', event: 'sh.keptn.event.test.triggered', filter: NONE },
    ]);
  });

  it('an answer without a subscriptions list is no integration', () => {
    expect(subscriptionsOfIntegration({ id: 'x' })).to.equal(undefined);
    expect(subscriptionsOfIntegration('404 page not found')).to.equal(undefined);
    expect(subscriptionsOfIntegration({ subscriptions: [] })).to.deep.equal([]);
  });

  it('an integration whose subscriptions Go encoded as null (stored without any) has none, and is an integration', () => {
    expect(subscriptionsOfIntegration({ id: 'x', name: 'svc', subscriptions: null })).to.deep.equal([]);
  });

  it('the registration body leaves the ids to the control plane', () => {
    expect(subscriptionsForRegistration([{ id: 'old', event: TYPE, filter: { projects: ['p'], stages: [], services: [] } }]))
      .to.deep.equal([{ id: '', event: TYPE, filter: { projects: ['p'], stages: [], services: [] } }]);
  });

  it('dedup keys: the type for the environment (records of earlier versions still apply), type and id for the control plane', () => {
    expect(dedupKeyOf({ id: '', event: TYPE, filter: NONE })).to.equal(TYPE);
    expect(dedupKeyOf({ id: 'abc', event: TYPE, filter: NONE })).to.equal(`${TYPE}#abc`);
  });

  describe('withSubscriptionId', () => {
    const event: KeptnCloudEvent = {
      specversion: '1.0', id: 'e1', source: 'shipyard-controller', type: TYPE, shkeptncontext: 'ctx',
      data: { project: 'p', temporaryData: { other: { x: 1 }, distributor: { kept: true } } },
    } as unknown as KeptnCloudEvent;

    it('adds data.temporaryData.distributor.subscriptionID and changes nothing else (the input stays as it was)', () => {
      const before = structuredClone(event);
      const stamped = withSubscriptionId(event, { id: 'sub-1', event: TYPE, filter: NONE });
      expect(stamped).to.deep.equal({
        ...before,
        data: { project: 'p', temporaryData: { other: { x: 1 }, distributor: { kept: true, subscriptionID: 'sub-1' } } },
      });
      expect(event).to.deep.equal(before);
    });

    it('creates the path when data has none, and leaves events of environment subscriptions alone', () => {
      const bare = { ...event, data: { project: 'p' } } as unknown as KeptnCloudEvent;
      expect(withSubscriptionId(bare, { id: 's', event: TYPE, filter: NONE }).data)
        .to.deep.equal({ project: 'p', temporaryData: { distributor: { subscriptionID: 's' } } });
      expect(withSubscriptionId(bare, { id: '', event: TYPE, filter: NONE })).to.equal(bare);
    });
  });

  it('SubscriptionSet.replace: false when neither the list nor its source changed', () => {
    const seeds = subscriptionsFromEnvironment([TYPE], NONE);
    const set = new SubscriptionSet(seeds, 'environment');
    expect(set.replace([...seeds], 'environment')).to.equal(false);
    expect(set.replace(seeds, 'control plane')).to.equal(true);
    expect(set.source).to.equal('control plane');
    expect(set.replace([{ id: 'x', event: TYPE, filter: NONE }], 'control plane')).to.equal(true);
    expect(set.current).to.deep.equal([{ id: 'x', event: TYPE, filter: NONE }]);
  });
});
