// Signed events from the service (and alert webhooks): `X-OSI-Signature: v1=<hex HMAC-SHA256(secret,
// timestamp + "." + body)>`, `X-OSI-Timestamp` in Unix seconds, rejected outside a replay window.
import { createHmac, timingSafeEqual } from "node:crypto";

export const SIGNATURE_HEADER = "x-osi-signature";
export const TIMESTAMP_HEADER = "x-osi-timestamp";
export const DEFAULT_TOLERANCE_SECONDS = 300;

export type SignatureFailure = "missing_headers" | "bad_timestamp" | "stale_timestamp" | "bad_signature";

export class SignatureError extends Error {
  override readonly name = "SignatureError";
  constructor(readonly reason: SignatureFailure) {
    super(`event signature rejected: ${reason}`);
  }
}

export interface VerifyOptions {
  /** Seconds a timestamp may differ from now, either way (default 300). */
  toleranceSeconds?: number;
  /** Current time in Unix seconds (tests). */
  now?: () => number;
}

/** `v1=<hex>` for a body: what the service sends (and what a test sender needs). */
export function sign(secret: string, timestamp: string, body: string | Uint8Array): string {
  const mac = createHmac("sha256", secret);
  mac.update(`${timestamp}.`);
  mac.update(body);
  return `v1=${mac.digest("hex")}`;
}

/**
 * Check a delivery on its RAW body (before JSON.parse: re-serializing changes the bytes). Throws
 * SignatureError; returns nothing when the signature is valid and fresh.
 */
export function verifySignature(
  secret: string,
  headers: { signature: string | null | undefined; timestamp: string | null | undefined },
  body: string | Uint8Array,
  options: VerifyOptions = {},
): void {
  const { signature, timestamp } = headers;
  if (!signature || !timestamp) throw new SignatureError("missing_headers");
  if (!/^\d{1,12}$/.test(timestamp)) throw new SignatureError("bad_timestamp");
  const now = options.now ? options.now() : Date.now() / 1000;
  const tolerance = options.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS;
  if (Math.abs(now - Number(timestamp)) > tolerance) throw new SignatureError("stale_timestamp");
  const expected = Buffer.from(sign(secret, timestamp, body));
  const given = Buffer.from(signature);
  // Several `v1=` values may be sent while a secret rotates.
  const candidates = signature.split(",").map((s) => Buffer.from(s.trim()));
  const ok = [given, ...candidates].some((c) => c.length === expected.length && timingSafeEqual(c, expected));
  if (!ok) throw new SignatureError("bad_signature");
}

/** The same from a request's headers (a Fetch `Headers`, Node's lower-cased header object, or a plain record). */
export function verifyRequest(
  secret: string,
  headers: Headers | Record<string, string | string[] | undefined>,
  body: string | Uint8Array,
  options: VerifyOptions = {},
): void {
  const get = (name: string): string | undefined => {
    if (typeof (headers as Headers).get === "function") return (headers as Headers).get(name) ?? undefined;
    const record = headers as Record<string, string | string[] | undefined>;
    const key = Object.keys(record).find((k) => k.toLowerCase() === name);
    const value = key === undefined ? undefined : record[key];
    return Array.isArray(value) ? value[0] : value;
  };
  verifySignature(secret, { signature: get(SIGNATURE_HEADER), timestamp: get(TIMESTAMP_HEADER) }, body, options);
}
