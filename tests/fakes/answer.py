"""What each choice of a job generates, as the pieces a stream sends it in.

Plain text is one piece per token ("tok0 ", "tok1 ", ...). A structured answer (tool-call
arguments, response_format JSON) is always whole, so tests get valid JSON whatever the
token limit; it is split over as many pieces as the job bills tokens, so usage and the
billing of an abandoned stream stay what they are for text.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from itertools import accumulate, pairwise

from .features import ToolCall
from .job import Job


@dataclass(frozen=True, slots=True)
class Answer:
    pieces: tuple[str, ...]  # content deltas, or the tool call's argument fragments
    tokens: tuple[int, ...]  # completion tokens each piece bills; they add up to tokens_per_choice
    finish_reason: str
    tool_call: ToolCall | None = None  # then `pieces` are its arguments and there is no content

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def offsets(self) -> tuple[int, ...]:
        """Where each piece starts in `text` (the legacy logprobs' text_offset)."""
        return (0, *accumulate(len(p) for p in self.pieces[:-1])) if self.pieces else ()


def token_text(index: int) -> str:
    return f"tok{index} "


def answer_for(job: Job) -> Answer:
    budget = job.tokens_per_choice
    asked = job.asked
    if asked.tool_call is not None:
        pieces, tokens = split(asked.tool_call.arguments, budget)
        return Answer(pieces, tokens, "tool_calls", asked.tool_call)
    if asked.json_text is not None:
        pieces, tokens = split(asked.json_text, budget)
        return Answer(pieces, tokens, "stop")
    return Answer(tuple(token_text(i) for i in range(budget)), (1,) * budget, job.finish_reason)


def split(text: str, budget: int) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """`text` in up to `budget` non-empty pieces (one when the budget is 0), billing `budget` in all."""
    count = max(1, min(budget, len(text)))
    pieces = _even_parts(len(text), count)
    cuts = (0, *accumulate(pieces))
    return (tuple(text[a:b] for a, b in pairwise(cuts)),
            tuple(_even_parts(budget, count)))


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


def _even_parts(total: int, count: int) -> list[int]:
    size, extra = divmod(total, count)
    return [size + (1 if i < extra else 0) for i in range(count)]
