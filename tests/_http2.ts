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

/**
 * Sends one HEAD over h2c and waits for its stream to close: its status, and the code it closed
 * with (NGHTTP2_NO_ERROR, 0, when it ended cleanly), or a note after 3 s.
 */
export async function h2Head(
  port: number,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status?: number; closed: number | string }> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on("error", () => {});
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const stream = session.request({ ":method": "HEAD", ":path": path, ...headers }, {
      endStream: true,
    });
    stream.on("error", () => {});
    let status: number | undefined;
    stream.on("response", (h) => status = Number(h[":status"]));
    stream.resume();
    const closed = await Promise.race([
      new Promise<number>((resolve) => stream.on("close", () => resolve(stream.rstCode!))),
      new Promise<string>((resolve) => timer = setTimeout(resolve, 3000, "no close in 3 s")),
    ]);
    return { status, closed };
  } finally {
    clearTimeout(timer);
    session.destroy();
  }
}

/** How an HTTP/2 client leaves mid-upload. */
export type H2Leave = "RST_STREAM" | "connection closed";

/**
 * Starts a POST over h2c, sends `sent` bytes of its body, and leaves `leave`'s way 150 ms later
 * without ending the body; resolves once it has left. `Deno.serve` ends such a body as if it
 * were whole (hyperium/hyper#3681).
 */
export async function h2AbandonUpload(
  url: string,
  leave: H2Leave,
  headers: Record<string, string>,
  sent = 4000,
): Promise<void> {
  const session = http2.connect(url);
  session.on("error", () => {});
  try {
    const stream = session.request({ ":method": "POST", ...headers }, { endStream: false });
    stream.on("error", () => {});
    stream.write("x".repeat(sent));
    await new Promise((resolve) => setTimeout(resolve, 150));
    if (leave === "RST_STREAM") stream.close(http2.constants.NGHTTP2_CANCEL);
    else session.destroy();
  } finally {
    session.destroy();
  }
}
