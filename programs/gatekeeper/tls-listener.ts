import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import type { DistinctHeaders } from "./credentials";
import type { Logger } from "./log";
import { errorText } from "./log";
import { AUTH_PATH } from "./protocol";
import type { Answer, AuthRequest } from "./answer";
import { notFound, scopeParameter, splitTarget } from "./answer";

/**
 * The port Traefik's forwardAuth asks: HTTP/2 over TLS, /auth only (health and metrics stay on
 * the plain port).
 *
 * Why TLS on a private network: forwardAuth's client is Go's default transport (Traefik v3.7.13,
 * pkg/middlewares/auth/forward.go), which keeps at most two idle HTTP/1.1 connections per address,
 * so under load it opens and closes a connection for nearly every request. Over TLS it negotiates
 * HTTP/2 and sends every request as a stream on one kept-alive connection: on the project's
 * machine Traefik's CPU per forwardAuth fell from about 150 µs to 55 µs and this side's from about
 * 95 µs to 50 µs (docs/gateway-performance.md). The certificate is the deployment's own, and
 * Traefik pins it (forwardAuth `tls.ca`), so the client's key crosses the Docker network encrypted.
 */

export interface TlsSettings {
  readonly port: number;
  /** PEM certificate, whose DNS name is the host in Traefik's forwardAuth address. */
  readonly cert: string;
  /** PEM private key of the certificate. */
  readonly key: string;
}

export interface TlsListenerOptions {
  readonly tls: TlsSettings;
  readonly log: Logger;
  readonly answerAuth: (request: AuthRequest) => Promise<Answer>;
}

/**
 * Streams one session may have open at once: Go's client opens another connection beyond it, so
 * a burst cannot grow one session's memory without bound.
 */
const MAX_CONCURRENT_STREAMS = 1000;
/** TLS problems (a client with the wrong certificate pinned) are logged at most this often. */
const TLS_ERROR_LOG_EVERY_MS = 60_000;

export class TlsListener {
  private readonly server: http2.Http2SecureServer;
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  private listeningPort: number | undefined;
  private lastTlsErrorLogMs = -Infinity;

  constructor(private readonly options: TlsListenerOptions) {
    this.server = http2.createSecureServer({
      cert: options.tls.cert,
      key: options.tls.key,
      minVersion: "TLSv1.3",
      allowHTTP1: false,
      settings: { maxConcurrentStreams: MAX_CONCURRENT_STREAMS },
    });
    this.server.on("session", (session) => {
      this.sessions.add(session);
      session.once("close", () => this.sessions.delete(session));
      // A peer that goes away mid-stream is no reason to crash or to log per request.
      session.on("error", () => undefined);
    });
    this.server.on("tlsClientError", (error) => {
      const nowMs = Date.now();
      if (nowMs - this.lastTlsErrorLogMs < TLS_ERROR_LOG_EVERY_MS) return;
      this.lastTlsErrorLogMs = nowMs;
      options.log.warn("a TLS handshake on the forwardAuth port failed (does Traefik pin this certificate?)", {
        error: errorText(error),
      });
    });
    this.server.on(
      "stream",
      (
        stream: http2.ServerHttp2Stream,
        headers: http2.IncomingHttpHeaders,
        _flags: number,
        rawHeaders: readonly string[],
      ) => this.onStream(stream, headers, rawHeaders),
    );
  }

  get port(): number | undefined {
    return this.listeningPort;
  }

  listen(host: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(this.options.tls.port, host, () => {
        this.server.off("error", reject);
        this.listeningPort = (this.server.address() as AddressInfo).port;
        resolve(this.listeningPort);
      });
    });
  }

  /** Stops accepting, lets streams in flight finish (GOAWAY), resolves when every session is closed. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.server.listening) return resolve();
      this.server.close(() => resolve());
      for (const session of this.sessions) session.close();
    });
  }

  private onStream(
    stream: http2.ServerHttp2Stream,
    headers: http2.IncomingHttpHeaders,
    rawHeaders: readonly string[],
  ): void {
    stream.on("error", () => undefined);
    // forwardAuth sends GET without a body; anything else is read and dropped.
    stream.resume();
    const { pathname, query } = splitTarget(headers[":path"] ?? "/");
    if (pathname !== AUTH_PATH) {
      respond(stream, notFound(pathname));
      return;
    }
    void this.options
      .answerAuth({
        scope: scopeParameter(query),
        headers: distinctHeaders(rawHeaders),
        socketAddress: stream.session?.socket?.remoteAddress,
      })
      .then((answer) => respond(stream, answer));
  }
}

/** Every value of every regular header, by name (HTTP/2 names are lower case), as `req.headersDistinct` gives them. */
export function distinctHeaders(rawHeaders: readonly string[]): DistinctHeaders {
  const headers: Record<string, string[]> = {};
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i];
    if (name.startsWith(":")) continue;
    (headers[name] ??= []).push(rawHeaders[i + 1]);
  }
  return headers;
}

function respond(stream: http2.ServerHttp2Stream, answer: Answer): void {
  // The client may have reset the stream while the decision was being written.
  if (stream.destroyed || stream.closed) return;
  stream.respond({ ":status": answer.status, ...answer.headers }, { endStream: answer.body === undefined });
  if (answer.body !== undefined) stream.end(answer.body);
}
