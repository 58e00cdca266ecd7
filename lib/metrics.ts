/**
 * The agent's Prometheus metrics, in one registry per agent (so tests can run
 * several agents in one process), served on `/metrics` by the health server.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Sampling interval of the default `nodejs_eventloop_lag_*` metrics. */
export const EVENT_LOOP_MONITORING_PRECISION_MS = 100;

export interface Metrics {
  readonly registry: Registry;
  /** Poll cycles per topic, by outcome: success, partial, failure. */
  readonly polls: Counter<'topic' | 'outcome'>;
  readonly pollDuration: Histogram<'topic'>;
  /** Valid triggered events seen in polls (before deduplication). */
  readonly eventsReceived: Counter<'topic'>;
  readonly eventsDeduplicated: Counter<'topic'>;
  readonly eventsFiltered: Counter<'topic'>;
  /** Dispatches by outcome: delivered, timeout (counted as delivered), rejected, failed (released for a later poll). */
  readonly eventsDispatched: Counter<'topic' | 'outcome'>;
  /** Poll entries that were not valid CloudEvents. */
  readonly eventsInvalid: Counter<'topic'>;
  readonly dispatchesInFlight: Gauge;
  /**
   * Relayed events by outcome: accepted, rejected (bad input), delivered, retried, token-rejected (401/403),
   * failed (final 4xx), dead-lettered, refused (outbox full).
   */
  readonly relays: Counter<'outcome'>;
  readonly outboxDepth: Gauge;
  /** 1 while registered, 0 otherwise. */
  readonly registered: Gauge;
  /** Subscriptions polled. */
  readonly subscriptions: Gauge;
  /** 1 while the last heartbeat (1.x control planes) succeeded, 0 otherwise. */
  readonly heartbeatOk: Gauge;
  /** Error log entries by outcome: sent, rejected (final 4xx), dropped (more than the bound waiting), lost (unsent at shutdown). */
  readonly logEntries: Counter<'outcome'>;
  /** Error log entries waiting to be sent. */
  readonly logEntriesPending: Gauge;
}

export function createMetrics({ defaultMetrics = true }: { defaultMetrics?: boolean } = {}): Metrics {
  const registry = new Registry();
  // The event-loop lag is sampled every 100 ms, not prom-client's default 10 ms: sampling every 10 ms
  // alone costs an idle agent about 0.5 % of a core (measured: 5.1 ms of CPU per second, 0.6 at 100 ms),
  // and 100 ms still gives a few hundred samples per scrape.
  if (defaultMetrics) collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: EVENT_LOOP_MONITORING_PRECISION_MS });
  const registers = [registry];
  return {
    registry,
    polls: new Counter({ name: 'keptn_distributor_polls_total', help: 'Poll cycles per topic by outcome', labelNames: ['topic', 'outcome'], registers }),
    pollDuration: new Histogram({
      name: 'keptn_distributor_poll_duration_seconds', help: 'Time to fetch all pages of one topic', labelNames: ['topic'], registers,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    }),
    eventsReceived: new Counter({ name: 'keptn_distributor_events_received_total', help: 'Triggered events seen in polls', labelNames: ['topic'], registers }),
    eventsDeduplicated: new Counter({ name: 'keptn_distributor_events_deduplicated_total', help: 'Polled events not dispatched because they already were', labelNames: ['topic'], registers }),
    eventsFiltered: new Counter({ name: 'keptn_distributor_events_filtered_total', help: 'Polled events not dispatched because of PROJECT/STAGE/SERVICE_FILTER', labelNames: ['topic'], registers }),
    eventsDispatched: new Counter({ name: 'keptn_distributor_events_dispatched_total', help: 'Dispatches to the recipient by outcome', labelNames: ['topic', 'outcome'], registers }),
    eventsInvalid: new Counter({ name: 'keptn_distributor_events_invalid_total', help: 'Poll entries that were not valid CloudEvents', labelNames: ['topic'], registers }),
    dispatchesInFlight: new Gauge({ name: 'keptn_distributor_dispatches_in_flight', help: 'Dispatches to the recipient in flight', registers }),
    relays: new Counter({ name: 'keptn_distributor_relays_total', help: 'Events from the recipient by outcome', labelNames: ['outcome'], registers }),
    outboxDepth: new Gauge({ name: 'keptn_distributor_outbox_depth', help: 'Relayed events not yet delivered to the control plane', registers }),
    registered: new Gauge({ name: 'keptn_distributor_registered', help: '1 while registered with the control plane', registers }),
    subscriptions: new Gauge({ name: 'keptn_distributor_subscriptions', help: 'Subscriptions polled (event type and filter each)', registers }),
    heartbeatOk: new Gauge({ name: 'keptn_distributor_heartbeat_ok', help: '1 while the last heartbeat to a 1.x control plane succeeded', registers }),
    logEntries: new Counter({ name: 'keptn_distributor_log_entries_total', help: 'Error log entries sent to the control plane by outcome', labelNames: ['outcome'], registers }),
    logEntriesPending: new Gauge({ name: 'keptn_distributor_log_entries_pending', help: 'Error log entries waiting to be sent to the control plane', registers }),
  };
}
