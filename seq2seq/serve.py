"""python -m seq2seq.serve RUN_DIR [RUN_DIR ...] [--port 8000] [--beam 5] [--int8] ...

An HTTP server for trained models (FastAPI and uvicorn: pip install -e ".[serve]"), on 127.0.0.1 unless --host says
otherwise. Each RUN_DIR (a run directory, an exported model folder, or hf://owner/name) is one model, named after
its folder; --ensemble makes them one ensemble instead.

    GET  /            a page to type a sentence into and see its translation and attention
    POST /translate   {"sentences": ["A dog runs."], "beam": 5, "n_best": 1, "alpha": 0.6, "attention": false}
    GET  /models      the loaded models: recipe, precision, device, vocabulary sizes; the limits and defaults
    GET  /health      {"status": "ok"} and counters of requests, sentences, batches

The decoding options below are the defaults of every request, which may change beam, n_best and alpha, and say how
the models load. Requests that arrive together are decoded together (seq2seq/batcher.py); the checks and limits are
in seq2seq/serving.py. Precision is chosen here, at load time: a request may only name the loaded one.
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations (Request), which name types
# imported inside create_app, so they must be evaluated where the handlers are defined.
import asyncio
import contextlib
import dataclasses
import socket
import sys
import threading
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from seq2seq.batcher import Batcher, Busy, Options
from seq2seq.cli import ArgumentParser, non_negative_float, positive_float, positive_int, run_cli
from seq2seq.decoding import SERVE_FIELDS, DecodeConfig, add_decode_options, decode_config
from seq2seq.runtime import add_runtime_options, apply, runtime_from_args
from seq2seq.serving import (
    Limits,
    LoadedModel,
    MiB,
    RequestError,
    check_length_header,
    parse_translate,
    response,
    too_long,
)

INSTALL = 'the server needs FastAPI and uvicorn: pip install -e ".[serve]"'


def parse_args(argv: list[str] | None) -> tuple:
    p = ArgumentParser(prog="python -m seq2seq.serve", description=__doc__)
    p.add_argument("run_dirs", nargs="+", help="run directories or exported model folders (or hf://owner/name)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--checkpoint", default="best", help="best | last (run directories)")
    p.add_argument("--ensemble", action="store_true", help="decode the RUN_DIRs together as one ensemble")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    add_decode_options(p, SERVE_FIELDS)
    add_runtime_options(p)
    p.add_argument("--max-batch", type=positive_int, default=64, help="sentences that end a batch's collection")
    p.add_argument("--max-wait-ms", type=non_negative_float, default=5.0, help="how long a batch collects requests")
    p.add_argument("--max-sentences", type=positive_int, default=64, help="sentences per request")
    p.add_argument("--max-chars", type=positive_int, default=2000, help="characters per sentence")
    p.add_argument("--max-body-bytes", type=positive_int, default=MiB, help="bytes per request body")
    p.add_argument("--max-pending", type=positive_int, default=4096, help="sentences waiting, beyond which: 503")
    p.add_argument("--max-connections", type=positive_int, default=256, help="open connections, beyond which: 503")
    p.add_argument("--timeout-s", type=positive_float, default=60.0, help="longest wait for a translation, then 504")
    p.add_argument("--log-level", default="warning", help="uvicorn's: critical | error | warning | info | debug")
    args = p.parse_args(argv)
    return args, decode_config(args)


def load_models(paths: list[str], ensemble: bool, which: str, device: str, decode: DecodeConfig | None = None) -> dict:
    """{name: Translator}: one per path (named after its folder), or one ensemble of them all, each loaded as
    `decode` says (precision, full vocabulary, max_len_ratio, inter_threads)."""
    from seq2seq.translator import Translator

    def local(path: str) -> tuple[str, Path]:
        """(name, folder): hf://owner/name is downloaded (seq2seq/hub.py) and named after the repository."""
        if path.startswith("hf://"):
            from seq2seq.hub import resolve

            return path.rstrip("/").split("/")[-1].split("@")[0], resolve(path)
        return Path(path).resolve().name or "model", Path(path)

    named = [local(p) for p in paths]
    if ensemble:
        name = named[0][0] + (f"+{len(named) - 1}" if len(named) > 1 else "")
        return {name: Translator.from_run([f for _, f in named], which, device, decode)}
    models: dict = {}
    for first_name, folder in named:
        name, n = first_name, 2
        while name in models:
            name, n = f"{first_name}-{n}", n + 1
        models[name] = Translator.from_run(folder, which, device, decode)
    return models


def describe(name: str, translator, runs: list[str]) -> dict:
    recipe, model = translator.recipe, translator.model
    first = getattr(model, "models", [model])[0]
    return {"name": name, "runs": runs, "recipe": recipe.name, "task": recipe.task, "src_lang": recipe.data.src_lang,
            "tgt_lang": recipe.data.tgt_lang, "precision": translator.precision, "device": str(translator.device),
            "src_vocab": len(translator.src_tok), "tgt_vocab": len(translator.tgt_tok),
            "decoder_columns": first.generator.out_features}  # fmt: skip


def decode_with(models: dict, defaults: DecodeConfig):
    """The batcher's decode function: one Translator.decode call per group of requests, with the server's settings
    and the group's beam, n_best and alpha."""

    def decode(options: Options, sentences: list[str]) -> list:
        # precision None: the one the model was loaded in
        config = dataclasses.replace(defaults, beam=options.beam, n_best=options.n_best, alpha=options.alpha,
                                     precision=None)  # fmt: skip
        return models[options.model].decode(sentences, config, attention=options.attention,
                                            scores=options.n_best > 1)  # greedy search without n-best: no scores

    return decode


def create_app(models: dict, limits: Limits | None = None, decode: DecodeConfig | None = None, max_batch: int = 64,
               max_wait: float = 0.005, max_pending: int = 4096, timeout: float = 60.0, runs: dict | None = None, *,
               beam: int | None = None):  # fmt: skip
    """The FastAPI application over loaded Translators {name: translator}; the first is the default model.
    decode: the defaults of requests (DecodeConfig's own where None); beam: the same as decode's beam."""
    decode = dataclasses.replace(decode or DecodeConfig(), **({} if beam is None else {"beam": beam}))
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse

    limits = limits or Limits()
    page = resources.files("seq2seq").joinpath("static/index.html").read_text(encoding="utf-8")  # read once
    loaded = {name: LoadedModel(name, t.precision) for name, t in models.items()}
    default = next(iter(models))
    batcher = Batcher(decode_with(models, decode), max_batch, max_wait, max_pending)
    info = [describe(name, t, (runs or {}).get(name, [name])) for name, t in models.items()]
    request_defaults = {k: v for k, v in dataclasses.asdict(decode).items() if k not in ("precision", "full_vocabulary")}

    @contextlib.asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        batcher.stop()

    app = FastAPI(title="seq2seq", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.batcher = batcher

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    async def read_body(request: Request) -> bytes:
        check_length_header(request.headers.get("content-length"), limits)
        chunks, size = [], 0
        async for chunk in request.stream():  # the actual body, whatever the header said
            size += len(chunk)
            if size > limits.max_body_bytes:
                raise too_long(limits)
            chunks.append(chunk)
        return b"".join(chunks)

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "models": len(models), **batcher.stats, "pending": batcher.pending}

    @app.get("/models")
    async def list_models() -> dict:
        return {"models": info, "default_model": default, "defaults": request_defaults,
                "limits": vars(limits), "batching": {"max_batch": max_batch, "max_wait_ms": max_wait * 1000}}

    @app.post("/translate")
    async def translate(request: Request) -> JSONResponse:
        try:
            parsed = parse_translate(await read_body(request), limits, loaded, default, decode)
            future = batcher.submit(parsed.sentences, parsed.options)
        except RequestError as e:
            return error(e.status, e.message)
        except Busy as e:
            return error(503, str(e))
        try:
            results = await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except asyncio.TimeoutError:
            return error(504, f"no translation within {timeout:g} s; the server is overloaded")
        except Exception as e:  # noqa: BLE001 - the search failed: say so, keep serving
            return error(500, f"translation failed: {type(e).__name__}: {' '.join(str(e).split())}")
        return JSONResponse(response(parsed, results, models[parsed.options.model].precision))

    return app


@contextlib.contextmanager
def serve_in_thread(app, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> Iterator[str]:
    """Run `app` on a background thread (port 0: a free port) until the block ends; yields its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(500):  # up to 10 s for the lifespan start-up
            if server.started or not thread.is_alive():
                break
            threading.Event().wait(0.02)
        if not server.started:
            raise RuntimeError("the server did not start")
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


def _main(argv: list[str] | None) -> int:
    args, decode = parse_args(argv)
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError:
        print(f"error: {INSTALL}", file=sys.stderr)
        return 2
    apply(runtime_from_args(args))  # threads, malloc, kernels: before the models are loaded
    models = load_models(args.run_dirs, args.ensemble, args.checkpoint, args.device, decode)
    limits = Limits(args.max_body_bytes, args.max_sentences, args.max_chars)
    runs = {name: args.run_dirs if args.ensemble else [path] for name, path in zip(models, args.run_dirs)}
    app = create_app(models, limits, decode, args.max_batch, args.max_wait_ms / 1000, args.max_pending,
                     args.timeout_s, runs)  # fmt: skip
    names = ", ".join(f"{n} ({t.precision} on {t.device})" for n, t in models.items())
    print(f"serving {names} on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, limit_concurrency=args.max_connections,
                timeout_keep_alive=5)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
