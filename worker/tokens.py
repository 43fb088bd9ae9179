"""Counting tokens locally, without calling any API: for the pre-flight estimate and for the
spending cap's holds.

toktok-rs ships OpenAI's o200k_base and cl100k_base vocabularies compiled in, and counts
exactly as tiktoken does; tiktoken itself downloads its vocabulary files at run time, which
fails on a machine without internet. Models outside OpenAI's families are counted with
o200k_base, and said to be approximate. Without toktok-rs, UTF-8 bytes / 4 stands in.
"""

from __future__ import annotations

from collections.abc import Sequence

# The chat format wraps each message in a few tokens, and primes the reply with a few more
# (OpenAI's guide to counting tokens for chat models: 3 and 3).
PER_MESSAGE = 3
PER_REPLY = 3

_CL100K = ("gpt-4", "gpt-3.5", "text-embedding")
_O200K = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-", "gpt-oss")


def encoding_for(model: str) -> tuple[str, bool]:
    """(encoding name, exact?) for a model name."""
    name = model.lower().rsplit("/", 1)[-1]
    if name.startswith(_O200K):
        return "o200k_base", True
    if name.startswith(_CL100K):
        return "cl100k_base", True
    return "o200k_base", False


def counter_name(model: str) -> str:
    """How counts for this model are made, for people."""
    encoding, exact = encoding_for(model)
    if not _have_toktok():
        return "approximate (UTF-8 bytes / 4; install toktok-rs for exact counts)"
    return encoding if exact else f"{encoding} (approximate)"


def count(texts: Sequence[str], model: str) -> list[int]:
    """Tokens in each text, as `model`'s tokenizer counts them."""
    if not texts:
        return []
    if not _have_toktok():
        return [(len(t.encode("utf-8")) + 3) // 4 for t in texts]
    import toktok

    # One thread: the CLI counts a worksheet in batches, workers count one question at a time.
    return toktok.batch_count(list(texts), encoding_for(model)[0], threads=1)


def prompt_tokens(messages: Sequence[str], model: str) -> int:
    """The prompt tokens of a request holding these messages (instructions, history, question)."""
    texts = [m for m in messages if m]
    return sum(count(texts, model)) + PER_MESSAGE * len(texts) + PER_REPLY


def parse_range(text: str, what: str = "--answer-tokens") -> tuple[int, int]:
    """ "500" → (500, 500); "200-2000" → (200, 2000)."""
    from worker.errors import ConfigError

    low, _, high = text.strip().partition("-")
    try:
        lo, hi = int(low), int(high or low)
    except ValueError:
        raise ConfigError(
            f"{what} {text!r} is not a token count or a range such as 200-2000"
        ) from None
    if lo < 0 or hi < lo or hi > 10_000_000:
        raise ConfigError(
            f"{what} {text!r}: give 0 to 10,000,000 tokens, low before high (200-2000)"
        )
    return lo, hi


_TOKTOK: bool | None = None


def _have_toktok() -> bool:
    global _TOKTOK
    if _TOKTOK is None:
        try:
            import toktok  # noqa: F401
        except ImportError:
            _TOKTOK = False
        else:
            _TOKTOK = True
    return _TOKTOK
