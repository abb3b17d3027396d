"""``LocalBackend``: a transformers causal LM served in-process, with dynamic batching.

Requests that arrive within a short window (``batch_window_ms``) are decoded together as one
batch, one forward pass per step for all of them: Skeleton-of-Thought's parallel expansions and
concurrent clients depend on it, because a 135M model on a CPU is bound by per-step overhead,
not by arithmetic, so eight rows cost little more than one. A request that arrives while a batch
runs joins it at the next step (continuous batching, ``running.py``). Every row keeps its own sampling
settings, stop strings and length; finished rows leave the batch (their KV cache rows are
dropped). Generation runs on one worker thread that owns the model, never on the event loop;
tokens travel back to the caller's loop through an asyncio queue, so streaming is token by token.

A batch of exactly one row (a request alone in its batch, with ``n=1``) takes the single-sequence
path (``single_row.py``): its prompt reuses the KV cache of the longest cached prefix (an LRU of
earlier requests' caches), and its decoding is speculative: drafters (prompt lookup, retrieval
from earlier outputs and hints, an optional draft model) propose tokens that the model verifies in
one forward pass, so greedy output is unchanged. Per request: ``request.option("draft")``. When
another request arrives, that row stops drafting and joins a batch with it.

Rows that start or join a batch reuse cached prompt prefixes too (``batch_prefill.py``): a
prompt that starts with a cached prefix runs only the rest, and every prompt prefilled in a batch
is kept for later requests.

Known limits: there is no paged KV cache: memory grows with batch x length, and joining copies
the batch's cache. A newcomer's prefill pauses the running rows for one pass (no chunked prefill).
Batched rows do not draft.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

from tokenlean.backends.local.batch_prefill import BatchPrefill
from tokenlean.backends.local.decoding import RowDecoder, SamplingSettings
from tokenlean.backends.local.drafting.model import DraftModel
from tokenlean.backends.local.drafting.retrieval import DraftDatastore, request_hints
from tokenlean.backends.local.drafting.session import DraftOptions, DraftPolicy, parse_draft_mode
from tokenlean.backends.local.grammar import GrammarCompiler
from tokenlean.backends.local.jobs import Job, eos_ids, row_generator, send_token
from tokenlean.backends.local.kv import is_sliding, new_cache
from tokenlean.backends.local.packed import use_fast_kernels
from tokenlean.backends.local.penalties import penalties_for
from tokenlean.backends.local.prefix_cache import PrefixCache
from tokenlean.backends.local.running import Entry, RunningBatch
from tokenlean.backends.local.single_row import DraftPlan, SingleRowDecoder
from tokenlean.backends.local.structured import (
    StructuredPlan,
    chat_messages,
    refuse_unreadable_parts,
    structured_plan,
)
from tokenlean.backends.local.unsupported import refuse_unsupported_sampling
from tokenlean.errors import BackendError, BadRequestError, ConfigError, ContextLengthError
from tokenlean.middleware.stage import Capabilities
from tokenlean.middleware.types import Chunk, Request, Response
from tokenlean.models import resolve_model_dir
from tokenlean.threads import decode_threads

__all__ = ["LocalBackend"]

log = logging.getLogger(__name__)


class LocalBackend:
    """Serve a local Hugging Face causal LM (default: the embedded SmolLM2-135M-Instruct).

    Drafting: ``draft`` is the default mode ("auto", "off", "lookup", "retrieval", "model");
    ``draft_model`` a smaller local model (folder or .gguf, any tokenizer) for "model"/"auto";
    ``draft_policy`` the draft length and cost figures of the adaptive switch; ``datastore`` the
    retrieval drafter's store of earlier outputs (pass one to share or pre-fill it).
    Prefix reuse: ``prefix_cache_entries`` caches kept (0 turns reuse off), ``prefix_cache_bytes``.
    ``fast_kernels``: packed CPU weights, grouped attention (``backends/local/packed.py``):
    faster decoding, cheap verification of drafts, for twice the linear layers' memory.
    ``threads``: torch intra-op threads, set for the whole process when the backend is built (default:
    ``decode_threads``, 1 for a small model).
    """

    # tools and response formats by grammar-constrained decoding (``grammar.py``); text parts only
    capabilities = Capabilities(
        streaming=True, logprobs=True, n=True, batching=True, tools=True, response_format=True
    )
    # per-call options it reads (``tokenlean.middleware.options``): x-tokenlean-draft-mode, ...
    options_models: ClassVar[Mapping[str, type[DraftOptions]]] = {"draft": DraftOptions}

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        name: str | None = None,
        max_batch_size: int = 16,
        batch_window_ms: float = 5.0,
        default_max_tokens: int = 512,
        draft: str = "auto",
        draft_model: str | Path | None = None,
        draft_policy: DraftPolicy | Mapping[str, Any] | None = None,
        datastore: DraftDatastore | None = None,
        prefix_cache_entries: int = 8,
        prefix_cache_bytes: int = 512 * 2**20,
        threads: int | None = None,
        fast_kernels: bool = True,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_dir = resolve_model_dir(model)
        self.name = name or self.model_dir.name
        self.tokenizer: Any = AutoTokenizer.from_pretrained(str(self.model_dir))
        loaded: Any = AutoModelForCausalLM.from_pretrained(str(self.model_dir), dtype=torch.float32)
        self.model: Any = loaded.eval()
        self.context_length = int(getattr(self.model.config, "max_position_embeddings", 2048))
        self.threads = threads if threads is not None else decode_threads(self.model)
        torch.set_num_threads(self.threads)  # the whole process's, before any stage runs a pass
        self.fast_kernels = fast_kernels and use_fast_kernels(self.model)
        self.max_batch_size = max_batch_size
        self.batch_window = batch_window_ms / 1000
        self.default_max_tokens = default_max_tokens
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.eos_ids = frozenset(eos_ids(self.model, self.tokenizer))
        self.grammars = GrammarCompiler(self.tokenizer, self.eos_ids, int(self.model.config.vocab_size))
        # transformers renamed ``past_key_values`` to ``cache``; pass whichever this version takes
        self._cache_kw = (
            "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        )
        policy = DraftPolicy.of(draft_policy).resolve(fast_kernels=self.fast_kernels)
        self.draft_model: DraftModel | None = None
        if draft_model:
            folder, cost = resolve_model_dir(draft_model), policy.draft_model_cost
            self.draft_model = DraftModel(folder, self.tokenizer, cost=cost, fast_kernels=fast_kernels)
            self.draft_model.calibrate(self.model)
        try:
            self.draft_mode = parse_draft_mode(draft, "auto", has_model=self.draft_model is not None)
        except BadRequestError as exc:  # a constructor argument: a configuration error, not a request's
            raise ConfigError(exc.message, param="draft") from exc
        self.datastore = datastore if datastore is not None else DraftDatastore()
        self.prefix_cache = (
            PrefixCache(max_entries=prefix_cache_entries, max_bytes=prefix_cache_bytes)
            if prefix_cache_entries > 0
            else None
        )
        self.single = SingleRowDecoder(
            self.model,
            self.tokenizer,
            policy=policy,
            prefix_cache=self.prefix_cache,
            datastore=self.datastore,
            draft_model=self.draft_model,
            context_length=self.context_length,
            encode_for_draft=self._encode_for_draft,
        )
        batch_prefixes = None if is_sliding(new_cache(self.model)) else self.prefix_cache  # batch_prefill.py
        self._prefill = BatchPrefill(self.model, self._forward, self._step, self.pad_id, batch_prefixes)
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._backlog: list[Job] = []  # taken from the queue but too wide to join (worker thread only)
        self._worker = threading.Thread(target=self._work, name="tokenlean-local-backend", daemon=True)
        self._worker.start()
        self.batches_run = 0  # observable: how many generate batches ran (tests check batching)

    def models(self) -> list[str]:
        """The one model this backend serves."""
        return [self.name]

    def encode(self, request: Request, structured: StructuredPlan | None = None) -> list[int]:
        """Token ids of the prompt: the chat template applied to ``messages``, or the raw ``prompt``."""
        if request.prompt is not None:
            return list(self.tokenizer.encode(request.prompt, add_special_tokens=False))
        messages = chat_messages(request, structured or StructuredPlan())  # tools as system text
        if not getattr(self.tokenizer, "chat_template", None):  # a base model: plain "role: text" turns
            text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
            return list(self.tokenizer.encode(text))
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return list(ids)

    def _encode_for_draft(self, request: Request) -> list[int]:
        """The prompt in the draft model's tokenizer (its chat template where it has one)."""
        assert self.draft_model is not None
        tokenizer = self.draft_model.tokenizer
        if request.prompt is not None or not getattr(tokenizer, "chat_template", None):
            joined = "\n".join(m.content for m in request.messages)
            text = request.prompt if request.prompt is not None else joined
            return list(tokenizer.encode(text, add_special_tokens=False))
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        return list(ids["input_ids"] if hasattr(ids, "keys") else ids)

    def _plan(self, request: Request) -> DraftPlan:
        """The request's drafting choice (validated: a bad value is the caller's 400)."""
        has_model = self.draft_model is not None
        mode = parse_draft_mode(request.option("draft"), self.draft_mode, has_model=has_model)
        hints = request_hints(request) if mode in ("auto", "retrieval") else []
        encoded = tuple(tuple(self.tokenizer.encode(text, add_special_tokens=False)) for text in hints)
        return DraftPlan(mode, encoded, request)

    async def complete(self, request: Request) -> Response:
        """Queue ``request`` for the next batch; stream or collect its tokens."""
        if not request.messages and request.prompt is None:
            raise BadRequestError("messages must not be empty", param="messages")
        refuse_unsupported_sampling(request)
        refuse_unreadable_parts(request)
        structured = structured_plan(request)
        penalties = penalties_for(request, self.grammars.vocab_size)
        plan = self._plan(request)
        if structured.constrained or penalties:  # drafts are verified against the plain distribution
            plan = DraftPlan("off")
        prompt_ids = self.encode(request, structured)
        settings = self._settings(request, len(prompt_ids))
        loop = asyncio.get_running_loop()
        shapers = await asyncio.to_thread(
            self.grammars.shapers, structured.grammar, request.n, structured.param, penalties
        )
        rows = [
            RowDecoder(
                settings, self.tokenizer, self.eos_ids, row_generator(settings.seed, i), shapers=shaping
            )
            for i, shaping in enumerate(shapers)
        ]
        job = Job(prompt_ids, rows, loop, asyncio.Queue(), plan, readers=structured.readers(request.n))
        self._jobs.put(job)
        response = Response(model=self.name, stream=self._chunks(job))
        return response if request.stream else await response.aread()

    def _settings(self, request: Request, prompt_tokens: int) -> SamplingSettings:
        room = self.context_length - prompt_tokens
        if room <= 0:
            raise ContextLengthError(
                f"the prompt has {prompt_tokens} tokens; the model's context is {self.context_length}",
                param="messages",
            )
        max_tokens = (
            request.max_tokens if request.max_tokens is not None else min(room, self.default_max_tokens)
        )
        if max_tokens > room:
            raise ContextLengthError(
                f"max_tokens={max_tokens} plus the prompt's {prompt_tokens} tokens exceed the model's "
                f"context of {self.context_length}",
                param="max_tokens",
            )
        return SamplingSettings(
            temperature=1.0 if request.temperature is None else request.temperature,
            top_p=1.0 if request.top_p is None else request.top_p,
            seed=request.seed,
            max_tokens=max_tokens,
            stop=request.stop,
            logprobs=request.logprobs,
            top_logprobs=request.top_logprobs or 0,
        )

    @staticmethod
    async def _chunks(job: Job) -> AsyncIterator[Chunk]:
        try:
            while True:
                item = await job.chunks.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            job.cancelled = True  # the consumer stopped (finished, disconnected or failed)

    async def aclose(self) -> None:
        """Stop the worker thread after the batch in progress."""
        self._jobs.put(None)
        await asyncio.to_thread(self._worker.join, 30)

    # --- the worker thread -------------------------------------------------------------

    def _work(self) -> None:
        import torch

        torch.set_num_threads(self.threads)  # again on this thread (see tokenlean.threads)
        while True:
            batch = self._collect()
            if batch is None:
                return
            # counted before it runs: a caller that has its answer always sees its batch counted
            self.batches_run += 1
            try:
                with torch.inference_mode():
                    self._generate(batch)
            except Exception as exc:  # the model failed: every caller in the batch hears of it
                log.exception("local generation failed")
                for job in batch:  # newcomers that joined mid-way were appended to ``batch``
                    job.send(BackendError(f"local model failed: {type(exc).__name__}: {exc}"))

    def _collect(self) -> list[Job] | None:
        first = self._backlog.pop(0) if self._backlog else self._jobs.get()
        if first is None:
            return None
        batch, rows = [first], len(first.rows)
        deadline = time.monotonic() + self.batch_window
        while rows < self.max_batch_size:
            try:
                job = self._jobs.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is None:
                self._jobs.put(None)  # keep the stop signal for after this batch
                break
            batch.append(job)
            rows += len(job.rows)
        return [job for job in batch if not job.cancelled]

    def _waiting(self) -> bool:
        """True when a request is queued for the engine (a row alone then gives way to it)."""
        return bool(self._backlog) or not self._jobs.empty()

    def _newcomers(self, room: int) -> list[Job]:
        """Queued jobs that fit in ``room`` rows, taken without waiting; the rest keep their turn."""
        taken: list[Job] = []
        while self._waiting():
            job = self._backlog.pop(0) if self._backlog else self._jobs.get_nowait()
            if job is None:
                self._jobs.put(None)  # the stop signal: finish the rows already running first
                break
            if job.cancelled:
                continue
            if len(job.rows) > room:
                self._backlog.insert(0, job)
                break
            taken.append(job)
            room -= len(job.rows)
        return taken

    def _generate(self, batch: list[Job]) -> None:
        """Decode ``batch``, letting queued requests join between steps (``running.py``).

        Jobs that join are appended to ``batch``, so a failure reaches their callers too.
        """
        entries = self._entries(batch)
        if not entries:
            return
        running = self._generate_single(batch[0]) if len(entries) == 1 else self._prefill(entries)
        while running is not None and running.entries:
            room = self.max_batch_size - len(running.entries)
            newcomers = self._newcomers(room) if room > 0 else []
            if newcomers:
                batch += newcomers
                running.absorb(self._prefill(self._entries(newcomers)))
            running.choose(running.advance(self._forward), self._step)

    @staticmethod
    def _entries(jobs: list[Job]) -> list[Entry]:
        return [(job, index, row) for job in jobs for index, row in enumerate(job.rows)]

    def _generate_single(self, job: Job) -> RunningBatch | None:
        """One row alone: prefix reuse and drafting (``single_row.py``) until another request comes."""
        row = job.rows[0]
        job.events, handover = self.single.run(
            job.prompt_ids,
            row,
            job.plan,
            lambda token: send_token(job, 0, row, token),
            lambda: job.cancelled,
            self._waiting,
        )
        if handover is not None:
            return RunningBatch.of_one((job, 0, row), handover.cache, handover.cached_tokens, handover.token)
        self._close_row(job, 0, row)
        return None

    def _forward(self, input_ids: Any, mask: Any, positions: Any, cache: Any) -> Any:
        out = self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,  # only the last position chooses a token; spares the prefill's vocab projection
            **{self._cache_kw: cache},
        )
        return out.logits[:, -1, :]

    def _step(self, entry: Entry, logits: Any) -> int:
        """Choose one row's next token and send what it produced."""
        job, index, row = entry
        if job.cancelled:
            row.force_finish("cancelled")
            token = self.pad_id
        else:
            token = row.choose(logits)
            send_token(job, index, row, token)
        if row.done:
            self._close_row(job, index, row)
        return token

    def _close_row(self, job: Job, index: int, row: RowDecoder) -> None:
        text, calls, reason = job.readers[index].finish(row.finish_reason) if job.readers else ("", (), None)
        job.send(Chunk(index, text, reason or row.finish_reason, tool_calls=calls))
        if row.finish_reason != "cancelled":
            self.datastore.add(row.token_ids)  # earlier outputs feed the retrieval drafter
        job.open_rows -= 1
        if job.open_rows == 0:
            job.send(Chunk(usage=job.usage(), events=tuple(job.events)))
            job.send(None)
