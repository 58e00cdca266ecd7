/**
 * Durations as operators write them: a bare number is seconds (the reference's
 * HTTP_POLLING_INTERVAL), otherwise one or more `<number><unit>` groups in Go's
 * style (`250ms`, `2s`, `1m30s`, `1.5h`).
 */
const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };
const BARE_SECONDS = /^\d+(\.\d+)?$/;
const GROUPS = /^(\d+(\.\d+)?(ms|s|m|h))+$/;
const GROUP = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;

/** Parses a duration to whole milliseconds; `undefined` when the text is not one. */
export function parseDuration(text: string): number | undefined {
  const value = text.trim();
  if (BARE_SECONDS.test(value)) return Math.round(Number(value) * 1_000);
  if (!GROUPS.test(value)) return undefined;
  let ms = 0;
  for (const [, amount, unit] of value.matchAll(GROUP)) ms += Number(amount) * (UNIT_MS[unit ?? ''] ?? 0);
  return Math.round(ms);
}

/** Formats milliseconds the way they are best read back: `250ms`, `10s`, `1m30s`, `24h`. */
export function formatDuration(ms: number): string {
  if (ms < 1_000 || ms % 1_000 !== 0) return `${ms}ms`;
  let rest = ms / 1_000;
  const h = Math.floor(rest / 3600);
  rest -= h * 3600;
  const m = Math.floor(rest / 60);
  const s = rest - m * 60;
  return `${h ? `${h}h` : ''}${m ? `${m}m` : ''}${s ? `${s}s` : ''}`;
}
