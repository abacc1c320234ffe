/**
 * Test helper: the agent's reading path (Collector -> IptablesSource with its
 * rule memory -> Accumulator) over dumps given as text or fixture files,
 * with a users document, and totals as bigints for deepEqual.
 */
import { Accumulator, type Totals } from '../src/totals/accumulator.js';
import { addressMarkMap, buildMarkMap, type Breakdown, type MarkMap } from '../src/attribution/mark-map.js';
import { Collector, type SourceReport } from '../src/sources/collect.js';
import { IptablesSource, savedDump } from '../src/sources/iptables/source.js';
import { parseUsersDocument } from '../src/users/document.js';
import { IptablesSaveParser } from '../src/sources/iptables/scan.js';

export const ROOTS = { rx: ['PREROUTING'], tx: ['POSTROUTING'] };

export function exact(totals: Totals): { rxPackets: bigint; txPackets: bigint; rxBytes: bigint; txBytes: bigint } {
  return {
    rxPackets: BigInt(totals.rxPackets),
    txPackets: BigInt(totals.txPackets),
    rxBytes: BigInt(totals.rxBytes),
    txBytes: BigInt(totals.txBytes),
  };
}

export const t = (rxPackets: bigint, txPackets: bigint, rxBytes: bigint, txBytes: bigint) => ({ rxPackets, txPackets, rxBytes, txBytes });

export class TestGateway {
  readonly accumulator = new Accumulator();
  map: MarkMap;
  /** Per source: the dump text the next reading sees. */
  private readonly texts = new Map<string, string>();
  private readonly collector: Collector;
  /** How a dump's text is cut into the chunks the parser is pushed: its bytes in one chunk, as a runner gives them, unless a test says otherwise. */
  chunking: (text: string) => (string | Uint8Array)[] = (text) => [Buffer.from(text)];

  /** `usersDocument` null: no document, users are known by address (up to `maxUsers`). */
  constructor(usersDocument: object | null, sources: string[] = ['ipv4'], breakdown: Breakdown = 'user', maxUsers = 50_000) {
    this.map = usersDocument === null ? addressMarkMap(maxUsers) : buildMarkMap(parseUsersDocument(JSON.stringify(usersDocument), 'test users'), breakdown);
    this.accumulator.setUsers(this.map, 0);
    const textSources = sources.map(
      (name) =>
        new IptablesSource(
          name,
          async (visitor) => {
            const parser = new IptablesSaveParser(visitor);
            for (const chunk of this.chunking(this.texts.get(name) ?? '')) parser.push(chunk);
            parser.end();
          },
          { table: 'mangle', roots: ROOTS, remember: true },
        ),
    );
    this.collector = new Collector(textSources, this.accumulator, () => this.map);
  }

  /** One reading of every source whose text is given. */
  async read(texts: Record<string, string>): Promise<SourceReport[]> {
    for (const [name, text] of Object.entries(texts)) this.texts.set(name, text);
    return this.collector.collect();
  }

  sync(usersDocument: object, now: number): void {
    this.map = buildMarkMap(parseUsersDocument(JSON.stringify(usersDocument), 'test users'));
    this.accumulator.setUsers(this.map, now);
  }

  totals(code: string) {
    const series = [...this.accumulator.users()].find((s) => s.user.user_code === code);
    if (!series) throw new Error(`${code} is not exported`);
    return exact(series.totals);
  }

  all(): Record<string, ReturnType<typeof exact>> {
    return Object.fromEntries([...this.accumulator.users()].map((s) => [s.user.user_code, exact(s.totals)]));
  }

  unattributed() {
    return exact(this.accumulator.unattributed);
  }
}

/** Reads fixture files once through a fresh gateway. */
export async function readFixtures(usersDocument: object, fixtures: [source: string, path: string][], breakdown: Breakdown = 'user') {
  const gateway = new TestGateway(usersDocument, [], breakdown);
  const collector = new Collector(
    fixtures.map(([name, path]) => new IptablesSource(name, savedDump(path), { table: 'mangle', roots: ROOTS, remember: true })),
    gateway.accumulator,
    () => gateway.map,
  );
  const reports = await collector.collect();
  return { gateway, reports };
}
