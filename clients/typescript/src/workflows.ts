// Typed start helpers, one per workflow: task queue `integrations` (overridable), a deterministic workflow id
// from the idempotency key, results typed from docs/schemas/, failures as IntegrationFailure.
import { randomUUID } from "node:crypto";
import type { Client, WorkflowHandle, WorkflowStartOptions } from "@temporalio/client";
import { WorkflowExecutionAlreadyStartedError } from "@temporalio/common";
import { toIntegrationFailure } from "./errors.js";
import type * as T from "./generated/index.js";

export const DEFAULT_TASK_QUEUE = "integrations";

/** Temporal's start options, with our defaults for the task queue and the workflow id. */
export type StartOptions = Partial<Omit<WorkflowStartOptions, "args">>;

/** A started (or, for a repeated idempotency key, an already existing) execution of one of our workflows. */
export class IntegrationRun<R> {
  constructor(
    readonly handle: WorkflowHandle,
    /** false when an execution with the same idempotency key existed and is reused. */
    readonly started: boolean,
  ) {}

  get workflowId(): string {
    return this.handle.workflowId;
  }

  /** The result, typed; a classified failure is thrown as IntegrationFailure (others as Temporal's errors). */
  async result(): Promise<R> {
    try {
      return (await this.handle.result()) as R;
    } catch (err) {
      throw toIntegrationFailure(err) ?? err;
    }
  }
}

function field(input: object, snake: string, camel: string): string | undefined {
  const record = input as Record<string, unknown>;
  const value = record[snake] ?? record[camel];
  return typeof value === "string" && value !== "" ? value : undefined;
}

/**
 * `{workflow}:{organization}:{idempotency key}`: the same key starts one execution and later starts return
 * it (running or closed). Without a key, a random id. The organization keeps tenants apart.
 */
export function workflowIdFor(workflow: string, input: object): string | undefined {
  const key = field(input, "idempotency_key", "idempotencyKey");
  const org = field(input, "organization_id", "organizationId") ?? "-";
  return key === undefined ? undefined : `${workflow}:${org}:${key}`;
}

/** Start any of our workflows by name with plain JSON (the typed helpers below call this). */
export async function startIntegrationWorkflow<I extends object, R>(
  client: Client,
  workflow: T.WorkflowName,
  input: I,
  options: StartOptions = {},
  defaultId?: string,
): Promise<IntegrationRun<R>> {
  const derived = workflowIdFor(workflow, input) ?? defaultId;
  const workflowId = options.workflowId ?? derived ?? `${workflow}:${randomUUID()}`;
  const deterministic = options.workflowId === undefined && derived !== undefined;
  const startOptions: WorkflowStartOptions = {
    ...options,
    taskQueue: options.taskQueue ?? DEFAULT_TASK_QUEUE,
    workflowId,
    args: [input],
    ...(deterministic
      ? {
          workflowIdConflictPolicy: options.workflowIdConflictPolicy ?? "USE_EXISTING",
          workflowIdReusePolicy: options.workflowIdReusePolicy ?? "REJECT_DUPLICATE",
        }
      : {}),
  };
  try {
    return new IntegrationRun<R>(await client.workflow.start(workflow, startOptions), true);
  } catch (err) {
    if (deterministic && err instanceof WorkflowExecutionAlreadyStartedError) {
      return new IntegrationRun<R>(client.workflow.getHandle(workflowId), false);
    }
    throw toIntegrationFailure(err) ?? err;
  }
}

type Start<I, R> = (client: Client, input: I, options?: StartOptions) => Promise<IntegrationRun<R>>;
const helper =
  <I extends object, R>(workflow: T.WorkflowName, defaultId?: (input: I) => string | undefined): Start<I, R> =>
  (client, input, options) =>
    startIntegrationWorkflow<I, R>(client, workflow, input, options, defaultId?.(input));

export const sendWhatsAppMessage = helper<T.SendWhatsAppMessageInput, T.SendWhatsAppMessageResult>(
  "SendWhatsAppMessage",
);
export const bulkSendWhatsAppTemplate = helper<T.BulkSendWhatsAppTemplateInput, T.BulkSendWhatsAppTemplateResult>(
  "BulkSendWhatsAppTemplate",
);
/** One conversation per (organization, business number, customer): the id the gateway's webhooks use. */
export const whatsAppConversation = helper<T.WhatsAppConversationInput, T.WhatsAppConversationResult>(
  "WhatsAppConversation",
  (input) => {
    const org = field(input, "organization_id", "organizationId");
    const number = field(input, "phone_number_id", "phoneNumberId");
    const customer = field(input, "wa_id", "waId");
    return org && number && customer ? `whatsapp-conversation:${org}:${number}:${customer}` : undefined;
  },
);
export const sendSlackMessage = helper<T.SendSlackMessageInput, T.SendSlackMessageResult>("SendSlackMessage");
export const slackApproval = helper<T.SlackApprovalInput, T.SlackApprovalResult>("SlackApproval");
export const slackStatusCommand = helper<T.SlackStatusCommandInput, T.SlackStatusCommandResult>("SlackStatusCommand");
export const createCalendarEvent = helper<T.CreateCalendarEventInput, T.CreateCalendarEventResult>(
  "CreateCalendarEvent",
);
export const updateCalendarEvent = helper<T.UpdateCalendarEventInput, T.UpdateCalendarEventResult>(
  "UpdateCalendarEvent",
);
export const cancelCalendarEvent = helper<T.CancelCalendarEventInput, T.CancelCalendarEventResult>(
  "CancelCalendarEvent",
);
export const scheduleMeeting = helper<T.ScheduleMeetingInput, T.ScheduleMeetingResult>("ScheduleMeeting");
export const bulkCreateCalendarEvents = helper<T.BulkCreateCalendarEventsInput, T.BulkCreateCalendarEventsResult>(
  "BulkCreateCalendarEvents",
);
export const connectionHealthSweep = helper<T.ConnectionHealthSweepInput, T.ConnectionHealthSweepResult>(
  "ConnectionHealthSweep",
);

/** Every helper by workflow name (a test checks there is one per schema). */
export const START_HELPERS: Record<T.WorkflowName, Start<never, unknown>> = {
  SendWhatsAppMessage: sendWhatsAppMessage,
  BulkSendWhatsAppTemplate: bulkSendWhatsAppTemplate,
  WhatsAppConversation: whatsAppConversation,
  SendSlackMessage: sendSlackMessage,
  SlackApproval: slackApproval,
  SlackStatusCommand: slackStatusCommand,
  CreateCalendarEvent: createCalendarEvent,
  UpdateCalendarEvent: updateCalendarEvent,
  CancelCalendarEvent: cancelCalendarEvent,
  ScheduleMeeting: scheduleMeeting,
  BulkCreateCalendarEvents: bulkCreateCalendarEvents,
  ConnectionHealthSweep: connectionHealthSweep,
};
