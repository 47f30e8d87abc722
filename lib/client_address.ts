/** @module Who the client is, given how many trusted proxies stand in front of vestibule. */
import { isIP } from "node:net";

/** The client's address and the `X-Forwarded-For` value to send upstream. */
export interface ClientAddress {
  clientIp: string;
  forwardedFor: string;
}

/**
 * With no trusted hops the incoming `X-Forwarded-For` is attacker-controlled and replaced by the
 * socket address. With N trusted hops (say a CDN), the chain is kept and the client is the entry
 * N places left of the socket peer: the rightmost address the trusted proxies vouch for.
 */
export function clientAddress(
  forwardedFor: string | null,
  remoteIp: string,
  trustedHops: number,
): ClientAddress {
  if (trustedHops === 0 || !forwardedFor) {
    return { clientIp: remoteIp, forwardedFor: remoteIp };
  }
  const chain = forwardedFor.split(",").map((s) => s.trim()).filter(Boolean);
  chain.push(remoteIp);
  const vouched = chain[Math.max(0, chain.length - 1 - trustedHops)];
  // As nginx's realip module reads it: `ip:port` and `[v6]:port` (Azure Application Gateway
  // writes those) are the address; an entry that is none (`unknown`) leaves the socket peer.
  return { clientIp: bareAddress(vouched) ?? remoteIp, forwardedFor: chain.join(", ") };
}

/** The IP address in an `X-Forwarded-For` entry (`ip`, `ip:port`, `[v6]`, `[v6]:port`), or null. */
function bareAddress(entry: string): string | null {
  if (isIP(entry) !== 0) return entry;
  const bracketed = /^\[([^\]]+)\](?::\d{1,5})?$/.exec(entry);
  if (bracketed) return isIP(bracketed[1]) === 6 ? bracketed[1] : null;
  const withPort = /^([^:]+):\d{1,5}$/.exec(entry);
  return withPort && isIP(withPort[1]) === 4 ? withPort[1] : null;
}
