/**
 * `markmeter check`: the diagnostics a new user runs first. Each check says
 * what it found and, when it fails, what to do; the command exits 0 only when
 * every check passes.
 */
import { existsSync } from 'node:fs';
import { request } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { createLogger } from '../log.js';
import { ReadingPath } from '../reading-path.js';
import { markCount } from '../users/document.js';
import { countTable, detectBackend, type Backend } from '../sources/iptables/backend.js';
import type { RunOptions } from '../sources/iptables/save-command.js';
import { describePrivileges, privilegeProblem, readPrivileges, type ProcessPrivileges } from '../sidecar/privileges.js';
import { redactUrl } from '../shared/redact.js';
import { loadSettings, settingOrigins, type Settings } from '../settings.js';
import { parseOptions } from './args.js';

export const CHECK_HELP = `Usage: markmeter check [--config FILE]

Diagnostics to run first: the settings (and where each non-default one comes
from), which iptables backend holds the mangle rules, whether the users
document loads, how many MARK rules the users own (and the marks nobody owns),
whether the configured interfaces exist, and whether the OTLP endpoint accepts
an export. Exits 0 only when every check passes; a failure says what to do.
A WARN line passes but names what is not counted (MARK rules in the iptables
backend that is not read).

Options:
  --config FILE   settings file (JSON or YAML)
  -h, --help      this help`;

/** The command: settings first (a settings error is a failed check, not a crash), then every other check. */
export async function check(args: string[]): Promise<number> {
  const values = parseOptions(args, { config: { type: 'string' } }, CHECK_HELP);
  if (values.help) {
    process.stdout.write(`${CHECK_HELP}\n`);
    return 0;
  }
  const file = values.config as string | undefined;
  const print = (ok: boolean, name: string, detail: string, warning = false) =>
    process.stdout.write(`${!ok ? 'FAIL' : warning ? 'WARN' : 'ok  '}  ${name}: ${detail}\n`);
  let settings;
  try {
    settings = loadSettings({ file });
  } catch (error) {
    // The message starts with its source ("settings: ..." or "settings (FILE): ..."), which names the line.
    const message = (error as Error).message;
    process.stdout.write(`FAIL  ${/^settings\b/.test(message) ? message : `settings: ${message}`}\n`);
    return 1;
  }
  const origins = settingOrigins(settings, file);
  print(true, 'settings', `valid${file ? ` (${file})` : ''}${origins.length ? `; not default: ${origins.map((o) => `${o.key}=${JSON.stringify(o.value)} (${o.origin})`).join(', ')}` : '; all defaults'}`);
  const results = await runChecks(settings);
  for (const result of results) print(result.ok, result.name, result.detail, result.warning);
  return results.every((r) => r.ok) ? 0 : 1;
}

export interface CheckResult {
  name: string;
  ok: boolean;
  /** Passed, but something is not counted: printed as WARN (the exit code stays 0). */
  warning?: boolean;
  detail: string;
}

/** Runs every check after the settings (which the caller has loaded and described). */
export async function runChecks(
  settings: Settings,
  env: NodeJS.ProcessEnv = process.env,
  sysfs = '/sys/class/net',
  privileges: ProcessPrivileges | undefined = readPrivileges(),
): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  const run = { timeoutMs: settings.collect.timeoutMs, maxOutputBytes: settings.collect.maxOutputBytes };

  // What the IPv4 readings will read: iptables.saveCommand, or the backend that holds the rules.
  const problem = privileges && privilegeProblem(privileges);
  const { result: iptables, readable } = await iptablesCheck(settings, run, problem ? `${problem.short} (see privileges)` : undefined);
  results.push(iptables);

  // Whether the save commands get CAP_NET_ADMIN and CAP_NET_RAW. A problem the kernel let pass
  // (some grant file capabilities under no-new-privileges after all) is reported, not failed.
  results.push({
    name: 'privileges',
    ok: !problem || readable,
    detail: !privileges
      ? 'cannot read /proc/self/status: not judged'
      : !problem
        ? describePrivileges(privileges)
        : readable
          ? `${problem.short}, yet iptables-save could read on this kernel (most refuse it): ${problem.remedy}`
          : problem.message,
  });

  // The users document, through the reading path every command uses.
  const path = new ReadingPath({ settings, log: createLogger('silent'), remember: false, listUnowned: true });
  if (!path.usersSource) {
    results.push({ name: 'users document', ok: true, detail: 'neither users.file nor users.url is set: users are known by address (each MARK rule counts for the address it carries)' });
  } else {
    try {
      const { snapshot, refused } = (await path.loadUsersOnce())!;
      const over = refused > 0 ? `; ${refused} beyond limits.maxUsers (${settings.limits.maxUsers}) would not be exported: raise limits.maxUsers` : '';
      results.push({ name: 'users document', ok: refused === 0, detail: `${snapshot.source}: ${snapshot.users.length + refused} users, ${markCount(snapshot)} marks${over}` });
    } catch (error) {
      results.push({ name: 'users document', ok: false, detail: (error as Error).message });
    }
  }

  // One reading: how many MARK rules the users own.
  for (const report of await path.collect()) {
    const name = `attribution (${report.source})`;
    if (!report.ok) {
      results.push({ name, ok: false, detail: report.error.message });
      continue;
    }
    const unowned = report.unowned ?? { rules: 0, marks: [] };
    if (unowned.classes !== undefined) {
      // A TC source: the device's classes, and the leaf classes no filter ties to one user.
      const list = unowned.classes.slice(0, 5).join(', ') + (unowned.classes.length > 5 ? ', ...' : '');
      // A default class nobody owns is usual: it fails only when no class at all is a user's.
      results.push({
        name,
        ok: report.markRules === 0 || unowned.rules < report.markRules,
        detail: `${report.rules} classes, ${report.markRules} leaf classes counted, ${report.markRules - unowned.rules} owned by a user${unowned.rules ? `; ${unowned.rules} owned by no user (${list}): tie each to one user by an fw filter on a mark of the pool or a u32 filter on the user's host address` : ''}`,
      });
      continue;
    }
    const skipped = report.skipped.reduce((n, s) => n + s.rules, 0);
    const problems: string[] = [];
    if (unowned.rules > 0) {
      const marks = unowned.marks.slice(0, 5).join(', ') + (unowned.marks.length > 5 ? ', ...' : '');
      problems.push(`${unowned.rules} owned by no user (marks ${marks}): add those users or marks to the users document`);
    }
    if (skipped > 0) {
      problems.push(`${skipped} in chains without a single direction (${report.skipped.map((s) => `${s.chain}: ${s.reason}`).join(', ')}): jump to them from exactly one of the rx/tx chains`);
    }
    results.push({
      name,
      ok: problems.length === 0,
      detail: `${report.markRules} MARK rules, ${report.markRules - unowned.rules - skipped} attributed${problems.length ? `; ${problems.join('; ')}` : ''}`,
    });
  }

  // Interfaces.
  const missing = settings.interfaces.names.filter((name) => !existsSync(join(sysfs, name)));
  results.push({
    name: 'interfaces',
    ok: missing.length === 0,
    detail: missing.length === 0 ? settings.interfaces.names.join(', ') : `not found: ${missing.join(', ')}: fix interfaces.names (this namespace has: ${await interfaceList(sysfs)})`,
  });

  // The OTLP endpoint accepts a request: an empty export.
  const endpoint = otlpEndpoint(env);
  const shown = redactUrl(endpoint);
  const answer = await postEmptyExport(endpoint, settings.export.protocol, settings.export.timeoutMs);
  results.push({
    name: 'otlp endpoint',
    ok: answer.ok,
    detail: answer.ok ? `${shown} accepted an export (HTTP ${answer.status})` : `${shown}: ${answer.problem}: start the collector or set OTEL_EXPORTER_OTLP_ENDPOINT`,
  });
  return results;
}

/**
 * The iptables line. With iptables.saveCommand set, that command's table; else
 * both backends' tables, the one the readings will use (auto's choice or
 * iptables.backend), and a warning when the other one holds MARK rules too:
 * those are never read, so their users' traffic would be missing. A backend
 * that cannot be read says why (with neither readable, the first one's reason,
 * or `privilegeProblem` when the process lacks the capabilities).
 */
async function iptablesCheck(settings: Settings, run: RunOptions, privilegeProblem: string | undefined): Promise<{ result: CheckResult; readable: boolean }> {
  const { table, saveCommand, backend: setting } = settings.iptables;
  const name = 'iptables';
  if (saveCommand) {
    const count = await countTable(saveCommand, table, run);
    const command = `iptables.saveCommand ${saveCommand}`;
    if ('error' in count) return { readable: false, result: { name, ok: false, detail: `${command} cannot be read: ${privilegeProblem ?? count.error}` } };
    const detail = `${command}: ${count.rules} rules (${count.markRules} MARK rules) in the ${table} table${count.rules ? '' : ': is the tunnel client running in this network namespace?'}`;
    return { readable: true, result: { name, ok: count.rules > 0, detail } };
  }
  const { backend: chosen, tables } = await detectBackend(table, run);
  const read: Backend = setting === 'auto' ? chosen : setting;
  const other: Backend = read === 'nft' ? 'legacy' : 'nft';
  const [reading, beside] = [tables[read], tables[other]];
  const show = (backend: Backend) => {
    const count = tables[backend];
    return 'error' in count ? `${backend} cannot be read` : `${backend} ${count.rules} rules`;
  };
  const both = `${show('nft')}, ${show('legacy')}`;
  const counts = `${both} in the ${table} table`;
  const how = setting === 'auto' ? `auto reads ${read}` : `iptables.backend is ${read}`;
  if ('error' in reading) {
    // auto chooses a readable backend when there is one: here neither is, or the one set is not.
    const detail = 'error' in beside ? `${both}: ${privilegeProblem ?? reading.error}` : `${counts}; ${how}, which cannot be read: ${reading.error}`;
    return { readable: !('error' in beside), result: { name, ok: false, detail } };
  }
  if (reading.rules === 0) {
    const detail = 'error' in beside || beside.rules === 0
      ? `${counts}: is the tunnel client running in this network namespace?`
      : `${counts}; ${how}, whose table is empty: set iptables.backend to ${other} or auto`;
    return { readable: true, result: { name, ok: false, detail } };
  }
  if ('error' in beside) return { readable: true, result: { name, ok: true, detail: `${counts}; ${how} (${other} cannot be read: ${beside.error})` } };
  if (beside.markRules > 0) {
    const detail = `${counts}; ${how}, but ${other} holds ${beside.markRules} MARK rules too, which are not read: their traffic is not counted; remove them or have the tunnel client write every rule to ${read}`;
    return { readable: true, result: { name, ok: true, warning: true, detail } };
  }
  return { readable: true, result: { name, ok: true, detail: `${counts}; ${how}` } };
}

/** The metrics endpoint the OTLP exporter will use, by the OpenTelemetry variables. */
export function otlpEndpoint(env: NodeJS.ProcessEnv): string {
  if (env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT) return env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT;
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT || 'http://localhost:4318';
  return `${base.replace(/\/+$/, '')}/v1/metrics`;
}

function postEmptyExport(endpoint: string, protocol: string, timeoutMs: number): Promise<{ ok: boolean; status?: number; problem?: string }> {
  const json = protocol === 'http/json';
  const body = json ? '{"resourceMetrics":[]}' : '';
  return new Promise((resolve) => {
    let url: URL;
    try {
      url = new URL(endpoint);
    } catch {
      resolve({ ok: false, problem: 'not a URL' });
      return;
    }
    const send = url.protocol === 'https:' ? httpsRequest : request;
    const req = send(url, { method: 'POST', timeout: timeoutMs, headers: { 'content-type': json ? 'application/json' : 'application/x-protobuf' } }, (response) => {
      response.resume();
      const status = response.statusCode ?? 0;
      resolve(status >= 200 && status < 300 ? { ok: true, status } : { ok: false, status, problem: `answered HTTP ${status}` });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (error: NodeJS.ErrnoException) => resolve({ ok: false, problem: error.code ? `cannot connect (${error.code})` : error.message }));
    req.end(body);
  });
}

async function interfaceList(sysfs: string): Promise<string> {
  try {
    const { readdir } = await import('node:fs/promises');
    return (await readdir(sysfs)).join(', ');
  } catch {
    return 'unknown';
  }
}

