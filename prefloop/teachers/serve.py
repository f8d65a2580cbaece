"""`prefloop serve-judge`: a causal LM behind an OpenAI-compatible chat-completions endpoint.

So the AI judge's HTTP path can be exercised (and used) without an external service: the same
request a judge sends to vLLM, llama.cpp's server or a hosted API works here, served by any
model prefloop loads (`tiny` in tests, the embedded default, a local path).

    POST /v1/chat/completions   {"model", "messages", "max_tokens"=16, "temperature"=0,
                                 "logprobs"=false, "top_logprobs"=0..20, "logit_bias"={id: bias}}
        -> {"object": "chat.completion", "model", "choices": [{"index": 0,
             "message": {"role": "assistant", "content"}, "finish_reason",
             "logprobs": {"content": [{"token", "logprob", "top_logprobs": [{"token", "logprob"}]}]}}],
            "usage": {...}}
    GET  /v1/models             -> {"object": "list", "data": [{"id": <model name>}]}

Deviations from OpenAI's API: one choice (n = 1); with logprobs, only the first generated
token's log-probabilities are returned (that is what a judge reads); `logit_bias` (token id ->
bias added to the logits) applies to that first token's distribution and, with max_tokens = 1,
to the token returned. Requests are served one at a time (a lock around the model).
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # OpenAI clients send fields we ignore (user, stream=false ...)
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int = Field(default=16, ge=1, le=4096)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    logprobs: bool = False
    top_logprobs: int = Field(default=0, ge=0, le=20)
    logit_bias: dict[str, float] | None = None
    seed: int | None = None


def create_judge_app(model: str = "tiny", device: str = "cpu"):
    """A FastAPI app serving `model` (loaded once)."""
    from fastapi import FastAPI, HTTPException

    from prefloop.teachers.lm import LocalChatModel

    lm = LocalChatModel(model, device=device)
    lock = threading.Lock()
    app = FastAPI(title="prefloop judge server (OpenAI-compatible chat completions)")

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": lm.name, "object": "model"}]}

    @app.post("/v1/chat/completions")
    def completions(req: ChatRequest) -> dict[str, Any]:
        chat = [{"role": m.role, "content": m.content} for m in req.messages]
        try:
            bias = {int(k): float(v) for k, v in (req.logit_bias or {}).items()}
        except ValueError:
            raise HTTPException(400, "logit_bias keys must be token ids") from None
        if any(not 0 <= k < len(lm.tokenizer) for k in bias):
            raise HTTPException(400, f"logit_bias: token ids must be in 0..{len(lm.tokenizer) - 1}")
        with lock:
            logprobs = None
            if req.logprobs or req.max_tokens == 1:
                first = lm.next_token_logprobs([chat], bias)[0]
            if req.max_tokens == 1:
                top_id = int(first.argmax())
                text, finish = lm.token_text(top_id), "length"
            else:
                text = lm.chat(
                    [chat], max_tokens=req.max_tokens, temperature=req.temperature, seed=req.seed or 0
                )[0]
                finish = "stop"
            if req.logprobs:
                k = max(req.top_logprobs, 1)
                values, ids = first.topk(k)
                top = [{"token": lm.token_text(int(i)), "logprob": float(v)} for v, i in zip(values, ids)]
                logprobs = {
                    "content": [
                        {
                            "token": top[0]["token"],
                            "logprob": top[0]["logprob"],
                            "top_logprobs": top[: req.top_logprobs],
                        }
                    ]
                }
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": lm.name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish,
                    "logprobs": logprobs,
                }
            ],
            "usage": {
                "prompt_tokens": len(lm.encode(chat)),
                "completion_tokens": req.max_tokens,
                "total_tokens": 0,
            },
        }

    app.state.lm = lm
    return app


@dataclass
class ServeJudgeConfig:
    """Serve a causal LM as an OpenAI-compatible chat-completions endpoint (for AI judges)."""

    config: str | None = None
    """YAML file with values for any of these fields; flags override it."""
    model: str = "default"
    """Model to serve: 'default' (embedded SmolLM2-135M-Instruct), 'tiny', a local path or a hub id."""
    host: str = "127.0.0.1"
    """Interface to listen on."""
    port: int = 8001
    """Port to listen on (the endpoint is http://HOST:PORT/v1)."""
    device: str = "cpu"
    """'cpu', 'cuda', 'auto' ..."""


def main(argv: list[str], command: str = "serve-judge") -> None:
    import uvicorn

    from prefloop.config import parse_args

    cfg = parse_args(ServeJudgeConfig, argv, prog=f"prefloop {command}", description=ServeJudgeConfig.__doc__)
    app = create_judge_app(cfg.model, cfg.device)
    print(f"judge endpoint: http://{cfg.host}:{cfg.port}/v1 (model {app.state.lm.name})", flush=True)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning")
