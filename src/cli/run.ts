/** `markmeter run`: the agent, with its signals (SIGTERM/SIGINT stop it after a last push, SIGHUP reloads the users). */
import { createLogger } from '../log.js';
import { describeSettings, loadSettings } from '../settings.js';
import { parseOptions } from './args.js';

export const RUN_HELP = `Usage: markmeter run [--config FILE]

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

export async function run(args: string[]): Promise<number> {
  const values = parseOptions(args, { config: { type: 'string' } }, RUN_HELP);
  if (values.help) {
    process.stdout.write(`${RUN_HELP}\n`);
    return 0;
  }
  const settings = loadSettings({ file: values.config as string | undefined });
  const log = createLogger(settings.log.level);
  // Loaded here, not at the top: the other commands have no use for the OpenTelemetry SDK.
  const { Agent } = await import('../agent.js');
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
