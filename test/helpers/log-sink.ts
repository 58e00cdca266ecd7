/** A logger whose JSON lines a test can read back. */
import { PassThrough } from 'node:stream';
import { createLogger, type Logger, type LogLevel } from '../../lib/log.ts';

export interface LogSink {
  readonly logger: Logger;
  /** Every line written so far, parsed. */
  entries(): Array<Record<string, unknown>>;
  /** Every line written so far, as written. */
  text(): string;
}

export function logSink({ level = 'debug', secrets = [] }: { level?: LogLevel; secrets?: string[] } = {}): LogSink {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (chunk: Buffer) => { text += chunk.toString('utf8'); });
  return {
    logger: createLogger({ level, secrets, stream }),
    entries: () => text.split('\n').filter((line) => line !== '').map((line) => JSON.parse(line) as Record<string, unknown>),
    text: () => text,
  };
}
