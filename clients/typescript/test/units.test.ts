// Unit tests without a stack: signatures, the codec's wire format, the failure mapping, one helper per schema.
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { ApplicationFailure, ActivityFailure, RetryState } from "@temporalio/common";
import { WorkflowFailedError } from "@temporalio/client";
import {
  GatewayPayloadCodec,
  IntegrationFailure,
  SignatureError,
  START_HELPERS,
  WORKFLOW_NAMES,
  sign,
  toIntegrationFailure,
  verifyRequest,
  verifySignature,
  workflowIdFor,
} from "../src/index.js";

const here = dirname(fileURLToPath(import.meta.url));
const secret = "whsec_test-secret";
const body = '{"id":"evt_1","type":"whatsapp.message.received","data":{"text":"hi"}}';

test("a signed event verifies; a tampered body, a wrong secret or an old timestamp do not", () => {
  const ts = "1767225600";
  const now = () => 1767225600 + 10;
  const signature = sign(secret, ts, body);
  assert.match(signature, /^v1=[0-9a-f]{64}$/);
  verifySignature(secret, { signature, timestamp: ts }, body, { now });
  verifySignature(secret, { signature, timestamp: ts }, Buffer.from(body), { now });
  const reason = (fn: () => void) => {
    try {
      fn();
    } catch (err) {
      assert.ok(err instanceof SignatureError);
      return err.reason;
    }
    return "accepted";
  };
  assert.equal(reason(() => verifySignature(secret, { signature, timestamp: ts }, body.replace("hi", "ho"), { now })), "bad_signature");
  assert.equal(reason(() => verifySignature("whsec_other", { signature, timestamp: ts }, body, { now })), "bad_signature");
  assert.equal(reason(() => verifySignature(secret, { signature, timestamp: ts }, body, { now: () => 1767225600 + 301 })), "stale_timestamp");
  assert.equal(reason(() => verifySignature(secret, { signature, timestamp: ts }, body, { now: () => 1767225600 - 301 })), "stale_timestamp");
  assert.equal(reason(() => verifySignature(secret, { signature, timestamp: "soon" }, body, { now })), "bad_timestamp");
  assert.equal(reason(() => verifySignature(secret, { signature: undefined, timestamp: ts }, body, { now })), "missing_headers");
  assert.equal(reason(() => verifySignature(secret, { signature: "v1=00", timestamp: ts }, body, { now })), "bad_signature");
  // Node's lower-cased header object and Fetch Headers both work.
  verifyRequest(secret, { "x-osi-signature": signature, "x-osi-timestamp": ts }, body, { now });
  verifyRequest(secret, new Headers({ "X-OSI-Signature": signature, "X-OSI-Timestamp": ts }), body, { now });
});

test("the signature is the one the service computes (activities/admin/alerts.py sign)", () => {
  // activities.admin.alerts.sign("whsec_test-secret", "1767225600", BODY) in Python
  assert.equal(sign(secret, "1767225600", body), "v1=18af2e05a08dc5c37a94e6c43b864c41448b5ee017e7a6edd146b0d0013b1b93");
});

test("the codec posts Temporal's codec JSON with the key and namespace, and decodes the answer", async () => {
  const seen: Array<{ url: string; init: RequestInit }> = [];
  const fakeFetch = (async (url: string, init: RequestInit) => {
    seen.push({ url, init });
    const sent = JSON.parse(String(init.body)) as { payloads: Array<{ metadata: Record<string, string>; data: string }> };
    const answer = sent.payloads.map((p) => ({ metadata: { encoding: Buffer.from("json/plain").toString("base64") }, data: p.data }));
    return new Response(JSON.stringify({ payloads: answer }), { status: 200 });
  }) as unknown as typeof fetch;
  const codec = new GatewayPayloadCodec({ gatewayUrl: "http://gw.test/", apiKey: "k_org", namespace: "prod", fetch: fakeFetch });
  const out = await codec.decode([{ metadata: { encoding: Buffer.from("binary/encrypted") }, data: Buffer.from('{"a":1}') }]);
  assert.equal(seen[0]?.url, "http://gw.test/codec/decode");
  const headers = seen[0]?.init.headers as Record<string, string>;
  assert.equal(headers["Authorization"], "Bearer k_org");
  assert.equal(headers["X-Namespace"], "prod");
  assert.equal(Buffer.from(out[0]?.metadata?.["encoding"] ?? []).toString(), "json/plain");
  assert.equal(Buffer.from(out[0]?.data ?? []).toString(), '{"a":1}');
  const refused = new GatewayPayloadCodec({ gatewayUrl: "http://gw.test", fetch: (async () => new Response('{"error":"unauthorized"}', { status: 401 })) as unknown as typeof fetch });
  await assert.rejects(refused.encode([{ metadata: {}, data: new Uint8Array() }]), /HTTP 401/);
});

test("our failure details become an IntegrationFailure, through an activity failure too", () => {
  const app = ApplicationFailure.create({
    message: "whatsapp: recipient is outside the 24 h window (code window_closed)",
    type: "PermanentError",
    nonRetryable: true,
    details: [{ error_class: "PermanentError", code: "window_closed", provider: "whatsapp", message: "x", retry_after: null }],
  });
  const activity = new ActivityFailure("activity failed", "whatsapp.send_message", "1", RetryState.NON_RETRYABLE_FAILURE, "w", app);
  const wf = new WorkflowFailedError("Workflow execution failed", activity, RetryState.NON_RETRYABLE_FAILURE);
  const failure = toIntegrationFailure(wf);
  assert.ok(failure instanceof IntegrationFailure);
  assert.equal(failure.errorClass, "PermanentError");
  assert.equal(failure.code, "window_closed");
  assert.equal(failure.provider, "whatsapp");
  assert.equal(failure.temporary, false);
  assert.equal(toIntegrationFailure(new Error("plain")), undefined);
  const other = ApplicationFailure.create({ message: "boom", type: "RuntimeError" });
  assert.equal(toIntegrationFailure(new WorkflowFailedError("x", other, RetryState.NON_RETRYABLE_FAILURE)), undefined);
});

test("a deterministic workflow id comes from the idempotency key and the organization, either spelling", () => {
  assert.equal(workflowIdFor("SendSlackMessage", { organization_id: "o1", idempotency_key: "k" }), "SendSlackMessage:o1:k");
  assert.equal(workflowIdFor("SendSlackMessage", { organizationId: "o1", idempotencyKey: "k" }), "SendSlackMessage:o1:k");
  assert.equal(workflowIdFor("SendSlackMessage", { organizationId: "o1" }), undefined);
});

test("one start helper per workflow schema, and generated types for each", () => {
  const schemas = readdirSync(join(here, "..", "..", "..", "..", "docs", "schemas"))
    .filter((f) => f.endsWith(".input.schema.json"))
    .map((f) => f.split(".")[0])
    .sort();
  assert.deepEqual([...WORKFLOW_NAMES].sort(), schemas);
  assert.deepEqual(Object.keys(START_HELPERS).sort(), schemas);
});
