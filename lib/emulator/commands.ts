/**
 * The `emulate` and `trigger` subcommands: run the control-plane emulator in
 * the foreground, and start a task in a running one. Their actions return an
 * exit code instead of exiting — 0 done, 1 the emulator could not start or be
 * reached, 2 bad usage — so that `lib/cli.ts` stays the only place that calls
 * `process.exit`, and tests can call them directly.
 */
import { readFile } from 'node:fs/promises';
import { Command, InvalidArgumentError, Option } from 'commander';
import { parseDuration } from '../duration.ts';
import { isRecord } from '../json-object.ts';
import { isTriggeredType } from './event-model.ts';
import { DISCOVERY_PATH } from './oauth-routes.ts';
import type { EmulatedApiVersion } from './keptn-routes.ts';
import { startEmulator, type Emulator } from './server.ts';

/** As in lib/cli.ts. */
const EXIT_OK = 0;
const EXIT_FATAL = 1;
const EXIT_USAGE = 2;

/** Where the commands write and what stops them. */
export interface CommandIo {
  /** Aborts on SIGINT/SIGTERM: `emulate` then closes and returns. */
  readonly signal: AbortSignal;
  /** Writes one line to standard output (the line carries no newline). */
  readonly out: (line: string) => void;
  /** Writes one line to standard error. */
  readonly err: (line: string) => void;
}

export interface EmulatorCommandIo extends CommandIo {
  /** Receives the exit code of the command that ran. */
  readonly setExitCode: (code: number) => void;
}

export interface EmulateOptions {
  readonly port?: number;
  readonly host?: string;
  readonly token?: string;
  readonly paginationBug?: boolean;
  /** OAuth mode: all of id and secret, or neither. */
  readonly oauthClientId?: string;
  readonly oauthClientSecret?: string;
  /** Milliseconds an issued token is good for. */
  readonly oauthTokenLifetime?: number;
  readonly apiVersion?: EmulatedApiVersion;
}

export interface TriggerOptions {
  readonly type: string;
  readonly project: string;
  readonly stage: string;
  readonly service: string;
  /** A file holding a JSON object: further `data` fields. */
  readonly data?: string;
  /** The emulator's base URL; default http://127.0.0.1:8090. */
  readonly emulator?: string;
  /** Sent as `x-token` (the trigger route itself needs none). */
  readonly token?: string;
}

const DEFAULT_EMULATOR = 'http://127.0.0.1:8090';
/** Long enough for a busy machine, short enough that a wrong address does not hang the command. */
const TRIGGER_TIMEOUT_MS = 10_000;

/** Adds `emulate` and `trigger` to `program`; each action reports its exit code through `io.setExitCode`. */
export function addEmulatorCommands(program: Command, io: EmulatorCommandIo): void {
  program.command('emulate')
    .description('run an in-memory stand-in for the Keptn control plane (0.8.7 API), to try the agent without a Keptn')
    .addOption(new Option('--port <port>', 'port to listen on (0: any free port)').default(8090).argParser(parsePort))
    .option('--host <address>', 'address to listen on', '127.0.0.1')
    .option('--token <token>', 'require this x-token on the Keptn API routes (default: no token needed)')
    .addOption(new Option('--api-version <version>', 'the control plane generation: 0.8 (PUBSUB_TOPIC subscriptions) or 1.x (subscriptions, heartbeat, subscription API)')
      .choices(['0.8', '1.x']).default('0.8'))
    .option('--pagination-bug', "reproduce the 0.8.x shipyard-controller's pagination bug (later pages repeat the first items)")
    .option('--oauth-client-id <id>', 'OAuth mode: serve a token endpoint for this client, and require its bearer token on the Keptn API routes')
    .option('--oauth-client-secret <secret>', 'OAuth mode: the client secret')
    .addOption(new Option('--oauth-token-lifetime <duration>', 'OAuth mode: how long an issued token is good for').default(300_000, '5m').argParser(parseLifetime))
    .action(async (options: EmulateOptions) => {
      io.setExitCode(await emulate(options, io));
    });

  program.command('trigger')
    .description('start a task in a running emulator: it opens a .triggered event for the agent to poll')
    .requiredOption('--type <type>', 'event type ending in .triggered, e.g. sh.keptn.event.test.triggered')
    .requiredOption('--project <project>', 'data.project')
    .requiredOption('--stage <stage>', 'data.stage')
    .requiredOption('--service <service>', 'data.service')
    .option('--data <file>', 'a JSON file with further data fields')
    .option('--emulator <url>', 'the emulator to trigger in', DEFAULT_EMULATOR)
    .option('--token <token>', 'x-token to send, if the emulator wants one')
    .action(async (options: TriggerOptions) => {
      io.setExitCode(await trigger(options, io));
    });
}

/**
 * Runs an emulator until `io.signal` aborts: one line saying where it
 * listens and how to point an agent at it, then one line per event.
 */
export async function emulate(options: EmulateOptions, io: CommandIo): Promise<number> {
  const port = options.port ?? 8090;
  const host = options.host ?? '127.0.0.1';
  const { oauthClientId: clientId, oauthClientSecret: clientSecret } = options;
  if ((clientId === undefined) !== (clientSecret === undefined)) {
    io.err('keptn-distributor emulate: OAuth mode needs both --oauth-client-id and --oauth-client-secret');
    return EXIT_FATAL;
  }
  let emulator: Emulator;
  try {
    emulator = await startEmulator({
      port, host, log: io.out,
      ...(clientId !== undefined && clientSecret !== undefined && {
        oauth: { clientId, clientSecret, ...(options.oauthTokenLifetime !== undefined && { tokenLifetimeMs: options.oauthTokenLifetime }) },
      }),
      ...(options.token !== undefined && { token: options.token }),
      ...(options.paginationBug !== undefined && { paginationBug: options.paginationBug }),
      ...(options.apiVersion !== undefined && { apiVersion: options.apiVersion }),
    });
  } catch (error) {
    io.err(`keptn-distributor emulate: cannot listen on ${host}:${port}: ${reasonOf(error)}`);
    return EXIT_FATAL;
  }
  const token = options.token ? ` KEPTN_API_TOKEN=${shellWord(options.token)}` : '';
  const oauth = clientId !== undefined && clientSecret !== undefined
    ? ` OAUTH_CLIENT_ID=${shellWord(clientId)} OAUTH_CLIENT_SECRET=${shellWord(clientSecret)} OAUTH_SCOPES=keptn OAUTH_DISCOVERY=${emulator.url}${DISCOVERY_PATH}`
    : '';
  io.out(`keptn control-plane emulator listening on ${emulator.url}; point an agent at it with `
    + `KEPTN_API_ENDPOINT=${emulator.url}${token}${oauth} PUBSUB_TOPIC=sh.keptn.event.test.triggered`
    + (options.apiVersion === '1.x' ? ' (Keptn 1.x: subscriptions under …/uniform/registration/<id>/subscription)' : ''));
  if (!io.signal.aborted) await new Promise<void>((resolve) => io.signal.addEventListener('abort', () => resolve(), { once: true }));
  await emulator.close();
  return EXIT_OK;
}

/** Starts a task in a running emulator and prints the new event's id and Keptn context. */
export async function trigger(options: TriggerOptions, io: CommandIo): Promise<number> {
  const fail = (code: number, message: string): number => {
    io.err(`keptn-distributor trigger: ${message}`);
    return code;
  };
  if (!isTriggeredType(options.type)) {
    return fail(EXIT_USAGE, `--type "${options.type}": expected an event type ending in .triggered, e.g. sh.keptn.event.test.triggered`);
  }
  const base = parseBaseUrl(options.emulator ?? DEFAULT_EMULATOR);
  if (base === undefined) return fail(EXIT_USAGE, `--emulator "${options.emulator}": expected an http(s) URL such as ${DEFAULT_EMULATOR}`);
  let data: Record<string, unknown> | undefined;
  if (options.data !== undefined) {
    const read = await readDataFile(options.data);
    if (typeof read === 'string') return fail(EXIT_USAGE, `--data ${options.data}: ${read}`);
    data = read;
  }

  let response: Response;
  try {
    response = await fetch(new URL('emulator/trigger', base), {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(options.token && { 'x-token': options.token }) },
      body: JSON.stringify({ type: options.type, project: options.project, stage: options.stage, service: options.service, ...(data && { data }) }),
      signal: AbortSignal.any([io.signal, AbortSignal.timeout(TRIGGER_TIMEOUT_MS)]),
    });
  } catch (error) {
    return fail(EXIT_FATAL, `cannot reach the emulator at ${base.href}: ${reasonOf(error)} (is \`keptn-distributor emulate\` running?)`);
  }
  const text = await response.text();
  const body = parseJson(text);
  if (response.status !== 201 || !isRecord(body) || typeof body.id !== 'string') {
    const message = isRecord(body) && typeof body.message === 'string' ? body.message : text.slice(0, 200);
    // The emulator refusing the request is a usage problem; anything else is the emulator's.
    return fail(response.status >= 400 && response.status < 500 ? EXIT_USAGE : EXIT_FATAL, `the emulator answered ${response.status}: ${message}`);
  }
  io.out(`triggered ${options.type}  id ${body.id}  keptn context ${String(body.shkeptncontext)}`);
  return EXIT_OK;
}

/** commander's parser for `--port`: an integer from 0 to 65535, nothing else. */
export function parsePort(value: string): number {
  if (!/^\d{1,5}$/.test(value) || Number(value) > 65535) throw new InvalidArgumentError('expected an integer from 0 to 65535.');
  return Number(value);
}

/** The data file's JSON object, or what is wrong with it. */
async function readDataFile(file: string): Promise<Record<string, unknown> | string> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    return `cannot read it: ${reasonOf(error)}`;
  }
  const data = parseJson(text);
  if (data === undefined) return 'is not valid JSON';
  return isRecord(data) ? data : 'must hold a JSON object, e.g. {"deployment": {"deploymentstrategy": "direct"}}';
}

/** The base URL with a trailing slash, so that relative paths land under any path it has. */
function parseBaseUrl(text: string): URL | undefined {
  try {
    const url = new URL(text.endsWith('/') ? text : `${text}/`);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url : undefined;
  } catch {
    return undefined;
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** The shortest useful reason: fetch hides the network error (`connect ECONNREFUSED …`) in `cause`. */
function reasonOf(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  return error.cause instanceof Error ? error.cause.message : error.message;
}

/** Quotes a value for a POSIX shell when it needs it. */
function shellWord(value: string): string {
  return /^[\w@%+=:,./-]+$/.test(value) ? value : `'${value.replaceAll("'", `'\\''`)}'`;
}

function parseLifetime(value: string): number {
  const ms = parseDuration(value);
  if (ms === undefined || ms <= 0) throw new InvalidArgumentError('a positive duration such as 30s or 5m');
  return ms;
}
