/**
 * The users document as a local file, watched so that an in-place rewrite and
 * an atomic replace (write a temp file, rename it over) are both seen. fs.watch
 * on the folder reacts at once; a stat poll catches what fs.watch misses
 * (bind mounts, symlink swaps as Kubernetes does them, network filesystems).
 */
import { watch, type FSWatcher, type Stats } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { USERS_MAX_BYTES, type UsersSource } from './source.js';

export class FileUsersSource implements UsersSource {
  readonly name: string;

  constructor(
    private readonly path: string,
    private readonly pollMs = 1000,
    private readonly maxBytes = USERS_MAX_BYTES,
  ) {
    this.name = path;
  }

  /** The stat signature of what read() last read. */
  private readSignature: string | undefined;

  async read(): Promise<string> {
    return (await this.readBytes()).toString('utf8');
  }

  async readBytes(): Promise<Buffer> {
    let found: Bounded;
    try {
      found = await readAtMost(this.path, this.maxBytes, (signature) => (this.readSignature = signature));
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? String(error);
      throw new Error(`cannot be read (${code}): ${code === 'EACCES' || code === 'EPERM' ? notPermitted() : 'check the path in users.file'}`, { cause: error });
    }
    if ('over' in found) {
      const size = found.over === undefined ? '' : `${found.over} bytes, `;
      throw new Error(`is ${size}more than users.maxBytes (${this.maxBytes} bytes): check users.file or raise users.maxBytes`);
    }
    return found.bytes;
  }

  async changedSinceRead(): Promise<boolean> {
    return (await signatureOf(this.path)) !== this.readSignature;
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
      void signatureOf(this.path).then((signature) => {
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

/** The uid that needs read access: a root-owned 0600 file mounted into the image is the usual cause. */
function notPermitted(): string {
  const uid = process.getuid?.();
  const who = uid === undefined ? 'the user markmeter runs as' : `uid ${uid}`;
  return `markmeter runs as ${who} here (the image runs as the node user, uid 1000), and the file must be readable by that uid and its folders searchable: e.g. chmod a+r the file, or chown ${uid ?? 1000} it`;
}

/** What readAtMost found: the bytes, or that there are more than the bound (and how many, when the size says). */
type Bounded = { bytes: Buffer } | { over: number | undefined };

/**
 * The file's bytes, unless there are more than `maxBytes`. The size is checked
 * first, and the reading stops past the bound all the same: a device or a pipe
 * has no size, and a file may grow while it is read.
 */
async function readAtMost(path: string, maxBytes: number, opened: (signature: string) => void): Promise<Bounded> {
  const file = await open(path, 'r');
  try {
    const stats = await file.stat();
    opened(signature(stats));
    const { size } = stats;
    if (size > maxBytes) return { over: size };
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      // The size's worth and one byte more (to see the end), or pieces of 64 KiB when the size says nothing.
      const want = size > total ? size - total + 1 : 64 * 1024;
      const chunk = Buffer.allocUnsafe(Math.min(want, maxBytes + 1 - total));
      const { bytesRead } = await file.read(chunk, 0, chunk.length, null);
      if (bytesRead === 0) return { bytes: Buffer.concat(chunks, total) };
      total += bytesRead;
      if (total > maxBytes) return { over: undefined };
      chunks.push(chunk.subarray(0, bytesRead));
    }
  } finally {
    await file.close();
  }
}

/** What identifies a version of the file without reading it. */
function signature(s: Stats): string {
  return `${s.ino} ${s.size} ${s.mtimeMs} ${s.ctimeMs}`;
}

function signatureOf(path: string): Promise<string> {
  return stat(path).then(signature, (error: NodeJS.ErrnoException) => `missing ${error.code}`);
}
