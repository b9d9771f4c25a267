"""docs/spec.md and docs/cli.md against the code they describe, so neither goes stale.

docs/spec.md holds one table of every spec key: `| Key | Type | Default | Meaning |`, one
row per field of every pydantic model reachable from SweepSpec, nested keys as dotted
names (`limits.trial_time`). The Type cell is the field's annotation as `type_text`
writes it; the Default cell is `required` or a YAML value equal to the field's default
(`{}` for a section whose keys all take their defaults). docs/cli.md has a section per
`sweep` command with every option of it; every command and option has --help text.
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import click
import pytest
import yaml
from conftest import REPO
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from orchestrator.cli import main
from orchestrator.spec import DISTRIBUTIONS, SweepSpec

SPEC_PAGE = REPO / "docs" / "spec.md"
CLI_PAGE = REPO / "docs" / "cli.md"
HEADER = ["Key", "Type", "Default", "Meaning"]


def type_text(annotation: Any, constraints: list[Any] = ()) -> str:
    """A field's type as docs/spec.md writes it: Python's names (`str`, `int`, `float`,
    `list[str]`, `dict[str, Any]`), `mapping` for a section of keys of its own, `null`
    for None, the values of a Literal and the members of a union joined by " or ",
    and numeric bounds after the type (`int > 0`, `float >= 0`)."""
    constraints = list(constraints)
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *extra = get_args(annotation)
        return type_text(base, [*extra, *constraints])
    if origin is Literal:
        text = " or ".join(str(value) for value in get_args(annotation))
    elif origin in (Union, types.UnionType):
        text = " or ".join(type_text(arg) for arg in get_args(annotation))
    elif origin in (list, dict):
        text = f"{origin.__name__}[{', '.join(type_text(a) for a in get_args(annotation))}]"
    elif annotation is type(None):
        text = "null"
    elif annotation is typing.Any:
        text = "Any"
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        text = "mapping"
    else:
        text = annotation.__name__
    return text + "".join(_bounds(constraints))


def _bounds(constraints: list[Any]) -> list[str]:
    found = []
    for constraint in constraints:
        if isinstance(constraint, FieldInfo):  # Annotated[int, Field(gt=0)]
            found += _bounds(constraint.metadata)
            continue
        for attribute, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            if getattr(constraint, attribute, None) is not None:
                found.append(f" {sign} {getattr(constraint, attribute)}")
    return found


def _model_in(annotation: Any) -> type[BaseModel] | None:
    for candidate in get_args(annotation) or (annotation,):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def spec_fields(model: type[BaseModel] = SweepSpec, prefix: str = "") -> dict[str, FieldInfo]:
    """Every field reachable from the spec model, by dotted name, parents first."""
    found: dict[str, FieldInfo] = {}
    for name, info in model.model_fields.items():
        found[prefix + name] = info
        inner = _model_in(info.annotation)
        if inner is not None:
            found.update(spec_fields(inner, f"{prefix}{name}."))
    return found


def table_rows(page: Path, header: list[str]) -> list[list[str]]:
    """The rows of the first Markdown table on `page` whose header is `header`."""

    def cells(line: str) -> list[str]:
        return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]

    lines = page.read_text().splitlines()
    start = next(
        i for i, line in enumerate(lines) if line.startswith("|") and cells(line) == header
    )
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(cells(line))
    return rows


def code(cell: str) -> str:
    """The text of a cell that is one `code span`."""
    assert re.fullmatch(r"`[^`]+`", cell), f"expected one `code span`, got {cell!r}"
    return cell[1:-1]


def spec_table() -> dict[str, list[str]]:
    rows = table_rows(SPEC_PAGE, HEADER)
    keys = [code(row[0]) for row in rows]
    assert len(keys) == len(set(keys)), f"keys twice: {[k for k in keys if keys.count(k) > 1]}"
    return {key: row for key, row in zip(keys, rows, strict=True)}


def test_the_spec_table_has_a_row_per_field_and_no_other():
    documented, fields = spec_table(), spec_fields()
    assert [k for k in fields if k not in documented] == [], "fields missing from docs/spec.md"
    assert [k for k in documented if k not in fields] == [], "rows for no field of the spec"
    assert list(documented) == list(fields), "rows in the order of the models' fields"


@pytest.mark.parametrize("key", list(spec_fields()))
def test_each_row_gives_the_fields_type_and_default(key: str):
    table = spec_table()
    assert key in table, f"{key}: no row in docs/spec.md"
    info, (_, typed, default, meaning) = spec_fields()[key], table[key]
    expected = type_text(info.annotation, info.metadata)
    assert code(typed) == expected, f"{key}: type {typed}, the model says `{expected}`"
    if info.is_required():
        assert default == "required", f"{key}: required, the table says {default}"
    else:
        value = info.get_default(call_default_factory=True)
        shown = yaml.safe_load(code(default))
        said = f"{key}: the table says {default}, the model's default is {value!r}"
        if isinstance(value, BaseModel):  # a section: `{}`, all its keys at their defaults
            assert shown == {} and value == type(value)(), said
        else:
            assert shown == value and type(shown) in (type(value), int), said
    assert len(meaning) > 10, f"{key}: say what it means"


def test_every_distribution_is_documented():
    rows = table_rows(SPEC_PAGE, ["Distribution", "Values", "Samples"])
    assert [code(row[0]) for row in rows] == list(DISTRIBUTIONS)


def test_the_spec_page_example_is_a_valid_spec():
    """The first YAML block of docs/spec.md, the example spec, passes every check of
    `sweep run`, its experiment's parameters included."""
    from orchestrator import load_spec
    from orchestrator.params import check_spec
    from orchestrator.registry import resolve

    first = re.search(r"```yaml\n(.*?)```", SPEC_PAGE.read_text(), re.S)
    assert first, "docs/spec.md shows an example spec"
    spec = load_spec(yaml.safe_load(first[1]))
    assert len(check_spec(resolve(spec.experiment).params, spec)) == 24  # as it says


def commands() -> dict[str, click.Command]:
    return {"sweep": main, **{f"sweep {name}": cmd for name, cmd in main.commands.items()}}


def cli_sections() -> dict[str, str]:
    """The text under each `## sweep ...` heading of docs/cli.md, by command."""
    parts = re.split(r"^## (.+)$", CLI_PAGE.read_text(), flags=re.M)
    return {
        parts[i].strip(): parts[i + 1]
        for i in range(1, len(parts), 2)
        if parts[i].split()[0] == "sweep"
    }


def test_every_command_has_a_section_and_no_section_is_stale():
    assert sorted(cli_sections()) == sorted(commands())


@pytest.mark.parametrize("name", list(commands()))
def test_every_option_and_argument_of_a_command_is_documented(name: str):
    """The first cell of each row of the command's option table names its options:
    every option of the command, and no other (--help once, under `sweep`)."""
    command, section = commands()[name], cli_sections()[name]
    options = {opt for p in command.params if isinstance(p, click.Option)
               for opt in (*p.opts, *p.secondary_opts)}  # fmt: skip
    if command is main:
        options |= set(main.context_settings["help_option_names"])
    first_cells = [line.split("|")[1] for line in section.splitlines() if line.startswith("|")]
    shown = {opt for cell in first_cells for opt in re.findall(r"`(--?[a-z][a-z-]*)", cell)}
    assert sorted(options - shown) == [], f"{name}: options missing from docs/cli.md"
    assert sorted(shown - options) == [], f"{name}: documented options it does not have"
    for argument in (p for p in command.params if isinstance(p, click.Argument)):
        metavar = (argument.metavar or argument.name.upper()).strip("[].")
        assert metavar in section, f"{name}: argument {metavar} not in docs/cli.md"


@pytest.mark.parametrize("name", list(commands()))
def test_every_command_and_option_has_help(name: str):
    command = commands()[name]
    assert len(command.help or "") > 60, f"{name}: a --help that says what it does"
    for option in (p for p in command.params if isinstance(p, click.Option)):
        assert len(option.help or "") > 10, f"{name} {option.opts[0]}: no help"


def test_the_exit_codes_are_documented():
    from orchestrator import cli

    text = CLI_PAGE.read_text()
    for code_ in (0, cli.EXIT_TRIALS_FAILED, cli.EXIT_BAD_INPUT, cli.EXIT_STORAGE_FULL,
                  cli.EXIT_INTERRUPTED, 137):  # fmt: skip
        assert re.search(rf"^\| `{code_}` \|", text, re.M), f"exit code {code_} not in the table"
