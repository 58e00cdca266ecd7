/**
 * The one logger: winston, JSON lines, with every secret (the API token)
 * scrubbed from every string of every line, whatever the level and whoever
 * wrote it. Built once in the CLI and passed down, so tests can capture it.
 */
import type { Writable } from 'node:stream';
import winston from 'winston';

export type Logger = winston.Logger;
export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

export const REDACTED = '[REDACTED]';

export interface LoggerOptions {
  readonly level: LogLevel;
  /** Values that must never be written; replaced by `[REDACTED]` wherever they occur. */
  readonly secrets: readonly string[];
  /** Where the JSON lines go; stdout by default. */
  readonly stream?: Writable;
}

export function createLogger({ level, secrets, stream = process.stdout }: LoggerOptions): Logger {
  return winston.createLogger({
    level,
    format: winston.format.combine(winston.format.timestamp(), redact(secrets)(), winston.format.json()),
    transports: [new winston.transports.Stream({ stream })],
  });
}

/** A logger that writes nothing: for library use and tests that do not read logs. */
export function silentLogger(): Logger {
  return winston.createLogger({ silent: true, transports: [new winston.transports.Console({ silent: true })] });
}

/**
 * Replaces each secret in every string value of the log entry, nested objects
 * and error messages included. Runs before JSON serialisation, on a copy.
 */
function redact(secrets: readonly string[]) {
  const needles = secrets.filter((secret) => secret.length > 0);
  // `ancestors` holds the objects on the path from the root, so a shared object is scrubbed each
  // time it appears and only a real cycle is cut.
  const scrub = (value: unknown, ancestors: WeakSet<object>): unknown => {
    if (typeof value === 'string') return needles.reduce((text, secret) => text.split(secret).join(REDACTED), value);
    if (value === null || typeof value !== 'object') return value;
    if (ancestors.has(value)) return '[Circular]';
    ancestors.add(value);
    let copy: unknown;
    if (value instanceof Error) copy = { name: value.name, message: scrub(value.message, ancestors) };
    else if (Array.isArray(value)) copy = value.map((item) => scrub(item, ancestors));
    else copy = Object.fromEntries(Object.entries(value).map(([key, item]) => [key, scrub(item, ancestors)]));
    ancestors.delete(value);
    return copy;
  };
  return winston.format((info) => {
    if (needles.length === 0) return info;
    const seen = new WeakSet<object>();
    for (const key of Object.keys(info)) info[key] = scrub(info[key], seen);
    info.message = scrub(info.message, seen);
    return info;
  });
}
