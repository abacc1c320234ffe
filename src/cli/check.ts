/**
 * `markmeter check`: the diagnostics a new user runs first. Each check says
 * what it found and, when it fails, what to do; the command exits 0 only when
 * every check passes.
 */
import { existsSync } from 'node:fs';
import { request } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { Accumulator } from '../totals/accumulator.js';
import { buildMarkMap, EMPTY_MARK_MAP, type MarkMap } from '../attribution/mark-map.js';
import { Collector, tableSources } from '../sources/collect.js';
import { ConfigManager } from '../users/manager.js';
import { usersSource } from '../users/from-settings.js';
import { detectBackend } from '../sources/iptables/backend.js';
import { describePrivileges, privilegeProblem, readPrivileges, type ProcessPrivileges } from '../sidecar/privileges.js';
import { redactUrl } from '../shared/redact.js';
import type { Settings } from '../settings.js';

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

  // The users document.
  let map: MarkMap = EMPTY_MARK_MAP;
  const source = usersSource(settings.users);
  if (!source) {
    results.push({ name: 'users document', ok: false, detail: 'neither users.file nor users.url is set: every MARK rule would count as unattributed' });
  } else {
    const manager = new ConfigManager(source);
    let problem = '';
    manager.on('error', (error) => (problem = error.message));
    await manager.start();
    manager.stop();
    const snapshot = manager.current();
    if (snapshot) map = buildMarkMap(snapshot, settings.attribution.breakdown);
    results.push({
      name: 'users document',
      ok: snapshot !== undefined,
      detail: snapshot ? `${source.name}: ${snapshot.users.length} users, ${snapshot.marks.length} marks` : problem,
    });
  }

  // One reading: how many MARK rules the users own.
  const collector = new Collector(
    tableSources(settings).sources,
    { table: settings.iptables.table, roots: { rx: settings.attribution.rxChains, tx: settings.attribution.txChains }, remember: false, listUnowned: true },
    new Accumulator(),
    () => map,
  );
  for (const report of await collector.collect()) {
    const name = `attribution (${report.source})`;
    if (!report.ok) {
      results.push({ name, ok: false, detail: report.error.message });
      continue;
    }
    const unowned = report.unowned ?? { rules: 0, marks: [] };
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

