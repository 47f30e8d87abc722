/**
 * @module Reads the text fields of a `multipart/form-data` body as the application's framework
 * will: `Content-Disposition` parameters parsed per RFC 7578 §4.2 (quoted strings may hold `;`
 * and `name=`, RFC 2231 `name*=`, names in any case). Deno's `Response.formData()` splits the
 * parameters on every `;`, so a quoted `name="x;name=action"` read as the field `action` and a rule
 * could match a field the app never sees (or miss one it does). `@fastify/busboy` is the parser
 * Fastify keeps for Node: MIT, no dependencies.
 */
import { Buffer } from "node:buffer";
import { Busboy, type BusboyFileStream, type BusboyInstance } from "@fastify/busboy";
import { TCHAR } from "./header_list.ts";
import { plainParameters } from "./media_type.ts";

/**
 * The most fields (multipart: parts) a `form` matcher reads; a body with more is no form it
 * matches. Django refuses more than 1,000 fields itself (`DATA_UPLOAD_MAX_NUMBER_FIELDS`), and a
 * 1 MiB body of 116k empty parts cost busboy about a second of CPU, 524k `a&a&…` pairs 0.3 s.
 */
export const MAX_FORM_FIELDS = 1000;

/** How much of a body busboy gets at a time (its events fire while it is written). */
const SLICE_BYTES = 16 * 1024;

/**
 * The bytes Python's `base64.b64decode` gives for `raw`, or `undefined` where it raises (and
 * Django keeps the raw bytes): characters outside the alphabet are dropped, and what is left must
 * be whole groups of four, `=` only at the end (padding, or ignored after whole groups). `null`
 * for a `=` inside, or more than two at the end: Python 3.11 decodes past them (`YWJj====` to
 * `abc`, `YW==JjZA` to `a`) where a strict decoder refuses, so the value is one no framework
 * agrees on.
 */
function pythonBase64(raw: Uint8Array): Uint8Array | undefined | null {
  const text = new TextDecoder("latin1").decode(raw).replace(/[^A-Za-z0-9+/=]/g, "");
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return null;
  // Python ignores a `=` after a whole group of four, and stops at the one that ends a group
  // (`YWJj=` is `abc`, `YWJ==` is `ab`); a last group of 1, or 2 or 3 left unpadded, raises.
  const data = text.replace(/=+$/, "");
  const rest = data.length % 4;
  const pads = text.length - data.length;
  if (rest === 1 || (rest === 2 && pads < 2) || (rest === 3 && pads < 1)) return undefined;
  return Buffer.from(data, "base64");
}

/**
 * A copy that stands for "other apps read no such field here": a lone surrogate, which no decoded
 * value and no rules-file value is, so it agrees with none.
 */
export const READ_OTHERWISE = "\uD800";

/** UTF-8 that keeps a leading U+FEFF, as Python's "utf-8" codec and PHP do. */
export const UTF8_KEEP_BOM = new TextDecoder("utf-8", { ignoreBOM: true });

/**
 * The text fields of `body`, or `undefined` when it is not a complete, well-formed form of at
 * most {@linkcode MAX_FORM_FIELDS} parts. As in
 * Django, a part is a field exactly when its `Content-Disposition` has no filename, or an empty
 * one (whatever its `Content-Type`), and its bytes are read as UTF-8, a leading BOM kept (a part's
 * own `charset` is ignored there too).
 */
export function multipartFields(
  body: Uint8Array,
  contentType: string,
): Promise<Map<string, string[]> | undefined> {
  const boundary = soleBoundary(contentType);
  if (boundary === undefined || !framedPlainly(body, boundary)) return Promise.resolve(undefined);
  const fields = new Map<string, string[]>();
  let parser: BusboyInstance;
  try {
    // Every part arrives as a stream: busboy's own field/file split and charset decoding are not
    // what the frameworks do.
    parser = Busboy({
      headers: { "content-type": contentType },
      isPartAFile: () => true,
      // The filename as sent: busboy's basename made `..` and `x/` empty, a field to the edge
      // where PHP and Rack read a file.
      preservePath: true,
      limits: { parts: MAX_FORM_FIELDS, files: MAX_FORM_FIELDS },
    });
  } catch {
    return Promise.resolve(undefined); // no boundary, or not multipart at all
  }
  return new Promise((resolve) => {
    let stopped = false;
    const broken = () => {
      stopped = true;
      resolve(undefined);
    };
    parser.on(
      "file",
      (
        name: string,
        stream: BusboyFileStream,
        filename: string | undefined,
        transferEncoding: string,
      ) => {
        // A body cut off inside a part errors this stream; unheard, the error would be uncaught.
        stream.on("error", broken);
        // A part without a name (framedPlainly refuses one) is nobody's field.
        if (filename || name === undefined) return void stream.resume(); // a file, not a field
        const chunks: Uint8Array[] = [];
        stream.on("data", (chunk: Uint8Array) => void chunks.push(chunk));
        stream.on("end", () => {
          const bytes = Buffer.concat(chunks);
          // A leading BOM is part of the value: Django's "utf-8" codec and PHP keep it.
          const values = [UTF8_KEEP_BOM.decode(bytes)];
          // `Content-Transfer-Encoding: base64` (busboy lower-cases it): Django decodes such a
          // field, PHP and Rack do not. Both readings count as copies, so a rule matches only
          // what every framework would read.
          const decoded = transferEncoding === "base64" ? pythonBase64(bytes) : undefined;
          if (decoded === null) values.push(READ_OTHERWISE);
          else if (decoded) {
            const text = UTF8_KEEP_BOM.decode(decoded);
            if (text !== values[0]) values.push(text);
          }
          // Django reads a part with an empty filename as a field, PHP and Rack as no file sent:
          // a copy no other app agrees on, so a rule or region choice reading it fails closed.
          if (filename === "") values.push(READ_OTHERWISE);
          const copies = fields.get(name);
          if (copies) copies.push(...values); // not a copy per copy: 20,000 copies fit in 1 MiB
          else fields.set(name, values);
        });
      },
    );
    parser.on("finish", () => resolve(fields));
    parser.on("error", broken);
    parser.on("partsLimit", broken);
    parser.on("filesLimit", broken);
    // Fed in slices, and no more once it broke or hit the limit: busboy goes on scanning parts
    // past its limit, and 1 MiB of empty parts took it about a second (0.3 s with the limit),
    // however the boundary is spelt (`boundary*=`, spaces: busboy's reading, not ours).
    // The next slice only once busboy took the last: when a large field fills its stream, busboy
    // holds the write back a tick, and slices written meanwhile were queued and parsed all at once.
    const bytes = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
    const feed = (at: number): void => {
      if (stopped) return;
      if (at >= bytes.length) return void parser.end();
      parser.write(bytes.subarray(at, at + SLICE_BYTES), () => feed(at + SLICE_BYTES));
    };
    feed(0);
  });
}

/** The most header lines and bytes a part of a plainly framed form has (see {@linkcode framedPlainly}). */
const MAX_PART_HEADER_LINES = 16;
const MAX_PART_HEADER_BYTES = 8 * 1024;

/** RFC 9110 token characters but `'`, which PHP reads as a quote inside a token too. */
const TOKEN = "[!#$%&*+.^_`|~0-9A-Za-z-]+";
/** A quoted value every reader ends at the same `"`: no backslash (Rack unescapes), no line break. */
const QUOTED = '"[^"\\\\\\r\\n]*"';
/** A token with `'` too, which .NET leaves unquoted (`filename=O'Brien.pdf`). */
const FILENAME_TOKEN = `${TCHAR}+`;
/** RFC 8187's `filename*=UTF-8''a.txt`. */
const EXT_VALUE = "[A-Za-z0-9-]+'[A-Za-z0-9-]*'[!#$&+.^_`|~0-9A-Za-z%-]+";
/**
 * In lower case, as every client writes it: Rack 3.1 reads the keys case-sensitively (`NAME=` is
 * no name to it, `FILENAME=` no file), busboy, PHP and Django in any case. A filename may be a
 * token with `'` (.NET writes `filename=O'Brien.pdf` unquoted): see {@linkcode plainDisposition}.
 */
const PLAIN_DISPOSITION = new RegExp(
  `^[ \\t]*form-data(?:;[ \\t]*(?:name=(?:${TOKEN}|${QUOTED})|filename=(?:${FILENAME_TOKEN}|${QUOTED})|filename\\*=${EXT_VALUE}))+[ \\t]*$`,
);

/**
 * Whether a part's `Content-Disposition` names its field as busboy, PHP and Rack all read it,
 * which a strict grammar ensures where a list of odd shapes kept missing some: `form-data` (PHP
 * and Rack read a name from any type, busboy skips the part), then only `name`, `filename` and
 * `filename*`, each `=` right after its key (PHP's key `filename ` is no filename), each value a
 * token or a quoted string without `\` (Rack unescapes it) and without the text `name=` (Rack's
 * regex finds `; name=` inside quotes, and Rack 2.0's any `name=` after a space); exactly one
 * `name` (`name*=` is no name to PHP) and `filename*` only beside `filename` (PHP knows only that).
 * PHP reads a `'` in a token as a quote that hides what follows: allowed in a filename after the
 * name, where it hides no more than a `filename*`.
 */
function plainDisposition(value: string): boolean {
  if (!PLAIN_DISPOSITION.test(value)) return false;
  for (const [quoted] of value.matchAll(/"[^"]*"/g)) if (/name=/i.test(quoted)) return false;
  const keys = [...value.matchAll(/;[ \t]*(name|filename\*?)=/g)].map((m) => m[1]);
  const count = (key: string) => keys.filter((k) => k === key).length;
  if (/;[ \t]*filename=[^";]*'/.test(value) && keys.indexOf("name") > keys.indexOf("filename")) {
    return false;
  }
  return count("name") === 1 && count("filename") <= 1 &&
    count("filename*") <= count("filename");
}

/** RFC 2046 §5.1.1's boundary characters but space (busboy drops it) and `,` (PHP ends there). */
const BOUNDARY = /^[0-9A-Za-z'()+_\-./:=?]{1,70}$/;

/**
 * The boundary, when every framework reads the same one: the header's parameters are plain
 * ({@linkcode plainParameters}: named once, no space, comma or backslash to read differently), in
 * RFC 2046's alphabet, the first `boundary` text in the header is this parameter's name (PHP
 * takes the first place the text appears, case-sensitive first, `x-boundary=` and values
 * included; `----WebKitFormBoundary…` is no such place, its B is upper case), and the only
 * `boundary=` (Rack's is the last).
 */
function soleBoundary(contentType: string): string | undefined {
  const boundary = plainParameters(contentType)?.get("boundary");
  if (boundary === undefined || !BOUNDARY.test(boundary)) return undefined;
  // Rack takes the last `boundary=` in the header (a greedy regex), inside another parameter's
  // name or quoted value too: `boundary=B; x-boundary=C` frames Rack's parts with C.
  if (contentType.match(/boundary=/gi)!.length > 1) return undefined;
  let at = contentType.indexOf("boundary");
  if (at === -1) at = contentType.toLowerCase().indexOf("boundary");
  const named = /;[ \t]*$/.test(contentType.slice(0, at)) && contentType[at + 8] === "=";
  return named ? boundary : undefined;
}

/**
 * Whether the body's parts are framed so plainly that every framework splits them as busboy does:
 * each delimiter at the start of a line and followed by CRLF (Django splits at `--boundary`
 * anywhere, PHP at a bare LF), nothing but CRLFs after the close delimiter (Django reads a part
 * there), and each part's header lines ended by CRLF, not folded, no header twice (Django keeps
 * the last `Content-Disposition`, busboy the first). Real clients frame so; a body that does not
 * matches no `form` matcher.
 */
export function framedPlainly(body: Uint8Array, boundary: string): boolean {
  const text = new TextDecoder("latin1").decode(body);
  const delimiter = `--${boundary}`;
  for (let at = text.indexOf(delimiter); at !== -1; at = text.indexOf(delimiter, at + 1)) {
    if (at > 0 && !(text[at - 2] === "\r" && text[at - 1] === "\n")) return false;
    const after = at + delimiter.length;
    if (text.startsWith("--", after)) return /^(?:\r\n)*$/.test(text.slice(after + 2));
    if (!text.startsWith("\r\n", after)) return false;
    const headersEnd = text.indexOf("\r\n\r\n", after);
    // busboy drops header lines past 2,000 or 80 KiB where PHP and Rack read on; a real client
    // writes two or three.
    if (headersEnd === -1 || headersEnd - after > MAX_PART_HEADER_BYTES) return false;
    const lines = text.slice(after + 2, headersEnd).split("\r\n");
    if (lines.length > MAX_PART_HEADER_LINES) return false;
    const names = new Set<string>();
    for (const line of lines) {
      if (line === "" && headersEnd === after) break; // a part without headers
      if (/[\r\n]/.test(line) || /^[ \t]/.test(line)) return false;
      const colon = line.indexOf(":");
      if (colon < 1) return false;
      const name = line.slice(0, colon).trim().toLowerCase();
      // Rack names a part by its Content-ID, which busboy and PHP ignore, and finds both that and
      // Content-Disposition anywhere in the part's headers (`X-Note: Content-Disposition: …`).
      const lower = line.toLowerCase();
      if (lower.includes("content-id:") || lower.indexOf("content-disposition:", 1) !== -1) {
        return false;
      }
      if (names.has(name)) return false;
      if (name === "content-disposition" && !plainDisposition(line.slice(colon + 1))) return false;
      names.add(name);
    }
  }
  return false; // no close delimiter: a body cut off
}
