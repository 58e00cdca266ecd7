/**
 * An in-memory stand-in for the Keptn 0.8.7 control plane, on one local
 * port: what the agent polls, posts and registers with, plus inspection
 * routes and fault switches for tests.
 *
 *     const emulator = await startEmulator({ port: 0, token: 'secret' });
 *     const triggered = emulator.trigger({ type: 'sh.keptn.event.test.triggered', project: 'p', stage: 's', service: 'c' });
 *     // … run the agent against emulator.url …
 *     await emulator.waitFor(() => emulator.openTriggered().length === 0, { what: 'the task to close' });
 *     await emulator.close();
 *
 * Each request goes: route → count → armed fault → token → body → handler
 * → (delay) → answer. A fault comes before the token check because it
 * stands for the gateway in front of Keptn, which answers before any backend.
 */
import { EventEmitter } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { emulatorRoutes } from './emulator-routes.ts';
import {
  checkTriggerRequest, isTriggeredType, newTriggeredEvent, toTriggeredEvent, type DatastoreEvent, type TriggerRequest, type TriggeredEvent,
} from './event-model.ts';
import { Faults, failureReply } from './faults.ts';
import { keptnError, readRequestBody, send, type Reply } from './json-http.ts';
import { keptnRoutes, type EmulatedApiVersion, type Observer, type RouteContext } from './keptn-routes.ts';
import { openTask } from './lifecycle.ts';
import { OAuthIssuer, type IssuedToken, type OAuthEmulationOptions } from './oauth-routes.ts';
import { createNarrator, type Narrator } from './narrator.ts';
import { ROUTE_KEYS, Router, gatewayPath, type Route, type RouteKey } from './router.ts';
import { ControlPlaneState, type EventFilter, type Integration, type LogEntry, type ReceivedEvent, type StoredResource } from './state.ts';

export type { DatastoreEvent, TriggerRequest, TriggeredEvent } from './event-model.ts';
export type { DropOptions, FailOptions, Faults } from './faults.ts';
export type { Outcome } from './lifecycle.ts';
export type { IssuedToken, OAuthEmulationOptions } from './oauth-routes.ts';
export type { RouteKey } from './router.ts';
export type { EventFilter, Integration, LogEntry, ReceivedEvent, StoredResource } from './state.ts';

export interface EmulatorOptions {
  /** Default 8090; 0 picks a free port. */
  readonly port?: number;
  /** Default 127.0.0.1. */
  readonly host?: string;
  /** When set, every Keptn API route requires `x-token: <token>`; when empty or absent, anything passes. */
  readonly token?: string;
  /**
   * OAuth mode: serve a discovery document and a token endpoint under
   * `/oauth`, and require a bearer token issued there on every Keptn API
   * route (besides the x-token, when `token` is set too).
   */
  readonly oauth?: OAuthEmulationOptions;
  /** Reproduce the shipyard-controller's pagination bug on the poll route (spec §4.8.3). Default false: correct pages. */
  readonly paginationBug?: boolean;
  /** The control plane generation: 0.8 (default; no heartbeat route, so a ping is 404) or 1.x (subscriptions, ping, subscription CRUD). */
  readonly apiVersion?: EmulatedApiVersion;
  /** Largest request body accepted, in bytes; default 5 MiB. Larger ones get 413. */
  readonly bodyLimit?: number;
  /** Receives one readable line per thing that happens (the CLI passes console output). Silent when absent. */
  readonly log?: (line: string) => void;
  /** The clock for event times and printed lines. */
  readonly now?: () => Date;
}

/** A request the emulator has finished with. */
export interface AnsweredRequest {
  /** Undefined for a path no route serves. */
  readonly key: RouteKey | undefined;
  readonly method: string;
  /** As it arrived, still percent-encoded, without the query. */
  readonly path: string;
  /** The status answered, or `dropped` when the connection was destroyed instead. */
  readonly status: number | 'dropped';
}

/** What an emulator reports, for tests that would rather await an event than poll a condition. */
export interface EmulatorEvents {
  /** An event was accepted on `POST /v1/event` (its `outcome` says what became of it). */
  event: [received: ReceivedEvent];
  /** A `.triggered` event is now open. */
  opened: [event: TriggeredEvent];
  /** A `.finished` closed its `.triggered` event. */
  completed: [finished: ReceivedEvent];
  registered: [integration: Integration];
  unregistered: [id: string];
  subscriptions: [integration: Integration];
  logged: [entries: readonly LogEntry[]];
  request: [request: AnsweredRequest];
  /** Something changed or a request arrived or was answered: the moment to re-check a condition. */
  change: [];
}

export interface WaitOptions {
  /** Milliseconds before giving up; default 5000. */
  readonly timeout?: number;
  /** Named in the timeout error. */
  readonly what?: string;
}

const DEFAULT_PORT = 8090;
const DEFAULT_HOST = '127.0.0.1';
const DEFAULT_BODY_LIMIT = 5 * 1024 * 1024;

/** Starts an emulator and resolves once it listens; rejects if it cannot (e.g. the port is in use). */
export async function startEmulator(options: EmulatorOptions = {}): Promise<Emulator> {
  const emulator = new Emulator(options);
  await emulator.restart();
  return emulator;
}

export class Emulator extends EventEmitter<EmulatorEvents> {
  /** Fault switches per route key. */
  readonly faults = new Faults();
  readonly #state = new ControlPlaneState();
  readonly #requests = Object.fromEntries(ROUTE_KEYS.map((key) => [key, 0])) as Record<RouteKey, number>;
  readonly #router: Router;
  readonly #narrator: Narrator;
  readonly #now: () => Date;
  readonly #host: string;
  readonly #token: string;
  readonly #oauth: OAuthIssuer | undefined;
  readonly #bodyLimit: number;
  #port: number;
  #server: Server | undefined;
  /** Aborted when the current listening period ends: cancels delayed answers. */
  #period = new AbortController();
  /** Aborted by `close()`: ends every wait. */
  readonly #shutdown = new AbortController();
  #closing: Promise<void> | undefined;

  /** Use `startEmulator`; a new emulator does not listen until `restart()`. */
  constructor(options: EmulatorOptions = {}) {
    super();
    // Every test may wait on several conditions at once.
    this.setMaxListeners(0);
    const port = options.port ?? DEFAULT_PORT;
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new RangeError(`port must be an integer from 0 to 65535, not ${port}`);
    this.#port = port;
    this.#host = options.host ?? DEFAULT_HOST;
    this.#token = options.token ?? '';
    this.#bodyLimit = options.bodyLimit ?? DEFAULT_BODY_LIMIT;
    this.#now = options.now ?? (() => new Date());
    this.#narrator = createNarrator(options.log, this.#now);
    const context: RouteContext = {
      state: this.#state,
      paginationBug: options.paginationBug ?? false,
      apiVersion: options.apiVersion ?? '0.8',
      now: this.#now,
      observer: this.#observer(),
      trigger: (request) => this.trigger(request),
    };
    this.#oauth = options.oauth && new OAuthIssuer(options.oauth, () => this.#now().getTime());
    this.#router = new Router([...keptnRoutes(context), ...emulatorRoutes(context), ...(this.#oauth?.routes() ?? [])]);
  }

  /** The port listened on (the real one when 0 was asked for, once listening). */
  get port(): number {
    return this.#port;
  }

  /** Where a client on this machine reaches the emulator, e.g. `http://127.0.0.1:8090`; use it as KEPTN_API_ENDPOINT. */
  get url(): string {
    const host = this.#host === '0.0.0.0' ? '127.0.0.1' : this.#host === '::' ? '::1' : this.#host;
    return `http://${host.includes(':') ? `[${host}]` : host}:${this.#port}`;
  }

  /** Requests received per route key so far (including refused and faulted ones). */
  get requests(): Readonly<Record<RouteKey, number>> {
    return { ...this.#requests };
  }

  /**
   * Starts a task: a new open `.triggered` event (fresh id and context, time
   * now, source shipyard-controller unless given). Throws a TypeError for bad
   * input, an Error for an `id` that is open already.
   */
  trigger(request: TriggerRequest): TriggeredEvent {
    const check = checkTriggerRequest(request);
    if (!check.ok) throw new TypeError(check.message);
    return this.#openTask(newTriggeredEvent(check.request, this.#now()));
  }

  /**
   * Opens a `.triggered` event given as a CloudEvent (e.g. a fixture), in the
   * shipyard-controller's model: attributes outside it are dropped, missing
   * ones filled in. Throws TypeError when `type` does not end in `.triggered`.
   */
  addTriggered(raw: Readonly<Record<string, unknown>>): TriggeredEvent {
    if (!isTriggeredType(raw.type)) throw new TypeError(`addTriggered: "type" must end in .triggered, not ${JSON.stringify(raw.type)}`);
    return this.#openTask(toTriggeredEvent(raw, this.#now()));
  }

  /** The open `.triggered` events (of one type, if given), in the order a poll lists them. */
  openTriggered(type?: string): TriggeredEvent[] {
    return this.#state.findOpen(type === undefined ? {} : { type });
  }

  /** Events accepted on `POST /v1/event`, in arrival order, each with the JSON as posted and what became of it. */
  received(filter: EventFilter = {}): ReceivedEvent[] {
    return this.#state.received(filter);
  }

  /** Every event the datastore holds (opened tasks and accepted posts), in the order stored. */
  datastore(filter: EventFilter = {}): DatastoreEvent[] {
    return this.#state.datastore(filter);
  }

  /** OAuth mode: the tokens issued so far, oldest first (empty otherwise). */
  oauthTokens(): readonly IssuedToken[] {
    return this.#oauth?.issued ?? [];
  }

  /** OAuth mode: every token issued so far is refused from now on, so clients must fetch new ones. */
  revokeOAuthTokens(): void {
    this.#oauth?.revokeAll();
  }

  registrations(): Integration[] {
    return this.#state.integrations();
  }

  logs(): LogEntry[] {
    return this.#state.logs();
  }

  resources(): StoredResource[] {
    return this.#state.resources();
  }

  /**
   * Resolves as soon as `predicate` holds, re-checking it whenever something
   * happens in the emulator; rejects after `timeout` ms or when the emulator
   * closes. The way to wait for "3 events received" without sleeping.
   */
  waitFor(predicate: () => boolean, { timeout = 5_000, what = 'the condition' }: WaitOptions = {}): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const finish = (error?: unknown): void => {
        clearTimeout(timer);
        this.off('change', check);
        this.#shutdown.signal.removeEventListener('abort', onClose);
        if (error === undefined) resolve();
        else reject(error instanceof Error ? error : new Error(String(error)));
      };
      const check = (): void => {
        try {
          if (predicate()) finish();
        } catch (error) {
          finish(error ?? new Error('the predicate threw'));
        }
      };
      const onClose = (): void => finish(new Error(`the emulator was closed while waiting for ${what}`));
      const timer = setTimeout(() => finish(new Error(`timed out after ${timeout} ms waiting for ${what}`)), timeout);
      if (this.#shutdown.signal.aborted) return onClose();
      this.on('change', check);
      this.#shutdown.signal.addEventListener('abort', onClose);
      check();
    });
  }

  /** Stops listening and drops every connection; the memory stays, for `restart()`. */
  async stop(): Promise<void> {
    const server = this.#server;
    if (server === undefined) return;
    this.#server = undefined;
    this.#period.abort();
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  /** Listens (again) on the same port, keeping the memory; stops first if listening. */
  async restart(): Promise<void> {
    if (this.#shutdown.signal.aborted) throw new Error('the emulator is closed');
    await this.stop();
    const period = new AbortController();
    const server = createServer((request, response) => {
      this.#serve(request, response, period.signal).catch(() => {
        // Whatever went wrong, the client must not wait for ever.
        if (!response.headersSent) send(response, keptnError(500, 'the emulator failed on this request'));
        else response.destroy();
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port: this.#port, host: this.#host }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.#server = server;
    this.#period = period;
    this.#port = (server.address() as AddressInfo).port;
  }

  /** Stops for good: drops every connection, cancels delays and waits. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#shutdown.abort();
      await this.stop();
    })();
    return this.#closing;
  }

  #openTask(event: TriggeredEvent): TriggeredEvent {
    openTask(this.#state, event);
    this.#narrator.opened(event);
    this.emit('opened', event);
    this.emit('change');
    return event;
  }

  #observer(): Observer {
    const narrator = this.#narrator;
    return {
      received: (received) => {
        narrator.received(received);
        this.emit('event', received);
        if (received.outcome.kind === 'closed') this.emit('completed', received);
        if (received.outcome.kind === 'opened') {
          const [opened] = this.#state.findOpen({ eventId: received.outcome.triggeredId });
          if (opened) this.emit('opened', opened);
        }
      },
      polled: (type, events) => narrator.polled(type, events),
      registered: (integration, isNew) => {
        narrator.registered(integration, isNew);
        this.emit('registered', integration);
      },
      unregistered: (id) => {
        narrator.unregistered(id);
        this.emit('unregistered', id);
      },
      subscriptionChanged: (integration, subscription, change) => {
        narrator.subscriptionChanged(integration, subscription, change);
        const updated = this.#state.integration(integration.id);
        if (updated) this.emit('subscriptions', updated);
      },
      logged: (entries) => {
        narrator.logged(entries);
        this.emit('logged', entries);
      },
    };
  }

  async #serve(request: IncomingMessage, response: ServerResponse, period: AbortSignal): Promise<void> {
    const method = request.method ?? 'GET';
    const target = request.url ?? '/';
    const queryAt = target.indexOf('?');
    const rawPath = queryAt < 0 ? target : target.slice(0, queryAt);
    const rawQuery = queryAt < 0 ? '' : target.slice(queryAt + 1);
    const answer = (key: RouteKey | undefined, reply: Reply, why?: string): void => {
      send(response, reply);
      if (reply.status >= 400) this.#narrator.refused(method, rawPath, reply.status, why ?? messageOf(reply));
      this.#answered({ key, method, path: rawPath, status: reply.status });
    };

    const path = gatewayPath(rawPath);
    if (path === undefined) return answer(undefined, keptnError(400, `malformed percent-encoding in the path ${rawPath}`));
    const match = this.#router.match(method, path);
    if (match.kind === 'not-found') {
      // The shipyard-controller's router (gin) answers a route it lacks in plain text, unlike its handlers.
      if (path.startsWith('/controlPlane/')) return answer(undefined, { status: 404, text: '404 page not found' }, `no route for ${method} ${rawPath}`);
      return answer(undefined, keptnError(404, `no route for ${method} ${rawPath}`));
    }
    if (match.kind === 'wrong-method') {
      return answer(undefined, keptnError(405, `${method} is not allowed on ${rawPath}; use ${match.allow.join(', ')}`, { allow: match.allow.join(', ') }));
    }
    const { route, params } = match;
    this.#requests[route.key]++;
    this.emit('change');

    const fault = this.faults.take(route.key);
    if (fault?.kind === 'drop' && !fault.afterEffect) return this.#drop(request, route.key, method, rawPath);
    if (fault?.kind === 'fail') return answer(route.key, failureReply(fault), 'fault injected');

    const refusal = this.#authorize(route, request);
    if (refusal !== undefined) return answer(route.key, keptnError(401, refusal), refusal);
    const body = await readRequestBody(request, { as: route.body, consumes: route.consumes, limit: this.#bodyLimit });
    if ('status' in body) return answer(route.key, body);

    const reply = route.handle({ method, rawPath, rawQuery, query: new URLSearchParams(rawQuery), params, headers: request.headers, ...body });
    this.emit('change');
    if (fault?.kind === 'drop') return this.#drop(request, route.key, method, rawPath);
    if (fault?.kind === 'delay') {
      try {
        await delay(fault.ms, undefined, { signal: period });
      } catch {
        // Stopped or closed meanwhile: the connection is gone already.
        return this.#drop(request, route.key, method, rawPath);
      }
    }
    answer(route.key, reply);
  }

  /** Why the request may not pass, or undefined when it may. */
  #authorize(route: Route, request: IncomingMessage): string | undefined {
    if (!route.auth) return undefined;
    const bearer = this.#oauth?.refusal(request.headers);
    if (bearer !== undefined) return bearer;
    if (this.#token === '') return undefined;
    const token = request.headers['x-token'];
    if (token === undefined) return 'missing x-token header';
    return token === this.#token ? undefined : 'invalid x-token';
  }

  #drop(request: IncomingMessage, key: RouteKey, method: string, path: string): void {
    request.socket.destroy();
    this.#answered({ key, method, path, status: 'dropped' });
  }

  #answered(request: AnsweredRequest): void {
    this.emit('request', request);
    this.emit('change');
  }
}

function messageOf(reply: Reply): string {
  const body = reply.body;
  if (typeof body === 'object' && body !== null && 'message' in body && typeof body.message === 'string') return body.message;
  return reply.text?.slice(0, 80) ?? '';
}
