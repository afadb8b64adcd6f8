import { DEFAULT_LIMITS, MAX_LIMITS, MIN_LIMITS } from "./limits";
import { LANGUAGE_DEFINITIONS } from "./languages";
import { LIMIT_NAMES, type LimitName } from "./protocol";

/**
 * The sandbox as a tool an agent can call: an OpenAI-style function definition whose parameters
 * are a subset of POST /v1/sandbox/executions (docs/sandbox.md shows it; a test checks that
 * arguments shaped by it are accepted by the API's own schema).
 */

const LIMIT_TEXT: Record<LimitName, string> = {
  wall_ms: "wall-clock time, milliseconds",
  cpu_ms: "CPU time, milliseconds",
  memory_bytes: "memory, bytes",
  processes: "processes and threads",
  output_bytes: "stdout and stderr, bytes each",
  scratch_bytes: "the /work scratch directory, bytes",
};

export const SANDBOX_TOOL = {
  type: "function",
  function: {
    name: "run_code",
    description:
      "Run a program in an isolated sandbox (gVisor; no network; read-only system; a writable /work directory that starts empty) and get its stdout, stderr, exit code and which limit stopped it, if any. Use it to check code you wrote: run the tests, reproduce a bug, try an edge case.",
    parameters: {
      type: "object",
      additionalProperties: false,
      required: ["language", "files"],
      properties: {
        language: {
          type: "string",
          enum: LANGUAGE_DEFINITIONS.map((l) => l.language),
          description: "The interpreter: python (3), javascript (Node.js) or bash.",
        },
        files: {
          type: "array",
          minItems: 1,
          description:
            "Source files written to /work before the run; the first one is run. Give each a name (e.g. main.py, tests/test_x.py).",
          items: {
            type: "object",
            additionalProperties: false,
            required: ["name", "content"],
            properties: {
              name: { type: "string", description: "Path relative to /work." },
              content: { type: "string", description: "The file's text." },
            },
          },
        },
        stdin: { type: "string", description: "Text given to the program on standard input." },
        args: { type: "array", items: { type: "string" }, description: "Command-line arguments." },
        limits: {
          type: "object",
          additionalProperties: false,
          description: "Optional limits; each defaults to a conservative value and cannot pass the hub's ceiling.",
          properties: Object.fromEntries(
            LIMIT_NAMES.filter((n) => n === "wall_ms" || n === "memory_bytes").map((n) => [
              n,
              {
                type: "integer",
                minimum: MIN_LIMITS[n],
                maximum: MAX_LIMITS[n],
                description: `${LIMIT_TEXT[n]} (default ${DEFAULT_LIMITS[n]})`,
              },
            ]),
          ),
        },
      },
    },
  },
} as const;

/** The limits as a Markdown table: floor, default and the most any node allows. */
export function limitsTable(): string {
  const rows = LIMIT_NAMES.map(
    (n) => `| \`${n}\` | ${LIMIT_TEXT[n]} | ${MIN_LIMITS[n]} | ${DEFAULT_LIMITS[n]} | ${MAX_LIMITS[n]} |`,
  );
  return [
    "| limit | what | least | default | most (before the node's size lowers it) |",
    "| --- | --- | --- | --- | --- |",
    ...rows,
  ].join("\n");
}
