/** @module What the router reads from an incoming request, once, for matching and forwarding. */
import { clientAddress } from "./client_address.ts";
import type { Config } from "./compile_rules.ts";
import type { ForwardContext } from "./forward.ts";
import { HeaderList } from "./header_list.ts";
import type { RequestFacts } from "./match_rule.ts";

/** The request as matchers and forwarding see it; the router and `explain` both build it here. */
export interface RequestView {
  url: URL;
  /** The request's headers, read once. */
  headers: HeaderList;
  facts: RequestFacts;
  clientIp: string;
  forward: ForwardContext;
}

/**
 * Reads the request once: the public host (the `Host` header wins over the URL), the client
 * address behind the configured trusted proxies, and what forwarding adds upstream.
 */
export function viewRequest(
  request: Request,
  config: Config,
  options: { remoteIp: string; requestId?: string },
): RequestView {
  const url = new URL(request.url);
  const headers = new HeaderList(request.headers);
  const publicHost = headers.get("host") ?? url.host;
  const address = clientAddress(
    headers.get("x-forwarded-for"),
    options.remoteIp,
    config.trustedProxyHops,
  );
  return {
    url,
    headers,
    facts: {
      method: request.method,
      hostname: publicHost.replace(/:\d+$/, "").toLowerCase(),
      path: url.pathname,
      searchParams: url.searchParams,
      headers,
    },
    clientIp: address.clientIp,
    forward: {
      publicHost,
      proto: url.protocol.slice(0, -1),
      forwardedFor: address.forwardedFor,
      trustForwarded: config.trustedProxyHops > 0,
      pinHeader: config.pin.header,
      pinCookie: config.pin.cookie,
      requestId: options.requestId,
    },
  };
}
