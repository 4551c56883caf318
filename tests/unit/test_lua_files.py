"""Every Lua script is a file of its own under ``aury_tasks/redis/lua/``, loaded by one loader.

The files load and expand (no unknown include, no include cycle), each script documents its KEYS,
ARGV and reply in its header, no Lua is left in a Python string, and no Lua file spells a key
prefix of :mod:`aury_tasks.core.keys` (the scripts get their keys through KEYS, their prefixes
through ARGV).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import aury_tasks
from aury_tasks.core import keys
from aury_tasks.redis import scripts
from aury_tasks.redis.scripts import LuaLoadError, LuaScript, load_script, lua_source

PACKAGE = Path(aury_tasks.__file__).parent
LUA = PACKAGE / "redis" / "lua"
LUA_FILES = sorted(LUA.rglob("*.lua"))
SCRIPTS = sorted(path for path in LUA.glob("*.lua"))
INCLUDES = sorted((LUA / "include").glob("*.lua"))

#: A header line naming one key or argument: ``-- KEYS[1] …``, ``-- ARGV[16…] …``.
_ENTRY = re.compile(r"^-- (KEYS|ARGV)\[(\d+)(…|\.\.\.)?\]")
#: A key or argument used at a literal position: ``KEYS[1]``, ``ARGV[12]``.
_USE = re.compile(r"\b(KEYS|ARGV)\[(\d+)\]")


def _name(path: Path) -> str:
    return path.relative_to(LUA).with_suffix("").as_posix()


def _header(path: Path) -> list[str]:
    """The comment lines the file starts with (up to its first include or code line)."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("--") or line.startswith("--- @include"):
            break
        lines.append(line)
    return lines


def test_the_package_has_the_scripts_and_the_includes() -> None:
    assert len(SCRIPTS) >= 25, SCRIPTS
    assert {path.name for path in INCLUDES} >= {"index_backlog.lua", "ledger.lua", "send_record.lua"}
    assert {path.parent for path in LUA_FILES} == {LUA, LUA / "include"}


@pytest.mark.parametrize("path", LUA_FILES, ids=_name)
def test_every_lua_file_loads_and_expands(path: Path) -> None:
    source = lua_source(_name(path))
    assert "--- @include" not in source
    assert "redis.call" in source
    if path.parent == LUA:
        assert load_script(_name(path)).source == source


@pytest.mark.parametrize("path", SCRIPTS, ids=_name)
def test_an_include_is_expanded_once_per_script(path: Path) -> None:
    source = lua_source(_name(path))
    for include in INCLUDES:
        # Each include defines its functions as ``local function <name>(``: once at most.
        for function in re.findall(r"^local function (\w+)\(", include.read_text(encoding="utf-8"), re.M):
            assert source.count(f"local function {function}(") <= 1, (path.name, function)


def test_the_script_constants_are_the_files() -> None:
    from aury_tasks.broker.redis import base, priority, recovery, wakeup
    from aury_tasks.middleware import limits
    from aury_tasks.scheduler import store as schedule_store
    from aury_tasks.workflows import state

    loaded = {load_script(_name(path)) for path in SCRIPTS}
    constants = {
        value
        for module in (scripts, base, priority, recovery, wakeup, limits, state, schedule_store)
        for value in vars(module).values()
        if isinstance(value, LuaScript) and value is not base.DISPATCH
    }
    assert constants == loaded  # every file is used, and every script is a file
    assert scripts.TRANSITION is load_script("transition")  # cached: one object per script


def test_the_loader_refuses_unknown_includes_cycles_and_malformed_lines(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    files = {
        "unknown.lua": '--- @include "include/nowhere.lua"\nreturn 1\n',
        "cycle.lua": '--- @include "include/a.lua"\nreturn 1\n',
        "include/a.lua": '--- @include "include/b.lua"\n',
        "include/b.lua": '--- @include "include/a.lua"\n',
        "itself.lua": '--- @include "itself.lua"\n',
        "malformed.lua": "--- @include include/a.lua\n",
        "twice.lua": '--- @include "include/c.lua"\n--- @include "include/c.lua"\nreturn f()\n',
        "include/c.lua": "local function f() return 1 end",
    }
    for name, text in files.items():
        (tmp_path / "lua" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "lua" / name).write_text(text, encoding="utf-8")
    monkeypatch.setattr(scripts, "_LUA_ROOT", tmp_path / "lua")
    with pytest.raises(LuaLoadError, match="nowhere"):
        lua_source("unknown")
    cycle = r"cycle\.lua -> include/a\.lua -> include/b\.lua -> include/a\.lua"
    with pytest.raises(LuaLoadError, match=cycle):
        lua_source("cycle")
    with pytest.raises(LuaLoadError, match="cycle"):
        lua_source("itself")
    with pytest.raises(LuaLoadError, match="malformed"):
        lua_source("malformed")
    with pytest.raises(LuaLoadError, match="no Lua file"):
        lua_source("missing")
    assert lua_source("twice") == "local function f() return 1 end\nreturn f()\n"


def _string_literals(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda path: str(path.relative_to(PACKAGE))
)
def test_no_python_module_holds_lua(path: Path) -> None:
    lua = [text for text in _string_literals(path) if re.search(r"redis\.p?call\(", text)]
    assert not lua, f"{path.relative_to(PACKAGE)} holds Lua in a string: put it in aury_tasks/redis/lua/"


def _key_prefixes() -> list[str]:
    """The prefixes keys.py spells (those of the default prefix): each part's, and the broker's
    namespace with its colon."""
    space = keys.DEFAULT
    prefixes = [space.ledger_prefix, space.scheduler_prefix, space.limits_prefix, space.alerts_prefix]
    return [*prefixes, f"{space.prefix}:", "__acks__", "__heartbeats__"]


def test_the_prefixes_are_the_ones_keys_py_defines() -> None:
    expected = {"aury:ledger:", "aury:scheduler:", "aury:limits:", "aury:alerts:", "aury:"}
    assert expected <= set(_key_prefixes())


@pytest.mark.parametrize("path", LUA_FILES, ids=_name)
def test_no_lua_file_spells_a_key_prefix(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    spelled = [prefix for prefix in _key_prefixes() if prefix in text]
    assert not spelled, (
        f"{_name(path)} spells {spelled}: take the key through KEYS or the prefix through ARGV"
    )


@pytest.mark.parametrize("path", SCRIPTS, ids=_name)
def test_every_script_starts_with_its_keys_argv_and_reply(path: Path) -> None:
    header = _header(path)
    assert header, f"{path.name} has no header comment"
    entries = [match.groups() for line in header if (match := _ENTRY.match(line))]
    assert any(line.startswith("-- KEYS") for line in header), f"{path.name}: no KEYS line ('-- KEYS none')"
    assert any(kind == "ARGV" for kind, _, _ in entries), f"{path.name}: no ARGV line"
    assert any(line.startswith("-- Returns") for line in header), f"{path.name}: no 'Returns' line"
    # One line each, in order; every position the code reads is among them.
    for kind in ("KEYS", "ARGV"):
        numbers = [int(number) for k, number, _ in entries if k == kind]
        assert numbers == list(range(1, len(numbers) + 1)), (path.name, kind, numbers)
    body = "\n".join(
        line for line in path.read_text(encoding="utf-8").splitlines() if not line.startswith("--")
    )
    for kind, number in _USE.findall(body):
        documented = any(
            k == kind and (int(n) == int(number) or (rest and int(n) <= int(number)))
            for k, n, rest in entries
        )
        assert documented, f"{path.name} reads {kind}[{number}] without a header line for it"


def test_the_send_scripts_constant_is_the_python_one() -> None:
    # The send path holds the backlog's limit as a constant (its argument list is kept short).
    text = (LUA / "include" / "send_record.lua").read_text(encoding="utf-8")
    limit = re.search(r"^local INDEX_BACKLOG_LIMIT = (\d+)$", text, re.M)
    assert limit is not None
    assert int(limit[1]) == scripts.INDEX_BACKLOG_LIMIT
