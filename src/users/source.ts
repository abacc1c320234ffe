/** Where the users document comes from: a file (file-source.ts) or an HTTP URL (http-source.ts). */
export interface UsersSource {
  /** Names the source in errors and logs (never with credentials). */
  readonly name: string;
  /** The document's text; rejects with an Error whose message says what is wrong and what to do. */
  read(): Promise<string>;
  /**
   * The document's UTF-8 bytes, when the source has them (a file): the
   * manager hashes them (quicker than the text) and decodes only a document
   * that changed.
   */
  readBytes?(): Promise<Buffer>;
  /** Calls `onChange` (possibly more than once per change) when the document may have changed; returns a stop function. */
  watch(onChange: () => void): () => void;
  /**
   * Cheap: whether the document may differ from what read() last returned (a
   * file compares its stat). Asked before each reading, so that a document
   * written before a reading starts is in force for it. Absent: only watch() tells.
   */
  changedSinceRead?(): Promise<boolean>;
}

/** The default of users.maxBytes: far above any real document (100,000 users take about 8 MB), far below what exhausts memory. */
export const USERS_MAX_BYTES = 32 * 1024 * 1024;
