/**
 * Runs iptables-save / ip6tables-save: the only module that starts programs.
 * execa with an argument array (never a shell), a timeout and an output cap;
 * every failure becomes one DumpError that says what to do.
 */
import { execa, ExecaError } from 'execa';
import { DumpError } from '../errors.js';

export interface RunOptions {
  timeoutMs: number;
  maxOutputBytes: number;
}

/** Runs a program and resolves with its stdout; injected so tests can replace it. */
export type CommandRunner = (file: string, args: readonly string[], options: RunOptions) => Promise<string>;

export const execaRunner: CommandRunner = async (file, args, options) => {
  try {
    const result = await execa(file, args, {
      timeout: options.timeoutMs,
      maxBuffer: options.maxOutputBytes,
      stripFinalNewline: false,
      stdin: 'ignore',
      // Locale-independent output; LC_ALL is what iptables honours.
      env: { LC_ALL: 'C' },
    });
    return result.stdout;
  } catch (error) {
    throw toDumpError(file, args, options, error);
  }
};

export interface DumpRequest {
  command: string;
  table: string;
}

/** One dump of `table` with counters: `<command> -c -t <table>`. */
export function readTableDump(request: DumpRequest, options: RunOptions, runner: CommandRunner = execaRunner): Promise<string> {
  return runner(request.command, ['-c', '-t', request.table], options);
}

function toDumpError(file: string, args: readonly string[], options: RunOptions, error: unknown): DumpError {
  const command = [file, ...args].join(' ');
  if (!(error instanceof ExecaError)) {
    return new DumpError('spawn', command, `could not run ${command}: ${String(error)}`, { cause: error });
  }
  if (error.code === 'ENOENT') {
    return new DumpError(
      'missing_binary',
      command,
      `${file} was not found: install iptables (both backends) in this image or set iptables.saveCommand / iptables.save6Command`,
      { cause: error },
    );
  }
  if (error.timedOut) {
    return new DumpError(
      'timeout',
      command,
      `${command} did not finish within ${options.timeoutMs} ms and was killed: raise collect.timeoutMs for a large table`,
      { cause: error },
    );
  }
  if (error.isMaxBuffer) {
    return new DumpError(
      'max_buffer',
      command,
      `${command} printed more than ${options.maxOutputBytes} bytes: raise collect.maxOutputBytes`,
      { cause: error },
    );
  }
  if (error.exitCode !== undefined) {
    const stderr = String(error.stderr ?? '').trim().split('\n').slice(-3).join(' | ');
    const hint = /permission denied|not permitted/i.test(stderr)
      ? 'the agent needs CAP_NET_ADMIN and CAP_NET_RAW (run as root or grant the capabilities)'
      : 'check that the table exists and that the backend (nft or legacy) matches the one the tunnel client writes';
    return new DumpError('exit_code', command, `${command} exited with code ${error.exitCode}${stderr ? `: ${stderr}` : ''}; ${hint}`, {
      cause: error,
    });
  }
  if (error.signal) {
    return new DumpError('signal', command, `${command} was killed by ${error.signal}`, { cause: error });
  }
  return new DumpError('spawn', command, `could not run ${command}: ${error.shortMessage}`, { cause: error });
}
