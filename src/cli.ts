#!/usr/bin/env node
/** The command line: `markmeter run` (the agent) and `markmeter snapshot` (one reading, printed). */
import { parseArgs } from 'node:util';
import { Accumulator } from './totals/accumulator.js';
import { buildMarkMap, EMPTY_MARK_MAP } from './attribution/mark-map.js';
import { choiceMessage } from './sources/iptables/backend.js';
import { Collector, fileSource, tableSources, type TableSource } from './sources/collect.js';
import { FileUsersSource } from './users/file-source.js';
import { parseUsersDocument } from './users/document.js';
import { MarkmeterError, UsageError, UsersSourceError } from './errors.js';
import { createLogger, isOpen, stderrSink, surviveClosedOutput } from './log.js';
import { renderJson, renderTable } from './cli/report.js';
import { describeSettings, loadSettings, settingOrigins } from './settings.js';
import { VERSION } from './version.js';

const USAGE = `markmeter ${VERSION}: per-user packet and byte counters from iptables MARK rules, pushed over OTLP

Usage:
  markmeter run [--config FILE]
  markmeter check [--config FILE]
  markmeter top [--config FILE] [--users FILE] [--interval SECONDS]
  markmeter snapshot [--config FILE] [--users FILE] [--input FILE] [--input6 FILE] [--format table|json]
  markmeter --version

Run 'markmeter <command> --help' for a command's options.`;

const RUN_HELP = `Usage: markmeter run [--config FILE]

Runs the agent: reads the mangle counters every collect.intervalMs, attributes
them to the users of users.file, and pushes cumulative per-user counters over
OTLP/HTTP every export.intervalMs to OTEL_EXPORTER_OTLP_METRICS_ENDPOINT or
OTEL_EXPORTER_OTLP_ENDPOINT (default http://localhost:4318/v1/metrics).
SIGTERM/SIGINT take a last reading, push it and exit 0; SIGHUP reloads the
users document.

Options:
  --config FILE   settings file (JSON or YAML); env vars override it
  -h, --help      this help

Settings (key, env var, default):
${describeSettings()
  .map((s) => `  ${s.key.padEnd(24)} ${s.env.padEnd(34)} ${JSON.stringify(s.default)}\n      ${s.doc}`)
  .join('\n')}`;

const SNAPSHOT_HELP = `Usage: markmeter snapshot [--config FILE] [--users FILE] [--input FILE] [--input6 FILE] [--format table|json]

Takes one reading and prints each user's totals (the counters as they are now).

Options:
  --config FILE   settings file (JSON or YAML)
  --users FILE    users document (default: users.file of the settings)
  --input FILE    read this saved 'iptables-save -c' dump instead of running iptables-save
  --input6 FILE   read this saved 'ip6tables-save -c' dump instead of running ip6tables-save
                  (with --input or --input6, only the given dumps are read)
  --format F      table (default) or json
  -h, --help      this help`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'run':
      return run(rest);
    case 'snapshot':
      return snapshot(rest);
    case 'check':
      return check(rest);
    case 'top':
      return top(rest);
    case '--version':
    case '-v':
      process.stdout.write(`${VERSION}\n`);
      return 0;
    case undefined:
    case '--help':
    case '-h':
    case 'help':
      process.stdout.write(`${USAGE}\n`);
      return command === undefined ? 2 : 0;
    default:
      throw new UsageError(`unknown command ${JSON.stringify(command)}\n\n${USAGE}`);
  }
}

function parse<T extends Record<string, { type: 'string' | 'boolean'; short?: string }>>(args: string[], options: T, help: string) {
  try {
    return parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: false });
  } catch (error) {
    throw new UsageError(`${(error as Error).message}\n\n${help}`);
  }
}

async function run(args: string[]): Promise<number> {
  const { values } = parse(args, { config: { type: 'string' } }, RUN_HELP);
  if (values.help) {
    process.stdout.write(`${RUN_HELP}\n`);
    return 0;
  }
  const settings = loadSettings({ file: values.config as string | undefined });
  const log = createLogger(settings.log.level);
  // Loaded here, not at the top: snapshot has no use for the OpenTelemetry SDK.
  const { Agent } = await import('./agent.js');
  const agent = new Agent({ settings, log });
  // The handlers are in place before start-up gets to wait on anything, so a
  // signal during start-up is handled (after it), never the default way.
  const starting = agent.start();
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) {
        log.warn(`second ${signal}: exiting without waiting`);
        resolve(1);
        return;
      }
      stopping = true;
      log.info(`${signal} received: taking a last reading and pushing it`);
      // A collector that hangs must not keep the container from stopping.
      const deadline = setTimeout(() => {
        log.error('shutdown took longer than 10 s: exiting anyway');
        resolve(1);
      }, 10_000);
      deadline.unref();
      starting.then(() => agent.stop()).then(
        () => resolve(0),
        (error: unknown) => {
          log.error('shutdown failed', { error });
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    process.on('SIGHUP', () => {
      log.info('SIGHUP received: reloading the users document');
      void starting.then(() => agent.reloadUsers());
    });
    starting.catch((error: unknown) => {
      log.error('markmeter could not start', { error });
      resolve(1);
    });
  });
}

const CHECK_HELP = `Usage: markmeter check [--config FILE]

Diagnostics to run first: the settings (and where each non-default one comes
from), which iptables backend holds the mangle rules, whether the users
document loads, how many MARK rules the users own (and the marks nobody owns),
whether the configured interfaces exist, and whether the OTLP endpoint accepts
an export. Exits 0 only when every check passes; a failure says what to do.

Options:
  --config FILE   settings file (JSON or YAML)
  -h, --help      this help`;

async function check(args: string[]): Promise<number> {
  const { values } = parse(args, { config: { type: 'string' } }, CHECK_HELP);
  if (values.help) {
    process.stdout.write(`${CHECK_HELP}\n`);
    return 0;
  }
  const file = values.config as string | undefined;
  const print = (ok: boolean, name: string, detail: string) => process.stdout.write(`${ok ? 'ok  ' : 'FAIL'}  ${name}: ${detail}\n`);
  let settings;
  try {
    settings = loadSettings({ file });
  } catch (error) {
    print(false, 'settings', (error as Error).message);
    return 1;
  }
  const origins = settingOrigins(settings, file);
  print(true, 'settings', `valid${file ? ` (${file})` : ''}${origins.length ? `; not default: ${origins.map((o) => `${o.key}=${JSON.stringify(o.value)} (${o.origin})`).join(', ')}` : '; all defaults'}`);
  const { runChecks } = await import('./cli/check.js');
  const results = await runChecks(settings);
  for (const result of results) print(result.ok, result.name, result.detail);
  return results.every((r) => r.ok) ? 0 : 1;
}

const TOP_HELP = `Usage: markmeter top [--config FILE] [--users FILE] [--interval SECONDS]

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

async function top(args: string[]): Promise<number> {
  const { values } = parse(args, { config: { type: 'string' }, users: { type: 'string' }, interval: { type: 'string' } }, TOP_HELP);
  if (values.help) {
    process.stdout.write(`${TOP_HELP}\n`);
    return 0;
  }
  const seconds = Number(values.interval ?? 1);
  if (!Number.isFinite(seconds) || seconds < 0.1) throw new UsageError(`--interval must be a number of seconds (0.1 or more), got ${JSON.stringify(values.interval)}`);
  const settings = loadSettings({ file: values.config as string | undefined, overrides: values.users ? { 'users.file': values.users, 'users.url': '' } : {} });
  const { runTop } = await import('./cli/top.js');
  return runTop({ settings, intervalMs: seconds * 1000, out: process.stdout, input: process.stdin });
}

async function snapshot(args: string[]): Promise<number> {
  const { values } = parse(
    args,
    {
      config: { type: 'string' },
      users: { type: 'string' },
      input: { type: 'string' },
      input6: { type: 'string' },
      format: { type: 'string' },
    },
    SNAPSHOT_HELP,
  );
  if (values.help) {
    process.stdout.write(`${SNAPSHOT_HELP}\n`);
    return 0;
  }
  const format = (values.format as string | undefined) ?? 'table';
  if (format !== 'table' && format !== 'json') throw new UsageError(`--format must be table or json, got ${JSON.stringify(format)}`);
  const settings = loadSettings({ file: values.config as string | undefined });
  // stdout is the report: logs go to stderr.
  const log = createLogger(settings.log.level, {}, stderrSink);

  const usersFile = (values.users as string | undefined) ?? settings.users.file;
  const accumulator = new Accumulator();
  let markMap = EMPTY_MARK_MAP;
  if (usersFile) {
    let text: string;
    try {
      // The agent's file source, so users.maxBytes bounds a snapshot too.
      text = await new FileUsersSource(usersFile, undefined, settings.users.maxBytes).read();
    } catch (error) {
      throw new UsersSourceError(usersFile, (error as Error).message, { cause: error });
    }
    const users = parseUsersDocument(text, usersFile);
    markMap = buildMarkMap(users, settings.attribution.breakdown);
    accumulator.setUsers(markMap.users, Date.now());
  } else {
    log.warn('no users document (--users or users.file): every MARK rule is counted as unattributed');
  }

  const inputs: TableSource[] = [];
  if (values.input) inputs.push(fileSource('ipv4', values.input as string));
  if (values.input6) inputs.push(fileSource('ipv6', values.input6 as string));
  const sources = inputs.length > 0 ? inputs : tableSources(settings, { onBackend: (choice) => log.info(choiceMessage(choice, undefined), { backend: choice.backend, rules: choice.rules }) }).sources;
  const collector = new Collector(
    sources,
    { table: settings.iptables.table, roots: { rx: settings.attribution.rxChains, tx: settings.attribution.txChains }, remember: false },
    accumulator,
    () => markMap,
  );
  let failed = false;
  for (const report of await collector.collect()) {
    if (!report.ok) {
      failed = true;
      log.error(`reading the ${report.source} table failed`, { source: report.source, error: report.error });
    } else if (report.skipped.length > 0) {
      log.warn('MARK rules in chains without a single direction are not counted', { source: report.source, chains: report.skipped });
    }
  }
  if (failed) return 1;
  const render = format === 'json' ? renderJson : renderTable;
  // Written in pieces of about 64 KiB: neither one giant string nor a write per user.
  // A reader that went away (`| head -1`) has had what it wanted: stop there, exit 0.
  const { stdout } = process;
  let pending = '';
  const flush = async () => {
    if (isOpen(stdout) && !stdout.write(pending)) await drainedOrClosed(stdout);
    pending = '';
  };
  for (const chunk of render({ users: accumulator.users(), unattributed: accumulator.unattributed })) {
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

// Before anything is written: a closed stdout or stderr must not end the process.
surviveClosedOutput();
main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // Timers of the SDK or watchers must not keep a finished command alive.
    setTimeout(() => process.exit(code), 100).unref();
  },
  (error: unknown) => {
    if (error instanceof UsageError) {
      process.stderr.write(`markmeter: ${error.message}\n`);
      process.exitCode = 2;
    } else if (error instanceof MarkmeterError) {
      process.stderr.write(`markmeter: ${error.message}\n`);
      process.exitCode = 1;
    } else {
      process.stderr.write(`markmeter: unexpected error: ${(error as Error)?.stack ?? String(error)}\n`);
      process.exitCode = 1;
    }
  },
);
