/** @module An HTTP/2 client for tests: node:http2, since `fetch` sends no GET body and no `host` beside `:authority`. */
import http2 from "node:http2";

/** One HTTP/2 (h2c, prior knowledge) request with node:http2; resolves once the session is closed. */
export function h2Request(
  port: number,
  headers: Record<string, string>,
  body?: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on("error", reject);
    const stream = session.request(headers, { endStream: body === undefined });
    let status = 0;
    let text = "";
    stream.on("response", (h) => status = Number(h[":status"]));
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => text += chunk);
    stream.on("end", () => session.close(() => resolve({ status, body: text })));
    stream.on("error", (error) => session.close(() => reject(error)));
    if (body !== undefined) stream.end(body);
  });
}
