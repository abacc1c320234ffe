import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { InterfaceReader } from '../../src/sources/interfaces.js';

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'markmeter-sysfs-'));
});
after(() => rm(root, { recursive: true, force: true }));

async function setStats(iface: string, rx: string, tx: string): Promise<void> {
  await mkdir(join(root, iface, 'statistics'), { recursive: true });
  await writeFile(join(root, iface, 'statistics', 'rx_packets'), `${rx}\n`);
  await writeFile(join(root, iface, 'statistics', 'tx_packets'), `${tx}\n`);
}

describe('InterfaceReader (a sysfs-shaped folder)', () => {
  test('reads totals, reports a missing interface once, and stays monotonic across a recreated interface', async () => {
    const missing: string[] = [];
    const reader = new InterfaceReader(['wg0', 'wg1'], (iface) => missing.push(iface), root);
    await setStats('wg0', '100', '50');
    await reader.read();
    await reader.read();
    assert.deepEqual(missing, ['wg1'], 'logged once, not once per reading');
    assert.deepEqual([...reader.totals()], [{ iface: 'wg0', rxPackets: 100, txPackets: 50 }]);

    await setStats('wg0', '130', '55');
    await reader.read();
    assert.deepEqual([...reader.totals()][0], { iface: 'wg0', rxPackets: 130, txPackets: 55 });

    // The interface was recreated: its counters restart from 0; ours keep rising.
    await setStats('wg0', '7', '3');
    await reader.read();
    assert.deepEqual([...reader.totals()][0], { iface: 'wg0', rxPackets: 137, txPackets: 58 });

    await setStats('wg1', '1', '2');
    await reader.read();
    assert.equal([...reader.totals()].length, 2);
  });

  test('garbage in a statistics file is treated like a missing interface', async () => {
    const missing: string[] = [];
    await setStats('bad0', 'lots', '1');
    const reader = new InterfaceReader(['bad0'], (iface) => missing.push(iface), root);
    await reader.read();
    assert.deepEqual(missing, ['bad0']);
    assert.equal([...reader.totals()].length, 0);
  });
});
