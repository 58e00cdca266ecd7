/**
 * The heartbeat of Keptn 0.9+ control planes (spec §12): every
 * HEARTBEAT_INTERVAL, `PUT …/v1/uniform/registration/<id>/ping`; the answer
 * is the integration with its current subscriptions, which replace what is
 * polled. Source followed: keptn/keptn 1.4.5 shipyard-controller
 * `handler/uniformintegrationhandler.go` (`KeepAlive`: 200 with the
 * integration, 404 for an unknown id) and go-utils `models.Integration`.
 *
 * It also tells the generations apart (KEPTN_API_VERSION=auto): a ping
 * answered with an integration means 1.x; 404 or 405 on a route a 0.8.x
 * control plane does not have means 0.8 — the heartbeat then ends and the
 * environment's subscriptions stay. Until the first answer the agent polls
 * what the environment names, so nothing stalls while the control plane is away.
 *
 * Unlike the reference (which exits after 10 failed pings and dispatches
 * everything again after its restart), a failing heartbeat is never fatal:
 * the last known subscriptions stay in force, pings back off exponentially
 * with jitter (at most a minute), and failures are logged once per change of
 * state. A 404 once 1.x is known means the integration was deleted on the
 * control plane: the agent registers again (the reference does the same).
 */
import { setTimeout as sleepFor } from 'node:timers/promises';
import { KeptnApiError, describeFailure, type KeptnApi } from './keptn-api.ts';
import type { Part } from './lifecycle.ts';
import type { Logger } from './log.ts';
import type { Metrics } from './metrics.ts';
import { backoffMs } from './poller.ts';
import {
  describeSubscription, subscriptionsOfIntegration, type Subscription, type SubscriptionSet,
} from './subscriptions.ts';

/** KEPTN_API_VERSION. */
export type ApiVersionSetting = 'auto' | '0.8' | '1.x';
export type ApiGeneration = '0.8' | '1.x';

/** How long to wait for the registration's id before looking again. */
const AWAIT_REGISTRATION_MS = 1_000;

export interface HeartbeatOptions {
  readonly api: Pick<KeptnApi, 'ping'>;
  /** The registration part: its id is pinged; `registerOnce` runs when the control plane forgot it. */
  readonly registration: { readonly id: string | undefined; registerOnce(signal?: AbortSignal): Promise<string> };
  /** Where the control plane's subscriptions go. */
  readonly subscriptions: SubscriptionSet;
  /** The environment's subscriptions (PUBSUB_TOPIC): used while the control plane lists none. */
  readonly seeds: readonly Subscription[];
  readonly apiVersion: Exclude<ApiVersionSetting, '0.8'>;
  /** HEARTBEAT_INTERVAL. */
  readonly intervalMs: number;
  readonly logger: Logger;
  readonly metrics: Pick<Metrics, 'heartbeatOk' | 'subscriptions'>;
  /** For tests: a number in [0, 1). */
  readonly random?: () => number;
  /** For tests: waits `ms`; rejects when `signal` aborts. */
  readonly sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

/** What one heartbeat found. */
export type Beat = 'ok' | 'waiting' | 'failed' | 'reregistered' | 'is-0.8';

/** The `#failing` key of a ping answered 404 once 1.x is known. */
const UNKNOWN_INTEGRATION = 'unknown integration';

export class Heartbeat implements Part {
  readonly name = 'heartbeat';
  readonly #options: HeartbeatOptions;
  readonly #stop = new AbortController();
  readonly #sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  #loop: Promise<void> | undefined;
  #generation: ApiGeneration | undefined;
  #failures = 0;
  /** The failure being logged (status, code or message), to log each change once. */
  #failing: string | undefined;

  constructor(options: HeartbeatOptions) {
    this.#options = options;
    this.#sleep = options.sleep ?? ((ms, signal) => sleepFor(ms, undefined, { signal }));
    if (options.apiVersion === '1.x') this.#generation = '1.x';
    options.metrics.heartbeatOk.set(0);
  }

  /** The control plane generation, once known. */
  get generation(): ApiGeneration | undefined {
    return this.#generation;
  }

  /** Consecutive failed heartbeats. */
  get failures(): number {
    return this.#failures;
  }

  start(): Promise<void> {
    this.#loop ??= this.#run();
    return Promise.resolve();
  }

  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#loop;
  }

  /** One heartbeat. Never rejects. */
  async beatOnce(): Promise<Beat> {
    const signal = this.#stop.signal;
    const id = this.#options.registration.id;
    if (id === undefined) return 'waiting';
    let answer: unknown;
    try {
      answer = await this.#options.api.ping(id, signal);
    } catch (error) {
      if (signal.aborted) return 'failed';
      return this.#pingFailed(error);
    }
    const subscriptions = subscriptionsOfIntegration(answer);
    if (subscriptions === undefined) {
      return this.#pingFailed(new Error('the heartbeat answer is not an integration with subscriptions'));
    }
    this.#decide('1.x', 'the heartbeat answers with the integration and its subscriptions');
    this.#recovered();
    this.#apply(subscriptions);
    return 'ok';
  }

  async #run(): Promise<void> {
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      const beat = await this.beatOnce();
      if (beat === 'is-0.8') return;
      const wait = beat === 'waiting' ? Math.min(AWAIT_REGISTRATION_MS, this.#options.intervalMs)
        : backoffMs(this.#options.intervalMs, this.#failures, this.#options.random ?? Math.random);
      try {
        await this.#sleep(wait, signal);
      } catch {
        return;
      }
    }
  }

  async #pingFailed(error: unknown): Promise<Beat> {
    const status = error instanceof KeptnApiError ? error.status : undefined;
    // A 0.8.x shipyard-controller has no such route: its router answers 404 in plain text (or a gateway 405).
    // A 404 with Keptn's JSON error body is a 1.x control plane that does not know the integration (yet).
    const keptnNotFound = status === 404 && error instanceof KeptnApiError && error.keptnBody;
    if (keptnNotFound && this.#generation === undefined) this.#decide('1.x', 'the heartbeat route exists (404 for this integration)');
    if (this.#generation === undefined && (status === 404 || status === 405)) {
      this.#decide('0.8', `the control plane has no heartbeat route (${String(status)})`);
      this.#options.subscriptions.settle();
      this.#options.metrics.heartbeatOk.set(0);
      return 'is-0.8';
    }
    this.#options.metrics.heartbeatOk.set(0);
    this.#failures++;
    if (this.#generation === '1.x' && status === 404) {
      // Counted as a failure: a control plane that keeps forgetting the integration is not re-registered at full speed.
      if (this.#failing !== UNKNOWN_INTEGRATION) {
        this.#failing = UNKNOWN_INTEGRATION;
        this.#options.logger.warn('the control plane no longer knows this integration (deleted?): registering again', {
          integrationId: this.#options.registration.id,
        });
      }
      try {
        await this.#options.registration.registerOnce(this.#stop.signal);
        return 'reregistered';
      } catch {
        // The registration logs its own failure; the next beat tries again.
        return 'failed';
      }
    }
    const key = error instanceof KeptnApiError ? String(error.status ?? error.code ?? error.kind) : describeFailure(error).message;
    if (this.#failing !== key) {
      this.#failing = key;
      this.#options.logger.warn('heartbeat failing: the last known subscriptions stay in force, heartbeats back off', {
        error: describeFailure(error), subscriptions: this.#options.subscriptions.current.length,
      });
    }
    return 'failed';
  }

  #recovered(): void {
    this.#options.metrics.heartbeatOk.set(1);
    if (this.#failing !== undefined) this.#options.logger.info('heartbeat works again', { afterFailures: this.#failures });
    this.#failing = undefined;
    this.#failures = 0;
  }

  #decide(generation: ApiGeneration, reason: string): void {
    if (this.#generation !== undefined) return;
    this.#generation = generation;
    const source = generation === '1.x' ? 'the control plane (PUBSUB_TOPIC only seeds them)' : 'the environment (PUBSUB_TOPIC and *_FILTER)';
    this.#options.logger.info(`Keptn ${generation} control plane detected: subscriptions come from ${source}`, { reason });
  }

  /** The control plane's subscriptions; the environment's while it lists none, as the reference seeds them. */
  #apply(fromControlPlane: readonly Subscription[]): void {
    const { subscriptions, seeds, logger, metrics } = this.#options;
    const seeded = fromControlPlane.length === 0 && seeds.length > 0;
    const next = seeded ? seeds : fromControlPlane;
    const source = seeded ? 'environment' : 'control plane';
    if (!subscriptions.replace(next, source)) return;
    metrics.subscriptions.set(next.length);
    logger.info(seeded ? 'the control plane lists no subscription: polling the PUBSUB_TOPIC types' : 'subscriptions from the control plane', {
      source, subscriptions: next.map(describeSubscription),
    });
  }
}
