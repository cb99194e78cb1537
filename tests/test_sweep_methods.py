"""Method-specific decisions live in the Method objects of expctl/sweeps/methods/, not in
comparisons of the method's name scattered over the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import expctl
from expctl.sweeps.methods import METHODS, Method, method_for
from expctl.sweeps.spec import parse_spec

PACKAGE = Path(expctl.__file__).resolve().parent
METHODS_DIR = PACKAGE / "sweeps" / "methods"
# `method == "grid"`, `spec.method != 'bayes'`, `"grid" == method`, `method in ("grid", ...)`
NAME_TEST = re.compile(
    r"""\bmethod\s*(==|!=)\s*["']|["']\s*(==|!=)\s*[\w.]*\bmethod\b"""
    r"""|\bmethod\s+(not\s+)?in\s*[(\[{]\s*["']"""
)


def test_no_method_name_tests_outside_the_methods_package():
    found = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if not path.is_relative_to(METHODS_DIR)
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if NAME_TEST.search(line)
    ]
    assert not found, (
        "ask the sweep's Method object (expctl.sweeps.methods) instead:\n" + "\n".join(found)
    )


def test_the_name_test_finds_what_it_is_meant_to_find():
    for line in (
        'if spec.method == "grid":',
        "x = self.spec.method != 'bayes'",
        'if "grid" == spec.method:',
        'if method in ("grid", "random"):',
    ):
        assert NAME_TEST.search(line), line
    assert not NAME_TEST.search("for method in _kernel_methods():")


@pytest.mark.parametrize("name", list(METHODS))
def test_every_registered_method_is_what_its_spec_gets(name: str):
    extra = {"metric": {"name": "loss", "goal": "minimize"}} if name == "bayes" else {}
    spec = parse_spec({"method": name, "parameters": {"x": {"values": [1, 2]}}, **extra})
    method = method_for(spec)
    assert isinstance(method, Method) and method.name == name and method.spec is spec


def test_grid_queues_its_points_and_plans_them_the_others_sample():
    params = {"x": {"values": [1, 2, 3]}}
    grid = method_for(parse_spec({"method": "grid", "parameters": params, "run_cap": 2}))
    assert grid.points_to_enqueue() == [{"x": 1}, {"x": 2}]
    assert (grid.planned(), grid.size(), grid.samples_on_claim) == (2, 3, False)
    rand = method_for(parse_spec({"method": "random", "parameters": params, "run_cap": 2}))
    assert (rand.points_to_enqueue(), rand.planned(), rand.size()) == ([], None, None)
    assert rand.samples_on_claim


def test_sweeps_packages_stay_small():
    """No sweeps package over 20 modules, no module over 400 lines (issue 22)."""
    sweeps = PACKAGE / "sweeps"
    for package in [sweeps, *(p.parent for p in sweeps.glob("*/__init__.py"))]:
        modules = list(package.glob("*.py"))
        assert len(modules) <= 20, (package, len(modules))
        for module in modules:
            lines = len(module.read_text().splitlines())
            assert lines <= 400, (module, lines)
