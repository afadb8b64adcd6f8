// Documents into answers with LangChain.js and the inference hub: a document goes through the
// hub's OCR (docling-serve's async API), is split, embedded through /v1/embeddings into an
// in-memory vector store, and a question is answered by the coder from the retrieved chunks,
// which the answer cites.
//
//   npm install @langchain/openai@1.6.0 @langchain/textsplitters@1.0.2 @langchain/core@1.4.0 @langchain/classic@1.0.50
//   HUB_URL=https://hub.example.com/v1 HUB_API_KEY=ihk_... node documents-to-answers.mjs report.pdf "What changed in Q3?"
//
// The key needs the ocr, embeddings and llm scopes (npm run hub -- keys create --scopes ocr,embeddings,llm).
import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import { MemoryVectorStore } from "@langchain/classic/vectorstores/memory";
import { ChatOpenAI, OpenAIEmbeddings } from "@langchain/openai";
import { RecursiveCharacterTextSplitter } from "@langchain/textsplitters";

const baseURL = process.env.HUB_URL;
const apiKey = process.env.HUB_API_KEY;
const [file, question] = process.argv.slice(2);
if (!baseURL || !apiKey || !file || !question) {
  console.error(
    'usage: HUB_URL=https://<hub>/v1 HUB_API_KEY=<key> node documents-to-answers.mjs <document> "<question>"',
  );
  process.exit(1);
}
const EMBEDDING_MODEL = process.env.HUB_EMBEDDING_MODEL ?? "qwen3-embedding-0.6b";

/** docling-serve's async API under the hub's /v1/ocr/ prefix: submit, poll, fetch the Markdown. */
async function convert(path) {
  const headers = { "X-Api-Key": apiKey };
  const form = new FormData();
  form.append("files", new Blob([await readFile(path)]), basename(path));
  const call = async (url, init) => {
    const response = await fetch(`${baseURL}/ocr/${url}`, { headers, ...init });
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status} ${await response.text()}`);
    return response.json();
  };
  const { task_id: task } = await call("convert/file/async", { method: "POST", body: form });
  for (;;) {
    const { task_status: status } = await call(`status/poll/${task}?wait=5`);
    if (status === "success") break;
    if (status === "failure") throw new Error(`docling could not convert ${path}`);
  }
  return (await call(`result/${task}`)).document.md_content;
}

const markdown = await convert(file);

// Chunks of a few hundred characters: well inside the hub's 2048 tokens per embedded input.
const splitter = RecursiveCharacterTextSplitter.fromLanguage("markdown", { chunkSize: 1000, chunkOverlap: 100 });
const chunks = await splitter.createDocuments([markdown], [{ source: basename(file) }]);

const embeddings = new OpenAIEmbeddings({ model: EMBEDDING_MODEL, apiKey, configuration: { baseURL } });
const store = await MemoryVectorStore.fromDocuments(chunks, embeddings);
const hits = await store.similaritySearch(question, 4);

const sources = hits.map((hit, i) => `[${i + 1}] (${hit.metadata.source}) ${hit.pageContent}`).join("\n\n");
const coder = new ChatOpenAI({ model: "coder", apiKey, temperature: 0, configuration: { baseURL } });
const answer = await coder.invoke([
  [
    "system",
    "Answer from the numbered sources only, and cite each claim like [1]. Say so if the sources do not answer the question.",
  ],
  ["user", `Sources:\n${sources}\n\nQuestion: ${question}`],
]);

console.log(answer.content);
console.log("\nSources:");
hits.forEach((hit, i) =>
  console.log(`[${i + 1}] ${hit.metadata.source}: ${hit.pageContent.slice(0, 120).replace(/\s+/g, " ")}…`),
);
