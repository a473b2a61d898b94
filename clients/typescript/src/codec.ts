// The gateway's codec endpoint as a Temporal PayloadCodec: payloads are encrypted by the service's Vault
// envelope codec, and only the gateway (with an authorized key) can encrypt or decrypt them.
import type { Payload, PayloadCodec } from "@temporalio/common";

export interface GatewayCodecOptions {
  /** The gateway's base URL, e.g. https://integrations.example.com (the codec lives at /codec/{encode,decode}). */
  gatewayUrl: string;
  /** An organization's admin API key (`osi admin issue-key --org X`) or the operator key; sent as a Bearer token. */
  apiKey?: string;
  /** Temporal namespace, sent as `X-Namespace` (default "default"). */
  namespace?: string;
  /** Milliseconds before a codec call is abandoned (default 10 000). */
  timeoutMs?: number;
  /** Injectable fetch (tests, proxies); defaults to the global one. */
  fetch?: typeof fetch;
}

/** The codec endpoint refused or failed a call (401: the key may not read these payloads). */
export class CodecError extends Error {
  override readonly name = "CodecError";
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

interface JsonPayload {
  metadata?: Record<string, string>;
  data?: string;
}

const toBase64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64");
const fromBase64 = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, "base64"));

function toJson(p: Payload): JsonPayload {
  const metadata: Record<string, string> = {};
  for (const [k, v] of Object.entries(p.metadata ?? {})) if (v) metadata[k] = toBase64(v);
  return { metadata, data: toBase64(p.data ?? new Uint8Array()) };
}

function fromJson(p: JsonPayload): Payload {
  const metadata: Record<string, Uint8Array> = {};
  for (const [k, v] of Object.entries(p.metadata ?? {})) metadata[k] = fromBase64(v);
  return { metadata, data: fromBase64(p.data ?? "") };
}

/** Encodes and decodes through `POST {gateway}/codec/encode|decode` with Temporal's codec JSON body. */
export class GatewayPayloadCodec implements PayloadCodec {
  private readonly url: string;
  private readonly fetchFn: typeof fetch;

  constructor(private readonly options: GatewayCodecOptions) {
    this.url = options.gatewayUrl.replace(/\/+$/, "");
    this.fetchFn = options.fetch ?? fetch;
  }

  encode(payloads: Payload[]): Promise<Payload[]> {
    return this.call("encode", payloads);
  }

  decode(payloads: Payload[]): Promise<Payload[]> {
    return this.call("decode", payloads);
  }

  private async call(op: "encode" | "decode", payloads: Payload[]): Promise<Payload[]> {
    if (payloads.length === 0) return [];
    const headers: Record<string, string> = {
      "Content-Type": "application/json",
      "X-Namespace": this.options.namespace ?? "default",
    };
    if (this.options.apiKey) headers["Authorization"] = `Bearer ${this.options.apiKey}`;
    const res = await this.fetchFn(`${this.url}/codec/${op}`, {
      method: "POST",
      headers,
      body: JSON.stringify({ payloads: payloads.map(toJson) }),
      signal: AbortSignal.timeout(this.options.timeoutMs ?? 10_000),
    });
    const text = await res.text();
    if (!res.ok) {
      throw new CodecError(`codec ${op} failed: HTTP ${res.status} ${text.slice(0, 200)}`, res.status);
    }
    const body = JSON.parse(text) as { payloads?: JsonPayload[] };
    const out = (body.payloads ?? []).map(fromJson);
    if (out.length !== payloads.length) {
      throw new CodecError(`codec ${op} returned ${out.length} payloads for ${payloads.length}`, res.status);
    }
    return out;
  }
}

/** `dataConverter` for `new Client({ connection, dataConverter: gatewayDataConverter({...}) })`. */
export function gatewayDataConverter(options: GatewayCodecOptions): { payloadCodecs: PayloadCodec[] } {
  return { payloadCodecs: [new GatewayPayloadCodec(options)] };
}
