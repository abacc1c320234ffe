/**
 * A tiny OTLP/HTTP metrics receiver for tests (node:http): accepts POST /v1/metrics with
 * Content-Type application/json (the OTLP JSON encoding of @opentelemetry/exporter-metrics-otlp-http)
 * or application/x-protobuf (exporter-metrics-otlp-proto; decoded into the JSON shape by
 * otlp-protobuf.ts), gzip and deflate content-encoding too, answers 200 `{}` and records every
 * request body. Other content types get 415, undecodable bodies 400, other paths 404.
 *
 * Two ways to run it:
 *
 *   startReceiver({host?, port?}): Promise<InProcessReceiver>
 *       in the test process, on 127.0.0.1 (port 0 = any free one)
 *   NamespacedReceiver.start(lab, ns = 'gw', {host?, port?}): Promise<NamespacedReceiver>
 *       as its own program inside a lab namespace (the agent under test runs in the gw namespace,
 *       whose loopback is not the test's), read through the child's stdout pipe; lab.destroy() ends it
 *   NamespacedReceiver.start(): the same program as a plain child in the host's namespace (no root
 *       needed); stop() ends it
 *
 * Both give the same client API (ReceiverBase):
 *   url / metricsUrl     `http://127.0.0.1:PORT` (for OTEL_EXPORTER_OTLP_ENDPOINT) / url + '/v1/metrics'
 *                        (for the exporter's `url` option and OTEL_EXPORTER_OTLP_METRICS_ENDPOINT)
 *   requests             every accepted request in arrival order: an OtlpPoint[] (flattened, int64
 *                        exact in `exact`, see otlp.ts) with {seq, receivedAt, encoding ('json' |
 *                        'protobuf'), contentEncoding, bytes, raw, body}
 *   encodings            Set of the encodings seen ('json', 'protobuf')
 *   refused              how many requests were answered with a forced status (setStatus)
 *   rejected             [{status, error}] of requests refused as malformed (415 / 400)
 *   waitFor(predicate(receiver) => boolean, timeoutMs = 10000, describe?): Promise<void>
 *                        re-checks on every request; on timeout throws with describe() and the last points
 *   waitForRequests(n, timeoutMs?)                 until at least n requests were accepted
 *   latestPoint(metric, attrs?, {subset?})         the series' point in the latest request carrying it
 *   latestExact(metric, attrs?)  -> bigint | number | undefined   (bigint for asInt)
 *   latest(metric, attrs?)       -> number | undefined            (throws if not exact as a number)
 *   seriesKeys(metric?) / clear()
 *   setStatus(status, {forMs?, count?}): Promise<void>
 *                        answer `status` (e.g. 503: the collector is down) from now on, for forMs
 *                        ms, or for the next count requests; setStatus(200) heals at once
 *   stopListening() / startListening(): Promise<void>   close the port (connections refused, open
 *                        keep-alive sockets dropped) and listen again on the SAME port
 *   stop(): Promise<void>
 *
 * The standalone program (this file run directly):
 *   ip netns exec <ns> node --import tsx test/lab/otlp-receiver.ts [--port 0] [--host 127.0.0.1]
 * prints one JSON line per event on stdout:
 *   {"listening":PORT}                                   once, when ready
 *   {"seq":N,"receivedAt":MS,"encoding":"json"|"protobuf","contentEncoding":null|"gzip","bytes":B,"body":<body>}
 *                        (body: a JSON request verbatim, a protobuf one decoded, int64 as strings)
 *   {"seq":N,"refused":503}                              answered with the forced status
 *   {"seq":N,"rejected":415,"error":"..."}               malformed request
 *   {"ack":ID,"ok":true,"port":PORT} | {"ack":ID,"ok":false,"error":"..."}   reply to a command
 * and takes JSON commands on stdin, one a line: {"id":1,"cmd":"status","status":503,"forMs":2000,"count":3},
 * {"id":2,"cmd":"close"}, {"id":3,"cmd":"listen"}, {"id":4,"cmd":"exit"}; the plain line `status 503`
 * works too (no ack). It exits when stdin closes (its parent is gone) or on SIGTERM.
 * The body is written verbatim (not re-serialized) so int64 literals above 2^53 stay exact.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { realpathSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { gunzipSync, inflateSync } from 'node:zlib';
import { spawn, type ChildProcess } from 'node:child_process';
import { endProcess, type Lab, type Role } from './netns.js';
import { decodeMetricsRequest } from './otlp-protobuf.js';
import { flattenRequest, latestPoint, seriesKeys, toSafeNumber, type MatchOptions, type OtlpPoint } from './otlp.js';

const MAX_BODY = 64 << 20;

export interface StatusOptions {
  /** Only for this many ms, then back to 200. */
  forMs?: number;
  /** Only for the next `count` requests, then back to 200. */
  count?: number;
}

export type Encoding = 'json' | 'protobuf';

interface Accepted {
  seq: number;
  receivedAt: number;
  encoding: Encoding;
  contentEncoding: string | null;
  /** Bytes of the body after decompression. */
  bytes: number;
  /** The body as OTLP JSON text (a JSON request verbatim, a protobuf one decoded). */
  raw: string;
}

interface CoreEvents {
  accepted(e: Accepted): void;
  refused(e: { seq: number; status: number }): void;
  rejected(e: { seq: number; status: number; error: string }): void;
}

/** The HTTP side, shared by the in-process receiver and the standalone program. */
class ReceiverCore {
  private server: Server | undefined;
  private status = 200;
  private statusUntil = Infinity;
  private statusLeft = Infinity;
  private seq = 0;
  port = 0;

  constructor(
    readonly host: string,
    private readonly events: CoreEvents,
  ) {}

  setStatus(status: number, options: StatusOptions = {}): void {
    if (!Number.isInteger(status) || status < 200 || status > 599) throw new Error(`bad status ${status}`);
    this.status = status;
    this.statusUntil = options.forMs !== undefined ? Date.now() + options.forMs : Infinity;
    this.statusLeft = options.count ?? Infinity;
  }

  private forcedStatus(): number | undefined {
    if (this.status === 200) return undefined;
    if (Date.now() >= this.statusUntil || this.statusLeft <= 0) {
      this.status = 200;
      return undefined;
    }
    this.statusLeft -= 1;
    return this.status;
  }

  /** Listens on `port` (0: a free one; after close(), the same port as before). */
  async listen(port = this.port): Promise<number> {
    if (this.server) return this.port;
    const server = createServer((req, res) => this.handle(req, res));
    server.keepAliveTimeout = 1000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, this.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
    return this.port;
  }

  /** Stops listening and drops open connections (keep-alive ones too). */
  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooBig = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY) tooBig = true;
      else chunks.push(chunk);
    });
    req.on('error', () => undefined);
    req.on('end', () => {
      const path = (req.url ?? '').split('?')[0];
      if (req.method !== 'POST' || path !== '/v1/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('only POST /v1/metrics\n');
        return;
      }
      const seq = ++this.seq;
      const reject = (status: number, error: string) => {
        this.events.rejected({ seq, status, error });
        res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ code: 3, message: error }));
      };
      const forced = this.forcedStatus();
      if (forced !== undefined) {
        this.events.refused({ seq, status: forced });
        res.writeHead(forced, { 'content-type': 'application/json' }).end('{}');
        return;
      }
      if (tooBig) return reject(413, `body over ${MAX_BODY} bytes`);
      const type = String(req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
      const format: Encoding | undefined = type === 'application/json' ? 'json' : type === 'application/x-protobuf' ? 'protobuf' : undefined;
      if (!format) return reject(415, `content-type ${type || '(none)'}: only application/json and application/x-protobuf (OTLP) are accepted`);
      const encoding = String(req.headers['content-encoding'] ?? '').trim().toLowerCase() || null;
      let raw: Buffer = Buffer.concat(chunks);
      try {
        if (encoding === 'gzip') raw = gunzipSync(raw);
        else if (encoding === 'deflate') raw = inflateSync(raw);
        else if (encoding !== null && encoding !== 'identity') return reject(415, `content-encoding ${encoding} not supported`);
      } catch (error) {
        return reject(400, `cannot decode ${encoding} body: ${(error as Error).message}`);
      }
      let text: string;
      try {
        if (format === 'protobuf') {
          text = JSON.stringify(decodeMetricsRequest(raw));
        } else {
          text = raw.toString('utf8');
          JSON.parse(text);
        }
      } catch (error) {
        return reject(400, `body is not OTLP ${format}: ${(error as Error).message}`);
      }
      this.events.accepted({ seq, receivedAt: Date.now(), encoding: format, contentEncoding: encoding, bytes: raw.length, raw: text });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  }
}

/** One accepted export request: its flattened points, plus where it came from. */
export type ReceivedRequest = OtlpPoint[] & {
  readonly seq: number;
  readonly receivedAt: number;
  readonly encoding: Encoding;
  readonly contentEncoding: string | null;
  /** Bytes of the body on the wire, after decompression. */
  readonly bytes: number;
  /** The body as OTLP JSON text (JSON: as received, after decompression; protobuf: decoded). */
  readonly raw: string;
  /** The body as JSON.parse gives it (int64 numbers above 2^53 rounded: use the points or raw). */
  readonly body: unknown;
};

/** The client API common to both receivers. */
export abstract class ReceiverBase {
  readonly requests: ReceivedRequest[] = [];
  /** The encodings the accepted requests came in. */
  readonly encodings = new Set<Encoding>();
  refused = 0;
  readonly rejected: { seq: number; status: number; error: string }[] = [];
  protected readonly waiters = new Set<() => void>();
  /** Set when the receiver can no longer receive (its process died); waiters fail with it. */
  protected broken: Error | undefined;

  abstract readonly host: string;
  abstract get port(): number;

  /** Base URL, for OTEL_EXPORTER_OTLP_ENDPOINT (the exporter appends /v1/metrics). */
  get url(): string {
    const host = this.host.includes(':') ? `[${this.host}]` : this.host;
    return `http://${host}:${this.port}`;
  }

  /** Full metrics URL, for the exporter's `url` option or OTEL_EXPORTER_OTLP_METRICS_ENDPOINT. */
  get metricsUrl(): string {
    return `${this.url}/v1/metrics`;
  }

  abstract setStatus(status: number, options?: StatusOptions): Promise<void>;
  abstract stopListening(): Promise<void>;
  abstract startListening(): Promise<void>;
  abstract stop(): Promise<void>;

  protected accept(e: Accepted): void {
    let points: OtlpPoint[];
    let body: unknown;
    try {
      points = flattenRequest(e.raw);
      body = JSON.parse(e.raw);
    } catch (error) {
      this.rejected.push({ seq: e.seq, status: 200, error: `accepted, but not a valid OTLP metrics body: ${(error as Error).message}` });
      this.wake();
      return;
    }
    this.encodings.add(e.encoding);
    this.requests.push(
      Object.assign(points, { seq: e.seq, receivedAt: e.receivedAt, encoding: e.encoding, contentEncoding: e.contentEncoding, bytes: e.bytes, raw: e.raw, body }),
    );
    this.wake();
  }

  protected wake(): void {
    for (const wake of [...this.waiters]) wake();
  }

  /**
   * Resolves once `predicate(this)` is true; it is re-checked on every request (accepted, refused or
   * rejected). On timeout (or when the receiver died) rejects with describe() and the latest points.
   */
  async waitFor(predicate: (receiver: this) => boolean, timeoutMs = 10000, describe?: () => string): Promise<void> {
    if (predicate(this)) return;
    if (this.broken) throw this.broken;
    await new Promise<void>((resolve, reject) => {
      const done = (error?: Error) => {
        clearTimeout(timer);
        this.waiters.delete(wake);
        if (error) reject(error);
        else resolve();
      };
      const explain = () =>
        `${describe ? describe() : 'condition not met'}\n(${this.requests.length} requests, ${this.refused} refused, ${this.rejected.length} rejected; latest points: ${summarize(this.requests.at(-1))})`;
      const timer = setTimeout(() => done(new Error(`timed out after ${timeoutMs} ms: ${explain()}`)), timeoutMs);
      const wake = () => {
        try {
          if (predicate(this)) return done();
        } catch (error) {
          return done(error as Error);
        }
        if (this.broken) done(new Error(`${this.broken.message}: ${explain()}`));
      };
      this.waiters.add(wake);
    });
  }

  /** Until at least `n` requests were accepted in all. */
  waitForRequests(n: number, timeoutMs = 10000): Promise<void> {
    return this.waitFor((r) => r.requests.length >= n, timeoutMs, () => `waiting for ${n} requests`);
  }

  latestPoint(metric: string, attrs?: Record<string, string>, options?: MatchOptions): OtlpPoint | undefined {
    return latestPoint(this.requests, metric, attrs, options);
  }

  /** The exact value: bigint for asInt, number for asDouble. */
  latestExact(metric: string, attrs?: Record<string, string>, options?: MatchOptions): bigint | number | undefined {
    return this.latestPoint(metric, attrs, options)?.exact;
  }

  /** The value as a number (throws if it is not exactly representable). */
  latest(metric: string, attrs?: Record<string, string>, options?: MatchOptions): number | undefined {
    const v = this.latestExact(metric, attrs, options);
    return v === undefined ? undefined : toSafeNumber(v);
  }

  seriesKeys(metric?: string): string[] {
    return seriesKeys(this.requests, metric);
  }

  /** Forgets what was recorded so far. */
  clear(): void {
    this.requests.length = 0;
    this.rejected.length = 0;
    this.encodings.clear();
    this.refused = 0;
  }
}

function summarize(points: readonly OtlpPoint[] | undefined): string {
  if (!points) return '(none)';
  const text = points.map((p) => `${p.metric}${JSON.stringify(p.attributes)}=${p.exact}`).join(' ');
  return text.length > 2000 ? `${text.slice(0, 2000)}...` : text;
}

/** The receiver in the test process. */
export class InProcessReceiver extends ReceiverBase {
  private readonly core: ReceiverCore;

  constructor(readonly host: string) {
    super();
    this.core = new ReceiverCore(host, {
      accepted: (e) => this.accept(e),
      refused: () => {
        this.refused += 1;
        this.wake();
      },
      rejected: (e) => {
        this.rejected.push(e);
        this.wake();
      },
    });
  }

  get port(): number {
    return this.core.port;
  }

  async listen(port: number): Promise<void> {
    await this.core.listen(port);
  }

  async setStatus(status: number, options?: StatusOptions): Promise<void> {
    this.core.setStatus(status, options);
  }

  stopListening(): Promise<void> {
    return this.core.close();
  }

  async startListening(): Promise<void> {
    await this.core.listen();
  }

  stop(): Promise<void> {
    return this.core.close();
  }
}

/** Starts a receiver in the test process (127.0.0.1, a free port by default). */
export async function startReceiver(options: { host?: string; port?: number } = {}): Promise<InProcessReceiver> {
  const receiver = new InProcessReceiver(options.host ?? '127.0.0.1');
  await receiver.listen(options.port ?? 0);
  return receiver;
}

const PROGRAM = fileURLToPath(import.meta.url);

/** The receiver as its own program inside a lab namespace, read through its stdout. */
export class NamespacedReceiver extends ReceiverBase {
  private portNow = 0;
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (port: number) => void; reject: (e: Error) => void }>();
  private stderr = '';

  private constructor(
    private readonly child: ChildProcess,
    readonly host: string,
    readonly ns: string,
  ) {
    super();
  }

  get port(): number {
    return this.portNow;
  }

  /** The child's PID (lab.destroy() ends it too). */
  get pid(): number | undefined {
    return this.child.pid;
  }

  /**
   * Starts the receiver program inside `ns` of `lab` (lab.destroy() ends it), or without a lab as a
   * plain child process in the host's own namespace.
   */
  static async start(lab?: Lab, ns: Role | string = 'gw', options: { host?: string; port?: number; startTimeoutMs?: number } = {}): Promise<NamespacedReceiver> {
    const host = options.host ?? '127.0.0.1';
    const args = ['--import', import.meta.resolve('tsx'), PROGRAM, '--port', String(options.port ?? 0), '--host', host];
    const child = lab ? lab.spawn(ns, process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'] }) : spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const receiver = new NamespacedReceiver(child, host, lab ? lab.nsName(ns) : '(host namespace)');
    child.stderr!.setEncoding('utf8').on('data', (s: string) => {
      receiver.stderr = (receiver.stderr + s).slice(-8000);
    });
    const lines = createInterface({ input: child.stdout! });
    return new Promise<NamespacedReceiver>((resolve, reject) => {
      let ready = false;
      const timer = setTimeout(() => {
        if (ready) return;
        void endProcess(child, 500);
        reject(new Error(`OTLP receiver in ${receiver.ns} not listening after ${options.startTimeoutMs ?? 15000} ms: ${receiver.stderr}`));
      }, options.startTimeoutMs ?? 15000);
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        const error = new Error(`OTLP receiver in ${receiver.ns} exited (${signal ?? code}): ${receiver.stderr.trim()}`);
        receiver.broken = error;
        for (const p of receiver.pending.values()) p.reject(error);
        receiver.pending.clear();
        receiver.wake();
        if (!ready) reject(error);
      });
      child.once('error', (error) => {
        clearTimeout(timer);
        if (!ready) reject(error);
      });
      lines.on('line', (line) => {
        let m: {
          listening?: number;
          seq?: number;
          receivedAt?: number;
          encoding?: Encoding;
          contentEncoding?: string | null;
          bytes?: number;
          body?: unknown;
          refused?: number;
          rejected?: number;
          error?: string;
          ack?: number;
          ok?: boolean;
          port?: number;
        };
        try {
          // Only the envelope is needed here; the body is taken verbatim from the line below.
          m = JSON.parse(line) as typeof m;
        } catch {
          receiver.stderr += `\n[unparsable line] ${line.slice(0, 500)}`;
          return;
        }
        if (m.listening !== undefined) {
          receiver.portNow = m.listening;
          if (!ready) {
            ready = true;
            clearTimeout(timer);
            resolve(receiver);
          }
        } else if (m.ack !== undefined) {
          const p = receiver.pending.get(m.ack);
          receiver.pending.delete(m.ack);
          if (m.ok) {
            if (m.port) receiver.portNow = m.port;
            p?.resolve(m.port ?? receiver.portNow);
          } else p?.reject(new Error(`receiver command failed: ${m.error}`));
        } else if (m.refused !== undefined) {
          receiver.refused += 1;
          receiver.wake();
        } else if (m.rejected !== undefined) {
          receiver.rejected.push({ seq: m.seq ?? 0, status: m.rejected, error: m.error ?? '' });
          receiver.wake();
        } else if ('body' in m) {
          receiver.accept({
            seq: m.seq ?? 0,
            receivedAt: m.receivedAt ?? Date.now(),
            encoding: m.encoding ?? 'json',
            contentEncoding: m.contentEncoding ?? null,
            bytes: m.bytes ?? 0,
            raw: rawBodyOf(line),
          });
        }
      });
    });
  }

  private command(cmd: Record<string, unknown>, timeoutMs = 5000): Promise<number> {
    if (this.broken) return Promise.reject(this.broken);
    const id = ++this.nextId;
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`receiver in ${this.ns} did not answer ${JSON.stringify(cmd)} within ${timeoutMs} ms: ${this.stderr}`));
      }, timeoutMs);
      this.pending.set(id, {
        resolve: (port) => {
          clearTimeout(timer);
          resolve(port);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.child.stdin!.write(`${JSON.stringify({ id, ...cmd })}\n`);
    });
  }

  async setStatus(status: number, options: StatusOptions = {}): Promise<void> {
    await this.command({ cmd: 'status', status, ...options });
  }

  async stopListening(): Promise<void> {
    await this.command({ cmd: 'close' });
  }

  async startListening(): Promise<void> {
    await this.command({ cmd: 'listen' });
  }

  /** Asks the program to exit; ends it by PID if it does not within 3 s. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.stdin!.write(`${JSON.stringify({ cmd: 'exit' })}\n`);
    const timer = setTimeout(() => void endProcess(this.child, 1000), 3000);
    await exited;
    clearTimeout(timer);
  }
}

/** The verbatim body of an accepted-request line: the program writes `"body":` last, then `}`. */
function rawBodyOf(line: string): string {
  const at = line.indexOf(',"body":');
  if (at < 0 || !line.endsWith('}')) throw new Error(`unexpected receiver line: ${line.slice(0, 200)}`);
  return line.slice(at + ',"body":'.length, -1);
}

/** The standalone program. */
async function main(argv: string[]): Promise<void> {
  const arg = (name: string, fallback: string) => {
    const i = argv.indexOf(name);
    return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1]! : fallback;
  };
  const out = (line: string) => process.stdout.write(`${line}\n`);
  const core = new ReceiverCore(arg('--host', '127.0.0.1'), {
    // Newlines only occur as whitespace between JSON tokens (in strings they are escaped).
    accepted: (e) =>
      out(
        `${JSON.stringify({ seq: e.seq, receivedAt: e.receivedAt, encoding: e.encoding, contentEncoding: e.contentEncoding, bytes: e.bytes }).slice(0, -1)},"body":${e.raw.replace(/[\r\n]+/g, ' ')}}`,
      ),
    refused: (e) => out(JSON.stringify({ seq: e.seq, refused: e.status })),
    rejected: (e) => out(JSON.stringify({ seq: e.seq, rejected: e.status, error: e.error })),
  });
  const port = await core.listen(Number(arg('--port', '0')));
  out(JSON.stringify({ listening: port }));

  const exit = async () => {
    await core.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void exit());
  const input = createInterface({ input: process.stdin });
  input.on('close', () => void exit());
  input.on('line', (line) => {
    const legacy = /^status (\d{3})$/.exec(line.trim());
    if (legacy) {
      core.setStatus(Number(legacy[1]));
      return;
    }
    let c: { id?: number; cmd?: string; status?: number; forMs?: number; count?: number };
    try {
      c = JSON.parse(line) as typeof c;
    } catch {
      return;
    }
    const ack = (ok: boolean, extra: object = {}) => c.id !== undefined && out(JSON.stringify({ ack: c.id, ok, ...extra }));
    void (async () => {
      try {
        switch (c.cmd) {
          case 'status':
            core.setStatus(Number(c.status), { ...(c.forMs !== undefined ? { forMs: c.forMs } : {}), ...(c.count !== undefined ? { count: c.count } : {}) });
            ack(true);
            break;
          case 'close':
            await core.close();
            ack(true);
            break;
          case 'listen':
            ack(true, { port: await core.listen() });
            break;
          case 'exit':
            ack(true);
            await exit();
            break;
          default:
            ack(false, { error: `unknown command ${c.cmd}` });
        }
      } catch (error) {
        ack(false, { error: (error as Error).message });
      }
    })();
  });
}

function isMain(): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  try {
    return pathToFileURL(realpathSync(entry)).href === import.meta.url;
  } catch {
    return false;
  }
}

if (isMain()) {
  main(process.argv.slice(2)).catch((error: unknown) => {
    process.stderr.write(`otlp-receiver: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  });
}
