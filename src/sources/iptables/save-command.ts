/**
 * Runs iptables-save / ip6tables-save: the only module that starts programs.
 * execa with an argument array (never a shell), a deadline and an output cap;
 * every failure becomes one DumpError that says what to do. The output goes
 * to the parser chunk by chunk, as bytes, as the program prints it.
 */
import type { ChildProcess } from 'node:child_process';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { execa, ExecaError } from 'execa';
import { DumpError } from '../../errors.js';
import { openPacedOutput } from './paced-output.js';
import { IptablesSaveParser, type SaveVisitor } from './scan.js';

export interface RunOptions {
  timeoutMs: number;
  maxOutputBytes: number;
}

/**
 * Runs a program and hands its stdout to `onOutput` as it arrives (so a large
 * table is never held twice): bytes, valid only during the call (the read
 * buffer is reused); a runner in a test may hand text. Resolves when the
 * program exits 0. Injected so tests can replace it. An exception thrown by
 * `onOutput` stops the program and is the runner's result.
 */
export type CommandRunner = (file: string, args: readonly string[], options: RunOptions, onOutput: (chunk: OutputChunk) => void) => Promise<void>;

export type OutputChunk = string | Uint8Array;

/**
 * After the program has exited 0, how long its output may take to reach its
 * end: what it wrote is already in the pipe, so this is only the draining of
 * the pipe's buffer. Past it, whatever still holds the pipe (a grandchild
 * that inherited stdout) is no longer waited for.
 */
export const EXIT_GRACE_MS = 200;

export const execaRunner: CommandRunner = async (file, args, options, onOutput) => {
  const command = [file, ...args].join(' ');
  // The output is read in paced large reads of a socket when one can be made (see paced-output.ts), else through a pipe.
  const paced = await openPacedOutput().catch(() => undefined);
  const subprocess = spawnWatched(() =>
    execa(file, args, {
      stdout: paced?.writer ?? 'pipe',
      buffer: { stdout: false, stderr: true },
      maxBuffer: { stderr: 64 * 1024 },
      stdin: 'ignore',
      // Locale-independent output; LC_ALL is what iptables honours.
      env: { LC_ALL: 'C' },
    }),
  );
  if (!subprocess.ok) {
    paced?.close();
    throw toDumpError(file, args, options, await subprocess.error);
  }
  const child = subprocess.child;
  let received = 0;
  let stopped: unknown;
  /** Stops listening to the pipes: execa's promise then settles whoever else holds them. */
  const release = () => {
    paced?.close();
    child.stdout?.destroy();
    child.stderr.destroy();
  };
  const stop = (reason: unknown) => {
    stopped ??= reason;
    child.kill();
    release();
  };
  // Our own deadline rather than execa's `timeout`: that one kills the program
  // but still waits for the end of its output, which a grandchild can hold,
  // and for the program's end, which one that ignores SIGTERM puts off (execa
  // sends SIGKILL 5 s later; the reading does not wait for that).
  let deadline: NodeJS.Timeout | undefined;
  const deadlinePassed = new Promise<never>((_resolve, reject) => {
    deadline = setTimeout(() => {
      stop(timedOut(command, options.timeoutMs));
      reject(stopped);
    }, options.timeoutMs);
  });
  let grace: NodeJS.Timeout | undefined;
  child.once('exit', (code) => {
    // The program's own copy of the socket's writing end is closed: the agent's now too, so that the output ends.
    // (Not before: execa watches the stream it was given, and calls its early close a failure.)
    paced?.writer.destroy();
    if (code === 0) grace = setTimeout(release, EXIT_GRACE_MS);
  });
  const take = (chunk: Buffer) => {
    if (stopped !== undefined) return;
    received += chunk.length;
    if (received > options.maxOutputBytes) {
      stop(tooMuchOutput(command, options.maxOutputBytes));
      return;
    }
    try {
      onOutput(chunk);
    } catch (error) {
      stop(error);
    }
  };
  if (paced) paced.onData = take;
  else child.stdout?.on('data', take);
  try {
    // The race listens to both, so a rejection of the one that loses is handled too.
    await Promise.race([child, deadlinePassed]);
    // The socket is read at its own pace: what the program wrote is read to the end (or up to the
    // grace period's end, when a process it left holds the socket) before the reading counts.
    if (paced) await Promise.race([paced.ended, deadlinePassed]);
  } catch (error) {
    throw stopped ?? toDumpError(file, args, options, error);
  } finally {
    clearTimeout(deadline);
    clearTimeout(grace);
    // A program that never started has no 'exit': its socket is closed here.
    paced?.close();
  }
  if (stopped !== undefined) throw stopped;
  // Output cut short after a clean exit has reached the parser as it came: a
  // dump without its COMMIT is refused there, never counted.
};

/**
 * Starts execa, made safe against a spawn that fails before it has pipes. Out of
 * file descriptors (EMFILE, ENFILE), Node's spawn() returns a ChildProcess
 * without stdio and emits 'error' on it a tick later; execa 9 then throws a
 * TypeError before it listens to that child, and the unheard 'error' event
 * would end the agent. The ChildProcess is caught as it is created (Node's
 * `child_process` diagnostics channel, listened to only during this
 * synchronous call) so its error is heard and becomes the result.
 */
function spawnWatched<T>(start: () => T): { ok: true; child: T } | { ok: false; error: Promise<unknown> } {
  let created: ChildProcess | undefined;
  const onCreate = (message: unknown) => {
    created ??= (message as { process: ChildProcess }).process;
  };
  subscribe('child_process', onCreate);
  try {
    return { ok: true, child: start() };
  } catch (thrown) {
    const spawned = created;
    // The child's own error (EMFILE...) says more than execa's TypeError; it comes on the next tick.
    const error = spawned
      ? new Promise((resolve) => {
          spawned.once('error', resolve);
          setImmediate(() => resolve(thrown));
        })
      : Promise.resolve(thrown);
    return { ok: false, error };
  } finally {
    unsubscribe('child_process', onCreate);
  }
}

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
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const spawnFailure = SPAWN_FAILURES[code ?? ''];
  if (code === 'ENOENT') {
    return new DumpError(
      'missing_binary',
      command,
      `${file} was not found: install iptables (Debian's package has both backends) in this image, or set iptables.backend or iptables.saveCommand / iptables.save6Command`,
      { cause: error },
    );
  }
  if (spawnFailure) return new DumpError('spawn', command, spawnFailure(file, command), { cause: error });
  if (!(error instanceof ExecaError)) {
    return new DumpError('spawn', command, `could not run ${command}: ${String(error)}`, { cause: error });
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

/** The program could not be started: the kernel's reason, in words that say what to do. */
const SPAWN_FAILURES: Record<string, (file: string, command: string) => string> = {
  // execve refuses a binary with file capabilities (the image's xtables binaries have two) that the
  // process's bounding set cannot grant: a container started without cap_add.
  EPERM: (file) =>
    `the kernel refused to run ${file} with its file capabilities (EPERM): the container lacks NET_ADMIN or NET_RAW; add cap_add: [NET_ADMIN, NET_RAW] to the service (docker run --cap-add NET_ADMIN --cap-add NET_RAW), or run as root with them`,
  EACCES: (file, command) => `could not run ${command}: ${file} cannot be executed (EACCES): check its mode and that its filesystem is not mounted noexec`,
  EMFILE: (_file, command) =>
    `could not run ${command}: the agent is out of file descriptors (EMFILE); this reading is skipped and the next interval tries again: raise the open-files limit (ulimit -n, docker --ulimit nofile=...) or find what holds them`,
  ENFILE: (_file, command) => `could not run ${command}: the system is out of file descriptors (ENFILE); this reading is skipped and the next interval tries again`,
  EAGAIN: (_file, command) =>
    `could not run ${command}: the kernel refused a new process (EAGAIN: a process-count or memory limit); this reading is skipped and the next interval tries again`,
  ENOMEM: (_file, command) => `could not run ${command}: not enough memory to start it (ENOMEM); this reading is skipped and the next interval tries again`,
};

function timedOut(command: string, timeoutMs: number): DumpError {
  return new DumpError('timeout', command, `${command} did not finish within ${timeoutMs} ms and was killed: raise collect.timeoutMs for a large table`);
}

function tooMuchOutput(command: string, limit: number, cause?: unknown): DumpError {
  return new DumpError('max_buffer', command, `${command} printed more than ${limit} bytes: raise collect.maxOutputBytes`, { cause });
}
