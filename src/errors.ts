/**
 * Every error markmeter reports on purpose. Each has a stable `code` (for logs
 * and the `kind` attribute of self-telemetry) and a message that says what to
 * do next; the underlying error, if any, is kept as `cause`.
 */
export class MarkmeterError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A line of an iptables-save dump that is not what iptables-save prints. */
export class ParseError extends MarkmeterError {
  readonly line: number;
  readonly text: string;

  constructor(message: string, line: number, text: string) {
    super('parse', `${message} (line ${line}: ${JSON.stringify(truncate(text, 120))})`);
    this.line = line;
    this.text = text;
  }
}

/** A users document that does not validate; `field` is a path like `users[2].user_intra_ip`. */
export class UsersDocumentError extends MarkmeterError {
  readonly source: string;
  readonly field: string | undefined;

  constructor(source: string, field: string | undefined, problem: string, options?: { cause?: unknown }) {
    const where = field ? `${source}: ${field}` : source;
    super(
      'users_document',
      `users document ${where}: ${problem}; the document was rejected whole and the last good mapping stays in force`,
      options,
    );
    this.source = source;
    this.field = field;
  }
}

/**
 * The users document could not be read or fetched at all (a missing file, a
 * server that is down): nothing was validated. Said so that it fits a one-shot
 * command as well as the agent, which adds that its last mapping stays.
 */
export class UsersSourceError extends MarkmeterError {
  readonly source: string;
  readonly field = undefined;

  constructor(source: string, problem: string, options?: { cause?: unknown }) {
    super('users_source', `users document ${source}: ${problem}`, options);
    this.source = source;
  }
}

export type DumpFailure = 'missing_binary' | 'exit_code' | 'timeout' | 'max_buffer' | 'signal' | 'spawn';

/** Running iptables-save (or ip6tables-save) failed. */
export class DumpError extends MarkmeterError {
  readonly failure: DumpFailure;
  readonly command: string;

  constructor(failure: DumpFailure, command: string, message: string, options?: { cause?: unknown }) {
    super(failure, message, options);
    this.failure = failure;
    this.command = command;
  }
}

/** Settings that do not validate (wrong type, unknown key, unreadable file). */
export class SettingsError extends MarkmeterError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('settings', message, options);
  }
}

/** Bad command-line usage. */
export class UsageError extends MarkmeterError {
  constructor(message: string) {
    super('usage', message);
  }
}

function truncate(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}
