"""The one global switch for value checks.

Value checks (hyperparameter domains, and in ``"strict"`` mode impossible
observations) are written with :func:`equinox.error_if`, so they raise inside
``jax.jit``, ``jax.vmap`` and ``jax.grad``. The mode is a JAX configuration option
(``likelax_checks``) and part of the ``jax.jit`` cache key: switching it makes the
next call retrace, so a compiled function never runs with a stale mode. Set it with
:func:`set_checks`, the :func:`checks` context manager, or the environment variable
``LIKELAX_CHECKS=off|on|strict`` (read at import). With ``"off"`` no check is staged,
so the compiled program carries no callback and costs nothing.

| mode | hyperparameter domains | impossible observations (``nll = +inf``) |
|---|---|---|
| ``"off"`` | not checked (invalid values give NaN) | return ``+inf`` |
| ``"on"`` (default) | raise, naming the field | return ``+inf`` |
| ``"strict"`` | raise, naming the field | raise |
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Literal

CheckMode = Literal["off", "on", "strict"]
_MODES = ("off", "on", "strict")


def _parse(mode: object) -> CheckMode:
    if mode is True:
        return "on"
    if mode is False:
        return "off"
    if isinstance(mode, str) and mode.lower() in _MODES:
        return mode.lower()  # type: ignore[return-value]
    raise ValueError(f"checks: expected one of {_MODES} (or True/False), got {mode!r}.")


class _Fallback:
    """Module-level state, used only if JAX's config API is unavailable."""

    def __init__(self, value: CheckMode):
        self.value = value


def _make_state():
    default = _parse(os.environ.get("LIKELAX_CHECKS", "on"))
    try:  # a JAX config option: part of the jit cache key, so a switch retraces
        from jax._src import config as jax_config

        return jax_config.enum_state(
            name="likelax_checks",
            enum_values=list(_MODES),
            default=default,
            help="likelax value checks: off | on | strict.",
            include_in_jit_key=True,
            include_in_trace_context=True,
        )
    except Exception:  # pragma: no cover - older/newer JAX without this API
        return _Fallback(default)


_STATE = _make_state()


def get_checks() -> CheckMode:
    """The current check mode: ``"off"``, ``"on"`` or ``"strict"``."""
    return _STATE.value  # type: ignore[return-value]


def set_checks(mode: bool | CheckMode) -> None:
    """Set the global check mode (see the module docstring)."""
    mode = _parse(mode)
    if isinstance(_STATE, _Fallback):
        _STATE.value = mode
    else:
        import jax

        jax.config.update("likelax_checks", mode)


@contextlib.contextmanager
def checks(mode: bool | CheckMode) -> Iterator[None]:
    """Context manager form of :func:`set_checks`, restoring the old mode on exit."""
    old = get_checks()
    set_checks(mode)
    try:
        yield
    finally:
        set_checks(old)
