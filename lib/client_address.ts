/** @module Who the client is, given how many trusted proxies stand in front of vestibule. */

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
  const clientIp = chain[Math.max(0, chain.length - 1 - trustedHops)];
  return { clientIp, forwardedFor: chain.join(", ") };
}
