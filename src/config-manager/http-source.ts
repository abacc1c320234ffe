/**
 * The users document polled over HTTP(S) (`users.url`). Each poll sends
 * If-None-Match with the last ETag, so an unchanged document costs a 304 and
 * no resync; an optional bearer token (read from users.tokenFile on every poll,
 * so a rotated token is picked up); an optional CA file for a private PKI; a
 * timeout. After a failure the next poll waits twice as long (up to 16 polls),
 * and the first success returns to the normal interval.
 */
import { readFileSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { UsersSource } from './source.js';

export interface HttpSourceOptions {
  url: string;
  pollMs: number;
  timeoutMs: number;
  token?: string;
  tokenFile?: string;
  caFile?: string;
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
    return new Promise((resolve, reject) => {
      const req = request(this.url, { method: 'GET', headers, timeout: this.options.timeoutMs, ...(ca ? { ca } : {}) }, (response: IncomingMessage) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('error', reject);
        response.on('end', () => {
          const status = response.statusCode ?? 0;
          if (status === 304 && this.lastText !== undefined) {
            resolve(this.lastText);
          } else if (status >= 200 && status < 300) {
            this.lastText = Buffer.concat(chunks).toString('utf8');
            const etag = response.headers.etag;
            this.etag = typeof etag === 'string' ? etag : undefined;
            resolve(this.lastText);
          } else {
            const hint = status === 401 || status === 403 ? ': check users.token / users.tokenFile' : ': check users.url and the server';
            reject(new Error(`cannot be fetched (HTTP ${status})${hint}`));
          }
        });
      });
      req.on('timeout', () => req.destroy(new Error(`no answer within ${this.options.timeoutMs} ms (users.timeoutMs)`)));
      req.on('error', (error: NodeJS.ErrnoException) => {
        reject(new Error(`cannot be fetched (${error.code ?? error.message}): check users.url and that the server is up`, { cause: error }));
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
