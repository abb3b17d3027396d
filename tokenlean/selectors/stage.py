"""``DemoStage``: put retrieved demonstrations into a chat request (stage name ``demos``).

Paper context: KATE (Liu et al., 2022) and ordering (Lu et al., ACL 2022); see ``selection.py``.
The demonstrations go right after the leading system prompt, never before it and never inside
its text: the system prompt stays first and byte-for-byte unchanged, so a server's prefix cache
(vLLM automatic prefix caching) still hits on it even though the demonstrations differ per
query. Known failure mode: a pool from another task or domain still returns "nearest"
examples; they cost tokens and mislead the model (an ordinary chat question answered
"positive"), so before selecting, a relevance test per pool (``relevance.py``: the query's
similarity to its nearest pool examples against a threshold calibrated on the pool, looser when
the request names a classification pool's labels, or an explicit ``route``) decides whether the
pool's demonstrations apply at all.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from tokenlean.errors import BadRequestError, ConfigError
from tokenlean.middleware.stage import Handler
from tokenlean.middleware.types import Event, Message, Request, Response
from tokenlean.selectors.examples import Example
from tokenlean.selectors.options import (
    DemoCallOptions,
    DemoSpecOptions,
    entry_threshold,
    parse_request_options,
    pool_from_entry,
)
from tokenlean.selectors.relevance import (
    DEFAULT_RULE,
    Decision,
    PoolGate,
    Route,
    calibrate_gate,
    relevance_score,
)
from tokenlean.selectors.selection import Selection, SelectionConfig, select

if TYPE_CHECKING:
    from tokenlean.embeddings import Embedder
    from tokenlean.selectors.pool import DemoPool
    from tokenlean.tokens import TokenCounter

__all__ = ["DemoStage", "Placement"]

Placement = Literal["turns", "system"]
_LEADING_ROLES = ("system", "developer")


class DemoStage:
    """Select demonstrations for the last user turn and insert them into the request.

    ``pools`` maps a name to a ``DemoPool``, a saved pool folder, a JSONL/CSV file, or a dict
    ``{path, input_key, output_key, label_key, index, exact_threshold, save_to}``; they load on first
    use (``save_to`` keeps the embedded pool so a restart does not embed again).
    ``placement="turns"`` adds user/assistant turn pairs, ``"system"`` appends one text block to
    the system message (after its original text). Per request, ``request.option("demos")`` may
    set ``pool``, ``k``, ``budget``, ``method``, ``mmr_lambda``, ``balance``, ``placement`` or
    ``enabled`` (``False`` turns the stage off for that request); a request's ``k`` is capped at
    ``max_k``. ``budget`` is in tokens of ``tokenizer`` (a model folder; default: the embedded
    model's), template tokens included. ``tenants`` scopes pools to API keys: ``{pool: [tenant
    ids]}`` (``tokenlean.proxy.auth.tenant_id(key)``); a listed pool is invisible to every other
    tenant (an unknown pool if named, skipped if it is the default), unlisted pools are shared.

    Demonstrations are only added where they belong: ``threshold`` (``"auto"``: calibrated per
    pool, and for a classification pool looser when the leading system text or the last user turn
    names its labels, see ``relevance.py``; a cosine in [-1, 1]; ``"off"``: always add) is the default test,
    which a pool entry's ``threshold`` or ``route`` (a regular expression searched in the leading
    system text, which then decides alone) and a request's ``threshold`` override. A request that
    does not pass gets no demonstrations and a ``demos/skipped`` event with the score and threshold.
    """

    name: ClassVar[str] = "demos"
    options_model: ClassVar[type[DemoCallOptions]] = DemoCallOptions
    spec_model: ClassVar[type[DemoSpecOptions]] = DemoSpecOptions

    def __init__(
        self,
        *,
        pools: Mapping[str, Any] | None = None,
        pool: str | None = None,
        k: int | None = 4,
        budget: int | None = None,
        method: str = "knn",
        mmr_lambda: float = 0.5,
        balance: bool = False,
        candidates: int = 64,
        max_k: int = 64,
        placement: Placement = "turns",
        block_header: str = "Examples:",
        input_prefix: str = "Input: ",
        output_prefix: str = "Output: ",
        pair_overhead: int | None = None,
        tokenizer: str | None = None,
        embedder: Embedder | None = None,
        tenants: Mapping[str, Sequence[str]] | None = None,
        threshold: float | str = "auto",
    ) -> None:
        self._entries: dict[str, Any] = dict(pools or {})
        self._scopes = _pool_scopes(tenants or {}, self._entries)
        self.threshold = entry_threshold("*", {}, threshold)
        self._gates = {name: _gate(name, entry, self.threshold) for name, entry in self._entries.items()}
        self._calibrated: dict[str, tuple[int, PoolGate]] = {}
        self.max_k = max_k
        if pool is not None and pool not in self._entries:
            raise ConfigError(
                f"default pool {pool!r} is not among the pools: {sorted(self._entries)}", param="pool"
            )
        if placement not in ("turns", "system"):
            raise ConfigError(f"placement must be 'turns' or 'system', not {placement!r}", param="placement")
        self.default_pool = pool
        self.defaults: dict[str, Any] = {
            "k": k,
            "budget": budget,
            "method": method,
            "mmr_lambda": mmr_lambda,
            "balance": balance,
            "candidates": candidates,
            "placement": placement,
        }
        SelectionConfig(
            k=k, budget=budget, method=method, mmr_lambda=mmr_lambda, balance=balance
        )  # validate now
        self.block_header, self.input_prefix, self.output_prefix = block_header, input_prefix, output_prefix
        self._pair_overhead = pair_overhead
        self._tokenizer_dir = tokenizer
        self._counter: TokenCounter | None = None
        self._embedder = embedder
        self._pools: dict[str, DemoPool] = {}
        self._load_lock = threading.Lock()
        self._cost = lru_cache(maxsize=65_536)(self._uncached_cost)

    # pools ----------------------------------------------------------------------------------

    @property
    def pool_names(self) -> list[str]:
        """Every pool this stage can use."""
        return sorted(self._entries)

    def add_pool(self, name: str, pool: DemoPool | Any, *, tenants: Sequence[str] | None = None) -> None:
        """Make ``pool`` (or a path/dict entry, loaded on first use) available under ``name``,
        to ``tenants`` only when given."""
        with self._load_lock:
            self._entries[name] = pool
            self._gates[name] = _gate(name, pool, self.threshold)
            self._calibrated.pop(name, None)
            self._pools.pop(name, None)
            self._scopes.pop(name, None)
            if tenants is not None:
                self._scopes.update(_pool_scopes({name: tenants}, self._entries))

    def visible_pools(self, tenant: str | None) -> list[str]:
        """The pools ``tenant`` may use: the shared ones and those scoped to it."""
        return [name for name in self.pool_names if self._visible(name, tenant)]

    def _visible(self, name: str, tenant: str | None) -> bool:
        scope = self._scopes.get(name)
        return name in self._entries and (scope is None or tenant in scope)

    @staticmethod
    def _known(name: str, known: list[str]) -> None:
        """``BadRequestError`` naming the pools the caller may use, unless ``name`` is one of them."""
        if name not in known:
            raise BadRequestError(
                f"unknown demonstration pool {name!r}; known: {', '.join(known) or 'none'}",
                param="tokenlean.demos.pool",
            )

    def pool(self, name: str) -> DemoPool:
        """The pool called ``name``, loading (and embedding, for a plain file) it on first use."""
        self._known(name, self.pool_names)
        with self._load_lock:
            if name not in self._pools:
                self._pools[name] = pool_from_entry(name, self._entries[name], embedder=self._embedder)
            return self._pools[name]

    # the stage ------------------------------------------------------------------------------

    async def __call__(self, request: Request, call_next: Handler, /) -> Response:
        """Insert demonstrations chosen for the last user turn, then call the rest of the pipeline."""
        settings = parse_request_options(
            request.option(self.name), self.defaults, self.default_pool, max_k=self.max_k
        )
        if settings is None:
            return await call_next(request)
        pool_name, config, placement = settings
        if not self._visible(pool_name, request.tenant) and not _names_pool(request.option(self.name)):
            return await call_next(request)  # the default pool is another tenant's: no demonstrations
        # an unknown (or another tenant's) pool is the caller's error even when nothing would be added
        self._known(pool_name, self.visible_pools(request.tenant))
        query = request.last_user_text
        if not query.strip():
            return await call_next(request)
        if request.step_aside_reason is not None:  # demos would teach free text to a tool/JSON request
            event = Event(self.name, "skipped", 0.0, {"pool": pool_name, "reason": request.step_aside_reason})
            return (await call_next(request)).with_event(event)
        options = request.option(self.name)
        gate = options.get("threshold") if isinstance(options, Mapping) else None  # validated above
        system = "\n".join(m.content for m in request.messages if m.role in _LEADING_ROLES)
        decision, selection, embed_ms = await asyncio.to_thread(
            self._select, pool_name, query, config, placement, (gate, system)
        )
        if selection is None:
            return (await call_next(request)).with_event(_skipped(pool_name, decision, embed_ms))
        rewritten, added = self.insert(request, selection.examples, placement)
        response = await call_next(rewritten)
        event = _event(pool_name, config, placement, selection, added, decision, embed_ms)
        return response.with_event(event)

    def _select(
        self, pool_name: str, query: str, config: SelectionConfig, placement: Placement, test: tuple[Any, str]
    ) -> tuple[Decision | None, Selection | None, float]:
        """The relevance decision, then the selection if it passed, and the query embedding's ms.

        ``test`` is (the request's threshold or ``None``, the leading system text for a route).
        """
        pool = self.pool(pool_name)
        gate = self._gates[pool_name] if test[0] is None else test[0]
        started = time.perf_counter()
        decision, vector = None, None
        if isinstance(gate, Route):
            decision = gate.decide(test[1])
        elif gate != "off":
            vector = pool.embed_query(query)
            score = relevance_score(pool, vector, DEFAULT_RULE.k)
            if gate == "auto":  # a classification pool also asks whether the request names its labels
                pool_gate, request_text = self._pool_gate(pool_name, pool), f"{test[1]}\n{query}"
                query, vector, score = pool_gate.nearer_reading(pool, query, vector, score)
                decision = pool_gate.decide(score, request_text)
            else:
                passed = score >= float(gate)
                decision = Decision(passed, "similar" if passed else "not similar", score, float(gate))
        embed_ms = (time.perf_counter() - started) * 1000
        if decision is not None and not decision.applies:
            return decision, None, embed_ms
        selection = select(
            pool, query, config, cost=lambda example: self._cost(example, placement), query_vector=vector
        )
        return decision, selection, embed_ms

    async def warm_up(self) -> None:
        """Load every pool (embedding a plain file's examples), calibrate its relevance gate and load
        the query embedder and token counter now: a pool that takes minutes to embed does so before
        traffic, not in the first request that names it."""
        await asyncio.to_thread(self._load_everything)

    def _load_everything(self) -> None:
        for name in self.pool_names:
            pool = self.pool(name)
            pool.embed_query("What is this text about?")
            if self._gates[name] == "auto":
                self._pool_gate(name, pool)
        self.counter.count("What is this text about?")

    def _pool_gate(self, name: str, pool: DemoPool) -> PoolGate:
        """The pool's calibrated gate, computed again once the pool has grown by a tenth."""
        cached = self._calibrated.get(name)
        if cached is None or abs(len(pool) - cached[0]) > 0.1 * cached[0]:
            cached = (len(pool), calibrate_gate(pool))
            self._calibrated[name] = cached
        return cached[1]

    # formatting -----------------------------------------------------------------------------

    @property
    def counter(self) -> TokenCounter:
        """The target model's token counter, loaded on first use."""
        if self._counter is None:
            from tokenlean.tokens import shared_token_counter

            self._counter = shared_token_counter(self._tokenizer_dir)
        return self._counter

    @property
    def pair_overhead(self) -> int:
        """Template tokens around one user/assistant pair (measured from the chat template)."""
        if self._pair_overhead is None:
            self._pair_overhead = _measured_pair_overhead(self.counter)
        return self._pair_overhead

    def _uncached_cost(self, example: Example, placement: Placement) -> int:
        if placement == "turns":
            counted = self.counter.count(example.input) + self.counter.count(example.output)
            return counted + self.pair_overhead
        return self.counter.count(self.format_demo(example)) + 1  # +1: the blank line between demos

    def format_demo(self, example: Example) -> str:
        """One demonstration as text for the system block."""
        return f"{self.input_prefix}{example.input}\n{self.output_prefix}{example.output}"

    def format_block(self, examples: tuple[Example, ...]) -> str:
        """The system-message block: the header, then the demonstrations separated by blank lines."""
        body = "\n\n".join(self.format_demo(e) for e in examples)
        return f"{self.block_header}\n\n{body}" if self.block_header else body

    def insert(
        self, request: Request, examples: tuple[Example, ...], placement: Placement
    ) -> tuple[Request, int]:
        """The request with ``examples`` placed after the system prompt, and the tokens that added.

        Public so that a caller with its own selection (a benchmark, a fixed block) formats
        demonstrations exactly as the stage does.
        """
        if not examples:
            return request, 0
        if request.prompt is not None and not request.messages:  # legacy text completion
            block = self.format_block(examples)
            return request.replace(prompt=f"{block}\n\n{request.prompt}"), self.counter.count(block) + 1
        messages = list(request.messages)
        start = 0
        while start < len(messages) and messages[start].role in _LEADING_ROLES:
            start += 1
        if placement == "turns":
            turns = [m for e in examples for m in (Message("user", e.input), Message("assistant", e.output))]
            added = sum(self._cost(e, placement) for e in examples)
            return request.replace(messages=[*messages[:start], *turns, *messages[start:]]), added
        block = self.format_block(examples)
        if start == 0:
            added = self.counter.count(block) + self.pair_overhead // 2
            return request.replace(messages=[Message("system", block), *messages]), added
        last = messages[start - 1]
        messages[start - 1] = Message(last.role, f"{last.content}\n\n{block}", last.name)
        return request.replace(messages=messages), self.counter.count(block) + 1


def _pool_scopes(
    tenants: Mapping[str, Sequence[str]], entries: Mapping[str, Any]
) -> dict[str, frozenset[str]]:
    """Validate ``{pool: [tenant ids]}`` against the pools; a typo must fail at startup."""
    scopes: dict[str, frozenset[str]] = {}
    for name, ids in tenants.items():
        if name not in entries:
            raise ConfigError(
                f"tenants: no pool named {name!r}; pools: {sorted(entries)}", param=f"tenants.{name}"
            )
        if isinstance(ids, str) or not all(isinstance(i, str) and i for i in ids):
            raise ConfigError(f"tenants.{name}: give a list of tenant ids", param=f"tenants.{name}")
        scopes[name] = frozenset(ids)
    return scopes


def _gate(name: str, entry: Any, default: Any) -> Route | float | str:
    """A pool's relevance test from its spec entry: its ``route``, else its (or the stage's) threshold."""
    if isinstance(entry, Mapping) and entry.get("route") is not None:
        return Route.parse(entry["route"], param=f"pools.{name}.route")
    value: float | str = entry_threshold(name, entry, default)
    return value


def _names_pool(options: Any) -> bool:
    """Whether the caller chose the pool (rather than getting the stage's default)."""
    return isinstance(options, Mapping) and options.get("pool") is not None


def _measured_pair_overhead(counter: TokenCounter) -> int:
    """Tokens a chat template adds around a user/assistant pair (11 for SmolLM2's ChatML).

    Measured by rendering a conversation with and without one pair; a tokenizer without a chat
    template gets 10, a typical value.
    """
    tokenizer = getattr(counter, "tokenizer", None)
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        return 10
    base = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]
    pair = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    rendered = [
        tokenizer.apply_chat_template(chat, tokenize=False) for chat in (base, [base[0], *pair, base[1]])
    ]
    lengths = [counter.count(text) for text in rendered]
    return lengths[1] - lengths[0] - counter.count("a") - counter.count("b")


def _skipped(pool: str, decision: Decision | None, embed_ms: float) -> Event:
    """Why no demonstrations were added: the decision's reason, score and threshold."""
    data = {"pool": pool, **(decision.data() if decision else {}), "embed_ms": round(embed_ms, 3)}
    return Event(stage=DemoStage.name, action="skipped", ms=round(embed_ms, 3), data=data)


def _event(
    pool: str,
    config: SelectionConfig,
    placement: str,
    selection: Selection,
    added: int,
    decision: Decision | None,
    embed_ms: float,
) -> Event:
    total_ms = selection.ms + embed_ms  # the query was embedded once, for the relevance test
    return Event(
        stage=DemoStage.name,
        action="inserted" if selection.ids else "none",
        ms=round(total_ms, 3),
        data={
            "pool": pool,
            "method": config.method,
            "placement": placement,
            "chosen": len(selection.ids),
            "ids": list(selection.ids),
            "tokens_added": added,
            "selection_ms": round(total_ms, 3),
            "embed_ms": round(selection.embed_ms + embed_ms, 3),
            "relevance": decision.data() if decision else {"reason": "off"},
        },
    )
