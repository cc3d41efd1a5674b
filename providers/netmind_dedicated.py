"""NetMind dedicated endpoints: rented GPU services that speak NetMind's OpenAI-compatible API.

The wire format is NetMind's; what differs is where a service lives. Each service has its
own invoke URL (the template below, `{service_id}` filled in) and a control plane that
creates, sizes and reports on it (gateway.dedicated). The docs name two hosts and do not
say which paths a service's image exposes under its invoke URL, so both URLs are config.
"""

from dataclasses import replace

from providers.netmind import PROFILE as NETMIND

KIND = "netmind-dedicated"
CONTROL_URL = "https://api.netmind.ai"
# A service's OpenAI base URL; the gateway appends /chat/completions, /completions, /embeddings.
INVOKE_URL_TEMPLATE = "https://api.netmind.ai/inference-api/v1/inference_service/{service_id}"

# Whether a service's image lists models at <invoke URL>/models is unknown: not polled.
PROFILE = replace(NETMIND, kind=KIND, base_url=INVOKE_URL_TEMPLATE, lists_models=False)
