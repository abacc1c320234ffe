/**
 * Where OTLP pushes go, and each connection attempt's failure as it happens.
 *
 * The exporter retries a failed push inside itself (with backoff, for up to
 * the OTLP timeout: about 8 s against a collector that refuses connections),
 * and only then reports it. markmeter pushes cumulative totals every interval
 * anyway, so an operator should hear of a refused or unreachable collector at
 * the first attempt: the exporter is given our HTTP agent, which tells of
 * every connection that fails. Endpoint, TLS files and keep-alive come from
 * the OTEL_EXPORTER_OTLP_* variables, resolved by the exporter's own code.
 */
import type { Agent } from 'node:http';
import { convertLegacyHttpOptions } from '@opentelemetry/otlp-exporter-base/node-http';

type AgentFactory = (protocol: string) => Agent | Promise<Agent>;

export interface OtlpTarget {
  /** The metrics URL the exporter posts to (may carry credentials: show it through redactUrl). */
  url: string;
  /** The exporter's HTTP(S) agent, as the variables configure it, reporting each failed connection. */
  agentFactory: AgentFactory;
}

/** The metrics endpoint of the OTEL_EXPORTER_OTLP_* variables; `onConnectionError` hears of every connection that fails. */
export function otlpMetricsTarget(onConnectionError: (error: Error) => void = () => {}): OtlpTarget {
  const resolved = convertLegacyHttpOptions({}, 'METRICS', 'v1/metrics', {});
  return {
    url: resolved.url,
    agentFactory: async (protocol) => reportingFailedConnections((await resolved.agentFactory(protocol)) as Agent, onConnectionError),
  };
}

/** `agent`, telling `onError` of each of its sockets that fails (the request fails as before). */
function reportingFailedConnections(agent: Agent, onError: (error: Error) => void): Agent {
  const create = agent.createConnection.bind(agent);
  agent.createConnection = (options, callback) => {
    const socket = create(options, callback);
    socket?.on('error', onError);
    return socket;
  };
  return agent;
}
