/**
 * Shared by the health and /metrics listener tests: opens more idle TCP
 * connections than a listener's cap and watches which the listener closes.
 */
import assert from 'node:assert/strict';
import { get } from 'node:http';
import { connect, type Socket } from 'node:net';

export interface IdleConnections {
  /** Connections the listener closed, by when (ms after they opened). */
  closedAfter: number[];
  sockets: Socket[];
}

/** Opens `count` connections to 127.0.0.1:port that send nothing, noting when the server closes each. */
export async function openIdle(port: number, count: number): Promise<IdleConnections> {
  const started = Date.now();
  const result: IdleConnections = { closedAfter: [], sockets: [] };
  // One after the other, each given a moment to be accepted: a burst of simultaneous connects
  // sometimes left one unaccepted in the kernel's queue for the whole test.
  for (let i = 0; i < count; i++) {
    const socket = connect(port, '127.0.0.1');
    socket.on('error', () => {});
    socket.on('close', () => result.closedAfter.push(Date.now() - started));
    result.sockets.push(socket);
    await new Promise((resolve) => socket.once('connect', resolve));
    await sleep(5);
  }
  return result;
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Past the cap, the extra connections are closed at once; the rest once idle
 * for `idleMs`. Timed by order and by not closing early, with room for a busy
 * machine: the 3 extra ones close before any idle one, and no idle one closes
 * before the idle timeout.
 */
export async function assertCapAndIdle(port: number, cap: number, idleMs: number): Promise<void> {
  // One whole request first, so that the listener has served before the idle connections come.
  await new Promise<void>((resolve, reject) => get({ host: '127.0.0.1', port, path: '/', agent: false }, (response) => response.resume().on('end', resolve)).on('error', reject));
  const idle = await openIdle(port, cap + 3);
  try {
    for (const end = Date.now() + idleMs * 2 + 10_000; idle.closedAfter.length < cap + 3 && Date.now() < end; ) await sleep(20);
    const closed = idle.closedAfter;
    assert.equal(closed.length, cap + 3, `every connection is closed in the end (closed: ${closed})`);
    assert.ok(closed.slice(0, 3).every((ms) => ms < idleMs * 0.9), `the 3 connections past the cap of ${cap} are closed at once (closed: ${closed})`);
    assert.ok(closed.slice(3).every((ms) => ms >= idleMs * 0.9), `the idle ones are closed after the idle timeout, none before (closed: ${closed})`);
  } finally {
    for (const socket of idle.sockets) socket.destroy();
  }
}
