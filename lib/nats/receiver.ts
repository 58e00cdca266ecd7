/**
 * The in-cluster pipeline (NATS mode): subscribe to every PUBSUB_TOPIC
 * subject, filter, dispatch. The counterpart of the poller in HTTP mode, with
 * the same validation, filters, dispatcher and metrics (labelled by the
 * subscribed subject, `sh.keptn.>` included).
 *
 * Each subscription joins the queue group PUBSUB_GROUP (when there is one):
 * the NATS server hands each message to one member of the group only, so the
 * replicas of a deployment share the events instead of each running every
 * task (the reference did until 0.10.0, D19). Within one agent, an event that
 * arrives twice (overlapping subjects, a sender that published it again) is
 * dispatched once: the last ids handled are remembered.
 *
 * Core NATS keeps nothing and redelivers nothing: a message published while
 * no member of the group is subscribed is lost, and so is an event whose
 * dispatch fails for good, or that is still queued at shutdown. Both are
 * logged as errors. (There is no later poll to pick it up, as in HTTP mode.)
 *
 * Readiness: `nats` holds once the subscriptions of the first connection are
 * confirmed by the server; like the poller's, it is not withdrawn during an
 * outage, which the client rides out on its own.
 */
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { validateCloudEvent, type KeptnCloudEvent } from '../cloudevents.ts';
import type { Dispatcher } from '../dispatcher.ts';
import { matchesFilter, type EventFilter } from '../filters.ts';
import type { Part } from '../lifecycle.ts';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { NatsLink } from './link.ts';
import { RecentIds } from './recent-ids.ts';

/** Event ids remembered to drop a second arrival: far more than arrive within any redelivery window. */
export const RECENT_IDS = 10_000;

export interface NatsReceiverOptions {
  readonly link: Pick<NatsLink, 'onConnect'>;
  /** PUBSUB_TOPIC: subjects, wildcards allowed. */
  readonly topics: readonly string[];
  /** The queue group; '' subscribes without one (every agent gets every message). */
  readonly group: string;
  readonly dispatcher: Pick<Dispatcher, 'dispatch' | 'stop'>;
  readonly filter: EventFilter;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** The readiness condition's setter: `true` once the first subscriptions are confirmed. */
  readonly setReady?: (holds: boolean) => void;
}

export class NatsReceiver implements Part {
  readonly name = 'nats-receiver';
  readonly #options: NatsReceiverOptions;
  readonly #recent = new RecentIds(RECENT_IDS);
  readonly #dispatches = new Set<Promise<void>>();
  #subscriptions: Subscription[] = [];
  #stopping = false;

  constructor(options: NatsReceiverOptions) {
    this.#options = options;
  }

  start(): Promise<void> {
    const { topics, link, logger, setReady } = this.#options;
    if (topics.length === 0) {
      logger.warn('PUBSUB_TOPIC is empty: no events are received, only the local relay and proxy run');
      setReady?.(true);
      return Promise.resolve();
    }
    link.onConnect((connection) => { this.#subscribe(connection); });
    return Promise.resolve();
  }

  /** Takes no more messages, lets the dispatches in flight finish until `deadline`. */
  async stop(deadline: AbortSignal): Promise<void> {
    this.#stopping = true;
    for (const subscription of this.#subscriptions) {
      if (!subscription.isClosed()) subscription.unsubscribe();
    }
    this.#subscriptions = [];
    await this.#options.dispatcher.stop(deadline);
    await Promise.all(this.#dispatches);
  }

  #subscribe(connection: NatsConnection): void {
    const { topics, group, logger, setReady } = this.#options;
    if (this.#stopping) return;
    this.#subscriptions = topics.map((topic) => connection.subscribe(topic, {
      ...(group !== '' && { queue: group }),
      callback: (error, message) => { this.#receive(topic, error, message); },
    }));
    // The flush returns once the server has registered the subscriptions.
    connection.flush().then(() => {
      logger.info('subscribed', { topics, ...(group !== '' && { queueGroup: group }) });
      setReady?.(true);
    }, (error: unknown) => {
      logger.warn('subscriptions not confirmed yet: the client sends them again when it reconnects', {
        error: error instanceof Error ? error.message : String(error),
      });
    });
  }

  #receive(topic: string, error: Error | null, message: Msg): void {
    const { logger, metrics, filter } = this.#options;
    if (error !== null) {
      logger.error('the NATS subscription failed', { topic, error: error.message });
      return;
    }
    if (this.#stopping) return;
    let raw: unknown;
    try {
      raw = JSON.parse(message.string()) as unknown;
    } catch {
      raw = undefined;
    }
    const validation = validateCloudEvent(raw, { requireData: false });
    if (!validation.ok) {
      metrics.eventsInvalid.inc({ topic });
      logger.warn('skipping a NATS message that is not a valid Keptn CloudEvent', {
        topic, subject: message.subject, reason: raw === undefined ? 'the payload is not JSON' : validation.reason,
      });
      return;
    }
    const event = validation.event;
    metrics.eventsReceived.inc({ topic });
    const fields = { keptnContext: event.shkeptncontext, eventId: event.id, type: event.type, topic };
    if (!matchesFilter(event, filter)) {
      metrics.eventsFiltered.inc({ topic });
      if (logger.isDebugEnabled()) logger.debug('not dispatched: outside PROJECT/STAGE/SERVICE_FILTER', fields);
      return;
    }
    if (!this.#recent.add(event.id)) {
      metrics.eventsDeduplicated.inc({ topic });
      if (logger.isDebugEnabled()) logger.debug('not dispatched: this event was already handed over', fields);
      return;
    }
    this.#dispatch(topic, event, fields);
  }

  #dispatch(topic: string, event: KeptnCloudEvent, fields: Record<string, unknown>): void {
    const { dispatcher, logger } = this.#options;
    if (logger.isDebugEnabled()) logger.debug('new event from NATS', fields);
    const done = dispatcher.dispatch(topic, event).then((outcome) => {
      if (outcome.kind === 'failed') {
        this.#recent.delete(event.id);
        logger.error('the recipient did not take an event from NATS, which does not deliver it again: lost', { ...fields, reason: outcome.reason });
      } else if (outcome.kind === 'cancelled') {
        this.#recent.delete(event.id);
        logger.error('an event from NATS was not dispatched before shutdown: lost', { ...fields, reason: outcome.reason });
      }
    }).finally(() => {
      this.#dispatches.delete(done);
    });
    this.#dispatches.add(done);
  }
}
