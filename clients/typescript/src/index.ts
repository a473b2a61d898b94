// OpenSyte's client for the integrations service: types, codec, start helpers, failures, event signatures.
import { Client, Connection } from "@temporalio/client";
import { gatewayDataConverter, type GatewayCodecOptions } from "./codec.js";

export * from "./generated/index.js";
export { CodecError, GatewayPayloadCodec, gatewayDataConverter, type GatewayCodecOptions } from "./codec.js";
export {
  ERROR_CLASSES,
  IntegrationFailure,
  toIntegrationFailure,
  type ErrorClass,
  type FailureDetails,
} from "./errors.js";
export {
  DEFAULT_TOLERANCE_SECONDS,
  SIGNATURE_HEADER,
  SignatureError,
  TIMESTAMP_HEADER,
  sign,
  verifyRequest,
  verifySignature,
  type SignatureFailure,
  type VerifyOptions,
} from "./webhooks.js";
export * from "./workflows.js";

export interface ConnectOptions extends GatewayCodecOptions {
  /** Temporal frontend, e.g. "temporal.internal:7233". */
  address: string;
}

/** A Temporal client whose payloads go through the gateway's codec (one per process; reuse it). */
export async function connectIntegrations(options: ConnectOptions): Promise<Client> {
  const connection = await Connection.connect({ address: options.address });
  return new Client({
    connection,
    namespace: options.namespace ?? "default",
    dataConverter: gatewayDataConverter(options),
  });
}
