/**
 * Subscriptions: what the poller polls. One subscription is an event type
 * with a project/stage/service filter. On a 0.8.x control plane they come
 * from the environment (PUBSUB_TOPIC with the *_FILTER settings); from Keptn
 * 0.9 on the control plane owns them (users edit them in the Bridge) and the
 * heartbeat's answer carries the current ones (spec §12).
 *
 * Wire format followed: keptn/go-utils `pkg/api/models/integration.go`
 * (1.4.5): `subscriptions: [{id, event, filter: {projects, stages, services}}]`.
 */
import type { KeptnCloudEvent } from './cloudevents.ts';
import type { EventFilter } from './filters.ts';
import { isRecord } from './json-object.ts';

export interface Subscription {
  /** The control plane's id (a UUID); empty for one taken from the environment. */
  readonly id: string;
  /** The event type polled, e.g. `sh.keptn.event.deployment.triggered`. */
  readonly event: string;
  readonly filter: EventFilter;
}

/** Where the subscriptions in force come from, as logged and shown on /ready. */
export type SubscriptionSource = 'environment' | 'control plane';

/** One subscription per PUBSUB_TOPIC type, all with the *_FILTER settings. */
export function subscriptionsFromEnvironment(topics: readonly string[], filter: EventFilter): Subscription[] {
  return topics.map((event) => ({ id: '', event, filter }));
}

/**
 * The key of a subscription's dedup record: the event type for one from the
 * environment (so a record written by an earlier version still applies), the
 * type and id for one from the control plane (two subscriptions to one type
 * each dispatch the event once).
 */
export function dedupKeyOf(subscription: Subscription): string {
  return subscription.id === '' ? subscription.event : `${subscription.event}#${subscription.id}`;
}

/**
 * The subscriptions of an integration as the 1.x control plane returns it
 * (registration list, heartbeat answer); undefined when `body` is not one.
 * Entries without an event type are dropped: nothing can be polled for them.
 */
export function subscriptionsOfIntegration(body: unknown): Subscription[] | undefined {
  if (!isRecord(body)) return undefined;
  // Go encodes an integration stored without subscriptions (nil slice, no omitempty) as `null`.
  if (body.subscriptions === null && typeof body.id === 'string') return [];
  if (!Array.isArray(body.subscriptions)) return undefined;
  const subscriptions: Subscription[] = [];
  for (const entry of body.subscriptions) {
    if (!isRecord(entry) || typeof entry.event !== 'string' || entry.event === '') continue;
    const filter = isRecord(entry.filter) ? entry.filter : {};
    subscriptions.push({
      id: typeof entry.id === 'string' ? entry.id : '',
      event: entry.event,
      filter: { projects: strings(filter.projects), stages: strings(filter.stages), services: strings(filter.services) },
    });
  }
  return subscriptions;
}

/** The registration body's `subscriptions` (1.x): the ids are the control plane's to give. */
export function subscriptionsForRegistration(subscriptions: readonly Subscription[]): object[] {
  return subscriptions.map(({ event, filter }) => ({
    id: '',
    event,
    filter: { projects: [...filter.projects], stages: [...filter.stages], services: [...filter.services] },
  }));
}

/** Same ids, types and filters, in the same order. */
export function sameSubscriptions(a: readonly Subscription[], b: readonly Subscription[]): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * The event as dispatched for a control-plane subscription: `data.temporaryData.distributor.subscriptionID`
 * added as the reference does from 0.10.0 on (PR #5374), everything else unchanged.
 * Events of an environment subscription go out as they are (0.8.x had no subscription ids).
 */
export function withSubscriptionId(event: KeptnCloudEvent, subscription: Subscription): KeptnCloudEvent {
  if (subscription.id === '') return event;
  const data = isRecord(event.data) ? event.data : {};
  const temporaryData = isRecord(data.temporaryData) ? data.temporaryData : {};
  const distributor = isRecord(temporaryData.distributor) ? temporaryData.distributor : {};
  return {
    ...event,
    data: { ...data, temporaryData: { ...temporaryData, distributor: { ...distributor, subscriptionID: subscription.id } } },
  };
}

/**
 * The subscriptions in force, replaced as a whole when their source says so.
 * The poller reads `current` at the start of every cycle, so a change applies
 * from the next cycle on without a restart.
 */
export class SubscriptionSet {
  #current: readonly Subscription[];
  #source: SubscriptionSource;
  #settled: boolean;
  readonly #holdUntil: number;
  readonly #now: () => number;

  /**
   * `settled: false` while a heartbeat may still replace the initial
   * subscriptions; `holdMs`: how long an unsettled set is not polled at all
   * (Infinity: until it settles).
   */
  constructor(initial: readonly Subscription[], source: SubscriptionSource,
    { settled = true, holdMs = 0, now = Date.now }: { settled?: boolean; holdMs?: number; now?: () => number } = {}) {
    this.#current = initial;
    this.#source = source;
    this.#settled = settled;
    this.#now = now;
    this.#holdUntil = now() + holdMs;
  }

  /**
   * Whether `current` may be polled. A 1.x control plane's subscriptions
   * decide what is dispatched: the environment's may name tasks users have
   * unsubscribed from in the Bridge, so they are not polled while the
   * heartbeat may still replace them (the reference polls only after the
   * first ping), unless the hold has passed.
   */
  get pollable(): boolean {
    return this.#settled || this.#now() >= this.#holdUntil;
  }

  /**
   * Whether the source is known: until then the dedup records of earlier
   * subscriptions (an earlier run's control-plane ones) are kept, since the
   * control plane may bring them back.
   */
  get settled(): boolean {
    return this.#settled;
  }

  /** The source answered: what is in force now is what it says. */
  settle(): void {
    this.#settled = true;
  }

  get current(): readonly Subscription[] {
    return this.#current;
  }

  get source(): SubscriptionSource {
    return this.#source;
  }

  /** Replaces the subscriptions; returns false when nothing changed. */
  replace(subscriptions: readonly Subscription[], source: SubscriptionSource): boolean {
    this.#settled = true;
    if (source === this.#source && sameSubscriptions(subscriptions, this.#current)) return false;
    this.#current = subscriptions;
    this.#source = source;
    return true;
  }
}

/** A short description for logs: `type (project=a,stage=b)`. */
export function describeSubscription(subscription: Subscription): string {
  const { projects, stages, services } = subscription.filter;
  const parts = [
    ...(projects.length > 0 ? [`project=${projects.join('|')}`] : []),
    ...(stages.length > 0 ? [`stage=${stages.join('|')}`] : []),
    ...(services.length > 0 ? [`service=${services.join('|')}`] : []),
  ];
  const id = subscription.id === '' ? '' : ` [${subscription.id}]`;
  return `${subscription.event}${parts.length > 0 ? ` (${parts.join(', ')})` : ''}${id}`;
}

function strings(value: unknown): readonly string[] {
  return Array.isArray(value) ? value.filter((item): item is string => typeof item === 'string' && item !== '') : [];
}
