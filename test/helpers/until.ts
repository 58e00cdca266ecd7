/** Waits for a condition with a bound: the last resort when there is no event to await. */
import { setTimeout as delay } from 'node:timers/promises';

export async function until(predicate: () => boolean | Promise<boolean>, { timeout = 5_000, what = 'condition' } = {}): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await delay(5);
  }
}
