/**
 * The part of the Keptn 0.8.7 API the agent speaks, by backend behind the
 * public gateway: shipyard-controller (`/controlPlane`), api-service (`/v1`),
 * mongodb-datastore and configuration-service. Answers follow the wire
 * formats of the spec; where they knowingly differ, the comment says so.
 * In 1.x mode the uniform routes are those of `uniform-1x.ts`.
 */
import { takeInEvent } from './event-intake.ts';
import { isRecord } from '../json-object.ts';
import { type TriggerRequest, type TriggeredEvent } from './event-model.ts';
import { json, keptnError, type Reply } from './json-http.ts';
import { applyIncoming } from './lifecycle.ts';
import { checkLogs } from './log-entries.ts';
import { paginate, parseOffset, parsePageSize } from './pagination.ts';
import { checkRegistration, matchesRegistrationQuery } from './registration.ts';
import type { Route, RouteRequest } from './router.ts';
import type { ControlPlaneState, EventFilter, Integration, LogEntry, ReceivedEvent, Subscription } from './state.ts';
import { uniform1xRoutes } from './uniform-1x.ts';

/** Which control plane the emulator is: 0.8.7, or 1.x (0.9 – 1.4.5: subscriptions, heartbeat). */
export type EmulatedApiVersion = '0.8' | '1.x';

/** What happened, for the emulator's listeners and its printed lines. */
export interface Observer {
  received(received: ReceivedEvent): void;
  polled(type: string, events: readonly TriggeredEvent[]): void;
  registered(integration: Integration, isNew: boolean): void;
  unregistered(id: string): void;
  subscriptionChanged(integration: Integration, subscription: Subscription, change: 'added' | 'changed' | 'removed'): void;
  logged(entries: readonly LogEntry[]): void;
}

/** What the route handlers share. */
export interface RouteContext {
  readonly state: ControlPlaneState;
  readonly paginationBug: boolean;
  readonly apiVersion: EmulatedApiVersion;
  readonly now: () => Date;
  readonly observer: Observer;
  /** Starts a task: the one way a `.triggered` event is made, shared with `emulator.trigger()`. */
  readonly trigger: (request: TriggerRequest) => TriggeredEvent;
}

const DEFAULT_PAGE_SIZE = 20;
/** The mongodb-datastore's swagger bounds `pageSize` to 1…100. */
const DATASTORE_MAX_PAGE_SIZE = 100;

export function keptnRoutes(context: RouteContext): Route[] {
  const uniform: Route[] = context.apiVersion === '1.x' ? uniform1xRoutes(context)
    : [{ method: 'POST', pattern: '/controlPlane/v1/uniform/registration', key: 'register', auth: true, body: 'json', handle: (request) => register(context, request) }];
  return [
    ...uniform,
    { method: 'GET', pattern: '/controlPlane/v1/event/triggered/:type', key: 'poll', auth: true, body: 'none', handle: (request) => triggeredEvents(context, request) },
    { method: 'POST', pattern: '/v1/event', key: 'event', auth: true, body: 'json', consumes: ['application/json', 'application/cloudevents+json'], handle: (request) => postEvent(context, request) },
    { method: 'GET', pattern: '/controlPlane/v1/uniform/registration', key: 'registrations', auth: true, body: 'none', handle: (request) => registrations(context, request) },
    { method: 'DELETE', pattern: '/controlPlane/v1/uniform/registration/:id', key: 'unregister', auth: true, body: 'none', handle: (request) => unregister(context, request) },
    { method: 'POST', pattern: '/controlPlane/v1/log', key: 'log', auth: true, body: 'json', handle: (request) => postLogs(context, request) },
    { method: 'GET', pattern: '/controlPlane/v1/log', key: 'log', auth: true, body: 'none', handle: (request) => getLogs(context, request) },
    { method: 'GET', pattern: '/mongodb-datastore/event', key: 'datastore', auth: true, body: 'none', handle: (request) => datastoreEvents(context, request) },
    { method: 'GET', pattern: '/controlPlane/v1/project/:project', key: 'proxy', auth: true, body: 'none', handle: (request) => project(context, request) },
    { method: 'GET', pattern: RESOURCE, key: 'proxy', auth: true, body: 'none', handle: (request) => getResource(context, request) },
    { method: 'PUT', pattern: RESOURCE, key: 'proxy', auth: true, body: 'json', handle: (request) => putResource(context, request) },
  ];
}

const RESOURCE = '/configuration-service/v1/project/:project/stage/:stage/service/:service/resource/:resourceURI';

/**
 * `GET /controlPlane/v1/event/triggered/{type}` (spec §4.8): the open
 * `.triggered` events of exactly that type, newest first per project,
 * `{"events","nextPageKey","totalCount"}` with `totalCount` omitted when 0 and
 * `pageSize` never set. A bad `pageSize` is one clean 400 here; the real
 * server writes a 400 body and then the 200 body after it.
 */
function triggeredEvents({ state, paginationBug, observer }: RouteContext, request: RouteRequest): Reply {
  const pageSize = parsePageSize(request.query.get('pageSize'), DEFAULT_PAGE_SIZE);
  if (pageSize === undefined) return keptnError(400, `pageSize must be a positive integer, not "${request.query.get('pageSize')}"`);
  const offset = parseOffset(request.query.get('nextPageKey'));
  if (offset < 0) return keptnError(400, `nextPageKey must not be negative, not "${request.query.get('nextPageKey')}"`);
  const type = request.params.type ?? '';
  const project = queryValue(request.query, 'project');
  const events = state.findOpen({
    type,
    ...optional('project', project),
    ...optional('stage', queryValue(request.query, 'stage')),
    ...optional('service', queryValue(request.query, 'service')),
    ...optional('eventId', queryValue(request.query, 'eventID')),
  });
  // keptn/keptn#5132: a project's collection without a match is an error, not an empty list.
  if (project !== undefined && events.length === 0) return keptnError(500, 'no matching event found');
  const page = paginate(events, pageSize, offset, { bug: paginationBug });
  observer.polled(type, page.items);
  return json(200, { events: page.items, nextPageKey: page.nextPageKey, ...(events.length > 0 && { totalCount: events.length }) });
}

/**
 * `POST /v1/event` (the api-service, spec §7.2.5), then the
 * shipyard-controller's handling of the re-created event (§4.8.4), which is
 * done before answering instead of asynchronously.
 */
function postEvent({ state, now, observer }: RouteContext, request: RouteRequest): Reply {
  const time = now();
  const intake = takeInEvent(request.body, time);
  if (!intake.ok) return keptnError(intake.status, intake.message);
  const outcome = applyIncoming(state, intake.event, time);
  const received: ReceivedEvent = {
    event: request.body as ReceivedEvent['event'],
    stored: intake.event,
    keptnContext: intake.event.shkeptncontext,
    receivedAt: time.toISOString(),
    outcome,
  };
  state.addReceived(received);
  observer.received(received);
  return json(200, { keptnContext: received.keptnContext });
}

/** `POST /controlPlane/v1/uniform/registration` (spec §9.2–9.3): upsert under the derived id. */
function register({ state, now, observer }: RouteContext, request: RouteRequest): Reply {
  const check = checkRegistration(request.body, now());
  if (!check.ok) return keptnError(400, check.message);
  observer.registered(check.integration, state.register(check.integration));
  return json(200, { id: check.integration.id });
}

/** `GET /controlPlane/v1/uniform/registration` (spec §9.5): a JSON array. */
function registrations({ state }: RouteContext, request: RouteRequest): Reply {
  return json(200, state.integrations().filter((integration) => matchesRegistrationQuery(integration, request.query)));
}

/** `DELETE /controlPlane/v1/uniform/registration/{id}`: `{}`, or 404 for an unknown id. */
function unregister({ state, observer }: RouteContext, request: RouteRequest): Reply {
  const id = request.params.id ?? '';
  if (!state.unregister(id)) return keptnError(404, `no integration with id ${id}`);
  observer.unregistered(id);
  return json(200, {});
}

/** `POST /controlPlane/v1/log` (spec §8.4). */
function postLogs({ state, now, observer }: RouteContext, request: RouteRequest): Reply {
  const check = checkLogs(request.body, now());
  if (!check.ok) return keptnError(400, check.message);
  state.addLogs(check.entries);
  observer.logged(check.entries);
  return json(200, {});
}

/** `GET /controlPlane/v1/log?integrationId=`: unlike the event routes, the page keys here are numbers (spec §8.4). */
function getLogs({ state }: RouteContext, request: RouteRequest): Reply {
  const pageSize = parsePageSize(request.query.get('pageSize'), DEFAULT_PAGE_SIZE);
  if (pageSize === undefined) return keptnError(400, 'pageSize must be a positive integer');
  const integrationId = queryValue(request.query, 'integrationId');
  const logs = state.logs().filter((entry) => integrationId === undefined || entry.integrationid === integrationId);
  const page = paginate(logs, pageSize, Math.max(0, parseOffset(request.query.get('nextPageKey'))));
  return json(200, { logs: page.items, nextPageKey: Number(page.nextPageKey), pageSize: page.items.length, totalCount: logs.length });
}

/**
 * `GET /mongodb-datastore/event` (mongodb-datastore swagger `getEvents`, not
 * described in the spec): the events the control plane has seen, newest first,
 * filtered by `keptnContext`, `type`, `project`, `stage`, `service`, `source`;
 * `{"events","nextPageKey":"<n>","pageSize":n,"totalCount":n}`. Events posted
 * to `/v1/event` appear as the api-service re-created them (new id and time).
 */
function datastoreEvents({ state }: RouteContext, request: RouteRequest): Reply {
  const pageSize = parsePageSize(request.query.get('pageSize'), DEFAULT_PAGE_SIZE);
  if (pageSize === undefined || pageSize > DATASTORE_MAX_PAGE_SIZE) {
    return keptnError(400, `pageSize must be an integer from 1 to ${DATASTORE_MAX_PAGE_SIZE}`);
  }
  const filter: EventFilter = {
    ...optional('keptnContext', queryValue(request.query, 'keptnContext')),
    ...optional('type', queryValue(request.query, 'type')),
    ...optional('project', queryValue(request.query, 'project')),
    ...optional('stage', queryValue(request.query, 'stage')),
    ...optional('service', queryValue(request.query, 'service')),
    ...optional('source', queryValue(request.query, 'source')),
  };
  const events = state.datastore(filter).reverse();
  const page = paginate(events, pageSize, Math.max(0, parseOffset(request.query.get('nextPageKey'))));
  return json(200, { events: page.items, nextPageKey: page.nextPageKey, pageSize: page.items.length, totalCount: events.length });
}

/**
 * `GET /controlPlane/v1/project/{name}`: the stages and services that events
 * named, in a reduced form of the shipyard-controller's project. It exists so
 * that the agent's API proxy can be tested against a real answer.
 */
function project({ state }: RouteContext, request: RouteRequest): Reply {
  const name = request.params.project ?? '';
  const outline = state.project(name);
  if (outline === undefined) return keptnError(404, `Project not found: ${name}`);
  return json(200, { projectName: outline.projectName, shipyardVersion: 'spec.keptn.sh/0.2.0', stages: outline.stages });
}

/**
 * `GET …/resource/{resourceURI}` of the configuration-service, behind the
 * gateway: a URI with `/` in it only matches when it arrived escaped twice
 * (`helm%252Fvalues.yaml`, spec §7.3.3); escaped once, the gateway's decoding
 * turns it into more path segments and the answer is 404, as with Keptn.
 */
function getResource({ state }: RouteContext, request: RouteRequest): Reply {
  const resource = state.resource(resourcePlace(request));
  if (resource === undefined) return keptnError(404, 'Resource not found');
  return json(200, { resourceURI: resource.resourceURI, resourceContent: resource.resourceContent, metadata: { version: String(resource.version) } });
}

/** `PUT …/resource/{resourceURI}` with `{"resourceContent": "<base64>"}`: 201 `{"version"}`. */
function putResource({ state }: RouteContext, request: RouteRequest): Reply {
  const body = request.body;
  if (!isRecord(body) || typeof body.resourceContent !== 'string') return keptnError(400, 'the body must be {"resourceContent": "<base64>"}');
  const stored = state.putResource({ ...resourcePlace(request), resourceContent: body.resourceContent, rawPath: request.rawPath });
  return json(201, { version: String(stored.version) });
}

function resourcePlace(request: RouteRequest): { project: string; stage: string; service: string; resourceURI: string } {
  const { project = '', stage = '', service = '', resourceURI = '' } = request.params;
  return { project, stage, service, resourceURI };
}

/** A query value, undefined when absent or empty (as Go's handlers treat an empty one). */
export function queryValue(query: URLSearchParams, name: string): string | undefined {
  const value = query.get(name);
  return value === null || value === '' ? undefined : value;
}

/** `{[name]: value}` when there is a value, `{}` otherwise: for optional fields under exactOptionalPropertyTypes. */
export function optional<K extends string>(name: K, value: string | undefined): { [P in K]?: string } {
  return (value === undefined ? {} : { [name]: value }) as { [P in K]?: string };
}
