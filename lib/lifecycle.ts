/**
 * Start/stop skeleton: long-lived parts start in order and stop in reverse
 * order when the signal aborts, each given the same shutdown deadline.
 */
import type { Logger } from './log.ts';

/** A long-lived part of the agent: the poller, the local server, registration, health. */
export interface Part {
  readonly name: string;
  /** Resolves once the part does its job (e.g. listens); rejects if it cannot start. */
  start(): Promise<void>;
  /**
   * Stops taking new work and finishes what is in flight; stops waiting when
   * `deadline` aborts. Called once, even if `start` failed or never ran.
   */
  stop(deadline: AbortSignal): Promise<void>;
}

export interface Lifecycle {
  /** Resolves when every part has started; rejects with the first start failure. */
  readonly ready: Promise<void>;
  /** Resolves when every part has stopped, after the signal aborted or a start failed. */
  readonly closed: Promise<void>;
}

export function runParts(parts: readonly Part[], { signal, shutdownTimeoutMs, logger }: {
  signal: AbortSignal; shutdownTimeoutMs: number; logger: Logger;
}): Lifecycle {
  const started: Part[] = [];
  const ready = (async () => {
    for (const part of parts) {
      if (signal.aborted) return;
      started.push(part);
      await part.start();
      logger.debug('started', { part: part.name });
    }
  })();
  const closed = (async () => {
    // Parts start quickly (they listen, or spawn their loop), so shutdown waits for start to settle.
    const startError = await ready.then(() => undefined, (error: unknown) => error ?? new Error('start failed'));
    if (startError === undefined) await aborted(signal);
    const deadline = AbortSignal.timeout(shutdownTimeoutMs);
    for (const part of started.reverse()) {
      try {
        await part.stop(deadline);
        logger.debug('stopped', { part: part.name });
      } catch (error) {
        logger.error('could not stop cleanly', { part: part.name, error: error instanceof Error ? error.message : String(error) });
      }
    }
    if (startError !== undefined) throw startError;
  })();
  // The caller awaits `closed`; `ready`'s rejection is reported there too.
  ready.catch(() => undefined);
  return { ready, closed };
}

function aborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}
