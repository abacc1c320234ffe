/**
 * The TC source's fw mapping on a real kernel, where the kernel has the fw
 * classifier: MARK rules set the users' marks, fw filters send each mark to a
 * class, real pings go through, and each class counts for the mark's user.
 * Where the kernel lacks fw (this project's test machines), the test checks
 * that tc says exactly that, and the mapping rests on the fixture written to
 * iproute2's print format (test/unit/tc-source.test.ts).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildMarkMap } from '../../src/attribution/mark-map.js';
import { echoBytes } from '../../src/demo/netns.js';
import { TcSource } from '../../src/sources/tc/source.js';
import { withLab } from '../lab/gate.js';

test('fw filters tie classes to users through the mark pool (where the kernel has fw)', { timeout: 60_000 }, async (t) => {
  await withLab(t, async (lab) => {
    const gw = lab.ns.gw;
    const tc = (...args: string[]) => lab.run(gw, 'tc', args);
    await lab.exec(gw, 'tc', ['qdisc', 'add', 'dev', 'gf0', 'root', 'handle', '1:', 'htb', 'default', '99']);
    await lab.exec(gw, 'tc', ['class', 'add', 'dev', 'gf0', 'parent', '1:', 'classid', '1:10', 'htb', 'rate', '100mbit']);
    await lab.exec(gw, 'tc', ['class', 'add', 'dev', 'gf0', 'parent', '1:', 'classid', '1:99', 'htb', 'rate', '100mbit']);
    const fw = await tc('filter', 'add', 'dev', 'gf0', 'parent', '1:', 'protocol', 'ip', 'prio', '1', 'handle', '0x65', 'fw', 'classid', '1:10');
    if (fw.code !== 0) {
      // No fw classifier in this kernel: tc must say so (and nothing else went wrong).
      assert.match(fw.stderr, /TC classifier not found/, fw.stderr);
      t.diagnostic('this kernel has no fw classifier: the fw mapping is tested on test/fixtures/tc/fw.filter.txt');
      return;
    }
    await lab.exec(gw, 'iptables', ['-t', 'mangle', '-A', 'POSTROUTING', '-s', '10.8.0.2', '-j', 'MARK', '--set-mark', '0x65']);
    await lab.ping({ from: 'users', source: '10.8.0.2', to: '192.0.2.7', count: 4, size: 100 });
    const map = buildMarkMap({ source: 't', users: [{ user_code: 'alice', user_intra_ip: '10.8.0.2' }], marks: [{ mark_id: 0x65, sips: ['10.8.0.2'], dips: [] }] });
    const source = new TcSource({ name: 'gf0', direction: 'tx' }, (args) => lab.exec(gw, 'tc', args), { remember: false });
    const counted: [number | null, number, number][] = [];
    await source.read(map, (owner, _direction, packets, bytes) => counted.push([owner, Number(packets), Number(bytes)]));
    assert.deepEqual(
      counted.filter(([owner]) => owner === 0),
      [[0, 4, 4 * (echoBytes(100, false) + 14)]],
    );
  });
});
