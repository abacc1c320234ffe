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
import { detectBackend } from '../sources/iptables/backend.js';
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
  const print = (ok: boolean, name: string, detail: string) => process.stdout.write(`${ok ? 'ok  ' : 'FAIL'}  ${name}: ${detail}\n`);
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
  for (const result of results) print(result.ok, result.name, result.detail);
  return results.every((r) => r.ok) ? 0 : 1;
}

export interface CheckResult {
  name: string;
  ok: boolean;
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

  // Which backend holds the rules.
  const choice = await detectBackend(settings.iptables.table, run);
  const show = (n: number | undefined) => (n === undefined ? 'cannot be read' : `${n} rules`);
  const counts = `nft ${show(choice.rules.nft)}, legacy ${show(choice.rules.legacy)}`;
  const readable = choice.rules.nft !== undefined || choice.rules.legacy !== undefined;
  const anyRules = (choice.rules.nft ?? 0) + (choice.rules.legacy ?? 0) > 0;
  const problem = privileges && privilegeProblem(privileges);
  results.push({
    name: 'iptables',
    ok: readable && anyRules,
    detail: !readable
      ? problem
        ? `${counts}: ${problem.short} (see privileges)`
        : `${counts}: install iptables (both backends) and run with CAP_NET_ADMIN and CAP_NET_RAW (or as root)`
      : !anyRules
        ? `${counts} in the ${settings.iptables.table} table: is the tunnel client running in this network namespace?`
        : `${counts} in the ${settings.iptables.table} table; ${settings.iptables.backend === 'auto' ? `auto reads ${choice.backend}` : `iptables.backend is ${settings.iptables.backend}`}`,
  });

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
      results.push({ name: 'users document', ok: refused === 0, detail: `${snapshot.source}: ${snapshot.users.length + refused} users, ${snapshot.marks.length} marks${over}` });
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

