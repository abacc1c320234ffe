/**
 * The config manager: loads the users document from its source, validates it,
 * and emits 'sync' with the new snapshot each time it changes. A document that
 * does not validate emits 'error' (once per distinct content, once per read outage) and the last good
 * snapshot stays in force. 'error' follows Node's rule: have a listener.
 */
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { UsersDocumentError, UsersSourceError } from '../errors.js';
import type { UsersSource } from './source.js';
import { mappingOf, markCount, type PreviousScan } from './document-scan.js';
import { parseUsersDocumentInSlices, type User, type UsersSnapshot } from './document.js';

/**
 * What the manager keeps of the last good snapshot: its users, and how many
 * pool entries it had. The entries themselves are not kept once a 'sync' has
 * handed them on (the mark map keeps their mapping): 100,000 of them are
 * megabytes.
 */
export interface UsersLoaded {
  source: string;
  users: User[];
  marks: { readonly length: number };
}

interface ConfigManagerEvents {
  sync: [UsersSnapshot];
  error: [UsersDocumentError | UsersSourceError];
}

export class ConfigManager extends EventEmitter<ConfigManagerEvents> {
  private snapshot: UsersLoaded | undefined;
  /**
   * The mapping the last snapshot's scan made, held weakly: the mark map in
   * force holds it while it is the one in force (then the next scan can keep
   * it when it is the same), and nothing keeps it once it is not.
   */
  private lastMapping: { byIp: WeakRef<ReadonlyMap<string, number>>; byMark: WeakRef<ReadonlyMap<number, number>> } | undefined;
  /** A digest of the document last acted on (accepted or rejected; its bytes when the source has them): the same again is no change. The document itself is megabytes. */
  private lastDigest: string | undefined;
  private readFailing = false;
  private stopWatching: (() => void) | undefined;
  private stopped = false;
  private running: Promise<void> | undefined;
  private pending = false;
  private debounce: NodeJS.Timeout | undefined;

  constructor(
    private readonly source: UsersSource,
    private readonly debounceMs = 50,
    /**
     * Validation; a large document is read in slices (see slices.ts), so that
     * readings run meanwhile. `previous` is what the last sync left (see
     * PreviousScan): it changes what a parse costs, never what it returns.
     */
    private readonly parse: (text: string, source: string, previous?: PreviousScan) => UsersSnapshot | Promise<UsersSnapshot> = (text, source, previous) =>
      parseUsersDocumentInSlices(text, source, undefined, previous),
  ) {
    super();
  }

  /** What is kept of the last good snapshot, if any. */
  current(): UsersLoaded | undefined {
    return this.snapshot;
  }

  /** Loads once (emitting 'sync' or 'error'), then watches the source. */
  async start(): Promise<void> {
    this.stopped = false;
    await this.reload();
    // stop() may have come while the first load ran (the agent does not wait for it).
    if (!this.stopped) this.stopWatching = this.source.watch(() => this.schedule());
  }

  stop(): void {
    this.stopped = true;
    this.stopWatching?.();
    this.stopWatching = undefined;
    clearTimeout(this.debounce);
  }

  /**
   * Before each reading: reads the source again when it can tell cheaply that
   * it changed since it was read (a local file). A source that cannot tell (a
   * URL) is never waited for: a slow server must not hold a reading back.
   */
  async refresh(): Promise<void> {
    if (!this.source.changedSinceRead) return;
    if (this.running) return this.running;
    if (await this.source.changedSinceRead()) await this.reload();
  }

  /** Reads the source now; concurrent calls are folded into one more read. */
  reload(): Promise<void> {
    if (this.running) {
      this.pending = true;
      return this.running;
    }
    this.running = this.readOnce().finally(() => {
      this.running = undefined;
      if (this.pending) {
        this.pending = false;
        void this.reload();
      }
    });
    return this.running;
  }

  private schedule(): void {
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => void this.reload(), this.debounceMs);
  }

  private async readOnce(): Promise<void> {
    let read: string | Buffer;
    try {
      read = this.source.readBytes ? await this.source.readBytes() : await this.source.read();
    } catch (error) {
      // One error per outage, not one per poll.
      if (!this.readFailing) {
        this.emit('error', new UsersSourceError(this.source.name, (error as Error).message, { cause: error }));
      }
      this.readFailing = true;
      return;
    }
    this.readFailing = false;
    // Hashing and decoding megabytes take milliseconds each: in turns of their own (a reading due meanwhile runs between).
    const large = read.length > 1_000_000;
    if (large) await nextTurn();
    // The bytes when the source has them (the same bytes, the same text): the same document again is no change, and is not decoded.
    const digest = createHash('sha256').update(read).digest('base64');
    if (digest === this.lastDigest) return;
    this.lastDigest = digest;
    if (large && typeof read !== 'string') await nextTurn();
    const text = typeof read === 'string' ? read : read.toString('utf8');
    let snapshot: UsersSnapshot;
    try {
      snapshot = await this.parse(text, this.source.name, this.previousScan());
    } catch (error) {
      // Anything else thrown is a bug the document found: still one error, never a crash of the reload.
      this.emit('error', error instanceof UsersDocumentError ? error : new UsersDocumentError(this.source.name, undefined, `could not be validated (${String(error)})`, { cause: error }));
      return;
    }
    this.snapshot = { source: snapshot.source, users: snapshot.users, marks: { length: markCount(snapshot) } };
    const scanned = mappingOf(snapshot);
    this.lastMapping = scanned && { byIp: new WeakRef(scanned.byIp), byMark: new WeakRef(scanned.byMark) };
    this.emit('sync', snapshot);
  }

  /** What the last good snapshot leaves for the next scan (its users, and its scan's mapping while it lives). */
  private previousScan(): PreviousScan | undefined {
    if (!this.snapshot) return undefined;
    const byIp = this.lastMapping?.byIp.deref();
    const byMark = this.lastMapping?.byMark.deref();
    // Both or neither: a scan takes a mapping as a whole.
    return byIp && byMark ? { users: this.snapshot.users, byIp, byMark } : { users: this.snapshot.users };
  }
}
