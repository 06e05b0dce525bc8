"""Every exception class resolver/ defines derives from resolver.errors.ResolverError (issue #16),
the compiled modules' included."""
import importlib
import inspect
import pkgutil

import resolver
from resolver.errors import ResolverError


def _modules():
    for info in pkgutil.walk_packages(resolver.__path__, "resolver."):
        yield importlib.import_module(info.name)


def test_every_exception_class_derives_from_the_base():
    defined = {}
    for module in _modules():
        for name, value in vars(module).items():
            if (inspect.isclass(value) and issubclass(value, BaseException)
                    and value.__module__ == module.__name__):
                defined[f"{module.__name__}.{name}"] = value
    # The walk reaches the Python modules, the packages' and the compiled ones.
    assert {"resolver.config.schema.ConfigError", "resolver.dnssec.result.ResolutionFailed",
            "resolver.dnssec.canonical.MalformedData"} <= set(defined)
    assert [name for name, cls in defined.items() if not issubclass(cls, ResolverError)] == []


def test_the_base_keeps_the_builtin_kinds():
    """Classes that were ValueErrors stay ValueErrors: callers catching those still do."""
    from resolver.dnssec.canonical import MalformedData
    from resolver.dnssec.anchors import TrustAnchorError
    from resolver.config import ConfigError
    for cls in (ConfigError, TrustAnchorError, MalformedData):
        assert issubclass(cls, ValueError) and issubclass(cls, ResolverError)
