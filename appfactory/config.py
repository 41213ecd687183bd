"""Configuration: every environment variable of the service, parsed and validated once."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


class ConfigError(ValueError):
    """Environment values the service cannot start with: every problem found, one line each."""

    def __init__(self, *problems: str) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems

    def lines(self) -> list[str]:
        """What an entry point prints: one `configuration error: ...` line per problem."""
        return [f"configuration error: {problem}" for problem in self.problems]


@dataclass(frozen=True)
class Var:
    """One documented variable: its name, default and parser."""

    name: str
    default: Any
    parse: Callable[[str, Any], Any]
    help: str


def _integer(minimum: int = 0, maximum: int | None = None) -> Callable[[str, Any], int]:
    def parse(name: str, raw: Any) -> int:
        try:
            value = int(raw)
        except (TypeError, ValueError):
            value = None
        if (
            value is None
            or isinstance(raw, bool)
            or value < minimum
            or (maximum is not None and value > maximum)
        ):
            upper = f" and at most {maximum}" if maximum is not None else ""
            raise ConfigError(f"{name} must be a whole number of at least {minimum}{upper}, got {raw!r}")
        return value

    return parse


def _number(minimum: float = 0.0) -> Callable[[str, Any], float]:
    def parse(name: str, raw: Any) -> float:
        try:
            value = float(raw)
        except (TypeError, ValueError):
            value = None
        if value is None or value != value or value < minimum:
            raise ConfigError(f"{name} must be a number of at least {readable(minimum)}, got {raw!r}")
        return value

    return parse


def _choice(*options: str) -> Callable[[str, Any], str]:
    def parse(name: str, raw: Any) -> str:
        value = str(raw).strip().lower()
        if value not in options:
            raise ConfigError(f"{name} must be one of {', '.join(options)}, got {raw!r}")
        return value

    return parse


def _url(*schemes: str) -> Callable[[str, Any], str | None]:
    def parse(name: str, raw: Any) -> str | None:
        if raw in (None, ""):
            return None
        value = str(raw).strip()
        try:
            parts = urlsplit(value)
        except ValueError:
            parts = None
        scheme = parts.scheme.split("+")[0] if parts else ""
        if not parts or scheme not in schemes or (scheme != "sqlite" and not parts.netloc):
            raise ConfigError(
                f"{name} must be a URL starting with one of {', '.join(s + '://' for s in schemes)}, "
                f"got {raw!r}"
            )
        return value

    return parse


_REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster")


def _redis_url(name: str, raw: Any) -> str | None:
    """A Redis URL of a scheme the service connects with; a Sentinel URL names its service."""
    value = _url("redis", "rediss", "unix")(name, raw)
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in _REDIS_SCHEMES:
        raise ConfigError(
            f"{name}: {parts.scheme}:// is not supported; use one of {', '.join(_REDIS_SCHEMES)}"
        )
    if parts.scheme == "redis+sentinel" and not parts.path.strip("/"):
        raise ConfigError(
            f"{name}: a Sentinel URL names its service: redis+sentinel://host:port[,host:port]/service"
        )
    return value


def readable(number: float) -> str:
    """A bound as people write it: 2147483647, 0.5 (never 2.14748e+09)."""
    return str(int(number)) if float(number).is_integer() else repr(float(number))


def _flag(name: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    value = str(raw).strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        raise ConfigError(f"{name} must be true or false, got {raw!r}")
    return value in ("true", "1", "yes", "on")


def _text(name: str, raw: Any) -> str | None:
    return None if raw in (None, "") else str(raw)


def _names(name: str, raw: Any) -> tuple[str, ...] | None:
    if raw in (None, ""):
        return None
    names = tuple(dict.fromkeys(part.strip() for part in str(raw).split(",") if part.strip()))
    if not names:
        raise ConfigError(f"{name} must be a comma-separated list of names, got {raw!r}")
    return names


def _origins(name: str, raw: Any) -> tuple[str, ...] | None:
    origins = _names(name, raw)
    for origin in origins or ():
        parts = urlsplit(origin)
        if origin == "*" or parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
            raise ConfigError(
                f"{name} must list origins as scheme://host[:port], comma-separated (no '*'), got {origin!r}"
            )
    return origins


_NETWORKS_FORM = "comma-separated addresses or CIDR networks (10.0.0.0/8,192.168.1.5)"


def _networks(name: str, raw: Any) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    parts = raw if isinstance(raw, (list, tuple)) else str(raw).split(",")
    try:
        networks = tuple(ipaddress.ip_network(str(part).strip(), strict=False) for part in parts)
    except ValueError:
        networks = ()
    if not networks:
        raise ConfigError(f"{name} must be {_NETWORKS_FORM}, got {raw!r}")
    return networks


def _proxies(name: str, raw: Any) -> int | tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """A hop count (werkzeug's ProxyFix) or the proxies' own networks."""
    if isinstance(raw, int) or str(raw).strip().isdigit():
        return _integer(0, 10)(name, raw)
    try:
        return _networks(name, raw)
    except ConfigError:
        form = f"a hop count from 0 to 10 or {_NETWORKS_FORM}"
        raise ConfigError(f"{name} must be {form}, got {raw!r}") from None


# Loopback and the private ranges: probes, a cluster's Prometheus and a local shell, not the internet.
OPS_NETWORKS = "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,127.0.0.0/8,::1/128,fc00::/7"


def _log_level(name: str, raw: Any) -> str:
    return _choice("debug", "info", "warning", "error", "critical")(name, raw).upper()


# OTEL_TRACES_SAMPLER values the OpenTelemetry SDK builds (its specification's names).
TRACE_SAMPLERS = (
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
    "always_on",
    "always_off",
    "traceidratio",
)


def _fraction(name: str, raw: Any) -> float:
    value = _number(0.0)(name, raw)
    if value > 1:
        raise ConfigError(f"{name} must be a number from 0 to 1, got {raw!r}")
    return value


# Workers when REDIS_URL is set: gunicorn's rule of thumb for a mix of CPU and I/O.
SHARED_WORKERS = (os.cpu_count() or 1) * 2 + 1

_DB_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mariadb")

VARS: tuple[Var, ...] = (
    Var(
        "DATABASE_URL",
        None,
        _url(*_DB_SCHEMES),
        "SQLAlchemy URL; default: SQLite file in the instance folder",
    ),
    Var("DB_POOL_SIZE", 10, _integer(1), "connections kept open per worker"),
    Var("DB_MAX_OVERFLOW", 20, _integer(0), "extra connections per worker under load"),
    Var("DB_POOL_RECYCLE", 3600, _integer(1), "seconds before a pooled connection is replaced"),
    Var("DB_POOL_TIMEOUT", 30, _number(0.1), "seconds to wait for a free pooled connection"),
    Var("DB_CONNECT_TIMEOUT", 3, _integer(1), "seconds to wait for a new database connection"),
    Var("DB_TIMEOUT_S", 5.0, _number(0.1), "deadline of every PostgreSQL call, enforced by the client"),
    Var("REDIS_URL", None, _redis_url, "unset: SimpleCache and in-memory limits"),
    Var("REDIS_TIMEOUT_MS", 250, _integer(10), "connect and socket timeout of every Redis call"),
    Var("REDIS_RETRY_AFTER_S", 2.0, _number(0.1), "back-off before retrying a failed Redis"),
    Var("CACHE_NAMESPACE", "aigen", _text, "prefix of every key the service writes to Redis"),
    Var("CACHE_DEFAULT_TTL", 300, _integer(1), "seconds"),
    Var("AI_CACHE_TTL", 3600, _integer(1), "seconds"),
    Var("TEMPLATES_CACHE_TTL", 600, _integer(1), "seconds"),
    Var("USER_CACHE_TTL", 300, _integer(1), "seconds"),
    Var("RATE_LIMIT_PER_MINUTE", 60, _integer(1), "default limit per client"),
    Var("RATE_LIMIT_AI_PER_MINUTE", None, _integer(1), "unset: AI generation shares the default budget"),
    Var("RATELIMIT_ENABLED", True, _flag, "false switches rate limiting off"),
    Var("AUTH_FAILURES_PER_MINUTE", 10, _integer(1), "refused keys one address may send per minute"),
    Var(
        "RATE_LIMIT_SIGNUPS_PER_MINUTE",
        5,
        _integer(1),
        "users (each with a key) one client may create per minute",
    ),
    Var("RATE_LIMIT_SIGNUPS_PER_HOUR", 10, _integer(1), "users one address may create per hour"),
    Var("SIGNUPS_PER_DAY", 1000, _integer(1), "users the whole service creates per day by sign-up"),
    Var("SIGNUP_ENABLED", True, _flag, "false: sign-up is 403; the CLI or an admin key creates users"),
    Var(
        "AI_TOKENS_PER_MINUTE",
        None,
        _integer(1),
        "each key's token budget per minute (a key's own overrides it); unset: none",
    ),
    Var("AI_TOKENS_PER_DAY", None, _integer(1), "each key's token budget per UTC day; unset: none"),
    Var("AI_ALLOW_ANONYMOUS", False, _flag, "true: generation without an API key"),
    Var("AI_MODELS", None, _names, "models clients may ask for; default: the configured model alone"),
    Var("AI_CACHE_SCOPE", "shared", _choice("shared", "user"), "shared: one answer for everyone"),
    Var("CORS_ORIGINS", None, _origins, "origins allowed to call from a browser; unset: CORS off"),
    Var("TRUSTED_PROXIES", 0, _proxies, "X-Forwarded-For hops to trust, or the proxies' networks"),
    Var(
        "OPS_ALLOW_NETWORKS",
        _networks("OPS_ALLOW_NETWORKS", OPS_NETWORKS),
        _networks,
        "client networks that may read /health and /metrics",
    ),
    Var("LOG_LEVEL", "INFO", _log_level, "DEBUG, INFO, WARNING, ERROR or CRITICAL"),
    Var("LOG_FORMAT", "json", _choice("json", "text"), "json or text"),
    Var("SLOW_REQUEST_MS", 1000, _number(0), "slow-request warning threshold"),
    Var("METRICS_ENABLED", True, _flag, "record per-request Prometheus metrics"),
    Var(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        None,
        _url("http", "https"),
        "OTLP/HTTP collector; spans go to {endpoint}/v1/traces; unset: no tracing (docs/tracing.md)",
    ),
    Var(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        None,
        _url("http", "https"),
        "the traces URL itself, used as given; set alone, it turns tracing on as well",
    ),
    Var("OTEL_SERVICE_NAME", None, _text, "service.name of every span; default: aigen"),
    Var("OTEL_TRACES_SAMPLER", TRACE_SAMPLERS[0], _choice(*TRACE_SAMPLERS), "which requests are traced"),
    Var("OTEL_TRACES_SAMPLER_ARG", 1.0, _fraction, "the ratio of the traceidratio samplers, 0 to 1"),
    Var("OTEL_SDK_DISABLED", False, _flag, "true: no tracing, whatever the endpoint"),
    Var("AI_PROVIDER", "local", _choice("local", "openai"), "local or openai"),
    Var("AI_BASE_URL", None, _url("http", "https"), "OpenAI-compatible base URL ending in /v1"),
    Var("AI_API_KEY", None, _text, "bearer token for the upstream"),
    Var("AI_MODEL", None, _text, "model name sent upstream"),
    Var("AI_TIMEOUT_S", 30.0, _number(0.1), "upstream timeout"),
    Var("AI_LOCAL_LATENCY_MS", 200, _integer(0), "simulated latency of the local provider"),
    Var(
        "AI_MAX_CONCURRENCY",
        None,
        _integer(1),
        "model calls a worker holds at once; default: 256 (gevent), threads ÷ 2 (gthread)",
    ),
    Var(
        "AI_QUEUE_WAIT_MS",
        None,
        _integer(0),
        "how long a call beyond the bound waits for a slot; default: 5000 (gevent), 20 (gthread)",
    ),
    Var("AI_RETRIES", 2, _integer(0, 10), "retries of a transient model server failure"),
    Var("AI_BREAKER_FAILURES", 5, _integer(1), "failures in a row that open the model server's breaker"),
    Var("AI_BREAKER_COOLDOWN_S", 30.0, _number(0.1), "how long the open breaker answers at once"),
    Var("MAX_PROMPT_CHARS", 4000, _integer(1), "longest accepted prompt"),
    Var("RENDER_MAX_CHARS", 100_000, _integer(1), "longest text a template render may answer"),
    Var("MAX_CONTENT_LENGTH", 1024 * 1024, _integer(1), "largest accepted request body, bytes"),
    Var("PORT", 8000, _integer(1, 65535), "gunicorn bind port"),
    Var("WEB_CONCURRENCY", None, _integer(1), "gunicorn workers; default: 1 without REDIS_URL"),
    Var(
        "GUNICORN_WORKER_CLASS",
        "gevent",
        _choice("gevent", "gthread"),
        "gevent: a request waiting on I/O holds a greenlet, not a thread; gthread: a thread pool",
    ),
    Var("GUNICORN_WORKER_CONNECTIONS", 1000, _integer(1), "connections one gevent worker serves at once"),
    Var("GUNICORN_THREADS", 4, _integer(1), "threads per gthread worker"),
    Var(
        "REQUEST_HEADER_TIMEOUT_S",
        10.0,
        _number(0.1),
        "a connection whose request headers are not complete within this is closed (and logged)",
    ),
    Var("REDIS_MAX_CONNECTIONS", 128, _integer(1), "Redis connections one worker opens at most"),
    Var("REDIS_POOL_WAIT_MS", 1000, _integer(0), "how long a request waits for a free Redis connection"),
    Var("GUNICORN_REUSE_PORT", False, _flag, "a listening socket per worker (SO_REUSEPORT)"),
)

_BY_NAME = {var.name: var for var in VARS}


def load(environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None) -> dict:
    """Parse every documented variable from the environment, then apply overrides.

    Raises one ConfigError naming every bad variable, so a start fails once, not once per fix.
    """
    environ = os.environ if environ is None else environ
    raw_values: dict[str, Any] = {var.name: environ.get(var.name) for var in VARS}
    raw_values.update(overrides or {})
    settings: dict[str, Any] = {}
    problems: list[str] = []
    for name, raw in raw_values.items():
        var = _BY_NAME.get(name)
        if var is None:  # an override of the app's own (TESTING, ...): taken as given
            settings[name] = raw
        elif raw is None or raw == "":
            settings[name] = var.default
        else:
            try:
                settings[name] = var.parse(name, raw)
            except ConfigError as exc:
                problems.extend(exc.problems)
                settings[name] = var.default
    problems.extend(_combinations(settings))
    if problems:
        raise ConfigError(*problems)
    return settings


def parse_one(name: str, environ: Mapping[str, str]) -> Any:
    """One variable alone, for what must be decided before the rest is loaded (gunicorn.conf.py's
    monkey-patching); raises ConfigError when it is invalid."""
    var = _BY_NAME[name]
    raw = environ.get(name)
    return var.default if raw in (None, "") else var.parse(name, raw)


def _combinations(settings: dict[str, Any]) -> list[str]:
    """Problems of values that are valid alone but not together; fills in WEB_CONCURRENCY."""
    problems = []
    if settings["AI_PROVIDER"] == "openai" and not settings["AI_BASE_URL"]:
        problems.append("AI_BASE_URL must be set (as http://host:port/v1) when AI_PROVIDER=openai")
    problems.extend(_serving_model(settings))
    # Without Redis each worker process would count its own rate limits and keep its own AI cache:
    # one process, serving concurrently, keeps both exact (README "Workers and Redis").
    if settings["WEB_CONCURRENCY"] is None:
        settings["WEB_CONCURRENCY"] = SHARED_WORKERS if settings["REDIS_URL"] else 1
    elif settings["WEB_CONCURRENCY"] > 1 and not settings["REDIS_URL"]:
        problems.append(
            f"WEB_CONCURRENCY={settings['WEB_CONCURRENCY']} needs REDIS_URL: without it each worker "
            "keeps its own cache and rate-limit counts; set REDIS_URL, or WEB_CONCURRENCY=1"
        )
    return problems


# Under gevent a call waiting on the model holds a greenlet (~10 KiB), not a thread: hundreds fit.
GEVENT_AI_CONCURRENCY, GEVENT_QUEUE_WAIT_MS = 256, 5000


def _serving_model(settings: dict[str, Any]) -> list[str]:
    """The model-call bound and wait for the worker class; under gthread the bound leaves threads for
    HITs, probes and database reads."""
    gevent = settings["GUNICORN_WORKER_CLASS"] == "gevent"
    if settings["AI_QUEUE_WAIT_MS"] is None:
        settings["AI_QUEUE_WAIT_MS"] = GEVENT_QUEUE_WAIT_MS if gevent else 20
    if settings["AI_MAX_CONCURRENCY"] is None:
        settings["AI_MAX_CONCURRENCY"] = (
            GEVENT_AI_CONCURRENCY if gevent else max(1, settings["GUNICORN_THREADS"] // 2)
        )
    elif not gevent and settings["AI_MAX_CONCURRENCY"] >= settings["GUNICORN_THREADS"]:
        return [
            f"AI_MAX_CONCURRENCY={settings['AI_MAX_CONCURRENCY']} must be below GUNICORN_THREADS="
            f"{settings['GUNICORN_THREADS']}: calls waiting on the model would hold every thread"
        ]
    return []


def sqlalchemy_url(url: str) -> str:
    """Pin PostgreSQL URLs to psycopg2, the driver the service ships with."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg2://" + url[len(scheme) :]
    return url


def flask_config(settings: Mapping[str, Any], instance_path: str) -> dict:
    """Map the service's settings onto the keys Flask and its extensions read."""
    database_url = sqlalchemy_url(
        settings["DATABASE_URL"] or f"sqlite:///{os.path.join(instance_path, 'app.db')}"
    )
    return {
        **settings,
        "DATABASE_URL": database_url,
        "JSON_SORT_KEYS": False,
        # Never from the environment (FLASK_DEBUG): a deployment must not reach the debugger, and
        # an error is always the JSON envelope, never a traceback.
        "DEBUG": False,
        "PROPAGATE_EXCEPTIONS": False,
    }
