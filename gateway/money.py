"""Money as integer nano-dollars (1e-9 USD), so sums are exact from price to report."""

from decimal import ROUND_HALF_UP, Decimal

NANO_PER_USD = 1_000_000_000
TOKENS_PER_MTOK = 1_000_000
# The largest amount (of money or tokens) that Redis's Lua, whose numbers are doubles, holds exactly.
MAX_NANO = 2**53 - 1


def usd_to_nano(usd: float | int | str) -> int:
    """Convert a USD amount from config or a provider body to nano-dollars, rounded half up."""
    # Decimal of the shortest repr avoids float artefacts such as 0.13 * 1e9 = 129999999.99.
    exact = Decimal(str(usd)) * NANO_PER_USD
    return int(exact.to_integral_value(rounding=ROUND_HALF_UP))


def nano_to_usd(nano: int) -> float:
    return nano / NANO_PER_USD


def token_cost(tokens: int, nano_per_mtok: int) -> int:
    """Cost of `tokens` at a price in nano-dollars per million tokens, rounded up.

    Rounding up per request keeps a reservation an upper bound; prices of whole
    thousandths of a dollar per million tokens divide exactly and never round.
    """
    return -(-tokens * nano_per_mtok // TOKENS_PER_MTOK)
