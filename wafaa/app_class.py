"""The application's Flask class: the unit of work (wafaa.unit_of_work), and
Flask's per-call check for coroutine functions answered once per function."""

from __future__ import annotations

import inspect
import weakref

from wafaa.unit_of_work import UnitOfWorkFlask

# Function -> whether it is a coroutine function. Weak: a callable made for one
# request (after_this_request) leaves with it.
_IS_ASYNC: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class WafaaFlask(UnitOfWorkFlask):
    def ensure_sync(self, func):
        """Flask asks this of every hook and view on every request, and each
        answer inspected the function's code flags (4 % of a GET /tenants/me).
        A bound method is asked about by its function: the view class makes a
        new instance, and so a new bound method, per request."""
        target = getattr(func, "__func__", func)
        try:
            is_async = _IS_ASYNC[target]
        except (KeyError, TypeError):  # TypeError: not weakly referable
            is_async = inspect.iscoroutinefunction(func)
            try:
                _IS_ASYNC[target] = is_async
            except TypeError:
                pass
        return self.async_to_sync(func) if is_async else func
