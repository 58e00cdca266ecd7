/**
 * The shipyard-controller's rules for the open list (spec §4.8.4), applied at
 * once rather than after its asynchronous lookups (it retries 30 × 2 s):
 *
 * - a `.triggered` event is open from the moment the task starts;
 * - a `.started` counts only if an open `.triggered` of the same task has
 *   `id == triggeredid`, in the project named by the `.started`'s data;
 * - a `.finished` needs a `.started` of the same run, else it is rejected
 *   and the task stays open for ever; otherwise the `.started` events from
 *   the same source are deleted, and the `.triggered` event is closed only if
 *   exactly one `.started` had been found — with several services on one
 *   task, the last to finish closes it;
 * - events from `shipyard-controller` itself are ignored by the `.triggered`
 *   and `.finished` handlers (the spec names those two, not `.started`).
 */
import { isRecord } from '../json-object.ts';
import {
  SHIPYARD_CONTROLLER, datastoreCopy, isTriggeredType, parseTaskType, placeOf, taskEventType, toTriggeredEvent,
  type DatastoreEvent, type TriggeredEvent,
} from './event-model.ts';
import type { ControlPlaneState } from './state.ts';

/** What the control plane made of an incoming event. */
export type Outcome =
  /** A `.triggered` event is now open. */
  | { readonly kind: 'opened'; readonly triggeredId: string }
  /** A `.started` was accepted for this open `.triggered` event. */
  | { readonly kind: 'started'; readonly triggeredId: string }
  /** The `.finished` closed the `.triggered` event: pollers no longer see it. */
  | { readonly kind: 'closed'; readonly triggeredId: string }
  /** The `.finished` was accepted, but the `.triggered` event stays open: `remaining` `.started` events of other sources. */
  | { readonly kind: 'waiting'; readonly triggeredId: string; readonly remaining: number }
  /** The control plane refused it: the reason says why (the real one only logs this). */
  | { readonly kind: 'rejected'; readonly reason: string }
  /** A handler skipped it on purpose. */
  | { readonly kind: 'ignored'; readonly reason: string }
  /** Stored; no rule concerns it (`.status.changed`, sequence `.finished`, …). */
  | { readonly kind: 'recorded' };

/** Starts a task: the `.triggered` event joins the open list and, as sent over NATS, the datastore. */
export function openTask(state: ControlPlaneState, event: TriggeredEvent): void {
  state.open(event);
  state.addToDatastore(datastoreCopy(event));
}

/** Applies an event posted to the api-service (already re-created by it) to the open list. */
export function applyIncoming(state: ControlPlaneState, event: DatastoreEvent, now: Date): Outcome {
  state.addToDatastore(event);
  if (isTriggeredType(event.type)) return onTriggered(state, event, now);
  const taskType = parseTaskType(event.type);
  if (taskType?.kind === 'started') return onStarted(state, event, taskType.task);
  if (taskType?.kind === 'finished') return onFinished(state, event, taskType.task);
  return { kind: 'recorded' };
}

function onTriggered(state: ControlPlaneState, event: DatastoreEvent, now: Date): Outcome {
  if (event.source === SHIPYARD_CONTROLLER) return { kind: 'ignored', reason: `the .triggered handler ignores events from ${SHIPYARD_CONTROLLER}` };
  if (!isRecord(event.data)) return { kind: 'rejected', reason: 'the data of a .triggered event must be a JSON object' };
  state.open(toTriggeredEvent({ ...event }, now));
  return { kind: 'opened', triggeredId: event.id };
}

function onStarted(state: ControlPlaneState, event: DatastoreEvent, task: string): Outcome {
  const { project } = placeOf(event.data);
  const triggeredId = event.triggeredid ?? '';
  const triggered = state.findOpen({ project, type: taskEventType(task, 'triggered'), eventId: triggeredId });
  if (triggered.length === 0) {
    return { kind: 'rejected', reason: `no open ${taskEventType(task, 'triggered')} with id "${triggeredId}" in project "${project}"` };
  }
  state.addStarted({ project, task, triggeredId, source: event.source, eventId: event.id });
  return { kind: 'started', triggeredId };
}

function onFinished(state: ControlPlaneState, event: DatastoreEvent, task: string): Outcome {
  if (event.source === SHIPYARD_CONTROLLER) return { kind: 'ignored', reason: `the .finished handler ignores events from ${SHIPYARD_CONTROLLER}` };
  const { project } = placeOf(event.data);
  const triggeredId = event.triggeredid ?? '';
  const started = state.startedFor(project, task, triggeredId);
  if (started.length === 0) {
    return { kind: 'rejected', reason: `no ${taskEventType(task, 'started')} for triggered id "${triggeredId}" in project "${project}": the task stays open` };
  }
  const removed = state.removeStarted(project, task, triggeredId, event.source);
  if (started.length !== 1) return { kind: 'waiting', triggeredId, remaining: started.length - removed };
  state.close(project, triggeredId);
  return { kind: 'closed', triggeredId };
}
