import { ChildProcess, spawn, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { deepSeekOcrSpecs } from "../services/coder";
import { SERVICE_PORTS } from "../services/routes";
import { sttSpec, ttsSpec } from "../services/speech";
import type { ServiceSpec } from "../services/spec";
import { mustLoad } from "./helpers/load";

// The start scripts the specs render, run for real with /bin/sh. The programs they start are
// stand-ins (test/fixtures/launcher-stand-ins/README.md) on Debian's FastAPI, uvicorn and Flask;
// our launchers (services/launchers/*.py) and the shell around them are the code under test.

const STAND_INS = path.join(__dirname, "fixtures/launcher-stand-ins");
const DEBIAN_PYTHON = "/usr/bin/python3";
const PYTHON_READY =
  spawnSync(DEBIAN_PYTHON, ["-c", "import fastapi, multipart, uvicorn, flask"], { encoding: "utf8" }).status === 0;
const KEY = "stand-in-internal-key";

const work = mkdtempSync(path.join(tmpdir(), "launchers-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** `python3`, `uvicorn` and `vllm` as the images have them on PATH; vllm records its arguments. */
function shims(dir: string): string {
  mkdirSync(dir, { recursive: true });
  const script = (name: string, body: string) => {
    writeFileSync(path.join(dir, name), `#!/bin/sh\n${body}\n`);
    chmodSync(path.join(dir, name), 0o755);
  };
  script("python3", `exec ${DEBIAN_PYTHON} "$@"`);
  script("uvicorn", `exec ${DEBIAN_PYTHON} -m uvicorn "$@"`);
  // STAND-IN for the vLLM binary: records that it ran and with what.
  script("vllm", `printf '%s\\n' "$@" > "$VLLM_ARGS_FILE"; exit 0`);
  return dir;
}

/** The container's start: Docker runs entrypoint + command. */
const argvOf = (spec: ServiceSpec): string[] => [...(spec.entrypoint ?? []), ...spec.command];

const running: ChildProcess[] = [];
afterEach(() => {
  for (const child of running.splice(0)) if (child.exitCode === null) child.kill("SIGKILL");
});

function start(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  cwd: string,
): { child: ChildProcess; output: () => string } {
  const [file, ...rest] = argv;
  const child = spawn(file, rest, { cwd, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout?.on("data", (chunk) => (output += chunk));
  child.stderr?.on("data", (chunk) => (output += chunk));
  running.push(child);
  return { child, output: () => output };
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function waitForHttp(
  url: string,
  headers: Record<string, string>,
  started: { child: ChildProcess; output: () => string },
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (started.child.exitCode !== null)
      throw new Error(`the server exited (${started.child.exitCode}):\n${started.output()}`);
    try {
      if ((await fetch(url, { headers })).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${url} never answered:\n${started.output()}`);
}

function syntaxProblems(script: string): string {
  const r = spawnSync("sh", ["-n", "-c", script], { encoding: "utf8" });
  return r.status === 0 ? "" : r.stderr;
}

it.runIf(!PYTHON_READY && Boolean(process.env.CI))(
  "Debian's python3-fastapi, python3-multipart, python3-uvicorn and python3-flask are installed (required in CI)",
  () => {
    expect(PYTHON_READY).toBe(true);
  },
);

describe.skipIf(!PYTHON_READY)("speaches start script (speaches and huggingface_hub are stand-ins)", () => {
  const hub = mustLoad({ tier: "gpu", sttModel: "small" });
  const spec = sttSpec(hub);
  const repo = hub.stt.repo;

  async function run(argv: readonly string[], name: string) {
    const dir = path.join(work, name);
    const cache = path.join(dir, "hf-cache");
    const cwd = path.join(dir, "speaches");
    mkdirSync(cache, { recursive: true });
    mkdirSync(cwd, { recursive: true });
    mkdirSync(path.join(dir, "tmp"), { recursive: true });
    // upstream's own aliases file, as the image ships it (model_aliases.json at v0.8.3)
    writeFileSync(
      path.join(cwd, "model_aliases.json"),
      JSON.stringify({ "tts-1": "speaches-ai/Kokoro-82M-v1.0-ONNX", "whisper-1": "Systran/faster-whisper-large-v3" }),
    );
    const port = await freePort();
    const env = {
      ...spec.env,
      // loopback instead of the container's 0.0.0.0; a free port
      UVICORN_HOST: "127.0.0.1",
      UVICORN_PORT: String(port),
      API_KEY: KEY,
      TMPDIR: path.join(dir, "tmp"),
      STANDIN_HF_CACHE: cache,
      PYTHONPATH: path.join(STAND_INS, "speaches"),
      PATH: `${shims(path.join(dir, "bin"))}:${process.env.PATH}`,
    };
    const started = start(argv, env, cwd);
    const base = `http://127.0.0.1:${port}`;
    await waitForHttp(`${base}/health`, { Authorization: `Bearer ${KEY}` }, started);
    const events = () =>
      readFileSync(path.join(cache, "events.jsonl"), "utf8")
        .trim()
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    const post = async (
      endpoint: "transcriptions" | "translations",
      model: string | undefined,
      audio = "spoken words",
    ) => {
      const form = new FormData();
      if (audio) form.append("file", new Blob([audio], { type: "audio/wav" }), "a.wav");
      if (model !== undefined) form.append("model", model);
      const response = await fetch(`${base}/v1/audio/${endpoint}`, {
        method: "POST",
        body: form,
        headers: { Authorization: `Bearer ${KEY}` },
      });
      return { status: response.status, body: (await response.json()) as Record<string, any> };
    };
    return { cwd, events, post };
  }

  it("is valid sh", () => {
    expect(syntaxProblems(spec.command[0])).toBe("");
  });

  it("the stand-in reproduces the defect when started as the image's CMD: translations download any model", async () => {
    // Preload by hand, as nothing else would; then upstream's CMD with no launcher and no offline mode.
    const { post, events } = await run(
      [
        "/bin/sh",
        "-c",
        `python3 -c 'from huggingface_hub import snapshot_download; snapshot_download("${repo}")' && exec uvicorn --factory speaches.main:create_app`,
      ],
      "upstream",
    );
    expect((await post("transcriptions", "whisper-1")).status).toBe(404); // large-v3, never fetched
    expect((await post("translations", "someone/huge-model")).status).toBe(200);
    expect(events()).toContainEqual({ call: "downloaded", repo: "someone/huge-model" });
  });

  it("serves whisper-1 and the configured model on both endpoints, refuses any other with a 400, and downloads nothing after the preload", async () => {
    const { cwd, post, events } = await run(argvOf(spec), "hub");
    // The preload fetched the configured repo while online; the server runs offline.
    expect(events()).toEqual([
      { call: "snapshot_download", repo, offline: false, cached: false },
      { call: "downloaded", repo },
    ]);
    // speaches' own alias file now points whisper-1 at the configured model (upstream: large-v3).
    expect(JSON.parse(readFileSync(path.join(cwd, "model_aliases.json"), "utf8"))).toEqual({ "whisper-1": repo });

    for (const endpoint of ["transcriptions", "translations"] as const) {
      for (const model of ["whisper-1", repo]) {
        const answer = await post(endpoint, model);
        expect(answer, `${endpoint} ${model}`).toEqual({ status: 200, body: { text: "spoken words", model: repo } });
      }
      for (const model of ["Systran/faster-whisper-large-v3", "someone/huge-model", "base"]) {
        const answer = await post(endpoint, model);
        expect(answer.status, `${endpoint} ${model}`).toBe(400);
        expect(answer.body.error).toMatchObject({
          type: "invalid_request_error",
          param: "model",
          code: "model_not_found",
        });
        expect(answer.body.error.message).toContain(`'${model}'`);
        expect(answer.body.error.message).toContain("'whisper-1'");
        expect(answer.body.error.message).toContain(`'${repo}'`);
      }
    }
    const missingModel = await post("translations", undefined);
    expect([missingModel.status, missingModel.body.error?.code]).toEqual([400, "model_required"]);
    const missingFile = await post("transcriptions", "whisper-1", "");
    expect([missingFile.status, missingFile.body.error?.code]).toEqual([400, "file_required"]);

    // Every load after the preload was the configured model, served from the cache offline.
    const later = events().slice(2);
    expect(later.length).toBeGreaterThan(0);
    for (const event of later) {
      if (event.call === "load_model") expect(event.model).toBe(repo);
      else expect(event).toEqual({ call: "snapshot_download", repo, offline: true, cached: true });
    }
  });
});

describe.skipIf(!PYTHON_READY)("Coqui start script (tts-server is a stand-in)", () => {
  const spec = ttsSpec(mustLoad({ tier: "gpu" }));

  it("is valid sh", () => {
    expect(syntaxProblems(spec.entrypoint![2])).toBe("");
  });

  it("asks the server for every OpenAI format at start, then refuses the ones that failed with a 400 naming those that work", async () => {
    const dir = path.join(work, "coqui");
    mkdirSync(path.join(dir, "tmp"), { recursive: true });
    const log = path.join(dir, "synthesis.log");
    const port = await freePort();
    // The spec's own argv with the port swapped for a free one.
    const argv = argvOf(spec).map((a) => (a === String(SERVICE_PORTS.tts) ? String(port) : a));
    const started = start(
      argv,
      {
        ...spec.env,
        TMPDIR: path.join(dir, "tmp"),
        PYTHONPATH: path.join(STAND_INS, "coqui"),
        PATH: `${shims(path.join(dir, "bin"))}:${process.env.PATH}`,
        // flac encodes; opus "encodes" into the wrong container; mp3 and aac have no encoder.
        STANDIN_ENCODERS: "flac,opus",
        STANDIN_BAD_BYTES: "opus",
        STANDIN_LOG: log,
      },
      dir,
    );
    const base = `http://127.0.0.1:${port}`;
    await waitForHttp(`${base}/`, {}, started);
    // One probe per documented format, before the server listened.
    expect(readFileSync(log, "utf8").trim().split("\n")).toEqual(
      ["mp3", "opus", "aac", "flac", "wav", "pcm"].map((f) => `synthesize ${f} 'Ready.'`),
    );
    expect(started.output()).toContain("response formats available: flac, wav, pcm");

    const speak = async (body: Record<string, unknown>) => {
      const response = await fetch(`${base}/v1/audio/speech`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ input: "Hello there.", ...body }),
      });
      return {
        status: response.status,
        type: response.headers.get("content-type") ?? "",
        bytes: Buffer.from(await response.arrayBuffer()),
      };
    };
    expect((await speak({ response_format: "wav" })).bytes.subarray(0, 4).toString()).toBe("RIFF");
    expect((await speak({ response_format: "flac" })).bytes.subarray(0, 4).toString()).toBe("fLaC");
    expect((await speak({ response_format: "pcm" })).status).toBe(200);
    // mp3 is also OpenAI's default when no format is named.
    for (const format of ["mp3", undefined, "opus", "aac", "MP3", "ogg"]) {
      const answer = await speak(format === undefined ? {} : { response_format: format });
      expect(answer.status, String(format)).toBe(400);
      expect(answer.type).toContain("application/json");
      const error = JSON.parse(answer.bytes.toString()).error;
      expect(error).toMatchObject({
        type: "invalid_request_error",
        param: "response_format",
        code: "unsupported_response_format",
      });
      expect(error.message).toMatch(/use one of: flac, wav, pcm\.$/);
    }
    // Refused formats never reached the synthesizer.
    expect(readFileSync(log, "utf8").trim().split("\n").slice(6)).toEqual([
      "synthesize wav 'Hello there.'",
      "synthesize flac 'Hello there.'",
      "synthesize pcm 'Hello there.'",
    ]);
  });
});

describe.skipIf(!PYTHON_READY)(
  "DeepSeek-OCR waits for the coder's /health before starting vLLM (vllm is a stand-in)",
  () => {
    const spec = deepSeekOcrSpecs(mustLoad({ tier: "gpu" }))[0];

    /** A /health that answers 503 `unhealthyFor` times, then 200; counts requests. */
    async function healthServer(unhealthyFor: number): Promise<{ server: Server; url: string; hits: () => number }> {
      let hits = 0;
      const server = createServer((_request, response) => {
        hits += 1;
        response.writeHead(hits > unhealthyFor ? 200 : 503).end();
      });
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/health`, hits: () => hits };
    }

    function runWrapper(url: string, name: string) {
      const dir = path.join(work, name);
      mkdirSync(dir, { recursive: true });
      const argsFile = path.join(dir, "vllm-args");
      const started = start(
        argvOf(spec),
        {
          ...spec.env,
          HUB_WAIT_FOR_HEALTH_URL: url,
          HUB_WAIT_POLL_SECONDS: "0.05",
          VLLM_ARGS_FILE: argsFile,
          PATH: `${shims(path.join(dir, "bin"))}:${process.env.PATH}`,
        },
        dir,
      );
      return { started, argsFile };
    }

    it("is valid sh, and points at the coder on the node's Docker network", () => {
      expect(syntaxProblems(spec.entrypoint![2])).toBe("");
      expect(spec.entrypoint?.slice(0, 2)).toEqual(["/bin/sh", "-c"]);
      expect(spec.env.HUB_WAIT_FOR_HEALTH_URL).toBe("http://coder:8000/health");
    });

    it("starts vLLM with exactly the spec's arguments once /health answers 200, not before", async () => {
      const health = await healthServer(3);
      try {
        const { started, argsFile } = runWrapper(health.url, "turns-healthy");
        const code = await new Promise<number | null>((resolve) => started.child.on("exit", resolve));
        expect(code, started.output()).toBe(0);
        expect(health.hits()).toBe(4);
        // `vllm serve <args>`, as the image's ENTRYPOINT ["vllm", "serve"] would have run it.
        expect(readFileSync(argsFile, "utf8").trimEnd().split("\n")).toEqual(["serve", ...spec.command]);
      } finally {
        health.server.close();
      }
    });

    it("keeps waiting while the coder is unhealthy", async () => {
      const health = await healthServer(Number.POSITIVE_INFINITY);
      try {
        const { started, argsFile } = runWrapper(health.url, "never-healthy");
        // Several refused looks (each one starts a Python interpreter: slow on a loaded machine).
        for (const deadline = Date.now() + 15_000; health.hits() < 4 && Date.now() < deadline; )
          await new Promise((resolve) => setTimeout(resolve, 50));
        expect(health.hits()).toBeGreaterThanOrEqual(4);
        expect(started.child.exitCode).toBeNull();
        expect(existsSync(argsFile)).toBe(false);
      } finally {
        health.server.close();
      }
    });
  },
);
