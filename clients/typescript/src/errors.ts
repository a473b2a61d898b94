// Our failure taxonomy as a TypeScript error: `error_class`, `code`, `provider`, `retry_after` travel as the
// first detail of the ApplicationFailure a workflow (or its activity) failed with.
import { ApplicationFailure, TemporalFailure } from "@temporalio/common";

export const ERROR_CLASSES = ["TemporaryError", "PermanentError", "ConfigurationError"] as const;
/** temporary: retried by Temporal until its deadline; permanent: the request is wrong; configuration: an admin must act. */
export type ErrorClass = (typeof ERROR_CLASSES)[number];

/** The details our ApplicationErrors carry (core/errors.py `IntegrationError.to_dict`). */
export interface FailureDetails {
  error_class: ErrorClass;
  code?: string | number | null;
  provider?: string | null;
  message?: string;
  retry_after?: number | null;
  details?: Record<string, unknown>;
  [key: string]: unknown;
}

/** A workflow of ours failed with a classified error. */
export class IntegrationFailure extends Error {
  override readonly name = "IntegrationFailure";
  readonly errorClass: ErrorClass;
  /** e.g. `invalid_input`, `window_closed`, `calendar_conflict`, a provider's code. */
  readonly code: string | number | null;
  readonly provider: string | null;
  /** Seconds the provider asked to wait (temporary errors). */
  readonly retryAfter: number | null;
  /** Everything the failure carried, as sent (snake_case). */
  readonly details: FailureDetails;

  constructor(details: FailureDetails, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.errorClass = details.error_class;
    this.code = details.code ?? null;
    this.provider = details.provider ?? null;
    this.retryAfter = details.retry_after ?? null;
    this.details = details;
  }

  get temporary(): boolean {
    return this.errorClass === "TemporaryError";
  }

  /** `invalid_input`: the fields pydantic refused, each `{field, type, message}`. */
  get invalidFields(): Array<{ field: string; type: string; message: string }> {
    const errors = (this.details.details as { errors?: unknown } | undefined)?.errors;
    return Array.isArray(errors) ? (errors as Array<{ field: string; type: string; message: string }>) : [];
  }
}

function isErrorClass(value: unknown): value is ErrorClass {
  return typeof value === "string" && (ERROR_CLASSES as readonly string[]).includes(value);
}

/** The first classified ApplicationFailure in the cause chain (workflow → activity/child → application), if any. */
export function toIntegrationFailure(err: unknown): IntegrationFailure | undefined {
  let cur: unknown = err;
  for (let depth = 0; cur instanceof Error && depth < 20; depth++) {
    if (cur instanceof ApplicationFailure && isErrorClass(cur.type)) {
      const first = cur.details?.[0];
      const details: FailureDetails =
        first && typeof first === "object" && isErrorClass((first as FailureDetails).error_class)
          ? (first as FailureDetails)
          : { error_class: cur.type, message: cur.message };
      return new IntegrationFailure(details, cur.message, { cause: err });
    }
    cur = cur instanceof TemporalFailure || cur instanceof Error ? cur.cause : undefined;
  }
  return undefined;
}
