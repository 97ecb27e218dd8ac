"""Bad input to `fashion add-attribute --from-text`: rules files, functions and catalogs that
mine nothing end in a clear error or a warning that names the rule, never a traceback, and
nothing is trained on nothing."""

from __future__ import annotations

import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from fashion import LabellingFunction, hookimpl
from fashion.cli import cli
from fashion.contract.manager import register_plugin, unregister_plugin
from fashion.errors import FashionError
from tests.faults import ledger

HEADER = "id,images,title,description\n"
GOOD = "".join(f"h{i},good.png,{'hooded parka' if i % 2 else 'jacket no hood'} {i},soft.\n" for i in range(12))
RULE = "[[rule]]\nlabel = 'plain'\nkeywords = ['hoodless']\n"
# kind -> (manifest text, rules text or None, extra flags, expected outcome, text the output must hold)
CASES: dict[str, tuple[str, str | None, list[str], str, str]] = {
    "unparsable rules file": (HEADER + GOOD, "[[rule]\nlabel = 'plain'", [], "error", "is not valid toml"),
    "rule voting a label not in the taxonomy": (
        HEADER + GOOD, "[[rule]]\nlabel = 'zipped'\nkeywords = ['zip']\n", [], "error", "not a label of hood"),
    "rule with an unknown key": (HEADER + GOOD, "[[rule]]\nlabel = 'plain'\nwords = ['x']\n", [], "error", "words"),
    "regex that does not compile": (HEADER + GOOD, "[[rule]]\nlabel = 'plain'\nregex = '(x'\n", [], "error",
                                    "not a valid regular expression"),
    "regex that never matches": (HEADER + GOOD, "[[rule]]\nlabel = 'plain'\nregex = '^ZZZ$'\n", ["--dry-run"],
                                 "rejected", "'rule-1' (regex) voted on no product"),
    "catalog where nothing is mined": (HEADER + "".join(f"h{i},good.png,jacket {i},soft.\n" for i in range(12)),
                                       None, [], "error", "nothing was trained"),
    "only one label mined": (HEADER + "".join(f"h{i},good.png,hooded parka {i},soft.\n" for i in range(12)),
                             None, [], "error", "a head needs two labels"),
    "manifest with no product": (HEADER, None, [], "error", "holds no product"),
    "record that is not UTF-8": (HEADER + GOOD + "b,good.png,caf\udce9,x\n", None, ["--dry-run"], "error", ":14"),
    "min-confidence above 1": (HEADER + GOOD, None, ["--min-confidence", "1.5"], "error", "min_confidence"),
}


def _run(images: Path, kind: str, manifest_text: str, rules: str | None, flags: list[str]) -> tuple[int, str, BaseException | None]:
    stem = f"mining-{abs(hash(kind))}"
    manifest = images / f"{stem}.csv"
    manifest.write_bytes(manifest_text.encode("utf-8", "surrogateescape"))
    args = ["add-attribute", "hood", "--labels", "hooded,plain", "--from-text", str(manifest),
            "--project-dir", str(images / stem), *flags]
    if "--dry-run" not in flags:  # (a dry run with --base audits with the base model)
        args += ["--base", "local://unused"]
    if rules is not None:
        (images / f"{stem}.toml").write_text(rules, encoding="utf-8")
        args += ["--rules", str(images / f"{stem}.toml")]
    result = CliRunner(env={"COLUMNS": "160"}).invoke(cli, args)
    error = result.exception if result.exit_code and not isinstance(result.exception, SystemExit) else None
    output = result.output
    if isinstance(error, FashionError):  # `fashion` prints these as one line
        output, error = output + str(error), None
    trained = (images / stem).exists() and any((images / stem).glob("hood-mined*.csv"))
    return result.exit_code, output + (" TRAINED" if trained else ""), error


def _observe(code: int, output: str, error: BaseException | None, says: str) -> str:
    if error is not None:
        return "traceback"
    if " TRAINED" in output or says not in output:
        return "silent-wrong"
    if code:
        return "error"
    return "rejected" if "warning" in output else "predicted"


@pytest.mark.parametrize("kind", list(CASES))
def test_bad_input(kind: str, images: Path) -> None:
    manifest_text, rules, flags, expected, says = CASES[kind]
    code, output, error = _run(images, kind, manifest_text, rules, flags)
    observed = _observe(code, output, error, says)
    ledger.record("mining", kind, expected, observed)
    assert observed == expected, output


class _Broken(LabellingFunction):
    name = "test_broken_votes"
    attributes = ("hood",)
    mode = "raise"

    def votes(self, rows):
        if self.mode == "raise":
            raise RuntimeError("the model file is missing")
        if self.mode == "short":
            return [None]
        return ["zipped"] * len(rows)


@pytest.mark.parametrize(("kind", "mode", "says"), [
    ("plugin function that raises", "raise", "'test_broken_votes' (test_broken_votes) failed"),
    ("plugin function with too few votes", "short", "returned 1 votes for 12 products"),
    ("plugin function voting an unknown label", "label", "voted ['zipped']"),
])
def test_plugin_functions(kind: str, mode: str, says: str, images: Path) -> None:
    cls = type("Broken", (_Broken,), {"mode": mode})
    plugin = types.ModuleType("broken_lf")
    plugin.register_labelling_functions = hookimpl(lambda register: register(cls))
    register_plugin(plugin, name="broken_lf")
    try:
        code, output, error = _run(images, kind, HEADER + GOOD, None, ["--dry-run"])
    finally:
        unregister_plugin(plugin)
    observed = _observe(code, output, error, says)
    ledger.record("mining", kind, "error", observed)
    assert observed == "error", output
