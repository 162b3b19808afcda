import { hostname as osHostname, networkInterfaces } from 'node:os';

// Bridges and tunnels that are not how the orchestrator reaches this host.
const VIRTUAL = /^(lo|docker|br-|veth|virbr|cni|flannel|cali|weave|tun|tap|wg|kube)/;

/** The address reported at registration when IP_ADDRESS is not set: the first external IPv4 of a physical-looking interface. */
export function detectIpAddress(interfaces = networkInterfaces()): string {
  const candidates = Object.entries(interfaces).flatMap(([name, addresses]) =>
    (addresses ?? []).filter((a) => !a.internal).map((a) => ({ name, family: a.family, address: a.address })),
  );
  const pick =
    candidates.find((c) => c.family === 'IPv4' && !VIRTUAL.test(c.name)) ??
    candidates.find((c) => c.family === 'IPv4') ??
    candidates.find((c) => c.family === 'IPv6' && !c.address.startsWith('fe80'));
  return pick?.address ?? '127.0.0.1';
}

export function hostIdentity(config: { hostname?: string; ipAddress?: string }): { hostname: string; ipAddress: string } {
  return { hostname: config.hostname ?? osHostname(), ipAddress: config.ipAddress ?? detectIpAddress() };
}
