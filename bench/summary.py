"""Print every benchmark's goals as one markdown table (what the README quotes).

python -m bench.summary
"""

from __future__ import annotations

import json

from bench.common import RESULTS


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value)[:80]
    return str(value)


def main() -> None:
    print("| benchmark | goal | target | achieved | met |")
    print("|---|---|---|---|---|")
    for path in sorted(RESULTS.glob("*.json")):
        data = json.loads(path.read_text())
        date = data.get("environment", {}).get("date", "?")
        for goal in data.get("goals", []):
            mark = "yes" if goal["met"] else "**no**"
            print(
                f"| {path.stem} ({date[:10]}) | {goal['name']} | {goal['target']} | {_fmt(goal['achieved'])} | {mark} |"
            )


if __name__ == "__main__":
    main()
