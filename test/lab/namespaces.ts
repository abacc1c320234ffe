/**
 * The network-namespace lab of the integration tests: three namespaces made
 * with `ip netns add` and joined by veth pairs, as on a tunnel gateway:
 *
 *   users (10.8.0.2-.5, fd00:8::2) --u0/gu0-- gw (forwarding) --gf0/f0-- far (192.0.2.7/.8, fd00:9::7)
 *
 * Every address lives in a namespace the lab made; nothing touches the host's
 * own network. Names carry the creating PID, so leftovers of a run that was
 * killed can be swept without touching anyone else's. destroy() ends the
 * processes the lab started (by PID) and deletes the namespaces, also after a
 * failure.
 */
import { execFile, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { promisify } from 'node:util';
import type { TestContext } from 'node:test';

const run = promisify(execFile);

export const ADDRESSES = {
  users: ['10.8.0.2', '10.8.0.3', '10.8.0.4', '10.8.0.5'],
  users6: ['fd00:8::2'],
  far: ['192.0.2.7', '192.0.2.8'],
  far6: ['fd00:9::7'],
} as const;

/** Interfaces of the gateway namespace: towards the users and towards the far side. */
export const GW_USERS_IFACE = 'gu0';
export const GW_FAR_IFACE = 'gf0';

const PREFIX = 'mmlab-';
let serial = 0;

export interface PingOptions {
  from: 'users' | 'far';
  source: string;
  to: string;
  count: number;
  /** ICMP payload bytes (ping -s). */
  size: number;
}

/** Bytes of one echo packet as iptables counts it (IP header + ICMP header + payload). */
export function echoBytes(size: number, ipv6: boolean): number {
  return (ipv6 ? 40 : 20) + 8 + size;
}

export class Lab {
  readonly ns: { users: string; gw: string; far: string };
  private readonly children = new Set<ChildProcess>();
  private destroyed = false;

  private constructor(id: string) {
    this.ns = { users: `${PREFIX}${id}-users`, gw: `${PREFIX}${id}-gw`, far: `${PREFIX}${id}-far` };
  }

  static async create(): Promise<Lab> {
    await sweepStaleLabs();
    const lab = new Lab(`${process.pid}-${++serial}`);
    try {
      await lab.build();
    } catch (error) {
      await lab.destroy();
      throw error;
    }
    return lab;
  }

  private async build(): Promise<void> {
    const { users, gw, far } = this.ns;
    for (const ns of [users, gw, far]) {
      await ip('netns', 'add', ns);
      await ip('-n', ns, 'link', 'set', 'lo', 'up');
    }
    // Forwarding on before the links exist, so the gateway never acts as a host on them.
    await this.exec(gw, 'sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1', 'net.ipv6.conf.default.forwarding=1']);
    await ip('-n', users, 'link', 'add', 'u0', 'type', 'veth', 'peer', 'name', GW_USERS_IFACE, 'netns', gw);
    await ip('-n', far, 'link', 'add', 'f0', 'type', 'veth', 'peer', 'name', GW_FAR_IFACE, 'netns', gw);
    for (const a of ADDRESSES.users) await ip('-n', users, 'addr', 'add', `${a}/24`, 'dev', 'u0');
    for (const a of ADDRESSES.users6) await ip('-n', users, '-6', 'addr', 'add', `${a}/64`, 'dev', 'u0', 'nodad');
    await ip('-n', gw, 'addr', 'add', '10.8.0.1/24', 'dev', GW_USERS_IFACE);
    await ip('-n', gw, '-6', 'addr', 'add', 'fd00:8::1/64', 'dev', GW_USERS_IFACE, 'nodad');
    await ip('-n', gw, 'addr', 'add', '192.0.2.1/24', 'dev', GW_FAR_IFACE);
    await ip('-n', gw, '-6', 'addr', 'add', 'fd00:9::1/64', 'dev', GW_FAR_IFACE, 'nodad');
    for (const a of ADDRESSES.far) await ip('-n', far, 'addr', 'add', `${a}/24`, 'dev', 'f0');
    for (const a of ADDRESSES.far6) await ip('-n', far, '-6', 'addr', 'add', `${a}/64`, 'dev', 'f0', 'nodad');
    for (const [ns, dev] of [
      [users, 'u0'],
      [gw, GW_USERS_IFACE],
      [gw, GW_FAR_IFACE],
      [far, 'f0'],
    ] as const) {
      await ip('-n', ns, 'link', 'set', dev, 'up');
    }
    await ip('-n', users, 'route', 'add', 'default', 'via', '10.8.0.1');
    await ip('-n', users, '-6', 'route', 'add', 'default', 'via', 'fd00:8::1');
    await ip('-n', far, 'route', 'add', '10.8.0.0/24', 'via', '192.0.2.1');
    await ip('-n', far, '-6', 'route', 'add', 'fd00:8::/64', 'via', 'fd00:9::1');
  }

  /** Runs a program inside a namespace (argument array, no shell); resolves with its stdout. */
  async exec(ns: string, file: string, args: readonly string[]): Promise<string> {
    try {
      const { stdout } = await run('ip', ['netns', 'exec', ns, file, ...args], { maxBuffer: 64 << 20 });
      return stdout;
    } catch (error) {
      const e = error as { stderr?: string; message: string };
      throw new Error(`in ${ns}: ${file} ${args.join(' ')} failed: ${e.stderr?.trim() || e.message}`);
    }
  }

  /** Starts a long-running program inside a namespace; destroy() ends it. */
  spawn(ns: string, file: string, args: readonly string[], options: SpawnOptions = {}): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', ns, file, ...args], { stdio: ['pipe', 'pipe', 'pipe'], ...options });
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  /** Sends exactly `count` echo requests and checks that every reply came back. */
  async ping({ from, source, to, count, size }: PingOptions): Promise<void> {
    const ipv6 = to.includes(':');
    const out = await this.exec(this.ns[from], 'ping', [...(ipv6 ? ['-6'] : []), '-n', '-q', '-c', String(count), '-s', String(size), '-i', '0.01', '-W', '2', '-I', source, to]);
    if (!out.includes(`${count} packets transmitted, ${count} received`)) throw new Error(`ping ${source} -> ${to} lost replies:\n${out}`);
  }

  /** Ends what the lab started and deletes its namespaces; safe to call twice and after a half-built lab. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    await Promise.all([...this.children].map((child) => endProcess(child)));
    for (const ns of Object.values(this.ns)) await ip('netns', 'del', ns).catch(() => undefined);
  }
}

/** Ends a child by its PID: SIGTERM, then SIGKILL after a grace period. */
export async function endProcess(child: ChildProcess, graceMs = 3000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

async function ip(...args: string[]): Promise<void> {
  try {
    await run('ip', args);
  } catch (error) {
    const e = error as { stderr?: string; message: string };
    throw new Error(`ip ${args.join(' ')} failed: ${e.stderr?.trim() || e.message}`);
  }
}

/** Deletes lab namespaces left by runs whose process is gone (never those of a live process). */
export async function sweepStaleLabs(): Promise<void> {
  const { stdout } = await run('ip', ['netns', 'list']);
  for (const line of stdout.split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const pid = Number(/^mmlab-(\d+)-/.exec(name)?.[1]);
    if (!pid || isAlive(pid)) continue;
    await ip('netns', 'del', name).catch(() => undefined);
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

/** Whether this machine can run the lab: root, and the programs it needs. */
export async function labSupport(): Promise<{ ok: true } | { ok: false; reason: string }> {
  if (process.getuid?.() !== 0) return { ok: false, reason: 'the namespace lab needs root' };
  for (const program of ['ip', 'iptables', 'ip6tables', 'iptables-save', 'ip6tables-save', 'ping', 'sysctl']) {
    try {
      await run('sh', ['-c', `command -v ${program}`]);
    } catch {
      return { ok: false, reason: `${program} is not installed (apt-get install iproute2 iptables iputils-ping procps)` };
    }
  }
  return { ok: true };
}

/**
 * For a kernel-level test: true when it can run. In CI (CI set) a missing
 * prerequisite fails the test; elsewhere the test is skipped with a loud message.
 */
export async function requireLab(t: TestContext): Promise<boolean> {
  const support = await labSupport();
  if (support.ok) return true;
  if (process.env.CI) throw new Error(`kernel-level test cannot run in CI: ${support.reason}`);
  process.stderr.write(`\n!!! SKIPPING kernel-level test "${t.name}": ${support.reason} !!!\n\n`);
  t.skip(support.reason);
  return false;
}
