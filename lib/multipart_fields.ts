/**
 * @module Reads the text fields of a `multipart/form-data` body as the application's framework
 * will: `Content-Disposition` parameters parsed per RFC 7578 §4.2 (quoted strings may hold `;`
 * and `name=`, RFC 2231 `name*=`, names in any case). Deno's `Response.formData()` splits the
 * parameters on every `;`, so a quoted `name="x;name=action"` read as the field `action` and a rule
 * could match a field the app never sees (or miss one it does). `@fastify/busboy` is the parser
 * Fastify keeps for Node: MIT, no dependencies.
 */
import { Buffer } from "node:buffer";
import { Busboy, type BusboyInstance } from "@fastify/busboy";

/**
 * The text fields of `body` (file parts are skipped), or `undefined` when it is not a complete,
 * well-formed form. `limit` bounds names and values, which the body limit already bounds: no field
 * is ever truncated into another.
 */
export function multipartFields(
  body: Uint8Array,
  contentType: string,
  limit: number,
): Promise<Map<string, string[]> | undefined> {
  const fields = new Map<string, string[]>();
  let parser: BusboyInstance;
  try {
    parser = Busboy({
      headers: { "content-type": contentType },
      limits: { fieldNameSize: limit, fieldSize: limit },
    });
  } catch {
    return Promise.resolve(undefined); // no boundary, or not multipart at all
  }
  return new Promise((resolve) => {
    parser.on("field", (name: string, value: string) => {
      fields.set(name, [...fields.get(name) ?? [], value]);
    });
    parser.on("file", (_name: string, stream: { resume(): void }) => stream.resume());
    parser.on("finish", () => resolve(fields));
    parser.on("error", () => resolve(undefined));
    parser.end(Buffer.from(body.buffer, body.byteOffset, body.byteLength));
  });
}
