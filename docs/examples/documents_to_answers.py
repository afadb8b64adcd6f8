"""Documents into answers with LangChain (Python) and the inference hub.

The same pipeline as documents-to-answers.mjs: OCR through docling-serve's async API, split,
embed through /v1/embeddings into an in-memory vector store, retrieve, answer with the coder
citing the chunks.

    pip install "langchain-openai>=1.0" "langchain-text-splitters>=1.0" "langchain-core>=1.0" requests
    HUB_URL=https://hub.example.com/v1 HUB_API_KEY=ihk_... python documents_to_answers.py report.pdf "What changed in Q3?"
"""

import os
import sys
from pathlib import Path

import requests
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from langchain_text_splitters import Language, RecursiveCharacterTextSplitter

BASE_URL = os.environ["HUB_URL"]
API_KEY = os.environ["HUB_API_KEY"]
EMBEDDING_MODEL = os.environ.get("HUB_EMBEDDING_MODEL", "qwen3-embedding-0.6b")


def convert(path: Path) -> str:
    """docling-serve's async API under the hub's /v1/ocr/ prefix: submit, poll, fetch the Markdown."""
    headers = {"X-Api-Key": API_KEY}
    with path.open("rb") as f:
        task = requests.post(f"{BASE_URL}/ocr/convert/file/async", headers=headers, files={"files": (path.name, f)}, timeout=600)
    task.raise_for_status()
    task_id = task.json()["task_id"]
    while True:
        status = requests.get(f"{BASE_URL}/ocr/status/poll/{task_id}", params={"wait": 5}, headers=headers, timeout=60)
        status.raise_for_status()
        state = status.json()["task_status"]
        if state == "success":
            break
        if state == "failure":
            raise RuntimeError(f"docling could not convert {path}")
    result = requests.get(f"{BASE_URL}/ocr/result/{task_id}", headers=headers, timeout=60)
    result.raise_for_status()
    return result.json()["document"]["md_content"]


def main() -> None:
    path, question = Path(sys.argv[1]), sys.argv[2]
    markdown = convert(path)

    splitter = RecursiveCharacterTextSplitter.from_language(Language.MARKDOWN, chunk_size=1000, chunk_overlap=100)
    chunks = splitter.create_documents([markdown], metadatas=[{"source": path.name}])

    # check_embedding_ctx_length=False: otherwise langchain-openai tokenises with OpenAI's tiktoken
    # and sends those token ids, which mean nothing to the hub's model. Send the text itself.
    embeddings = OpenAIEmbeddings(model=EMBEDDING_MODEL, api_key=API_KEY, base_url=BASE_URL, check_embedding_ctx_length=False)
    store = InMemoryVectorStore.from_documents(chunks, embeddings)
    hits = store.similarity_search(question, k=4)

    sources = "\n\n".join(f"[{i + 1}] ({hit.metadata['source']}) {hit.page_content}" for i, hit in enumerate(hits))
    coder = ChatOpenAI(model="coder", api_key=API_KEY, base_url=BASE_URL, temperature=0)
    answer = coder.invoke(
        [
            ("system", "Answer from the numbered sources only, and cite each claim like [1]. Say so if the sources do not answer the question."),
            ("user", f"Sources:\n{sources}\n\nQuestion: {question}"),
        ]
    )
    print(answer.content)
    print("\nSources:")
    for i, hit in enumerate(hits):
        print(f"[{i + 1}] {hit.metadata['source']}: {' '.join(hit.page_content[:120].split())}…")


if __name__ == "__main__":
    main()
