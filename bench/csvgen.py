"""Generate mixed-type CSV files of a given size for benchmarks (never downloaded)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROWS_PER_BLOCK = 100_000


def block(rng: np.random.Generator, start: int) -> pd.DataFrame:
    n = ROWS_PER_BLOCK
    return pd.DataFrame(
        {
            "id": np.arange(start, start + n),
            "amount": rng.normal(100, 30, n).round(2),
            "count": rng.integers(0, 1000, n),
            "city": rng.choice(["Paris", "Lyon", "Nice", "Lille", "Nantes"], n),
            "score": rng.random(n).round(5),
            "flag": rng.choice(["yes", "no"], n),
            "category": rng.choice([f"cat{i}" for i in range(50)], n),
            "ratio": rng.normal(0, 1, n).round(4),
            "label": rng.integers(0, 2, n),
        }
    )


WORDS = np.array(
    [
        "alpha",
        "bravo",
        "charlie",
        "delta",
        "echo",
        "foxtrot",
        "golf",
        "hotel",
        "india",
        "juliet",
        "kilo",
        "lima",
        "mike",
        "november",
    ]
)


def text_block(rng: np.random.Generator, start: int) -> pd.DataFrame:
    """Text-heavy rows: a distinct customer code per row, three-word names (2,744
    values), an amount and a city."""
    n = ROWS_PER_BLOCK
    return pd.DataFrame(
        {
            "customer": [f"cust-{i:09d}" for i in range(start, start + n)],
            "name": [" ".join(words) for words in rng.choice(WORDS, (n, 3))],
            "amount": rng.normal(100, 30, n).round(2),
            "city": rng.choice(["Paris", "Lyon", "Nice"], n),
        }
    )


KINDS = {"mixed": block, "text": text_block}


def write_csv(path: Path, size_bytes: int, seed: int = 0, kind: str = "mixed") -> Path:
    """Write about `size_bytes` of CSV to `path` (whole rows, header first);
    `kind` is "mixed" (numbers, categories, flags) or "text" (codes, names)."""
    make = KINDS[kind]
    rng = np.random.default_rng(seed)
    written = 0
    start = 0
    with open(path, "w", newline="") as out:
        while written < size_bytes:
            text = make(rng, start).to_csv(index=False, header=start == 0)
            remaining = size_bytes - written
            if len(text) > remaining:
                text = text[: text.rfind("\n", 0, max(remaining, text.find("\n") + 1)) + 1]
            out.write(text)
            written += len(text)
            start += ROWS_PER_BLOCK
    return path


if __name__ == "__main__":
    kind = sys.argv[3] if len(sys.argv) > 3 else "mixed"
    write_csv(Path(sys.argv[1]), int(float(sys.argv[2]) * 1024 * 1024), kind=kind)
