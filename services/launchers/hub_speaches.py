"""speaches 0.8.3's own app, with one rule added: speech to text accepts only the model this hub serves.

speaches resolves `whisper-1` through its model_aliases.json (which the start script rewrites to
point at HUB_STT_MODEL). Left alone, /v1/audio/translations downloads whatever repo a request
names (routers/stt.py: model_manager.load_model) and /v1/audio/transcriptions answers 404 for a
model it lacks. Here both endpoints' shared audio dependency is overridden (FastAPI's
dependency_overrides) so a request naming any other model gets a 400 before speaches looks the
model up. HF_HUB_OFFLINE=1, set by the start script after the preload, forbids downloads anyway.
"""

import os

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from speaches.dependencies import audio_file_dependency
from speaches.main import create_app as create_speaches_app
from speaches.model_aliases import resolve_model_id_alias

SERVED_MODEL = os.environ["HUB_STT_MODEL"]
# Every OpenAI client's default model name; model_aliases.json maps it to SERVED_MODEL.
OPENAI_ALIAS = "whisper-1"


class RefusedRequest(Exception):
    def __init__(self, message: str, param: str, code: str) -> None:
        super().__init__(message)
        self.message, self.param, self.code = message, param, code


async def audio_of_served_model(request: Request):
    # The route's form is already parsed (and cached on the request) by FastAPI.
    form = await request.form()
    model, file = form.get("model"), form.get("file")
    served = f"send model {OPENAI_ALIAS!r} or {SERVED_MODEL!r}"
    if not isinstance(model, str) or not model:
        raise RefusedRequest(f"model is required: {served}.", "model", "model_required")
    # The same alias lookup the endpoint applies to its own `model` field (speaches.model_aliases).
    if resolve_model_id_alias(model) != SERVED_MODEL:
        raise RefusedRequest(f"The model {model!r} is not served by this hub: {served}.", "model", "model_not_found")
    if not isinstance(file, UploadFile):
        raise RefusedRequest("file is required: the audio to transcribe, as a multipart file part.", "file", "file_required")
    # speaches' own decoding, on a worker thread as FastAPI runs its sync dependency.
    return await run_in_threadpool(audio_file_dependency, file)


async def refuse(_request: Request, error: RefusedRequest) -> JSONResponse:
    body = {"error": {"message": error.message, "type": "invalid_request_error", "param": error.param, "code": error.code}}
    return JSONResponse(status_code=400, content=body)


def create_app() -> FastAPI:
    app = create_speaches_app()
    app.dependency_overrides[audio_file_dependency] = audio_of_served_model
    app.add_exception_handler(RefusedRequest, refuse)
    return app
