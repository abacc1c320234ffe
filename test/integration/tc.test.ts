/**
 * The TC source with the real agent in a namespace lab: an HTB tree with u32 host filters on each
 * egress device of the gateway (gf0: upload, filters on `src`; gu0: download, on `dst`), real
 * pings, a burst through bob's tiny upload class that drops, bob's class re-created and the whole
 * download tree rebuilt (their counters start again at 0). Every exported tc counter must equal
 * what was sent and what `tc -s class show` reports, plus what re-created classes had counted
 * before: nothing lost, nothing counted twice, parents (their children's sum) never counted.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { endProcess, QUIET_MS, type Lab } from '../../src/demo/netns.js';
import { parseClassStats } from '../../src/sources/tc/parse.js';
import { startAgent, withCliLab } from './cli-lab.js';

const ALICE = { user_code: 'alice', user_intra_ip: '10.8.0.2' };
const BOB = { user_code: 'bob', user_intra_ip: '10.8.0.3' };
const CAROL = { user_code: 'carol', user_intra_ip: 'fd00:8::2', user_name: 'Carol Shaw' };
/** In no filter and no users document: its packets go to the default class, unattributed. */
const STRANGER = '10.8.0.4';

type Dev = 'gf0' | 'gu0';
type Counters = { packets: number; bytes: number; dropped: number; overlimits: number };
/** What is exported for a class: all four counters for a user's, packets and drops for the default class. */
type Shown = Pick<Counters, 'packets' | 'dropped'> & Partial<Counters>;
const DEVICES: Record<Dev, { direction: 'tx' | 'rx'; side: 'src' | 'dst' }> = { gf0: { direction: 'tx', side: 'src' }, gu0: { direction: 'rx', side: 'dst' } };
/** Each watched leaf class and whose it is ('' = the default class, no one's). */
const CLASSES: [classid: string, address: string][] = [['1:10', ALICE.user_intra_ip], ['1:11', BOB.user_intra_ip], ['1:12', CAROL.user_intra_ip], ['1:99', '']];
const classOf = (address: string) => CLASSES.find(([, a]) => a === address)?.[0] ?? '1:99';
const zero = (): Counters => ({ packets: 0, bytes: 0, dropped: 0, overlimits: 0 });
const plus = (a: Counters, b: Counters): Counters => ({ packets: a.packets + b.packets, bytes: a.bytes + b.bytes, dropped: a.dropped + b.dropped, overlimits: a.overlimits + b.overlimits });
/** Bytes of one echo packet in a class: the Ethernet frame without FCS (IP packet + 14). */
const frameBytes = (size: number, ipv6: boolean) => (ipv6 ? 40 : 20) + 8 + size + 14;
const BURST = { count: 20, size: 1000 };

/** The HTB tree of one device; bob's upload class is tiny (1 kbit/s, 2 KB burst, 5-packet leaf queue) so that a burst drops. */
function treeCommands(dev: Dev): string[] {
  const side = DEVICES[dev].side;
  const bob = dev === 'gf0' ? 'rate 1kbit ceil 1kbit burst 2k cburst 2k' : 'rate 10mbit';
  return [
    `qdisc add dev ${dev} root handle 1: htb default 99`,
    `class add dev ${dev} parent 1: classid 1:1 htb rate 100mbit`,
    `class add dev ${dev} parent 1:1 classid 1:10 htb rate 10mbit`,
    `class add dev ${dev} parent 1:1 classid 1:11 htb ${bob}`,
    `qdisc add dev ${dev} parent 1:11 handle 11: pfifo limit 5`,
    `class add dev ${dev} parent 1:1 classid 1:12 htb rate 10mbit`,
    `class add dev ${dev} parent 1:1 classid 1:99 htb rate 10mbit`,
    `filter add dev ${dev} parent 1: protocol ip prio 1 u32 match ip ${side} ${ALICE.user_intra_ip}/32 flowid 1:10`,
    bobFilter(dev),
    `filter add dev ${dev} parent 1: protocol ipv6 prio 3 u32 match ip6 ${side} ${CAROL.user_intra_ip}/128 flowid 1:12`,
  ];
}
const bobFilter = (dev: Dev) => `filter add dev ${dev} parent 1: protocol ip prio 2 u32 match ip ${DEVICES[dev].side} ${BOB.user_intra_ip}/32 classid 1:11`;

/** Static ARP entries (the lab has static IPv6 neighbours only): no ARP frame ever reaches a class. */
async function staticArp(lab: Lab): Promise<void> {
  const mac = async (ns: string, dev: string) => /link\/ether ([0-9a-f:]{17})/.exec(await lab.exec(ns, 'ip', ['-o', 'link', 'show', 'dev', dev]))![1]!;
  const [u0, gu0, gf0, f0] = [await mac('users', 'u0'), await mac('gw', 'gu0'), await mac('gw', 'gf0'), await mac('far', 'f0')];
  const entries: [string, string, string, string][] = [
    ['users', 'u0', '10.8.0.1', gu0],
    ...['10.8.0.2', '10.8.0.3', STRANGER].map((a): [string, string, string, string] => ['gw', 'gu0', a, u0]),
    ['gw', 'gf0', '192.0.2.7', f0],
    ['far', 'f0', '192.0.2.1', gf0],
  ];
  for (const [ns, dev, address, lladdr] of entries) await lab.exec(ns, 'ip', ['neigh', 'replace', address, 'lladdr', lladdr, 'dev', dev, 'nud', 'permanent']);
}

test('tc classes: exported per-user counters equal what was sent and what tc reports, through drops and re-created classes', { timeout: 180_000 }, (t) =>
  withCliLab(t, async (lab, dir) => {
    const gw = lab.ns.gw;
    const tc = (line: string) => lab.exec(gw, 'tc', line.split(' '));
    await sleep(QUIET_MS);
    await staticArp(lab);
    for (const dev of ['gf0', 'gu0'] as const) for (const line of treeCommands(dev)) await tc(line);
    // bob's MARK rules too: the iptables totals stay apart from the shaper's (and see the drops' packets).
    await lab.exec(gw, 'iptables', ['-t', 'mangle', '-A', 'POSTROUTING', '-s', BOB.user_intra_ip, '-j', 'MARK', '--set-mark', '103']);
    await lab.exec(gw, 'iptables', ['-t', 'mangle', '-A', 'PREROUTING', '-d', BOB.user_intra_ip, '-j', 'MARK', '--set-mark', '103']);

    const usersFile = join(dir, 'users.json');
    await writeFile(usersFile, JSON.stringify({ users: [ALICE, BOB, CAROL] }));
    const { receiver, agent, log } = await startAgent(lab, dir, {
      users: { file: usersFile },
      collect: { intervalMs: 200, sources: ['iptables', 'tc'] },
      tc: { devices: [{ name: 'gf0', direction: 'tx' }, { name: 'gu0', direction: 'rx' }] },
      iptables: { ipv6: false },
      interfaces: { names: [] },
      health: { listen: '' },
    });

    // What was sent, per device and class; and what re-created classes had counted before they went.
    const sent = new Map<string, Omit<Counters, 'overlimits'>>();
    const before = new Map<string, Counters>();
    const key = (dev: Dev, classid: string) => `${dev} ${classid}`;
    const book = (dev: Dev, classid: string, packets: number, bytes: number, dropped = 0) => {
      const s = sent.get(key(dev, classid)) ?? { packets: 0, bytes: 0, dropped: 0 };
      sent.set(key(dev, classid), { packets: s.packets + packets, bytes: s.bytes + bytes, dropped: s.dropped + dropped });
    };
    /** Pings from the users side: each request through the source's upload class, each reply through its download class. */
    const send = async (source: string, count: number, size: number) => {
      const ipv6 = source.includes(':');
      await lab.ping({ from: 'users', source, to: ipv6 ? 'fd00:9::7' : '192.0.2.7', count, size });
      book('gf0', classOf(source), count, count * frameBytes(size, ipv6));
      book('gu0', classOf(source), count, count * frameBytes(size, ipv6));
    };
    /** `tc -s class show` of a device, parsed: the raw counters by class id. */
    const tcNow = async (dev: Dev) => {
      const classes = parseClassStats(await tc(`-s class show dev ${dev}`));
      return new Map(classes.map((c) => [c.classid, { packets: Number(c.counters?.packets), bytes: Number(c.counters?.bytes), dropped: Number(c.counters?.dropped), overlimits: Number(c.counters?.overlimits) }]));
    };
    /** What tc reports for each watched class now, plus what its earlier incarnations counted. */
    const tcTotals = async () => {
      const totals = new Map<string, Counters>();
      for (const dev of ['gf0', 'gu0'] as const) {
        const now = await tcNow(dev);
        for (const [classid] of CLASSES) totals.set(key(dev, classid), plus(before.get(key(dev, classid)) ?? zero(), now.get(classid) ?? zero()));
      }
      return totals;
    };
    /** Bounded wait for the kernel: tc's totals equal what was sent (replies and a released queue can lag a little). */
    const kernelSettled = async (step: string) => {
      for (const deadline = Date.now() + 15000; ; await sleep(50)) {
        const totals = await tcTotals();
        const view = [...totals].map(([k, c]) => [k, { packets: c.packets, bytes: c.bytes, dropped: c.dropped }]);
        const want = [...totals.keys()].map((k) => [k, sent.get(k) ?? { packets: 0, bytes: 0, dropped: 0 }]);
        if (JSON.stringify(view) === JSON.stringify(want)) return totals;
        if (Date.now() > deadline) assert.fail(`${step}: tc does not report what was sent: ${JSON.stringify({ tc: view, sent: want })}`);
      }
    };

    const series = (user: typeof ALICE | typeof CAROL, direction: string) => ({
      packets: receiver.latest(`net_user_tc_${direction}_packets`, user) ?? NaN,
      bytes: receiver.latest(`net_user_tc_${direction}_bytes`, user) ?? NaN,
      dropped: receiver.latest(`net_user_tc_${direction}_dropped_packets`, user) ?? NaN,
      overlimits: receiver.latest(`net_user_tc_${direction}_overlimits`, user) ?? NaN,
    });
    const unattributed = (direction: string) => ({
      packets: receiver.latest('markmeter_unattributed_tc_packets', { direction }) ?? NaN,
      dropped: receiver.latest('markmeter_unattributed_tc_dropped_packets', { direction }) ?? NaN,
    });
    const exported = (): Record<string, Shown> =>
      Object.fromEntries(
        (['gf0', 'gu0'] as const).flatMap((dev) => {
          const { direction } = DEVICES[dev];
          const { packets, dropped } = unattributed(direction);
          return [...[ALICE, BOB, CAROL].map((u) => [key(dev, classOf(u.user_intra_ip)), series(u, direction)]), [key(dev, '1:99'), { packets, dropped }]];
        }),
      );
    /** What the exports must show for tc's totals (the default class: only its packets and drops are exported). */
    const wanted = (totals: Map<string, Counters>) =>
      Object.fromEntries([...totals].map(([k, c]) => [k, k.endsWith(' 1:99') ? { packets: c.packets, dropped: c.dropped } : c]));
    /** The kernel settles on what was sent; then two more exports arrive and the latest equal tc's totals; tc has not moved meanwhile. */
    const exportsMatch = async (step: string) => {
      const totals = await kernelSettled(step);
      const since = receiver.requests.length;
      await receiver.waitFor(
        () => receiver.requests.length > since + 1 && JSON.stringify(exported()) === JSON.stringify(wanted(totals)),
        15000,
        () => `${step}: ${JSON.stringify({ tc: wanted(totals), exported: exported(), log: log().slice(-2000) })}`,
      );
      assert.deepEqual(await tcTotals(), totals, `${step}: tc's counters moved while the exports were compared`);
      return exported();
    };

    try {
      // Plain traffic on every class (carol over IPv6; the stranger through the default class).
      await send(ALICE.user_intra_ip, 5, 100);
      await send(ALICE.user_intra_ip, 1, 1000);
      await send(BOB.user_intra_ip, 2, 100);
      await send(CAROL.user_intra_ip, 4, 56);
      await send(STRANGER, 3, 200);
      await exportsMatch('plain traffic');

      // A burst through bob's tiny upload class: 2 KB pass at once, 5 wait in the leaf queue, the rest are dropped.
      const bobUp = (await tcNow('gf0')).get('1:11')!;
      const burst = await lab.run('users', 'ping', ['-4', '-n', '-q', '-c', String(BURST.count), '-s', String(BURST.size), '-i', '0.002', '-W', '1', '-I', BOB.user_intra_ip, '192.0.2.7']);
      assert.match(burst.stdout, new RegExp(`^${BURST.count} packets transmitted`, 'm'), burst.stdout + burst.stderr);
      // A faster rate (a change keeps the counters) lets the queued requests out: each request is then sent or dropped.
      await tc('class change dev gf0 parent 1:1 classid 1:11 htb rate 10mbit');
      let after = bobUp;
      for (const deadline = Date.now() + 15000; after.packets - bobUp.packets + (after.dropped - bobUp.dropped) < BURST.count; await sleep(50)) {
        assert.ok(Date.now() < deadline, `the burst's queue did not drain: ${JSON.stringify({ before: bobUp, after })}`);
        after = (await tcNow('gf0')).get('1:11')!;
      }
      const passed = after.packets - bobUp.packets;
      const dropped = after.dropped - bobUp.dropped;
      assert.equal(passed + dropped, BURST.count, 'every request of the burst was sent or dropped, once');
      assert.ok(dropped > 0 && passed > 0, `the burst must both pass and drop: ${JSON.stringify({ passed, dropped })}`);
      assert.ok(after.overlimits > bobUp.overlimits, 'the tiny class went over its limit');
      t.diagnostic(`burst of ${BURST.count}: ${passed} passed, ${dropped} dropped, ${after.overlimits - bobUp.overlimits} overlimits`);
      book('gf0', '1:11', passed, passed * frameBytes(BURST.size, false), dropped);
      book('gu0', '1:11', passed, passed * frameBytes(BURST.size, false)); // the replies of what passed, also those ping no longer waited for
      const beforeRecreate = await exportsMatch('after the burst');
      assert.equal(beforeRecreate[key('gf0', '1:11')]!.dropped, dropped);

      // bob's upload class re-created as a client does it (a class a filter points to cannot be deleted),
      // and the whole download tree rebuilt: their counters start again at 0.
      const gf0Now = await tcNow('gf0');
      before.set(key('gf0', '1:11'), gf0Now.get('1:11')!);
      await tc('filter del dev gf0 parent 1: prio 2');
      await tc('class del dev gf0 classid 1:11');
      await tc('class add dev gf0 parent 1:1 classid 1:11 htb rate 10mbit');
      await tc('qdisc add dev gf0 parent 1:11 handle 11: pfifo limit 5');
      await tc(bobFilter('gf0'));
      const gu0Now = await tcNow('gu0');
      for (const [classid] of CLASSES) before.set(key('gu0', classid), gu0Now.get(classid)!);
      await tc('qdisc del dev gu0 root');
      for (const line of treeCommands('gu0')) await tc(line);
      assert.deepEqual((await tcNow('gf0')).get('1:11'), zero(), "the re-created class's counters start at 0");
      assert.deepEqual((await tcNow('gu0')).get('1:11'), zero());

      // Less than before on every re-created class, so a reading that missed the re-creation still sees a reset.
      await send(ALICE.user_intra_ip, 2, 100);
      await send(BOB.user_intra_ip, 3, 100);
      await send(CAROL.user_intra_ip, 1, 56);
      await send(STRANGER, 1, 200);
      const afterRecreate = await exportsMatch('after the re-creations');
      for (const [k, now] of Object.entries(afterRecreate)) {
        for (const [field, value] of Object.entries(now)) assert.ok(value >= beforeRecreate[k]![field as keyof Shown]!, `${k} ${field} went down`);
      }
      assert.equal((await tcNow('gf0')).get('1:11')!.packets, 3, 'tc: the re-created class counted only what came after');
      assert.equal(afterRecreate[key('gf0', '1:11')]!.packets, 2 + BURST.count - dropped + 3);

      // The MARK rules counted every request bob sent, the dropped ones too; the shaper's totals stay its own.
      const mark = (metric: string) => receiver.latest(metric, BOB) ?? NaN;
      const bobTx = afterRecreate[key('gf0', '1:11')]!;
      const bobRx = afterRecreate[key('gu0', '1:11')]!;
      assert.equal(mark('net_user_tx_packets'), bobTx.packets + bobTx.dropped);
      assert.equal(mark('net_user_rx_packets'), bobRx.packets);
      assert.equal(mark('net_user_rx_bytes'), bobRx.bytes! - 14 * bobRx.packets, 'iptables counts the IP packet, tc the frame');
      assert.doesNotMatch(log(), /"level":"error"/, 'no reading failed');
    } finally {
      await endProcess(agent);
    }
  }),
);
