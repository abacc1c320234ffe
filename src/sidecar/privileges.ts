/**
 * Whether the iptables save commands markmeter starts can get CAP_NET_ADMIN
 * and CAP_NET_RAW, judged from /proc/self/status. They get them in one of two
 * ways: this process holds them (uid 0 with the container's capabilities), or
 * the binaries carry them as file capabilities (the image's way for its
 * non-root user), which the kernel grants only within the bounding set (what
 * the container is granted) and, by its documented rule, not at all under
 * no_new_privs (Docker's `no-new-privileges`, Kubernetes'
 * `allowPrivilegeEscalation: false`): then every reading fails with
 * "Permission denied" although the capabilities are granted.
 */
import { readFileSync } from 'node:fs';
import type { Logger } from '../log.js';

const CAP_NET_ADMIN = 12;
const CAP_NET_RAW = 13;
const NEEDED = [
  { bit: CAP_NET_ADMIN, name: 'CAP_NET_ADMIN' },
  { bit: CAP_NET_RAW, name: 'CAP_NET_RAW' },
] as const;

export interface ProcessPrivileges {
  /** The effective uid. */
  uid: number;
  noNewPrivs: boolean;
  permitted: bigint;
  effective: bigint;
  bounding: bigint;
}

export interface PrivilegeProblem {
  kind: 'no_new_privs' | 'not_granted';
  /** What is wrong and what to do. */
  message: string;
  /** The same in a few words, for the iptables check's line. */
  short: string;
  /** What to do. */
  remedy: string;
}

/** Pure: the fields of /proc/<pid>/status that decide the capabilities a started program gets. */
export function parseProcStatus(text: string): ProcessPrivileges {
  const field = (name: string): string => {
    const match = new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(text);
    if (!match) throw new Error(`/proc/self/status has no ${name} line`);
    return match[1]!.trim();
  };
  const mask = (name: string) => BigInt(`0x${field(name)}`);
  // Kernels before 4.10 do not show NoNewPrivs.
  const noNewPrivs = /^NoNewPrivs:\s*1\s*$/m.test(text);
  return { uid: Number(field('Uid').split(/\s+/)[1]), noNewPrivs, permitted: mask('CapPrm'), effective: mask('CapEff'), bounding: mask('CapBnd') };
}

const has = (set: bigint, bit: number) => (set & (1n << BigInt(bit))) !== 0n;

const NNP_WAYS_OUT =
  'either drop the no-new-privileges security option (security_opt in compose, --security-opt in docker run, allowPrivilegeEscalation in Kubernetes), ' +
  'or keep it and run as uid 0 with only these two capabilities (user: "0", cap_drop: [ALL], cap_add: [NET_ADMIN, NET_RAW])';

/** Pure: why the save commands cannot get the two capabilities, or undefined when they can. */
export function privilegeProblem(p: ProcessPrivileges): PrivilegeProblem | undefined {
  // Under no_new_privs a started program gets no capability this process does not hold already;
  // otherwise it can get any the bounding set allows (as root, or from file capabilities).
  const missing = NEEDED.filter((c) => !has(p.noNewPrivs ? p.permitted : p.bounding, c.bit));
  if (missing.length === 0) return undefined;
  const notGranted = NEEDED.filter((c) => !has(p.bounding, c.bit)).map((c) => c.name);
  if (notGranted.length > 0) {
    const remedy =
      'add cap_add: [NET_ADMIN, NET_RAW] (docker run --cap-add NET_ADMIN --cap-add NET_RAW; securityContext.capabilities.add in Kubernetes)' +
      (p.noNewPrivs && p.uid !== 0 ? `; and no-new-privileges is set, so also ${NNP_WAYS_OUT}` : '');
    return {
      kind: 'not_granted',
      short: `${notGranted.join(', ')} not granted to the container`,
      remedy,
      message: `${notGranted.join(', ')} ${notGranted.length > 1 ? 'are' : 'is'} not granted to the container (not in its bounding set), so iptables-save cannot read the tables: ${remedy}`,
    };
  }
  const names = missing.map((c) => c.name);
  return {
    kind: 'no_new_privs',
    short: 'no-new-privileges keeps the capabilities from iptables-save',
    remedy: NNP_WAYS_OUT,
    message:
      `no-new-privileges is set (NoNewPrivs: 1) and uid ${p.uid} holds ${names.length > 1 ? `neither ${names.join(' nor ')}` : `no ${names[0]}`}: ` +
      `the kernel ignores file capabilities under it, so iptables-save does not get the capabilities the container grants and every reading fails with "Permission denied"; ${NNP_WAYS_OUT}`,
  };
}

/** Pure: how the save commands get the two capabilities, when privilegeProblem finds none missing. */
export function describePrivileges(p: ProcessPrivileges): string {
  if (NEEDED.every((c) => has(p.permitted, c.bit))) {
    return `uid ${p.uid} holds CAP_NET_ADMIN and CAP_NET_RAW${p.noNewPrivs ? ' (so no-new-privileges does not matter)' : ''}`;
  }
  return `uid ${p.uid}; CAP_NET_ADMIN and CAP_NET_RAW are granted to the container and no-new-privileges is off, so iptables-save gets them ${p.uid === 0 ? 'as root' : 'from its file capabilities'}`;
}

/** This process's privileges; undefined when /proc/self/status cannot be read or parsed (not Linux, no /proc). */
export function readPrivileges(path = '/proc/self/status'): ProcessPrivileges | undefined {
  try {
    return parseProcStatus(readFileSync(path, 'utf8'));
  } catch {
    return undefined;
  }
}

/** At start-up: one warning when the save commands will not get the capabilities, saying what to do. */
export function warnAboutPrivileges(log: Logger, privileges = readPrivileges()): void {
  const problem = privileges && privilegeProblem(privileges);
  if (problem) log.warn(problem.message, { uid: privileges.uid, no_new_privs: privileges.noNewPrivs, kind: problem.kind });
}
