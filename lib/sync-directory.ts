/**
 * Makes a rename inside `dir` durable across a power loss, by syncing the
 * directory itself. Some platforms (Windows) cannot open a directory; there
 * the rename is still atomic, and as durable as it gets.
 */
import { open, type FileHandle } from 'node:fs/promises';

export async function syncDirectory(dir: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(dir, 'r');
    await handle.sync();
  } catch {
    // Not supported here: nothing more can be done.
  } finally {
    await handle?.close().catch(() => undefined);
  }
}
