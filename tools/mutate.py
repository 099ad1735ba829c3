"""``make mutate``: mutation testing (mutmut 3) of the modules that hold the invariants.

The modules, and the fast tests that cover each, are listed once, in ``pyproject.toml`` under
``[tool.opdesk.mutate]``: a source file or folder, then pytest's arguments for its tests
(files, node ids, ``--deselect=<node id>`` for a slow one). Each entry is one mutmut run in
``mutants/<name>/`` (a copy of ``src/``, ``tests/`` and a ``pyproject.toml`` with that
entry's ``[tool.mutmut]`` section), so a module's mutants are tried only against its own
tests. mutmut keeps its results there: a stopped run goes on where it stopped, a later one
tries only the mutants of functions that changed (all of them when the entry's list of tests
changes), and ``--mutant`` tries one again, with any tests added since.

One PostgreSQL server serves every run (``OPDESK_DATABASE_URL`` if set, else an embedded
one started here): mutmut forks one pytest session per mutant, and each session would
otherwise start its own server. A ``conftest.py`` written beside the copy gives each
session databases of its own name, so two mutants can run at once.

    .venv/bin/python tools/mutate.py                      # every module
    .venv/bin/python tools/mutate.py scheduling.booking   # one entry (by name or path)
    .venv/bin/python tools/mutate.py --report             # the scores of the last runs
    .venv/bin/python tools/mutate.py idempotency --mutant 'opdesk.idempotency.x_claim__mutmut_7'
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import Counter
from collections.abc import Iterator
from contextlib import chdir, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "mutants"
MUTMUT = Path(sys.executable).parent / "mutmut"

# The score: (killed + timeout) / the mutants tried. "no tests" (no selected test reaches the
# function) and mutmut's rarer verdicts count against it, as survivors do; "not checked"
# (a run stopped early: the next run goes on from there) does not count.
COLUMNS = ("killed", "survived", "timeout", "no tests", "other", "not checked", "total")

# Each pytest session (one per mutant) names its template and test databases after this
# "worker", as pytest-xdist workers do, so sessions running at once never share one.
# And the fastest tests run first: with mutmut's -x, most mutants die in the first second.
WORKER_CONFTEST = '''"""Written by tools/mutate.py: each pytest session names its own databases,
and runs the fastest tests first (their times from mutmut's first run).
"""

import json
import os
from pathlib import Path
from typing import Any


def pytest_sessionstart(session: Any) -> None:
    os.environ["PYTEST_XDIST_WORKER"] = f"mutant{os.getpid()}"


def pytest_collection_modifyitems(items: list[Any]) -> None:
    stats = Path(__file__).parent / "mutmut-stats.json"
    if stats.exists():
        took = json.loads(stats.read_text()).get("duration_by_test", {})
        items.sort(key=lambda item: took.get(item.nodeid, 0.0))
'''


@dataclass(frozen=True)
class Target:
    """One ``[tool.opdesk.mutate]`` entry: a source file or folder and the tests for it."""

    source: str
    tests: list[str]

    @property
    def name(self) -> str:
        """``src/opdesk/scheduling/booking.py`` -> ``scheduling.booking``."""
        parts = Path(self.source).with_suffix("").parts
        return ".".join(parts[2:] if parts[:2] == ("src", "opdesk") else parts)

    @property
    def pattern(self) -> str:
        """The ``only_mutate`` glob: the file itself, or everything under the folder."""
        return self.source if self.source.endswith(".py") else self.source.rstrip("/") + "/*"

    @property
    def run_dir(self) -> Path:
        return WORK / self.name


def targets() -> list[Target]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    table: dict[str, list[str]] = config["tool"]["opdesk"]["mutate"]
    return [Target(source, list(tests)) for source, tests in table.items()]


def choose(all_targets: list[Target], names: list[str]) -> list[Target]:
    if not names:
        return all_targets
    by_name = {t.name: t for t in all_targets} | {t.source.rstrip("/"): t for t in all_targets}
    unknown = [n for n in names if n.rstrip("/") not in by_name]
    if unknown:
        known = ", ".join(t.name for t in all_targets)
        sys.exit(f"unknown module {', '.join(unknown)}; the modules are: {known}")
    return [by_name[n.rstrip("/")] for n in names]


# --------------------------------------------------------------------------- running


def toml_list(values: list[str]) -> str:
    return json.dumps(values)  # a JSON array of strings is a TOML array


def prepare(target: Target) -> None:
    """The run folder: links to src/ and tests/ (mutmut copies them) and the configuration."""
    paths = [t for t in target.tests if not t.startswith("-")]
    missing = [t for t in paths if not (ROOT / t.split("::")[0]).exists()]
    if missing:
        sys.exit(f"{target.source}: no such test file {', '.join(missing)}")
    run = target.run_dir
    run.mkdir(parents=True, exist_ok=True)
    # docs/: tests check permissions.md against the code.
    for name in ("src", "tests", "docs"):
        link = run / name
        if not link.is_symlink():
            link.symlink_to(ROOT / name, target_is_directory=True)
    pyproject = (ROOT / "pyproject.toml").read_text()
    section = "\n".join(
        [
            "",
            "# Written by tools/mutate.py for this run; the source is [tool.opdesk.mutate].",
            "[tool.mutmut]",
            'source_paths = ["src"]',
            f"only_mutate = {toml_list([target.pattern])}",
            f"pytest_add_cli_args_test_selection = {toml_list(target.tests)}",
            'also_copy = ["conftest.py", "docs"]',
            "use_git_change_detection = false",
            "",
        ]
    )
    write_if_changed(run / "pyproject.toml", pyproject + section)
    write_if_changed(run / "conftest.py", WORKER_CONFTEST)
    # mutmut copies src/'s other files (templates, static) only when missing: drop the old
    # copies so that this run gets today's.
    copy = run / "mutants" / "src"
    if copy.is_dir():
        for path in copy.rglob("*"):
            if path.is_file() and path.suffix not in (".py", ".meta", ".spans"):
                path.unlink()


def write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


@contextmanager
def database_server() -> Iterator[str]:
    """``OPDESK_DATABASE_URL``, or an embedded server for the length of the run."""
    given = os.environ.get("OPDESK_DATABASE_URL")
    if given:
        yield given
        return
    sys.path.insert(0, str(ROOT / "src"))
    from sqlalchemy import create_engine, text

    from opdesk.db import EmbeddedServer, ensure_app_login

    with tempfile.TemporaryDirectory(prefix="opdesk-mutate-") as tmp:
        server = EmbeddedServer(Path(tmp) / "pg", cleanup_mode="delete")
        try:
            ensure_app_login(server.superuser_url)
            # A throwaway server: every mutant's session creates and drops two databases,
            # and drops take a fifth of the time without waiting for the disk.
            engine = create_engine(server.superuser_url, isolation_level="AUTOCOMMIT")
            with engine.connect() as conn:
                for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                    conn.execute(text(f"ALTER SYSTEM SET {setting} = off"))
                conn.execute(text("SELECT pg_reload_conf()"))
            engine.dispose()
            yield server.superuser_url.render_as_string(hide_password=False)
        finally:
            server.stop()


def run_mutmut(target: Target, database_url: str, max_children: int, mutants: list[str]) -> int:
    prepare(target)
    env = {**os.environ, "OPDESK_DATABASE_URL": database_url}
    env.pop("PYTEST_XDIST_WORKER", None)
    command = [str(MUTMUT), "run", "--max-children", str(max_children), *mutants]
    print(f"\n=== {target.name}: {target.source}", flush=True)
    print(f"    tests: {' '.join(target.tests)}", flush=True)
    # A session of its own, so that stopping this script stops mutmut's forked children too.
    mutmut = subprocess.Popen(  # noqa: S603 (mutmut, from this venv)
        command, cwd=target.run_dir, env=env, start_new_session=True
    )
    try:
        return mutmut.wait()
    except BaseException:
        os.killpg(mutmut.pid, signal.SIGTERM)
        mutmut.wait()
        raise


def stop(signum: int, frame: object) -> None:
    """``kill`` stops as Ctrl-C does: mutmut and its children first, then the server."""
    raise KeyboardInterrupt


# --------------------------------------------------------------------------- reporting


@dataclass
class Score:
    counts: Counter[str] = field(default_factory=Counter)

    def add(self, status: str) -> None:
        column = status if status in COLUMNS else "other"
        self.counts[column] += 1
        self.counts["total"] += 1

    def __iadd__(self, other: Score) -> Score:
        self.counts.update(other.counts)
        return self

    def line(self, label: str) -> str:
        c = self.counts
        total = c["total"]
        tried = total - c["not checked"]
        percent = 100.0 * (c["killed"] + c["timeout"]) / tried if tried else 0.0
        figures = "".join(f"{c[k]:>{width(k)}}" for k in COLUMNS)
        return f"{label:<36}{figures}{percent:>9.1f}%"


def width(column: str) -> int:
    return max(10, len(column) + 2)


@dataclass(frozen=True)
class Survivor:
    mutant: str
    status: str
    where: str
    removed: list[str]
    added: list[str]


def results(target: Target) -> dict[str, str]:
    """mutant name -> mutmut's verdict, from the last run of ``target``."""
    if not (target.run_dir / "mutants").is_dir():
        return {}
    out = subprocess.run(  # noqa: S603 (mutmut, from this venv)
        [str(MUTMUT), "results", "--all", "true"],
        cwd=target.run_dir,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = {}
    for line in out.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and "__mutmut_" in name:
            found[name] = status
    return found


def module_of(mutant: str) -> str:
    """``opdesk.audit.service.x_record__mutmut_3`` -> ``opdesk.audit.service``."""
    parts = mutant.split(".")
    for i in range(len(parts) - 1, -1, -1):
        if parts[i].startswith(("x_", "xǁ")):
            return ".".join(parts[:i])
    return mutant.rpartition(".")[0]


def source_file(module: str) -> Path:
    path = ROOT / "src" / Path(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+\d+(?:,\d+)? @@")


def describe(target: Target, mutant: str, status: str) -> Survivor:
    """Where a mutant is (file:line of the first changed line) and what it changes."""
    diff = mutant_diff(target, mutant).splitlines()
    removed = [line[1:] for line in diff if line.startswith("-") and not line.startswith("---")]
    added = [line[1:] for line in diff if line.startswith("+") and not line.startswith("+++")]
    path = source_file(module_of(mutant))
    where = str(path.relative_to(ROOT))
    line = first_changed_line(diff)
    if line is not None and removed:
        found = locate(path, removed[0], line)
        where = f"{where}:{found}" if found else where
    return Survivor(mutant, status, where, removed, added)


def mutant_diff(target: Target, mutant: str) -> str:
    """``mutmut show``: in this process when mutmut's function is there (a process each
    costs seconds), else through the command."""
    path = source_file(module_of(mutant)).relative_to(ROOT)
    try:
        from mutmut.mutation.diff_apply import get_diff_for_mutant

        with chdir(target.run_dir):
            return str(get_diff_for_mutant(mutant, path=path))
    except Exception:  # another mutmut version: ask the command
        return subprocess.run(  # noqa: S603 (mutmut, from this venv)
            [str(MUTMUT), "show", mutant],
            cwd=target.run_dir,
            capture_output=True,
            text=True,
            check=False,
        ).stdout


def first_changed_line(diff: list[str]) -> int | None:
    """The changed line's number within the function text the diff is of (1 = first)."""
    number = None
    for line in diff:
        hunk = HUNK.match(line)
        if hunk:
            number = int(hunk.group(1))
            continue
        if number is None or line.startswith(("---", "+++")):
            continue
        if line.startswith("-"):
            return number
        if not line.startswith("+"):
            number += 1
    return None


def locate(path: Path, text: str, near: int) -> int | None:
    """The file line holding ``text``: the function's text is a slice of the file, so the
    line ``near`` lines into it is found by its content, closest to any occurrence."""
    lines = path.read_text().splitlines()
    wanted = text.strip()
    hits = [i + 1 for i, line in enumerate(lines) if line.strip() == wanted]
    if not hits:
        return None
    # Several identical lines: the function text starts at a def, so pick the hit whose
    # offset from the nearest def above it matches the diff's.
    defs = [
        i + 1 for i, line in enumerate(lines) if line.lstrip().startswith(("def ", "async def "))
    ]

    def offset(hit: int) -> int:
        above = [d for d in defs if d <= hit]
        return hit - (above[-1] if above else 0)

    return min(hits, key=lambda hit: abs(offset(hit) + 1 - near))


def report(chosen: list[Target], survivors_file: Path) -> None:
    overall = Score()
    rows: list[str] = []
    survivors: list[Survivor] = []
    for target in chosen:
        verdicts = results(target)
        if not verdicts:
            rows.append(f"{target.name:<36}(not run yet)")
            continue
        by_module: dict[str, Score] = {}
        for mutant, status in sorted(verdicts.items()):
            by_module.setdefault(module_of(mutant), Score()).add(status)
            if status not in ("killed", "timeout", "not checked"):
                survivors.append(describe(target, mutant, status))
        group = Score()
        for module, score in sorted(by_module.items()):
            group += score
            if len(by_module) > 1:
                rows.append(score.line("  " + str(source_file(module).relative_to(ROOT / "src"))))
        rows.append(group.line(target.source))
        overall += group
    header = f"{'module':<36}" + "".join(f"{k:>{width(k)}}" for k in COLUMNS) + f"{'score':>10}"
    print("\n" + header)
    print("\n".join(rows))
    print(overall.line("overall"))

    lines = [f"{s.where}  {s.status}  {s.mutant}" for s in survivors]
    detail = []
    for s in survivors:
        detail.append(f"{s.where}  {s.status}  {s.mutant}")
        detail += [f"  - {line.strip()}" for line in s.removed]
        detail += [f"  + {line.strip()}" for line in s.added]
    survivors_file.parent.mkdir(parents=True, exist_ok=True)
    survivors_file.write_text("\n".join(detail) + "\n")
    print(f"\n{len(survivors)} not killed (details: {survivors_file.relative_to(ROOT)}):")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("modules", nargs="*", help="names or paths from [tool.opdesk.mutate]")
    parser.add_argument("--report", action="store_true", help="only print the last results")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--mutant", action="append", default=[], help="re-run this mutant")
    args = parser.parse_args()
    if not MUTMUT.exists():
        sys.exit("mutmut is not installed: make setup (it is in the dev extras)")
    chosen = choose(targets(), args.modules)
    if args.mutant and len(chosen) != 1:
        sys.exit("--mutant needs exactly one module")

    started = time.monotonic()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if not args.report:
        with database_server() as url:
            for target in chosen:
                if run_mutmut(target, url, args.max_children, args.mutant) != 0:
                    sys.exit(f"mutmut failed for {target.source} (its output is above)")
    report(chosen, WORK / "survivors.txt")
    if not args.report:
        print(f"\nwall time {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
