/**
 * Which route a request is for. A route is a method, a path pattern and a
 * handler that turns a parsed request into a `Reply`; handlers never touch
 * sockets, so the server can delay, drop or replace any answer.
 *
 * Paths are matched the way the public Keptn API sees them: nginx (the 0.8.x
 * api-gateway) decodes the path once before the backend splits it into
 * segments, and the backend decodes each segment again. That is why a
 * configuration-service resource URI has to arrive as `helm%252Fvalues.yaml`
 * (spec §7.3.3), and why the emulator answers 404 to a proxy that forgot to
 * escape it twice.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Reply } from './json-http.ts';

/** Every route key; faults and request counters are per key. */
export const ROUTE_KEYS = [
  'poll', 'event', 'register', 'unregister', 'registrations', 'ping', 'subscriptions', 'log', 'datastore', 'proxy', 'inspect', 'trigger', 'oauth',
] as const;

/**
 * A short name for a group of routes:
 * `poll` GET …/event/triggered/{type}; `event` POST /v1/event;
 * `register` POST, `unregister` DELETE and `registrations` GET …/uniform/registration;
 * `ping` PUT …/registration/{id}/ping and `subscriptions` …/registration/{id}/subscription… (1.x mode);
 * `log` …/v1/log; `datastore` GET /mongodb-datastore/event;
 * `proxy` the routes that exist for the agent's API proxy tests (project, resources, echo);
 * `inspect` GET /emulator/…; `trigger` POST /emulator/trigger;
 * `oauth` the discovery document and token endpoint of the OAuth mode.
 */
export type RouteKey = typeof ROUTE_KEYS[number];

export interface RouteRequest {
  readonly method: string;
  /** The path exactly as it arrived, still percent-encoded, without the query. */
  readonly rawPath: string;
  /** The query exactly as it arrived, without `?`. */
  readonly rawQuery: string;
  readonly query: URLSearchParams;
  /** Pattern parameters, decoded. */
  readonly params: Readonly<Record<string, string>>;
  readonly headers: IncomingHttpHeaders;
  /** The parsed body, for routes that read JSON; otherwise undefined. */
  readonly body: unknown;
  /** The body as text (empty when the route reads none). */
  readonly text: string;
}

export interface Route {
  /** An HTTP method, or `*` for any. */
  readonly method: string;
  /**
   * Segments separated by `/`: literal text, `:name` for one segment, or a
   * final `*` for any number of further segments (none included).
   */
  readonly pattern: string;
  readonly key: RouteKey;
  /** Whether the `x-token` header must carry the configured token. */
  readonly auth: boolean;
  /** How the body is read: parsed as JSON, kept as text, or not at all. */
  readonly body: 'json' | 'text' | 'none';
  /** Media types accepted; any when absent. */
  readonly consumes?: readonly string[];
  readonly handle: (request: RouteRequest) => Reply;
}

export type Match =
  | { readonly kind: 'route'; readonly route: Route; readonly params: Readonly<Record<string, string>> }
  | { readonly kind: 'not-found' }
  | { readonly kind: 'wrong-method'; readonly allow: readonly string[] };

interface Compiled {
  readonly route: Route;
  readonly segments: readonly string[];
  readonly open: boolean;
}

export class Router {
  readonly #routes: readonly Compiled[];

  constructor(routes: readonly Route[]) {
    this.#routes = routes.map(compile);
  }

  /**
   * Finds the route for `method` and `gatewayPath` (the path after the
   * gateway's one decoding, see `gatewayPath`).
   */
  match(method: string, gatewayPath: string): Match {
    const segments = gatewayPath.split('/').slice(1);
    const allow: string[] = [];
    for (const compiled of this.#routes) {
      const params = matchSegments(compiled, segments);
      if (params === undefined) continue;
      if (compiled.route.method === '*' || compiled.route.method === method) return { kind: 'route', route: compiled.route, params };
      allow.push(compiled.route.method);
    }
    return allow.length > 0 ? { kind: 'wrong-method', allow } : { kind: 'not-found' };
  }
}

/**
 * The path as the backend behind the 0.8.x nginx gateway sees it: decoded
 * once, with an optional leading `/api` (the gateway's prefix) removed, so an
 * agent may be pointed at `http://host:port` or `http://host:port/api`.
 * Undefined when the path holds a malformed escape.
 */
export function gatewayPath(rawPath: string): string | undefined {
  const unprefixed = rawPath === '/api' || rawPath.startsWith('/api/') ? rawPath.slice('/api'.length) || '/' : rawPath;
  try {
    return decodeURIComponent(unprefixed);
  } catch {
    return undefined;
  }
}

function compile(route: Route): Compiled {
  const segments = route.pattern.split('/').slice(1);
  const open = segments.at(-1) === '*';
  return { route, segments: open ? segments.slice(0, -1) : segments, open };
}

function matchSegments(compiled: Compiled, segments: readonly string[]): Record<string, string> | undefined {
  const { segments: pattern, open } = compiled;
  if (open ? segments.length < pattern.length : segments.length !== pattern.length) return undefined;
  const params: Record<string, string> = {};
  for (const [index, expected] of pattern.entries()) {
    const actual = segments[index] ?? '';
    if (expected.startsWith(':')) {
      if (actual === '') return undefined;
      params[expected.slice(1)] = decodeSegment(actual);
    } else if (expected !== actual) {
      return undefined;
    }
  }
  return params;
}

/** The backend's own decoding of one segment; a stray `%` is taken literally, as Go's router does. */
function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}
