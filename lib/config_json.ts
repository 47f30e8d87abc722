/** @module JSON for files people edit: parsed strictly, a key written twice or `__proto__` refused. */
import { HTTP_TOKEN } from "./header_list.ts";

/** Where a refused key stands in the text. */
export interface KeyPosition {
  key: string;
  /** 1-based line (of the second occurrence, for a key written twice). */
  line: number;
}

/**
 * A key JavaScript objects do not hold as data: `{"__proto__": …}` parses, but every copy into an
 * object (zod's records, the `${NAME}` substitution) sets the prototype instead, so the entry
 * was dropped without a word: a `json` body matcher of `{"__proto__": {}}` matched every body.
 */
const PROTOTYPE_KEY = "__proto__";

/** A UTF-8 byte order mark as `TextDecoder` leaves it: some Windows editors save one. */
const BYTE_ORDER_MARK = "\uFEFF";

/**
 * A config file's bytes as text, refusing any that are not UTF-8 (RFC 8259 §8.1): decoded
 * leniently, a file saved in Windows-1252 or Latin-1 turned `Zürich` into `Z\uFFFDrich`, which a
 * body matcher then waited for and no client sends. Throws `SyntaxError` naming `source` and the
 * first line that is not UTF-8.
 */
export function decodeConfigFile(bytes: Uint8Array, source: string): string {
  if ((bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0xfe && bytes[1] === 0xff)) {
    throw new SyntaxError(`Cannot parse ${source}: it is saved as UTF-16; save it as UTF-8`);
  }
  const strict = new TextDecoder("utf-8", { fatal: true });
  try {
    return strict.decode(bytes);
  } catch {
    // No UTF-8 sequence holds the byte 0A, so each line can be checked on its own.
    let line = 1;
    let start = 0;
    for (let end = 0; end <= bytes.length; end++) {
      if (end < bytes.length && bytes[end] !== 0x0a) continue;
      try {
        strict.decode(bytes.subarray(start, end));
      } catch {
        break;
      }
      line++;
      start = end + 1;
    }
    throw new SyntaxError(
      `Cannot parse ${source}: not UTF-8 text (line ${line}); save it as UTF-8`,
    );
  }
}

/**
 * Parses a config file's JSON, refusing a key written twice in one object (`JSON.parse` keeps
 * the last silently, so a pasted second `"rules"` would drop the whole first table) and a
 * `__proto__` key ({@linkcode PROTOTYPE_KEY}). A leading byte order mark is skipped, as
 * RFC 8259 §8.1 allows; `JSON.parse` refused it with an invisible "Unexpected token".
 * Throws `SyntaxError` naming `source` (and the line, for a refused key).
 */
export function parseConfigJson(file: string, source: string): unknown {
  const text = file.startsWith(BYTE_ORDER_MARK) ? file.slice(1) : file;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new SyntaxError(`Cannot parse ${source}: ${syntaxProblem(text, error as Error)}`);
  }
  const refused = firstKey(text, (key, siblings) => key === PROTOTYPE_KEY || siblings.has(key));
  if (refused?.key === PROTOTYPE_KEY) {
    throw new SyntaxError(
      `Cannot parse ${source}: key "${PROTOTYPE_KEY}" (line ${refused.line}) cannot be used: JavaScript objects read it as their prototype, not as data`,
    );
  }
  if (refused) {
    throw new SyntaxError(
      `Cannot parse ${source}: key ${
        shownKey(refused.key)
      } appears twice in one object (line ${refused.line}); remove one`,
    );
  }
  return value;
}

/**
 * V8's message for a JSON syntax error, without the text it may quote: for an unexpected token it
 * quotes the file around it (`Unexpected token 's', "{"Cookie": s3cr3t…" is not valid JSON`), and
 * check-rules runs in CI logs. The position is found instead: the shortest prefix that fails
 * the same way ends at the offending character.
 */
function syntaxProblem(text: string, error: Error): string {
  // `Unexpected token 'x', ..."text"... is not valid JSON`, or `"text" is not valid JSON`.
  if (!/ is not valid JSON$/.test(error.message)) return error.message;
  const problem = /^(Unexpected token '.+?'), /s.exec(error.message)?.[1] ?? "Unexpected token";
  let [low, high] = [0, text.length]; // the prefix of length `high` fails the same way
  while (low + 1 < high) {
    const middle = Math.floor((low + high) / 2);
    try {
      JSON.parse(text.slice(0, middle));
      low = middle;
    } catch (e) {
      if ((e as Error).message.startsWith(problem)) high = middle;
      else low = middle;
    }
  }
  const before = text.slice(0, high - 1);
  const line = before.split("\n").length;
  const column = high - 1 - before.lastIndexOf("\n");
  return `${problem} in JSON (line ${line} column ${column})`;
}

/** A key as a message may show it: one that is no token (a pasted header line) may be a secret. */
function shownKey(key: string): string {
  return HTTP_TOKEN.test(key) ? `"${key}"` : "(a key with spaces or symbols)";
}

/** The first key that an object in `text` (valid JSON) names twice. */
export function findRepeatedKey(text: string): KeyPosition | undefined {
  return firstKey(text, (key, siblings) => siblings.has(key));
}

/**
 * The first key of an object in `text` (valid JSON) that `refuse` picks, given the keys before
 * it in the same object. Walks the text once: a string followed by `:` is a key of the
 * innermost open object.
 */
function firstKey(
  text: string,
  refuse: (key: string, siblings: ReadonlySet<string>) => boolean,
): KeyPosition | undefined {
  const open: Array<Set<string> | null> = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "{") open.push(new Set());
    else if (c === "[") open.push(null);
    else if (c === "}" || c === "]") open.pop();
    else if (c === '"') {
      let end = i + 1;
      while (text[end] !== '"') end += text[end] === "\\" ? 2 : 1;
      let next = end + 1;
      while (/\s/.test(text[next] ?? "")) next++;
      const keys = open.at(-1);
      if (text[next] === ":" && keys) {
        const key = JSON.parse(text.slice(i, end + 1)) as string;
        if (refuse(key, keys)) return { key, line: text.slice(0, i).split("\n").length };
        keys.add(key);
      }
      i = end;
    }
  }
  return undefined;
}
