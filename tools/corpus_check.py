"""Exploratory check of expctl against real-world Hydra config trees and W&B sweep files.

Not a test: it reads a corpus kept OUTSIDE the repo (default /work/corpus) and reports where
expctl and the tools it imitates disagree.

* Hydra: every composition (primary config, then ``group=option`` for each option of each
  group) is composed with plain Hydra and with :func:`expctl.config.compose_config`; leaves are
  compared, and ``expctl config show`` is run as a subprocess for a sample.
* Sweeps: every file goes through ``expctl sweep create`` (subprocess) and ``load_spec``; each
  refusal is set against what W&B does (its schema via jsonschema, run by ``--wandb-python``,
  the client's "ambiguous" check, and a transcription of wandb/sweeps' grid enumeration).

    python tools/corpus_check.py --corpus /work/corpus --wandb-python python3
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

SKIP_RAW = ("${now:", "${hydra:")  # legitimately differ between runs / tools
ERR = "__error__"


# -- Hydra side ----------------------------------------------------------------------------------


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """{dotted path: leaf}; empty containers and error markers are leaves."""
    if isinstance(node, dict) and node and ERR not in node:
        out = {}
        for k, v in node.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(node, list) and node:
        out = {}
        for i, v in enumerate(node):
            out.update(flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: node}


def resolve_leaves(node: Any, errors: dict[str, str], path: str = "") -> Any:
    """Plain copy of a DictConfig, resolving leaf by leaf; failures become {ERR: type}."""
    from omegaconf import DictConfig, ListConfig

    keys = list(node.keys()) if isinstance(node, DictConfig) else range(len(node))
    out: Any = {} if isinstance(node, DictConfig) else []
    for k in keys:
        sub = f"{path}.{k}" if isinstance(node, DictConfig) else f"{path}[{k}]"
        sub = sub.lstrip(".")
        child = node._get_node(k)
        if child._is_missing() and not child._is_interpolation():
            v: Any = "???"
        else:
            try:
                v = node[k]
                if isinstance(v, DictConfig | ListConfig):
                    v = resolve_leaves(v, errors, sub)
            except Exception as e:
                errors[sub] = f"{type(e).__name__}: {str(e).splitlines()[0]}"
                v = {ERR: type(e).__name__}
        if isinstance(out, dict):
            out[k] = v
        else:
            out.append(v)
    return out


def hydra_compose(config_dir: Path, name: str, overrides: list[str], version_base=None) -> dict:
    """Compose as the app's own Hydra would (``version_base`` as in its @hydra.main)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base=version_base):
            cfg = compose(name, overrides=overrides, return_hydra_config=True)
        choices = dict(cfg.hydra.runtime.choices)
        HydraConfig.instance().set_config(cfg)
        OmegaConf.set_struct(cfg, False)
        del cfg["hydra"]
        raw = flatten(OmegaConf.to_container(cfg, resolve=False))
        errors: dict[str, str] = {}
        values = flatten(resolve_leaves(cfg, errors))
    except Exception as e:
        return {"status": "error", "error": f"{type(e).__name__}: {str(e).splitlines()[0]}"}
    finally:
        GlobalHydra.instance().clear()
    skip = {p for p, v in raw.items() if isinstance(v, str) and any(s in v for s in SKIP_RAW)}
    grew = True
    while grew:  # and what refers to those (paths.log_dir: ${paths.output_dir})
        refs = {
            p
            for p, v in raw.items()
            if isinstance(v, str)
            and p not in skip
            and any("${" + q + "}" in v or "${" + q + "." in v for q in skip)
        }
        skip |= refs
        grew = bool(refs)
    real = {p: m for p, m in errors.items() if p not in skip and "MissingValue" not in m}
    return {
        "status": "resolve_error" if real else "ok",
        "values": values,
        "raw": raw,
        "skip": sorted(skip),
        "errors": real,
        "choices": choices,
    }


def expctl_compose(config_dir: Path, name: str, overrides: list[str]) -> dict:
    from omegaconf import OmegaConf

    from expctl.config import ConfigSource, compose_config
    from expctl.errors import ExpctlError

    try:
        cfg = compose_config(
            ConfigSource(config_dir, name, tuple(overrides)), require_complete=False
        )
        return {"status": "ok", "values": flatten(OmegaConf.to_container(cfg, resolve=False))}
    except ExpctlError as e:
        return {"status": "error", "error": str(e), "hint": e.hint}
    except Exception as e:
        return {"status": "unexpected", "error": f"{type(e).__name__}: {str(e).splitlines()[0]}"}


def same(a: Any, b: Any) -> bool:
    """Equal and of the same type (1 and 1.0 and True differ, as they do in a config)."""
    return type(a) is type(b) and a == b


def classify(h: dict, x: dict) -> tuple[str, list]:
    if x["status"] == "unexpected":
        return "unexpected_exception", []
    if h["status"] == "error":
        return ("both_fail_compose" if x["status"] == "error" else "hydra_only_error"), []
    resolver = any("UnsupportedInterpolationType" in m for m in h["errors"].values())
    if x["status"] == "error":
        if h["status"] == "resolve_error":
            return ("both_fail_custom_resolver" if resolver else "both_fail_resolve"), []
        return "expctl_only_error", []
    if h["status"] == "resolve_error":
        return "hydra_only_error", sorted(h["errors"].items())[:5]
    diffs = []
    skip = set(h["skip"])
    for path in sorted(set(h["values"]) | set(x["values"])):
        if path in skip or any(path.startswith((s + ".", s + "[")) for s in skip):
            continue
        hv, xv = h["values"].get(path, "<absent>"), x["values"].get(path, "<absent>")
        if same(hv, xv):
            continue
        interp = isinstance(xv, str) and "${" in xv
        if isinstance(hv, dict) and ERR in hv and interp:
            continue  # points at ??? : expctl keeps it as written (documented)
        if hv == "<absent>" and interp:
            below = [v for p, v in h["values"].items() if p.startswith((path + ".", path + "["))]
            if "???" in below:  # a reference to a node holding ??? is kept (documented)
                skip.add(path)
                continue
        kind = "unresolved_in_expctl" if interp and not isinstance(hv, dict) else "value"
        diffs.append(
            {"path": path, "hydra": repr(hv)[:120], "expctl": repr(xv)[:120], "kind": kind}
        )
    return ("value_diff" if diffs else "match"), diffs


def stub_custom_resolvers(config_dir: Path) -> list[str]:
    """Register a placeholder for each resolver the tree uses that nobody registered (the
    app registers them at import time); both sides then see the same "<name>" value."""
    from omegaconf import OmegaConf

    names = set()
    for f in config_dir.rglob("*.yaml"):
        names |= set(re.findall(r"\$\{([A-Za-z_][\w.]*):", f.read_text(errors="replace")))
    added = sorted(n for n in names - {"hydra", "now"} if not OmegaConf.has_resolver(n))
    for n in added:
        OmegaConf.register_new_resolver(n, lambda *a, _n=n: f"<{_n}>")
    return added


def option_names(config_dir: Path, group: str, groups: set[str]) -> list[str]:
    base = config_dir / group
    names = []
    for f in sorted(base.rglob("*.yaml")):
        rel = f.relative_to(base).with_suffix("").as_posix()
        if "/" in rel and f"{group}/{rel.rsplit('/', 1)[0]}" in groups:
            continue  # belongs to a nested group (model/layer), not to `group`
        names.append(rel)
    return names


def sample(items: list, n: int) -> list:
    if len(items) <= n:
        return items
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def compositions(tree: dict, root: Path, max_options: int) -> list[tuple[str, list[str]]]:
    config_dir = root / tree["dir"]
    prim = tree.get("primaries", "auto")
    if prim == "auto":
        prim = sorted(p.stem for p in config_dir.glob("*.yaml"))
    prim = prim[: tree.get("max_primaries", 20)]
    base = list(tree.get("base_overrides", []))
    out = []
    for name in prim:
        if tree.get("raw_first") and base:
            out.append((name, []))
        out.append((name, base))
        if not tree.get("enumerate"):
            continue
        h = hydra_compose(config_dir, name, base, tree.get("version_base"))
        if h["status"] == "error":
            continue
        groups = {g for g in h.get("choices", {}) if not g.startswith("hydra")}
        for g in sorted(groups):
            if not (config_dir / g).is_dir():
                continue
            for opt in sample(option_names(config_dir, g, groups), max_options):
                if opt != h["choices"].get(g):
                    out.append((name, [*base, f"{g}={opt}"]))
    return out


def run_cli(args: list[str], cwd: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPCTL_")}
    p = subprocess.run(
        [sys.executable, "-m", "expctl", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    quality = []
    if "Traceback" in p.stderr:
        quality.append("traceback")
    if "unexpected" in p.stderr:
        quality.append("unexpected")
    if p.returncode not in (0, 2):
        quality.append(f"exit {p.returncode}")
    return {"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr[-1500:], "quality": quality}


def check_hydra(
    root: Path, manifest: dict, max_options: int, cli_sample: int, stub: bool = True
) -> list[dict]:
    results = []
    tmp = tempfile.mkdtemp(prefix="corpus-cli-")
    cli_done = 0
    for tree in manifest["trees"]:
        config_dir = (root / tree["dir"]).resolve()
        stubs = stub_custom_resolvers(config_dir) if stub else []
        try:
            combos = compositions(tree, root, max_options)
        except Exception as e:
            results.append({"tree": tree["dir"], "kind": "harness_error", "error": repr(e)})
            continue
        for i, (name, overrides) in enumerate(combos):
            vb = tree.get("version_base")
            h = hydra_compose(config_dir, name, overrides, vb)
            x = expctl_compose(config_dir, name, overrides)
            kind, diffs = classify(h, x)
            rec = {
                "tree": tree["dir"],
                "name": name,
                "overrides": overrides,
                "kind": kind,
                "version_base": vb,
                "diffs": diffs,
                "hydra_error": h.get("error") or h.get("errors"),
                "expctl_error": x.get("error"),
                "expctl_hint": x.get("hint"),
            }
            if vb is not None and kind != "match":
                # is it Hydra's version_base? expctl composes with version_base=None (1.3 rules)
                rec["kind_vs_hydra_1_3"] = classify(hydra_compose(config_dir, name, overrides), x)[
                    0
                ]
            used = sorted(
                {
                    n
                    for n in stubs
                    for v in h.get("raw", {}).values()
                    if isinstance(v, str) and "${" + n + ":" in v
                }
            )
            rec["custom_resolvers"] = used
            if (i == 0 or kind != "match") and cli_done < cli_sample and (i == 0 or not used):
                cli_done += 1
                args = [
                    "config",
                    "show",
                    "--config-dir",
                    str(config_dir),
                    "--config-name",
                    name,
                    "--format",
                    "json",
                    *overrides,
                ]
                cli = run_cli(args, tmp)
                rec["cli"] = {k: cli[k] for k in ("rc", "stderr", "quality")}
                if cli["rc"] == 0 and x["status"] == "ok":
                    shown = flatten(json.loads(cli["stdout"]))
                    rec["cli"]["differs_from_library"] = sorted(
                        p
                        for p, v in shown.items()
                        if p in x["values"]
                        and not same(v, x["values"][p])
                        and v != "********"
                        and p not in set(h.get("skip", []))
                    )[:5]
                if x["status"] == "error" and h["status"] != "error":
                    rec["select"] = select_probe(h, args, tmp)
            results.append(rec)
            print(f"  {kind:26} {tree['dir']} {name} {' '.join(overrides)}", file=sys.stderr)
    return results


def select_probe(h: dict, args: list[str], tmp: str) -> dict | None:
    """`--select K` for a top-level key K whose leaves all resolved under plain Hydra."""
    bad = {re.split(r"[.\[]", p)[0] for p in h["errors"]}
    good = [k for k in dict.fromkeys(re.split(r"[.\[]", p)[0] for p in h["values"]) if k not in bad]
    if not good:
        return None
    res = run_cli([*args, "--select", good[0]], tmp)
    return {"key": good[0], "rc": res["rc"], "stderr": res["stderr"][:300]}


# -- W&B side -------------------------------------------------------------------------------------

WANDB_SCHEMA_SNIPPET = r"""
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
fc = jsonschema.FormatChecker()
fc.checks("float")(lambda v: isinstance(v, float))
fc.checks("integer")(lambda v: isinstance(v, int))
v = jsonschema.Draft7Validator(schema, format_checker=fc)
out = {}
for name, data in json.load(sys.stdin).items():
    out[name] = [e.message[:200] for e in v.iter_errors(data)]
print(json.dumps(out))
"""


def wandb_kind(p: dict) -> str:
    """The distribution wandb/sweeps infers for one (non-nested) parameter dict."""
    if "distribution" in p:
        d = p["distribution"]
        return "categorical_w_probabilities" if d == "categorical" and "probabilities" in p else d
    if "values" in p:
        return "categorical_w_probabilities" if "probabilities" in p else "categorical"
    if "value" in p:
        return "constant"
    ints = [type(p.get(k)) is int for k in ("min", "max")]
    return "int_uniform" if all(ints) else "uniform"


def wandb_flatten(params: dict, prefix: str = "") -> list[tuple[str, dict]]:
    """wandb/sweeps HyperParameterSet.from_config: sorted keys, nested `parameters` unnested."""
    out = []
    for key, val in sorted(params.items()):
        if isinstance(val, dict) and "parameters" in val and len(val) == 1:
            out.extend(wandb_flatten(val["parameters"], f"{prefix}{key}."))
        else:
            out.append((f"{prefix}{key}", val))
    return out


def wandb_grid_size(params: dict) -> tuple[int | None, str | None]:
    """Transcription of wandb/sweeps grid_search_next_runs: distinct value-hash tuples."""
    import numpy as np
    import yaml

    def yaml_hash(value: Any) -> str:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return yaml.dump(value, default_flow_style=True, sort_keys=True)

    columns = []
    for name, p in wandb_flatten(params):
        kind = wandb_kind(p)
        if kind == "constant":
            continue  # constants are not part of the product
        if kind == "categorical":
            values = p["values"]
        elif kind == "int_uniform":
            values = list(range(p["min"], p["max"] + 1))
        elif kind == "q_uniform":
            values = np.arange(p["min"], p["max"], p.get("q", 1.0)).tolist()
        else:
            return None, f"{name}: {kind} is disallowed with grid search"
        columns.append([yaml_hash(v) for v in values])
    total = 1
    for c in columns:
        total *= len(c)
    if total > 200_000:
        return None, f"too large to enumerate ({total} tuples)"
    return len(set(itertools.product(*columns))), None


def wandb_client_refusal(data: Any) -> str | None:
    """What `wandb sweep FILE` refuses before contacting the server."""
    if not data:
        return "Configuration file is empty"
    if not isinstance(data, dict):
        return "Sweep config must be parsable as a JSON object."
    for name, p in (data.get("parameters") or {}).items():
        if isinstance(p, dict) and "min" in p and "max" in p and "distribution" not in p:
            lo, hi = p["min"], p["max"]
            if not (isinstance(lo, int) and isinstance(hi, int)) and not (
                isinstance(lo, float) and isinstance(hi, float)
            ):
                return f"Parameter {name} is ambiguous (min={lo!r}, max={hi!r})"
    return None


def wandb_extra_violations(data: dict) -> list[str]:
    """The checks wandb/sweeps adds to the schema (cfg.py): min<max, deprecated forms."""
    out = []
    for name, p in (data.get("parameters") or {}).items():
        if not isinstance(p, dict):
            out.append(f"Invalid configuration for hyperparameter '{name}'")
            continue
        try:
            if "min" in p and "max" in p and p["min"] >= p["max"]:
                out.append(f"{name}: min {p['min']} is not less than max {p['max']}")
        except TypeError:
            pass
        if p.get("distribution") in ("log_uniform", "inv_log_uniform", "q_log_uniform"):
            out.append(f"{name}: {p['distribution']} is deprecated (exponents)")
    return out


def yaml_features(text: str) -> dict:
    import yaml

    feats = {"merge_keys": bool(re.search(r"^\s*<<\s*:", text, re.M)), "duplicate_keys": []}
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return feats
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, yaml.MappingNode):
            keys = [k.value for k, _ in n.value]
            feats["duplicate_keys"] += sorted({k for k in keys if keys.count(k) > 1 and k != "<<"})
            stack += [v for _, v in n.value]
        elif isinstance(n, yaml.SequenceNode):
            stack += n.value
    return feats


def float_strings(a: Any, b: Any, path: str = "") -> list[str]:
    """Leaves PyYAML (W&B's loader) reads as str where expctl's YAML 1.2 loader reads a float."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [p for k in a if k in b for p in float_strings(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        return [
            p
            for i, (x, y) in enumerate(zip(a, b, strict=False))
            for p in float_strings(x, y, f"{path}[{i}]")
        ]
    return [f"{path.lstrip('.')}={a}"] if isinstance(a, str) and isinstance(b, float) else []


def check_sweeps(root: Path, sources: list[dict], wandb_python: str | None, schema: Path) -> list:
    import yaml

    from expctl.errors import SpecError
    from expctl.sweeps.grid import grid_points
    from expctl.sweeps.spec import load_spec
    from expctl.sweeps.spec_yaml import load_yaml

    loaded = {}
    for s in sources:
        text = (root / s["file"]).read_text(errors="replace")
        try:
            loaded[s["file"]] = (text, yaml.safe_load(text), None)
        except yaml.YAMLError as e:
            loaded[s["file"]] = (text, None, f"YAML error: {str(e).splitlines()[0]}")
    violations: dict[str, list[str]] = {}
    if wandb_python and schema.is_file():
        ok = {f: d for f, (_, d, e) in loaded.items() if e is None and isinstance(d, dict)}
        p = subprocess.run(
            [wandb_python, "-c", WANDB_SCHEMA_SNIPPET, str(schema)],
            text=True,
            input=json.dumps(ok, default=str),
            capture_output=True,
        )
        violations = json.loads(p.stdout) if p.returncode == 0 else {}
        if p.returncode:
            print(f"warning: schema check failed: {p.stderr[-300:]}", file=sys.stderr)
    results = []
    for s in sources:
        path = root / s["file"]
        text, data, yerr = loaded[s["file"]]
        rec: dict[str, Any] = {
            "repo": s["repo"],
            "path": s["path"],
            "commit": s["commit"],
            "file": s["file"],
            **yaml_features(text),
        }
        with tempfile.TemporaryDirectory(prefix="corpus-sweep-") as tmp:
            cli = run_cli(
                ["sweep", "create", str(path.resolve()), "--storage", f"{tmp}/x.journal"], tmp
            )
        rec["cli"] = {
            "rc": cli["rc"],
            "quality": cli["quality"],
            "problems": [
                ln.strip()
                for ln in cli["stderr"].splitlines()
                if ln.startswith("  ") and ": " in ln
            ][:20],
        }
        try:
            spec = load_spec(path)
            rec["expctl"] = "accept"
        except SpecError as e:
            spec, rec["expctl"], rec["problems"] = (
                None,
                "refuse",
                [f"{p}: {m}" for p, m in e.problems],
            )
        except Exception as e:
            spec, rec["expctl"], rec["problems"] = None, "unexpected", [f"{type(e).__name__}: {e}"]
        # what W&B does with the same file
        refusal = yerr or wandb_client_refusal(data)
        if refusal:
            rec["wandb"], rec["wandb_why"] = "refuse", [refusal]
        else:
            why = violations.get(s["file"], []) + wandb_extra_violations(data)
            rec["wandb"], rec["wandb_why"] = ("warn" if why else "ok"), why
            if data.get("method") == "grid" and isinstance(data.get("parameters"), dict):
                n, err = wandb_grid_size(data["parameters"])
                rec["wandb_grid"] = n if err is None else err
                if err and "disallowed" in err:
                    rec["wandb"] = "runtime_fail"
                    rec["wandb_why"].append(err)
            if data.get("method") == "bayes" and "metric" not in data:
                rec["wandb"], rec["wandb_why"] = (
                    "runtime_fail",
                    [*rec["wandb_why"], 'Bayesian search requires "metric" section'],
                )
            with contextlib.suppress(SpecError):
                rec["yaml11_strings"] = float_strings(data, load_yaml(text, "x")[0])[:5]
        if spec is not None and spec.method == "grid":
            from dataclasses import replace

            try:
                rec["expctl_grid"] = len(grid_points(replace(spec, run_cap=None), limit=200_000))
            except Exception as e:
                rec["expctl_grid"] = f"{type(e).__name__}: {e}"
        results.append(rec)
        print(f"  {rec['expctl']:10} wandb={rec['wandb']:12} {s['file']}", file=sys.stderr)
    return results


def pick(sources: list[dict], per_repo: int) -> list[dict]:
    by_repo: dict[str, list] = {}
    for s in sources:
        by_repo.setdefault(s["repo"], []).append(s)
    return [s for repo in sorted(by_repo) for s in sample(by_repo[repo], per_repo)]


def rule(message: str) -> str:
    """A problem message with its specifics blanked, for counting root causes."""
    message = re.sub(r"^\S+:(\d+: )?", "", message)  # the path/line prefix
    return re.sub(r"'[^']*'|\"[^\"]*\"|-?\d[\d.e+-]*", "_", message)[:110]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=Path("/work/corpus"))
    ap.add_argument("--only", choices=("hydra", "sweeps", "all"), default="all")
    ap.add_argument("--max-options", type=int, default=10, help="options sampled per group")
    ap.add_argument("--cli-sample", type=int, default=60, help="`config show` subprocess runs")
    ap.add_argument("--per-repo", type=int, default=6, help="sweep files sampled per repo")
    ap.add_argument("--wandb-python", default=None, help="a python with jsonschema (W&B schema)")
    ap.add_argument(
        "--wandb-schema",
        type=Path,
        default=None,
        help="wandb/sweeps src/sweeps/config/schema.json (default: CORPUS/wandb_schema.json)",
    )
    ap.add_argument("--report", type=Path, default=None, help="default: CORPUS/report.json")
    ap.add_argument(
        "--no-stub-resolvers",
        action="store_true",
        help="do not register placeholders for app-registered resolvers (eval, if...)",
    )
    ap.add_argument(
        "--env",
        action="append",
        default=["PROJECT_ROOT=/tmp/corpus-project", "USER=corpus"],
        help="KEY=VALUE set when unset (configs read ${oc.env:...})",
    )
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    for kv in args.env:
        os.environ.setdefault(*kv.split("=", 1))
    report: dict[str, Any] = {}
    if args.only in ("hydra", "all"):
        root = args.corpus / "hydra"
        manifest = json.loads((root / "manifest.json").read_text())
        report["hydra"] = check_hydra(
            root, manifest, args.max_options, args.cli_sample, not args.no_stub_resolvers
        )
    if args.only in ("sweeps", "all"):
        root = args.corpus / "sweeps"
        sources = pick(json.loads((root / "sources.json").read_text()), args.per_repo)
        schema = args.wandb_schema or args.corpus / "wandb_schema.json"
        report["sweeps"] = check_sweeps(root, sources, args.wandb_python, schema)
    out = args.report or args.corpus / "report.json"
    out.write_text(json.dumps(report, indent=1, default=str))
    print_summary(report)
    print(f"\nreport: {out}")
    return 0


def print_summary(report: dict) -> None:
    if "hydra" in report:
        rows = report["hydra"]
        print(f"\nHydra: {len(rows)} compositions in {len({r['tree'] for r in rows})} trees")
        for kind, n in Counter(r["kind"] for r in rows).most_common():
            print(f"  {kind:28} {n}")
        print(
            f"  (of which use app resolvers, stubbed: "
            f"{sum(bool(r.get('custom_resolvers')) for r in rows)}: "
            f"{dict(Counter(n for r in rows for n in r.get('custom_resolvers', [])))})"
        )
        vb = Counter(r["kind_vs_hydra_1_3"] for r in rows if "kind_vs_hydra_1_3" in r)
        print(
            f"  non-matching compositions of version_base 1.1 apps, vs Hydra 1.3 rules: {dict(vb)}"
        )
        cli = [r["cli"] for r in rows if "cli" in r]
        bad = Counter(q for c in cli for q in c["quality"])
        print(f"  config show runs: {len(cli)}; quality flags: {dict(bad) or 'none'}")
        sel = [r["select"] for r in rows if r.get("select")]
        print(f"  --select probes: {len(sel)}, failing: {sum(s['rc'] != 0 for s in sel)}")
    if "sweeps" in report:
        rows = report["sweeps"]
        print(f"\nSweeps: {len(rows)} files from {len({r['repo'] for r in rows})} repos")
        for key, n in Counter((r["expctl"], r["wandb"]) for r in rows).most_common():
            print(f"  expctl {key[0]:10} W&B {key[1]:12} {n}")
        stricter = Counter(
            rule(p)
            for r in rows
            if r["expctl"] != "accept" and r["wandb"] in ("ok", "warn")
            for p in r.get("problems", [])
        )
        print("  expctl refusals of files W&B creates, by rule:")
        for msg, n in stricter.most_common(25):
            print(f"    {n:3}  {msg}")
        grids = [r for r in rows if "expctl_grid" in r and "wandb_grid" in r]
        diff = [r for r in grids if r["expctl_grid"] != r["wandb_grid"]]
        print(f"  grid sizes compared: {len(grids)}, differing: {len(diff)}")
        for r in diff:
            print(f"    {r['file']}: expctl {r['expctl_grid']} W&B {r['wandb_grid']}")
        print(
            f"  with merge keys: {sum(r['merge_keys'] for r in rows)}, duplicate keys: "
            f"{sum(bool(r['duplicate_keys']) for r in rows)}, YAML-1.1 float strings: "
            f"{sum(bool(r.get('yaml11_strings')) for r in rows)}"
        )
        print(
            f"  CLI rc distribution: {dict(Counter(r['cli']['rc'] for r in rows))}; quality: "
            f"{dict(Counter(q for r in rows for q in r['cli']['quality'])) or 'none'}"
        )


if __name__ == "__main__":
    sys.exit(main())
