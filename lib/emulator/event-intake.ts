/**
 * What the 0.8.7 api-service does with `POST /v1/event` (spec §7.2.5): check
 * the body against its schema, then build a new CloudEvent from it (new `id`
 * and `time`) — that new event, not the one posted, is what the rest of the
 * control plane sees.
 *
 * Schema violations are answered 422, as go-swagger does for a body that is
 * valid JSON but breaks the schema (`data in body is required`); JSON that
 * does not parse is a 400, decided before this module is reached. The spec
 * marks go-swagger's exact code and message unverified; go-swagger may put
 * its own validation code in `code`, the emulator puts the HTTP status.
 */
import { randomUUID } from 'node:crypto';
import { isRfc3339 } from '../cloudevents.ts';
import { isRecord } from '../json-object.ts';
import { KEPTN_SPEC_VERSION, type DatastoreEvent } from './event-model.ts';

export type Intake =
  | { readonly ok: true; readonly event: DatastoreEvent }
  | { readonly ok: false; readonly status: 422; readonly message: string };

/** Checks a posted body and re-creates it as the api-service would. */
export function takeInEvent(body: unknown, now: Date): Intake {
  if (!isRecord(body)) return refuse('body in body must be of type object');
  for (const field of ['type', 'source'] as const) {
    const value = body[field];
    if (value === undefined || value === null || value === '') return refuse(`${field} in body is required`);
    if (typeof value !== 'string') return refuse(`${field} in body must be of type string`);
  }
  if (body.data === undefined || body.data === null) return refuse('data in body is required');
  if (body.time !== undefined && (typeof body.time !== 'string' || !isRfc3339(body.time))) {
    return refuse(`time in body must be of type date-time: ${JSON.stringify(body.time)}`);
  }
  for (const field of ['shkeptncontext', 'triggeredid', 'id', 'specversion'] as const) {
    if (body[field] !== undefined && typeof body[field] !== 'string') return refuse(`${field} in body must be of type string`);
  }
  const triggeredid = typeof body.triggeredid === 'string' && body.triggeredid !== '' ? body.triggeredid : undefined;
  return {
    ok: true,
    event: {
      data: body.data,
      datacontenttype: 'application/json',
      id: randomUUID(),
      // The real api-service also turns a context that is not a UUID into a UUID
      // derived from it; the emulator keeps any context as given, so that tests
      // can choose readable ones.
      shkeptncontext: typeof body.shkeptncontext === 'string' && body.shkeptncontext !== '' ? body.shkeptncontext : randomUUID(),
      shkeptnspecversion: KEPTN_SPEC_VERSION,
      source: body.source as string,
      specversion: '1.0',
      time: now.toISOString(),
      ...(triggeredid !== undefined && { triggeredid }),
      type: body.type as string,
    },
  };
}

function refuse(message: string): Intake {
  return { ok: false, status: 422, message };
}
