/**
 * The TC source: one per shaping device (`tc.devices`). A reading runs
 * `tc -s class show dev X` and `tc filter show dev X` (through the same
 * command runner as the save commands: no shell, a timeout, an output cap),
 * parses both strictly, and counts each leaf class for the user its filters
 * tie it to: an fw filter's mark through the mark pool, a u32 filter's host
 * address through the users' addresses. A class no filter ties to one user is
 * unattributed. The device's direction is the direction of all its classes.
 *
 * Only leaf classes count: an HTB parent's counters are its children's sum.
 */
import { StringDecoder } from 'node:string_decoder';
import { NO_USER, ownerByAddress, ownerOfAddress, type MarkMap } from '../../attribution/mark-map.js';
import type { Direction } from '../../attribution/chain-directions.js';
import { DumpError } from '../../errors.js';
import type { Settings } from '../../settings.js';
import type { Count } from '../../shared/count.js';
import { ClassMemory, type ClassCounters } from '../../totals/class-memory.js';
import { execaRunner, type CommandRunner, type RunOptions } from '../iptables/save-command.js';
import type { DeltaSink, ReadingReport, Source } from '../source.js';
import { parseClassStats, parseFilters, type TcFilter } from './parse.js';

export interface TcDevice {
  name: string;
  /** The direction the device's egress shapes: tx (upload) for the tunnel side, rx (download) for the users' side. */
  direction: Direction;
}

/** Runs tc with `args` and returns its whole output. */
export type TcCommand = (args: readonly string[]) => Promise<string>;

/** tc through the command runner; its failures say what to check for tc. */
export function tcCommand(file: string, options: RunOptions, runner: CommandRunner = execaRunner): TcCommand {
  return async (args) => {
    let output = '';
    const decoder = new StringDecoder('utf8');
    try {
      await runner(file, args, options, (chunk) => (output += typeof chunk === 'string' ? chunk : decoder.write(chunk)));
      output += decoder.end();
    } catch (error) {
      if (!(error instanceof DumpError)) throw error;
      const command = [file, ...args].join(' ');
      if (error.failure === 'missing_binary') {
        throw new DumpError('missing_binary', command, `${file} was not found: install iproute2 in this image, or set tc.command`, { cause: error });
      }
      if (error.failure === 'exit_code') {
        throw new DumpError('exit_code', command, `${error.message.split('; ')[0]}; check that tc.devices names devices of this network namespace`, { cause: error });
      }
      throw error;
    }
    return output;
  };
}

/** Tells a class's owner slot: NO_OWNER, or the mapping's owner index. */
const NO_OWNER = -1;

export class TcSource implements Source {
  readonly measures = 'shaped';
  readonly name: string;
  private readonly memory: ClassMemory | undefined;

  constructor(
    private readonly device: TcDevice,
    private readonly tc: TcCommand,
    options: { remember: boolean },
  ) {
    this.name = `tc ${device.name}`;
    this.memory = options.remember ? new ClassMemory() : undefined;
  }

  async read(owners: MarkMap, sink: DeltaSink): Promise<ReadingReport> {
    const { memory, device } = this;
    memory?.begin();
    try {
      const [classText, filterText] = await Promise.all([this.tc(['-s', 'class', 'show', 'dev', device.name]), this.tc(['filter', 'show', 'dev', device.name])]);
      const classes = parseClassStats(classText);
      const ownerOf = classOwners(parseFilters(filterText), owners);
      const parents = new Set(classes.map((c) => c.parent));
      const leaves = classes.filter((c) => c.counters !== undefined && !parents.has(c.classid));
      const increases: { owner: number | null; counts: ClassCounters }[] = [];
      const unowned: string[] = [];
      for (const leaf of leaves) {
        const counters = leaf.counters!;
        const owner = ownerOf(leaf.classid);
        if (owner === NO_OWNER) unowned.push(leaf.classid);
        let counts: ClassCounters = counters;
        if (memory) {
          const seen = memory.observe(leaf.classid, counters);
          counts = seen.increase;
          // Its first owner gets the class's counts from before it had one, as a rule's first owner does.
          if (!seen.credited && owner !== NO_OWNER) {
            memory.credit(leaf.classid);
            counts = counters;
          }
        }
        increases.push({ owner: owner === NO_OWNER ? null : owner, counts });
      }
      // All or nothing: handed out only once both outputs were read and parsed whole.
      for (const { owner, counts } of increases) {
        if (!isZero(counts)) sink(owner, device.direction, counts.packets, counts.bytes, counts.dropped, counts.overlimits);
      }
      memory?.commit();
      return { rules: classes.length, markRules: leaves.length, skipped: [], unowned: { rules: unowned.length, marks: [], classes: unowned } };
    } catch (error) {
      memory?.abort();
      throw error;
    }
  }
}

/**
 * Pure: the owner of each class by its filters. A class tied by its filters to
 * exactly one user is that user's; tied to none, to several, or by a filter
 * that names no single user, it is NO_OWNER (unattributed, never guessed).
 */
export function classOwners(filters: readonly TcFilter[], map: MarkMap): (classid: string) => number {
  const ties = new Map<string, Set<number>>();
  for (const filter of filters) {
    let owner = NO_OWNER;
    if (filter.tie === 'address') {
      owner = (map.byAddress ? ownerByAddress(map, filter.address) : ownerOfAddress(map, filter.address)) ?? NO_OWNER;
    } else if (filter.tie === 'mark' && !map.byAddress) {
      const pooled = map.byMark.get(filter.mark);
      owner = pooled === undefined || pooled === NO_USER ? NO_OWNER : pooled;
    }
    let set = ties.get(filter.classid);
    if (!set) ties.set(filter.classid, (set = new Set()));
    set.add(owner);
  }
  return (classid) => {
    const set = ties.get(classid);
    return set?.size === 1 ? [...set][0]! : NO_OWNER;
  };
}

function isZero(c: ClassCounters): boolean {
  const zero = (n: Count) => n === 0;
  return zero(c.packets) && zero(c.bytes) && zero(c.dropped) && zero(c.overlimits);
}

/** The TC sources the settings ask for: one per device of tc.devices. */
export function tcSources(settings: Settings, options: { remember: boolean; runner?: CommandRunner }): TcSource[] {
  const run = { timeoutMs: settings.collect.timeoutMs, maxOutputBytes: settings.collect.maxOutputBytes };
  const tc = tcCommand(settings.tc.command, run, options.runner);
  return settings.tc.devices.map((device) => new TcSource(device, tc, options));
}
