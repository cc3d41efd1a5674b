"""Deeptrin: documents the same surface as NetMind."""

from dataclasses import replace

from providers.netmind import PROFILE as NETMIND

PROFILE = replace(NETMIND, kind="deeptrin", base_url="https://api.deeptrin.com/inference-api/openai/v1")
