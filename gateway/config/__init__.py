"""The gateway's configuration: one YAML file, validated once at start-up into frozen objects.

`load` reads the file and turns the first problem into a `ConfigError` naming its place;
`schema` and `providers` (with `dedicated`) are the sections; `fields` the value types;
`env` the `${VAR}` substitution. The hot path reads only the objects, never raw YAML.
"""

from gateway.config.dedicated import AutoscaleConfig, DedicatedConfig, ServiceSpec
from gateway.config.load import ConfigError, load_config, load_config_text, parse_config, read_config_text
from gateway.config.providers import ProviderConfig, Timeouts
from gateway.config.schema import (
    STRATEGIES,
    CircuitConfig,
    Config,
    LatencyConfig,
    LogConfig,
    ModelConfig,
    PartTokens,
    Price,
    RouteConfig,
    RoutingConfig,
    ServerConfig,
    StoreConfig,
    TeamConfig,
    TracingConfig,
    UpstreamConfig,
)

__all__ = [
    "STRATEGIES", "AutoscaleConfig", "CircuitConfig", "Config", "ConfigError", "DedicatedConfig", "LatencyConfig", "LogConfig",
    "ModelConfig", "PartTokens", "Price", "ProviderConfig", "RouteConfig", "RoutingConfig", "ServerConfig", "ServiceSpec",
    "StoreConfig", "TeamConfig", "Timeouts", "TracingConfig", "UpstreamConfig", "load_config", "load_config_text",
    "parse_config", "read_config_text",
]
