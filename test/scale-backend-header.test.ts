import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BACKEND_HEADER, VLLM_BACKEND_MIDDLEWARE } from "../services/backend-header";
import { vllmCoderSpecs } from "../services/coder";
import { GatewayRig, rigMissing, type RigResponse } from "./helpers/gateway-rig";
import { mustLoad, readJson, REFERENCE } from "./helpers/load";
import { ManagedProcess, waitFor } from "./helpers/processes";

/**
 * Which backend answered, through the real Traefik (test/helpers/gateway-rig.ts): the GPU replica
 * (X-Hub-Backend: gpu-0), the CPU fallback (no header: llama.cpp cannot add one) or, with no
 * fallback, the 503 (gpu-off).
 *
 * The GPU replica is the coder container's own start (entrypoint, command and environment from
 * its spec, run by /bin/sh) with a STAND-IN `vllm` on PATH: vLLM itself needs a GPU and weights.
 * The stand-in is a FastAPI app (Debian's python3-fastapi and uvicorn) with the three coder paths
 * and vLLM 0.24.0's own loop that loads `--middleware` (vllm/entrypoints/openai/api_server.py,
 * build_app), so the shipped hub_backend_header.py is loaded as vLLM would load it.
 */

const DEBIAN_PYTHON = "/usr/bin/python3";
const pythonReady = () =>
  existsSync(DEBIAN_PYTHON) &&
  spawnSync(DEBIAN_PYTHON, ["-c", "import fastapi, uvicorn"], { stdio: "ignore" }).status === 0;
const missing =
  rigMissing() ??
  (pythonReady()
    ? undefined
    : "no Debian python3-fastapi/python3-uvicorn at /usr/bin/python3 (.ci/install-system installs them)");
if (missing) console.warn(`backend-header tests skipped: ${missing}`);
it.runIf(Boolean(missing) && process.env.CI === "true")(
  "Traefik, nginx, PostgreSQL and Debian's FastAPI are installed (required in CI)",
  () => {
    expect.fail(missing);
  },
);

describe("the backend names, offline", () => {
  it("each replica's coder container names its own node and passes vLLM 0.24.0's --middleware", () => {
    const specs = vllmCoderSpecs(mustLoad({ tier: "gpu", gpuCount: 2, gpuMaxNodes: 2, budgetUsd: 6000 }));
    expect(specs.map((s) => [s.node, s.env.HUB_BACKEND_NAME])).toEqual([
      ["gpu-0", "gpu-0"],
      ["gpu-1", "gpu-1"],
    ]);
    const flags = readJson<{ flags: string[] }>(path.join(REFERENCE, "vllm/args-0.24.0.json")).flags;
    expect(flags).toContain("--middleware");
    for (const s of specs) expect(s.command.slice(-2)).toEqual(["--middleware", VLLM_BACKEND_MIDDLEWARE]);
  });
});

/** STAND-IN for the `vllm` command (not vLLM): `vllm serve <args>` with vLLM's middleware loading. */
const VLLM_STAND_IN = `#!${DEBIAN_PYTHON}
# STAND-IN for vLLM's API server, not vLLM. Answers /health, /v1/models and
# /v1/chat/completions (plain and SSE) in vLLM's shapes, and loads --middleware exactly as
# vLLM 0.24.0's build_app does.
import asyncio, importlib, inspect, json, os, sys
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
import uvicorn

argv = sys.argv[1:]
assert argv[0] == "serve", argv
middleware = [argv[i + 1] for i, a in enumerate(argv) if a == "--middleware"]
app = FastAPI()

@app.get("/health")
async def health():
    return JSONResponse({})

@app.get("/v1/models")
async def models():
    return {"object": "list", "data": [{"id": "coder", "object": "model", "owned_by": "vllm"}]}

@app.post("/v1/chat/completions")
async def chat(request: Request):
    body = await request.json()
    if body.get("stream"):
        async def events():
            for i in range(3):
                yield "data: " + json.dumps({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": str(i)}}]}) + "\\n\\n"
                await asyncio.sleep(0.02)
            yield "data: [DONE]\\n\\n"
        return StreamingResponse(events(), media_type="text/event-stream")
    return {"object": "chat.completion", "model": "coder", "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}

# vLLM 0.24.0, build_app:
for m in middleware:
    module_path, object_name = m.rsplit(".", 1)
    imported = getattr(importlib.import_module(module_path), object_name)
    if inspect.isclass(imported):
        app.add_middleware(imported)
    elif inspect.iscoroutinefunction(imported):
        app.middleware("http")(imported)
    else:
        raise ValueError(f"Invalid middleware {m}. Must be a function or a class.")

uvicorn.run(app, host="127.0.0.1", port=int(os.environ["STAND_IN_PORT"]), log_level="warning")
`;

describe.skipIf(Boolean(missing))("X-Hub-Backend names the backend that answered (real Traefik)", () => {
  const chat = (stream = false) =>
    JSON.stringify({
      model: "coder",
      messages: [{ role: "user", content: "hi" }],
      ...(stream ? { stream: true } : {}),
    });
  const json = { "content-type": "application/json" };

  describe("with the CPU fallback (hybrid preset)", () => {
    let rig: GatewayRig;
    let gpu: ManagedProcess | undefined;
    const dir = mkdtempSync(path.join(tmpdir(), "hub-backend-header-"));
    const ask = (stream = false): Promise<RigResponse> =>
      rig.request({
        path: "/v1/chat/completions",
        body: chat(stream),
        headers: { ...json, authorization: `Bearer ${rig.keys.dev.key}` },
      });

    /** The coder container's start, as its spec has it, with the stand-in `vllm` on PATH. */
    const startGpu = async () => {
      const hub = mustLoad({
        tier: "hybrid",
        gpuEnabled: true,
        fallbackModel: "qwen2.5-coder-1.5b",
        ocrCpuFallback: true,
        cpuSize: "s-8vcpu-16gb",
      });
      const spec = vllmCoderSpecs(hub).find((s) => s.node === "gpu-0")!;
      const bin = path.join(dir, "bin");
      mkdirSync(bin, { recursive: true });
      writeFileSync(path.join(bin, "vllm"), VLLM_STAND_IN);
      chmodSync(path.join(bin, "vllm"), 0o755);
      const [file, ...args] = [...spec.entrypoint!, ...spec.command];
      gpu = ManagedProcess.start("gpu-0 coder (stand-in vllm)", file, args, {
        env: { PATH: `${bin}:/usr/bin:/bin`, TMPDIR: dir, STAND_IN_PORT: String(rig.gpuPorts.coder), ...spec.env },
      });
      await waitFor(
        "the GPU stand-in to answer",
        async () => (await fetch(`${rig.gpuUrl("coder")}/health`).catch(() => undefined))?.status === 200,
        30_000,
        { context: () => gpu!.tail() },
      );
    };

    beforeAll(async () => {
      rig = await GatewayRig.start({ keys: { dev: { scopes: ["llm"], ratePerMinute: 100_000, burst: 1000 } } });
      await startGpu();
    }, 120_000);
    afterAll(async () => {
      await gpu?.stop();
      await rig?.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    it("the container's start wrote the middleware module where only it is importable", () => {
      const written = path.join(dir, "hub-python", "hub_backend_header.py");
      expect(readFileSync(written, "utf8")).toBe(
        readFileSync(path.join(__dirname, "../services/launchers/hub_backend_header.py"), "utf8"),
      );
    });

    it("GPU off: the fallback answers, with no X-Hub-Backend (no GPU name)", async () => {
      rig.writeRoutes("gpu-off");
      await waitFor(
        "the GPU-off routes",
        async () => (await ask()).headers["x-stand-in"]?.toString().startsWith("llama.cpp") === true,
        15_000,
      );
      const r = await ask();
      expect(r.status).toBe(200);
      expect(r.headers[BACKEND_HEADER.toLowerCase()]).toBeUndefined();
      const streamed = await ask(true);
      expect(streamed.text).toContain("[DONE]");
      expect(streamed.headers[BACKEND_HEADER.toLowerCase()]).toBeUndefined();
    });

    it("GPU on: the replica answers, named gpu-0, plain and streamed, on every coder path", async () => {
      rig.writeRoutes("gpu-on");
      await waitFor(
        "the GPU to answer through the gateway",
        async () => (await ask()).headers[BACKEND_HEADER.toLowerCase()] === "gpu-0",
        20_000,
      );
      const plain = await ask();
      expect(plain.status).toBe(200);
      expect(plain.json.choices[0].message.content).toBe("ok");
      // The stand-in vLLM answered, not the llama.cpp one (which marks its answers X-Stand-In).
      expect(plain.headers["x-stand-in"]).toBeUndefined();
      const streamed = await ask(true);
      expect(streamed.headers["content-type"]).toMatch(/^text\/event-stream/);
      expect(streamed.text).toContain("[DONE]");
      expect(streamed.headers[BACKEND_HEADER.toLowerCase()]).toBe("gpu-0");
      const models = await rig.request({
        path: "/v1/models",
        headers: { authorization: `Bearer ${rig.keys.dev.key}` },
      });
      expect(models.headers[BACKEND_HEADER.toLowerCase()]).toBe("gpu-0");
    });

    it("the replica down while still in the routes: the failover's answers carry no GPU name", async () => {
      await gpu!.stop();
      // Traefik's health check (every 10 s) takes the replica out; until then a request may get a 502.
      await waitFor(
        "the failover to the fallback",
        async () => (await ask()).headers["x-stand-in"]?.toString().startsWith("llama.cpp") === true,
        30_000,
      );
      const r = await ask();
      expect(r.status).toBe(200);
      expect(r.headers["x-stand-in"]).toMatch(/^llama\.cpp/);
      expect(r.headers[BACKEND_HEADER.toLowerCase()]).toBeUndefined();
      await startGpu();
      await waitFor(
        "the replica back",
        async () => (await ask()).headers[BACKEND_HEADER.toLowerCase()] === "gpu-0",
        30_000,
      );
    }, 90_000);
  });

  describe("without a fallback", () => {
    let rig: GatewayRig;
    beforeAll(async () => {
      // Without the controller, so the errors nginx answers (the controller's own answer: test/controller-gateway.test.ts).
      rig = await GatewayRig.start({
        settings: { fallbackModel: "none", autoscaler: false },
        keys: { dev: { scopes: ["llm"] } },
      });
    }, 120_000);
    afterAll(async () => {
      await rig?.stop();
    });

    it("GPU off: 503 in OpenAI's error shape, with Retry-After, named gpu-off", async () => {
      const r = await rig.request({
        path: "/v1/chat/completions",
        body: chat(),
        headers: { ...json, authorization: `Bearer ${rig.keys.dev.key}` },
      });
      expect(r.status).toBe(503);
      expect(r.headers["content-type"]).toMatch(/^application\/json/);
      expect(r.json.error).toMatchObject({ code: "gpu_off", type: expect.any(String), message: expect.any(String) });
      expect(Number(r.headers["retry-after"])).toBeGreaterThan(0);
      expect(r.headers[BACKEND_HEADER.toLowerCase()]).toBe("gpu-off");
    });
  });
});
