import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { ROOT, SHARED } from "./helpers/load";

const VENDORED = path.join(ROOT, "test/fixtures/reference");
const rows = [
  ...readFileSync(path.join(VENDORED, "README.md"), "utf8").matchAll(/^\| ([\w./-]+\.json) \| ([0-9a-f]{64}) \|$/gm),
].map((m) => ({ file: m[1], sha256: m[2] }));
const sha256 = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex");

describe("the vendored reference files", () => {
  it("are listed", () => expect(rows.length).toBe(5));
  for (const { file, sha256: expected } of rows) {
    it(`${file} has the recorded hash`, () => expect(sha256(path.join(VENDORED, file))).toBe(expected));
    it.skipIf(!existsSync(path.join(SHARED, "reference", file)))(`${file} equals ../shared/reference`, () =>
      expect(sha256(path.join(SHARED, "reference", file))).toBe(expected),
    );
  }
});
