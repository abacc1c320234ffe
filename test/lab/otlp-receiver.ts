/**
 * A tiny OTLP/HTTP metrics receiver for the integration tests, run as its own
 * program INSIDE the lab's gateway namespace (the agent's loopback is that
 * namespace's, not the test's):
 *
 *   ip netns exec <gw> node --import tsx test/lab/otlp-receiver.ts
 *
 * It prints `{"listening":PORT}` once ready, then one JSON line per export
 * request (`{"body":...}`); a line `status 503` on its stdin makes it answer
 * 503 from then on (a collector that is down), `status 200` heals it.
 * Both OTLP/HTTP encodings are accepted (JSON, and protobuf decoded into the
 * JSON shape), and gzip content-encoding too.
 */
import { createServer } from 'node:http';
import { createInterface } from 'node:readline';
import { gunzipSync } from 'node:zlib';
import { decodeMetricsRequest } from './otlp-protobuf.js';

let status = 200;
createInterface({ input: process.stdin }).on('line', (line) => {
  const match = /^status (\d{3})$/.exec(line.trim());
  if (match) status = Number(match[1]);
});

const server = createServer((request, response) => {
  const chunks: Buffer[] = [];
  request.on('data', (chunk: Buffer) => chunks.push(chunk));
  request.on('end', () => {
    if (request.method !== 'POST' || request.url !== '/v1/metrics') {
      response.writeHead(404).end();
      return;
    }
    if (status !== 200) {
      process.stdout.write(`${JSON.stringify({ refused: status })}\n`);
      response.writeHead(status, { 'content-type': 'application/json' }).end('{}');
      return;
    }
    let raw = Buffer.concat(chunks);
    if (request.headers['content-encoding'] === 'gzip') raw = gunzipSync(raw);
    const protobuf = request.headers['content-type']?.startsWith('application/x-protobuf');
    const body = protobuf ? decodeMetricsRequest(raw) : JSON.parse(raw.toString('utf8'));
    process.stdout.write(`${JSON.stringify({ body, bytes: raw.length, encoding: protobuf ? 'protobuf' : 'json' })}\n`);
    response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  });
});
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  process.stdout.write(`${JSON.stringify({ listening: typeof address === 'object' && address ? address.port : 0 })}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
