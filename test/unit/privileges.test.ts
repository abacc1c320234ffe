import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { describePrivileges, parseProcStatus, privilegeProblem } from '../../src/sidecar/privileges.js';

// Real /proc/self/status captures, made with setpriv (see each name).
const status = (name: string) => parseProcStatus(readFileSync(`test/fixtures/proc-status/${name}.status`, 'utf8'));

test('parseProcStatus reads the uid, NoNewPrivs and the capability sets', () => {
  assert.deepEqual(status('nobody-no-new-privs'), { uid: 65534, noNewPrivs: true, permitted: 0n, effective: 0n, bounding: 0x1fffeffffffn });
  assert.deepEqual(status('root-net-caps-no-new-privs'), { uid: 0, noNewPrivs: true, permitted: 0x3000n, effective: 0x3000n, bounding: 0x3000n });
  assert.throws(() => parseProcStatus('Name:\tnode\n'), /\/proc\/self\/status has no Uid line/);
});

test('privilegeProblem: no-new-privileges without the capabilities names the option and both ways out', () => {
  const problem = privilegeProblem(status('nobody-no-new-privs'));
  assert.equal(problem?.kind, 'no_new_privs');
  assert.match(problem!.message, /^no-new-privileges is set \(NoNewPrivs: 1\) and uid 65534 holds neither CAP_NET_ADMIN nor CAP_NET_RAW:/);
  assert.match(problem!.message, /the kernel ignores file capabilities under it/);
  assert.match(problem!.message, /drop the no-new-privileges security option/);
  assert.match(problem!.message, /run as uid 0 .*cap_drop: \[ALL\].*cap_add: \[NET_ADMIN, NET_RAW\]/);
});

test('privilegeProblem: capabilities the container does not grant are named with cap_add', () => {
  const problem = privilegeProblem(status('nobody-not-granted'));
  assert.equal(problem?.kind, 'not_granted');
  assert.match(problem!.message, /^CAP_NET_ADMIN, CAP_NET_RAW are not granted to the container .*cap_add: \[NET_ADMIN, NET_RAW\]/);
  assert.equal(privilegeProblem(status('root-without-net-caps'))?.kind, 'not_granted');
});

test('privilegeProblem: none for the image (file capabilities apply) and for uid 0 holding both under no-new-privileges', () => {
  assert.equal(privilegeProblem(status('nobody')), undefined);
  assert.equal(privilegeProblem(status('root-net-caps-no-new-privs')), undefined);
  assert.match(describePrivileges(status('nobody')), /^uid 65534; .* no-new-privileges is off, so iptables-save gets them from its file capabilities$/);
  assert.equal(describePrivileges(status('root-net-caps-no-new-privs')), 'uid 0 holds CAP_NET_ADMIN and CAP_NET_RAW (so no-new-privileges does not matter)');
});
