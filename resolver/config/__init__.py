"""The resolver's configuration: a YAML file read into frozen dataclasses.

Every key is checked: unknown keys, wrong types (a boolean is not an integer), out-of-range
numbers, bad names and addresses all raise :class:`ConfigError`, whose message is
``"<field path>: <reason>"``, e.g. ``listen[1]: '127.0.0.1:99999': port out of range``.

The modules, each importing only those before it:

- :mod:`~resolver.config.schema`: every dataclass with its defaults, the words keys take,
  :class:`ConfigError`, and the views of a configuration for ``serve --listen`` and a worker;
- :mod:`~resolver.config.values`: the typed readers of one value each (and the time and
  ``ADDR:PORT`` parsers the command line shares);
- :mod:`~resolver.config.sections`: each top-level key but the services, with its bounds;
- :mod:`~resolver.config.services`: ``services`` and ``default_service``, the allowlists;
- :mod:`~resolver.config.parse`: the whole file, what spans sections, the YAML loader.

``check-config``'s summary is :mod:`resolver.configcheck`'s (it needs the host checks of
:mod:`resolver.preflight`, a layer above). The names below are the package's interface.
"""

from resolver.config.parse import default_config, load_config, parse_config
from resolver.config.schema import (API_TCP, API_UNIX, MODE_ENFORCE, MODE_OBSERVE,
                                    ApiConfig, DEFAULT_LISTEN, DEFAULT_SERVICE_NAME, DNSTAP_FILE,
                                    DNSTAP_UNIX, OVER_LIMIT_DROP, OVER_LIMIT_SERVFAIL,
                                    REFUSE_NXDOMAIN, REFUSE_REFUSED, REQUIRE_INSECURE_OK,
                                    REQUIRE_SECURE, AllowRule, Budgets, CacheConfig, Config,
                                    ConfigError, DnstapConfig, Endpoint, Forward, ForwardTls,
                                    LogConfig, MetricsConfig, MonitorConfig, Pin, ResolverLimits,
                                    Service, Timeouts, for_worker, open_default_service, replace_listen)
from resolver.config.sections import MAX_WORKERS, available_cores
from resolver.config.services import check_pins, parse_service, service_data
from resolver.config.values import parse_endpoint, parse_time

__all__ = [
    "API_TCP", "API_UNIX", "MODE_ENFORCE", "MODE_OBSERVE", "ApiConfig", "check_pins", "parse_service",
    "service_data", "DEFAULT_LISTEN", "DEFAULT_SERVICE_NAME", "DNSTAP_FILE", "DNSTAP_UNIX", "MAX_WORKERS",
    "OVER_LIMIT_DROP", "OVER_LIMIT_SERVFAIL", "REFUSE_NXDOMAIN", "REFUSE_REFUSED",
    "REQUIRE_INSECURE_OK", "REQUIRE_SECURE", "AllowRule", "Budgets", "CacheConfig", "Config",
    "ConfigError", "DnstapConfig", "Endpoint", "Forward", "ForwardTls", "LogConfig",
    "MetricsConfig", "MonitorConfig", "Pin", "ResolverLimits", "Service", "Timeouts", "available_cores",
    "default_config", "for_worker", "load_config", "open_default_service", "parse_config",
    "parse_endpoint", "parse_time", "replace_listen",
]
