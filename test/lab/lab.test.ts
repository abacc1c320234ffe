/**
 * Self-tests of the integration-test lab: the namespaces (real MARK rules and pings, exact counters,
 * cleanup in every case), the OTLP receivers (in-process and inside a namespace) with the real
 * OpenTelemetry exporters, and the pure OTLP JSON helpers.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ADDRESSES, echoBytes, labGate, Lab, listLabNamespaces, parseSaveCounters, requireLab, runProcess, sweepStaleLabs, withLab, type SaveRule } from './netns.js';
import { flattenRequest, latestPoint, latestValue, parseOtlpJson, seriesKeys } from './otlp.js';
import { NamespacedReceiver, startReceiver } from './otlp-receiver.js';
import { exportOnce } from './otlp-send.js';

const SEND = fileURLToPath(new URL('./otlp-send.ts', import.meta.url));
const TSX = import.meta.resolve('tsx');

function rule(save: string, chain: string, contains: string): SaveRule {
  const found = parseSaveCounters(save).filter((r) => r.chain === chain && r.spec.includes(contains));
  assert.equal(found.length, 1, `one ${chain} rule with "${contains}" in:\n${save}`);
  return found[0]!;
}

async function namespacesOf(lab: Lab): Promise<string[]> {
  const all = await listLabNamespaces();
  return Object.values(lab.ns).filter((n) => all.includes(n));
}

describe('OTLP JSON helpers (pure)', () => {
  const body = (asInt: string, n = '9007199254740993') =>
    `{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"gw"}}]},"scopeMetrics":[{"scope":{"name":"m","version":"1"},"metrics":[` +
    `{"name":"net_user_tx_bytes","unit":"By","sum":{"aggregationTemporality":2,"isMonotonic":true,"dataPoints":[` +
    `{"attributes":[{"key":"user_code","value":{"stringValue":"alice"}},{"key":"n","value":{"intValue":${n}}}],"startTimeUnixNano":"1","timeUnixNano":"2","asInt":${asInt}},` +
    `{"attributes":[{"key":"user_code","value":{"stringValue":"bob"}}],"startTimeUnixNano":"1","timeUnixNano":"2","asInt":"7"}]}},` +
    `{"name":"g","gauge":{"dataPoints":[{"attributes":[],"timeUnixNano":"3","asDouble":1.5}]}}]}]}]}`;

  test('int64 values are exact whether they arrive as numbers or strings, also beyond 2^53', () => {
    for (const asInt of ['18446744073709551615', '"18446744073709551615"', '9007199254740993']) {
      const points = flattenRequest(body(asInt));
      const alice = points.find((p) => p.attributes.user_code === 'alice')!;
      assert.equal(alice.exact, BigInt(asInt.replaceAll('"', '')));
      assert.equal(alice.attributes.n, '9007199254740993');
      assert.equal(alice.kind, 'sum');
      assert.equal(alice.monotonic, true);
      assert.equal(alice.temporality, 2);
      assert.deepEqual(alice.resource, { 'service.name': 'gw' });
      assert.equal(alice.startTimeUnixNano, 1n);
      assert.equal(alice.timeUnixNano, 2n);
    }
    // A plain JSON.parse would have rounded it already: flattening such an object refuses to guess...
    assert.throws(() => flattenRequest(JSON.parse(body('9007199254740993'))), /beyond 2\^53/);
    // ...but a safe number in a parsed object is fine, and lossy mode takes whatever is there.
    assert.equal(flattenRequest(JSON.parse(body('5', '3')))[0]!.exact, 5n);
    const lossy = flattenRequest(JSON.parse(body('9007199254740993')), { lossy: true })[0]!;
    assert.equal(lossy.exact, 9007199254740992n);
    assert.equal(lossy.attributes.n, '9007199254740992');
  });

  test('parseOtlpJson only rewrites keys, never text inside strings', () => {
    const text = '{"a":"{\\"asInt\\":5}","b":[{"asInt":12345678901234567890}],"\\"asInt":7}';
    assert.deepEqual(parseOtlpJson(text), { a: '{"asInt":5}', b: [{ asInt: '12345678901234567890' }], '"asInt': 7 });
  });

  test('values: exact is bigint for asInt and number for asDouble; value is always a number', () => {
    const points = flattenRequest(body('5'));
    assert.deepEqual(
      points.map((p) => [p.metric, p.exact, p.value]),
      [
        ['net_user_tx_bytes', 5n, 5],
        ['net_user_tx_bytes', 7n, 7],
        ['g', 1.5, 1.5],
      ],
    );
    assert.deepEqual(points[2]!.attributes, {});
  });

  test('latestPoint, latestValue and seriesKeys', () => {
    const requests = [flattenRequest(body('5')), flattenRequest(body('6')).filter((p) => p.attributes.user_code !== 'bob')];
    assert.equal(latestValue(requests, 'net_user_tx_bytes', { user_code: 'alice', n: '9007199254740993' }), 6n);
    assert.equal(latestValue(requests, 'net_user_tx_bytes', { user_code: 'bob' }), 7n, 'bob from the earlier request');
    assert.equal(latestValue(requests, 'net_user_tx_bytes', { user_code: 'alice' }), undefined, 'attributes must match exactly');
    assert.equal(latestPoint(requests, 'net_user_tx_bytes', { user_code: 'alice' }, { subset: true })?.exact, 6n);
    assert.deepEqual(seriesKeys(requests), ['g{}', 'net_user_tx_bytes{n="9007199254740993",user_code="alice"}', 'net_user_tx_bytes{user_code="bob"}']);
    assert.deepEqual(seriesKeys(requests, 'g'), ['g{}']);
  });
});

describe('labGate: kernel tests fail in CI, skip loudly elsewhere', () => {
  test('decisions', () => {
    const skipped: string[] = [];
    const t = { name: 'x', skip: (m?: string) => skipped.push(m ?? '') };
    const logged: string[] = [];
    assert.equal(labGate({ ok: true }, t, true), true);
    assert.throws(() => labGate({ ok: false, reason: 'not root' }, t, true, (l) => logged.push(l)), /cannot run in CI: not root/);
    assert.equal(labGate({ ok: false, reason: 'not root' }, t, false, (l) => logged.push(l)), false);
    assert.deepEqual(skipped, ['not root']);
    assert.match(logged.join(''), /!!! SKIPPING "x": not root/);
  });
});

describe('in-process OTLP receiver with the real exporters', () => {
  test('JSON, gzip and protobuf exports arrive exactly; 415 for other content types', async () => {
    const receiver = await startReceiver();
    try {
      assert.match(receiver.url, /^http:\/\/127\.0\.0\.1:\d+$/);
      const counters = [
        { name: 'lab_packets', value: 5, attributes: { user_code: 'alice', user_intra_ip: '10.8.0.2' } },
        { name: 'lab_bytes', value: 2 ** 53 - 1, attributes: { user_code: 'alice', user_intra_ip: '10.8.0.2' } },
      ];
      await exportOnce({ url: receiver.metricsUrl, counters });
      await exportOnce({ url: receiver.metricsUrl, counters, compression: 'gzip' });
      await exportOnce({ url: receiver.metricsUrl, counters, protocol: 'protobuf' });
      assert.equal(receiver.requests.length, 3, 'one request per exportOnce');
      assert.deepEqual(
        receiver.requests.map((r) => [r.encoding, r.contentEncoding]),
        [
          ['json', null],
          ['json', 'gzip'],
          ['protobuf', null],
        ],
      );
      assert.deepEqual([...receiver.encodings].sort(), ['json', 'protobuf']);
      for (const request of receiver.requests) {
        const bytes = request.find((p) => p.metric === 'lab_bytes')!;
        assert.equal(bytes.exact, 2n ** 53n - 1n);
        assert.equal(bytes.kind, 'sum');
        assert.equal(bytes.monotonic, true);
        assert.equal(bytes.temporality, 2);
        assert.equal(bytes.resource['service.name'], 'markmeter-lab');
        assert.deepEqual(bytes.scope, { name: 'markmeter-lab', version: '1.0.0' });
        assert.ok(bytes.timeUnixNano >= bytes.startTimeUnixNano && bytes.startTimeUnixNano > 1_600_000_000_000_000_000n);
      }
      assert.equal(receiver.latest('lab_packets', { user_code: 'alice', user_intra_ip: '10.8.0.2' }), 5);
      assert.equal(receiver.latestExact('lab_packets', { user_code: 'alice', user_intra_ip: '10.8.0.2' }), 5n);
      assert.deepEqual(receiver.seriesKeys('lab_packets'), ['lab_packets{user_code="alice",user_intra_ip="10.8.0.2"}']);

      const bad = await fetch(receiver.metricsUrl, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x' });
      assert.equal(bad.status, 415);
      const notFound = await fetch(`${receiver.url}/v1/traces`, { method: 'POST', body: '{}' });
      assert.equal(notFound.status, 404);
      assert.equal(receiver.rejected.length, 1);
      assert.equal(receiver.requests.length, 3);
    } finally {
      await receiver.stop();
    }
  });

  test('503 for a while, for a count, and a port that stops and starts listening', async () => {
    const receiver = await startReceiver();
    try {
      const counters = [{ name: 'lab_packets', value: 1 }];
      await receiver.setStatus(503, { forMs: 60_000 });
      await assert.rejects(exportOnce({ url: receiver.metricsUrl, counters, timeoutMs: 1500 }));
      assert.ok(receiver.refused >= 1, 'the exporter tried and was refused');
      assert.equal(receiver.requests.length, 0);
      await receiver.setStatus(200);
      await exportOnce({ url: receiver.metricsUrl, counters });
      assert.equal(receiver.requests.length, 1);

      await receiver.setStatus(503, { forMs: 300 });
      await sleep(400);
      await exportOnce({ url: receiver.metricsUrl, counters });
      assert.equal(receiver.requests.length, 2, 'healed after forMs');

      // One 503, then the exporter's own retry gets through.
      const refusedBefore = receiver.refused;
      await receiver.setStatus(503, { count: 1 });
      await exportOnce({ url: receiver.metricsUrl, counters, timeoutMs: 5000 });
      assert.equal(receiver.refused, refusedBefore + 1);
      assert.equal(receiver.requests.length, 3);

      const port = receiver.port;
      await receiver.stopListening();
      await assert.rejects(fetch(receiver.metricsUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }));
      await receiver.startListening();
      assert.equal(receiver.port, port, 'the same port again');
      await exportOnce({ url: receiver.metricsUrl, counters });
      assert.equal(receiver.requests.length, 4);
    } finally {
      await receiver.stop();
    }
  });

  test('the receiver program without a lab (host namespace, no root needed)', async () => {
    const receiver = await NamespacedReceiver.start();
    try {
      await exportOnce({ url: receiver.metricsUrl, counters: [{ name: 'lab_packets', value: 42, attributes: { k: 'v' } }] });
      await receiver.waitForRequests(1, 5000);
      assert.equal(receiver.latest('lab_packets', { k: 'v' }), 42);
      const pid = receiver.pid!;
      await receiver.stop();
      assert.throws(() => process.kill(pid, 0), 'the program is gone');
    } finally {
      await receiver.stop();
    }
  });
});

describe('namespace lab', { concurrency: false }, () => {
  test('a real MARK rule counts exactly the echo requests sent through the gateway (IPv4)', async (t) => {
    await withLab(t, async (lab) => {
      assert.match(lab.ns.gw, /^mmlab-\d+-[0-9a-f]{4}-gw$/);
      await lab.exec('gw', 'iptables', ['-t', 'mangle', '-A', 'POSTROUTING', '-s', '10.8.0.2/32', '-j', 'MARK', '--set-mark', '101']);
      await lab.exec('gw', 'iptables', ['-t', 'mangle', '-A', 'PREROUTING', '-s', '192.0.2.7/32', '-d', '10.8.0.3/32', '-j', 'MARK', '--set-mark', '103']);
      const sent = await lab.ping({ from: 'users', source: '10.8.0.2', to: '192.0.2.7', count: 5, size: 100 });
      assert.deepEqual([sent.transmitted, sent.received, sent.packetBytes, sent.requestBytes], [5, 5, 128, 640]);
      // The other way round: far -> users crosses gw too.
      await lab.ping({ from: 'far', source: '192.0.2.7', to: '10.8.0.3', count: 3, size: 56 });
      const save = await lab.save();
      assert.match(save, /^\[5:640\] -A POSTROUTING -s 10\.8\.0\.2\/32 -j MARK --set-xmark 0x65\/0xffffffff$/m);
      assert.deepEqual([rule(save, 'POSTROUTING', '10.8.0.2').packets, rule(save, 'POSTROUTING', '10.8.0.2').bytes], [5n, 640n]);
      assert.deepEqual([rule(save, 'PREROUTING', '10.8.0.3').packets, rule(save, 'PREROUTING', '10.8.0.3').bytes], [3n, 3n * BigInt(echoBytes(56, false))]);
      // No other namespace sees the rule.
      assert.doesNotMatch(await lab.save('mangle', 4, 'users'), /MARK/);
    });
  });

  test('the same with ip6tables (IPv6)', async (t) => {
    await withLab(t, async (lab) => {
      await lab.exec('gw', 'ip6tables', ['-t', 'mangle', '-A', 'POSTROUTING', '-s', 'fd00:8::2/128', '-j', 'MARK', '--set-mark', '201']);
      const sent = await lab.ping({ from: 'users', source: 'fd00:8::2', to: 'fd00:9::7', count: 5, size: 100 });
      assert.equal(sent.requestBytes, 740);
      const save = await lab.save('mangle', 6);
      assert.match(save, /^\[5:740\] -A POSTROUTING -s fd00:8::2\/128 -j MARK --set-xmark 0xc9\/0xffffffff$/m);
      // Every address of the plan answers, both families.
      for (const to of [...ADDRESSES.far, ...ADDRESSES.far6]) {
        await lab.ping({ from: 'users', source: to.includes(':') ? ADDRESSES.users6[1] : ADDRESSES.users[3], to, count: 1, size: 8 });
      }
    });
  });

  test('the namespaced receiver: a real exporter inside gw reaches it on gw loopback; 503, close and listen', async (t) => {
    await withLab(t, async (lab) => {
      const receiver = await NamespacedReceiver.start(lab, 'gw');
      assert.match(receiver.url, /^http:\/\/127\.0\.0\.1:\d+$/);
      const send = (value: number, ...extra: string[]) =>
        lab.run('gw', process.execPath, ['--import', TSX, SEND, '--url', receiver.metricsUrl, '--counter', `lab_packets=${value},user_code=alice`, ...extra], { timeoutMs: 30_000 });

      let r = await send(5);
      assert.equal(r.code, 0, r.stderr);
      r = await send(6, '--gzip');
      assert.equal(r.code, 0, r.stderr);
      r = await send(7, '--protobuf');
      assert.equal(r.code, 0, r.stderr);
      await receiver.waitForRequests(3, 5000);
      assert.deepEqual(
        receiver.requests.map((q) => [q.encoding, q.contentEncoding, q.find((p) => p.metric === 'lab_packets')?.exact]),
        [
          ['json', null, 5n],
          ['json', 'gzip', 6n],
          ['protobuf', null, 7n],
        ],
      );
      assert.equal(receiver.latest('lab_packets', { user_code: 'alice' }), 7);

      // A collector that is down: 503s are counted, nothing is recorded.
      await receiver.setStatus(503);
      r = await send(8, '--timeout-ms', '800');
      assert.notEqual(r.code, 0);
      assert.ok(receiver.refused >= 1);
      await receiver.setStatus(200);
      // Not listening at all, then listening again on the same port.
      const port = receiver.port;
      await receiver.stopListening();
      r = await send(9, '--timeout-ms', '800');
      assert.notEqual(r.code, 0);
      await receiver.startListening();
      assert.equal(receiver.port, port);
      r = await send(10);
      assert.equal(r.code, 0, r.stderr);
      await receiver.waitFor((rc) => rc.latest('lab_packets', { user_code: 'alice' }) === 10, 5000);
      assert.equal(receiver.requests.length, 4);

      const pid = receiver.pid!;
      await lab.destroy();
      assert.throws(() => process.kill(pid, 0), 'destroy() ended the receiver');
      await assert.rejects(receiver.waitForRequests(5, 2000), /exited/);
    });
  });

  test('destroy() ends what the lab started, deletes every namespace, and can be called again', async (t) => {
    await withLab(t, async (lab) => {
      const child = lab.spawn('far', 'sleep', ['1000']);
      // A process the lab did not track (started through exec's child): still ended by destroy().
      const stray = spawn('ip', ['netns', 'exec', lab.ns.users, 'sleep', '1000'], { stdio: 'ignore' });
      await sleep(100);
      const names = await namespacesOf(lab);
      assert.equal(names.length, 3);
      await Promise.all([lab.destroy(), lab.destroy()]);
      await lab.destroy();
      assert.deepEqual(await namespacesOf(lab), []);
      assert.ok(child.exitCode !== null || child.signalCode !== null);
      assert.throws(() => process.kill(child.pid!, 0));
      assert.throws(() => process.kill(stray.pid!, 0));
      assert.throws(() => lab.spawn('gw', 'true', []), /destroyed/);
      assert.throws(() => lab.nsName('mmlab-someone-else-gw'), /not a namespace of lab/);
    });
  });

  test('a failing test body still cleans up', async (t) => {
    if (!(await requireLab(t))) return;
    let seen: Lab | undefined;
    await assert.rejects(
      withLab(t, async (lab) => {
        seen = lab;
        lab.spawn('gw', 'sleep', ['1000']);
        throw new Error('the body failed');
      }),
      /the body failed/,
    );
    assert.ok(seen?.destroyed);
    assert.deepEqual(await namespacesOf(seen!), []);
  });

  test('a lab that fails half-way through create() leaves nothing behind', async (t) => {
    if (!(await requireLab(t))) return;
    for (const at of ['sysctl', 'addresses', 'routes'] as const) {
      let half: Lab | undefined;
      await assert.rejects(
        Lab.create({
          onStep: (step, lab) => {
            half = lab;
            if (step === at) throw new Error(`injected failure at ${step}`);
          },
        }),
        new RegExp(`injected failure at ${at}`),
      );
      assert.ok(half?.destroyed);
      assert.deepEqual(await namespacesOf(half!), [], `after a failure at ${at}`);
    }
  });

  test('two labs at once never clash', async (t) => {
    await withLab(t, async (one) => {
      await withLab(t, async (two) => {
        assert.notEqual(one.id, two.id);
        await Promise.all([
          one.ping({ from: 'users', source: '10.8.0.2', to: '192.0.2.7', count: 3, size: 64 }),
          two.ping({ from: 'users', source: '10.8.0.2', to: '192.0.2.7', count: 3, size: 64 }),
        ]);
      });
      assert.equal((await namespacesOf(one)).length, 3, 'destroying one lab leaves the other alone');
    });
  });

  test('a run killed with SIGKILL leaves namespaces that the next sweep removes; process.exit cleans up at once', async (t) => {
    if (!(await requireLab(t))) return;
    const netns = new URL('./netns.ts', import.meta.url).href;
    const script = (end: string) =>
      `const { Lab } = await import(${JSON.stringify(netns)}); const lab = await Lab.create(); ` +
      `lab.spawn('gw', 'sleep', ['1000']); console.log(JSON.stringify(Object.values(lab.ns))); ${end}`;
    const present = async (names: string[]) => {
      const all = await listLabNamespaces();
      return names.filter((n) => all.includes(n));
    };
    const runChild = (end: string) => {
      const child = spawn(process.execPath, ['--import', TSX, '--input-type=module', '-e', script(end)], { stdio: ['ignore', 'pipe', 'inherit'] });
      const names = new Promise<string[]>((resolve, reject) => {
        let out = '';
        child.stdout.setEncoding('utf8').on('data', (s: string) => {
          out += s;
          if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0]!) as string[]);
        });
        child.once('exit', (code) => reject(new Error(`child exited ${code} before creating its lab`)));
      });
      return { child, names };
    };

    const killed = runChild('setInterval(() => {}, 1000);');
    const names = await killed.names;
    assert.equal((await present(names)).length, 3);
    const exited = new Promise((resolve) => killed.child.once('exit', resolve));
    process.kill(killed.child.pid!, 'SIGKILL');
    await exited;
    assert.equal((await present(names)).length, 3, 'nothing ran on SIGKILL');
    // (A parallel run's own sweep may get some of them first: what counts is that they are gone.)
    await sweepStaleLabs();
    assert.deepEqual(await present(names), []);

    const exiting = runChild('process.exit(3);');
    const names2 = await exiting.names;
    await new Promise((resolve) => (exiting.child.exitCode !== null ? resolve(null) : exiting.child.once('exit', resolve)));
    assert.deepEqual(await present(names2), [], 'the exit hook removed them');
  });

  test('sweepStaleLabs removes labs of dead processes only, and nothing not named mmlab-', async (t) => {
    if (!(await requireLab(t))) return;
    const dead = spawn('true', []);
    await new Promise((resolve) => dead.once('exit', resolve));
    const deadPid = dead.pid!;
    const stale = `mmlab-${deadPid}-beef-gw`;
    const live = `mmlab-${process.ppid}-beef-gw`; // the test runner: alive
    const foreign = `mmtest-${deadPid}-beef-gw`;
    const made: string[] = [];
    try {
      for (const name of [stale, live, foreign]) {
        const r = await runProcess('ip', ['netns', 'add', name]);
        assert.equal(r.code, 0, r.stderr);
        made.push(name);
      }
      await sweepStaleLabs(); // (a parallel run's sweep may remove the stale one first)
      const left = (await runProcess('ip', ['netns', 'list'])).stdout;
      assert.doesNotMatch(left, new RegExp(`^${stale}\\b`, 'm'));
      assert.match(left, new RegExp(`^${live}\\b`, 'm'));
      assert.match(left, new RegExp(`^${foreign}\\b`, 'm'));
    } finally {
      for (const name of made) await runProcess('ip', ['netns', 'del', name]);
    }
  });
});
