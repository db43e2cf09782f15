"""Regenerate the README's generated sections: the API overview (from the
protos and their comments) and the configuration table (from the settings).

Run with `make docs`; tests/test_docs.py fails when the README is stale.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from gen_protos import descriptor_set  # noqa: E402

from automl.common import settings  # noqa: E402

README = ROOT / "README.md"
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


SECTIONS = {"api": api_markdown, "settings": settings.markdown_table}


def render(text: str) -> str:
    """`text` with every generated section replaced by a fresh rendering."""
    for name, make in SECTIONS.items():
        pattern = re.compile(rf"(<!-- {name}:begin.*?-->\n).*?(<!-- {name}:end -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README.md lacks the <!-- {name}:begin --> ... <!-- {name}:end --> markers")
        text = pattern.sub(lambda m, make=make: m.group(1) + make() + "\n" + m.group(2), text)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if README.md is stale")
    args = parser.parse_args()
    current = README.read_text()
    fresh = render(current)
    if args.check:
        if fresh != current:
            print("README.md generated sections are stale: run `make docs`", file=sys.stderr)
            return 1
        return 0
    README.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
