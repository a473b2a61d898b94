// Against the suite's stack (tests/test_typescript_client.py sets the environment): every workflow started
// through this package with plain JSON, payload encryption on, every result read, failures typed.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { Client, Connection } from "@temporalio/client";
import {
  CodecError,
  IntegrationFailure,
  WORKFLOW_NAMES,
  bulkCreateCalendarEvents,
  bulkSendWhatsAppTemplate,
  cancelCalendarEvent,
  connectIntegrations,
  connectionHealthSweep,
  createCalendarEvent,
  scheduleMeeting,
  sendSlackMessage,
  sendWhatsAppMessage,
  slackApproval,
  slackStatusCommand,
  updateCalendarEvent,
  whatsAppConversation,
  type CreateCalendarEventInput,
  type SendWhatsAppMessageInput,
  type WorkflowName,
} from "../src/index.js";

interface ContractOrg {
  organization_id: string;
  whatsapp_phone_number_id: string;
  whatsapp_customers: string[];
  slack_team_id: string;
  slack_channel: string;
  slack_user: string;
  google_email: string;
  outlook_email: string;
  guest_email: string;
}

const env = process.env;
const configured = Boolean(env.OSI_TEMPORAL_ADDRESS && env.OSI_GATEWAY_URL && env.OSI_CONTRACT_ORG);
const skip = configured ? false : "no stack (run through tests/test_typescript_client.py)";
if (!configured && env.OSI_REQUIRE_STACK) throw new Error("OSI_REQUIRE_STACK is set but the stack is not configured");

test("every workflow through the TypeScript package, encryption on", { skip }, async (t) => {
  const org = JSON.parse(readFileSync(env.OSI_CONTRACT_ORG ?? "", "utf8")) as ContractOrg;
  const taskQueue = env.OSI_TASK_QUEUE ?? "integrations";
  const namespace = env.OSI_TEMPORAL_NAMESPACE ?? "default";
  const client = await connectIntegrations({
    address: env.OSI_TEMPORAL_ADDRESS ?? "",
    namespace,
    gatewayUrl: env.OSI_GATEWAY_URL ?? "",
    apiKey: env.OSI_CODEC_KEY || undefined,
  });
  const opts = { taskQueue };
  const ran = new Set<WorkflowName>();
  const orgId = org.organization_id;
  const run = `${Date.now()}`;

  await t.test("SendWhatsAppMessage: an OpenSyte WhatsAppAction row as it is (camelCase, row metadata)", async () => {
    const row: SendWhatsAppMessageInput = {
      id: "ckwaaction0001", actionId: "cknode0001", integrationId: "ckintegration01", createdAt: new Date().toISOString(),
      organizationId: orgId, toNumbers: ["{customer.phone}"], messageType: "TEMPLATE", templateName: "order_update",
      templateLanguage: "en_US", templateParams: ["{{customer.name}}", "{ORDER}", "Friday"],
      variables: { customer: { name: "Sheena", phone: org.whatsapp_customers[0] }, ORDER: "SO-1042" },
    };
    const res = await (await sendWhatsAppMessage(client, row, opts)).result();
    assert.equal(res.sent, 1);
    assert.equal(res.results[0]?.status, "accepted");
    assert.match(res.results[0]?.message_id ?? "", /^wamid\./);
    ran.add("SendWhatsAppMessage");
  });

  await t.test("BulkSendWhatsAppTemplate", async () => {
    const res = await (await bulkSendWhatsAppTemplate(client, {
      organization_id: orgId, template_name: "greeting",
      recipients: org.whatsapp_customers.map((to, i) => ({ to, body: [`Customer ${i}`, `C${i}`] })),
    }, opts)).result();
    assert.equal(res.state, "completed");
    assert.equal(res.sent, org.whatsapp_customers.length);
    ran.add("BulkSendWhatsAppTemplate");
  });

  await t.test("WhatsAppConversation ends idle", async () => {
    const res = await (await whatsAppConversation(client, {
      organizationId: orgId, phoneNumberId: org.whatsapp_phone_number_id,
      waId: (org.whatsapp_customers[2] ?? "").replace("+", ""), idleTimeoutSeconds: 1,
    }, opts)).result();
    assert.equal(res.reason, "idle");
    ran.add("WhatsAppConversation");
  });

  await t.test("SendSlackMessage: snake_case result", async () => {
    const res = await (await sendSlackMessage(client, {
      organizationId: orgId, channel: org.slack_channel, message: "Invoice {n} paid", variables: { n: "INV-7" },
    }, opts)).result();
    assert.equal(res.delivered, true);
    assert.equal(res.route, "slack");
    // snake_case keys only; fields that are null by default and null now are left out (notification_id here).
    assert.deepEqual(Object.keys(res).sort(), ["attempts", "channel", "delivered", "fallback", "outcome", "route", "ts",
      "whatsapp_message_ids"]);
    ran.add("SendSlackMessage");
  });

  await t.test("SlackApproval times out", async () => {
    const res = await (await slackApproval(client, {
      organization_id: orgId, channel: org.slack_channel, title: "Approve invoice INV-7?", approvers: [org.slack_user],
      timeout_seconds: 1,
    }, opts)).result();
    assert.equal(res.decision, "timed_out");
    assert.equal(res.channel, org.slack_channel);
    ran.add("SlackApproval");
  });

  await t.test("SlackStatusCommand", async () => {
    const res = await (await slackStatusCommand(client, {
      team_id: org.slack_team_id, user_id: org.slack_user, command: "/opensyte", text: "status",
    }, opts)).result();
    assert.ok(res.text.length > 0);
    ran.add("SlackStatusCommand");
  });

  await t.test("CreateCalendarEvent → UpdateCalendarEvent → CancelCalendarEvent with the created event's id", async () => {
    const row: CreateCalendarEventInput = {
      id: "ckcalaction01", actionId: "cknode0002", createdAt: new Date().toISOString(), updatedAt: null,
      organizationId: orgId, integrationType: "GOOGLE_CALENDAR", title: "Onboarding {{employee.name}}",
      startTime: "2031-03-04T10:00:00", endTime: "2031-03-04T10:30:00", timezone: "Europe/Berlin",
      attendees: [org.guest_email, { email: "pat@partner.org", optional: true }], reminders: [15],
      variables: { employee: { name: "Ann" } }, idempotencyKey: `onboarding-${run}`,
    };
    const created = await createCalendarEvent(client, row, opts);
    assert.equal(created.workflowId, `CreateCalendarEvent:${orgId}:onboarding-${run}`);
    const res = await created.result();
    const eventId = res.event.id;
    assert.ok(eventId);
    assert.equal(res.event.title, "Onboarding Ann");
    assert.deepEqual(res.event.reminders.overrides.map((r) => r.minutes), [15]);
    // The same idempotency key: the same execution, the same event.
    const again = await createCalendarEvent(client, row, opts);
    assert.equal(again.started, false);
    assert.equal((await again.result()).event.id, eventId);

    const updated = await (await updateCalendarEvent(client, {
      organization_id: orgId, integration_type: "GOOGLE_CALENDAR", event_id: eventId,
      changes: { location: "Room 4.2", start_time: "2031-03-04T11:00:00", end_time: "2031-03-04T11:30:00" },
    }, opts)).result();
    assert.equal(updated.event.location, "Room 4.2");
    assert.equal(updated.event.id, eventId);

    const cancelled = await (await cancelCalendarEvent(client, {
      organizationId: orgId, integrationType: "GOOGLE_CALENDAR", eventId,
    }, opts)).result();
    assert.equal(cancelled.event_id, eventId);
    assert.equal(cancelled.deleted, true);
    ran.add("CreateCalendarEvent").add("UpdateCalendarEvent").add("CancelCalendarEvent");
  });

  await t.test("ScheduleMeeting", async () => {
    const res = await (await scheduleMeeting(client, {
      organization_id: orgId, integration_type: "GOOGLE_CALENDAR", title: "Quarterly planning",
      organizer: org.google_email, timezone: "Europe/Berlin", duration_minutes: 30,
      window_start: "2031-03-05T00:00:00", window_end: "2031-03-07T00:00:00", attendees: [org.guest_email],
    }, opts)).result();
    assert.ok(res.event.id);
    assert.ok(res.slot.start < res.slot.end);
    ran.add("ScheduleMeeting");
  });

  await t.test("BulkCreateCalendarEvents on Outlook", async () => {
    const res = await (await bulkCreateCalendarEvents(client, {
      organizationId: orgId, integrationType: "OUTLOOK_CALENDAR", chunkSize: 2,
      events: [1, 2, 3].map((i) => ({ title: `Training ${i}`, startTime: `2031-03-1${i}T09:00:00`,
        endTime: `2031-03-1${i}T10:00:00`, timezone: "America/New_York" })),
    }, opts)).result();
    assert.equal(res.provider, "outlook");
    assert.equal(res.created, 3);
    assert.equal(res.results.length, 3);
    ran.add("BulkCreateCalendarEvents");
  });

  await t.test("ConnectionHealthSweep", async () => {
    const sweep = await (await connectionHealthSweep(client, { organization_id: orgId, run_connection_tests: true }, opts)).result();
    assert.ok(sweep.checked >= 4, `checked ${sweep.checked}`);
    ran.add("ConnectionHealthSweep");
  });

  await t.test("a bad input fails as IntegrationFailure invalid_input naming the field", async () => {
    const started = await sendSlackMessage(client, { organizationId: orgId, channel: "general", message: "x" }, opts);
    const err = await started.result().then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof IntegrationFailure, `got ${String(err)}`);
    assert.equal(err.errorClass, "PermanentError");
    assert.equal(err.code, "invalid_input");
    assert.match(err.message, /'general' is not a Slack conversation ID/);
    // Unknown fields are refused by name; OpenSyte's row columns are not.
    const unknown = await sendWhatsAppMessage(client, { organizationId: orgId, to: "+16505551234", text: "hi",
      colour: "blue" } as unknown as SendWhatsAppMessageInput, opts);
    const err2 = await unknown.result().then(() => undefined, (e: unknown) => e);
    assert.ok(err2 instanceof IntegrationFailure);
    assert.deepEqual(err2.invalidFields.map((f) => f.field), ["colour"]);
  });

  await t.test("payloads are encrypted in history, and unreadable without the codec", async () => {
    const plain = new Client({ connection: await Connection.connect({ address: env.OSI_TEMPORAL_ADDRESS ?? "" }), namespace });
    const started = await sendSlackMessage(client, { organization_id: orgId, channel: org.slack_channel, message: "enc" }, opts);
    await started.result();
    const history = await plain.workflow.getHandle(started.workflowId).fetchHistory();
    const completed = history.events?.find((e) => e.workflowExecutionCompletedEventAttributes);
    const payload = completed?.workflowExecutionCompletedEventAttributes?.result?.payloads?.[0];
    assert.equal(Buffer.from(payload?.metadata?.["encoding"] ?? []).toString(), "binary/encrypted");
    if (env.OSI_CODEC_KEY) {
      const keyless = await connectIntegrations({ address: env.OSI_TEMPORAL_ADDRESS ?? "", namespace,
        gatewayUrl: env.OSI_GATEWAY_URL ?? "" });
      await assert.rejects(keyless.workflow.getHandle(started.workflowId).result(), (e: unknown) => {
        const chain = [e, (e as { cause?: unknown }).cause];
        return chain.some((c) => c instanceof CodecError && c.status === 401);
      });
    }
  });

  assert.deepEqual([...ran].sort(), [...WORKFLOW_NAMES].sort(), "every workflow in docs/schemas ran");
});
