"""Real public W&B sweep files through the real `expctl sweep create`.

The corpus (tests/corpora/wandb_sweeps, sources in its SOURCES.md) holds sweep files exactly as
their authors committed them. For each one the test decides from W&B's own rules (the `wandb`
client, which reads the file with PyYAML and refuses min/max bounds it calls "ambiguous", and
wandb/sweeps @b1dfc5f, whose controller must be able to build a run from the file) whether W&B
accepts it, and asserts:

- a file W&B accepts is accepted (exit 0, only the sweep id on stdout, no traceback) and read as
  W&B reads it: every parameter with W&B's distribution, the grid's size as W&B counts it,
  hyperband's bands as W&B computes them, the metric with W&B's default goal;
- a file W&B rejects (listed in WANDB_REJECTS, with why) is refused the documented way: exit 2,
  nothing on stdout, one `error:` line naming the file, the problem at `file:line`, a `hint:`,
  no traceback.

Sweeps without `program`/`command` train expctl's trainer, whose parameters must be keys of the
project config: the test gives each such file a project config that has its keys, as the user's
own project would (W&B's function agents, `wandb.agent(id, function=train)`, take any names).
A `program` that does not exist here is what a user sees who creates the sweep from another
directory than the agents': accepted, with a warning (README, "sweep status").
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from expctl.sweeps.spec import load_spec

CORPUS = Path(__file__).resolve().parent / "corpora" / "wandb_sweeps"
FILES = sorted(p.name for p in CORPUS.glob("*.yaml"))
ID = re.compile(r"^[a-z0-9]{8}$")

# Files W&B itself rejects: file -> (line of the problem, text the problem names, why W&B rejects).
WANDB_REJECTS: dict[str, tuple[int, str, str]] = {
    # `early_terminate: hyperband` is a string. W&B's schema wants an object ("hyperband_stopping":
    # type object, `type` required) and its stop_runs() raises 'early terminate must be a dict with
    # a "type" section': the sweep can never early-terminate a run.
    "amyxlu__plaid-dev-distributed__sweep.yml.yaml": (6, "early_terminate", "not a mapping"),
    # `n_conv_layers` and `layer_sizes` are indented into `similarity`'s dict: no W&B parameter
    # schema allows extra keys (additionalProperties: false), so fill_parameter() finds none and
    # HyperParameter() raises "invalid hyperparameter configuration: similarity" — the
    # controller cannot build a single run.
    "kamilest__brain-age-gnn__wandb_sweep.yaml": (31, "n_conv_layers", "keys inside a parameter"),
    # `goal: "hello world wrt wandb sweep function"` is not minimize/maximize: a schema violation
    # ("Malformed sweep config") that W&B answers by silently deleting the goal and minimizing
    # (fill_validate_metric) — a different sweep from the one written.
    "spokenlanguage__platalea__wandb_sweep.yaml": (4, "metric.goal", "goal is not an enum value"),
}

# Files W&B rejects only because `wandb sweep` reads them with PyYAML (YAML 1.1), to which a bare
# `1e-5` is the *string* "1e-5": a min/max string matches no parameter schema (or trips
# `min >= max` on str vs int), so W&B's controller cannot build a run. Read as numbers (YAML
# 1.2) each is a valid W&B sweep. expctl documents reading them as numbers (README: "A bare
# `1e-5` is read as a number (YAML 1.2 ...)"), so these must be accepted, bounds as floats.
# file -> the parameters whose bounds are written as bare exponents.
YAML_1_2_ONLY: dict[str, list[str]] = {
    "Ackesnal__RePaViT__sweep_config.yaml": ["min_lr"],
    "DuaneNielsen__reality__sweep_config.yaml": ["lr"],
    "NuTufts__lareqnn__sweep_config.yaml": ["lr"],
    "david-meltzer__Goodreads-Sentiment-Analysis__sweep.yml.yaml": ["learning_rate"],
    "karapostK__hassaku__conf__sweeps__protomf__iprotomf_amazonvid2018_sweep_conf.yml.yaml": [
        "lr",
        "wd",
        "sim_batch_weight",
        "sim_proto_weight",
    ],
    "moonjunyyy__dualprompt__sweep.json.yaml": [
        "model_args.lambd",
        "model_args.xi",
        "model_args.zetta",
    ],
    "shamoons__modulation-explainability__sweep.yml.yaml": ["base_lr", "max_lr", "weight_decay"],
}

# Grid sizes as W&B runs them: counted by running wandb/sweeps (b1dfc5f) grid_search_next_runs()
# until it returns no run, with numbers read as YAML 1.2 (the same sizes with YAML 1.1 here).
WANDB_GRID_SIZE: dict[str, int] = {
    "HashakGik__torch-wandb-boilerplate__sweep.yml.yaml": 16,
    "NicolasZucchet__Transformer-filters__sweep_config.yaml": 168,
    "OliverZim__nlp-research-template__sweep_config.yaml": 42,
    "WenkelF__copt__sweeps__sweep_grid_mcut.yaml": 6,
    "benihime91__leaf-disease-classification-kaggle__sweep.yml.yaml": 5,
    "copenlu__flexible-probing__sweep.yml.yaml": 81,
    "jameschapman19__DeltaEigenGame__experiments__deep_cca__noi.yaml": 48,
    "jameschapman19__DeltaEigenGame__sweeps__sweep.yaml": 648,
    "kenjiqq__aesthetics-scorer__sweep.yml.yaml": 2,
    "konev-artem__Revisiting_Deep_Metric_Learning_PyTorch__sweep.yml.yaml": 6,
    "manuel-delverme__constrained_vs_regularized__sweep.yml.yaml": 3,
    "rpatrik96__nl-causal-representations__sweeps__sem__mlp_sem10.yaml": 60,
    "rpatrik96__nl-causal-representations__sweeps__sweep.yaml": 72,
    "rvandewater__YAIB__wandb_sweep.yaml": 459,
    "wandb__examples__examples__wandb-sweeps__sweeps-boolean-parameters__sweep-bool.yaml": 8,
    "wandb__sweeps__examples__local-controller__sweep-local-hyperband.yaml": 27,
    "wandb__sweeps__examples__nested-params__sweep-nested-cli.yaml": 8,
    "wandb__sweeps__examples__sweep-grid.yaml": 27,
    "yiphei__yif-AI__autoregressive_encoder_decoder_transformer__sweep_configs__harry_loss_type_2_w_pos_embed_final.yaml": 1,
}

_PARAMETER_KEYS = {"value", "values", "distribution", "min", "max", "mu", "sigma", "q", "a", "b"}


# -- W&B's reading of a file ------------------------------------------------------------------------


def _raw(name: str) -> dict[str, Any]:
    """The file's data (key structure only matters here, so PyYAML's reading is fine)."""
    return yaml.safe_load((CORPUS / name).read_text(encoding="utf-8"))


def _wandb_parameters(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Flat name -> distribution, as wandb/sweeps' HyperParameterSet.from_config() reads them: a
    nested `parameters:` block is flattened; an explicit `distribution` wins; otherwise `values`
    (with `probabilities`) is categorical(_w_probabilities), `value` constant, int min/max
    int_uniform and any other min/max uniform."""
    flat: dict[str, str] = {}
    for key, node in params.items():
        name = f"{prefix}{key}"
        if "parameters" in node and not (_PARAMETER_KEYS & set(node)):
            flat.update(_wandb_parameters(node["parameters"], f"{name}."))
        elif "distribution" in node:
            flat[name] = node["distribution"]
        elif "values" in node:
            flat[name] = "categorical_w_probabilities" if "probabilities" in node else "categorical"
        elif "value" in node:
            flat[name] = "constant"
        else:
            ints = all(
                isinstance(node[k], int) and not isinstance(node[k], bool) for k in ("min", "max")
            )
            flat[name] = "int_uniform" if ints else "uniform"
    return flat


def _wandb_bands(et: dict[str, Any]) -> list[int]:
    """wandb/sweeps hyperband_stopping.hyperband_stop_runs(): `max_iter` (with `s`) wins over
    `min_iter`; bands are int()ed; eta defaults to 3."""
    eta = et.get("eta", 3)
    if "max_iter" in et:
        band, bands = et["max_iter"], []
        for _ in range(et["s"]):
            band /= eta
            if band < 1:
                break
            bands.append(int(band))
        return sorted(bands)
    band, bands = et["min_iter"], []
    for _ in range(100):
        bands.append(int(band))
        band *= eta
    return bands


def _runs_own_command(raw: dict[str, Any]) -> bool:
    return bool(raw.get("program") or raw.get("command"))


def _runs_missing_program(raw: dict[str, Any], cwd: Path) -> bool:
    command = raw.get("command") or ["${env}", "${interpreter}", "${program}", "${args}"]
    return (
        bool(raw.get("program")) and "${program}" in command and not (cwd / raw["program"]).exists()
    )


def _project_config_with_keys(names: list[str]) -> dict[str, Any]:
    """A config with every dotted name as a key (null), the user's project's own config."""
    config: dict[str, Any] = {}
    for name in names:
        node = config
        *parents, leaf = name.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = None
    return config


# -- the corpus itself ----------------------------------------------------------------------------


def test_the_corpus_is_real_varied_and_documented() -> None:
    sources = (CORPUS / "SOURCES.md").read_text(encoding="utf-8")
    listed = re.findall(r"^\| `([^`]+)` \|", sources, flags=re.M)
    assert sorted(listed) == FILES, "SOURCES.md must list exactly the corpus files"
    assert 30 <= len(FILES) <= 60
    repos = set(re.findall(r"^\| `[^`]+` \| \[([^\]]+)\]", sources, flags=re.M))
    assert len(repos) >= 20
    for name in (*WANDB_REJECTS, *YAML_1_2_ONLY, *WANDB_GRID_SIZE):
        assert name in FILES, name
    text = "\n".join((CORPUS / n).read_text(encoding="utf-8") for n in FILES)
    for feature in (
        "method: grid",
        "method: random",
        "method: bayes",
        "${args_no_hyphens}",
        "${interpreter}",
        "${program}",
        "${args}",
        "early_terminate:",
        "max_iter:",
        "min_iter:",
        "run_cap:",
        "q_log_uniform_values",
        "log_uniform_values",
        "log_uniform\n",
        "int_uniform",
        "q_uniform",
        "distribution: constant",
        "distribution: categorical",
        "controller:",
        '"method"',  # the JSON file
    ):
        assert feature in text, feature
    assert re.search(r"^ +parameters:", text, flags=re.M), "a nested parameters: block"


# -- every file through `expctl sweep create` -------------------------------------------------------


@pytest.mark.parametrize("name", FILES, ids=FILES)
def test_sweep_create_reads_a_real_wandb_file_as_wandb_does(
    cli, isolated: Path, tmp_path: Path, name: str
) -> None:
    path = CORPUS / name
    raw = _raw(name)
    storage = str(tmp_path / "sweeps.journal")
    if not _runs_own_command(raw) and name not in WANDB_REJECTS:
        # a sweep of expctl's trainer: its parameters are keys of the user's project config
        keys = list(_wandb_parameters(raw["parameters"]))
        (isolated / "configs").mkdir()
        (isolated / "configs" / "config.yaml").write_text(
            yaml.safe_dump(_project_config_with_keys(keys))
        )

    result = cli("sweep", "create", str(path), "--storage", storage)
    command = f"expctl sweep create tests/corpora/wandb_sweeps/{name} --storage {storage}"
    assert "Traceback" not in result.stderr, f"{command}\n{result.stderr}"

    if name in WANDB_REJECTS:
        line, names, why = WANDB_REJECTS[name]
        assert result.exit_code == 2, f"W&B rejects it ({why}); {command}\n{result.stderr}"
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        errors = [ln for ln in lines if ln.startswith("error:")]
        assert len(errors) == 1 and name in errors[0], result.stderr
        assert any(f"{name}:{line}:" in ln and names in ln for ln in lines), (
            f"expected the problem at {name}:{line} ({names}):\n{result.stderr}"
        )
        assert any(ln.startswith("hint:") for ln in lines), result.stderr
        return

    assert result.exit_code == 0, f"W&B accepts this file; {command}\n{result.stderr}"
    sweep_id = result.stdout.strip()
    assert ID.match(sweep_id) and result.stdout == f"{sweep_id}\n", result.stdout
    if _runs_missing_program(raw, isolated):
        assert f"warning: program {raw['program']!r} does not exist here" in result.stderr

    # what was created, as `sweep status` reports it
    status = cli("sweep", "status", sweep_id, "--storage", storage, "--format", "json")
    assert status.exit_code == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["method"] == raw["method"]
    if raw.get("name"):  # unnamed sweeps get a generated name, on W&B too
        assert data["name"] == raw["name"]
    assert data["run_cap"] == raw.get("run_cap")
    if "metric" in raw:
        metric = raw["metric"]
        assert data["metric"]["name"] == metric["name"]
        assert data["metric"]["goal"] == metric.get("goal", "minimize")  # W&B's default
        assert data["metric"]["target"] == metric.get("target")
    else:
        assert data["metric"] is None
    if raw["method"] == "grid":
        assert data["planned"] == WANDB_GRID_SIZE[name], "W&B runs a grid of this size"

    # the parsed spec: every parameter with the distribution W&B gives it
    spec = load_spec(path)
    assert {p.name: p.distribution for p in spec.parameters} == _wandb_parameters(raw["parameters"])
    for pname in YAML_1_2_ONLY.get(name, []):
        p = spec.parameter(pname)
        assert isinstance(p.min, float) and isinstance(p.max, (int, float)), (pname, p)
    if isinstance(raw.get("early_terminate"), dict):
        # (compared up to 2**53: past it W&B's int bands and a float's differ in the last digit,
        # after 10**15 logged values, which no run reaches)
        expected = [b for b in _wandb_bands(raw["early_terminate"]) if b <= 2**53]
        bands = [b for b in spec.early_terminate.bands() if b <= 2**53]
        assert bands == expected, (bands[:8], expected[:8])
        assert spec.early_terminate.eta == raw["early_terminate"].get("eta", 3)
