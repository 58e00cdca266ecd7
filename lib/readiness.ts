/**
 * What `/ready` reports: a set of named conditions that parts of the agent
 * declare and update (the local server listens, a first poll completed, the
 * control plane accepts the token). Ready when every condition holds.
 */
export interface ReadinessReport {
  readonly ready: boolean;
  /** One line per condition that does not hold, e.g. `poller: no poll cycle completed yet`. */
  readonly notReady: readonly string[];
}

export class Readiness {
  readonly #pending = new Map<string, string>();

  /**
   * Declares a condition, not holding yet; returns its setter. `set(true)`
   * makes it hold, `set(false, why)` withdraws it with the reason shown in `/ready`.
   */
  declare(name: string, initialReason: string): (holds: boolean, reason?: string) => void {
    this.#pending.set(name, initialReason);
    return (holds, reason = initialReason) => {
      if (holds) this.#pending.delete(name);
      else this.#pending.set(name, reason);
    };
  }

  report(): ReadinessReport {
    const notReady = [...this.#pending].map(([name, reason]) => `${name}: ${reason}`);
    return { ready: notReady.length === 0, notReady };
  }
}
