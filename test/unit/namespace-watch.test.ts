import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { OrphanDetector, readLinks, type Link } from '../../src/sidecar/namespace-watch.js';

const lo: Link = { name: 'lo', type: 772, up: true };
const wg0: Link = { name: 'wg0', type: 65534, up: true };
const eth0: Link = { name: 'eth0', type: 1, up: true };
const gretap0: Link = { name: 'gretap0', type: 1, up: false };

test('left behind: no up Ethernet link for 3 readings after one was seen; reported once', () => {
  const detector = new OrphanDetector(3);
  assert.equal(detector.observe([lo, eth0, { ...eth0, name: 'eth1' }, wg0]), undefined);
  assert.equal(detector.observe([lo, eth0, wg0]), undefined);
  assert.equal(detector.observe([lo, wg0, gretap0]), undefined);
  assert.equal(detector.observe([lo, wg0, gretap0]), undefined);
  const message = detector.observe([lo, wg0, gretap0]);
  assert.match(message ?? '', /^the network namespace was left behind: eth0, eth1 are gone and no Ethernet link has been up for 3 readings \(left: lo, wg0, gretap0\)/);
  assert.match(message ?? '', /restart policy/);
  assert.match(message ?? '', /namespace\.exitWhenOrphaned/);
  assert.equal(detector.observe([lo, wg0]), undefined);
});

test('not left behind: a link that comes back in time, tunnel devices coming and going, a namespace that never had an Ethernet link', () => {
  const detector = new OrphanDetector(3);
  const readings: Link[][] = [[lo, eth0, wg0], [lo, wg0], [lo, wg0], [lo, { ...eth0, name: 'eth1' }], [lo, eth0], [lo, eth0, wg0], [lo], [lo, wg0], [lo, eth0]];
  for (const links of readings) assert.equal(detector.observe(links), undefined);
  const bare = new OrphanDetector(3);
  for (let i = 0; i < 10; i++) assert.equal(bare.observe([lo, wg0]), undefined);
});

test('readLinks reads each link type and whether it is up; a link gone while read is left out', async () => {
  const root = await mkdtemp(join(tmpdir(), 'markmeter-sysfs-'));
  try {
    for (const [name, type, flags] of [['lo', '772', '0x9'], ['eth0', '1', '0x1003'], ['gretap0', '1', '0x1002']] as const) {
      await mkdir(join(root, name));
      await writeFile(join(root, name, 'type'), `${type}\n`);
      await writeFile(join(root, name, 'flags'), `${flags}\n`);
    }
    await mkdir(join(root, 'gone0'));
    const links = (await readLinks(root))!.sort((a, b) => a.name.localeCompare(b.name));
    assert.deepEqual(links, [
      { name: 'eth0', type: 1, up: true },
      { name: 'gretap0', type: 1, up: false },
      { name: 'lo', type: 772, up: true },
    ]);
    assert.equal(await readLinks(join(root, 'missing')), undefined);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
