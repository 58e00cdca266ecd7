/**
 * Keptn's offset pagination (shipyard-controller `common/pagination.go`):
 * `nextPageKey` is a decimal offset sent as a string, and `"0"` means there
 * is no further page. Optionally with the 0.8.x–1.x server's bug (spec
 * §4.8.3), so that a client's tolerance of it can be tested.
 */

export interface Page<T> {
  readonly items: readonly T[];
  /** The offset of the next page as a string; `"0"` when this was the last. */
  readonly nextPageKey: string;
}

export interface PaginateOptions {
  /**
   * Reproduce the shipyard-controller's bug: the page's range is computed
   * right, but its items are taken from index 0 on, so every page after the
   * first repeats the first items and the rest is never served.
   */
  readonly bug?: boolean;
}

/** One page of `all`, starting at `offset`. */
export function paginate<T>(all: readonly T[], pageSize: number, offset: number, { bug = false }: PaginateOptions = {}): Page<T> {
  const next = offset + pageSize;
  const range = offset < all.length ? all.slice(offset, Math.min(next, all.length)) : [];
  return {
    items: bug ? range.map((_, index) => all[index] as T) : range,
    nextPageKey: next < all.length ? String(next) : '0',
  };
}

/**
 * The offset in a `nextPageKey`, read as Go's `strconv.Atoi` reads it for
 * `Paginate`: anything that is not an integer counts as 0. May be negative;
 * the caller decides what to answer to that.
 */
export function parseOffset(nextPageKey: string | null): number {
  return nextPageKey !== null && /^[+-]?\d+$/.test(nextPageKey) ? Number.parseInt(nextPageKey, 10) : 0;
}

/** A `pageSize` query value: default when absent, undefined when it is not a positive integer. */
export function parsePageSize(value: string | null, fallback: number): number | undefined {
  if (value === null || value === '') return fallback;
  if (!/^\d+$/.test(value)) return undefined;
  const size = Number.parseInt(value, 10);
  return size >= 1 && Number.isSafeInteger(size) ? size : undefined;
}
