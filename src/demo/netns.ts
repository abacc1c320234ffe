/**
 * A tunnel gateway built from nothing: three network namespaces (`ip netns add`) joined by veth
 * pairs. `npm run demo`, the integration tests and the fixture captures all run on it. The host's
 * own network is never touched and no route leaves the lab.
 *
 *   users ns                          gw ns (forwarding v4+v6)                 far ns
 *   u0: 10.8.0.2-.5/24         <->    gu0: 10.8.0.1/24   gf0: 192.0.2.1/24  <->  f0: 192.0.2.7, .8/24
 *       fd00:8::2, ::3/64                  fd00:8::1/64       fd00:9::1/64           fd00:9::7, ::8/64
 *   routes 192.0.2.0/24, fd00:9::/64 via gw              routes 10.8.0.0/24, fd00:8::/64 via gw
 *
 * IPv6 is quiet, so that counters see only the traffic a caller sends: no link-local addresses,
 * no duplicate address detection, no router solicitations, static neighbours, and the MLD reports
 * of link-up all sent within milliseconds (wait QUIET_MS before loading rules whose policy
 * counters must be exact).
 *
 * Namespace names are `mmlab-<pid>-<hex4>-<role>`: the creating PID lets sweepStaleLabs() remove
 * what a run that died left behind, never the lab of a live process. A lab only ever runs programs
 * in its own namespaces, and ends only processes it started or that live inside them, by PID.
 */
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { MarkmeterError } from '../errors.js';

export const ADDRESSES = {
  /** Tunnel-side addresses of the users (on u0 in the users namespace). */
  users: ['10.8.0.2', '10.8.0.3', '10.8.0.4', '10.8.0.5'],
  users6: ['fd00:8::2', 'fd00:8::3'],
  /** Far-side hosts (on f0 in the far namespace). */
  far: ['192.0.2.7', '192.0.2.8'],
  far6: ['fd00:9::7', 'fd00:9::8'],
  /** The gateway's own addresses on each side. */
  gwUsers: '10.8.0.1',
  gwUsers6: 'fd00:8::1',
  gwFar: '192.0.2.1',
  gwFar6: 'fd00:9::1',
} as const;

/** Interface names (each in its own namespace, so labs never clash) and their fixed MACs. */
const IFACES = { users: 'u0', gwUsers: 'gu0', gwFar: 'gf0', far: 'f0' } as const;
const MACS: Record<keyof typeof IFACES, string> = { users: '02:00:00:00:00:01', gwUsers: '02:00:00:00:00:02', gwFar: '02:00:00:00:00:03', far: '02:00:00:00:00:04' };
/** The gateway's interface towards the users. */
export const GW_USERS_IFACE = IFACES.gwUsers;

/** Long enough for the last MLD report of link-up (10 ms apart) to have gone out. */
export const QUIET_MS = 300;

/** Set in every namespace before its links exist (new interfaces take the defaults). */
const QUIET_IPV6: readonly [string, string][] = [
  ['net/ipv6/conf/default/accept_dad', '0'],
  ['net/ipv6/conf/default/addr_gen_mode', '1'],
  ['net/ipv6/conf/default/router_solicitations', '0'],
  ['net/ipv6/conf/default/mldv1_unsolicited_report_interval', '10'],
  ['net/ipv6/conf/default/mldv2_unsolicited_report_interval', '10'],
];

export type Role = 'users' | 'gw' | 'far';
const ROLES: readonly Role[] = ['users', 'gw', 'far'];
const PREFIX = 'mmlab-';
const NAME_RE = /^mmlab-(\d+)-([0-9a-f]+)-(users|gw|far|probe)$/;

/** Bytes of one echo packet as iptables counts it (IP header + ICMP header + payload). */
export function echoBytes(size: number, ipv6: boolean): number {
  return (ipv6 ? 40 : 20) + 8 + size;
}

export interface PingOptions {
  from: 'users' | 'far';
  /** Source address: one of that namespace's addresses (ADDRESSES). */
  source: string;
  to: string;
  count: number;
  /** ICMP payload bytes (ping -s). */
  size: number;
  /** Seconds between requests (ping -i); default 0.01. */
  intervalS?: number;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  /** Written to the program's stdin (then closed). */
  input?: string;
  /** Killed (SIGKILL, by PID) after this many ms; default 60000. */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

export type LabSupport = { ok: true } | { ok: false; reason: string };

/** Labs of this process not yet destroyed: kept out of sweeps, torn down synchronously on exit. */
const liveLabs = new Set<Lab>();
let exitHooked = false;

export class Lab {
  readonly id: string;
  readonly ns: Readonly<Record<Role, string>>;
  private readonly children = new Set<ChildProcess>();
  private destroying: Promise<void> | undefined;

  private constructor(id: string) {
    this.id = id;
    this.ns = Object.freeze({ users: `${PREFIX}${id}-users`, gw: `${PREFIX}${id}-gw`, far: `${PREFIX}${id}-far` });
  }

  /** Builds a lab (after sweeping stale ones); on failure destroys what exists and throws. */
  static async create(): Promise<Lab> {
    await sweepStaleLabs();
    const lab = new Lab(`${process.pid}-${randomBytes(2).toString('hex')}`);
    if (!exitHooked) process.once('exit', () => liveLabs.forEach((l) => l.destroySync()));
    exitHooked = true;
    liveLabs.add(lab);
    try {
      await lab.build();
    } catch (error) {
      await lab.destroy().catch((e: unknown) => {
        (error as Error).message += `\n(and destroying the half-built lab failed: ${(e as Error).message})`;
      });
      throw error;
    }
    return lab;
  }

  private async build(): Promise<void> {
    const { users, gw, far } = this.ns;
    const A = ADDRESSES;
    const I = IFACES;
    for (const ns of [users, gw, far]) {
      await ip('netns', 'add', ns);
      for (const [key, value] of QUIET_IPV6) await this.sysctl(ns, key, value);
    }
    // Forwarding on before the links exist: turned on later, the gateway joins the routers'
    // multicast groups (MLD reports) while a caller counts.
    await this.sysctl(gw, 'net/ipv4/ip_forward', '1');
    await this.sysctl(gw, 'net/ipv6/conf/all/forwarding', '1');

    await ip('-n', users, 'link', 'add', I.users, 'address', MACS.users, 'type', 'veth', 'peer', 'name', I.gwUsers, 'address', MACS.gwUsers, 'netns', gw);
    await ip('-n', far, 'link', 'add', I.far, 'address', MACS.far, 'type', 'veth', 'peer', 'name', I.gwFar, 'address', MACS.gwFar, 'netns', gw);

    const addresses: [string, string, readonly string[], string][] = [
      [users, I.users, A.users, '24'],
      [users, I.users, A.users6, '64'],
      [gw, I.gwUsers, [A.gwUsers], '24'],
      [gw, I.gwUsers, [A.gwUsers6], '64'],
      [gw, I.gwFar, [A.gwFar], '24'],
      [gw, I.gwFar, [A.gwFar6], '64'],
      [far, I.far, A.far, '24'],
      [far, I.far, A.far6, '64'],
    ];
    for (const [ns, dev, list, bits] of addresses) {
      for (const a of list) await ip('-n', ns, 'addr', 'add', `${a}/${bits}`, 'dev', dev, ...(a.includes(':') ? ['nodad'] : []));
    }
    const links: [string, string][] = [
      [users, I.users],
      [gw, I.gwUsers],
      [gw, I.gwFar],
      [far, I.far],
    ];
    for (const ns of [users, gw, far]) await ip('-n', ns, 'link', 'set', 'lo', 'up');
    for (const [ns, dev] of links) await ip('-n', ns, 'link', 'set', dev, 'up');

    // Only the other side's prefixes: nothing can be routed anywhere else.
    await ip('-n', users, 'route', 'add', '192.0.2.0/24', 'via', A.gwUsers);
    await ip('-n', users, '-6', 'route', 'add', 'fd00:9::/64', 'via', A.gwUsers6);
    await ip('-n', far, 'route', 'add', '10.8.0.0/24', 'via', A.gwFar);
    await ip('-n', far, '-6', 'route', 'add', 'fd00:8::/64', 'via', A.gwFar6);

    // Static neighbours (after link-up, which flushes them): without link-local addresses the
    // gateway could not solicit, and nothing is sent that a counter would see.
    const neighbours: [string, string, readonly string[], string][] = [
      [users, I.users, [A.gwUsers6], MACS.gwUsers],
      [gw, I.gwUsers, A.users6, MACS.users],
      [gw, I.gwFar, A.far6, MACS.far],
      [far, I.far, [A.gwFar6], MACS.gwFar],
    ];
    for (const [ns, dev, list, mac] of neighbours) {
      for (const a of list) await ip('-n', ns, '-6', 'neigh', 'add', a, 'lladdr', mac, 'dev', dev, 'nud', 'permanent');
    }
    await waitForCarrier(links);
  }

  private async sysctl(ns: string, key: string, value: string): Promise<void> {
    // tee (coreutils) instead of sysctl (procps, not always installed); /proc/sys/net is the caller's netns.
    await this.exec(ns, 'tee', [`/proc/sys/${key}`], { input: `${value}\n` });
  }

  /** The full namespace name for a role or a name of this lab; throws for anything else. */
  nsName(ns: Role | string): string {
    if ((ROLES as readonly string[]).includes(ns)) return this.ns[ns as Role];
    if (Object.values(this.ns).includes(ns)) return ns;
    throw new MarkmeterError('lab', `${ns} is not a namespace of lab ${this.id}`);
  }

  /** Runs a program inside a namespace (argument array, no shell); resolves with its exit status and output. */
  async run(ns: Role | string, file: string, args: readonly string[], options: ExecOptions = {}): Promise<RunResult> {
    if (this.destroying) throw new MarkmeterError('lab', `lab ${this.id} is destroyed`);
    return runProcess('ip', ['netns', 'exec', this.nsName(ns), file, ...args], options);
  }

  /** Like run(), but resolves with stdout and throws (with stderr) unless the program exits 0. */
  async exec(ns: Role | string, file: string, args: readonly string[], options: ExecOptions = {}): Promise<string> {
    const r = await this.run(ns, file, args, options);
    if (r.code !== 0) {
      const why = r.signal ? `killed by ${r.signal}` : `exit ${r.code}`;
      throw new MarkmeterError('lab', `in ${this.nsName(ns)}: ${file} ${args.join(' ')} failed (${why}): ${r.stderr.trim() || r.stdout.trim()}`);
    }
    return r.stdout;
  }

  /**
   * Starts a long-running program inside a namespace (`ip netns exec` execs it: the child's PID is
   * the program's). stdio are pipes unless told otherwise: read them, or a chatty child blocks.
   * destroy() ends it by PID.
   */
  spawn(ns: Role | string, file: string, args: readonly string[], options: SpawnOptions = {}): ChildProcess {
    if (this.destroying) throw new MarkmeterError('lab', `lab ${this.id} is destroyed`);
    const child = spawn('ip', ['netns', 'exec', this.nsName(ns), file, ...args], { stdio: ['pipe', 'pipe', 'pipe'], ...options });
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    child.once('error', () => this.children.delete(child));
    return child;
  }

  /** Sends exactly `count` echo requests of payload `size`; throws unless every reply came back once. */
  async ping(options: PingOptions): Promise<void> {
    const { from, source, to, count, size, intervalS = 0.01 } = options;
    const ipv6 = to.includes(':');
    const own: readonly string[] = from === 'users' ? [...ADDRESSES.users, ...ADDRESSES.users6] : [...ADDRESSES.far, ...ADDRESSES.far6];
    if (!own.includes(source) || ipv6 !== source.includes(':') || !Number.isInteger(count) || count < 1) {
      throw new MarkmeterError('lab', `ping: ${source} -> ${to} x ${count} is not a ping from the ${from} namespace`);
    }
    const args = [ipv6 ? '-6' : '-4', '-n', '-q', '-c', String(count), '-s', String(size), '-i', String(intervalS), '-W', '2', '-I', source, to];
    const r = await this.run(from, 'ping', args, { timeoutMs: (count * intervalS + 12) * 1000 });
    const stats = /(\d+) packets transmitted, (\d+) received(, \+\d+ duplicates)?/.exec(r.stdout);
    if (r.code !== 0 || stats?.[1] !== String(count) || stats[2] !== String(count) || stats[3]) {
      throw new MarkmeterError('lab', `ping ${source} -> ${to} (count ${count}, size ${size}) did not get exactly ${count} replies (exit ${r.code}):\n${r.stdout}${r.stderr}`);
    }
  }

  /**
   * Ends the processes this lab started (SIGTERM, SIGKILL after `graceMs`), then anything still
   * inside its namespaces (SIGKILL), by PID, and deletes its namespaces. Idempotent; concurrent
   * calls share one teardown; safe on a half-built lab.
   */
  destroy(graceMs = 3000): Promise<void> {
    this.destroying ??= this.teardown(graceMs).finally(() => liveLabs.delete(this));
    return this.destroying;
  }

  private async teardown(graceMs: number): Promise<void> {
    const problems: string[] = [];
    await Promise.all([...this.children].map((child) => endProcess(child, graceMs)));
    const mine = Object.values(this.ns);
    for (const ns of (await listNamespaces()).filter((n) => mine.includes(n))) {
      const left = await killInside(ns);
      if (left.length) problems.push(`${ns}: processes ${left.join(', ')} survived SIGKILL`);
      const del = await runProcess('ip', ['netns', 'del', ns]);
      if (del.code !== 0) problems.push(`ip netns del ${ns}: ${del.stderr.trim()}`);
    }
    if (problems.length) throw new MarkmeterError('lab', `destroying lab ${this.id}: ${problems.join('; ')}`);
  }

  /** Last-resort synchronous teardown (process 'exit'). */
  destroySync(): void {
    for (const child of this.children) if (child.pid && child.exitCode === null && child.signalCode === null) tryKill(child.pid, 'SIGKILL');
    for (const ns of Object.values(this.ns)) {
      try {
        const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
        for (const pid of pids.split(/\s+/).filter(Boolean).map(Number)) if (pid !== process.pid) tryKill(pid, 'SIGKILL');
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {
        // not there (or already gone)
      }
    }
  }
}

/** Waits until every veth end has carrier. */
async function waitForCarrier(ends: readonly [string, string][], timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let pending = '';
    for (const [ns, dev] of ends) {
      const link = (await runProcess('ip', ['-n', ns, '-o', 'link', 'show', 'dev', dev])).stdout;
      if (!/[<,]LOWER_UP[,>]/.test(link)) pending = `${ns}/${dev}: ${link.trim()}`;
    }
    if (!pending) return;
    if (Date.now() > deadline) throw new MarkmeterError('lab', `lab links not up after ${timeoutMs} ms: ${pending}`);
    await sleep(20);
  }
}

/** Ends a child by its PID: SIGTERM, then SIGKILL after a grace period; resolves once it has exited. */
export async function endProcess(child: ChildProcess, graceMs = 3000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  tryKill(child.pid, 'SIGTERM');
  const timer = setTimeout(() => child.pid !== undefined && tryKill(child.pid, 'SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

function tryKill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** SIGKILLs, by PID, every process inside a namespace; returns those still alive after 3 s. */
async function killInside(ns: string): Promise<number[]> {
  const pidsOf = async () =>
    (await runProcess('ip', ['netns', 'pids', ns])).stdout
      .split(/\s+/)
      .filter(Boolean)
      .map(Number)
      .filter((pid) => pid !== process.pid);
  let pids = await pidsOf();
  for (const pid of pids) tryKill(pid, 'SIGKILL');
  const deadline = Date.now() + 3000;
  while (pids.length && Date.now() < deadline) {
    await sleep(20);
    pids = (await pidsOf()).filter(isAlive);
  }
  return pids;
}

/** Runs a program in this process's namespace (no shell). Never rejects: look at code/signal. */
export function runProcess(file: string, args: readonly string[], options: ExecOptions = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'], env: options.env ?? process.env, cwd: options.cwd });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.input ?? '');
    const timeoutMs = options.timeoutMs ?? 60000;
    const timer = setTimeout(() => {
      stderr += `\n[killed after ${timeoutMs} ms]`;
      if (child.pid !== undefined) tryKill(child.pid, 'SIGKILL');
    }, timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      resolve({ code: -1, signal: null, stdout, stderr: stderr + error.message });
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

async function ip(...args: string[]): Promise<void> {
  const r = await runProcess('ip', args);
  if (r.code !== 0) throw new MarkmeterError('lab', `ip ${args.join(' ')} failed: ${r.stderr.trim() || `exit ${r.code}`}`);
}

async function listNamespaces(): Promise<string[]> {
  const r = await runProcess('ip', ['netns', 'list']);
  if (r.code !== 0) throw new MarkmeterError('lab', `ip netns list failed: ${r.stderr.trim()}`);
  return r.stdout
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter(Boolean);
}

/**
 * Deletes `mmlab-<pid>-...` namespaces left by runs whose process is gone (and SIGKILLs, by PID,
 * what those runs left running inside them). A namespace of a live process is never touched, nor
 * anything not named mmlab-<pid>-<hex>-<role>. With this process's own PID, only names of labs it
 * does not know are stale (a previous process had the same PID). Returns the names removed.
 */
export async function sweepStaleLabs(): Promise<string[]> {
  const mine = new Set([...liveLabs].flatMap((lab) => Object.values(lab.ns)));
  const removed: string[] = [];
  for (const name of await listNamespaces()) {
    const m = NAME_RE.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid ? mine.has(name) : isAlive(pid)) continue;
    await killInside(name);
    if ((await runProcess('ip', ['netns', 'del', name])).code === 0) removed.push(name);
  }
  return removed;
}

let supportCache: Promise<LabSupport> | undefined;

/** Whether this machine can build a lab: Linux, root, the programs it needs, and a real `ip netns add`. */
export function labSupport(): Promise<LabSupport> {
  supportCache ??= checkSupport();
  return supportCache;
}

async function checkSupport(): Promise<LabSupport> {
  if (process.platform !== 'linux') return { ok: false, reason: `the namespace lab needs Linux, not ${process.platform}` };
  if (process.getuid?.() !== 0) return { ok: false, reason: 'the namespace lab needs root (ip netns add, iptables)' };
  const missing = ['ip', 'iptables', 'ip6tables', 'iptables-save', 'ip6tables-save', 'ping', 'tee'].filter((program) => !onPath(program));
  if (missing.length) return { ok: false, reason: `missing programs: ${missing.join(', ')} (apt-get install iproute2 iptables iputils-ping)` };
  const name = `${PREFIX}${process.pid}-${randomBytes(2).toString('hex')}-probe`;
  const add = await runProcess('ip', ['netns', 'add', name]);
  if (add.code !== 0) return { ok: false, reason: `ip netns add does not work here: ${add.stderr.trim()}` };
  const ipt = await runProcess('ip', ['netns', 'exec', name, 'iptables', '-t', 'mangle', '-S']);
  await runProcess('ip', ['netns', 'del', name]);
  if (ipt.code !== 0) return { ok: false, reason: `iptables -t mangle does not work in a namespace: ${ipt.stderr.trim()}` };
  return { ok: true };
}

function onPath(program: string): boolean {
  const dirs = (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin', '/usr/bin', '/bin']);
  return dirs.some((dir) => {
    try {
      accessSync(`${dir}/${program}`, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}
