/**
 * Log ingestion as the 0.8.7 shipyard-controller does it (spec §8.4): a body
 * `{"logs":[{integrationid, message, time, shkeptncontext, task, triggeredid}]}`,
 * where an absent or zero `time` (Go's `0001-01-01T00:00:00Z`, which the Go
 * distributor always sends) is replaced by the time of receipt.
 */
import { isRfc3339 } from '../cloudevents.ts';
import { isRecord } from '../json-object.ts';
import type { LogEntry } from './state.ts';

export type LogsCheck = { readonly ok: true; readonly entries: readonly LogEntry[] } | { readonly ok: false; readonly message: string };

const FIELDS = ['integrationid', 'message', 'shkeptncontext', 'task', 'triggeredid'] as const;

/** Checks a log ingestion body; returns its entries with every field present and `time` stamped. */
export function checkLogs(body: unknown, now: Date): LogsCheck {
  if (!isRecord(body) || !Array.isArray(body.logs)) return { ok: false, message: 'the body must be {"logs":[…]}' };
  const entries: LogEntry[] = [];
  for (const [index, entry] of body.logs.entries()) {
    if (!isRecord(entry)) return { ok: false, message: `logs[${index}] must be a JSON object` };
    for (const field of FIELDS) {
      if (entry[field] !== undefined && typeof entry[field] !== 'string') return { ok: false, message: `logs[${index}].${field} must be a string` };
    }
    if (entry.time !== undefined && (typeof entry.time !== 'string' || !isRfc3339(entry.time))) {
      return { ok: false, message: `logs[${index}].time must be an RFC 3339 time` };
    }
    const text = (value: unknown): string => (typeof value === 'string' ? value : '');
    entries.push({
      integrationid: text(entry.integrationid),
      message: text(entry.message),
      time: isZeroTime(entry.time) ? now.toISOString() : text(entry.time),
      shkeptncontext: text(entry.shkeptncontext),
      task: text(entry.task),
      triggeredid: text(entry.triggeredid),
    });
  }
  return { ok: true, entries };
}

function isZeroTime(time: unknown): boolean {
  return time === undefined || (typeof time === 'string' && Date.parse(time) === Date.parse('0001-01-01T00:00:00Z'));
}
