import { execFile, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { connect } from "node:net";
import * as path from "node:path";
import { promisify } from "node:util";
import OpenAI, { toFile } from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backendsDrainScript, backendsReadyScript, type GpuBackendAddress } from "../services/gateway";
import { TRAEFIK_IMAGE } from "../services/images";
import { AUDIO_BODY_BYTES, DOCUMENT_BODY_BYTES } from "../services/routes";
import { builtTraefikVersion, traefikBinaryPath } from "../tools/traefik";
import { GatewayRig, RIG_BACKEND_KEY, rigMissing, type RigResponse } from "./helpers/gateway-rig";
import { sleep, waitFor } from "./helpers/processes";

/**
 * The gateway run for real: Traefik built at the pinned image's version with the plan's files,
 * the bundled gatekeeper, nginx with the rendered errors server, PostgreSQL for the audit log,
 * and labelled stand-ins in place of the model servers (test/helpers/gateway-rig.ts). Clients are
 * the official `openai` package and curl.
 */

const execFileAsync = promisify(execFile);
const missing = rigMissing();
if (missing) console.warn(`real-gateway tests skipped: ${missing}`);

// In CI a missing program is a failure: the suite would otherwise silently lose its gateway checks.
it.runIf(Boolean(missing) && process.env.CI === "true")(
  "Traefik, nginx and PostgreSQL are installed (required in CI)",
  () => {
    expect.fail(missing);
  },
);

it.runIf(builtTraefikVersion() !== undefined || process.env.CI === "true")(
  "the Traefik binary is the pinned image's version",
  () => {
    // `traefik version` of the binary the rig runs, against services/images.ts.
    expect(builtTraefikVersion(traefikBinaryPath())).toBe(TRAEFIK_IMAGE.tag);
  },
);

const KEYS = {
  alice: { scopes: ["llm", "stt", "tts", "ocr"], ratePerMinute: 100_000, burst: 1000 },
  sttOnly: { scopes: ["stt"] },
  revoked: { scopes: ["llm"], revoked: true },
  admin: { scopes: ["admin"] },
  // One token a minute after the burst: a 429 is deterministic, however slow the machine.
  limitedA: { scopes: ["llm"], ratePerMinute: 1, burst: 10 },
  limitedB: { scopes: ["llm"], ratePerMinute: 1, burst: 10 },
  limitedC: { scopes: ["llm"], ratePerMinute: 1, burst: 10 },
  loop: { scopes: ["llm", "ocr"], ratePerMinute: 1_000_000, burst: 100_000 },
  single: { scopes: ["llm"], ratePerMinute: 1, burst: 1 },
} as const;

describe.skipIf(Boolean(missing))(
  "the gateway, run for real (real Traefik, gatekeeper, nginx, PostgreSQL; stand-in model servers)",
  () => {
    let rig: GatewayRig;
    /** Every response a client got, to check that no client key ever comes back. */
    const responses: RigResponse[] = [];
    const call = async (options: Parameters<GatewayRig["request"]>[0]): Promise<RigResponse> => {
      const r = await rig.request(options);
      responses.push(r);
      return r;
    };
    const bearer = (name: keyof typeof KEYS) => ({ authorization: `Bearer ${rig.keys[name].key}` });
    const json = { "content-type": "application/json" };
    const chatBody = (extra: Record<string, unknown> = {}) =>
      JSON.stringify({ model: "coder", messages: [{ role: "user", content: "hi" }], ...extra });
    const sdk = (name: keyof typeof KEYS) =>
      new OpenAI({ apiKey: rig.keys[name].key, baseURL: `${rig.baseUrl}/v1`, maxRetries: 0, timeout: 120_000 });
    const expectOpenAiError = (r: RigResponse, status: number, code: string) => {
      expect(r.status, r.text).toBe(status);
      expect(r.headers["content-type"]).toMatch(/^application\/json/);
      expect(r.json?.error?.code, r.text).toBe(code);
      expect(typeof r.json.error.message).toBe("string");
      expect(typeof r.json.error.type).toBe("string");
    };

    beforeAll(async () => {
      rig = await GatewayRig.start({ keys: KEYS });
    }, 120_000);

    afterAll(async () => {
      await rig?.stop();
    });

    describe("keys and scopes", () => {
      it("no key → 401, wrong scope → 403, revoked → 401, each the gatekeeper's own JSON", async () => {
        expectOpenAiError(await call({ path: "/v1/models" }), 401, "missing_api_key");
        expectOpenAiError(
          await call({ path: "/v1/chat/completions", body: chatBody(), headers: { ...json, ...bearer("sttOnly") } }),
          403,
          "insufficient_scope",
        );
        expectOpenAiError(await call({ path: "/v1/models", headers: bearer("revoked") }), 401, "invalid_api_key");
        const unknown = await call({
          path: "/v1/models",
          headers: { authorization: "Bearer ihk_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG" },
        });
        expectOpenAiError(unknown, 401, "invalid_api_key");
        // The gatekeeper's body, untouched by any errors middleware.
        expect(unknown.json.error.message).toBe("Incorrect API key provided.");
        expect(unknown.headers["www-authenticate"]).toContain("Bearer");
      });

      it("curl without a key gets the same 401 JSON, as a user would see it", async () => {
        const { stdout } = await execFileAsync("curl", [
          "-sS",
          "-w",
          "\n%{http_code} %{content_type}",
          `${rig.baseUrl}/v1/models`,
        ]);
        const [body, status] = stdout.split("\n");
        expect(status).toMatch(/^401 application\/json/);
        expect(JSON.parse(body).error.code).toBe("missing_api_key");
      });

      it("a right key → 200 from the backend, which saw the internal key and never the client's", async () => {
        const before = rig.standIns.fallback!.received.length;
        const models = await sdk("alice").models.list();
        expect(models.data.map((m) => m.id)).toEqual(["coder"]);
        const seen = rig.standIns.fallback!.received.slice(before);
        expect(seen).toHaveLength(1);
        expect(seen[0].headers.authorization).toBe(`Bearer ${RIG_BACKEND_KEY}`);
        expect(seen[0].headers["x-api-key"]).toBe(RIG_BACKEND_KEY);
        expect(seen[0].headers["x-hub-key-id"]).toBe(rig.keys.alice.id);
        expect(JSON.stringify(seen[0].headers)).not.toContain(rig.keys.alice.key);
      });

      it("a key in X-Api-Key works the same, and a client's own X-Request-Id / X-Hub-Key-Id never reach the backend", async () => {
        const before = rig.standIns.fallback!.received.length;
        const r = await call({
          path: "/v1/models",
          headers: { "x-api-key": rig.keys.alice.key, "x-request-id": rig.keys.alice.key, "x-hub-key-id": "k_forged" },
        });
        expect(r.status).toBe(200);
        const [seen] = rig.standIns.fallback!.received.slice(before);
        expect(seen.headers["x-api-key"]).toBe(RIG_BACKEND_KEY);
        expect(seen.headers["x-hub-key-id"]).toBe(rig.keys.alice.id);
        expect(seen.headers["x-request-id"]).toMatch(/^[0-9a-f-]{36}$/);
      });

      it("/admin/metrics only with the admin scope", async () => {
        expectOpenAiError(await call({ path: "/admin/metrics" }), 401, "missing_api_key");
        expectOpenAiError(await call({ path: "/admin/metrics", headers: bearer("alice") }), 403, "insufficient_scope");
        const ok = await call({ path: "/admin/metrics", headers: bearer("admin") });
        expect(ok.status).toBe(200);
        expect(ok.text).toContain("traefik_entrypoint_requests_total");
      });
    });

    describe("the official openai client, end to end", () => {
      it("chat, completions, whisper-1 transcription and mp3 speech", async () => {
        const client = sdk("alice");
        const chat = await client.chat.completions.create({
          model: "coder",
          messages: [{ role: "user", content: "hello" }],
        });
        expect(chat.choices[0].message.content).toBe("answer from llama.cpp");
        const completion = await client.completions.create({ model: "coder", prompt: "def f():" });
        expect(completion.choices[0].text).toBe("answer from llama.cpp");

        const before = rig.standIns.stt!.received.length;
        const transcript = await client.audio.transcriptions.create({
          file: await toFile(Buffer.from("RIFF....WAVEfmt "), "hello.wav"),
          model: "whisper-1",
        });
        expect(transcript.text).toBe("transcribed by speaches");
        // The multipart body reaches speaches as sent: the model field is still whisper-1.
        const [upload] = rig.standIns.stt!.received.slice(before);
        expect(upload.url).toBe("/v1/audio/transcriptions");
        expect(upload.headers["content-type"]).toMatch(/^multipart\/form-data; boundary=/);

        const speech = await client.audio.speech.create({
          model: "tts-1",
          voice: "alloy",
          input: "Hello from the hub.",
          response_format: "mp3",
        });
        expect(speech.headers.get("content-type")).toBe("audio/mpeg");
        const audio = Buffer.from(await speech.arrayBuffer());
        expect(audio.subarray(0, 3).toString("latin1")).toBe("ID3");
      });

      it("a backend's own error body passes untouched (no errors middleware catches it)", async () => {
        const error = await sdk("alice")
          .chat.completions.create({ model: "no-such-model", messages: [{ role: "user", content: "hi" }] })
          .then(
            () => undefined,
            (e: unknown) => e as InstanceType<typeof OpenAI.APIError>,
          );
        expect(error?.status).toBe(404);
        expect(error?.error).toEqual({
          message: "The model `no-such-model` does not exist.",
          type: "NotFoundError",
          param: "model",
          code: 404,
        });
      });
    });

    describe("errors the gateway makes itself: OpenAI JSON, Retry-After where waiting helps", () => {
      it("an unknown path → 404 JSON listing the endpoints", async () => {
        const r = await call({ path: "/v1/images/generations", body: "{}", headers: json });
        expectOpenAiError(r, 404, "not_found");
        expect(r.json.error.message).toContain("/v1/chat/completions");
      });

      it("a backend that is down → 502 JSON with Retry-After; back when it is", async () => {
        await rig.withStandInDown("tts", async () => {
          const r = await call({
            path: "/v1/audio/speech",
            body: JSON.stringify({ model: "tts-1", voice: "alloy", input: "x" }),
            headers: { ...json, ...bearer("alice") },
          });
          expectOpenAiError(r, 502, "backend_unavailable");
          expect(Number(r.headers["retry-after"])).toBeGreaterThan(0);
        });
        const back = await call({
          path: "/v1/audio/speech",
          body: JSON.stringify({ model: "tts-1", voice: "alloy", input: "x", response_format: "wav" }),
          headers: { ...json, ...bearer("alice") },
        });
        expect(back.status).toBe(200);
      });

      it("the gatekeeper down → Traefik's 500 as JSON auth_unavailable (fail closed, nothing reaches a backend), then recovers", async () => {
        await rig.stopGatekeeper();
        try {
          const before = rig.standIns.fallback!.received.length;
          // A forged X-Hub-Key-Id is stripped first, so it cannot turn the door's page into a backend's.
          const r = await call({
            path: "/v1/models",
            headers: { ...bearer("alice"), "x-hub-key-id": rig.keys.alice.id },
          });
          expectOpenAiError(r, 500, "auth_unavailable");
          expect(Number(r.headers["retry-after"])).toBeGreaterThan(0);
          expect(rig.standIns.fallback!.received.length).toBe(before);
          // The admin API asks the same forwardAuth port, and its door says the same.
          expectOpenAiError(await call({ path: "/admin/keys", headers: bearer("admin") }), 500, "auth_unavailable");
        } finally {
          await rig.startGatekeeper();
        }
        expect((await call({ path: "/v1/models", headers: bearer("alice") })).status).toBe(200);
        expect((await call({ path: "/admin/keys", headers: bearer("admin") })).status).toBe(200);
      });

      it("a backend's own 500 → JSON backend_error naming the service (the door tells it from its own by X-Hub-Key-Id); its 503 passes untouched", async () => {
        const failing = (status: number) =>
          call({
            path: "/v1/chat/completions",
            body: chatBody({ fail_status: status }),
            headers: { ...json, ...bearer("alice") },
          });
        const internal = await failing(500);
        expectOpenAiError(internal, 500, "backend_error");
        expect(internal.json.error.message).toContain("coding model");
        expect(internal.headers["retry-after"]).toBeUndefined();
        const unavailable = await failing(503);
        expect(unavailable.status).toBe(503);
        expect(unavailable.json).toEqual({
          error: { message: "stand-in engine failure", type: "InternalServerError", code: 503 },
        });
      });

      it("body limits: the largest allowed upload passes, one byte more → 413 JSON before any of it is sent (curl, as a user would)", async () => {
        const file = path.join(rig.dir, "upload.bin");
        const curlUpload = async (urlPath: string, bytes: number) => {
          writeFileSync(file, Buffer.alloc(bytes, 0x61));
          // curl sends Expect: 100-continue for bodies over 1 MiB anyway; said here so the test does not
          // depend on that default. An oversized body is refused from its Content-Length.
          const { stdout } = await execFileAsync(
            "curl",
            [
              "-sS",
              "-o",
              "-",
              "-w",
              "\n%{http_code} %{size_upload}",
              "-H",
              "Expect: 100-continue",
              "--expect100-timeout",
              "30",
              "-H",
              `Authorization: Bearer ${rig.keys.alice.key}`,
              "-H",
              "Content-Type: application/octet-stream",
              "--data-binary",
              `@${file}`,
              `${rig.baseUrl}${urlPath}`,
            ],
            { maxBuffer: 16 * 1024 * 1024 },
          );
          const cut = stdout.lastIndexOf("\n");
          const [status, uploaded] = stdout
            .slice(cut + 1)
            .split(" ")
            .map(Number);
          return { status, uploaded, body: stdout.slice(0, cut) };
        };
        const stt = rig.standIns.stt!;
        const atLimit = await curlUpload("/v1/audio/transcriptions", AUDIO_BODY_BYTES);
        expect(atLimit.status).toBe(200);
        expect(stt.received.at(-1)!.bodyBytes).toBe(AUDIO_BODY_BYTES);
        const over = await curlUpload("/v1/audio/transcriptions", AUDIO_BODY_BYTES + 1);
        expect(over.status).toBe(413);
        expect(JSON.parse(over.body).error.code).toBe("request_too_large");
        // Nothing sent into a connection the gateway is closing: that is what would reset it.
        expect(over.uploaded).toBe(0);
        expect(stt.received.at(-1)!.bodyBytes).toBe(AUDIO_BODY_BYTES);

        const docs = rig.standIns.docling!;
        expect((await curlUpload("/v1/ocr/convert/file", DOCUMENT_BODY_BYTES)).status).toBe(200);
        expect(docs.received.at(-1)!.bodyBytes).toBe(DOCUMENT_BODY_BYTES);
        const docsOver = await curlUpload("/v1/ocr/convert/file", DOCUMENT_BODY_BYTES + 1);
        expect(docsOver.status).toBe(413);
        expect(docsOver.uploaded).toBe(0);
        expect(JSON.parse(docsOver.body).error.message).toContain(String(DOCUMENT_BODY_BYTES));
      });

      it("an upload that waits for 100 Continue: over the cap the first answer is the 413, never a 100 (the client would start sending and meet a reset); at the cap, 100", async () => {
        /** The first response head the gateway sends to the request's headers alone (no body sent). */
        const firstAnswer = (urlPath: string, bytes: number) =>
          new Promise<string>((resolve, reject) => {
            const socket = connect(rig.entry.web, "127.0.0.1");
            let received = "";
            socket.on("data", (chunk: Buffer) => {
              received += chunk.toString("latin1");
              const end = received.indexOf("\r\n\r\n");
              if (end < 0) return;
              socket.destroy();
              resolve(received.slice(0, end));
            });
            socket.on("error", reject);
            socket.on("close", () => reject(new Error(`closed before a response head: ${JSON.stringify(received)}`)));
            socket.write(
              [
                `POST ${urlPath} HTTP/1.1`,
                "Host: hub",
                `Authorization: Bearer ${rig.keys.alice.key}`,
                "Content-Type: application/octet-stream",
                `Content-Length: ${bytes}`,
                "Expect: 100-continue",
                "",
                "",
              ].join("\r\n"),
            );
          });
        for (const [urlPath, cap] of [
          ["/v1/ocr/convert/file", DOCUMENT_BODY_BYTES],
          ["/v1/audio/transcriptions", AUDIO_BODY_BYTES],
        ] as const) {
          expect(await firstAnswer(urlPath, cap + 1)).toMatch(/^HTTP\/1\.1 413 .*\r\nContent-Type: application\/json/s);
          expect(await firstAnswer(urlPath, cap)).toMatch(/^HTTP\/1\.1 100 Continue$/);
        }
      });

      it("the per-address limit: over its burst → 429 JSON with Retry-After; another address and a key's own budget are untouched", async () => {
        const flooder = "127.0.0.9";
        // 300 a burst and 20/s after: 450 at once from one address cannot all pass.
        // One of them carries a key as its X-Request-Id: refused before the gatekeeper, it must still not reach the log.
        const results = await Promise.all(
          Array.from({ length: 450 }, (_, i) =>
            call({
              path: "/v1/models",
              localAddress: flooder,
              headers: i % 50 === 49 ? { "x-request-id": rig.keys.sttOnly.key } : {},
            }),
          ),
        );
        const limited = results.filter((r) => r.status === 429);
        expect(limited.length).toBeGreaterThan(0);
        expect(results.filter((r) => r.status !== 429 && r.status !== 401)).toEqual([]);
        expectOpenAiError(limited[0], 429, "rate_limit_exceeded");
        expect(limited[0].json.error.message).toContain("client address");
        expect(limited[0].headers["retry-after"]).toBe("1");
        const elsewhere = await call({ path: "/v1/models", headers: bearer("alice"), localAddress: "127.0.0.10" });
        expect(elsewhere.status).toBe(200);
      });
    });

    describe("rate limits per key, whichever header carries it", () => {
      const burst = KEYS.limitedA.burst;

      it("burst + 1 → the gatekeeper's 429 JSON with Retry-After, intact", async () => {
        const from = "127.0.0.11";
        const statuses: number[] = [];
        let last: RigResponse | undefined;
        for (let i = 0; i <= burst; i++) {
          last = await call({ path: "/v1/models", headers: bearer("limitedA"), localAddress: from });
          statuses.push(last.status);
        }
        expect(statuses).toEqual([...Array(burst).fill(200), 429]);
        expectOpenAiError(last!, 429, "rate_limit_exceeded");
        // The gatekeeper's message and its computed wait (1/min refill: about a minute), not a generic page.
        expect(last!.json.error.message).toContain("for this API key");
        expect(Number(last!.headers["retry-after"])).toBeGreaterThan(30);
      });

      it("a key sent as X-Api-Key has its own budget, and keyless traffic from the same address spends none of it", async () => {
        const from = "127.0.0.11";
        // limitedA is spent on this address; keyless requests and another key's requests follow.
        for (let i = 0; i < 40; i++) expect((await call({ path: "/v1/models", localAddress: from })).status).toBe(401);
        const viaHeader: number[] = [];
        for (let i = 0; i <= burst; i++)
          viaHeader.push(
            (await call({ path: "/v1/models", headers: { "x-api-key": rig.keys.limitedB.key }, localAddress: from }))
              .status,
          );
        expect(viaHeader).toEqual([...Array(burst).fill(200), 429]);
        // A third key, after 40 keyless requests and two spent keys: its whole burst is there.
        const third: number[] = [];
        for (let i = 0; i <= burst; i++)
          third.push((await call({ path: "/v1/models", headers: bearer("limitedC"), localAddress: from })).status);
        expect(third).toEqual([...Array(burst).fill(200), 429]);
      });
    });

    describe("streaming", () => {
      it("the first SSE chunk reaches the client before the backend has finished; the response is not buffered", async () => {
        rig.standIns.fallback!.setStream(3, 1500);
        try {
          const started = Date.now();
          const stream = await sdk("alice").chat.completions.create({
            model: "coder",
            messages: [{ role: "user", content: "hi" }],
            stream: true,
          });
          const arrivals: number[] = [];
          const sent: number[] = [];
          for await (const chunk of stream) {
            arrivals.push(Date.now() - started);
            sent.push((chunk as unknown as { sent_at_ms: number }).sent_at_ms);
          }
          // 3 chunks 1.5 s apart, then the final one: the first arrives well before the last is sent.
          expect(arrivals.length).toBe(4);
          expect(arrivals[0]).toBeLessThan(1000);
          expect(arrivals.at(-1)! - arrivals[0]).toBeGreaterThan(2500);
          expect(started + arrivals[0]).toBeLessThan(sent.at(-1)!);
        } finally {
          rig.standIns.fallback!.setStream(3, 20);
        }
      });

      it("a stream outlives the 60 s Traefik v3.7 is reported to cut at (traefik#13820)", async () => {
        const started = Date.now();
        const stream = await sdk("alice").chat.completions.create({
          model: "coder",
          messages: [{ role: "user", content: "long" }],
          stream: true,
          stream_chunks: 14,
          chunk_interval_ms: 5000,
        } as unknown as OpenAI.ChatCompletionCreateParamsStreaming);
        let chunks = 0;
        let finish: string | null | undefined;
        for await (const chunk of stream) {
          chunks++;
          finish = chunk.choices[0]?.finish_reason ?? finish;
        }
        expect(chunks).toBe(15);
        expect(finish).toBe("stop");
        expect(Date.now() - started).toBeGreaterThan(62_000);
      }, 100_000);
    });

    describe("documents: docling-serve's async API under /v1/ocr/", () => {
      it("submit, poll and fetch a long conversion with curl; docling sees its own paths and the internal X-Api-Key", async () => {
        const docs = rig.standIns.docling!;
        const before = docs.received.length;
        const curl = async (...args: string[]) =>
          JSON.parse(
            (await execFileAsync("curl", ["-sS", "-f", "-H", `X-Api-Key: ${rig.keys.alice.key}`, ...args])).stdout,
          ) as Record<string, unknown>;
        const submitted = await curl(
          "-H",
          "Content-Type: application/json",
          "-d",
          JSON.stringify({ sources: [{ kind: "http", url: "https://example.com/long.pdf" }] }),
          `${rig.baseUrl}/v1/ocr/convert/source/async`,
        );
        const taskId = String(submitted.task_id);
        let status = "";
        await waitFor(
          "the conversion to finish",
          async () => {
            status = String((await curl(`${rig.baseUrl}/v1/ocr/status/poll/${taskId}`)).task_status);
            return status === "success";
          },
          10_000,
          { intervalMs: 100 },
        );
        const result = await curl(`${rig.baseUrl}/v1/ocr/result/${taskId}`);
        expect((result.document as Record<string, unknown>).md_content).toContain("converted");
        const seen = docs.received.slice(before);
        expect(seen.map((r) => r.url)).toEqual([
          "/v1/convert/source/async",
          ...seen.slice(1, -1).map(() => `/v1/status/poll/${taskId}`),
          `/v1/result/${taskId}`,
        ]);
        for (const r of seen) expect(r.headers["x-api-key"]).toBe(RIG_BACKEND_KEY);
      });
    });

    describe("the GPU: off, on, and every switch without a failed request", () => {
      const loopAddresses = Array.from({ length: 8 }, (_, i) => `127.0.0.${30 + i}`);
      /** Requests in a loop (plain and streamed chat, OCR) until stopped; collects every failure. */
      function clientLoop() {
        let running = true;
        const failures: string[] = [];
        const answeredBy: string[] = [];
        let n = 0;
        // Each source address stays under half the gatekeeper's per-address limit, however fast the
        // machine: a 429 from that limit would be a failure of the loop, not of the switch.
        const perMinute = Number(rig.gatekeeperEnv.GATEKEEPER_ADDRESS_RATE_PER_MINUTE);
        expect(perMinute).toBeGreaterThan(0);
        const pauseMs = Math.ceil(60_000 / (perMinute / 2));
        const worker = async (address: string, index: number) => {
          while (running) {
            const i = n++;
            const streamed = i % 5 === 0;
            try {
              const r = await call({
                path: "/v1/chat/completions",
                body: chatBody(streamed ? { stream: true } : {}),
                headers: { ...json, ...bearer("loop") },
                localAddress: address,
              });
              if (r.status !== 200 || (streamed ? !r.text.includes("[DONE]") : !r.json?.choices))
                failures.push(`${i}: ${r.status} ${r.text.slice(0, 200)}`);
              else answeredBy.push(String(r.headers["x-stand-in"]).split(" ")[0]);
            } catch (error) {
              failures.push(`${i}: ${(error as Error).message}`);
            }
            await sleep(pauseMs + index);
          }
        };
        const done = Promise.all(loopAddresses.map((a, i) => worker(a, i)));
        return {
          failures,
          answeredBy,
          async stop() {
            running = false;
            await done;
          },
        };
      }
      const gpuBackends = (): GpuBackendAddress[] => [
        { node: "gpu-0", url: rig.gpuUrl("coder"), healthPath: "/health" },
        { node: "gpu-0", url: rig.gpuUrl("ocr"), healthPath: "/health" },
      ];
      const bash = (script: string) =>
        new Promise<{ code: number | null; output: string }>((resolve) => {
          const child = spawn("bash", ["-c", script], { stdio: ["ignore", "pipe", "pipe"] });
          let output = "";
          child.stdout.on("data", (c: Buffer) => (output += c.toString()));
          child.stderr.on("data", (c: Buffer) => (output += c.toString()));
          child.on("exit", (code) => resolve({ code, output }));
        });

      it("GPU off: the coder answers from the CPU fallback; DeepSeek-OCR → 503 JSON gpu_off", async () => {
        const chat = await call({
          path: "/v1/chat/completions",
          body: chatBody(),
          headers: { ...json, ...bearer("alice") },
        });
        expect(chat.status).toBe(200);
        expect(chat.headers["x-stand-in"]).toMatch(/^llama\.cpp/);
        const ocr = await call({
          path: "/v1/ocr/chat/completions",
          body: chatBody({ model: "deepseek-ocr" }),
          headers: { ...json, ...bearer("alice") },
        });
        expectOpenAiError(ocr, 503, "gpu_off");
        expect(ocr.headers["retry-after"]).toMatch(/^[1-9][0-9]*$/);
      });

      it("the wait script fails, naming the backend, when a replica never answers", async () => {
        const r = await bash(backendsReadyScript(gpuBackends(), 2, 1));
        expect(r.code).toBe(1);
        expect(r.output).toContain(`${rig.gpuUrl("coder")}/health did not answer within 2 s`);
      });

      it("on and off as `pulumi up` does it: the routes file names the GPU only once it answers, and drops it before it goes; 0 failed requests", async () => {
        const loop = clientLoop();
        try {
          await sleep(1000);
          // gpu on: the droplet boots and vLLM loads (not listening, then /health 503), while the
          // routes file still points at the fallback.
          const ready = bash(backendsReadyScript(gpuBackends(), 60, 1));
          await sleep(1500);
          await rig.startGpu({ healthy: false });
          await sleep(1500);
          rig.standIns.gpuCoder!.setHealthy(true);
          rig.standIns.gpuOcr!.setHealthy(true);
          const waited = await ready;
          expect(waited.code, waited.output).toBe(0);
          rig.writeRoutes("gpu-on");
          await waitFor(
            "the GPU replica to answer through the gateway",
            () => loop.answeredBy.slice(-5).every((b) => b === "vllm") && loop.answeredBy.length > 5,
            20_000,
          );
          const ocr = await call({
            path: "/v1/ocr/chat/completions",
            body: chatBody({ model: "deepseek-ocr" }),
            headers: { ...json, ...bearer("alice") },
          });
          expect(ocr.status).toBe(200);
          expect(rig.standIns.gpuOcr!.received.at(-1)!.url).toBe("/v1/chat/completions");
          await sleep(1000);

          // gpu off: the routes file without the GPU first, then the drain, then the droplet goes.
          rig.writeRoutes("gpu-off");
          const drained = await bash(backendsDrainScript(gpuBackends(), rig.reload, 60));
          expect(drained.code, drained.output).toBe(0);
          expect(drained.output).toContain(`drained: ${rig.gpuUrl("coder")}/metrics`);
          // It saw Traefik apply the file; it did not give up waiting for that.
          expect(drained.output).not.toContain("draining anyway");
          await rig.stopGpu();
          await sleep(2000);
        } finally {
          await loop.stop();
        }
        expect(loop.failures).toEqual([]);
        expect(loop.answeredBy).toContain("vllm");
        expect(loop.answeredBy.at(-1)).toBe("llama.cpp");
        expect(loop.answeredBy.length).toBeGreaterThan(100);
      }, 90_000);

      it("control: writing the GPU into the routes file before it answers fails requests (Traefik trusts a new server until its first probe), each a 502 JSON", async () => {
        const loop = clientLoop();
        try {
          await sleep(500);
          rig.writeRoutes("gpu-on");
          await waitFor("a failed request", () => loop.failures.length > 0, 15_000);
        } finally {
          rig.writeRoutes("gpu-off");
          await sleep(3000);
          await loop.stop();
        }
        expect(loop.failures.length).toBeGreaterThan(0);
        expect(loop.failures[0]).toMatch(
          /: 502 \{"error":\{"message":"The coding model \(vLLM on the GPU node\) did not answer/,
        );
      }, 60_000);

      it("the drain waits for requests in flight on the replica", async () => {
        await rig.startGpu();
        try {
          const slow = fetch(`${rig.gpuUrl("coder")}/v1/chat/completions`, {
            method: "POST",
            headers: json,
            body: chatBody({ delay_ms: 2500 }),
          });
          await waitFor("the request to be in flight", () => rig.standIns.gpuCoder!.inFlight() > 0, 5000);
          const started = Date.now();
          const drained = await bash(backendsDrainScript(gpuBackends(), rig.reload, 60));
          expect(drained.code).toBe(0);
          expect(Date.now() - started).toBeGreaterThan(1500);
          expect((await slow).status).toBe(200);
        } finally {
          await rig.stopGpu();
        }
      });
    });

    describe("audit and logs", () => {
      it("every request the gatekeeper decides leaves exactly one audit row (key id, route, status), none carrying a key; the access log adds status and latency", async () => {
        const from = "127.0.0.12";
        const before = new Set((await rig.auditRows()).map((r) => r.decision_id));
        const fallback = rig.standIns.fallback!;
        const seenBefore = fallback.received.length;
        const requests = [
          {
            expect: 200,
            key: "alice",
            r: await call({
              path: "/v1/chat/completions",
              body: chatBody(),
              headers: { ...json, ...bearer("alice") },
              localAddress: from,
            }),
          },
          {
            expect: 200,
            key: "alice",
            r: await call({ path: "/v1/models", headers: { "x-api-key": rig.keys.alice.key }, localAddress: from }),
          },
          { expect: 401, key: undefined, r: await call({ path: "/v1/models", localAddress: from }) },
          {
            expect: 401,
            key: "revoked",
            r: await call({ path: "/v1/models", headers: bearer("revoked"), localAddress: from }),
          },
          {
            expect: 403,
            key: "sttOnly",
            r: await call({
              path: "/v1/completions",
              body: chatBody(),
              headers: { ...json, ...bearer("sttOnly") },
              localAddress: from,
            }),
          },
          {
            expect: 200,
            key: "single",
            r: await call({ path: "/v1/models", headers: bearer("single"), localAddress: from }),
          },
          {
            expect: 429,
            key: "single",
            r: await call({ path: "/v1/models", headers: bearer("single"), localAddress: from }),
          },
        ] as const;
        for (const q of requests) expect(q.r.status).toBe(q.expect);
        // Allowed requests: the id the backend received; denied ones: the id in the refusal.
        const allowedIds = fallback.received.slice(seenBefore).map((r) => String(r.headers["x-request-id"]));
        const ids = [
          ...allowedIds,
          ...requests.filter((q) => q.expect !== 200).map((q) => String(q.r.headers["x-request-id"])),
        ];
        expect(ids).toHaveLength(requests.length);

        const rows = (await rig.auditRows()).filter((r) => !before.has(r.decision_id));
        expect(rows).toHaveLength(requests.length);
        for (const [i, id] of ids.entries()) {
          const mine = rows.filter((r) => r.request_id === id);
          expect(mine, id).toHaveLength(1);
          const q =
            i < allowedIds.length
              ? requests.filter((x) => x.expect === 200)[i]
              : requests.filter((x) => x.expect !== 200)[i - allowedIds.length];
          expect(mine[0].status).toBe(q.expect);
          expect(mine[0].key_id).toBe(q.key ? rig.keys[q.key].id : null);
          expect(mine[0].scope).toBe("llm");
          expect(String(mine[0].path)).toMatch(/^\/v1\//);
          expect(mine[0].client_addr).toBe(from);
        }
        // No row anywhere in the table carries any key.
        const everything = JSON.stringify(await rig.auditRows());
        for (const k of Object.values(rig.keys)) expect(everything).not.toContain(k.key);
        expect(everything).not.toContain(RIG_BACKEND_KEY);

        // The access log line of each allowed request joins its audit row by request id and
        // carries what the gatekeeper cannot see: the final status and the latency.
        await waitFor(
          "the access log lines",
          () => allowedIds.every((id) => rig.accessLog().some((l) => l["request_X-Request-Id"] === id)),
          5000,
        );
        for (const id of allowedIds) {
          const line = rig.accessLog().find((l) => l["request_X-Request-Id"] === id)!;
          expect(line.DownstreamStatus).toBe(200);
          expect(rows.find((r) => r.request_id === id)!.key_id).toBe(line["request_X-Hub-Key-Id"]);
          expect(line.Duration).toBeGreaterThan(0);
          expect(line.RouterName).toBe("coder@file");
        }
      });

      it("no client key is ever echoed back or written to the access log (or any log of the rig)", () => {
        expect(responses.length).toBeGreaterThan(100);
        const keys = Object.values(rig.keys).map((k) => k.key);
        for (const r of responses) {
          const seen = JSON.stringify(r.headers) + r.text;
          for (const k of keys) expect(seen).not.toContain(k);
        }
        const logs = [rig.traefik.text(), rig.gatekeeper.text(), rig.nginx.text()].join("\n");
        for (const k of keys) expect(logs).not.toContain(k);
        expect(logs).not.toContain(RIG_BACKEND_KEY);
        const lines = rig.accessLog();
        expect(lines.length).toBeGreaterThan(100);
        // A positive list: no credential header and no client text (path, query, Host, User-Agent) in any line.
        for (const line of lines)
          expect(
            Object.keys(line).filter((k) =>
              /^request_(Authorization|X-Api-Key|User-Agent)$|^Request(Path|Host|Addr|Method)$|^ClientUsername$/.test(
                k,
              ),
            ),
          ).toEqual([]);
      });
    });
  },
);
