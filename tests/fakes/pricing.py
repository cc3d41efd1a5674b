"""What a fake charges per token, in the two forms tests compare against."""

from __future__ import annotations

from dataclasses import dataclass

NANO_PER_USD = 1_000_000_000
TOKENS_PER_MTOK = 1_000_000


@dataclass(frozen=True, slots=True)
class Prices:
    in_per_mtok: float  # USD per million prompt tokens
    out_per_mtok: float  # USD per million completion tokens

    def cost_nano(self, prompt_tokens: int, completion_tokens: int) -> int:
        """Exact integer nano-dollars; each side rounds up, as a provider never bills a fraction."""
        return (_ceil_cost(prompt_tokens, self.in_per_mtok)
                + _ceil_cost(completion_tokens, self.out_per_mtok))

    def estimated_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        """The float DeepInfra reports as `usage.estimated_cost`."""
        return (prompt_tokens * self.in_per_mtok / TOKENS_PER_MTOK
                + completion_tokens * self.out_per_mtok / TOKENS_PER_MTOK)


def _ceil_cost(tokens: int, usd_per_mtok: float) -> int:
    # Rounding the price to whole nano-dollars first keeps 0.13 from becoming 129999999.99.
    nano_per_mtok = int(round(usd_per_mtok * NANO_PER_USD))
    return -(-tokens * nano_per_mtok // TOKENS_PER_MTOK)
