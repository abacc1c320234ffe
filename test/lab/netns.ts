/**
 * The network-namespace lab of the integration tests: three namespaces made with `ip netns add`
 * and joined by veth pairs, as on a tunnel gateway. Everything lives in namespaces the lab made; the
 * host's own network is never touched and no route leaves the lab.
 *
 *   users ns                          gw ns (forwarding v4+v6)                 far ns
 *   u0: 10.8.0.2-.5/24         <->    gu0: 10.8.0.1/24   gf0: 192.0.2.1/24  <->  f0: 192.0.2.7, .8/24
 *       fd00:8::2, ::3/64                  fd00:8::1/64       fd00:9::1/64           fd00:9::7, ::8/64
 *   routes 192.0.2.0/24, fd00:9::/64 via gw              routes 10.8.0.0/24, fd00:8::/64 via gw
 *
 * Namespace names are `mmlab-<pid>-<rand4>-<role>` (role users | gw | far): the creating PID lets
 * sweepStaleLabs() remove leftovers of a run that died, never those of a live process.
 *
 * API
 *   labSupport({probe?}): Promise<{ok: true} | {ok: false, reason}>   root + ip/iptables(-save)/ip6tables(-save)/ping/tee,
 *                                                              and (probe, default) that `ip netns add` really works
 *   requireLab(t): Promise<boolean>         true when the lab can run; otherwise in CI (CI set, not 'false'/'0')
 *                                           THROWS with the reason, elsewhere t.skip()s with a loud stderr message
 *                                           (labGate(support, t, ci) is that decision, for a given support)
 *   withLab(t, fn, opts?): Promise<T | undefined>   requireLab + Lab.create + fn(lab) + destroy in finally
 *   Lab.create(opts?: {onStep?, sweep?}): Promise<Lab>   builds the lab; on failure destroys what exists and throws
 *   lab.id, lab.ns.{users,gw,far}           namespace names
 *   lab.exec(ns, file, args, {input?, timeoutMs?, env?}): Promise<string>   stdout; throws Error with stderr on failure
 *   lab.run(ns, file, args, opts?): Promise<{code, signal, stdout, stderr}>  the same without throwing on exit != 0
 *   lab.spawn(ns, file, args, spawnOptions?): ChildProcess   long-running child (stdio pipes by default; read
 *                                           them); destroy() ends it by PID
 *   lab.ping({from, source, to, count, size, intervalS?, timeoutS?}): Promise<PingResult>
 *                                           exactly `count` echo requests, asserts every reply (no loss, no dups)
 *   lab.save(table = 'mangle', family = 4, ns = gw): Promise<string>   `iptables-save -c -t table` inside ns
 *   lab.destroy(): Promise<void>            ends its processes (tracked children, then anything left inside
 *                                           its namespaces, by PID) and deletes its namespaces; idempotent
 *   sweepStaleLabs(): Promise<string[]>     deletes `mmlab-<pid>-*` namespaces whose PID is dead (and kills, by
 *                                           PID, processes left inside them); returns the names removed
 *   parseSaveCounters(save): SaveRule[]     `[p:b] -A CHAIN spec` lines of iptables-save -c as {chain, spec, packets, bytes}
 *   echoBytes(size, ipv6): number           bytes iptables counts for one echo packet with payload `size`
 *   endProcess(child, graceMs?)             SIGTERM, then SIGKILL after the grace period, by PID
 *
 * `ns` arguments accept a role ('users' | 'gw' | 'far') or the lab's full namespace name, and nothing
 * else: a lab never runs anything in a namespace that is not its own.
 */
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants } from 'node:fs';
import type { TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

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
  usersNet: '10.8.0.0/24',
  usersNet6: 'fd00:8::/64',
  farNet: '192.0.2.0/24',
  farNet6: 'fd00:9::/64',
} as const;

/** Interface names (each in its own namespace, so they never clash between labs). */
export const IFACES = { users: 'u0', gwUsers: 'gu0', gwFar: 'gf0', far: 'f0' } as const;
/** Interfaces of the gateway namespace: towards the users and towards the far side. */
export const GW_USERS_IFACE = IFACES.gwUsers;
export const GW_FAR_IFACE = IFACES.gwFar;

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
  /** Seconds to wait for a reply (ping -W); default 2. */
  timeoutS?: number;
}

export interface PingResult {
  transmitted: number;
  received: number;
  /** IP bytes of one echo request (= one reply) as iptables counts it. */
  packetBytes: number;
  /** transmitted * packetBytes: the bytes of the requests (the replies are as many). */
  requestBytes: number;
  output: string;
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

export interface LabOptions {
  /** Fault injection for tests of the lab: awaited before each build step; a throw aborts create(). */
  onStep?: (step: BuildStep, lab: Lab) => void | Promise<void>;
  /** Sweep stale labs first (default true). */
  sweep?: boolean;
}

export type BuildStep = 'netns' | 'sysctl' | 'links' | 'addresses' | 'up' | 'routes' | 'ready';

export type LabSupport = { ok: true } | { ok: false; reason: string };

/** Labs of this process not yet destroyed: kept out of sweeps, torn down synchronously on exit. */
const liveLabs = new Set<Lab>();
let exitHookInstalled = false;

export class Lab {
  readonly id: string;
  readonly ns: Readonly<Record<Role, string>>;
  private readonly children = new Set<ChildProcess>();
  private created = new Set<string>();
  private destroying: Promise<void> | undefined;

  private constructor(id: string) {
    this.id = id;
    this.ns = Object.freeze({ users: `${PREFIX}${id}-users`, gw: `${PREFIX}${id}-gw`, far: `${PREFIX}${id}-far` });
  }

  get destroyed(): boolean {
    return this.destroying !== undefined;
  }

  static async create(options: LabOptions = {}): Promise<Lab> {
    if (options.sweep !== false) await sweepStaleLabs();
    const lab = new Lab(`${process.pid}-${randomBytes(2).toString('hex')}`);
    liveLabs.add(lab);
    installExitHook();
    try {
      await lab.build(options);
    } catch (error) {
      await lab.destroy().catch((e: unknown) => {
        (error as Error).message += `\n(and destroying the half-built lab failed: ${(e as Error).message})`;
      });
      throw error;
    }
    return lab;
  }

  private async build(options: LabOptions): Promise<void> {
    const step = async (name: BuildStep) => options.onStep?.(name, this);
    const { users, gw, far } = this.ns;
    const A = ADDRESSES;
    const I = IFACES;

    await step('netns');
    for (const ns of [users, gw, far]) {
      this.created.add(ns);
      await ip('netns', 'add', ns);
    }

    await step('sysctl');
    for (const ns of [users, gw, far]) {
      // No duplicate address detection: addresses (link-local too) are usable at once.
      await this.sysctl(ns, 'net/ipv6/conf/all/accept_dad', '0');
      await this.sysctl(ns, 'net/ipv6/conf/default/accept_dad', '0');
    }
    // Forwarding on before the links exist, so the gateway never acts as a host on them.
    await this.sysctl(gw, 'net/ipv4/ip_forward', '1');
    await this.sysctl(gw, 'net/ipv6/conf/all/forwarding', '1');
    await this.sysctl(gw, 'net/ipv6/conf/default/forwarding', '1');

    await step('links');
    await ip('-n', users, 'link', 'add', I.users, 'type', 'veth', 'peer', 'name', I.gwUsers, 'netns', gw);
    await ip('-n', far, 'link', 'add', I.far, 'type', 'veth', 'peer', 'name', I.gwFar, 'netns', gw);

    await step('addresses');
    for (const a of A.users) await ip('-n', users, 'addr', 'add', `${a}/24`, 'dev', I.users);
    for (const a of A.users6) await ip('-n', users, '-6', 'addr', 'add', `${a}/64`, 'dev', I.users, 'nodad');
    await ip('-n', gw, 'addr', 'add', `${A.gwUsers}/24`, 'dev', I.gwUsers);
    await ip('-n', gw, '-6', 'addr', 'add', `${A.gwUsers6}/64`, 'dev', I.gwUsers, 'nodad');
    await ip('-n', gw, 'addr', 'add', `${A.gwFar}/24`, 'dev', I.gwFar);
    await ip('-n', gw, '-6', 'addr', 'add', `${A.gwFar6}/64`, 'dev', I.gwFar, 'nodad');
    for (const a of A.far) await ip('-n', far, 'addr', 'add', `${a}/24`, 'dev', I.far);
    for (const a of A.far6) await ip('-n', far, '-6', 'addr', 'add', `${a}/64`, 'dev', I.far, 'nodad');

    await step('up');
    for (const [ns, dev] of [
      [users, 'lo'],
      [gw, 'lo'],
      [far, 'lo'],
      [users, I.users],
      [gw, I.gwUsers],
      [gw, I.gwFar],
      [far, I.far],
    ] as const) {
      await ip('-n', ns, 'link', 'set', dev, 'up');
    }

    await step('routes');
    // Only the other side's prefixes: nothing can be routed anywhere else.
    await ip('-n', users, 'route', 'add', A.farNet, 'via', A.gwUsers);
    await ip('-n', users, '-6', 'route', 'add', A.farNet6, 'via', A.gwUsers6);
    await ip('-n', far, 'route', 'add', A.usersNet, 'via', A.gwFar);
    await ip('-n', far, '-6', 'route', 'add', A.usersNet6, 'via', A.gwFar6);

    await step('ready');
    await this.waitReady();
  }

  /** Waits until every veth end has carrier and no IPv6 address is tentative. */
  private async waitReady(timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const ends: [string, string][] = [
      [this.ns.users, IFACES.users],
      [this.ns.gw, IFACES.gwUsers],
      [this.ns.gw, IFACES.gwFar],
      [this.ns.far, IFACES.far],
    ];
    for (;;) {
      let pending = '';
      for (const [ns, dev] of ends) {
        const link = (await runProcess('ip', ['-n', ns, '-o', 'link', 'show', 'dev', dev])).stdout;
        const addrs = (await runProcess('ip', ['-n', ns, '-o', '-6', 'addr', 'show', 'dev', dev])).stdout;
        if (!/[<,]LOWER_UP[,>]/.test(link) || /tentative/.test(addrs)) pending = `${ns}/${dev}: ${link.trim()} ${addrs.trim()}`;
      }
      if (!pending) return;
      if (Date.now() > deadline) throw new Error(`lab links not ready after ${timeoutMs} ms: ${pending}`);
      await sleep(20);
    }
  }

  private async sysctl(ns: string, key: string, value: string): Promise<void> {
    // tee (coreutils) instead of sysctl (procps, not always installed); /proc/sys/net is the caller's netns.
    await this.exec(ns, 'tee', [`/proc/sys/${key}`], { input: `${value}\n` });
  }

  /** The full namespace name for a role or a name of this lab; throws for anything else. */
  nsName(ns: Role | string): string {
    if ((ROLES as readonly string[]).includes(ns)) return this.ns[ns as Role];
    if (Object.values(this.ns).includes(ns)) return ns;
    throw new Error(`${ns} is not a namespace of lab ${this.id}`);
  }

  /** Runs a program inside a namespace (argument array, no shell); resolves with its exit status and output. */
  async run(ns: Role | string, file: string, args: readonly string[], options: ExecOptions = {}): Promise<RunResult> {
    if (this.destroying) throw new Error(`lab ${this.id} is destroyed`);
    return runProcess('ip', ['netns', 'exec', this.nsName(ns), file, ...args], options);
  }

  /** Runs a program inside a namespace (argument array, no shell); resolves with its stdout, throws with its stderr. */
  async exec(ns: Role | string, file: string, args: readonly string[], options: ExecOptions = {}): Promise<string> {
    const r = await this.run(ns, file, args, options);
    if (r.code !== 0) {
      const why = r.signal ? `killed by ${r.signal}` : `exit ${r.code}`;
      throw new Error(`in ${this.nsName(ns)}: ${file} ${args.join(' ')} failed (${why}): ${r.stderr.trim() || r.stdout.trim()}`);
    }
    return r.stdout;
  }

  /**
   * Starts a long-running program inside a namespace (`ip netns exec` execs it: the child's PID is the
   * program's). stdio are pipes unless told otherwise: read them, or a chatty child blocks.
   * destroy() ends it by PID.
   */
  spawn(ns: Role | string, file: string, args: readonly string[], options: SpawnOptions = {}): ChildProcess {
    if (this.destroying) throw new Error(`lab ${this.id} is destroyed`);
    const child = spawn('ip', ['netns', 'exec', this.nsName(ns), file, ...args], { stdio: ['pipe', 'pipe', 'pipe'], ...options });
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    child.once('error', () => this.children.delete(child));
    return child;
  }

  /** Sends exactly `count` echo requests of payload `size`; throws unless every reply came back. */
  async ping(options: PingOptions): Promise<PingResult> {
    const { from, source, to, count, size, intervalS = 0.01, timeoutS = 2 } = options;
    const ipv6 = to.includes(':');
    const own: readonly string[] = from === 'users' ? [...ADDRESSES.users, ...ADDRESSES.users6] : [...ADDRESSES.far, ...ADDRESSES.far6];
    if (!own.includes(source)) throw new Error(`ping: ${source} is not an address of the ${from} namespace`);
    if (ipv6 !== source.includes(':')) throw new Error(`ping: ${source} -> ${to} mixes address families`);
    if (!Number.isInteger(count) || count < 1) throw new Error(`ping: count must be a positive integer, got ${count}`);
    const args = [...(ipv6 ? ['-6'] : ['-4']), '-n', '-q', '-c', String(count), '-s', String(size), '-i', String(intervalS), '-W', String(timeoutS), '-I', source, to];
    const r = await this.run(from, 'ping', args, { timeoutMs: (count * intervalS + timeoutS + 10) * 1000 });
    const stats = /(\d+) packets transmitted, (\d+) received(, \+(\d+) duplicates)?/.exec(r.stdout);
    const transmitted = Number(stats?.[1] ?? NaN);
    const received = Number(stats?.[2] ?? NaN);
    if (r.code !== 0 || transmitted !== count || received !== count || stats?.[4]) {
      throw new Error(`ping ${source} -> ${to} (count ${count}, size ${size}) did not get exactly ${count} replies (exit ${r.code}):\n${r.stdout}${r.stderr}`);
    }
    const packetBytes = echoBytes(size, ipv6);
    return { transmitted, received, packetBytes, requestBytes: transmitted * packetBytes, output: r.stdout };
  }

  /** `iptables-save -c -t <table>` (or ip6tables-save) inside a namespace, the gateway by default. */
  async save(table = 'mangle', family: 4 | 6 = 4, ns: Role | string = 'gw'): Promise<string> {
    return this.exec(ns, family === 6 ? 'ip6tables-save' : 'iptables-save', ['-c', '-t', table]);
  }

  /**
   * Ends the processes this lab started (tracked children: SIGTERM, SIGKILL after `graceMs`; then
   * anything still inside its namespaces: SIGKILL) by PID, and deletes its namespaces. Idempotent;
   * concurrent calls share one teardown; safe on a half-built lab.
   */
  destroy(graceMs = 3000): Promise<void> {
    this.destroying ??= this.teardown(graceMs).finally(() => liveLabs.delete(this));
    return this.destroying;
  }

  private async teardown(graceMs: number): Promise<void> {
    const problems: string[] = [];
    await Promise.all([...this.children].map((child) => endProcess(child, graceMs)));
    const existing = await listNamespaces();
    for (const ns of Object.values(this.ns)) {
      if (!existing.includes(ns)) continue;
      const left = await killInside(ns);
      if (left.length) problems.push(`${ns}: processes ${left.join(', ')} survived SIGKILL`);
      const del = await runProcess('ip', ['netns', 'del', ns]);
      if (del.code !== 0) problems.push(`ip netns del ${ns}: ${del.stderr.trim()}`);
    }
    const still = (await listNamespaces()).filter((n) => Object.values(this.ns).includes(n));
    if (still.length) problems.push(`namespaces still present: ${still.join(', ')}`);
    if (problems.length) throw new Error(`destroying lab ${this.id}: ${problems.join('; ')}`);
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

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const lab of liveLabs) lab.destroySync();
  });
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

/** Runs a program on the host side (no shell). Never rejects: look at code/signal. */
export function runProcess(file: string, args: readonly string[], options: ExecOptions = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'], env: options.env ?? process.env, cwd: options.cwd });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.input ?? '');
    const timer = setTimeout(() => {
      stderr += `\n[killed after ${options.timeoutMs ?? 60000} ms]`;
      if (child.pid !== undefined) tryKill(child.pid, 'SIGKILL');
    }, options.timeoutMs ?? 60000);
    child.once('error', (error) => {
      clearTimeout(timer);
      resolve({ code: -1, signal: null, stdout, stderr: stderr + String(error.message) });
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

async function ip(...args: string[]): Promise<void> {
  const r = await runProcess('ip', args);
  if (r.code !== 0) throw new Error(`ip ${args.join(' ')} failed: ${r.stderr.trim() || `exit ${r.code}`}`);
}

async function listNamespaces(): Promise<string[]> {
  const r = await runProcess('ip', ['netns', 'list']);
  if (r.code !== 0) throw new Error(`ip netns list failed: ${r.stderr.trim()}`);
  return r.stdout
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter(Boolean);
}

/** The mmlab namespaces that exist now (any owner). */
export async function listLabNamespaces(): Promise<string[]> {
  return (await listNamespaces()).filter((n) => n.startsWith(PREFIX));
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
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
    const stale = pid === process.pid ? !mine.has(name) : !isAlive(pid);
    if (!stale) continue;
    await killInside(name);
    const r = await runProcess('ip', ['netns', 'del', name]);
    if (r.code === 0) removed.push(name);
  }
  return removed;
}

let supportCache: Promise<LabSupport> | undefined;

/** Whether this machine can run the lab: root, the programs it needs, and (probe) a real `ip netns add`. */
export function labSupport(options: { probe?: boolean } = {}): Promise<LabSupport> {
  if (options.probe === false) return checkSupport(false);
  supportCache ??= checkSupport(true);
  return supportCache;
}

async function checkSupport(probe: boolean): Promise<LabSupport> {
  if (process.platform !== 'linux') return { ok: false, reason: `the namespace lab needs Linux, not ${process.platform}` };
  if (process.getuid?.() !== 0) return { ok: false, reason: 'the namespace lab needs root (ip netns add, iptables)' };
  const missing: string[] = [];
  for (const program of ['ip', 'iptables', 'ip6tables', 'iptables-save', 'ip6tables-save', 'ping', 'tee']) {
    if (!onPath(program)) missing.push(program);
  }
  if (missing.length) return { ok: false, reason: `missing programs: ${missing.join(', ')} (apt-get install iproute2 iptables iputils-ping)` };
  if (!probe) return { ok: true };
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
  for (const dir of dirs) {
    try {
      accessSync(`${dir}/${program}`, constants.X_OK);
      return true;
    } catch {
      // not in this directory
    }
  }
  return false;
}

/** True when running in CI: CI set to anything but '', 'false' or '0'. */
export function inCI(): boolean {
  const ci = process.env.CI;
  return ci !== undefined && ci !== '' && ci !== 'false' && ci !== '0';
}

/**
 * For a kernel-level test: true when it can run. When it cannot, in CI this THROWS (the test fails:
 * CI never skips kernel tests); elsewhere it writes a loud message to stderr and skips the test.
 * `t` may be a test's context (skipped) or anything with a name (e.g. a suite's before hook).
 */
export async function requireLab(t?: GateTarget): Promise<boolean> {
  return labGate(await labSupport(), t);
}

export interface GateTarget {
  name?: string;
  skip?: (message?: string) => void;
}

/** requireLab's decision for a given support result (exported to test it): true, throw, or skip. */
export function labGate(support: LabSupport, t?: GateTarget, ci = inCI(), log: (line: string) => void = (line) => process.stderr.write(line)): boolean {
  if (support.ok) return true;
  const what = t?.name ? `"${t.name}"` : 'kernel-level test';
  if (ci) throw new Error(`kernel-level test ${what} cannot run in CI: ${support.reason}`);
  log(`\n!!! SKIPPING ${what}: ${support.reason} (in CI this fails) !!!\n\n`);
  t?.skip?.(support.reason);
  return false;
}

/**
 * Runs `fn` with a fresh lab and always destroys it (also when fn throws). When the lab cannot run
 * here: in CI throws, elsewhere skips the test and resolves undefined (see requireLab).
 */
export async function withLab<T>(t: TestContext, fn: (lab: Lab) => Promise<T>, options: LabOptions = {}): Promise<T | undefined> {
  if (!(await requireLab(t))) return undefined;
  const lab = await Lab.create(options);
  let failed = false;
  try {
    return await fn(lab);
  } catch (error) {
    failed = true;
    throw error;
  } finally {
    try {
      await lab.destroy();
    } catch (error) {
      if (!failed) throw error;
      t.diagnostic(`destroying the lab also failed: ${(error as Error).message}`);
    }
  }
}

export interface SaveRule {
  chain: string;
  /** The rule after `-A CHAIN `. */
  spec: string;
  packets: bigint;
  bytes: bigint;
}

/** The `[packets:bytes] -A CHAIN spec` lines of `iptables-save -c` output. */
export function parseSaveCounters(save: string): SaveRule[] {
  const rules: SaveRule[] = [];
  for (const line of save.split('\n')) {
    const m = /^\[(\d+):(\d+)\] -A (\S+) ?(.*)$/.exec(line);
    if (m) rules.push({ packets: BigInt(m[1]!), bytes: BigInt(m[2]!), chain: m[3]!, spec: m[4]! });
  }
  return rules;
}
