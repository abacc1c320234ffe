/** The resource every export carries; OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over our defaults. */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { detectResources, envDetector, resourceFromAttributes, type Resource } from '@opentelemetry/resources';

export function buildResource(version: string): Resource {
  const base = resourceFromAttributes({
    'service.name': 'markmeter',
    'service.version': version,
    'service.instance.id': randomUUID(),
    'host.name': hostname(),
  });
  return base.merge(detectResources({ detectors: [envDetector] }));
}
