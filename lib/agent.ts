/**
 * The composition root: builds every part of the agent from the configuration
 * and runs them. Wiring lives here and nowhere else.
 */
import { runParts, type Part } from './lifecycle.ts';
import type { Config } from './config.ts';
import type { Logger } from './log.ts';
import { createMetrics, type Metrics } from './metrics.ts';
import { Readiness } from './readiness.ts';

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

export function startAgent(config: Config, { signal, logger, metrics = createMetrics() }: AgentOptions): Agent {
  const addresses: AgentAddresses = {};
  const readiness = new Readiness();
  // Parts start in this order and stop in reverse: the poller stops first, then
  // the local server drains the outbox, then logs are flushed and the
  // registration ends, and the health server goes last.
  const parts: Part[] = [];

  // — health and metrics server (issue 6)

  // — registration and error-log forwarding (issue 6)

  // — local server: event relay, outbox, API proxy (issue 5)

  // — pipeline: poller, dedup, dispatcher (issue 4)
  void metrics;
  void readiness;

  logger.info('starting', {
    mode: config.connectionType,
    pollingUrl: config.pollingUrl.href,
    forwardingUrl: config.forwardingUrl.href,
    recipient: config.recipientUrl.href,
    topics: config.pubsubTopic,
  });
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
