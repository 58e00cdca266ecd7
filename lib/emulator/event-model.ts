/**
 * Keptn events in the shapes the control plane keeps them: a polled
 * `.triggered` event in the shipyard-controller's model (spec §4.8.2), and
 * the datastore's copy of every event. Also how a task `.triggered` event is
 * made when the emulator starts a task.
 */
import { randomUUID } from 'node:crypto';
import { isRecord } from '../json-object.ts';

/**
 * An open `.triggered` event as a poll returns it: the shipyard-controller's
 * `models.Event`. It has no `datacontenttype` and no `shkeptnspecversion`
 * (spec §4.8.2, D24), and its keys come in Go's order.
 */
export interface TriggeredEvent {
  readonly data: Readonly<Record<string, unknown>>;
  readonly id: string;
  readonly shkeptncontext: string;
  readonly source: string;
  readonly specversion: string;
  readonly time: string;
  readonly triggeredid?: string;
  readonly type: string;
}

/** An event as the mongodb-datastore serves it: the CloudEvent that went over NATS. */
export interface DatastoreEvent {
  readonly data: unknown;
  readonly datacontenttype: string;
  readonly id: string;
  readonly shkeptncontext: string;
  readonly shkeptnspecversion: string;
  readonly source: string;
  readonly specversion: string;
  readonly time: string;
  readonly triggeredid?: string;
  readonly type: string;
}

/** What starting a task needs: the type, where it runs, and optionally the rest. */
export interface TriggerRequest {
  /** An event type ending in `.triggered`, e.g. `sh.keptn.event.deployment.triggered`. */
  readonly type: string;
  readonly project: string;
  readonly stage: string;
  readonly service: string;
  /** Further `data` fields; project, stage and service are merged over them. */
  readonly data?: Readonly<Record<string, unknown>>;
  /** Default `shipyard-controller`, as for every task the control plane starts. */
  readonly source?: string;
  /** Defaults: a fresh UUID for id and context, the current time. */
  readonly id?: string;
  readonly shkeptncontext?: string;
  readonly time?: string;
}

/** The source of every event the shipyard-controller sends itself. */
export const SHIPYARD_CONTROLLER = 'shipyard-controller';

/** The Keptn spec version the 0.8.x control plane stamps on the events it sends. */
export const KEPTN_SPEC_VERSION = '0.2.1';

/** The parts of a task event type `sh.keptn.event.<task>.<kind>`. */
export interface TaskType {
  readonly task: string;
  readonly kind: string;
}

/**
 * Reads a task event type as go-utils does (`IsTaskEventType`): exactly five
 * non-empty dot-separated parts. A sequence type (six parts) is no task type.
 */
export function parseTaskType(type: string): TaskType | undefined {
  const parts = type.split('.');
  const [sh, keptn, event, task, kind] = parts;
  if (parts.length !== 5 || sh !== 'sh' || keptn !== 'keptn' || event !== 'event' || !task || !kind) return undefined;
  return { task, kind };
}

/** `sh.keptn.event.<task>.<kind>`. */
export function taskEventType(task: string, kind: string): string {
  return `sh.keptn.event.${task}.${kind}`;
}

/** True for the type of an event that opens work: `sh.keptn.event.….triggered`. */
export function isTriggeredType(type: unknown): type is string {
  return typeof type === 'string' && /^sh\.keptn\.event\.[^.]+(\.[^.]+)*\.triggered$/.test(type);
}

/**
 * Says what is wrong with a trigger request, or hands it back typed. The same
 * check serves `POST /emulator/trigger` and `emulator.trigger()`.
 */
export function checkTriggerRequest(raw: unknown): { readonly ok: true; readonly request: TriggerRequest } | { readonly ok: false; readonly message: string } {
  if (!isRecord(raw)) return { ok: false, message: 'the body must be a JSON object: {"type","project","stage","service","data"?}' };
  if (!isTriggeredType(raw.type)) {
    return { ok: false, message: '"type" must be an event type ending in .triggered, e.g. sh.keptn.event.test.triggered' };
  }
  for (const field of ['project', 'stage', 'service'] as const) {
    if (typeof raw[field] !== 'string' || raw[field] === '') return { ok: false, message: `"${field}" must be a non-empty string` };
  }
  if (raw.data !== undefined && !isRecord(raw.data)) return { ok: false, message: '"data" must be a JSON object' };
  for (const field of ['source', 'id', 'shkeptncontext', 'time'] as const) {
    if (raw[field] !== undefined && (typeof raw[field] !== 'string' || raw[field] === '')) {
      return { ok: false, message: `"${field}" must be a non-empty string` };
    }
  }
  return { ok: true, request: raw as unknown as TriggerRequest };
}

/** The `.triggered` event the shipyard-controller writes to the open list when it starts a task. */
export function newTriggeredEvent(request: TriggerRequest, now: Date): TriggeredEvent {
  return toTriggeredEvent({
    data: { ...request.data, project: request.project, stage: request.stage, service: request.service },
    id: request.id ?? randomUUID(),
    shkeptncontext: request.shkeptncontext ?? randomUUID(),
    source: request.source ?? SHIPYARD_CONTROLLER,
    specversion: '1.0',
    time: request.time ?? now.toISOString(),
    type: request.type,
  }, now);
}

/**
 * Converts any CloudEvent-like object to the shipyard-controller's model:
 * attributes outside it (`datacontenttype`, `shkeptnspecversion`, other
 * extensions) are dropped, as they are in Keptn; missing ones get defaults.
 */
export function toTriggeredEvent(raw: Readonly<Record<string, unknown>>, now: Date): TriggeredEvent {
  const triggeredid = typeof raw.triggeredid === 'string' && raw.triggeredid !== '' ? raw.triggeredid : undefined;
  return {
    data: goOrder(isRecord(raw.data) ? raw.data : {}) as Record<string, unknown>,
    id: stringOr(raw.id, randomUUID()),
    shkeptncontext: stringOr(raw.shkeptncontext, randomUUID()),
    source: stringOr(raw.source, SHIPYARD_CONTROLLER),
    specversion: stringOr(raw.specversion, '1.0'),
    time: stringOr(raw.time, now.toISOString()),
    ...(triggeredid !== undefined && { triggeredid }),
    type: stringOr(raw.type, ''),
  };
}

/** The copy of a `.triggered` event that went over NATS and so into the datastore. */
export function datastoreCopy(event: TriggeredEvent): DatastoreEvent {
  return {
    data: event.data,
    datacontenttype: 'application/json',
    id: event.id,
    shkeptncontext: event.shkeptncontext,
    shkeptnspecversion: KEPTN_SPEC_VERSION,
    source: event.source,
    specversion: event.specversion,
    time: event.time,
    ...(event.triggeredid !== undefined && { triggeredid: event.triggeredid }),
    type: event.type,
  };
}

/** `data.project` / `stage` / `service` of an event, `''` when absent. */
export function placeOf(data: unknown): { readonly project: string; readonly stage: string; readonly service: string } {
  const record = isRecord(data) ? data : {};
  const text = (value: unknown): string => (typeof value === 'string' ? value : '');
  return { project: text(record.project), stage: text(record.stage), service: text(record.service) };
}

/** A copy of a JSON value with object keys sorted at every level, as Go's encoding/json writes maps. */
export function goOrder(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(goOrder);
  if (!isRecord(value)) return value;
  return Object.fromEntries(Object.keys(value).sort().map((key) => [key, goOrder(value[key])]));
}

function stringOr(value: unknown, fallback: string): string {
  return typeof value === 'string' && value !== '' ? value : fallback;
}
