/**
 * `markmeter run`: the lifecycle. The reading path (reading-path.ts) is built
 * as for every command; here are the timers, the users manager's events, the
 * listeners, the telemetry pipeline pushing on its own timer, and stop(),
 * which takes a last reading, pushes it and shuts down.
 */
import type { Server } from 'node:http';
import { setTimeout as delay } from 'node:timers/promises';
import { diag, DiagLogLevel } from '@opentelemetry/api';
import type { PushMetricExporter } from '@opentelemetry/sdk-metrics';
import type { Resource } from '@opentelemetry/resources';
import type { Accumulator } from './totals/accumulator.js';
import type { SourceReport } from './sources/collect.js';
import type { ConfigManager } from './users/manager.js';
import { markCount } from './users/document.js';
import { UsersSourceError } from './errors.js';
import { ReadingPath, type UsersApplied } from './reading-path.js';
import { startHealthServer } from './sidecar/health.js';
import { InterfaceReader } from './sources/interfaces.js';
import { markRulesFound } from './sources/mark-rules.js';
import type { Logger } from './log.js';
import type { CommandRunner } from './sources/iptables/save-command.js';
import { NamespaceWatch } from './sidecar/namespace-watch.js';
import { warnAboutPrivileges } from './sidecar/privileges.js';
import type { Settings } from './settings.js';
import { SDK_EXPORT_FAILURE, TelemetryPipeline } from './export/pipeline.js';
import { buildResource } from './export/resource.js';
import { SelfStats } from './export/self-stats.js';
import { VERSION } from './version.js';

export interface AgentOptions {
  settings: Settings;
  log: Logger;
  runner?: CommandRunner;
  createExporter?: () => PushMetricExporter;
  sysfsRoot?: string;
}

/** How long start() waits for the first users document before the first reading. */
const FIRST_USERS_WAIT_MS = 2000;

/** How long stop() waits for the last push: a stopping container gets about 10 s before SIGKILL. */
const LAST_PUSH_MS = 3000;

export class Agent {
  readonly stats = new SelfStats();
  readonly accumulator: Accumulator;
  private readonly path: ReadingPath;
  private readonly interfaces: InterfaceReader;
  private readonly namespace: NamespaceWatch;
  private readonly configManager: ConfigManager | undefined;
  private readonly pipeline: TelemetryPipeline;
  private readonly log: Logger;
  private health: Server | undefined;
  private metricsServer: Server | undefined;
  /** When every source last read successfully in one collection. */
  private lastSuccessAt: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private collecting: Promise<void> | undefined;
  /** Per source: the last error message logged, so a failure repeating every interval is logged once. */
  private readonly lastProblem = new Map<string, string>();
  /** Whether the last complete reading of the MARK rules found any (undefined: none yet), so that a change is logged once. */
  private markRulesSeen: boolean | undefined;
  private readonly resource: Resource = buildResource(VERSION);

  constructor(private readonly options: AgentOptions) {
    const { settings, log } = options;
    this.log = log;
    warnAboutPrivileges(log);
    this.path = new ReadingPath({ settings, log, remember: true, runner: options.runner });
    this.accumulator = this.path.accumulator;
    this.interfaces = new InterfaceReader(
      settings.interfaces.names,
      (iface, error) => log.warn(`interface ${iface} not found; its totals are skipped until it appears`, { iface, error }),
      options.sysfsRoot,
    );
    // A namespace left behind by the container it was shared from: a last push, then exit 1, so the restart policy joins the new one.
    const exitOrphaned = (message: string) => {
      log.error(message);
      void this.stop().finally(() => process.exit(1));
    };
    this.namespace = new NamespaceWatch(settings.namespace.exitWhenOrphaned, exitOrphaned, options.sysfsRoot);
    this.configManager = this.path.watchUsers((applied) => this.onSync(applied));
    if (this.configManager) {
      this.configManager.on('error', (error) => {
        this.stats.count(this.stats.usersSyncs, 'error');
        // A document that could not be read or fetched changes nothing: say what stays in force.
        const stays = this.configManager?.current() ? 'the last good mapping stays in force' : 'until one loads, traffic counts as unattributed';
        log.error(error instanceof UsersSourceError ? `${error.message}; ${stays}` : error.message, { error, source: error.source, field: error.field });
      });
    }
    diag.setLogger(
      {
        error: (msg, ...args) => {
          if (!SDK_EXPORT_FAILURE.test(msg)) log.error(`opentelemetry: ${msg}`, { detail: args.map(String).join(' ') });
        },
        warn: (msg, ...args) => log.warn(`opentelemetry: ${msg}`, { detail: args.map(String).join(' ') }),
        info: () => {},
        debug: () => {},
        verbose: () => {},
      },
      { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true },
    );
    this.pipeline = new TelemetryPipeline({
      resource: this.resource,
      exportIntervalMs: settings.export.intervalMs,
      exportTimeoutMs: settings.export.timeoutMs,
      protocol: settings.export.protocol,
      maxRequestBytes: settings.export.maxRequestBytes,
      prometheus: settings.export.prometheus.port > 0 ? settings.export.prometheus : undefined,
      createExporter: options.createExporter,
      log,
      view: {
        users: () => this.accumulator.users(),
        unattributed: () => this.accumulator.unattributed,
        unattributedShaped: () => this.accumulator.unattributedShaped,
        measures: { marked: settings.collect.sources.includes('iptables'), shaped: settings.collect.sources.includes('tc') },
        interfaces: () => this.interfaces.totals(),
        stats: this.stats,
      },
    });
  }

  async start(): Promise<void> {
    const { settings } = this.options;
    if (settings.health.listen) {
      this.health = await startHealthServer(settings.health.listen, {
        lastSuccessAt: () => this.lastSuccessAt,
        // Without a users document users are known by address: nothing to wait for.
        usersLoaded: () => !this.configManager || this.configManager.current() !== undefined,
        collectIntervalMs: settings.collect.intervalMs,
      });
    }
    await this.resource.waitForAsyncAttributes?.();
    this.log.info('markmeter starting', {
      version: VERSION,
      otlp_endpoint: this.pipeline.endpoint,
      service_instance_id: this.resource.attributes['service.instance.id'],
      users_source: settings.users.url ? new URL(settings.users.url).origin : settings.users.file || null,
      collect_interval_ms: settings.collect.intervalMs,
      export_interval_ms: settings.export.intervalMs,
      ipv6: settings.iptables.ipv6,
    });
    this.metricsServer = await this.pipeline.servePrometheus();
    // Waited for briefly, not more: a slow or silent users source must not hold back the readings.
    // Until the first 'sync' the traffic counts as unattributed (and /readyz says not ready); a
    // local file is loaded by then, so its users get the rules' counts from before the start.
    if (this.configManager) {
      const loading = this.configManager.start().catch((error: unknown) => this.log.error('loading the users document failed unexpectedly', { error }));
      await Promise.race([loading, delay(Math.min(FIRST_USERS_WAIT_MS, settings.collect.intervalMs), undefined, { ref: false })]);
    } else {
      this.log.warn('neither users.file nor users.url is set: users are known by address (each MARK rule counts for its source address on upload, its destination on download); set one to name users and read the mark pool');
    }
    await this.collectOnce();
    // The first push follows the first reading, not an export interval later: series (or a failing
    // collector, which the pipeline logs) show up at once. Not waited for: the readings go on.
    void this.pipeline.flush().catch(() => {});
    this.timer = setInterval(() => void this.tick(), settings.collect.intervalMs);
  }

  /** Takes a last reading, pushes it, and shuts the pipeline down. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.configManager?.stop();
    await this.collecting;
    await this.collectOnce();
    const pushWithinMs = Math.min(this.options.settings.export.timeoutMs, LAST_PUSH_MS);
    if (!(await this.pipeline.finish(pushWithinMs))) {
      this.log.error(`the last push did not succeed within ${pushWithinMs} ms (is the collector down?): stopping without it`);
    }
    this.health?.close();
    this.metricsServer?.close();
    this.log.info('markmeter stopped');
  }

  /** Reloads the users document now (SIGHUP). */
  reloadUsers(): Promise<void> {
    return this.configManager?.reload() ?? Promise.resolve();
  }

  private async tick(): Promise<void> {
    if (this.collecting) {
      this.stats.count(this.stats.collections, 'all skipped');
      this.problem('overlap', 'skipping', () =>
        this.log.warn('a reading was still running when the next was due: ticks are skipped until it ends (raise collect.intervalMs or collect.timeoutMs?)'),
      );
      return;
    }
    this.problem('overlap', '', () => {});
    await this.collectOnce();
    const expired = this.accumulator.expireRemoved(Date.now(), this.options.settings.users.removedGraceMs);
    if (expired.length > 0) {
      this.log.info('removed users are no longer exported', { users: expired.map((u) => u.user_code) });
    }
  }

  private collectOnce(): Promise<void> {
    this.collecting = (async () => {
      const started = performance.now();
      const [reports] = await Promise.all([this.path.collect(), this.interfaces.read(), this.namespace.read()]);
      // One line per reading at debug level: what the benchmark (and an operator chasing a slow reading) times.
      this.log.debug('reading done', {
        duration_ms: Math.round(performance.now() - started),
        // The sources' own time, without any wait for a users sync before it.
        read_ms: Math.round(Math.max(0, ...reports.map((r) => r.durationSeconds)) * 1000),
        sources: reports.map((r) => `${r.source} ${r.ok ? 'ok' : 'error'}`),
      });
      for (const report of reports) this.record(report);
      this.noticeMarkRules(reports);
      if (reports.every((r) => r.ok)) this.lastSuccessAt = Date.now();
    })().finally(() => {
      this.collecting = undefined;
    });
    return this.collecting;
  }

  private record(report: SourceReport): void {
    const { stats, log } = this;
    stats.count(stats.collections, `${report.source} ${report.ok ? 'ok' : 'error'}`);
    const previous = stats.sources.get(report.source);
    if (!report.ok) {
      stats.count(stats.collectionErrors, report.error.code);
      stats.sources.set(report.source, {
        ...(previous ?? { rulesParsed: 0, markRules: 0, skippedAmbiguous: 0, skippedUnreached: 0 }),
        durationSeconds: report.durationSeconds,
        success: false,
      });
      this.problem(report.source, report.error.message, () =>
        log.error(`reading the ${report.source} table failed; the totals keep their values and the next interval tries again`, {
          source: report.source,
          error: report.error,
        }),
      );
      return;
    }
    this.problem(report.source, '', () => {});
    // An empty IPv4 table may mean the tunnel client writes the other backend: look again.
    if (report.source === 'ipv4' && report.rules === 0) this.path.backend.recheck();
    const count = (reason: string) => report.skipped.filter((s) => s.reason === reason).reduce((n, s) => n + s.rules, 0);
    stats.sources.set(report.source, {
      durationSeconds: report.durationSeconds,
      success: true,
      rulesParsed: report.rules,
      markRules: report.markRules,
      skippedAmbiguous: count('ambiguous'),
      skippedUnreached: count('unreached'),
    });
    const skipped = report.skipped.map((s) => `${s.chain} (${s.reason})`).join(', ');
    this.problem(`${report.source} skipped chains`, skipped, () =>
      log.warn('MARK rules in chains without a single direction are not counted: jump to them from exactly one of the rx/tx chains', {
        source: report.source,
        chains: report.skipped,
      }),
    );
  }

  /** Warns once when the readings find no MARK rule at all (nothing is counted for anyone), and says when they are back. */
  private noticeMarkRules(reports: SourceReport[]): void {
    const found = markRulesFound(reports, this.path.sources);
    if (!found || found.markRules > 0 === this.markRulesSeen) return;
    const { table } = this.options.settings.iptables;
    if (found.markRules === 0) {
      const backend = this.path.backend.backend;
      this.log.warn(
        `the iptables readings find no MARK rule in the ${table} table (${found.rules} rule${found.rules === 1 ? '' : 's'}${backend ? `, ${backend} backend` : ''}): no user's traffic is counted until the tunnel client's MARK rules are there; markmeter check says more`,
        { table, rules: found.rules, backend },
      );
    } else if (this.markRulesSeen === false) {
      this.log.info(`MARK rules found again: ${found.markRules} in the ${table} table; their traffic is counted`, { table, mark_rules: found.markRules });
    }
    this.markRulesSeen = found.markRules > 0;
  }

  /** Logs a problem when it changes, so one repeating every interval is logged once; '' clears it. */
  private problem(key: string, message: string, logIt: () => void): void {
    const last = this.lastProblem.get(key) ?? '';
    if (message === last) return;
    this.lastProblem.set(key, message);
    if (message) logIt();
    else this.log.info(`${key}: back to normal`);
  }

  /** A users document is in force (the reading path has applied it): count and say so. */
  private onSync({ snapshot, refused }: UsersApplied): void {
    this.stats.usersRefused = refused;
    this.stats.count(this.stats.usersSyncs, 'ok');
    this.stats.usersLoaded = snapshot.users.length;
    this.log.info('users document loaded', { source: snapshot.source, users: snapshot.users.length, marks: markCount(snapshot) });
  }
}
