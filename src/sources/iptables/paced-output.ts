/**
 * Where the save command writes its output: one end of a UNIX socket pair
 * made for the reading, whose other end is read into one reused 1 MiB buffer
 * at most every PACE_MS.
 *
 * iptables-save writes 4 KiB at a time. Read through a pipe as the data comes,
 * that woke the agent about 3,000 times per 12 MB dump: about 50 ms of the
 * agent's CPU per reading, and 20 ms more of the save command's (each wake-up
 * is a switch for both). Paced, each read takes what the socket's buffer
 * (about 200 KiB) has gathered: about 70 reads, and the save command is no
 * slower (it writes while the agent waits). Node makes no socket pairs, so
 * the pair is a listener's one connection, on a path in a new directory only
 * the agent's user can enter, both removed as soon as the connection is made.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** How long the reader waits between reads: the socket gathers about 200 KiB meanwhile. */
export const PACE_MS = 2;
const BUFFER_BYTES = 1 << 20;

export interface PacedOutput {
  /** The end to give the program as its stdout (the agent's copy is closed when the program has exited). */
  writer: Socket;
  /** Each piece read; `chunk` is a view of a reused buffer, to be used at once. */
  onData: (chunk: Buffer) => void;
  /** Resolves when the output has ended (every writer closed) or the reader was closed. */
  ended: Promise<void>;
  close(): void;
}

/**
 * Read buffers of closed pairs, for the next ones: a buffer made per reading
 * is a megabyte outside V8's heap that V8 counts toward its next full collection.
 */
const spareBuffers: Buffer[] = [];
/** A reading runs its IPv4 and IPv6 save commands at once. */
const SPARE_BUFFERS = 2;

/** Directories of pairs being made: removed at exit too, should the process end meanwhile (process.exit). */
const making = new Set<string>();
let exitHooked = false;

/** A new pair for one reading; rejects when one cannot be made (then read through a pipe). */
export async function openPacedOutput(): Promise<PacedOutput> {
  if (!exitHooked) {
    exitHooked = true;
    process.once('exit', () => making.forEach((dir) => rmSync(dir, { recursive: true, force: true })));
  }
  const dir = mkdtempSync(join(tmpdir(), 'markmeter-'));
  making.add(dir);
  const path = join(dir, 'output.sock');
  const server = createServer({ pauseOnConnect: true });
  try {
    await listen(server, path);
    const accepted = new Promise<Socket>((resolve, reject) => {
      server.once('connection', resolve);
      server.once('error', reject);
    });
    const buffer = spareBuffers.pop() ?? Buffer.allocUnsafe(BUFFER_BYTES);
    let timer: NodeJS.Timeout | undefined;
    const output: PacedOutput = {
      writer: undefined as unknown as Socket,
      onData: () => {},
      ended: undefined as unknown as Promise<void>,
      close: () => {
        clearTimeout(timer);
        reader.destroy();
        output.writer?.destroy();
      },
    };
    const reader: Socket = createConnection({
      path,
      onread: {
        buffer,
        callback: (bytes: number) => {
          output.onData(buffer.subarray(0, bytes));
          // Paused, and read again a moment later: the writer fills the socket meanwhile.
          if (!reader.destroyed) timer = setTimeout(() => reader.destroyed || reader.resume(), PACE_MS);
          return false;
        },
      },
    });
    output.ended = new Promise<void>((resolve) => {
      reader.once('end', () => {
        clearTimeout(timer);
        reader.destroy();
      });
      reader.once('close', () => {
        if (spareBuffers.length < SPARE_BUFFERS) spareBuffers.push(buffer);
        resolve();
      });
    });
    await new Promise<void>((resolve, reject) => {
      reader.once('connect', resolve);
      reader.once('error', reject);
    });
    reader.on('error', () => {}); // after the connection, an error ends the output like a close
    output.writer = await accepted;
    return output;
  } finally {
    // One connection per pair: the path (and its directory) are gone before the program starts.
    server.close();
    rmSync(dir, { recursive: true, force: true });
    making.delete(dir);
  }
}

function listen(server: Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
