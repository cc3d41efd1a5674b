"""Profiles of the upstream kinds the gateway speaks to, by `kind` name."""

from providers import deepinfra, deeptrin, mock, netmind, netmind_dedicated, novita, openai, vllm
from providers.profile import ANY, Bounds, Profile

PROFILES: dict[str, Profile] = {
    module.PROFILE.kind: module.PROFILE
    for module in (openai, netmind, deeptrin, novita, deepinfra, vllm, netmind_dedicated, mock)
}

__all__ = ["ANY", "Bounds", "PROFILES", "Profile"]
