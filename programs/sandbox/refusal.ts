/** A request the API answers with an error: HTTP status, OpenAI-style code, a message naming what to change. */
export class ApiRefusal extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = "ApiRefusal";
  }

  /** OpenAI's error type for the status: client mistakes are invalid_request_error, the rest server_error or requests. */
  get type(): string {
    return this.status === 429 ? "requests" : this.status < 500 ? "invalid_request_error" : "server_error";
  }
}
