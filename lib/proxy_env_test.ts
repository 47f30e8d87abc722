import assert from "node:assert/strict";
import { proxyNotice } from "./proxy_env.ts";

const envOf = (vars: Record<string, string>) => (name: string) => vars[name];

Deno.test("proxyNotice() names the proxy variables fetch follows, never their passwords", () => {
  assert.equal(proxyNotice(envOf({})), undefined);
  assert.equal(proxyNotice(envOf({ HTTP_PROXY: " ", NO_PROXY: "x" })), undefined);
  assert.equal(
    proxyNotice(envOf({ https_proxy: "http://user:pa55@proxy:3128", NO_PROXY: "10.0.0.0/8" })),
    "vestibule: upstream calls go through the proxy in https_proxy=http://***@proxy:3128 " +
      "(except NO_PROXY 10.0.0.0/8)",
  );
  assert.equal(
    proxyNotice(envOf({ HTTP_PROXY: "http://proxy:3128", ALL_PROXY: "socks5://p:1080" })),
    "vestibule: upstream calls go through the proxy in HTTP_PROXY=http://proxy:3128, " +
      "ALL_PROXY=socks5://p:1080 (NO_PROXY is not set)",
  );
});

Deno.test("proxyNotice() masks a password written without a scheme, or with an @ of its own", () => {
  // HTTP_PROXY=ops:pa55@proxy:3128: Deno's fetch sends Proxy-Authorization: Basic ops:pa55.
  assert.equal(
    proxyNotice(envOf({ HTTP_PROXY: "ops:pa55@proxy:3128" })),
    "vestibule: upstream calls go through the proxy in HTTP_PROXY=***@proxy:3128 (NO_PROXY is not set)",
  );
  assert.equal(
    proxyNotice(envOf({ HTTPS_PROXY: "HTTP://ops:p@55@proxy:3128" })),
    "vestibule: upstream calls go through the proxy in HTTPS_PROXY=HTTP://***@proxy:3128 " +
      "(NO_PROXY is not set)",
  );
  // A base64 password's unencoded `/`: fetch cannot use the value, and it is masked anyway.
  assert.equal(
    proxyNotice(envOf({ HTTP_PROXY: "http://ops:pa/ss@proxy:3128" })),
    "vestibule: upstream calls go through the proxy in HTTP_PROXY=http://***@proxy:3128 " +
      "(NO_PROXY is not set)",
  );
  assert.equal(
    proxyNotice(envOf({ HTTP_PROXY: "ops:pa/ss@proxy:3128" })),
    "vestibule: upstream calls go through the proxy in HTTP_PROXY=***@proxy:3128 " +
      "(NO_PROXY is not set)",
  );
  // An @ in the path is masked as a password would be: a password may hold / too.
  assert.equal(
    proxyNotice(envOf({ HTTP_PROXY: "http://proxy:3128/a@b/c" })),
    "vestibule: upstream calls go through the proxy in HTTP_PROXY=http://***@b/c " +
      "(NO_PROXY is not set)",
  );
});

Deno.test("secret leak: proxyNotice() masks a password that parses as a path (a leading /, digits then /)", async (t) => {
  // Each parses as `ops:<port>/<path>`, an empty or numeric port: the @ looked like part of a
  // path, and the whole value, password included, went to stderr. (A base64 password starts with
  // / one time in 64.)
  for (
    const value of [
      "http://ops:/Zq8+x=@proxy:3128",
      "ops:/Zq8+x=@proxy:3128",
      "http://ops:2024/05pass@proxy:3128",
      "http://ops:/Zq8+x=@proxy/",
      "http://ops:/Zq8+x=@proxy:3128/x",
      "http://ops:/Zq8+x=@proxy:3128?x",
      "http://ops:/Zq8+x=@proxy:3128#x",
      "ops:/Zq8+x=@proxy:3128//",
    ]
  ) {
    await t.step(value, () => {
      const notice = proxyNotice(envOf({ HTTP_PROXY: value })) ?? "";
      assert.doesNotMatch(notice, /Zq8|05pass/, notice);
      assert.match(notice, /\*\*\*@proxy(?::3128)?(?:\/\/?|\/x|\?x|#x)? /);
    });
  }
});

Deno.test("proxyNotice() reads a lower-case no_proxy, and a blank NO_PROXY is not set", () => {
  assert.equal(
    proxyNotice(envOf({ HTTP_PROXY: "http://proxy:3128", no_proxy: "10.0.0.0/8" })),
    "vestibule: upstream calls go through the proxy in HTTP_PROXY=http://proxy:3128 " +
      "(except NO_PROXY 10.0.0.0/8)",
  );
  assert.equal(
    proxyNotice(envOf({ HTTP_PROXY: "http://proxy:3128", NO_PROXY: " ", no_proxy: "internal" })),
    "vestibule: upstream calls go through the proxy in HTTP_PROXY=http://proxy:3128 " +
      "(except NO_PROXY internal)",
  );
});
