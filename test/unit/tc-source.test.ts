/**
 * The TC source on the real captures of test/fixtures/tc (tc's output handed
 * in by a stand-in for the command): every leaf class counted for the user its
 * filters tie it to, exactly; classes no filter ties to one user unattributed;
 * re-created classes and wrapped drop counters; all or nothing.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { buildMarkMap, type MarkMap } from '../../src/attribution/mark-map.js';
import { Collector } from '../../src/sources/collect.js';
import { TcSource, type TcCommand } from '../../src/sources/tc/source.js';
import { Accumulator, type ShapedTotals } from '../../src/totals/accumulator.js';
import { parseUsersDocument } from '../../src/users/document.js';

/** A fixture as tc printed it (its `#` header lines blank, as the parser tests read them). */
const fixture = (name: string) => readFileSync(new URL(`../fixtures/tc/${name}`, import.meta.url), 'utf8').replace(/^#.*$/gm, '');

const USERS = {
  users: [
    { user_code: 'alice', user_intra_ip: '10.8.0.2' },
    { user_code: 'bob', user_intra_ip: '10.8.0.3' },
    { user_code: 'carol', user_intra_ip: 'fd00:8::2' },
    { user_code: 'dan', user_intra_ip: 'fd00:8::3' },
  ],
  marks: [
    { mark_id: 0x65, sips: ['10.8.0.2'] },
    { mark_id: 0x66, sips: ['192.0.2.99'] },
  ],
};

/** tc for one device: what `-s class show` and `filter show` print now (changed by the test between readings). */
function fakeTc(outputs: { classes: string; filters: string }): TcCommand {
  return async (args) => (args.includes('class') ? outputs.classes : outputs.filters);
}

function gateway(users: object = USERS) {
  const mapOf = (document: object) => buildMarkMap(parseUsersDocument(JSON.stringify(document), 'test'));
  let map: MarkMap = mapOf(users);
  const accumulator = new Accumulator();
  accumulator.setUsers(map, 0);
  const sync = (document: object) => {
    map = mapOf(document);
    accumulator.setUsers(map, 1);
  };
  const upload = { classes: fixture('upload.class.txt'), filters: fixture('upload.filter.txt') };
  const download = { classes: fixture('download.class.txt'), filters: fixture('download.filter.txt') };
  const sources = [new TcSource({ name: 'gf0', direction: 'tx' }, fakeTc(upload), { remember: true }), new TcSource({ name: 'gu0', direction: 'rx' }, fakeTc(download), { remember: true })];
  const collector = new Collector(sources, accumulator, () => map);
  const shaped = (code: string) => [...accumulator.users()].find((s) => s.user.user_code === code)?.shaped;
  return { accumulator, collector, upload, download, shaped, sync };
}

/** Totals as [packets, bytes, dropped, overlimits] per direction. */
const view = (t: ShapedTotals | undefined) =>
  t && { rx: [t.rxPackets, t.rxBytes, t.rxDropped, t.rxOverlimits].map(Number), tx: [t.txPackets, t.txBytes, t.txDropped, t.txOverlimits].map(Number) };

describe('the TC source on real captures', () => {
  test("each leaf class counts for the user its u32 filters tie it to; the burst's drops are bob's", async () => {
    const { accumulator, collector, shaped } = gateway();
    const reports = await collector.collect();
    assert.deepEqual(reports.map((r) => [r.source, r.ok]), [['tc gf0', true], ['tc gu0', true]]);
    assert.deepEqual(view(shaped('alice')), { tx: [3, 294, 0, 0], rx: [3, 294, 0, 0] });
    assert.deepEqual(view(shaped('bob')), { tx: [9, 7578, 13, 6], rx: [9, 7578, 0, 0] });
    assert.deepEqual(view(shaped('carol')), { tx: [3, 354, 0, 0], rx: [3, 354, 0, 0] });
    assert.deepEqual(view(shaped('dan')), { tx: [2, 324, 0, 0], rx: [2, 324, 0, 0] });
    // 1:20 (a partial mask, two conditions) and 1:99 (bpf) are no single user's; the root 1:1 is its children's sum.
    assert.deepEqual(view(accumulator.unattributedShaped), { tx: [4 + 2, 1268 + 1084, 0, 0], rx: [4, 1268, 0, 0] });
    const upload = reports[0]!;
    assert.ok(upload.ok);
    assert.deepEqual(upload.unowned?.classes?.sort(), ['1:20', '1:99']);
    // The iptables totals are untouched: the two measures are kept apart.
    assert.equal(Number([...accumulator.users()][0]!.totals.txPackets), 0);
  });

  test('a second reading counts the increases; a class re-created from zero counts whole; a wrapped drop counter is one wrap', async () => {
    const { collector, upload, shaped } = gateway();
    await collector.collect();
    // bob's class grew, with its 32-bit drop counter wrapping; alice's class was deleted and added again.
    upload.classes = upload.classes
      .replace('Sent 7578 bytes 9 pkt (dropped 13, overlimits 6', 'Sent 8620 bytes 10 pkt (dropped 4294967290, overlimits 7')
      .replace('Sent 294 bytes 3 pkt', 'Sent 98 bytes 1 pkt');
    await collector.collect();
    upload.classes = upload.classes.replace('Sent 8620 bytes 10 pkt (dropped 4294967290', 'Sent 9662 bytes 11 pkt (dropped 4');
    await collector.collect();
    assert.deepEqual(view(shaped('bob'))!.tx, [11, 9662, 13 + (4294967290 - 13) + 10, 7]);
    assert.deepEqual(view(shaped('alice'))!.tx, [3 + 1, 294 + 98, 0, 0]);
  });

  test('all or nothing: output that does not parse fails the reading and changes no total', async () => {
    const { collector, upload, shaped } = gateway();
    await collector.collect();
    upload.filters += 'filter parent 1: protocol ip pref 1 u32 chain 0 fh 800::801 order 2049 key ht 800 bkt 0 *flowid 1:10\n  match zz/ffffffff at 12\n';
    upload.classes = upload.classes.replace('Sent 294 bytes 3 pkt', 'Sent 392 bytes 4 pkt');
    const [failed] = await collector.collect();
    assert.ok(failed && !failed.ok);
    assert.equal(failed.error.code, 'parse');
    assert.deepEqual(view(shaped('alice'))!.tx, [3, 294, 0, 0]);
    upload.filters = fixture('upload.filter.txt');
    await collector.collect();
    assert.deepEqual(view(shaped('alice'))!.tx, [4, 392, 0, 0]);
  });

  test('fw filters tie a class through the mark pool; a mark the pool gives to nobody, or lacks, is unattributed', async () => {
    const { accumulator, collector, upload, shaped } = gateway();
    upload.filters = fixture('fw.filter.txt');
    await collector.collect();
    // 0x65 -> alice: class 1:11; 0x66 (pool: nobody) -> 1:12; 0x67 (not in the pool) -> 1:13.
    assert.deepEqual(view(shaped('alice'))!.tx, [9, 7578, 13, 6]);
    assert.equal(shaped('bob')?.txPackets ?? 0, 0);
    assert.equal(Number(accumulator.unattributedShaped.txPackets), 2 + 3 + 3 + 2 + 4);
  });

  test("a class's counts from before it had an owner go to its first owner", async () => {
    const { accumulator, collector, shaped, sync } = gateway({ users: USERS.users.filter((u) => u.user_code !== 'bob') });
    await collector.collect();
    assert.equal(shaped('bob'), undefined);
    assert.equal(Number(accumulator.unattributedShaped.txDropped), 13, "bob's class is nobody's yet");
    sync(USERS);
    await collector.collect();
    assert.deepEqual(view(shaped('bob')), { tx: [9, 7578, 13, 6], rx: [9, 7578, 0, 0] });
  });
});
