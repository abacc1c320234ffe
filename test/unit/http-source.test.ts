import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigManager } from '../../src/users/manager.js';
import { HttpUsersSource } from '../../src/users/http-source.js';
import type { UsersSnapshot } from '../../src/users/document.js';
import type { UsersDocumentError } from '../../src/errors.js';

const doc = (...codes: string[]) => JSON.stringify({ users: codes.map((code, i) => ({ user_code: code, user_intra_ip: `10.8.0.${i + 2}` })) });

/** A users-document server on loopback whose answer the test changes. */
interface Served {
  status: number;
  body: string;
  etag: string;
  hang: boolean;
}
let server: Server;
let url: string;
let served: Served;
const requests: IncomingMessage[] = [];
let dir: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'markmeter-http-'));
  server = createServer((request, response) => {
    requests.push(request);
    if (served.hang) return; // never answers: a timeout
    if (served.status === 200 && request.headers['if-none-match'] === served.etag) {
      response.writeHead(304).end();
      return;
    }
    response.writeHead(served.status, { etag: served.etag, 'content-type': 'application/json' }).end(served.body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://user:secret@127.0.0.1:${(server.address() as { port: number }).port}/users.json`;
});
after(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

let manager: ConfigManager | undefined;
afterEach(() => manager?.stop());

function start(options: Partial<ConstructorParameters<typeof HttpUsersSource>[0]> = {}) {
  const source = new HttpUsersSource({ url, pollMs: 60, timeoutMs: 300, ...options });
  manager = new ConfigManager(source, 5);
  const events: (UsersSnapshot | UsersDocumentError)[] = [];
  manager.on('sync', (s) => events.push(s));
  manager.on('error', (e) => events.push(e));
  return { source, events, manager };
}
const codes = (m: ConfigManager) => m.current()?.users.map((u) => u.user_code);

describe('HttpUsersSource', () => {
  test('loads the document; an unchanged one answers 304 to If-None-Match and does not resync', async () => {
    served = { status: 200, body: doc('alice'), etag: '"v1"', hang: false };
    requests.length = 0;
    const { events, manager } = start();
    await manager.start();
    assert.deepEqual(codes(manager), ['alice']);
    await sleep(400);
    assert.ok(requests.length >= 3, `polled ${requests.length} times`);
    assert.equal(requests.at(-1)!.headers['if-none-match'], '"v1"');
    assert.equal(events.length, 1, 'one sync, no more');
    served = { status: 200, body: doc('alice', 'bob'), etag: '"v2"', hang: false };
    await sleep(300);
    assert.deepEqual(codes(manager), ['alice', 'bob']);
    assert.equal(events.length, 2);
  });

  test('sends the bearer token, from users.tokenFile re-read on every poll', async () => {
    served = { status: 200, body: doc('alice'), etag: '"t"', hang: false };
    requests.length = 0;
    const tokenFile = join(dir, 'token');
    await writeFile(tokenFile, 'first-token\n');
    const { manager } = start({ tokenFile });
    await manager.start();
    assert.equal(requests[0]!.headers.authorization, 'Bearer first-token');
    await writeFile(tokenFile, 'rotated-token\n');
    await sleep(200);
    assert.equal(requests.at(-1)!.headers.authorization, 'Bearer rotated-token');
  });

  const failures: [string, Partial<Served>, RegExp][] = [
    ['a 500', { status: 500, body: 'oops' }, /HTTP 500/],
    ['a timeout', { hang: true }, /no answer within 300 ms/],
    ['an invalid document', { status: 200, body: '{"users": 7}', etag: '"bad"' }, /users: must be an array/],
  ];
  for (const [name, change, message] of failures) {
    test(`${name} keeps the last mapping, is reported once, and the next good answer resyncs`, async () => {
      served = { status: 200, body: doc('alice'), etag: '"a"', hang: false };
      const { events, manager } = start();
      await manager.start();
      served = { ...served, ...change };
      await sleep(900);
      const errors = events.filter((e): e is UsersDocumentError => e instanceof Error);
      assert.equal(errors.length, 1, `one error, got ${errors.map((e) => e.message).join(' | ')}`);
      assert.match(errors[0]!.message, message);
      assert.ok(!errors[0]!.message.includes('secret'), 'no credentials in messages');
      assert.deepEqual(codes(manager), ['alice']);
      served = { status: 200, body: doc('carol'), etag: '"c"', hang: false };
      await sleep(1500);
      assert.deepEqual(codes(manager), ['carol']);
    });
  }

  test('failures back off: the next poll waits twice as long each time, capped', async () => {
    served = { status: 503, body: '', etag: '', hang: false };
    const source = new HttpUsersSource({ url, pollMs: 100, timeoutMs: 300 });
    assert.equal(source.nextDelayMs, 100);
    for (let i = 0; i < 6; i++) await source.read().catch(() => undefined);
    assert.equal(source.nextDelayMs, 1600);
    served = { status: 200, body: doc('x'), etag: '"x"', hang: false };
    await source.read();
    assert.equal(source.nextDelayMs, 100);
  });

  test('an unreadable CA file is a clear error', async () => {
    const source = new HttpUsersSource({ url: url.replace('http:', 'https:'), pollMs: 100, timeoutMs: 300, caFile: join(dir, 'missing.pem') });
    await assert.rejects(source.read(), /users\.caFile .*missing\.pem cannot be read \(ENOENT\)/);
  });

  test('SIGHUP-style reload polls at once', async () => {
    served = { status: 200, body: doc('alice'), etag: '"r1"', hang: false };
    const { manager } = start({ pollMs: 60_000 });
    await manager.start();
    served = { status: 200, body: doc('dave'), etag: '"r2"', hang: false };
    await manager.reload();
    assert.deepEqual(codes(manager), ['dave']);
  });

});

/** A server of its own on loopback for one test; `closed` resolves when the response's socket closes. */
async function serveOnce(handler: (response: ServerResponse) => void) {
  let closed!: (finished: boolean) => void;
  const responseClosed = new Promise<boolean>((resolve) => (closed = resolve));
  const own = createServer(((_request, response) => {
    response.on('close', () => closed(response.writableFinished));
    handler(response);
  }) as RequestListener);
  await new Promise<void>((resolve) => own.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(own.address() as { port: number }).port}/users.json`,
    /** Whether the response was written to its end when its socket closed. */
    responseClosed,
    close: () => {
      own.closeAllConnections();
      own.close();
    },
  };
}

const MiB = 1024 * 1024;

describe('ConfigManager stopped during its first load', () => {
  test('stop() before the first answer: no polling starts after it', async () => {
    let answer!: () => void;
    const answered = new Promise<void>((resolve) => (answer = resolve));
    let polls = 0;
    const served = await serveOnce((response) => {
      polls += 1;
      void answered.then(() => response.writeHead(200).end(doc('alice')));
    });
    const own = new ConfigManager(new HttpUsersSource({ url: served.url, pollMs: 30, timeoutMs: 5000 }), 5);
    try {
      const first = own.start();
      await sleep(50);
      own.stop();
      answer();
      await first;
      await sleep(300);
      assert.equal(polls, 1, 'one request, no polls after stop()');
    } finally {
      own.stop();
      served.close();
    }
  });
});

describe('HttpUsersSource bounds', () => {
  test('a body past users.maxBytes (no content-length) is refused and the request aborted', async () => {
    let written = 0;
    const served = await serveOnce((response) => {
      response.writeHead(200, { 'content-type': 'application/json' });
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      const more = () => {
        while (written < 64 * MiB && !response.destroyed) {
          written += chunk.length;
          if (!response.write(chunk)) return void response.once('drain', more);
        }
        response.end();
      };
      more();
    });
    try {
      const source = new HttpUsersSource({ url: served.url, pollMs: 60_000, timeoutMs: 10_000, maxBytes: MiB });
      await assert.rejects(source.read(), /more than users\.maxBytes \(1048576 bytes\)/);
      assert.equal(await served.responseClosed, false, 'the server saw the request aborted');
      assert.ok(written < 32 * MiB, `the server could send only ${written} bytes of 64 MiB`);
    } finally {
      served.close();
    }
  });

  test('a content-length past users.maxBytes is refused before the body arrives', async () => {
    const served = await serveOnce((response) => {
      response.writeHead(200, { 'content-length': String(100 * MiB) });
      response.flushHeaders();
    });
    try {
      const source = new HttpUsersSource({ url: served.url, pollMs: 60_000, timeoutMs: 10_000, maxBytes: MiB });
      const started = Date.now();
      await assert.rejects(source.read(), /104857600 bytes, more than users\.maxBytes \(1048576 bytes\)/);
      assert.ok(Date.now() - started < 2000, 'refused at the headers, not at the timeout');
      assert.equal(await served.responseClosed, false);
    } finally {
      served.close();
    }
  });

  test('a body of exactly users.maxBytes is accepted; one byte less is not', async () => {
    const body = doc('alice');
    const served = await serveOnce((response) => response.writeHead(200).end(body));
    try {
      const exact = new HttpUsersSource({ url: served.url, pollMs: 60_000, timeoutMs: 1000, maxBytes: Buffer.byteLength(body) });
      assert.equal(await exact.read(), body);
      const under = new HttpUsersSource({ url: served.url, pollMs: 60_000, timeoutMs: 1000, maxBytes: Buffer.byteLength(body) - 1 });
      await assert.rejects(under.read(), /users\.maxBytes/);
    } finally {
      served.close();
    }
  });

  test('users.timeoutMs bounds the whole request: a server dripping a valid document fails within the timeout', async () => {
    const body = doc('alice'); // ~50 bytes: 5 s at one byte per 100 ms
    const served = await serveOnce((response) => {
      response.writeHead(200, { 'content-type': 'application/json' });
      let sent = 0;
      const drip = setInterval(() => {
        if (response.destroyed || sent >= body.length) {
          clearInterval(drip);
          response.end();
          return;
        }
        response.write(body[sent++]!);
      }, 100);
    });
    try {
      const source = new HttpUsersSource({ url: served.url, pollMs: 60_000, timeoutMs: 500 });
      const started = Date.now();
      await assert.rejects(source.read(), /within 500 ms \(users\.timeoutMs/);
      const took = Date.now() - started;
      assert.ok(took >= 450 && took < 1500, `failed after ${took} ms`);
      assert.equal(await served.responseClosed, false, 'the request was aborted');
    } finally {
      served.close();
    }
  });
});
