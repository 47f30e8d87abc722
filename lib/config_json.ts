/** @module JSON for files people edit: parsed strictly, with a key written twice refused. */

/** Where a key is named a second time in one object. */
export interface RepeatedKey {
  key: string;
  /** 1-based line of the second occurrence. */
  line: number;
}

/**
 * Parses a config file's JSON, refusing a key written twice in one object: `JSON.parse` keeps
 * the last silently, so a pasted second `"rules"` would drop the whole first table.
 * Throws `SyntaxError` naming `source` (and the line, for a repeated key).
 */
export function parseConfigJson(text: string, source: string): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new SyntaxError(`Cannot parse ${source}: ${(error as Error).message}`, { cause: error });
  }
  const repeated = findRepeatedKey(text);
  if (repeated) {
    throw new SyntaxError(
      `Cannot parse ${source}: key "${repeated.key}" appears twice in one object (line ${repeated.line}); remove one`,
    );
  }
  return value;
}

/**
 * The first key that an object in `text` (valid JSON) names twice. Walks the text once: a
 * string followed by `:` is a key of the innermost open object.
 */
export function findRepeatedKey(text: string): RepeatedKey | undefined {
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
        if (keys.has(key)) return { key, line: text.slice(0, i).split("\n").length };
        keys.add(key);
      }
      i = end;
    }
  }
  return undefined;
}
