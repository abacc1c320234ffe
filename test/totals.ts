/** Test helper: totals with every counter as a bigint, so deepEqual can compare them with literals like 5n. */
import type { Totals } from '../src/attribution/accumulator.js';

export function exact(totals: Totals): { rxPackets: bigint; txPackets: bigint; rxBytes: bigint; txBytes: bigint } {
  return {
    rxPackets: BigInt(totals.rxPackets),
    txPackets: BigInt(totals.txPackets),
    rxBytes: BigInt(totals.rxBytes),
    txBytes: BigInt(totals.txBytes),
  };
}
