/**
 * The test side of the namespaced OTLP receiver (otlp-receiver.ts): starts it
 * in a lab namespace, reads what it received through its stdout, and answers
 * "what is the latest exported value of this series".
 */
import { createInterface } from 'node:readline';
import type { ChildProcess } from 'node:child_process';
import type { Lab } from './namespaces.js';

export interface Point {
  metric: string;
  attributes: Record<string, string>;
  value: number;
}

/** Flattens one OTLP JSON export request into its data points. asInt may arrive as a number or a string. */
export function pointsOf(body: unknown): Point[] {
  const points: Point[] = [];
  type Attr = { key: string; value: { stringValue?: string; intValue?: string | number } };
  type DataPoint = { attributes?: Attr[]; asInt?: string | number; asDouble?: number };
  type Metric = { name: string; sum?: { dataPoints: DataPoint[] }; gauge?: { dataPoints: DataPoint[] } };
  const request = body as { resourceMetrics?: { scopeMetrics?: { metrics?: Metric[] }[] }[] };
  for (const rm of request.resourceMetrics ?? []) {
    for (const sm of rm.scopeMetrics ?? []) {
      for (const metric of sm.metrics ?? []) {
        for (const dp of metric.sum?.dataPoints ?? metric.gauge?.dataPoints ?? []) {
          const attributes: Record<string, string> = {};
          for (const a of dp.attributes ?? []) attributes[a.key] = String(a.value.stringValue ?? a.value.intValue ?? '');
          points.push({ metric: metric.name, attributes, value: Number(dp.asInt ?? dp.asDouble ?? NaN) });
        }
      }
    }
  }
  return points;
}

export class NamespacedReceiver {
  /** Every accepted export request, in arrival order. */
  readonly requests: Point[][] = [];
  /** The encodings the requests came in (`json`, `protobuf`). */
  readonly encodings = new Set<string>();
  refused = 0;
  private readonly waiters = new Set<() => void>();

  private constructor(
    private readonly child: ChildProcess,
    readonly url: string,
  ) {}

  static async start(lab: Lab, ns: string): Promise<NamespacedReceiver> {
    const child = lab.spawn(ns, process.execPath, ['--import', 'tsx', 'test/lab/otlp-receiver.ts']);
    const lines = createInterface({ input: child.stdout! });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    return new Promise((resolve, reject) => {
      let receiver: NamespacedReceiver | undefined;
      child.once('exit', (code) => {
        if (!receiver) reject(new Error(`OTLP receiver exited with ${code} before listening: ${stderr}`));
      });
      lines.on('line', (line) => {
        const message = JSON.parse(line) as { listening?: number; body?: unknown; refused?: number; encoding?: string };
        if (message.listening !== undefined) {
          receiver = new NamespacedReceiver(child, `http://127.0.0.1:${message.listening}`);
          resolve(receiver);
        } else if (receiver && message.refused !== undefined) {
          receiver.refused += 1;
        } else if (receiver) {
          receiver.requests.push(pointsOf(message.body));
          if (message.encoding) receiver.encodings.add(message.encoding);
          for (const wake of receiver.waiters) wake();
        }
      });
    });
  }

  /** From now on answer `status` (e.g. 503: the collector is down). */
  setStatus(status: number): void {
    this.child.stdin!.write(`status ${status}\n`);
  }

  /** The value of the series in the latest request that carries it. */
  latest(metric: string, attributes: Record<string, string>): number | undefined {
    for (let i = this.requests.length - 1; i >= 0; i--) {
      const point = this.requests[i]!.find((p) => p.metric === metric && matches(p.attributes, attributes));
      if (point) return point.value;
    }
    return undefined;
  }

  /** Waits until `check` (run on every new request) returns true; on timeout, throws `describe()`. */
  async waitFor(check: () => boolean, timeoutMs: number, describe: () => string): Promise<void> {
    if (check()) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(wake);
        reject(new Error(`timed out after ${timeoutMs} ms: ${describe()}`));
      }, timeoutMs);
      const wake = () => {
        if (!check()) return;
        clearTimeout(timer);
        this.waiters.delete(wake);
        resolve();
      };
      this.waiters.add(wake);
    });
  }
}

function matches(actual: Record<string, string>, wanted: Record<string, string>): boolean {
  const keys = Object.keys(wanted);
  return keys.length === Object.keys(actual).length && keys.every((k) => actual[k] === wanted[k]);
}
