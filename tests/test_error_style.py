"""Every error the package and the scripts raise says where, what was expected and what was found, in one shape:
`<where>: expected <what>; found <what>.` (a file, row, option or argument before the colon).

Read from the source (no imports): each `raise SomeError(<message>)` whose message is a string literal or f-string.
Two shapes pass besides: re-raising with a place added in front of another error's own message (`f"{where}: {error}"`),
and bare exceptions without a message. A message built elsewhere (a variable) is checked where it is built, when that
is a literal in a `raise` too; the rest are out of reach of this test.
"""

import ast
import re
from pathlib import Path

import pytest


REPO_ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted([*REPO_ROOT.joinpath("mrm_hf").rglob("*.py"), *REPO_ROOT.joinpath("examples").glob("*.py")])

# "<where>: expected ...; found ..." — where is anything without a line break before the first ": expected".
STYLE = re.compile(r"^[^\n]+?: expected .+; found .+", re.DOTALL)
# A place put in front of the message of the error being handled: "{where}: {error}" and nothing else.
PREFIXED = re.compile(r"^[^\n]+?: \{(error|err|exc)\}\.?$")


def message_template(node: ast.expr) -> str | None:
    """The message as written, with each f-string field as `{...}`; None when it is not a literal."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(part.value if isinstance(part, ast.Constant) else "{" + ast.unparse(part.value) + "}"
                       for part in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):  # "..." + f"..."
        left, right = message_template(node.left), message_template(node.right)
        return None if left is None or right is None else left + right
    return None


def raised_messages() -> list[tuple[str, str]]:
    """(file:line, message) of every raise with a literal message."""
    found = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and node.exc.args:
                message = message_template(node.exc.args[0])
                if message is not None:
                    found.append((f"{path.relative_to(REPO_ROOT)}:{node.lineno}", message))
    return found


def test_the_check_reads_the_raises():
    """The reading finds the package's raises (a parser that found none would pass everything)."""
    assert len(raised_messages()) > 150


@pytest.mark.parametrize(
    "message, passes",
    [
        ("{path}: expected a readable image; found {error}", True),
        ("--dataset nih: expected --data_dir; found no value.", True),
        ("Run {run}: {error}", True),
        ("Expected a train split; found {sorted(data)}.", False),
        ("expected a non-empty image; found the size {size} in {name}", False),
        ("{name} lacks encoder weights: {missing}.", False),
    ],
)
def test_the_style_rule(message, passes):
    assert bool(STYLE.match(message) or PREFIXED.match(message)) == passes


def test_every_error_says_where_what_was_expected_and_what_was_found():
    off_style = [f"{place}: {message!r}" for place, message in raised_messages()
                 if not (STYLE.match(message) or PREFIXED.match(message))]
    assert not off_style, (f"{len(off_style)} errors are not '<where>: expected ...; found ...':\n  "
                           + "\n  ".join(off_style))
