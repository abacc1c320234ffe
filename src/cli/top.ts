/**
 * `markmeter top`: a live per-user view read straight from the mangle table
 * with the agent's own reading path. Rates are the growth of the monotonic
 * totals between two readings. Pure parts (rates, sorting, filtering, the
 * screen) are separate from the terminal loop at the bottom.
 */
import { UsageError } from '../errors.js';
import { createLogger } from '../log.js';
import { ReadingPath } from '../reading-path.js';
import { loadSettings, type Settings } from '../settings.js';
import { InterfaceReader } from '../sources/interfaces.js';
import { zeroTotals, type Totals, type UserSeries } from '../totals/accumulator.js';
import type { Count } from '../shared/count.js';
import { parseOptions } from './args.js';
import { seriesLabel } from './report.js';

export const TOP_HELP = `Usage: markmeter top [--config FILE] [--users FILE] [--interval SECONDS]

A live per-user view read straight from the mangle table: RX and TX packets/s
and bits/s per user, busiest first, with the totals, the unattributed traffic
and the interface totals. Keys: s changes the sort, / filters by user code or
IP (Enter keeps it, Esc clears it), q quits. When stdout is not a terminal it
prints one plain table per interval.

Options:
  --config FILE       settings file (JSON or YAML)
  --users FILE        users document (default: users.file / users.url of the settings)
  --interval SECONDS  refresh interval (default 1)
  -h, --help          this help`;

export async function top(args: string[]): Promise<number> {
  const values = parseOptions(args, { config: { type: 'string' }, users: { type: 'string' }, interval: { type: 'string' } }, TOP_HELP);
  if (values.help) {
    process.stdout.write(`${TOP_HELP}\n`);
    return 0;
  }
  const seconds = Number(values.interval ?? 1);
  if (!Number.isFinite(seconds) || seconds < 0.1) throw new UsageError(`--interval must be a number of seconds (0.1 or more), got ${JSON.stringify(values.interval)}`);
  const settings = loadSettings({ file: values.config as string | undefined, overrides: values.users ? { 'users.file': values.users, 'users.url': '' } : {} });
  return runTop({ settings, intervalMs: seconds * 1000, out: process.stdout, input: process.stdin });
}

/** One row: a series (a user, or with breakdown by mark one of a user's marks) and its rates. */
export interface UserRate {
  user_code: string;
  user_intra_ip: string;
  /** What the row shows for its owner: the user code, with breakdown by mark also the mark and its peer. */
  label: string;
  rxPps: number;
  txPps: number;
  rxBps: number;
  txBps: number;
  /** With the TC source: packets the shaper dropped per second, both directions (undefined without it). */
  dropsPs?: number;
}

/** A series' totals at one reading, and with the TC source the shaper's drops (both directions). */
export type Counted = Totals & { dropped?: number };

export const SORTS = ['total', 'rx', 'tx', 'bits', 'user'] as const;
export type SortKey = (typeof SORTS)[number];

/**
 * Pure: rates from two readings `seconds` apart: `before` holds copies of the
 * totals of the series then, `after` the series now. A series is the same
 * object from one reading to the next, so each row pairs with itself (one per
 * mark with breakdown by mark).
 */
export function ratesBetween(before: ReadonlyMap<UserSeries, Counted>, after: Iterable<{ series: UserSeries; totals: Counted }>, seconds: number): UserRate[] {
  const per = (a: Count | undefined, b: Count) => (Number(b) - Number(a ?? b)) / seconds;
  return [...after].map(({ series, totals }) => {
    const old = before.get(series);
    const { user_code, user_intra_ip } = series.user;
    return {
      user_code,
      user_intra_ip,
      label: seriesLabel(series.user),
      rxPps: per(old?.rxPackets, totals.rxPackets),
      txPps: per(old?.txPackets, totals.txPackets),
      rxBps: 8 * per(old?.rxBytes, totals.rxBytes),
      txBps: 8 * per(old?.txBytes, totals.txBytes),
      ...(totals.dropped === undefined ? {} : { dropsPs: per(old?.dropped, totals.dropped) }),
    };
  });
}

/** Pure: filter by a user code or IP substring, then sort (busiest first). */
export function arrange(rates: UserRate[], sort: SortKey, filter: string): UserRate[] {
  const needle = filter.toLowerCase();
  // The label holds the user code, and the display name and mark when there are.
  const shown = needle ? rates.filter((r) => r.label.toLowerCase().includes(needle) || r.user_intra_ip.includes(needle)) : [...rates];
  const key: Record<SortKey, (r: UserRate) => number | string> = {
    total: (r) => r.rxPps + r.txPps,
    rx: (r) => r.rxPps,
    tx: (r) => r.txPps,
    bits: (r) => r.rxBps + r.txBps,
    user: (r) => r.user_code,
  };
  const k = key[sort];
  return shown.sort((a, b) => {
    const x = k(a);
    const y = k(b);
    if (typeof x === 'string') return x.localeCompare(y as string);
    return (y as number) - x || a.user_code.localeCompare(b.user_code);
  });
}

const rate = (n: number) => (n >= 1e9 ? `${(n / 1e9).toFixed(1)}G` : n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : n.toFixed(n < 10 ? 1 : 0));

export interface Screen {
  rates: UserRate[];
  unattributedPps: number;
  interfacePps: { iface: string; pps: number }[];
  problem: string;
  sort: SortKey;
  filter: string;
  editing: boolean;
  width: number;
  height: number;
}

/** Pure: the lines of one screen (or, with height Infinity, one plain table). */
export function render(screen: Screen): string[] {
  // Wide enough for a mark and its peer after the user (breakdown by mark), within reason.
  const label = Math.min(40, Math.max(16, ...screen.rates.map((r) => r.label.length)));
  const total = screen.rates.reduce((n, r) => n + r.rxPps + r.txPps, 0);
  // The TC source's drops: a column of their own when any row has them.
  const drops = screen.rates.some((r) => r.dropsPs !== undefined);
  const dropCell = (r?: UserRate) => (!drops ? '' : ` ${(r === undefined ? 'DROP/s' : rate(r.dropsPs ?? 0)).padStart(9)}`);
  const lines = [
    `markmeter top  users ${screen.rates.length}  total ${rate(total)} pkt/s  unattributed ${rate(screen.unattributedPps)} pkt/s  ${screen.interfacePps.map((i) => `${i.iface} ${rate(i.pps)} pkt/s`).join('  ')}`,
    screen.problem ? `!! ${screen.problem}` : `sort: ${screen.sort} (s)  filter: ${screen.editing ? `${screen.filter}_` : screen.filter || '-'} (/)  quit (q)`,
    `${'USER'.padEnd(label)} ${'IP'.padEnd(20)} ${'RX pkt/s'.padStart(9)} ${'TX pkt/s'.padStart(9)} ${'RX bit/s'.padStart(9)} ${'TX bit/s'.padStart(9)}${dropCell()}`,
  ];
  const shown = arrange(screen.rates, screen.sort, screen.filter);
  // An empty table after a filter would read as "no traffic": say that the filter hides every row.
  if (screen.filter && shown.length === 0 && screen.rates.length > 0) {
    lines.push(`filter ${JSON.stringify(screen.filter)} matches none of the ${screen.rates.length} rows (user code, name or IP): ${screen.editing ? 'Esc' : '/ then Esc'} clears it`);
  }
  for (const r of shown.slice(0, Math.max(0, screen.height - lines.length))) {
    lines.push(`${r.label.slice(0, label).padEnd(label)} ${r.user_intra_ip.padEnd(20)} ${rate(r.rxPps).padStart(9)} ${rate(r.txPps).padStart(9)} ${rate(r.rxBps).padStart(9)} ${rate(r.txBps).padStart(9)}${dropCell(r)}`);
  }
  return lines.map((l) => l.slice(0, screen.width));
}

export interface TopOptions {
  settings: Settings;
  intervalMs: number;
  out: NodeJS.WriteStream;
  input: NodeJS.ReadStream;
}

/** The live loop: a full-screen view on a terminal, one plain table per interval otherwise. */
export async function runTop({ settings, intervalMs, out, input }: TopOptions): Promise<number> {
  // The agent's reading path, with its memory: rates are the growth of its totals. Its logs would disturb the screen.
  const path = new ReadingPath({ settings, log: createLogger('silent'), remember: true });
  const { accumulator } = path;
  let problem = '';
  const manager = path.watchUsers();
  manager?.on('error', (error) => (problem = error.message));
  await manager?.start();
  const interfaces = new InterfaceReader(settings.interfaces.names, () => {});

  const tty = Boolean(out.isTTY && input.isTTY);
  let sort: SortKey = 'total';
  let filter = '';
  let editing = false;
  let stopped = false;
  let last: { at: number; users: Map<UserSeries, Counted>; unattributed: number; interfaces: Map<string, number> } | undefined;
  let screen: Screen | undefined;
  // The rates are the MARK rules' (or, with the TC source alone, the shaper's); the drops are the shaper's.
  const marked = settings.collect.sources.includes('iptables');
  const shaped = settings.collect.sources.includes('tc');
  const counted = (series: UserSeries): Counted => {
    const totals = marked ? series.totals : series.shaped ?? zeroTotals();
    return shaped ? { ...totals, dropped: Number(series.shaped?.rxDropped ?? 0) + Number(series.shaped?.txDropped ?? 0) } : { ...totals };
  };

  const snapshot = () => {
    const users = new Map<UserSeries, Counted>();
    const now: { series: UserSeries; totals: Counted }[] = [];
    for (const series of accumulator.users()) {
      users.set(series, counted(series));
      now.push({ series, totals: counted(series) });
    }
    const unattributed = Number(accumulator.unattributed.rxPackets) + Number(accumulator.unattributed.txPackets);
    const ifaces = new Map([...interfaces.totals()].map((i) => [i.iface, Number(i.rxPackets) + Number(i.txPackets)]));
    return { at: Date.now(), users, now, unattributed, interfaces: ifaces };
  };
  const draw = () => {
    if (!screen) return;
    screen = { ...screen, sort, filter, editing };
    if (tty) out.write(`\x1b[H\x1b[2J${render({ ...screen, width: out.columns || 100, height: out.rows || 30 }).join('\r\n')}`);
    else out.write(`${render({ ...screen, width: 200, height: Infinity }).join('\n')}\n\n`);
  };
  const tick = async () => {
    const reports = await path.collect();
    await interfaces.read();
    const failed = reports.find((r) => !r.ok);
    problem = failed && !failed.ok ? `cannot read the ${failed.source} table: ${failed.error.message}` : problem.startsWith('cannot read the') ? '' : problem;
    const now = snapshot();
    if (last) {
      const seconds = Math.max((now.at - last.at) / 1000, 0.001);
      screen = {
        rates: ratesBetween(last.users, now.now, seconds),
        unattributedPps: (now.unattributed - last.unattributed) / seconds,
        interfacePps: [...now.interfaces].map(([iface, n]) => ({ iface, pps: (n - (last!.interfaces.get(iface) ?? n)) / seconds })),
        problem,
        sort,
        filter,
        editing,
        width: 0,
        height: 0,
      };
      draw();
    }
    last = now;
  };

  return new Promise<number>((resolve) => {
    let timer: NodeJS.Timeout | undefined;
    const finish = (code: number) => {
      if (stopped) return;
      stopped = true;
      clearTimeout(timer);
      manager?.stop();
      if (tty) {
        input.setRawMode(false);
        input.pause();
        out.write('\x1b[?25h\x1b[?1049l'); // cursor back, leave the alternate screen
      }
      resolve(code);
    };
    process.once('SIGINT', () => finish(0));
    process.once('SIGTERM', () => finish(0));
    // The reader went away (top | head): that is the end, not an error.
    out.on('error', () => finish(0));
    if (tty) {
      out.write('\x1b[?1049h\x1b[?25l'); // alternate screen, no cursor
      input.setRawMode(true);
      input.setEncoding('utf8');
      input.on('data', (keys: string) => {
        for (const key of keys) {
          if (editing) {
            if (key === '\r' || key === '\n') editing = false;
            else if (key === '\x1b') {
              editing = false;
              filter = '';
            } else if (key === '\x7f' || key === '\b') filter = filter.slice(0, -1);
            else if (key >= ' ') filter += key;
          } else if (key === 'q' || key === '\x03') return finish(0);
          else if (key === 's') sort = SORTS[(SORTS.indexOf(sort) + 1) % SORTS.length]!;
          else if (key === '/') {
            editing = true;
            filter = '';
          }
        }
        draw();
      });
    }
    const loop = async () => {
      if (stopped) return;
      try {
        await tick();
      } catch (error) {
        problem = (error as Error).message;
      }
      if (!stopped) timer = setTimeout(() => void loop(), intervalMs);
    };
    void loop();
  });
}
