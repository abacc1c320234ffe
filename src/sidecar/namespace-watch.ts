/**
 * Notices when the network namespace markmeter reads has been left behind.
 * A sidecar (`network_mode: service:<client>`, `--network container:<client>`)
 * joins the client container's namespace and holds it. When that container
 * stops or restarts, Docker takes its network endpoints (eth0) out of the
 * namespace and starts the client in a new one; the old one lives on while
 * markmeter holds it, with the same mangle rules and even a kernel wg0 (a
 * WireGuard device lives as long as its namespace), so readings succeed, the
 * counters stop moving and /readyz stays ready.
 *
 * The sign that holds: the namespace has no up Ethernet link left (veth,
 * macvlan, ipvlan or a NIC: what carries a container's or a host's traffic),
 * after it had one. Loopback and tunnel devices (WireGuard and tun have no
 * link layer) do not count: they outlive the container. The configured
 * interfaces are no sign: a kernel wg0 stays in the abandoned namespace, and a
 * client that restarts inside a live one (a Kubernetes pod, host networking)
 * removes and recreates its wg0. Nor are other processes in the namespace: a
 * sidecar has its own PID namespace and sees none of the client's.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Link {
  name: string;
  /** ARPHRD_* type from sysfs: 1 Ethernet, 772 loopback, 65534 none (WireGuard, tun). */
  type: number;
  /** IFF_UP: administratively up. */
  up: boolean;
}

const ARPHRD_ETHER = 1;
const IFF_UP = 0x1;
/** How many readings in a row without an Ethernet link make the namespace left behind. */
export const ORPHANED_AFTER_READINGS = 3;

/** Pure: watches one reading's links after another. */
export class OrphanDetector {
  /** Every Ethernet link seen up so far. */
  private readonly seen = new Set<string>();
  private absentFor = 0;
  private reported = false;

  constructor(private readonly readings = ORPHANED_AFTER_READINGS) {}

  /** Returns the message on the reading that finds the namespace left behind, once; otherwise undefined. */
  observe(links: readonly Link[]): string | undefined {
    const ethernet = links.filter((l) => l.type === ARPHRD_ETHER && l.up).map((l) => l.name);
    if (ethernet.length > 0) {
      for (const name of ethernet) this.seen.add(name);
      this.absentFor = 0;
      return undefined;
    }
    // A namespace that never had one (no network, a test's) is never called left behind.
    if (this.seen.size === 0 || this.reported) return undefined;
    this.absentFor += 1;
    if (this.absentFor < this.readings) return undefined;
    this.reported = true;
    const gone = `${[...this.seen].sort().join(', ')} ${this.seen.size > 1 ? 'are' : 'is'} gone`;
    const left = links.map((l) => l.name).join(', ') || 'nothing';
    return (
      `the network namespace was left behind: ${gone} and no Ethernet link has been up for ${this.readings} readings (left: ${left}), ` +
      'as when the container whose network markmeter shares stops or restarts: the tunnel client now runs in a new namespace and these counters no longer move. ' +
      'markmeter exits so that its restart policy (restart: unless-stopped) starts it in the new one; namespace.exitWhenOrphaned: false turns this off'
    );
  }
}

/**
 * The namespace's links from sysfs; undefined when the folder cannot be read. A link gone while read is left out.
 * Read synchronously: sysfs answers from memory, and a file handle per file per reading cost more than the reading of it.
 */
export async function readLinks(root = '/sys/class/net'): Promise<Link[] | undefined> {
  let names: string[];
  try {
    names = readdirSync(root);
  } catch {
    return undefined;
  }
  const links: Link[] = [];
  for (const name of names) {
    try {
      const type = readFileSync(join(root, name, 'type'), 'utf8');
      const flags = readFileSync(join(root, name, 'flags'), 'utf8');
      links.push({ name, type: Number(type.trim()), up: (Number.parseInt(flags.trim(), 16) & IFF_UP) !== 0 });
    } catch {
      // gone while read
    }
  }
  return links;
}

/** The agent's side: one read() per reading; calls onOrphaned once when the namespace is left behind. */
export class NamespaceWatch {
  private readonly detector = new OrphanDetector();

  constructor(
    private readonly enabled: boolean,
    private readonly onOrphaned: (message: string) => void,
    private readonly root = '/sys/class/net',
  ) {}

  async read(): Promise<void> {
    if (!this.enabled) return;
    const links = await readLinks(this.root);
    const message = links && this.detector.observe(links);
    if (message) this.onOrphaned(message);
  }
}
