"""The gateway's benchmark: a fake upstream, Redis, the gateway and load generators on loopback.

`python -m bench run` measures, in one run, going direct to the upstream, going through the
gateway, and (with --compare) going through LiteLLM's proxy; `python -m bench profile`
samples a gateway worker under saturation. bench/setup.sh installs what both use.
"""
