/**
 * @module The bridge to Deno's built-in OpenTelemetry (`OTEL_DENO=true`): Deno traces
 * `Deno.serve` and `fetch` itself; vestibule only adds attributes to the request's span.
 * Deno registers its tracer and context manager with `@opentelemetry/api`; when OpenTelemetry
 * is off the API's no-op context has no span, and every call here returns at once.
 * https://docs.deno.com/runtime/fundamentals/open_telemetry/
 */
import { context, propagation, trace } from "@opentelemetry/api";
import type { RouteLog } from "./route_context.ts";

/**
 * Whether the runtime is tracing this request. Then Deno's `fetch` adds its own `traceparent`
 * to every upstream call, a child of the request's span, which continues the client's trace.
 */
export function runtimeTracing(): boolean {
  return trace.getActiveSpan() !== undefined;
}

/**
 * The `traceparent` naming the active span, for an upstream call Deno does not trace itself (a
 * WebSocket handshake); `undefined` when OpenTelemetry is off. Deno registers the W3C propagator.
 */
export function activeTraceparent(): string | undefined {
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return carrier.traceparent;
}

/** Adds the routing decision to the active `Deno.serve` span, if any. */
export function annotateSpan(requestId: string, route: RouteLog): void {
  const span = trace.getActiveSpan();
  if (!span) return;
  const attributes: Record<string, string> = { "vestibule.request_id": requestId };
  if (route.rule !== undefined) attributes["vestibule.rule"] = route.rule;
  if (route.type !== undefined) attributes["vestibule.type"] = route.type;
  if (route.region !== undefined) attributes["vestibule.region"] = route.region;
  if (route.regionReason !== undefined) attributes["vestibule.region_reason"] = route.regionReason;
  if (route.outcome !== undefined) attributes["vestibule.outcome"] = route.outcome;
  if (route.error !== undefined) attributes["vestibule.error"] = route.error;
  span.setAttributes(attributes);
}
