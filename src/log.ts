/**
 * Structured JSON logs, one object per line: debug and info on stdout, warn
 * and error on stderr, so a container runtime can tell them apart. Logging
 * never throws: once stdout is closed (`markmeter run | head -1`) its lines
 * go to stderr, and once stderr is closed too they are dropped.
 */
import { MarkmeterError } from './errors.js';

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

export interface Sink {
  out: (line: string) => void;
  err: (line: string) => void;
}

/** process.stdout and process.stderr once they failed (their `writable` turns true again after the error). */
const failed = new Set<NodeJS.WritableStream>();

/**
 * A closed stdout or stderr (EPIPE: the reader went away) is not worth dying
 * for, and with no 'error' listener it would end the process. A stream that
 * failed once is written to no more.
 */
export function surviveClosedOutput(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', () => failed.add(stream));
  }
}

/** Whether `stream` can still be written to (false between a failed write and its 'error' event too). */
export function isOpen(stream: NodeJS.WritableStream): boolean {
  return stream.writable && !failed.has(stream);
}

/** Writes to the first of `streams` that is still open; none open: the line is dropped. */
function writeToOpen(streams: NodeJS.WritableStream[], line: string): void {
  streams.find(isOpen)?.write(line);
}

const processSink: Sink = {
  out: (line) => writeToOpen([process.stdout, process.stderr], line),
  err: (line) => writeToOpen([process.stderr], line),
};

/** Every level on stderr: for commands whose stdout is their output (snapshot). */
export const stderrSink: Sink = {
  out: (line) => writeToOpen([process.stderr], line),
  err: (line) => writeToOpen([process.stderr], line),
};

export function createLogger(level: LogLevel = 'info', base: LogFields = {}, sink: Sink = processSink): Logger {
  const threshold = LOG_LEVELS.indexOf(level);
  const write = (lvl: Exclude<LogLevel, 'silent'>, msg: string, fields?: LogFields): void => {
    if (LOG_LEVELS.indexOf(lvl) < threshold) return;
    const line = `${stringify({ time: new Date().toISOString(), level: lvl, msg, ...base, ...serializeFields(fields) })}\n`;
    try {
      (lvl === 'warn' || lvl === 'error' ? sink.err : sink.out)(line);
    } catch {
      // Nowhere left to say it.
    }
  };
  return {
    debug: (msg, fields) => write('debug', msg, fields),
    info: (msg, fields) => write('info', msg, fields),
    warn: (msg, fields) => write('warn', msg, fields),
    error: (msg, fields) => write('error', msg, fields),
    child: (fields) => createLogger(level, { ...base, ...fields }, sink),
  };
}

function serializeFields(fields: LogFields | undefined): LogFields {
  if (!fields) return {};
  const out: LogFields = {};
  for (const [key, value] of Object.entries(fields)) {
    out[key] = value instanceof Error ? serializeError(value) : value;
  }
  return out;
}

/**
 * An error as log fields: type, code and message; for an error markmeter did
 * not raise on purpose (not a MarkmeterError) also its stack, since that is all
 * there is to debug it by. Causes are walked (a few levels), each the same way.
 */
function serializeError(error: Error, depth = 0): LogFields {
  const code = (error as { code?: unknown }).code;
  const fields: LogFields = { type: error.name, ...(code === undefined ? {} : { code }), message: error.message };
  if (!(error instanceof MarkmeterError) && error.stack) fields.stack = error.stack;
  const cause = error.cause;
  if (cause !== undefined && depth < 4) fields.cause = cause instanceof Error ? serializeError(cause, depth + 1) : String(cause);
  return fields;
}

/** JSON of a record; fields that cannot be serialised (a cycle) are named rather than thrown about. */
function stringify(record: LogFields): string {
  try {
    return JSON.stringify(record, jsonReplacer);
  } catch (error) {
    return JSON.stringify({ time: record.time, level: record.level, msg: record.msg, log_error: `fields not serialisable: ${(error as Error).message}` });
  }
}

function jsonReplacer(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}
