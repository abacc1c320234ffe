/** `markmeter snapshot`: one reading through the agent's reading path, printed as a table or JSON. */
import { UsageError } from '../errors.js';
import { createLogger, isOpen, stderrSink } from '../log.js';
import { ReadingPath } from '../reading-path.js';
import { markRulesFound } from '../sources/mark-rules.js';
import { loadSettings } from '../settings.js';
import { parseOptions } from './args.js';
import { renderJson, renderTable } from './report.js';

export const SNAPSHOT_HELP = `Usage: markmeter snapshot [--config FILE] [--users FILE] [--input FILE] [--input6 FILE] [--format table|json]

Takes one reading and prints each user's totals (the counters as they are now).

Options:
  --config FILE   settings file (JSON or YAML)
  --users FILE    users document (default: users.file or users.url of the settings)
  --input FILE    read this saved 'iptables-save -c' dump instead of running iptables-save
  --input6 FILE   read this saved 'ip6tables-save -c' dump instead of running ip6tables-save
                  (with --input or --input6, only the given dumps are read)
  --format F      table (default) or json
  -h, --help      this help`;

export async function snapshot(args: string[]): Promise<number> {
  const values = parseOptions(
    args,
    { config: { type: 'string' }, users: { type: 'string' }, input: { type: 'string' }, input6: { type: 'string' }, format: { type: 'string' } },
    SNAPSHOT_HELP,
  );
  if (values.help) {
    process.stdout.write(`${SNAPSHOT_HELP}\n`);
    return 0;
  }
  const format = (values.format as string | undefined) ?? 'table';
  if (format !== 'table' && format !== 'json') throw new UsageError(`--format must be table or json, got ${JSON.stringify(format)}`);
  const settings = loadSettings({ file: values.config as string | undefined, overrides: values.users ? { 'users.file': values.users, 'users.url': '' } : {} });
  // stdout is the report: logs go to stderr.
  const log = createLogger(settings.log.level, {}, stderrSink);
  const path = new ReadingPath({ settings, log, remember: false, inputs: { ipv4: values.input as string | undefined, ipv6: values.input6 as string | undefined } });
  if (!(await path.loadUsersOnce())) log.info('no users document (--users, users.file or users.url): users are known by address');

  let failed = false;
  const reports = await path.collect();
  for (const report of reports) {
    if (!report.ok) {
      failed = true;
      log.error(`reading the ${report.source} table failed`, { source: report.source, error: report.error });
    } else if (report.skipped.length > 0) {
      log.warn('MARK rules in chains without a single direction are not counted', { source: report.source, chains: report.skipped });
    }
  }
  if (failed) return 1;
  // Zero rows look like a quiet network: say when there was nothing to count.
  const found = markRulesFound(reports, path.sources);
  if (found?.markRules === 0) {
    const { table } = settings.iptables;
    log.warn(`the reading found no MARK rule in the ${table} table (${found.rules} rule${found.rules === 1 ? '' : 's'}): every user's total is zero; markmeter check says more`, { table, rules: found.rules });
  }
  const render = format === 'json' ? renderJson : renderTable;
  // Written in pieces of about 64 KiB: neither one giant string nor a write per user.
  // A reader that went away (`| head -1`) has had what it wanted: stop there, exit 0.
  const { stdout } = process;
  let pending = '';
  const flush = async () => {
    if (isOpen(stdout) && !stdout.write(pending)) await drainedOrClosed(stdout);
    pending = '';
  };
  for (const chunk of render({ users: path.accumulator.users(), unattributed: path.accumulator.unattributed })) {
    if (!isOpen(stdout)) return 0;
    pending += chunk;
    if (pending.length >= 65536) await flush();
  }
  await flush();
  return 0;
}

/** Resolves when `stream` can take more, or has closed or failed (then there is no point waiting). */
function drainedOrClosed(stream: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      for (const event of ['drain', 'close', 'error']) stream.off(event, done);
      resolve();
    };
    for (const event of ['drain', 'close', 'error']) stream.on(event, done);
  });
}
