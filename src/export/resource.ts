/**
 * The resource every export carries; OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over our defaults.
 *
 * service.instance.id becomes the `instance` label downstream, so a new id per
 * process would start new series for every user at every restart. The default
 * is derived from what stays the same across restarts of one sidecar: the host
 * name and the network namespace it reads (a UUID v5, as the semantic
 * conventions recommend for stable ids, so neither shows in the label).
 */
import { createHash } from 'node:crypto';
import { readlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import { detectResources, envDetector, resourceFromAttributes, type Resource } from '@opentelemetry/resources';

/** The namespace the semantic conventions give for a service.instance.id made from stable inputs. */
const INSTANCE_ID_NAMESPACE = '4d63009a-8d0f-11ee-aad7-4c796ed8e320';

/** What tells one sidecar from another and stays the same across its restarts. */
export interface InstanceIdentity {
  hostName: string;
  /** `net:[inode]` of the network namespace ('' where it cannot be read). */
  networkNamespace: string;
}

/** RFC 4122 name-based UUID, version 5 (SHA-1). */
export function uuidV5(name: string, namespace: string): string {
  const hash = createHash('sha1').update(Buffer.from(namespace.replaceAll('-', ''), 'hex')).update(name, 'utf8').digest();
  hash[6] = (hash[6]! & 0x0f) | 0x50;
  hash[8] = (hash[8]! & 0x3f) | 0x80;
  const hex = hash.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** Pure: the default service.instance.id of a sidecar. */
export function stableInstanceId(identity: InstanceIdentity): string {
  return uuidV5(`${identity.hostName}\n${identity.networkNamespace}`, INSTANCE_ID_NAMESPACE);
}

/** This process's network namespace, as /proc names it (`net:[4026531840]`); '' off Linux. */
export function networkNamespace(): string {
  try {
    return readlinkSync('/proc/self/ns/net');
  } catch {
    return '';
  }
}

export function buildResource(version: string, identity: InstanceIdentity = { hostName: hostname(), networkNamespace: networkNamespace() }): Resource {
  const base = resourceFromAttributes({
    'service.name': 'markmeter',
    'service.version': version,
    'service.instance.id': stableInstanceId(identity),
    'host.name': identity.hostName,
  });
  return base.merge(detectResources({ detectors: [envDetector] }));
}
