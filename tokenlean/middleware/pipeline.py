"""``Pipeline``: stages folded around a backend, with a failure policy per stage.

The fold is the one Starlette uses for its middleware stack: the last stage wraps the backend,
the one before it wraps that, and so on, so ``stages[0]`` sees the request first and the
response last.

Failure policy. An optimisation that breaks must never cost the answer, so by default a stage's
own exception is *bypassed*: the request goes on to the rest of the pipeline as if the stage
were not there, and a ``bypassed`` event records why. With policy ``raise`` the error propagates,
a foreign exception wrapped in ``StageError`` so every front-end can promise typed errors.
A ``BadRequestError`` (an unknown pool, a bad option) always propagates: it is the caller's to fix.
An exception that came up *through* ``call_next`` (the backend or a later stage failed) is never
bypassed: retrying it through a bypass would only repeat the failure and double the traffic.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

from tokenlean.errors import BadRequestError, ConfigError, StageError, TokenleanError
from tokenlean.middleware.stage import Backend, Handler, Stage
from tokenlean.middleware.types import Event, Request, Response

__all__ = ["FailurePolicy", "Pipeline"]

FailurePolicy = Literal["raise", "bypass"]

log = logging.getLogger(__name__)


class _FromBelow(Exception):
    """Carries an exception raised below a stage up through it, so policy can tell it apart."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(str(original))
        self.original = original


class _BelowClock:
    """Wall time during which at least one ``call_next`` of a stage was running.

    A stage that calls down several times at once (SoT's points, a cascade's samples) must not
    have the concurrent calls' times added up: its own time would come out negative.
    """

    def __init__(self) -> None:
        self.ms = 0.0
        self._active = 0
        self._since = 0.0

    def enter(self) -> None:
        if self._active == 0:
            self._since = time.perf_counter()
        self._active += 1

    def leave(self) -> None:
        self._active -= 1
        if self._active == 0:
            self.ms += (time.perf_counter() - self._since) * 1000


class Pipeline:
    """Run a request through ``stages`` (outermost first) and then ``backend``."""

    def __init__(
        self,
        backend: Backend,
        stages: Sequence[Stage] = (),
        *,
        policies: Mapping[str, FailurePolicy] | None = None,
        default_policy: FailurePolicy = "bypass",
    ) -> None:
        self.backend = backend
        self.stages = tuple(stages)
        self.policies = dict(policies or {})
        unknown = set(self.policies) - {s.name for s in self.stages}
        if unknown:
            raise ConfigError(f"policy given for unknown stage(s): {sorted(unknown)}", param="policies")
        self.default_policy = default_policy
        handler: Handler = backend.complete
        for stage in reversed(self.stages):
            handler = self._wrap(stage, handler)
        self._handler = handler

    async def __call__(self, request: Request) -> Response:
        """Answer ``request``; errors from the backend propagate as ``TokenleanError``.

        A request using what the backend cannot do (tools, a response format, image parts...) is
        refused first, before any stage could answer it from a cache or reshape it.
        """
        self.backend.capabilities.refuse_unsupported(request)
        return await self._handler(request)

    def models(self) -> list[str]:
        """The model names a request may ask for: the backend's, then names stages answer to
        (a cascade's ``cascade:<name>``). Every front-end refuses any other name the same way."""
        names = list(self.backend.models())
        for stage in self.stages:
            extra: Callable[[], list[str]] | None = getattr(stage, "models", None)
            if extra is not None:
                names.extend(extra())
        return names

    def stage(self, name: str) -> Stage | None:
        """The stage called ``name``, if the pipeline has one."""
        return next((s for s in self.stages if s.name == name), None)

    def policy(self, stage: Stage) -> FailurePolicy:
        """What a failure of ``stage`` does: its own policy, else the pipeline's default."""
        return self.policies.get(stage.name, self.default_policy)

    async def warm_up(self) -> None:
        """Let every stage that has a ``warm_up`` load its models and data now (the proxy does this
        at startup), so the first request does not pay for them. A stage that fails to warm up is
        handled by its policy: ``raise`` stops here, ``bypass`` logs it and loads on first use."""
        for stage in self.stages:
            warm_up = getattr(stage, "warm_up", None)
            if warm_up is None:
                continue
            try:
                await warm_up()
            except Exception:
                if self.policy(stage) == "raise":
                    raise
                log.warning("stage %s did not warm up; it loads on first use", stage.name, exc_info=True)

    async def aclose(self) -> None:
        """Close the backend and any stage that holds resources."""
        for stage in self.stages:
            close = getattr(stage, "aclose", None)
            if close is not None:
                await close()
        await self.backend.aclose()

    def _wrap(self, stage: Stage, call_next: Handler) -> Handler:
        policy = self.policy(stage)

        async def run(request: Request) -> Response:
            below = _BelowClock()

            async def marked_next(req: Request) -> Response:
                below.enter()
                try:
                    return await call_next(req)
                except Exception as exc:
                    raise _FromBelow(exc) from exc
                finally:
                    below.leave()

            started = time.perf_counter()
            try:
                response = await stage(request, marked_next)
            except _FromBelow as wrapped:
                # re-raised as it came up: its own cause (the foreign error it translates) kept
                raise wrapped.original from wrapped.original.__cause__
            except BadRequestError:
                raise  # the caller's input is wrong: bypassing would hide it
            except Exception as exc:
                if policy == "raise":
                    if isinstance(exc, TokenleanError):
                        raise
                    raise StageError(
                        f"stage {stage.name} failed: {type(exc).__name__}: {exc}", stage=stage.name
                    ) from exc
                return await self._bypass(stage, exc, request, call_next)
            own_ms = (time.perf_counter() - started) * 1000 - below.ms
            return response.with_event(Event(stage.name, "timing", round(own_ms, 3)))

        return run

    @staticmethod
    async def _bypass(stage: Stage, exc: Exception, request: Request, call_next: Handler) -> Response:
        reason = exc.message if isinstance(exc, TokenleanError) else f"{type(exc).__name__}: {exc}"
        forward = getattr(stage, "bypass_request", None)  # a stage that renamed the model undoes it
        response = await call_next(forward(request) if forward is not None else request)
        return response.with_event(Event(stage.name, "bypassed", 0.0, {"error": reason}))
