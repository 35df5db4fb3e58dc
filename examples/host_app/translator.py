"""A tiny host application that embeds brickrun: a command-line "translator".

It activates the example telemetry mod (examples/mods/telemetry-mod.yaml), tells the runtime
about the page it shows and the signed-in user, and dispatches user actions — a click on
"translate" and a custom ``translated`` event with the word count — so the mod's triggers
record telemetry. Recording never blocks the app: runs finish in the background and the
runtime drains them when it closes.

    python examples/host_app/translator.py --db sqlite:///translator.sqlite \\
        --email ada@example.com --to fr "good morning" "see you"
"""

from __future__ import annotations

import argparse
from pathlib import Path

from brickrun import SyncRuntime

MOD = Path(__file__).resolve().parent.parent / "mods" / "telemetry-mod.yaml"
WORDS = {"fr": {"good": "bon", "morning": "matin", "see": "à", "you": "bientôt"}}


def translate(text: str, language: str) -> str:
    table = WORDS.get(language, {})
    return " ".join(table.get(word, word) for word in text.split())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Translate phrases, recording product telemetry.")
    parser.add_argument("phrases", nargs="+")
    parser.add_argument("--to", default="fr")
    parser.add_argument("--email", default="ada@example.com")
    parser.add_argument("--db", default=None, help="team-database URL (default: brickrun's)")
    parser.add_argument("--telemetry-database", default="telemetry-dev")
    args = parser.parse_args(argv)

    with SyncRuntime(database_url=args.db) as runtime:
        runtime.activate(MOD, {"telemetryDatabase": args.telemetry_database})
        runtime.sign_in(args.email)
        runtime.visit("https://translator.example.com/app", "Translator")
        for phrase in args.phrases:
            runtime.dispatch("click", {"target": "#translate"})
            print(translate(phrase, args.to))
            runtime.dispatch_custom(
                "translated", {"words": len(phrase.split()), "language": args.to}
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
