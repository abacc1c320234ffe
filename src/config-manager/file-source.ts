/**
 * The users document as a local file, watched so that an in-place rewrite and
 * an atomic replace (write a temp file, rename it over) are both seen. fs.watch
 * on the folder reacts at once; a stat poll catches what fs.watch misses
 * (bind mounts, symlink swaps as Kubernetes does them, network filesystems).
 */
import { watch, type FSWatcher } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import type { UsersSource } from './source.js';

export class FileUsersSource implements UsersSource {
  readonly name: string;

  constructor(
    private readonly path: string,
    private readonly pollMs = 1000,
  ) {
    this.name = path;
  }

  async read(): Promise<string> {
    try {
      return await readFile(this.path, 'utf8');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? String(error);
      throw new Error(`cannot be read (${code}): check the path in users.file`, { cause: error });
    }
  }

  watch(onChange: () => void): () => void {
    let watcher: FSWatcher | undefined;
    const name = basename(this.path);
    try {
      watcher = watch(dirname(this.path), { persistent: false }, (_event, file) => {
        if (file === null || file === name) onChange();
      });
      watcher.on('error', () => {
        watcher?.close();
        watcher = undefined;
      });
    } catch {
      // The folder may not exist yet; the poll below still notices the file when it appears.
    }
    let last = '';
    const poll = setInterval(() => {
      stat(this.path).then(
        (s) => `${s.ino} ${s.size} ${s.mtimeMs} ${s.ctimeMs}`,
        (error: NodeJS.ErrnoException) => `missing ${error.code}`,
      ).then((signature) => {
        // The first poll always reports: the file may have changed since the caller's first read.
        if (signature !== last) {
          last = signature;
          onChange();
        }
      });
    }, this.pollMs);
    poll.unref();
    return () => {
      clearInterval(poll);
      watcher?.close();
    };
  }
}
