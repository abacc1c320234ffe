#!/usr/bin/env node
/** The command line: dispatches to one module per command under cli/, and turns errors into one line and an exit code. */
import { MarkmeterError, UsageError } from './errors.js';
import { surviveClosedOutput } from './log.js';
import { VERSION } from './version.js';

const USAGE = `markmeter ${VERSION}: per-user packet and byte counters from iptables MARK rules, pushed over OTLP

Usage:
  markmeter run [--config FILE]
  markmeter check [--config FILE]
  markmeter top [--config FILE] [--users FILE] [--interval SECONDS]
  markmeter snapshot [--config FILE] [--users FILE] [--input FILE] [--input6 FILE] [--format table|json]
  markmeter --version

Run 'markmeter <command> --help' for a command's options.`;

/** Each command is loaded only when asked for: snapshot has no use for the OpenTelemetry SDK. */
const COMMANDS: Record<string, () => Promise<(args: string[]) => Promise<number>>> = {
  run: async () => (await import('./cli/run.js')).run,
  snapshot: async () => (await import('./cli/snapshot.js')).snapshot,
  check: async () => (await import('./cli/check.js')).check,
  top: async () => (await import('./cli/top.js')).top,
};

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const load = command === undefined ? undefined : COMMANDS[command];
  if (load) return (await load())(rest);
  switch (command) {
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
