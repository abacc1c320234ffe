/**
 * Pure: each shaper class's counters at the last complete reading (a TC
 * source keeps one per device), turning a reading's counters into increases.
 * Like the rule memory, only simpler: a device has a few thousand classes at
 * most, keyed by their class id.
 *
 * A class re-created by the client starts again at zero: packets or bytes
 * (u64, never wrapping) going down is a reset, and then every new value is the
 * increase. The kernel keeps drops and overlimits in 32 bits: one of them
 * going down alone is a wrap, and the increase is taken modulo 2^32.
 *
 * A class that has never had an owner keeps its counts for its first owner
 * (credit()), as a rule does; a reading that fails changes nothing (abort()).
 */
import { subtractCount, type Count } from '../shared/count.js';

export interface ClassCounters {
  packets: Count;
  bytes: Count;
  dropped: Count;
  overlimits: Count;
}

interface Remembered {
  counters: ClassCounters;
  credited: boolean;
}

const U32 = 2 ** 32;

export class ClassMemory {
  private known = new Map<string, Remembered>();
  private proposed = new Map<string, Remembered>();

  begin(): void {
    this.proposed = new Map();
  }

  /** The class's increases since the last complete reading, and whether its counts already went to a user. */
  observe(classid: string, counters: ClassCounters): { increase: ClassCounters; credited: boolean } {
    const last = this.known.get(classid);
    this.proposed.set(classid, { counters, credited: last?.credited ?? false });
    if (last === undefined || counters.packets < last.counters.packets || counters.bytes < last.counters.bytes) {
      return { increase: counters, credited: last?.credited ?? false };
    }
    return {
      increase: {
        packets: subtractCount(counters.packets, last.counters.packets),
        bytes: subtractCount(counters.bytes, last.counters.bytes),
        dropped: wrapping(last.counters.dropped, counters.dropped),
        overlimits: wrapping(last.counters.overlimits, counters.overlimits),
      },
      credited: last.credited,
    };
  }

  /** The class now has an owner: its counts go to users from this reading on. */
  credit(classid: string): void {
    const entry = this.proposed.get(classid);
    if (entry) entry.credited = true;
  }

  /** The reading is complete: adopt its counters, forget the classes it did not list. */
  commit(): void {
    this.known = this.proposed;
    this.proposed = new Map();
  }

  abort(): void {
    this.proposed = new Map();
  }
}

/** The increase of a 32-bit kernel counter: one wrap between two readings is told from a reset by packets and bytes. */
function wrapping(previous: Count, current: Count): Count {
  return current >= previous ? subtractCount(current, previous) : Number(current) + U32 - Number(previous);
}
