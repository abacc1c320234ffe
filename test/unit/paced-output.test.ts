/**
 * The save command writes into a socket that the runner reads in paced large
 * reads (paced-output.ts): the dump comes out whole, in pieces larger than a
 * pipe could ever give (64 KiB), and no socket or directory is left behind.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { execaRunner } from '../../src/sources/iptables/save-command.js';

const FAKE = resolve('test/bin/fake-iptables-save');
let dir: string;
const dump = ['*mangle', ':PREROUTING ACCEPT [0:0]', ...Array.from({ length: 40_000 }, (_, i) => `[${i}:${i * 84}] -A PREROUTING -d 10.9.${i >> 8}.${i & 255}/32 -j MARK --set-xmark 0x${i.toString(16)}/0xffffffff`), 'COMMIT', ''].join('\n');

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'markmeter-paced-test-'));
  await writeFile(join(dir, 'dump.txt'), dump);
});
after(() => rm(dir, { recursive: true, force: true }));

test('the output comes out whole, in pieces larger than a pipe holds, leaving nothing in the temporary folder', async () => {
  const leftovers = async () => (await readdir(tmpdir())).filter((name) => /^markmeter-[A-Za-z0-9]{6}$/.test(name)).sort();
  const before = await leftovers();
  const pieces: string[] = [];
  process.env.FAKE_SAVE_OUTPUT = join(dir, 'dump.txt');
  try {
    await execaRunner(FAKE, ['-c', '-t', 'mangle'], { timeoutMs: 10_000, maxOutputBytes: 64 << 20 }, (chunk) => pieces.push(chunk));
  } finally {
    delete process.env.FAKE_SAVE_OUTPUT;
  }
  assert.equal(pieces.join(''), dump);
  const largest = Math.max(...pieces.map((p) => p.length));
  assert.ok(largest > 65536, `the largest piece is ${largest} characters: read as through a pipe`);
  assert.deepEqual(await leftovers(), before);
});
