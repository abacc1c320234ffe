/**
 * The users document polled over HTTP(S) (`users.url`). Each poll sends
 * If-None-Match with the last ETag, so an unchanged document costs a 304 and
 * no resync; an optional bearer token (read from users.tokenFile on every poll,
 * so a rotated token is picked up); an optional CA file for a private PKI; a
 * bound on the whole request's time (users.timeoutMs) and on the body's size
 * (users.maxBytes). After a failure the next poll waits twice as long (up to 16 polls),
 * and the first success returns to the normal interval.
 */
import { readFileSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { USERS_MAX_BYTES, type UsersSource } from './source.js';

export interface HttpSourceOptions {
  url: string;
  pollMs: number;
  timeoutMs: number;
  token?: string;
  tokenFile?: string;
  caFile?: string;
  /** The largest body taken (users.maxBytes); a larger one is refused and the request aborted. */
  maxBytes?: number;
}

const MAX_BACKOFF = 16;

export class HttpUsersSource implements UsersSource {
  readonly name: string;
  private readonly url: URL;
  private etag: string | undefined;
  private lastText: string | undefined;
  private failures = 0;

  constructor(private readonly options: HttpSourceOptions) {
    this.url = new URL(options.url);
    if (this.url.protocol !== 'http:' && this.url.protocol !== 'https:') {
      throw new Error(`users.url must be an http:// or https:// URL, got ${this.url.protocol}`);
    }
    // Never show credentials written into the URL.
    const shown = new URL(options.url);
    shown.username = '';
    shown.password = '';
    this.name = shown.toString();
  }

  async read(): Promise<string> {
    try {
      const text = await this.fetch();
      this.failures = 0;
      return text;
    } catch (error) {
      this.failures += 1;
      throw error;
    }
  }

  watch(onChange: () => void): () => void {
    let timer: NodeJS.Timeout | undefined;
    let stopped = false;
    const next = () => {
      if (stopped) return;
      const delay = this.options.pollMs * Math.min(2 ** this.failures, MAX_BACKOFF);
      timer = setTimeout(() => {
        onChange();
        next();
      }, delay);
      timer.unref();
    };
    next();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }

  /** The delay before the next poll, in ms (exposed for tests and logs). */
  get nextDelayMs(): number {
    return this.options.pollMs * Math.min(2 ** this.failures, MAX_BACKOFF);
  }

  private fetch(): Promise<string> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.etag && this.lastText !== undefined) headers['if-none-match'] = this.etag;
    const token = this.token();
    if (token) headers.authorization = `Bearer ${token}`;
    const ca = this.options.caFile ? readCa(this.options.caFile) : undefined;
    const request = this.url.protocol === 'https:' ? httpsRequest : httpRequest;
    const { timeoutMs } = this.options;
    const maxBytes = this.options.maxBytes ?? USERS_MAX_BYTES;
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = (outcome: () => void) => {
        if (settled) return;
        settled = true;
        clearTimeout(deadline);
        // Inside an event handler a throw would be uncaught (decoding a body past V8's string limit throws).
        try {
          outcome();
        } catch (error) {
          reject(new Error(`cannot be fetched (${String(error)}): lower users.maxBytes or check users.url`, { cause: error }));
        }
      };
      // Our own reasons to give up: reported as they are, and the request torn down.
      const abort = (message: string) => {
        settle(() => reject(new Error(message)));
        req.destroy();
      };
      const tooLarge = (declared?: number) =>
        abort(`cannot be fetched: the body is ${declared === undefined ? '' : `${declared} bytes, `}more than users.maxBytes (${maxBytes} bytes): check users.url or raise users.maxBytes`);
      // One bound on the whole request (connect, headers, body): a server dripping bytes must not hold a poll for ever.
      const deadline = setTimeout(
        () => abort(`no answer within ${timeoutMs} ms (users.timeoutMs bounds the whole request, body included): check the server or raise users.timeoutMs`),
        timeoutMs,
      );
      const req = request(this.url, { method: 'GET', headers, ...(ca ? { ca } : {}) }, (response: IncomingMessage) => {
        const declared = Number(response.headers['content-length']);
        if (declared > maxBytes) return tooLarge(declared);
        const chunks: Buffer[] = [];
        let received = 0;
        response.on('data', (chunk: Buffer) => {
          received += chunk.length;
          if (received > maxBytes) return tooLarge();
          chunks.push(chunk);
        });
        response.on('error', (error) => settle(() => reject(new Error(`cannot be fetched (${error.message}): check users.url and the server`, { cause: error }))));
        response.on('end', () => {
          const status = response.statusCode ?? 0;
          if (status === 304 && this.lastText !== undefined) {
            const text = this.lastText;
            settle(() => resolve(text));
          } else if (status >= 200 && status < 300) {
            const etag = response.headers.etag;
            settle(() => {
              const text = Buffer.concat(chunks, received).toString('utf8');
              this.lastText = text;
              this.etag = typeof etag === 'string' ? etag : undefined;
              resolve(text);
            });
          } else {
            const hint = status === 401 || status === 403 ? ': check users.token / users.tokenFile' : ': check users.url and the server';
            settle(() => reject(new Error(`cannot be fetched (HTTP ${status})${hint}`)));
          }
        });
      });
      req.on('error', (error: NodeJS.ErrnoException) => {
        settle(() => reject(new Error(`cannot be fetched (${error.code ?? error.message}): check users.url and that the server is up`, { cause: error })));
      });
      req.end();
    });
  }

  private token(): string | undefined {
    if (this.options.tokenFile) {
      try {
        return readFileSync(this.options.tokenFile, 'utf8').trim();
      } catch (error) {
        throw new Error(`users.tokenFile ${this.options.tokenFile} cannot be read (${(error as NodeJS.ErrnoException).code})`, { cause: error });
      }
    }
    return this.options.token || undefined;
  }
}

function readCa(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new Error(`users.caFile ${path} cannot be read (${(error as NodeJS.ErrnoException).code})`, { cause: error });
  }
}
