/**
 * Registration with the control plane's Uniform (spec §9): the first attempt
 * at start, then again every REGISTRATION_INTERVAL, so the integration stays
 * visible (the 0.8.x control plane forgets an integration about a minute after
 * it last registered). A failure is logged once per change of state, retried
 * sooner with backoff, and never stops the agent nor makes it unready:
 * registration is optional for the event pipeline.
 *
 * The registration id is what error-log entries carry as `integrationid`.
 * The registration is deleted at shutdown only with UNREGISTER_ON_SHUTDOWN:
 * later references dropped unregistering because it failed during upgrades and
 * removed subscriptions users had edited.
 */
import { createHash } from 'node:crypto';
import { hostname as osHostname } from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import type { Config } from './config.ts';
import { KeptnApiError, describeFailure, type KeptnApi } from './keptn-api.ts';
import type { Logger } from './log.ts';
import type { Metrics } from './metrics.ts';
import { subscriptionsForRegistration, subscriptionsFromEnvironment } from './subscriptions.ts';
import { filterFromConfig } from './filters.ts';

/**
 * The registration body (spec §9.2): the 0.8.x keys, every one always present,
 * and the 1.x `subscriptions` (go-utils `models.Integration`, 1.4.5). Each
 * generation ignores the other's key, so one body serves both (and `auto`).
 */
export interface Integration {
  readonly id: string;
  readonly name: string;
  readonly metadata: {
    readonly hostname: string;
    readonly integrationversion: string;
    readonly distributorversion: string;
    readonly location: string;
    readonly kubernetesmetadata: {
      readonly namespace: string;
      readonly podname: string;
      readonly deploymentname: string;
    };
  };
  readonly subscription: {
    readonly topics: readonly string[];
    readonly status: string;
    readonly filter: { readonly project: string; readonly stage: string; readonly service: string };
  };
  /** What a 1.x control plane starts a new integration with; it keeps the user-edited ones of an existing one. */
  readonly subscriptions: readonly object[];
}

type IntegrationSettings = Pick<Config,
  'k8sDeploymentName' | 'k8sNamespace' | 'k8sPodName' | 'k8sNodeName' | 'integrationName' | 'integrationVersion'
  | 'distributorVersion' | 'location' | 'pubsubTopic' | 'projectFilter' | 'stageFilter' | 'serviceFilter'>;

/**
 * The registration body for this agent. Unlike the reference, it does not
 * need the K8S_* variables, so a VM install shows up in the Uniform too:
 * the name falls back to INTEGRATION_NAME, then the host name; the namespace
 * to the host name, because the 0.8.x control plane refuses a registration
 * without one (its id is a hash of name, namespace and filters).
 */
export function integrationOf(config: IntegrationSettings, hostname: string = osHostname()): Integration {
  return {
    id: '',
    name: config.k8sDeploymentName || config.integrationName || hostname,
    metadata: {
      hostname: config.k8sNodeName || hostname,
      integrationversion: config.integrationVersion,
      distributorversion: config.distributorVersion,
      location: config.location,
      kubernetesmetadata: {
        namespace: config.k8sNamespace || hostname,
        podname: config.k8sPodName,
        deploymentname: config.k8sDeploymentName,
      },
    },
    subscription: {
      topics: [...config.pubsubTopic],
      status: '',
      // The 0.8.x body carries the filters as the raw comma-separated strings.
      filter: { project: config.projectFilter.join(','), stage: config.stageFilter.join(','), service: config.serviceFilter.join(',') },
    },
    subscriptions: subscriptionsForRegistration(subscriptionsFromEnvironment(config.pubsubTopic, filterFromConfig(config))),
  };
}

/**
 * The id a 0.8.x control plane gives this integration (spec §9.3): the hex
 * SHA-1 of `<name>-<namespace>-<project>-<stage>-<service>`. It is the same
 * at every registration, and shared by the replicas of one deployment.
 */
export function integrationIdOf(integration: Integration): string {
  const { project, stage, service } = integration.subscription.filter;
  return sha1Hex(`${integration.name}-${integration.metadata.kubernetesmetadata.namespace}-${project}-${stage}-${service}`);
}

/**
 * The id a 1.x control plane gives this integration (spec §12; shipyard-controller
 * `Register`, go-utils `IntegrationID.Hash`): the hex SHA-1 of
 * `<name>-<namespace>-<metadata.hostname>` when it is new. Filters are no
 * longer part of it, and an existing integration is found by name and
 * namespace alone: two execution planes must differ in name or namespace to
 * be two integrations.
 */
export function integrationIdOf1x(integration: Integration): string {
  return sha1Hex(`${integration.name}-${integration.metadata.kubernetesmetadata.namespace}-${integration.metadata.hostname}`);
}

/** How both generations of the control plane derive an integration id from its key. */
function sha1Hex(key: string): string {
  return createHash('sha1').update(key).digest('hex');
}

/** First retry after a failed registration; doubles up to the registration interval. */
export const REGISTRATION_RETRY_MS = 1_000;
/** Longest wait a `Retry-After` from the control plane can impose. */
export const MAX_REGISTRATION_RETRY_AFTER_MS = 5 * 60_000;

/**
 * Wait before the next attempt after `failures` failed ones in a row:
 * exponential from 1 s, jittered down by up to a quarter (`random` in [0, 1)),
 * never longer than the interval; a `Retry-After` (up to 5 minutes) wins.
 */
export function registrationRetryDelay(failures: number, intervalMs: number, retryAfterMs: number | undefined, random: number): number {
  const backoff = Math.min(intervalMs, REGISTRATION_RETRY_MS * 2 ** Math.max(0, failures - 1));
  const jittered = backoff * (0.75 + 0.25 * random);
  return Math.max(jittered, Math.min(retryAfterMs ?? 0, MAX_REGISTRATION_RETRY_AFTER_MS));
}

export interface RegistrationOptions {
  readonly api: Pick<KeptnApi, 'register' | 'unregister'>;
  readonly integration: Integration;
  /** REGISTRATION_INTERVAL: time between registrations while they succeed. */
  readonly intervalMs: number;
  /** UNREGISTER_ON_SHUTDOWN. */
  readonly unregisterOnShutdown: boolean;
  readonly logger: Logger;
  readonly metrics: Pick<Metrics, 'registered'>;
  /** Jitter source, for tests. */
  readonly random?: () => number;
}

type State = { readonly name: 'unregistered' } | { readonly name: 'registered' } | { readonly name: 'failing'; readonly key: string };

/** A long-lived part (see `lifecycle.ts`): registers at start and every interval until stopped. */
export class Registration {
  readonly name = 'registration';
  readonly #options: RegistrationOptions;
  readonly #logger: Logger;
  readonly #stopping = new AbortController();
  #loop: Promise<void> | undefined;
  #id: string | undefined;
  #state: State = { name: 'unregistered' };

  constructor(options: RegistrationOptions) {
    this.#options = options;
    this.#logger = options.logger;
    options.metrics.registered.set(0);
  }

  /** The id the control plane answered last; undefined until a registration succeeded. */
  get id(): string | undefined {
    return this.#id;
  }

  /** Starts the loop; the first attempt runs at once but start-up does not wait for it. */
  start(): Promise<void> {
    this.#loop ??= this.#run(this.#stopping.signal);
    return Promise.resolve();
  }

  /** Ends the loop, then deletes the registration if UNREGISTER_ON_SHUTDOWN asks for it. */
  async stop(deadline: AbortSignal): Promise<void> {
    this.#stopping.abort();
    await this.#loop;
    if (!this.#options.unregisterOnShutdown) return;
    if (this.#id === undefined) {
      this.#logger.warn('not unregistering: the agent never registered');
      return;
    }
    try {
      await this.unregister(deadline);
      this.#logger.info('unregistered', { integrationId: this.#id });
    } catch (error) {
      this.#logger.warn('could not unregister', { integrationId: this.#id, error: describeFailure(error) });
    }
  }

  /**
   * One registration: POSTs the integration, keeps the returned id, logs and
   * publishes the change of state. Rejects with the `KeptnApiError` of a failure.
   */
  async registerOnce(signal?: AbortSignal): Promise<string> {
    let id: string;
    try {
      id = await this.#options.api.register(this.#options.integration, signal);
    } catch (error) {
      if (!signal?.aborted) this.#failed(error);
      throw error;
    }
    this.#succeeded(id);
    return id;
  }

  /** DELETEs the registration; rejects, without a request, when the agent never registered. */
  async unregister(signal?: AbortSignal): Promise<void> {
    const id = this.#id;
    if (id === undefined) throw new Error('cannot unregister: the agent never registered');
    await this.#options.api.unregister(id, signal);
    this.#options.metrics.registered.set(0);
    this.#state = { name: 'unregistered' };
  }

  async #run(signal: AbortSignal): Promise<void> {
    let failures = 0;
    while (!signal.aborted) {
      let wait: number;
      try {
        await this.registerOnce(signal);
        failures = 0;
        wait = this.#options.intervalMs;
      } catch (error) {
        if (signal.aborted) return;
        failures += 1;
        wait = this.#retryDelay(failures, error);
      }
      try {
        await delay(wait, undefined, { signal });
      } catch {
        return;
      }
    }
  }

  #retryDelay(failures: number, error: unknown): number {
    const retryAfterMs = error instanceof KeptnApiError ? error.retryAfterMs : undefined;
    return registrationRetryDelay(failures, this.#options.intervalMs, retryAfterMs, (this.#options.random ?? Math.random)());
  }

  #succeeded(id: string): void {
    const previous = this.#id;
    const wasFailing = this.#state.name === 'failing';
    this.#id = id;
    this.#state = { name: 'registered' };
    this.#options.metrics.registered.set(1);
    if (previous !== undefined && previous !== id) {
      this.#logger.info(`registered as ${id}`, { integrationId: id, previousIntegrationId: previous });
    } else if (previous === undefined) {
      this.#logger.info(`registered as ${id}`, { integrationId: id, name: this.#options.integration.name });
    } else if (wasFailing) {
      this.#logger.info('registered again', { integrationId: id });
    } else {
      this.#logger.debug('re-registered', { integrationId: id });
    }
  }

  #failed(error: unknown): void {
    this.#options.metrics.registered.set(0);
    const key = error instanceof KeptnApiError ? String(error.status ?? error.code ?? error.kind) : 'error';
    if (this.#state.name === 'failing' && this.#state.key === key) {
      this.#logger.debug('registration failed again', { error: describeFailure(error) });
      return;
    }
    this.#state = { name: 'failing', key };
    const status = error instanceof KeptnApiError ? error.status : undefined;
    const fields = { error: describeFailure(error), ...(this.#id !== undefined && { integrationId: this.#id }) };
    if (status === 401 || status === 403) {
      this.#logger.error(`registration failing: the control plane rejects the token (${describeFailure(error).message})`, fields);
    } else {
      this.#logger.warn(`registration failing: ${describeFailure(error).message}`, fields);
    }
  }
}
