/**
 * The save command writes into a socket that the runner reads in paced large
 * reads (paced-output.ts): the dump comes out whole, in pieces larger than a
 * pipe could ever give (64 KiB), and no socket or directory is left behind.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { openPacedOutput } from '../../src/sources/iptables/paced-output.js';
import { execaRunner } from '../../src/sources/iptables/save-command.js';

const FAKE = resolve('test/bin/fake-iptables-save');
let dir: string;
// One comment of 40,000 three-byte characters: the 64 KiB pieces it is decoded in split some of them.
const rules = Array.from({ length: 40_000 }, (_, i) => `[${i}:${i * 84}] -A PREROUTING -d 10.9.${i >> 8}.${i & 255}/32 -j MARK --set-xmark 0x${i.toString(16)}/0xffffffff`);
rules[20_000] = `[0:0] -A PREROUTING -m comment --comment ${'€'.repeat(40_000)} -j ACCEPT`;
const dump = ['*mangle', ':PREROUTING ACCEPT [0:0]', ...rules, 'COMMIT', ''].join('\n');

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'markmeter-paced-test-'));
  await writeFile(join(dir, 'dump.txt'), dump);
});
after(() => rm(dir, { recursive: true, force: true }));

test('the output comes out whole, in pieces larger than a pipe holds, leaving nothing in the temporary folder', async () => {
  const leftovers = async () => (await readdir(tmpdir())).filter((name) => /^markmeter-[A-Za-z0-9]{6}$/.test(name)).sort();
  const before = await leftovers();
  const pieces: Buffer[] = [];
  process.env.FAKE_SAVE_OUTPUT = join(dir, 'dump.txt');
  try {
    // Bytes in a reused buffer: copied.
    await execaRunner(FAKE, ['-c', '-t', 'mangle'], { timeoutMs: 10_000, maxOutputBytes: 64 << 20 }, (chunk) => pieces.push(Buffer.from(chunk)));
  } finally {
    delete process.env.FAKE_SAVE_OUTPUT;
  }
  assert.equal(Buffer.concat(pieces).toString(), dump);
  assert.ok(Math.max(...pieces.map((p) => p.length)) > 65536, 'read in pieces larger than a pipe holds');
  assert.deepEqual(await leftovers(), before);
});

test('the socket is read in pieces larger than a pipe holds, and two outputs at once each come out whole', async () => {
  const other = dump.replaceAll('PREROUTING', 'POSTROUTING');
  await writeFile(join(dir, 'other.txt'), other);
  // Two outputs read at once (the IPv4 and IPv6 saves of one reading), then one more, on the buffers those closed.
  const read = async (file: string) => {
    const output = await openPacedOutput();
    const reads: Buffer[] = [];
    output.onData = (chunk) => reads.push(Buffer.from(chunk)); // a view of a reused buffer: copied
    const child = spawn('cat', [join(dir, file)], { stdio: ['ignore', output.writer, 'inherit'] });
    child.once('exit', () => output.writer.destroy());
    await output.ended;
    return reads;
  };
  for (const round of [await Promise.all([read('dump.txt'), read('other.txt')]), [await read('other.txt')]]) {
    const texts = round.map((reads) => Buffer.concat(reads).toString());
    assert.deepEqual(texts, round.length === 2 ? [dump, other] : [other]);
    const largest = Math.max(...round.flat().map((chunk) => chunk.length));
    assert.ok(largest > 65536, `the largest read is ${largest} bytes: read as through a pipe`);
  }
});
