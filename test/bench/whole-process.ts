/**
 * What the operator pays: the real agent (`node dist/cli.js run`) in a lab
 * namespace holding the generated table, reading it every second and pushing
 * http/protobuf every 5 s to a receiver that discards, in the lab's far
 * namespace (as a collector would be, across the link). Its CPU (utime+stime)
 * and its save children's (cutime+cstime) come from /proc/PID/stat between two
 * readings, its RSS from /proc/PID/status, its V8 heap from a preload that
 * collects the garbage and writes the heap in use on SIGUSR2 (outside the
 * window). Counters move: the table is restored with raised counters every
 * `moveEveryMs`.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { ADDRESSES, Lab } from '../../src/demo/netns.js';
import type { GeneratedGateway } from './generate.js';

export interface AgentCostOptions {
  backend: 'legacy' | 'nft';
  /** Readings before the window opens (start, first sync, JIT). */
  warmupReadings: number;
  /** Readings in the measured window (a multiple of 5: whole export intervals). */
  windowReadings: number;
  /** How often the table is restored with every counter raised. */
  moveEveryMs: number;
}

export interface AgentCost {
  readings: number;
  exports: number;
  /** CPU ms per reading, exports in the window included. */
  agentMs: number;
  childrenMs: number;
  /** The same over windows of readings with no export in them. */
  agentNoExportMs: number;
  /** The first reading, start to end, and the sources' own part of it (the rest waited for the first users sync). */
  firstReadingMs: number;
  firstReadMs: number;
  /** RSS (MB) when the window opened and at its end; the peak of the samples. */
  rssStartMb: number;
  rssEndMb: number;
  rssPeakMb: number;
  heapStartMb: number;
  heapEndMb: number;
  bytesPerExport: number;
}

const CLI = resolve('dist/cli.js');
const HEAP_PRELOAD = resolve('test/bench/heap-on-signal.mjs');
const CLOCK_TICK_MS = 10; // getconf CLK_TCK = 100 on Linux

/**
 * A receiver that reads and discards each request, printing its size: a push's
 * first request (the one with the self-metrics, markmeter_*) as "push", its
 * later ones (more users) as "part".
 */
const DISCARD = `
const server = require('node:http').createServer((req, res) => {
  let bytes = 0;
  let first = true;
  req.on('data', (c) => { if (bytes === 0) first = c.includes('markmeter_'); bytes += c.length; });
  req.on('end', () => { res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end(); console.log((first ? 'push ' : 'part ') + bytes); });
});
server.listen(0, process.argv[1], () => console.log('listening ' + server.address().port));
process.stdin.on('end', () => process.exit(0)).resume();
`;

/** The environment the image (and the systemd unit) run the agent with (NODE_OPTIONS, malloc's settings): the bench runs it so too. */
export function deployedEnv(): Record<string, string> {
  const env = Object.fromEntries([...readFileSync('docker/Dockerfile', 'utf8').matchAll(/^ENV (\w+)="([^"]*)"$/gm)].map((m) => [m[1]!, m[2]!]));
  if (env.NODE_OPTIONS === undefined) throw new Error('docker/Dockerfile sets no NODE_OPTIONS');
  return env;
}

/** CPU ms of a process and of its waited-for children, from /proc/PID/stat. */
function cpuOf(pid: number): { own: number; children: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces): state is field 3, utime 14 ... cstime 17.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const tick = (i: number) => Number(f[i - 3]) * CLOCK_TICK_MS;
  return { own: tick(14) + tick(15), children: tick(16) + tick(17) };
}

function rssMbOf(pid: number): number {
  const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return Number(kb) / 1024;
}

/** The dump with every counter raised by `step` packets (and 100 bytes each). */
function raised(dump: string, step: bigint): string {
  return dump.replace(/^\[(\d+):(\d+)\]/gm, (_m, p: string, b: string) => `[${BigInt(p) + step}:${BigInt(b) + step * 100n}]`);
}

export async function agentCost(gateway: GeneratedGateway, options: AgentCostOptions): Promise<AgentCost> {
  const dir = mkdtempSync(join(tmpdir(), 'markmeter-agent-cost-'));
  const lab = await Lab.create();
  try {
    const restore = `iptables-${options.backend}-restore`;
    await lab.exec('gw', restore, ['-c'], { input: gateway.dump, timeoutMs: 300_000 });
    const users = join(dir, 'users.json');
    writeFileSync(users, gateway.usersDocument);
    const heapFile = join(dir, 'heap');

    // The receiver is across the link, like a collector: pushes leave through the gateway's POSTROUTING.
    const collector = ADDRESSES.far[1];
    const receiver = lab.spawn('far', process.execPath, ['-e', DISCARD, collector]);
    const pushes: number[] = [];
    /** Requests received, a push's later ones included (see DISCARD). */
    let requests = 0;
    let port = 0;
    createInterface({ input: receiver.stdout! }).on('line', (line) => {
      const [what, n] = line.split(' ');
      if (what === 'listening') port = Number(n);
      if (what === 'push' || what === 'part') requests += 1;
      if (what === 'push') pushes.push(Number(n));
      else if (what === 'part' && pushes.length) pushes[pushes.length - 1]! += Number(n);
    });
    while (!port) await sleep(20);

    // MARKMETER_BENCH_NODE_ARGS: extra node options for the agent (a profiler: --cpu-prof --cpu-prof-dir=DIR).
    const nodeArgs = (process.env.MARKMETER_BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
    const agent = lab.spawn('gw', process.execPath, [...nodeArgs, '--expose-gc', '--import', HEAP_PRELOAD, CLI, 'run'], {
      env: {
        ...process.env,
        ...deployedEnv(),
        MARKMETER_IPTABLES_BACKEND: options.backend,
        MARKMETER_USERS_FILE: users,
        MARKMETER_COLLECT_INTERVAL_MS: '1000',
        OTEL_METRIC_EXPORT_INTERVAL: '5000',
        OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: 'http/protobuf',
        OTEL_EXPORTER_OTLP_ENDPOINT: `http://${collector}:${port}`,
        MARKMETER_LOG_LEVEL: 'debug',
        MARKMETER_HEAP_FILE: heapFile,
      },
    });
    let stderr = '';
    agent.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr = (stderr + s).slice(-4000)));
    const exited = new Promise<never>((_, reject) => agent.once('exit', (code, signal) => reject(new Error(`the agent exited (${signal ?? code}): ${stderr}`))));
    exited.catch(() => {});

    // Each reading's end: a CPU sample and the pushes so far.
    interface Sample {
      own: number;
      children: number;
      pushes: number;
      requests: number;
      rss: number;
    }
    const samples: Sample[] = [];
    const durations: number[] = [];
    const reads: number[] = [];
    const problems: string[] = [];
    let wake: () => void = () => {};
    createInterface({ input: agent.stdout! }).on('line', (line) => {
      // Lines of a profiler or tracer passed in MARKMETER_BENCH_NODE_ARGS go to the bench's stderr.
      if (!line.startsWith('{')) return void process.stderr.write(`${line}\n`);
      const record = JSON.parse(line) as { msg: string; level: string; duration_ms?: number; read_ms?: number; sources?: string[] };
      if (record.level === 'error' || record.level === 'warn') problems.push(record.msg);
      if (record.msg !== 'reading done') return;
      if (record.sources?.some((s) => !s.endsWith(' ok'))) problems.push(`a failed reading: ${record.sources.join(', ')}`);
      durations.push(record.duration_ms!);
      reads.push(record.read_ms!);
      samples.push({ ...cpuOf(agent.pid!), pushes: pushes.length, requests, rss: rssMbOf(agent.pid!) });
      wake();
    });
    const readingsDone = (n: number) =>
      Promise.race([
        exited,
        new Promise<void>((done) => {
          wake = () => samples.length >= n && done();
          wake();
        }),
      ]);
    const heap = async (): Promise<number> => {
      rmSync(heapFile, { force: true });
      process.kill(agent.pid!, 'SIGUSR2');
      for (let i = 0; i < 100; i++) {
        await sleep(20);
        try {
          return Number(readFileSync(heapFile, 'utf8')) / 1e6;
        } catch {
          // not written yet
        }
      }
      throw new Error('the agent did not write its heap size');
    };

    // Counters move: the table restored with raised counters, again and again.
    let moving = true;
    const mover = (async () => {
      for (let step = 1n; moving; step++) {
        await sleep(options.moveEveryMs);
        if (moving) await lab.exec('gw', restore, ['-c'], { input: raised(gateway.dump, step), timeoutMs: 300_000 });
      }
    })();

    try {
      await readingsDone(options.warmupReadings);
      // The heap is taken after a full collection, outside the window (the window opens at the next reading).
      const heapStartMb = await heap();
      await readingsDone(samples.length + 1);
      const first = samples.length - 1;
      await readingsDone(first + 1 + options.windowReadings);
      const last = first + options.windowReadings;
      const heapEndMb = await heap();
      if (problems.length) throw new Error(`the agent logged problems: ${[...new Set(problems)].join('; ')}`);
      const a = samples[first]!;
      const b = samples[last]!;
      const readings = last - first;
      // Readings far from any push (no request of one arrived in their interval nor in the next: a
      // request is encoded before it arrives, a push's later ones after its earlier ones): the cost
      // of reading alone.
      let quietOwn = 0;
      let quiet = 0;
      for (let i = first + 1; i < last; i++) {
        if (samples[i + 1]!.requests !== samples[i - 1]!.requests) continue;
        quietOwn += samples[i]!.own - samples[i - 1]!.own;
        quiet += 1;
      }
      const window = pushes.slice(a.pushes, b.pushes);
      return {
        readings,
        exports: b.pushes - a.pushes,
        agentMs: (b.own - a.own) / readings,
        childrenMs: (b.children - a.children) / readings,
        agentNoExportMs: quiet ? quietOwn / quiet : NaN,
        firstReadingMs: durations[0]!,
        firstReadMs: reads[0]!,
        rssStartMb: a.rss,
        rssEndMb: b.rss,
        rssPeakMb: Math.max(...samples.map((s) => s.rss)),
        heapStartMb,
        heapEndMb,
        bytesPerExport: window.length ? window.reduce((x, y) => x + y, 0) / window.length : 0,
      };
    } finally {
      moving = false;
      await mover.catch(() => {});
    }
  } finally {
    await lab.destroy(10_000);
    rmSync(dir, { recursive: true, force: true });
  }
}

type Row = (figure: string, value: string, target?: string, ok?: boolean) => void;

/**
 * The headline of `npm run bench`: the agent's whole-process cost with the
 * legacy backend (targets) and the nft one (reported). MARKMETER_BENCH_READINGS
 * sets the legacy window (default 30 readings; 600 is the 10-minute soak).
 */
export async function agentCostRows(gateway: GeneratedGateway, row: Row): Promise<void> {
  if (process.getuid?.() !== 0) {
    row('agent, whole process', 'not measured: needs root (a lab namespace holds the rules)', 'measured', false);
    return;
  }
  const readings = Number(process.env.MARKMETER_BENCH_READINGS ?? 30);
  const scale = `${gateway.rules} rules, ${gateway.expected.size} users`;
  const legacy = await agentCost(gateway, { backend: 'legacy', warmupReadings: 8, windowReadings: readings, moveEveryMs: 2000 });
  const ratio = legacy.agentMs / legacy.childrenMs;
  row(`agent CPU per reading, legacy, ${scale}, one export every 5 readings included (${legacy.readings} readings, ${legacy.exports} exports)`, `${legacy.agentMs.toFixed(0)} ms`);
  row('  the same, readings with no export', `${legacy.agentNoExportMs.toFixed(0)} ms`);
  row('  its iptables-legacy-save children, CPU per reading', `${legacy.childrenMs.toFixed(0)} ms`);
  row('  agent CPU / children CPU, with exports', `${ratio.toFixed(2)}x`, '<= 0.5x', ratio <= 0.5);
  row(
    '  first reading after start: the table read, parsed and counted (start to end, with the wait for the first users sync)',
    `${legacy.firstReadMs} ms (${legacy.firstReadingMs} ms)`,
    '<= 150 ms',
    legacy.firstReadMs <= 150,
  );
  // The target is on the RSS a running agent holds (after 10 minutes with MARKMETER_BENCH_READINGS=600);
  // the peak, while the first reading's memory is given back, is shown beside it.
  row(`  agent RSS at the window's start / end (peak since start)`, `${legacy.rssStartMb.toFixed(0)} / ${legacy.rssEndMb.toFixed(0)} MB (${legacy.rssPeakMb.toFixed(0)})`, '<= 150 MB at the end', legacy.rssEndMb <= 150);
  const growth = legacy.heapEndMb - legacy.heapStartMb;
  row(`  agent V8 heap in use at the window's start / end`, `${legacy.heapStartMb.toFixed(1)} / ${legacy.heapEndMb.toFixed(1)} MB`, 'grows < 5 MB', growth < 5);
  row('  push size', `${(legacy.bytesPerExport / 1e6).toFixed(1)} MB`);
  // nft: its save command takes over a second at this size; reported, no target.
  const nft = await agentCost(gateway, { backend: 'nft', warmupReadings: 3, windowReadings: 10, moveEveryMs: 10_000 });
  row(`agent CPU per reading, nft, ${scale} (${nft.readings} readings, ${nft.exports} exports)`, `${nft.agentMs.toFixed(0)} ms`);
  row('  its iptables-nft-save children, CPU per reading', `${nft.childrenMs.toFixed(0)} ms`);
  row('  agent CPU / children CPU', `${(nft.agentMs / nft.childrenMs).toFixed(2)}x`);
  row('  agent RSS at the end (peak)', `${nft.rssEndMb.toFixed(0)} MB (${nft.rssPeakMb.toFixed(0)})`);
}
