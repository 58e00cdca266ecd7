/**
 * Starts the real agent in-process, as the CLI would, with settings given as
 * environment variables. Local ports default to 0 (free ports); read them
 * from `addresses`. `stop()` is the SIGTERM path.
 */
import { startAgent, type AgentAddresses } from '../../lib/agent.ts';
import { loadConfig, secretsOf, type Config } from '../../lib/config.ts';
import { createMetrics, type Metrics } from '../../lib/metrics.ts';
import { logSink, type LogSink } from './log-sink.ts';

export interface RunningAgent {
  readonly config: Config;
  readonly addresses: AgentAddresses;
  readonly metrics: Metrics;
  readonly logs: LogSink;
  readonly closed: Promise<void>;
  /** Graceful shutdown; resolves when the agent has stopped. Idempotent. */
  stop(): Promise<void>;
}

export async function startTestAgent(env: Record<string, string>): Promise<RunningAgent> {
  const config = loadConfig({
    env: {
      API_PROXY_PORT: '0',
      HEALTH_ENDPOINT_PORT: '0',
      HTTP_POLLING_INTERVAL: '20ms',
      DISABLE_REGISTRATION: 'true',
      SHUTDOWN_TIMEOUT: '2s',
      LOG_LEVEL: 'debug',
      ...env,
    },
  });
  const logs = logSink({ secrets: secretsOf(config) });
  const metrics = createMetrics({ defaultMetrics: false });
  const controller = new AbortController();
  const agent = startAgent(config, { signal: controller.signal, logger: logs.logger, metrics });
  const closed = agent.closed;
  let addresses: AgentAddresses;
  try {
    addresses = await agent.ready;
  } catch (error) {
    await closed.catch(() => undefined);
    throw error;
  }
  return {
    config, addresses, metrics, logs, closed,
    stop: async () => {
      controller.abort();
      await closed;
    },
  };
}
