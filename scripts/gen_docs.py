"""Regenerate the documentation's generated sections: the API reference in
docs/api.md (from the protos and their comments) and the configuration table
in docs/configuration.md (from the settings).

Each section sits between `<!-- NAME:begin ... -->` and `<!-- NAME:end -->`
markers in its file. Run with `make docs`; `--check` (run by
tests/test_contracts.py) fails when a file is stale.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from gen_protos import descriptor_set  # noqa: E402

from automl.common import settings  # noqa: E402

SERVICE_PATH = 6  # FileDescriptorProto.service
METHOD_PATH = 2  # ServiceDescriptorProto.method


def _comments(file: object) -> dict[tuple[int, ...], str]:
    return {
        tuple(loc.path): " ".join(line.strip() for line in loc.leading_comments.strip().splitlines())
        for loc in file.source_code_info.location  # type: ignore[attr-defined]
        if loc.leading_comments
    }


def first_sentence(text: str) -> str:
    match = re.match(r"(.+?\.)(\s|$)", text)
    return match.group(1) if match else text


def api_markdown() -> str:
    """One table per service: each RPC, its streaming shape and what it does."""
    parts: list[str] = []
    for file in sorted(descriptor_set().file, key=lambda f: f.name):
        comments = _comments(file)
        for s_index, service in enumerate(file.service):
            parts.append(f"#### `{file.package}.{service.name}` ({file.name})\n")
            parts.append(comments.get((SERVICE_PATH, s_index), "") + "\n")
            parts.append("| RPC | request → response | what it does |\n|---|---|---|")
            for m_index, method in enumerate(service.method):
                request = ("stream " if method.client_streaming else "") + method.input_type.rsplit(".", 1)[-1]
                response = ("stream " if method.server_streaming else "") + method.output_type.rsplit(".", 1)[-1]
                doc = first_sentence(comments.get((SERVICE_PATH, s_index, METHOD_PATH, m_index), ""))
                parts.append(f"| `{method.name}` | `{request}` → `{response}` | {doc} |")
            parts.append("")
    return "\n".join(parts).strip()


# Where each generated section lives, and what renders it.
SECTIONS: dict[str, tuple[Path, Callable[[], str]]] = {
    "api": (ROOT / "docs" / "api.md", api_markdown),
    "settings": (ROOT / "docs" / "configuration.md", settings.markdown_table),
}


def render(text: str, names: Iterable[str], where: str = "the file") -> str:
    """`text` with the generated sections `names` replaced by a fresh rendering."""
    for name in names:
        make = SECTIONS[name][1]
        pattern = re.compile(rf"(<!-- {name}:begin.*?-->\n).*?(<!-- {name}:end -->)", re.S)
        found = len(pattern.findall(text))
        if found != 1:
            raise SystemExit(
                f"{where} needs the <!-- {name}:begin --> ... <!-- {name}:end --> markers once (found {found})"
            )
        text = pattern.sub(lambda m, make=make: m.group(1) + make() + "\n" + m.group(2), text)
    return text


def files() -> dict[Path, list[str]]:
    """Each file with a generated section, and the names of its sections."""
    by_file: dict[Path, list[str]] = {}
    for name, (path, _) in SECTIONS.items():
        by_file.setdefault(path, []).append(name)
    return by_file


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if a generated section is stale")
    args = parser.parse_args()
    stale = []
    for path, names in files().items():
        current = path.read_text()
        fresh = render(current, names, str(path.relative_to(ROOT)))
        if fresh == current:
            continue
        if args.check:
            stale.append(str(path.relative_to(ROOT)))
        else:
            path.write_text(fresh)
    if stale:
        print(f"generated sections are stale in {', '.join(stale)}: run `make docs`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
