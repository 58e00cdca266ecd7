/**
 * The composition root: builds every part of the agent from the configuration
 * and runs them. Wiring lives here and nowhere else.
 */
import { runParts, type Part } from './lifecycle.ts';
import type { Config } from './config.ts';
import type { Logger } from './log.ts';
import { createMetrics, type Metrics } from './metrics.ts';
import { Readiness } from './readiness.ts';
import { HealthServer } from './health.ts';
import { KeptnApi, egressAgentsOf, keptnApiOptions, tokenCredentials } from './keptn-api.ts';
import { KeptnCredentials } from './credentials.ts';
import { OAuthTokenSource } from './oauth.ts';
import { Registration, integrationIdOf1x, integrationOf } from './registration.ts';
import { Heartbeat } from './heartbeat.ts';
import { SubscriptionSet, subscriptionsFromEnvironment } from './subscriptions.ts';
import { UniformLog } from './uniform-log.ts';
import { Poller } from './poller.ts';
import { Dispatcher } from './dispatcher.ts';
import { MemoryDedupStore } from './dedup/memory.ts';
import { FileDedupStore } from './dedup/file.ts';
import { filterFromConfig } from './filters.ts';
import { LocalServer } from './server.ts';
import { ApiProxy } from './proxy.ts';
import { OUTBOX_CONCURRENCY, Outbox } from './outbox/outbox.ts';
import { ForwardingSink } from './outbox/forwarding-sink.ts';
import { NatsSink } from './outbox/nats-sink.ts';
import { NatsLink } from './nats/link.ts';
import { NatsReceiver } from './nats/receiver.ts';
import { MemoryStore } from './outbox/memory-store.ts';
import { FileStore } from './outbox/file-store.ts';
import { FileDeadLetters, LogDeadLetters } from './outbox/dead-letter.ts';

export interface AgentOptions {
  /** Aborting it starts the graceful shutdown. */
  readonly signal: AbortSignal;
  readonly logger: Logger;
  readonly metrics?: Metrics;
}

/** Where the agent listens, once ready (useful with port 0). */
export interface AgentAddresses {
  proxyPort?: number;
  healthPort?: number;
}

export interface Agent {
  /** Resolves once every part runs; rejects (and `closed` too) if one cannot start. */
  readonly ready: Promise<AgentAddresses>;
  /** Resolves after a graceful shutdown. */
  readonly closed: Promise<void>;
}

/** With KEPTN_API_VERSION=auto, how long the PUBSUB_TOPIC types wait for the heartbeat before they are polled. */
export const AUTO_DETECTION_HOLD_MS = 30_000;

export function startAgent(config: Config, { signal, logger, metrics = createMetrics() }: AgentOptions): Agent {
  const addresses: AgentAddresses = {};
  const readiness = new Readiness();
  // Parts start in this order and stop in reverse: the poller stops first, then
  // the local server drains the outbox, then logs are flushed and the
  // registration ends, and the health server goes last.
  const parts: Part[] = [];

  // — health and metrics server (issue 6)
  // Filled in below, once the parts it reports on exist.
  let readyDetails: () => Record<string, unknown> = () => ({});
  const health = new HealthServer({
    port: config.healthEndpointPort, readiness, metrics, logger: logger.child({ component: 'health' }), details: () => readyDetails(),
  });
  parts.push({
    name: health.name,
    start: async () => {
      await health.start();
      if (health.port !== undefined) addresses.healthPort = health.port;
    },
    stop: (deadline) => health.stop(deadline),
  });
  // While it drains, the agent takes no new work: /ready says so.
  signal.addEventListener('abort', () => { readiness.declare('agent', 'shutting down'); }, { once: true });

  // — registration and error-log forwarding (issue 6)
  // Parts stop in reverse: error logs are flushed (the local server has drained), then the registration ends.
  // One set of credentials for every call to Keptn: the API token, and the OAuth bearer token when OAuth is on.
  const agents = egressAgentsOf(config);
  // In the cluster (NATS mode) the Keptn services take no credentials, OAuth's no more than the token (spec §11.3).
  const credentials = config.oauth === undefined || config.connectionType === 'nats' ? tokenCredentials(config) : new KeptnCredentials(
    config.keptnApiToken,
    new OAuthTokenSource({ client: config.oauth, agents, timeoutMs: config.apiProxyHttpTimeout, logger: logger.child({ component: 'oauth' }) }),
  );
  const keptnApi = new KeptnApi(keptnApiOptions(config, config.apiProxyHttpTimeout, credentials, agents));
  // Pushed before the parts that call Keptn, so it stops after them: their connections are closed last.
  parts.push({ name: 'connections to Keptn', start: () => Promise.resolve(), stop: () => { agents.close(); return Promise.resolve(); } });
  // What the poller polls: the environment's subscriptions until a 1.x control plane's heartbeat says otherwise.
  const seeds = subscriptionsFromEnvironment(config.pubsubTopic, filterFromConfig(config));
  // Unsettled while a heartbeat may bring the control plane's (HTTP mode with registration, not 0.8).
  const heartbeatPossible = config.connectionType === 'http' && config.controlPlaneUrl !== undefined
    && !config.disableRegistration && config.keptnApiVersion !== '0.8';
  // Not polled until then: with KEPTN_API_VERSION=1.x at all (as the reference); with auto for at most
  // AUTO_DETECTION_HOLD_MS, after which the PUBSUB_TOPIC types are polled until the heartbeat decides.
  const subscriptions = new SubscriptionSet(seeds, 'environment', {
    settled: !heartbeatPossible,
    holdMs: config.keptnApiVersion === '1.x' ? Infinity : AUTO_DETECTION_HOLD_MS,
  });
  metrics.subscriptions.set(seeds.length);
  let errorLogs: Pick<UniformLog, 'observe'> = { observe: () => undefined };
  let heartbeat: Heartbeat | undefined;
  if (config.controlPlaneUrl === undefined) {
    logger.warn('registration and error-log forwarding are off: they need KEPTN_API_ENDPOINT (or NATS mode)');
  } else {
    const integration = integrationOf(config);
    const registration = config.disableRegistration ? undefined : new Registration({
      api: keptnApi,
      integration,
      intervalMs: config.registrationInterval,
      unregisterOnShutdown: config.unregisterOnShutdown,
      logger: logger.child({ component: 'registration' }),
      metrics,
    });
    // Without registration there is no integration id: entries go out with an empty one rather than not at all.
    const uniformLog = new UniformLog({
      api: keptnApi,
      integrationId: registration ? () => registration.id : () => '',
      logger: logger.child({ component: 'uniform-log' }),
      metrics,
    });
    if (registration) {
      parts.push(registration);
      logger.info('integration identity', {
        name: integration.name, namespace: integration.metadata.kubernetesmetadata.namespace, nodeName: integration.metadata.hostname,
        // What a 1.x control plane calls it; execution planes sharing it are one integration there.
        integrationId1x: integrationIdOf1x(integration),
      });
    }
    // NATS mode keeps its PUBSUB_TOPIC subjects (see README, "Keptn 1.x control planes").
    if (registration && config.connectionType === 'http' && config.keptnApiVersion !== '0.8') {
      heartbeat = new Heartbeat({
        api: keptnApi,
        registration,
        subscriptions,
        seeds,
        apiVersion: config.keptnApiVersion,
        intervalMs: config.heartbeatInterval,
        logger: logger.child({ component: 'heartbeat' }),
        metrics,
      });
      parts.push(heartbeat);
      if (config.unregisterOnShutdown) {
        logger.warn('UNREGISTER_ON_SHUTDOWN=true: on a 1.x control plane, unregistering deletes the subscriptions users edited in the Bridge');
      }
    }
    parts.push(uniformLog);
    errorLogs = uniformLog;
  }
  if (config.connectionType === 'http') {
    readyDetails = () => ({
      keptnApiVersion: heartbeat === undefined ? '0.8' : heartbeat.generation ?? 'undecided',
      subscriptions: { source: subscriptions.source, count: subscriptions.current.length },
      ...(heartbeat !== undefined && heartbeat.generation !== '0.8' && { heartbeat: { failures: heartbeat.failures } }),
    });
  }

  // — NATS connection (issue 10): in NATS mode, events come in and relayed events go out through it.
  // Pushed before the local server, so it stops after it: the outbox publishes until it has drained.
  const natsLink = config.connectionType === 'nats'
    ? new NatsLink({ url: config.pubsubUrl, logger: logger.child({ component: 'nats' }) })
    : undefined;
  if (natsLink) parts.push(natsLink);

  // — local server: event relay, outbox, API proxy (issue 5)
  // Stops after the pipeline: relays still arriving for in-flight dispatches are taken until then.
  const outboxLogger = logger.child({ component: 'outbox' });
  const forwardingSink = config.forwardingUrl === undefined ? undefined : new ForwardingSink({
    url: config.forwardingUrl, credentials, proxies: config, sslVerify: config.httpSslVerify,
    timeoutMs: config.apiProxyHttpTimeout, maxSockets: OUTBOX_CONCURRENCY, datastore: keptnApi,
  });
  const outbox = new Outbox({
    // Only NATS mode goes without a forwarding URL: relayed events are published on the subject of their type.
    sink: forwardingSink ?? new NatsSink({ link: natsLink! }),
    store: config.stateDir === '' ? new MemoryStore() : new FileStore({ dir: config.stateDir, logger: outboxLogger }),
    deadLetters: config.stateDir === '' ? new LogDeadLetters(outboxLogger) : new FileDeadLetters(config.stateDir),
    logger, metrics, readiness,
    maxAgeMs: config.outboxMaxAge,
    canCheckArrival: config.keptnApiEndpoint !== undefined,
  });
  // HTTP mode: the Keptn API under the endpoint, with the token; NATS mode: the in-cluster services, without.
  const maxBodyBytes = config.apiProxyMaxPayloadBytesKb * 1024;
  // Its own connection pool: the proxy closes it with the local server, while the API client's serves on until the end.
  const proxyOptions = { credentials, agents: egressAgentsOf(config), timeoutMs: config.apiProxyHttpTimeout, maxBodyBytes, logger };
  const proxy = config.connectionType === 'nats'
    ? new ApiProxy({ ...proxyOptions, endpoint: undefined })
    : config.keptnApiEndpoint && new ApiProxy({ ...proxyOptions, endpoint: config.keptnApiEndpoint });
  // After a NATS outage, what waited in the outbox goes out at once rather than after its backoff.
  natsLink?.onUp(() => { outbox.wake(); });
  const localServer = new LocalServer({
    bindAddress: config.apiProxyBindAddress,
    port: config.apiProxyPort,
    apiProxyPath: config.apiProxyPath,
    eventForwardingPath: config.eventForwardingPath,
    outbox,
    proxy,
    maxBodyBytes,
    logger, metrics, readiness,
    onEvent: (event) => errorLogs.observe(event),
  });
  parts.push({
    name: localServer.name,
    start: async () => {
      await localServer.start();
      if (localServer.port !== undefined) addresses.proxyPort = localServer.port;
    },
    stop: async (deadline) => {
      await localServer.stop(deadline);
      forwardingSink?.close();
    },
  });

  // — pipeline: poller, dedup, dispatcher (issue 4), or the NATS receiver (issue 10)
  // Pushed last, so it stops first: no new dispatches while the rest drains.
  const dispatcher = new Dispatcher({
    recipientUrl: config.recipientUrl,
    timeoutMs: config.dispatchTimeout,
    concurrency: config.maxConcurrentDispatches,
    logger: logger.child({ component: 'dispatcher' }),
    metrics,
  });
  if (natsLink) {
    parts.push(new NatsReceiver({
      link: natsLink,
      topics: config.pubsubTopic,
      group: config.pubsubGroup,
      dispatcher,
      filter: filterFromConfig(config),
      logger: logger.child({ component: 'nats-receiver' }),
      metrics,
      setReady: readiness.declare('nats', 'not subscribed to NATS yet'),
    }));
  } else {
    if (config.connectionType === 'http' && heartbeat === undefined) {
      logger.info('Keptn 0.8 control plane assumed: subscriptions come from the environment (PUBSUB_TOPIC and *_FILTER)', {
        reason: config.keptnApiVersion === '0.8' ? 'KEPTN_API_VERSION=0.8' : 'the 1.x heartbeat needs the registration, which is off',
      });
    }
    parts.push(new Poller({
      api: keptnApi,
      subscriptions,
      intervalMs: config.httpPollingInterval,
      store: config.stateDir === ''
        ? new MemoryDedupStore()
        : new FileDedupStore({ dir: config.stateDir, logger: logger.child({ component: 'dedup' }) }),
      dispatcher,
      logger: logger.child({ component: 'poller' }),
      metrics,
      setReady: readiness.declare('poller', 'no poll cycle completed yet'),
    }));
  }

  logger.info('starting', {
    mode: config.connectionType,
    ...(config.connectionType === 'http'
      ? { pollingUrl: config.pollingUrl.href }
      : { natsUrl: config.pubsubUrl, ...(config.pubsubGroup !== '' && { queueGroup: config.pubsubGroup }) }),
    forwardingUrl: config.forwardingUrl?.href ?? 'NATS',
    recipient: config.recipientUrl.href,
    topics: config.pubsubTopic,
    ...(config.connectionType === 'http' && { keptnApiVersion: config.keptnApiVersion }),
  });
  for (const [variable, url] of [['HTTPS_PROXY', config.httpsProxy], ['HTTP_PROXY', config.httpProxy]] as const) {
    if (url) logger.info('calls to Keptn go through a proxy', { variable, proxy: url.origin, proxyBypass: config.proxyBypass });
  }
  if (config.oauth && config.connectionType === 'nats') logger.warn('the OAuth settings are not used in NATS mode: the in-cluster Keptn services take no credentials');
  else if (config.oauth) logger.info('OAuth is on: calls to Keptn carry a bearer token', { clientId: config.oauth.clientId, scopes: config.oauth.scopes });
  if (!config.httpSslVerify) logger.warn('TLS certificate verification towards Keptn is disabled (HTTP_SSL_VERIFY=false)');

  const lifecycle = runParts(parts, { signal, shutdownTimeoutMs: config.shutdownTimeout, logger });
  return {
    ready: lifecycle.ready.then(() => {
      logger.info('ready', addresses);
      return addresses;
    }),
    closed: lifecycle.closed.then(() => {
      logger.info('stopped');
    }),
  };
}
