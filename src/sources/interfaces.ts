/** Interface totals from sysfs (`/sys/class/net/<iface>/statistics`), kept monotonic. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { addCount, counterDelta, parseDigits, type Count } from '../shared/count.js';

export interface InterfaceTotals {
  iface: string;
  rxPackets: Count;
  txPackets: Count;
}

interface Entry {
  totals: InterfaceTotals;
  last: { rx: Count; tx: Count };
}

export class InterfaceReader {
  private readonly entries = new Map<string, Entry>();
  private readonly missing = new Set<string>();

  constructor(
    private readonly names: readonly string[],
    private readonly onMissing: (iface: string, error: Error) => void,
    private readonly root = '/sys/class/net',
  ) {}

  /** Reads every configured interface; a missing one is skipped and reported once until it appears. */
  async read(): Promise<void> {
    await Promise.all(
      this.names.map(async (iface) => {
        try {
          const [rx, tx] = await Promise.all([this.stat(iface, 'rx_packets'), this.stat(iface, 'tx_packets')]);
          this.missing.delete(iface);
          const entry = this.entries.get(iface);
          if (!entry) {
            this.entries.set(iface, { totals: { iface, rxPackets: rx, txPackets: tx }, last: { rx, tx } });
            return;
          }
          // The counters restart when the interface is recreated: count from there.
          entry.totals.rxPackets = addCount(entry.totals.rxPackets, counterDelta(entry.last.rx, rx));
          entry.totals.txPackets = addCount(entry.totals.txPackets, counterDelta(entry.last.tx, tx));
          entry.last = { rx, tx };
        } catch (error) {
          if (!this.missing.has(iface)) this.onMissing(iface, error as Error);
          this.missing.add(iface);
        }
      }),
    );
  }

  totals(): IterableIterator<InterfaceTotals> {
    return [...this.entries.values()].map((e) => e.totals).values();
  }

  private async stat(iface: string, name: string): Promise<Count> {
    // Synchronously: sysfs answers from memory (see readLinks).
    const text = readFileSync(join(this.root, iface, 'statistics', name), 'utf8').trim();
    if (!/^\d{1,20}$/.test(text)) throw new Error(`unexpected content in ${iface}/statistics/${name}: ${JSON.stringify(text)}`);
    return parseDigits(text, 0, text.length);
  }
}
