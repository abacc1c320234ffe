/**
 * What every source of per-user counters is: the iptables save commands (one
 * source per address family) now; another route (the TC classes) is another
 * folder under sources/ that implements this and is added to the list in
 * reading-path.ts, and nowhere else.
 *
 * A source owns whatever it needs between readings (the iptables source keeps
 * every rule's last counters) and turns one reading into increases per owner
 * and direction. Owners are indexes into the reading's MarkMap (null: no
 * user's). The collector adds them to the totals without knowing the source.
 */
import type { MarkMap } from '../attribution/mark-map.js';
import type { Direction } from '../attribution/chain-directions.js';
import type { Count } from '../shared/count.js';

/**
 * Receives one reading's increases: `owner` indexes the mapping's users, null
 * is unattributed traffic. A shaping source also hands the class's drops and
 * overlimits.
 */
export type DeltaSink = (owner: number | null, direction: Direction, packets: Count, bytes: Count, dropped?: Count, overlimits?: Count) => void;

/**
 * What a source's counters describe: traffic the MARK rules marked
 * (net_user_*), or traffic the shaper's classes handled, with their drops
 * (net_user_tc_*). The totals keep the two apart.
 */
export type Measures = 'marked' | 'shaped';

/** What a reading read, for logs, self-telemetry and `check`. */
export interface ReadingReport {
  /** Entries read (rules of the table). */
  rules: number;
  /** Entries that count for users (MARK rules). */
  markRules: number;
  /** Entries not counted because their direction is not single: reported, never guessed. */
  skipped: { chain: string; reason: 'ambiguous' | 'unreached'; rules: number }[];
  /** With listUnowned (`check`): entries no user owns, and their marks (or class ids). */
  unowned?: { rules: number; marks: number[]; classes?: string[] };
}

export interface Source {
  /** Names the source in reports, logs and self-telemetry (`ipv4`, `ipv6`, `tc wg0`). */
  readonly name: string;
  readonly measures: Measures;
  /**
   * One reading, all or nothing: the increases since this source's last
   * complete reading go to `sink` only once the reading is complete; a reading
   * that fails rejects, hands out nothing and leaves the source as it was.
   */
  read(owners: MarkMap, sink: DeltaSink): Promise<ReadingReport>;
}
