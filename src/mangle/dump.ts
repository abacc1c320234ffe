/**
 * Runs iptables-save / ip6tables-save: the only module that starts programs.
 * execa with an argument array (never a shell), a timeout and an output cap;
 * every failure becomes one DumpError that says what to do. The output goes
 * to the parser chunk by chunk as the program prints it.
 */
import { StringDecoder } from 'node:string_decoder';
import { execa, ExecaError } from 'execa';
import { DumpError } from '../errors.js';
import { IptablesSaveParser, type SaveVisitor } from './parse.js';

export interface RunOptions {
  timeoutMs: number;
  maxOutputBytes: number;
}

/**
 * Runs a program and hands its stdout to `onOutput` as it arrives (so a large
 * table is never held twice); resolves when the program exits 0. Injected so
 * tests can replace it. An exception thrown by `onOutput` stops the program and
 * is the runner's result.
 */
export type CommandRunner = (file: string, args: readonly string[], options: RunOptions, onOutput: (chunk: string) => void) => Promise<void>;

export const execaRunner: CommandRunner = async (file, args, options, onOutput) => {
  const subprocess = execa(file, args, {
    timeout: options.timeoutMs,
    buffer: { stdout: false, stderr: true },
    maxBuffer: { stderr: 64 * 1024 },
    stdin: 'ignore',
    // Locale-independent output; LC_ALL is what iptables honours.
    env: { LC_ALL: 'C' },
  });
  // StringDecoder, not TextDecoder: three times faster on Node 20 for a 12 MB dump.
  const decoder = new StringDecoder('utf8');
  let received = 0;
  let stopped: unknown;
  const stop = (reason: unknown) => {
    stopped ??= reason;
    subprocess.kill();
  };
  subprocess.stdout.on('data', (chunk: Buffer) => {
    if (stopped !== undefined) return;
    received += chunk.length;
    if (received > options.maxOutputBytes) {
      stop(tooMuchOutput([file, ...args].join(' '), options.maxOutputBytes));
      return;
    }
    try {
      onOutput(decoder.write(chunk));
    } catch (error) {
      stop(error);
    }
  });
  try {
    await subprocess;
  } catch (error) {
    throw stopped ?? toDumpError(file, args, options, error);
  }
  if (stopped !== undefined) throw stopped;
  const tail = decoder.end();
  if (tail !== '') onOutput(tail);
};

export interface DumpRequest {
  command: string;
  table: string;
}

/** One dump of `table` with counters (`<command> -c -t <table>`), parsed into `visitor` as it streams in. */
export async function readTableDump(
  request: DumpRequest,
  options: RunOptions,
  visitor: SaveVisitor,
  runner: CommandRunner = execaRunner,
): Promise<void> {
  const parser = new IptablesSaveParser(visitor);
  await runner(request.command, ['-c', '-t', request.table], options, (chunk) => parser.push(chunk));
  parser.end();
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
      `${file} was not found: install iptables (Debian's package has both backends) in this image, or set iptables.backend or iptables.saveCommand / iptables.save6Command`,
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
  if (error.isMaxBuffer) return tooMuchOutput(command, options.maxOutputBytes, error);
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

function tooMuchOutput(command: string, limit: number, cause?: unknown): DumpError {
  return new DumpError('max_buffer', command, `${command} printed more than ${limit} bytes: raise collect.maxOutputBytes`, { cause });
}
