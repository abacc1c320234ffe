/**
 * Pure: renders per-user totals for `markmeter snapshot` as a table or as JSON.
 * Counters are u64, so JSON numbers are written from their exact digits rather
 * than through JSON.stringify (which cannot hold integers above 2^53).
 */
import type { Totals, UserSeries } from '../totals/accumulator.js';
import type { SeriesOwner } from '../attribution/mark-map.js';
import type { Count } from '../shared/count.js';

export interface TotalsReport {
  users: Iterable<UserSeries>;
  unattributed: Totals;
}

const COLUMNS = ['rx_packets', 'tx_packets', 'rx_bytes', 'tx_bytes'] as const;

function values(t: Totals): Count[] {
  return [t.rxPackets, t.txPackets, t.rxBytes, t.txBytes];
}

function sorted(users: Iterable<UserSeries>): UserSeries[] {
  return [...users].sort(
    (a, b) =>
      a.user.user_code.localeCompare(b.user.user_code) ||
      a.user.user_intra_ip.localeCompare(b.user.user_intra_ip) ||
      (a.user.mark_id ?? '').localeCompare(b.user.mark_id ?? '', undefined, { numeric: true }),
  );
}

/** The JSON form the README documents, written in pieces so a large report is never one giant string. */
export function* renderJson(report: TotalsReport): Generator<string> {
  const counters = (t: Totals) => COLUMNS.map((c, i) => `"${c}":${values(t)[i]}`).join(',');
  yield '{"users":[';
  let first = true;
  for (const { user, totals } of sorted(report.users)) {
    const mark = user.mark_id === undefined ? '' : `"mark_id":${JSON.stringify(user.mark_id)},"peer_ip":${JSON.stringify(user.peer_ip ?? '')},`;
    const name = user.user_name === undefined ? '' : `"user_name":${JSON.stringify(user.user_name)},`;
    yield `${first ? '\n' : ',\n'}{"user_code":${JSON.stringify(user.user_code)},"user_intra_ip":${JSON.stringify(user.user_intra_ip)},${name}${mark}${counters(totals)}}`;
    first = false;
  }
  yield `\n],"unattributed":{${counters(report.unattributed)}}}\n`;
}

/** How a table names a series: its user code, and with breakdown by mark the mark and its peer after it. */
export function seriesLabel(user: SeriesOwner): string {
  const code = user.user_name === undefined ? user.user_code : `${user.user_code} (${user.user_name})`;
  return user.mark_id === undefined ? code : `${code} #${user.mark_id || '-'} ${user.peer_ip || ''}`.trim();
}

export function* renderTable(report: TotalsReport): Generator<string> {
  const rows: string[][] = [['USER_CODE', 'USER_INTRA_IP', ...COLUMNS.map((c) => c.toUpperCase())]];
  for (const { user, totals } of sorted(report.users)) rows.push([seriesLabel(user), user.user_intra_ip, ...values(totals).map(String)]);
  rows.push(['(unattributed)', '-', ...values(report.unattributed).map(String)]);
  const widths = rows[0]!.map((_, col) => Math.max(...rows.map((r) => r[col]!.length)));
  for (const row of rows) {
    yield `${row.map((cell, col) => (col < 2 ? cell.padEnd(widths[col]!) : cell.padStart(widths[col]!))).join('  ').trimEnd()}\n`;
  }
}
