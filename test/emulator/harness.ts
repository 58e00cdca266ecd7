/**
 * What the emulator tests share: emulators on 127.0.0.1 port 0 that close
 * after each test, a JSON request helper on the global fetch, and the
 * fixtures (real Keptn events from the spec).
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { startEmulator, type Emulator, type EmulatorOptions } from '../../lib/emulator/server.ts';

/** Registers an `afterEach` that closes every emulator the returned function started in the test. */
export function useEmulators(): (options?: EmulatorOptions) => Promise<Emulator> {
  const running: Emulator[] = [];
  afterEach(async () => {
    await Promise.all(running.splice(0).map((emulator) => emulator.close()));
  });
  return async (options = {}) => {
    const emulator = await startEmulator({ port: 0, ...options });
    running.push(emulator);
    return emulator;
  };
}

export interface Answer<T> {
  readonly status: number;
  readonly headers: Headers;
  /** The body parsed as JSON (undefined when it is not JSON). */
  readonly body: T;
  readonly text: string;
}

export interface CallOptions {
  readonly method?: string;
  /** Serialised as the JSON body. */
  readonly json?: unknown;
  /** A raw body, sent as is. */
  readonly body?: string;
  readonly headers?: Record<string, string>;
  readonly signal?: AbortSignal;
}

/** One request; JSON bodies get `content-type: application/json` unless the caller sets one. */
export async function call<T = Record<string, unknown>>(url: string, options: CallOptions = {}): Promise<Answer<T>> {
  const body = options.json !== undefined ? JSON.stringify(options.json) : options.body;
  const response = await fetch(url, {
    method: options.method ?? (body === undefined ? 'GET' : 'POST'),
    headers: { ...(body !== undefined && { 'content-type': 'application/json' }), ...options.headers },
    ...(body !== undefined && { body }),
    ...(options.signal && { signal: options.signal }),
  });
  const text = await response.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  return { status: response.status, headers: response.headers, body: parsed as T, text };
}

/** A fixture from test/fixtures/emulator, parsed. */
export function fixture(name: string): Record<string, unknown> {
  return JSON.parse(readFileSync(new URL(`../fixtures/emulator/${name}`, import.meta.url), 'utf8')) as Record<string, unknown>;
}

/** The path of a fixture file. */
export function fixturePath(name: string): string {
  return new URL(`../fixtures/emulator/${name}`, import.meta.url).pathname;
}

/** `sh.keptn.event.<task>.<kind>` answering `triggered`, as a Keptn-service would post it. */
export function answerTo(triggered: { id: string; shkeptncontext: string; type: string; data: Readonly<Record<string, unknown>> }, kind: 'started' | 'finished', extra: { source?: string; data?: Record<string, unknown> } = {}): Record<string, unknown> {
  return {
    specversion: '1.0',
    id: randomUUID(),
    source: extra.source ?? 'my-service',
    type: triggered.type.replace(/\.triggered$/, `.${kind}`),
    shkeptncontext: triggered.shkeptncontext,
    triggeredid: triggered.id,
    data: {
      project: triggered.data.project, stage: triggered.data.stage, service: triggered.data.service,
      ...(kind === 'finished' && { status: 'succeeded', result: 'pass' }),
      ...extra.data,
    },
  };
}
