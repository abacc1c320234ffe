/** The one place metric names, units and attribute keys live (the README lists them). */

export const ATTR_USER_CODE = 'user_code';
export const ATTR_USER_INTRA_IP = 'user_intra_ip';
/** Present when the users document gives the user a display name. */
export const ATTR_USER_NAME = 'user_name';
export const ATTR_IFACE = 'iface';
/** With attribution.breakdown = mark: the series' mark and the peer of its pool entry. */
export const ATTR_MARK_ID = 'mark_id';
export const ATTR_PEER_IP = 'peer_ip';
export const ATTR_DIRECTION = 'direction';
export const ATTR_SOURCE = 'source';
export const ATTR_KIND = 'kind';
export const ATTR_RESULT = 'result';
export const ATTR_REASON = 'reason';

export const METER_NAME = 'markmeter';

export interface MetricSpec {
  name: string;
  unit: string;
  description: string;
}

const spec = (name: string, unit: string, description: string): MetricSpec => ({ name, unit, description });

export const USER_METRICS = {
  rxPackets: spec('net_user_rx_packets', '{packet}', 'Packets downloaded by the user (PREROUTING MARK rules).'),
  txPackets: spec('net_user_tx_packets', '{packet}', 'Packets uploaded by the user (POSTROUTING MARK rules).'),
  rxBytes: spec('net_user_rx_bytes', 'By', 'Bytes downloaded by the user (PREROUTING MARK rules).'),
  txBytes: spec('net_user_tx_bytes', 'By', 'Bytes uploaded by the user (POSTROUTING MARK rules).'),
} as const;

/** The per-user series of the TC source: what the user's shaping class sent, dropped, and how often it was over its limit. */
export const TC_METRICS = {
  rxPackets: spec('net_user_tc_rx_packets', '{packet}', "Packets the shaper sent to the user (the user's class on an rx device)."),
  txPackets: spec('net_user_tc_tx_packets', '{packet}', "Packets the shaper sent from the user (the user's class on a tx device)."),
  rxBytes: spec('net_user_tc_rx_bytes', 'By', 'Bytes the shaper sent to the user, link-layer header included.'),
  txBytes: spec('net_user_tc_tx_bytes', 'By', 'Bytes the shaper sent from the user, link-layer header included.'),
  rxDropped: spec('net_user_tc_rx_dropped_packets', '{packet}', "Packets to the user the shaper dropped (the class's and its leaf qdisc's drops)."),
  txDropped: spec('net_user_tc_tx_dropped_packets', '{packet}', 'Packets from the user the shaper dropped.'),
  rxOverlimits: spec('net_user_tc_rx_overlimits', '{event}', "Times the user's download class was over its limit."),
  txOverlimits: spec('net_user_tc_tx_overlimits', '{event}', "Times the user's upload class was over its limit."),
} as const;

export const INTERFACE_METRICS = {
  rxPackets: spec('net_interface_rx_packets', '{packet}', 'Packets received on the interface (sysfs statistics).'),
  txPackets: spec('net_interface_tx_packets', '{packet}', 'Packets sent on the interface (sysfs statistics).'),
} as const;

/** Self-telemetry, after node_exporter's collector_success / collector_duration_seconds. */
export const SELF_METRICS = {
  collectionDuration: spec('markmeter_collection_duration_seconds', 's', 'Duration of the last reading of one source (iptables-save run, parse, attribution).'),
  collectionSuccess: spec('markmeter_collection_success', '1', '1 when the last reading of the source succeeded, else 0.'),
  collections: spec('markmeter_collections', '{collection}', 'Readings of a source, by result.'),
  collectionErrors: spec('markmeter_collection_errors', '{error}', 'Failed readings, by kind (missing_binary, exit_code, timeout, max_buffer, parse, ...).'),
  rulesParsed: spec('markmeter_rules_parsed', '{rule}', 'Rules in the last reading of the source.'),
  markRules: spec('markmeter_mark_rules', '{rule}', 'MARK rules in the last reading of the source.'),
  skippedRules: spec('markmeter_skipped_rules', '{rule}', 'MARK rules not counted in the last reading because their chain has no single direction, by reason.'),
  unattributedPackets: spec('markmeter_unattributed_packets', '{packet}', 'Packets of MARK rules that no user owns, by direction.'),
  unattributedBytes: spec('markmeter_unattributed_bytes', 'By', 'Bytes of MARK rules that no user owns, by direction.'),
  unattributedTcPackets: spec('markmeter_unattributed_tc_packets', '{packet}', 'Packets of shaping classes that no filter ties to one user, by direction.'),
  unattributedTcDropped: spec('markmeter_unattributed_tc_dropped_packets', '{packet}', 'Drops of shaping classes that no filter ties to one user, by direction.'),
  usersSyncs: spec('markmeter_users_syncs', '{sync}', 'Users document loads, by result (ok, error).'),
  users: spec('markmeter_users', '{user}', 'Users in the last good users document that are exported.'),
  usersRefused: spec('markmeter_users_refused', '{user}', 'Users of the last document beyond limits.maxUsers, not exported.'),
  exportFailures: spec('markmeter_export_failures', '{export}', 'OTLP pushes that failed (the next push carries the same cumulative totals).'),
} as const;
