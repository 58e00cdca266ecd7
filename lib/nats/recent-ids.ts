/**
 * The event ids a NATS receiver handled last, to hand each event to the
 * recipient once even when it arrives twice: through two subscribed subjects
 * that overlap (`sh.keptn.>` and an exact type), or published twice by a
 * sender that retried. Bounded: the oldest id is forgotten first.
 */
export class RecentIds {
  readonly #capacity: number;
  /** Insertion-ordered: the first key is the oldest. */
  readonly #ids = new Set<string>();

  constructor(capacity: number) {
    this.#capacity = capacity;
  }

  /** Records `id`; false when it was already recorded. */
  add(id: string): boolean {
    if (this.#ids.has(id)) return false;
    this.#ids.add(id);
    if (this.#ids.size > this.#capacity) this.#ids.delete(this.#ids.values().next().value!);
    return true;
  }

  /** Forgets `id`, so that its next arrival is handled (its dispatch failed). */
  delete(id: string): void {
    this.#ids.delete(id);
  }

  get size(): number {
    return this.#ids.size;
  }
}
