/**
 * The test side of the OTLP receiver program (otlp-server.ts), which runs inside a lab namespace
 * (the agent under test pushes to that namespace's loopback) or, without a lab, in the host's.
 *
 *   NamespacedReceiver.start(lab?, ns = 'gw')   lab.destroy() ends it; without a lab, stop() does
 *   url              http://127.0.0.1:PORT, for OTEL_EXPORTER_OTLP_ENDPOINT
 *   requests         every accepted request in arrival order: its points {metric, attributes, value}
 *   encodings        the encodings the requests came in ('json', 'protobuf')
 *   refused          how many requests got the status of setStatus()
 *   waitFor(predicate, timeoutMs?, describe?)   re-checked at every request; throws on timeout
 *   latest(metric, attrs)                      the series' value in the latest request carrying it
 *   setStatus(status)   answers `status` from now on (503: the collector is down; 200 heals)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { endProcess, type Lab, type Role } from '../../src/demo/netns.js';
import type { WirePoint } from './otlp-decode.js';

export interface Point {
  metric: string;
  attributes: Record<string, string>;
  value: number;
}

const PROGRAM = fileURLToPath(new URL('./otlp-server.ts', import.meta.url));

export class NamespacedReceiver {
  readonly requests: Point[][] = [];
  readonly encodings = new Set<string>();
  refused = 0;
  private readonly rejected: string[] = [];
  private readonly waiters = new Set<() => void>();
  private statusAcks: (() => void)[] = [];
  private broken: Error | undefined;
  private port = 0;
  private stderr = '';

  private constructor(private readonly child: ChildProcess) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Starts the receiver program in `ns` of `lab`, or without a lab in this process's namespace. */
  static start(lab?: Lab, ns: Role | string = 'gw'): Promise<NamespacedReceiver> {
    const args = ['--import', import.meta.resolve('tsx'), PROGRAM];
    const child = lab ? lab.spawn(ns, process.execPath, args) : spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const receiver = new NamespacedReceiver(child);
    child.stderr!.setEncoding('utf8').on('data', (s: string) => (receiver.stderr = (receiver.stderr + s).slice(-4000)));
    child.once('exit', (code, signal) => receiver.fail(new Error(`the OTLP receiver exited (${signal ?? code}): ${receiver.stderr.trim()}`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        receiver.onEvent(JSON.parse(line) as Event);
      } catch {
        receiver.stderr += `\n[not an event] ${line.slice(0, 300)}`;
      }
    });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        receiver.fail(new Error(`the OTLP receiver is not listening after 15 s: ${receiver.stderr}`));
        void endProcess(child, 500);
      }, 15_000);
      receiver.waiters.add(function started() {
        if (!receiver.port && !receiver.broken) return;
        clearTimeout(timer);
        receiver.waiters.delete(started);
        if (receiver.port) resolve(receiver);
        else reject(receiver.broken);
      });
    });
  }

  private onEvent(e: Event): void {
    if (e.listening) this.port = e.listening;
    if (e.refused) this.refused += 1;
    if (e.rejected) this.rejected.push(`${e.rejected} ${e.error}`);
    if (e.status) this.statusAcks.shift()?.();
    if (e.points) {
      this.encodings.add(e.encoding!);
      this.requests.push(e.points.map((p) => ({ ...p, value: this.exactNumber(p) })));
    }
    for (const wake of [...this.waiters]) wake();
  }

  /** A value beyond 2^53 would compare rounded: the receiver refuses to go on. */
  private exactNumber(p: WirePoint): number {
    const value = Number(p.value);
    if (typeof p.value === 'string' && BigInt(p.value) !== BigInt(value)) this.fail(new Error(`${p.metric} = ${p.value} is beyond 2^53: not comparable as a number`));
    return value;
  }

  private fail(error: Error): void {
    this.broken ??= error;
    for (const wake of [...this.waiters]) wake();
  }

  /** Resolves once predicate(this) is true (re-checked at every request); rejects on timeout or when the receiver died. */
  waitFor(predicate: (receiver: this) => boolean, timeoutMs = 10000, describe: () => string = () => 'condition not met'): Promise<void> {
    return new Promise((resolve, reject) => {
      const explain = () => `${describe()}\n(${this.requests.length} requests, ${this.refused} refused, rejected: ${this.rejected.join('; ') || 'none'})`;
      const done = (error?: Error) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        if (error) reject(error);
        else resolve();
      };
      const check = () => {
        try {
          if (predicate(this)) return done();
        } catch (error) {
          return done(error as Error);
        }
        if (this.broken) done(new Error(`${this.broken.message}: ${explain()}`));
      };
      const timer = setTimeout(() => done(new Error(`timed out after ${timeoutMs} ms: ${explain()}`)), timeoutMs);
      this.waiters.add(check);
      check();
    });
  }

  /** The value of `metric` with exactly `attrs` in the latest request that carries that series. */
  latest(metric: string, attrs: Record<string, string>): number | undefined {
    const keys = Object.keys(attrs);
    const matches = (p: Point) => p.metric === metric && Object.keys(p.attributes).length === keys.length && keys.every((k) => p.attributes[k] === attrs[k]);
    for (let i = this.requests.length - 1; i >= 0; i--) {
      const points = this.requests[i]!;
      for (let j = points.length - 1; j >= 0; j--) if (matches(points[j]!)) return points[j]!.value;
    }
    return undefined;
  }

  /** Answers `status` to every request from now on (200 heals); resolves once the program took it. */
  setStatus(status: number): Promise<void> {
    return new Promise((resolve) => {
      this.statusAcks.push(resolve);
      this.child.stdin!.write(`status ${status}\n`);
    });
  }

  /** Ends the program, by PID. */
  stop(): Promise<void> {
    return endProcess(this.child);
  }
}

interface Event {
  listening?: number;
  encoding?: string;
  points?: WirePoint[];
  refused?: number;
  rejected?: number;
  error?: string;
  status?: number;
}
