"""NetMind model APIs: the parameter list its docs name, nothing more."""

from providers.profile import ANY, OPENAI_SAMPLING, Bounds, Profile

PROFILE = Profile(
    kind="netmind",
    base_url="https://api.netmind.ai/inference-api/openai/v1",
    params={
        **OPENAI_SAMPLING,
        "repetition_penalty": Bounds(0, None, low_open=True),
        "logit_bias": ANY,
    },
    # Nothing beyond several choices is documented; a deployment declares what a model does.
    features={"chat": frozenset({"n"}), "completions": frozenset({"n"}), "embeddings": frozenset()},
    renames={"max_completion_tokens": "max_tokens"},
)
