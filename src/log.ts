/**
 * Structured JSON logs, one object per line: debug and info on stdout, warn
 * and error on stderr, so a container runtime can tell them apart.
 */
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

const processSink: Sink = {
  out: (line) => process.stdout.write(line),
  err: (line) => process.stderr.write(line),
};

/** Every level on stderr: for commands whose stdout is their output (snapshot). */
export const stderrSink: Sink = {
  out: (line) => process.stderr.write(line),
  err: (line) => process.stderr.write(line),
};

export function createLogger(level: LogLevel = 'info', base: LogFields = {}, sink: Sink = processSink): Logger {
  const threshold = LOG_LEVELS.indexOf(level);
  const write = (lvl: Exclude<LogLevel, 'silent'>, msg: string, fields?: LogFields): void => {
    if (LOG_LEVELS.indexOf(lvl) < threshold) return;
    const record = { time: new Date().toISOString(), level: lvl, msg, ...base, ...serializeFields(fields) };
    const line = `${JSON.stringify(record, jsonReplacer)}\n`;
    (lvl === 'warn' || lvl === 'error' ? sink.err : sink.out)(line);
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

function serializeError(error: Error): LogFields {
  const code = (error as { code?: unknown }).code;
  return { type: error.name, ...(code === undefined ? {} : { code }), message: error.message };
}

function jsonReplacer(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}
