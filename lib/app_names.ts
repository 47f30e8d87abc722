/**
 * @module The names an application's framework files a request's parameters and cookies under,
 * where they differ from the names as sent: a rule, a region choice or the pin filter that reads
 * one name must also see the copies the app reads under it.
 */

/**
 * The name PHP registers a form field under (`php_register_variable_ex`): leading spaces dropped,
 * spaces and dots turned into `_`, cut at a NUL, and a name with `[…]` an array of its part
 * before the `[` (an unclosed `[` becomes `_`). Rack reads `name[]` as `name` too.
 * `action[]=evil` then stands next to `action=login` in `$_POST['action']`, so the matcher
 * counts it as a copy of `action`.
 */
export function phpFieldName(name: string): string {
  // PHP reads the name as a C string: a NUL ends it.
  const nul = name.indexOf("\0");
  const trimmed = (nul === -1 ? name : name.slice(0, nul)).replace(/^ +/, "");
  let out = "";
  for (let i = 0; i < trimmed.length; i++) {
    const char = trimmed[i];
    if (char === " " || char === ".") out += "_";
    else if (char === "[") {
      if (trimmed.indexOf("]", i + 1) >= 0) return out;
      // PHP 8: an unclosed `[` and every space, dot and `[` after it become `_`.
      return `${out}_${trimmed.slice(i + 1).replace(/[ .[]/g, "_")}`;
    } else out += char;
  }
  return out;
}

/**
 * The name Rack 2 files a query or form parameter under: leading brackets dropped, cut at the
 * next bracket (`[region]` is `region`).
 */
export function rackParamName(name: string): string {
  return /^[[\]]*([^[\]]*)/.exec(name)![1];
}

/**
 * Every value of parameter `name` as some framework reads it: its own copies, and those of
 * parameters PHP (` region`, `region%00`, `region[]`) or Rack 2 (`[region]`) file under it. A
 * matcher or a region choice that needs every copy to agree then fails closed where the app may
 * read another value than the edge.
 */
export function valuesAsAppsRead(params: URLSearchParams, name: string): string[] {
  const values: string[] = [];
  for (const [key, value] of params) if (filedUnder(key, name)) values.push(value);
  return values;
}

/**
 * The query's parameters as apps read them: as sent and, when the query has a `;`, also as Rack 2
 * splits it, at `&` and `;` both (`?region=au&x=1;region=us` is region=us to Rack 2, `x` =
 * `1;region=us` to everyone else). A matcher or region choice that needs every copy to agree sees
 * both readings.
 */
export function queryAsAppsRead(url: URL): URLSearchParams {
  const { search, searchParams } = url;
  if (!search.includes(";")) return searchParams;
  const both = new URLSearchParams(searchParams);
  for (const [key, value] of new URLSearchParams(search.replaceAll(";", "&"))) {
    both.append(key, value);
  }
  return both;
}

/** Every value of field `name` in a parsed form, as some framework reads it ({@linkcode filedUnder}). */
export function fieldValuesAsAppsRead(fields: Map<string, string[]>, name: string): string[] {
  const values: string[] = [];
  for (const [key, copies] of fields) {
    if (filedUnder(key, name)) { for (const value of copies) values.push(value); }
  }
  return values;
}

/**
 * Whether some framework files parameter `key` under `name`: as sent, as PHP or Rack 2 read it,
 * or as Tomcat names a multipart field (Java's `trim()`: every character up to U+0020 off both
 * ends, so `"action "` is Spring's `action`).
 */
export function filedUnder(key: string, name: string): boolean {
  return key === name || phpFieldName(key) === name || rackParamName(key) === name ||
    javaTrim(key) === name;
}

/** Java's `String.trim()`: every character up to U+0020 off both ends, control ones included. */
function javaTrim(text: string): string {
  // deno-lint-ignore no-control-regex -- the control characters are what Java trims
  return text.replace(/^[\x00-\x20]+|[\x00-\x20]+$/g, "");
}

/**
 * Whether cookie `name` is the pin cookie `pin` to some app: in any letter case (browsers match
 * the `__Host-` prefix so, and some frameworks look cookies up so), as PHP files it in
 * `$_COOKIE` (`vestibule.region` and `vestibule[region` are `vestibule_region`,
 * `__Host-vestibule-region[]` the array `__Host-vestibule-region`), or URL-decoded, as PHP before
 * 7.4.11 (CVE-2020-7070) and Rack before 2.1.4 (CVE-2020-8184) read names:
 * `%5F%5FHost-vestibule-region`, which no browser rule keeps a sibling subdomain from setting.
 */
export function isPinCookieName(name: string, pin: string): boolean {
  if (pin !== pinSpellings.pin) pinSpellings = spellingsOf(pin);
  const lower = name.toLowerCase();
  return spellsPin(lower) || (/[%+]/.test(lower) && spellsPin(urlDecoded(lower).toLowerCase()));
}

function spellsPin(lower: string): boolean {
  if (lower === pinSpellings.lower) return true;
  // PHP's name is no longer than the one sent: most cookies are ruled out by their length.
  return lower.length >= pinSpellings.lower.length && phpFieldName(lower) === pinSpellings.php;
}

/**
 * `%XX` escapes and `+` decoded in one pass, as PHP's `urldecode` and Rack's `unescape` did
 * (`%2B` is a `+`, not a space); PHP then files `+__Host-…`, a leading space, as `__Host-…`.
 */
function urlDecoded(name: string): string {
  return name.replace(
    /%([0-9a-f]{2})|\+/g,
    (_, hex) => hex === undefined ? " " : String.fromCharCode(parseInt(hex, 16)),
  );
}

/** The pin's own spellings, worked out once per pin name (one per config), not per cookie. */
let pinSpellings = spellingsOf("");

function spellingsOf(pin: string): { pin: string; lower: string; php: string } {
  const lower = pin.toLowerCase();
  return { pin, lower, php: phpFieldName(lower) };
}
