"""The import path SPEC §8 and the README promise: `from appfactory.logging import api_logger`.

The code lives in appfactory/observability/logging.py; this module only names it.
"""

from appfactory.observability.logging import ApiLogger, api_logger, configure_logging, logging_config

__all__ = ["ApiLogger", "api_logger", "configure_logging", "logging_config"]
