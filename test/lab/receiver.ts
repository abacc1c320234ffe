/**
 * Kept for existing imports (test/integration/*.test.ts): the receivers live in otlp-receiver.ts,
 * the OTLP JSON helpers in otlp.ts.
 */
import { flattenRequest, type OtlpPoint } from './otlp.js';

export { NamespacedReceiver, startReceiver, type ReceivedRequest } from './otlp-receiver.js';

export type Point = OtlpPoint;

/** Flattens one OTLP JSON export request (parsed; better its raw text) into its points. */
export function pointsOf(body: unknown): Point[] {
  return flattenRequest(body, { lossy: true });
}
