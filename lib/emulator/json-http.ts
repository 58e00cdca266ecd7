/**
 * The HTTP edge of the emulator: answers as values, reading a bounded body,
 * writing an answer. Keptn's services answer errors as `{"code","message"}`
 * (go-utils `models.Error`), so that is the one error shape here.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

/** An answer, decided before anything is written. */
export interface Reply {
  readonly status: number;
  /** Sent as JSON unless `text` is given. */
  readonly body?: unknown;
  /** Sent verbatim (e.g. an HTML error page, as nginx answers). */
  readonly text?: string;
  readonly headers?: Readonly<Record<string, string>>;
}

const JSON_TYPE = 'application/json; charset=utf-8';

/** A JSON answer. */
export function json(status: number, body: unknown, headers: Readonly<Record<string, string>> = {}): Reply {
  return { status, body, headers };
}

/** An error answer as Keptn's services give it: `{"code":<status>,"message":…}`. */
export function keptnError(status: number, message: string, headers: Readonly<Record<string, string>> = {}): Reply {
  return { status, body: { code: status, message }, headers };
}

type BodyRead = { readonly ok: true; readonly text: string } | { readonly ok: false; readonly tooLarge: true };

/**
 * Reads the whole request body, up to `limit` bytes. Past the limit the rest
 * is read and thrown away rather than the socket cut, so that the client
 * gets to see the 413 instead of a connection reset.
 */
async function readBody(request: IncomingMessage, limit: number): Promise<BodyRead> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size <= limit) chunks.push(chunk);
  }
  return size > limit ? { ok: false, tooLarge: true } : { ok: true, text: Buffer.concat(chunks).toString('utf8') };
}

export interface BodyRules {
  /** Parsed as JSON, kept as text, or not read at all. */
  readonly as: 'json' | 'text' | 'none';
  /** Media types accepted (415 otherwise); any when absent. */
  readonly consumes: readonly string[] | undefined;
  /** Bytes; 413 beyond. */
  readonly limit: number;
}

/**
 * The body as a route wants it — `body` parsed (undefined when empty or not
 * JSON-read) and `text` as sent — or the error answer: 415, 413, or 400 for
 * JSON that does not parse.
 */
export async function readRequestBody(request: IncomingMessage, rules: BodyRules): Promise<{ body: unknown; text: string } | Reply> {
  if (rules.as === 'none') return { body: undefined, text: '' };
  if (rules.consumes !== undefined && !rules.consumes.includes(mediaType(request.headers['content-type']))) {
    return keptnError(415, `unsupported media type "${request.headers['content-type'] ?? ''}"; use ${rules.consumes.join(' or ')}`);
  }
  const read = await readBody(request, rules.limit);
  if (!read.ok) return keptnError(413, `the body is larger than ${rules.limit} bytes`);
  if (rules.as === 'text' || read.text.trim() === '') return { body: undefined, text: read.text };
  try {
    return { body: JSON.parse(read.text) as unknown, text: read.text };
  } catch (error) {
    return keptnError(400, `the body is not valid JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/** Writes `reply`, unless the client has gone already. */
export function send(response: ServerResponse, reply: Reply): void {
  if (response.destroyed || response.headersSent) return;
  const isText = reply.text !== undefined;
  const payload = isText ? reply.text ?? '' : JSON.stringify(reply.body ?? {});
  response.writeHead(reply.status, {
    'content-type': isText ? 'text/plain; charset=utf-8' : JSON_TYPE,
    'content-length': Buffer.byteLength(payload),
    ...reply.headers,
  });
  response.end(payload);
}

/** The media type of a request without its parameters, lower-cased (`''` when absent). */
function mediaType(contentType: string | undefined): string {
  return (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
}
