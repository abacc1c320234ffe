import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigManager } from '../../src/config-manager/config-manager.js';
import { HttpUsersSource } from '../../src/config-manager/http-source.js';
import type { UsersSnapshot } from '../../src/config-manager/users-document.js';
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
