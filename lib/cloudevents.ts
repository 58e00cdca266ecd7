/**
 * Checks raw JSON against what a Keptn CloudEvent must be, ourselves: the
 * `cloudevents` SDK invents a missing `id`/`time` and rewrites `time`, which
 * would hide exactly the faults we have to report. What passes is relayed or
 * dispatched as the original JSON.
 *
 * The agent does not load the SDK at all: it would only give it the content
 * type below, for about 12 MiB of memory (bench/). The tests use the SDK to
 * check that what the agent sends is a CloudEvent by its reading.
 */

/** The content type of a structured-mode CloudEvent in JSON. */
export const CLOUDEVENTS_JSON = 'application/cloudevents+json';

/** A CloudEvent as JSON, with the attributes Keptn relies on known to be present. */
export interface KeptnCloudEvent {
  readonly specversion: string;
  readonly id: string;
  readonly source: string;
  readonly type: string;
  readonly time?: string;
  readonly shkeptncontext?: string;
  readonly triggeredid?: string;
  readonly data?: unknown;
  readonly [attribute: string]: unknown;
}

export type Validation = { readonly ok: true; readonly event: KeptnCloudEvent } | { readonly ok: false; readonly reason: string };

export interface ValidationRules {
  /** Keptn's `/v1/event` requires `data`; a polled event may lack it. */
  readonly requireData: boolean;
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/** True for an RFC 3339 timestamp such as `2021-07-26T10:15:30.123Z`. */
export function isRfc3339(text: string): boolean {
  return RFC3339.test(text) && !Number.isNaN(Date.parse(text));
}

/** Says what is wrong with `raw` as a Keptn CloudEvent, or hands it back typed. */
export function validateCloudEvent(raw: unknown, rules: ValidationRules): Validation {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return { ok: false, reason: 'a CloudEvent must be a JSON object' };
  }
  const event = raw as Record<string, unknown>;
  if (event.specversion !== '1.0' && event.specversion !== '0.3') {
    return { ok: false, reason: event.specversion === undefined ? 'missing "specversion"' : '"specversion" must be "1.0" or "0.3"' };
  }
  for (const attribute of ['id', 'source', 'type'] as const) {
    const value = event[attribute];
    if (value === undefined || value === null) return { ok: false, reason: `missing "${attribute}"` };
    if (typeof value !== 'string' || value === '') return { ok: false, reason: `"${attribute}" must be a non-empty string` };
  }
  if (event.time !== undefined && (typeof event.time !== 'string' || !isRfc3339(event.time))) {
    return { ok: false, reason: '"time" must be an RFC 3339 timestamp such as 2021-07-26T10:15:30.123Z' };
  }
  for (const attribute of ['shkeptncontext', 'triggeredid'] as const) {
    if (event[attribute] !== undefined && typeof event[attribute] !== 'string') {
      return { ok: false, reason: `"${attribute}" must be a string` };
    }
  }
  if (rules.requireData && (event.data === undefined || event.data === null)) return { ok: false, reason: 'missing "data"' };
  return { ok: true, event: event as KeptnCloudEvent };
}

/** The result of reading a binary-mode CloudEvent: the structured JSON object it stands for, or what is wrong. */
export type BinaryConversion = { readonly ok: true; readonly raw: Record<string, unknown> } | { readonly ok: false; readonly reason: string };

/** True for `application/json`, `text/json` and any `…+json` media type (parameters ignored). */
export function isJsonMediaType(contentType: string | undefined): boolean {
  if (contentType === undefined) return false;
  const media = contentType.split(';', 1)[0]!.trim().toLowerCase();
  return media === 'application/json' || media === 'text/json' || media.endsWith('+json');
}

/**
 * Turns a binary-mode CloudEvent (HTTP binding: every attribute in a `ce-*`
 * header, the data in the body, its media type in `Content-Type`) into the
 * structured JSON object it stands for. Header values are percent-decoded as
 * the binding says. The data is parsed when its media type is JSON (or absent
 * and the body parses), kept as text otherwise. Nothing is validated here
 * beyond what the conversion needs: `validateCloudEvent` does the rest.
 */
export function binaryToStructured(headers: Readonly<Record<string, string | readonly string[] | undefined>>, body: Buffer): BinaryConversion {
  const raw: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    if (!lower.startsWith('ce-') || value === undefined) continue;
    const attribute = lower.slice(3);
    if (attribute === '' || attribute === 'data' || attribute === 'data_base64') {
      return { ok: false, reason: `header "${name}" is not a CloudEvents attribute` };
    }
    const text = typeof value === 'string' ? value : value.join(',');
    try {
      raw[attribute] = decodeURIComponent(text);
    } catch {
      return { ok: false, reason: `header "${name}" is not validly percent-encoded` };
    }
  }
  const rawContentType = headers['content-type'];
  const contentType = Array.isArray(rawContentType) ? rawContentType[0] : rawContentType as string | undefined;
  if (contentType !== undefined && contentType !== '') raw.datacontenttype = contentType;
  if (body.length === 0) return { ok: true, raw };
  const text = body.toString('utf8');
  if (contentType === undefined || contentType === '' || isJsonMediaType(contentType)) {
    try {
      raw.data = JSON.parse(text) as unknown;
    } catch {
      if (isJsonMediaType(contentType)) return { ok: false, reason: `the body is not valid JSON, but Content-Type is ${contentType}` };
      raw.data = text;
    }
  } else {
    raw.data = text;
  }
  return { ok: true, raw };
}
