/**
 * The OTLP/HTTP metrics receiver as a program, so that it can run inside a lab namespace (an agent
 * under test pushes to that namespace's loopback): `node --import tsx test/lab/otlp-server.ts`.
 * It answers POST /v1/metrics (application/json or application/x-protobuf, gzip or not) with 200
 * `{}`, and writes one JSON line per event on stdout:
 *   {"listening":PORT}                          once, when ready (127.0.0.1, a free port)
 *   {"encoding":"protobuf","points":[...]}      an accepted request (otlp-decode.ts: int64 exact)
 *   {"refused":503}                             answered with the status set on stdin
 *   {"rejected":415,"error":"..."}              not an OTLP metrics request
 *   {"status":503}                              the stdin line `status 503` took effect (200 heals)
 * It exits when stdin closes (its parent is gone) or on SIGTERM.
 */
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createInterface } from 'node:readline';
import { gunzipSync } from 'node:zlib';
import { decodeExport } from './otlp-decode.js';

const out = (event: object) => process.stdout.write(`${JSON.stringify(event)}\n`);
let status = 200;

async function answer(req: IncomingMessage): Promise<{ status: number; event: object }> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  if (req.method !== 'POST' || req.url?.split('?')[0] !== '/v1/metrics') return { status: 404, event: { rejected: 404, error: `${req.method} ${req.url}` } };
  if (status !== 200) return { status, event: { refused: status } };
  const type = String(req.headers['content-type'] ?? '').split(';')[0]!.trim();
  const encoding = type === 'application/json' ? 'json' : type === 'application/x-protobuf' ? 'protobuf' : undefined;
  if (!encoding) return { status: 415, event: { rejected: 415, error: `content-type ${type || '(none)'}` } };
  try {
    const body = req.headers['content-encoding'] === 'gzip' ? gunzipSync(Buffer.concat(chunks)) : Buffer.concat(chunks);
    return { status: 200, event: { encoding, points: decodeExport(body, encoding) } };
  } catch (error) {
    return { status: 400, event: { rejected: 400, error: `not an OTLP ${encoding} body: ${(error as Error).message}` } };
  }
}

const server = createServer((req, res) => {
  void answer(req).then(({ status, event }) => {
    out(event);
    // An empty ExportMetricsServiceResponse in the request's own encoding (an empty protobuf message is no bytes).
    const protobuf = String(req.headers['content-type'] ?? '').startsWith('application/x-protobuf');
    res.writeHead(status, { 'content-type': protobuf ? 'application/x-protobuf' : 'application/json' }).end(protobuf ? '' : '{}');
  });
});
server.keepAliveTimeout = 1000;
server.listen(0, '127.0.0.1', () => out({ listening: (server.address() as AddressInfo).port }));

createInterface({ input: process.stdin })
  .on('line', (line) => {
    const m = /^status (\d{3})$/.exec(line.trim());
    if (!m) return;
    status = Number(m[1]);
    out({ status });
  })
  .on('close', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
