"""Coverage-guided fuzzing of the core with atheris: `core_target.run` on whatever libFuzzer makes up.

Run from the checkout's root (see README.md beside this file):

    .venv/bin/python tests/fuzz/fuzz_core.py --write-seeds corpus/   # once: a starting corpus
    .venv/bin/python tests/fuzz/fuzz_core.py corpus/ -max_total_time=600

Every argument but `--write-seeds DIR` goes to libFuzzer (-runs=N, -max_total_time=S, -seed=N, a corpus
directory, a crash file to replay). wscore and h11 are instrumented, so the fuzzer is guided by the
branches of the frame parser, the handshake and permessage-deflate.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # `tests.fuzz` and the checkout's `wscore`, whatever the current directory

with atheris.instrument_imports(include=["wscore", "h11"]):
    from tests.fuzz.core_target import run, seeds


def test_one_input(data: bytes) -> None:
    """One libFuzzer input: any exception out of `run` (a `ContractViolation` or a leak of any other
    error) is a crash that libFuzzer saves to a file."""
    run(data)


def write_seeds(directory: Path) -> None:
    """Write the starting corpus, one file per input."""
    directory.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(seeds()):
        (directory / f"seed-{i:03d}").write_bytes(seed)
    print(f"wrote {len(seeds())} seeds to {directory}")


def main(argv: list[str]) -> None:
    """Write seeds, or fuzz with the libFuzzer arguments in `argv`."""
    if len(argv) >= 3 and argv[1] == "--write-seeds":
        write_seeds(Path(argv[2]))
        return
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
