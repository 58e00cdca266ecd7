/**
 * Reads what the recipient posts to the relay path: one CloudEvent, in
 * structured mode (`application/cloudevents+json`, or `application/json` with
 * `specversion` in the body) or binary mode (`ce-*` headers). It accepts only
 * what Keptn's `/v1/event` would accept, so nothing is queued here only to be
 * refused upstream and lost, and it says exactly what is wrong otherwise.
 *
 * What passes is relayed as the original JSON text, with two exceptions: a
 * missing `time` is filled in with the current time, and a binary-mode event
 * becomes the structured JSON built from its headers.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { CLOUDEVENTS_JSON, binaryToStructured, validateCloudEvent, type KeptnCloudEvent } from './cloudevents.ts';

/** A relayable event and the JSON text to send, or the answer for the client. */
export type RelayInput =
  | { readonly ok: true; readonly event: KeptnCloudEvent; readonly json: string; readonly mode: 'structured' | 'binary' }
  | { readonly ok: false; readonly status: 400 | 415; readonly message: string };

const STRUCTURED = CLOUDEVENTS_JSON;
const BATCH = 'application/cloudevents-batch+json';

/** Parses and validates one relay request body. `now` supplies the time filled into an event without one. */
export function parseRelayRequest(headers: IncomingHttpHeaders, body: Buffer, now: () => Date = () => new Date()): RelayInput {
  const contentType = headers['content-type'];
  const media = contentType === undefined ? '' : contentType.split(';', 1)[0]!.trim().toLowerCase();

  if (media === BATCH) return bad('batches of CloudEvents are not supported: post one event per request');
  if (media.startsWith('application/cloudevents')) {
    if (media !== STRUCTURED) return { ok: false, status: 415, message: `unsupported CloudEvents format ${media}: only ${STRUCTURED} is accepted` };
    return structured(body, now);
  }
  if (headers['ce-specversion'] !== undefined) return binary(headers, body, now);
  // The reference ignored Content-Type entirely; a request without one is read as JSON.
  if (media === 'application/json' || media === '') return structured(body, now);
  return {
    ok: false, status: 415,
    message: `unsupported Content-Type ${media}: send a structured CloudEvent (${STRUCTURED}, or application/json with "specversion") or a binary one (ce-* headers)`,
  };
}

function structured(body: Buffer, now: () => Date): RelayInput {
  const text = body.toString('utf8');
  if (text.trim() === '') return bad('the body is empty: expected one CloudEvent as JSON');
  let raw: unknown;
  try {
    raw = JSON.parse(text) as unknown;
  } catch (error) {
    return bad(`the body is not valid JSON (${error instanceof Error ? error.message : String(error)})`);
  }
  if (Array.isArray(raw)) return bad('batches of CloudEvents (JSON arrays) are not supported: post one event per request');
  return accept(raw, text, 'structured', now);
}

function binary(headers: IncomingHttpHeaders, body: Buffer, now: () => Date): RelayInput {
  const conversion = binaryToStructured(headers, body);
  if (!conversion.ok) return bad(`invalid binary-mode CloudEvent: ${conversion.reason}`);
  return accept(conversion.raw, undefined, 'binary', now);
}

/** Validates; fills a missing `time`; keeps the original text when nothing had to change. */
function accept(raw: unknown, text: string | undefined, mode: 'structured' | 'binary', now: () => Date): RelayInput {
  const validation = validateCloudEvent(raw, { requireData: true });
  if (!validation.ok) return bad(`invalid CloudEvent: ${validation.reason}`);
  let event = validation.event;
  let json = text;
  if (event.time === undefined) {
    event = { ...event, time: now().toISOString() };
    json = undefined;
  }
  // The outbox journal is line-oriented: a pretty-printed body is re-serialised onto one line.
  if (json === undefined || json.includes('\n') || json.includes('\r')) json = JSON.stringify(event);
  return { ok: true, event, json, mode };
}

function bad(message: string): RelayInput {
  return { ok: false, status: 400, message };
}
