/**
 * @module The forward proxy Deno's `fetch` takes from the environment for every upstream call
 * (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, in either case), said once at start-up: set by a
 * base image or a shell, it carried every call (to an `http://` origin with its cookies and
 * secret headers in plain text), and a proxy's own 403 was logged as the origin's answer.
 */

const PROXY_VARIABLES = ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"];

/** The start-up line naming the proxy variables set (credentials masked), or none. */
export function proxyNotice(env: (name: string) => string | undefined): string | undefined {
  const set = PROXY_VARIABLES.flatMap((name) =>
    [name, name.toLowerCase()].flatMap((spelling) => {
      const value = env(spelling)?.trim();
      return value ? [`${spelling}=${withoutCredentials(value)}`] : [];
    })
  );
  if (set.length === 0) return undefined;
  const noProxy = env("NO_PROXY")?.trim() || env("no_proxy")?.trim();
  return `vestibule: upstream calls go through the proxy in ${set.join(", ")}` +
    (noProxy ? ` (except NO_PROXY ${noProxy})` : " (NO_PROXY is not set)");
}

/**
 * `value` with all before its last `@` masked (the scheme kept): Deno's fetch reads
 * `user:pass@proxy:3128` without a scheme too (and sends it as Proxy-Authorization), and a
 * password may hold an unencoded `@`, `/`, `?` or `#`, with which the value parses with the
 * password as a path (`ops:/Zq8+x=@proxy:3128/x` is the host `ops` with an empty port). A proxy
 * URL with an `@` in its path, which would lose its host to the mask, is rarer than such a
 * password.
 */
function withoutCredentials(value: string): string {
  const scheme = value.match(/^[a-z][a-z0-9+.-]*:\/\//i)?.[0] ?? "";
  const rest = value.slice(scheme.length);
  const at = rest.lastIndexOf("@");
  return at === -1 ? value : `${scheme}***${rest.slice(at)}`;
}
