"""Real public Hydra config trees, verbatim, composed by expctl and by Hydra's own ``@hydra.main``.

The corpus (tests/corpora/hydra_trees, sources in its SOURCES.md) holds config trees exactly as
their authors committed them, under ``<owner>__<repo>/<path in the repository>``. Each case is a
command line a user of that repository would type (from its README/docs where it has one). For
each, Hydra 1.3's ``@hydra.main`` runs in a subprocess (the app of test_config_parity.py, which
prints ``OmegaConf.to_container(cfg, resolve=False)``, extended to also print the resolved config,
the selected subtree and its runtime values), and the test asserts:

- Hydra composes: ``compose_config(..., resolve=False)`` equals Hydra's unresolved config,
  ``expctl config show --no-resolve --format json`` prints it (exit 0), and the YAML of
  ``config show --no-resolve`` (and of ``config show``, where Hydra resolves and no ``${now:}``
  makes the text change) is byte for byte what ``--cfg job`` (``--cfg job --resolve``) prints,
  as the README says;
- Hydra also resolves: ``compose_config`` (resolving) and ``expctl config show --format json``
  give Hydra's resolved values (exit 0); when resolution fails under Hydra (a resolver only the
  repository's own app registers: ``${eval:}``, ``${resolve_default:}``, ``${multiply:}``...),
  ``compose_config`` raises ConfigError and ``config show`` fails the documented way;
- ``--select KEY``: the subtree Hydra resolves (``OmegaConf.select`` + ``to_container``), or the
  documented failure when Hydra cannot resolve it;
- Hydra fails to compose (a mandatory ``???`` group, a key that is not in the config, a missing
  plugin...): ``compose_config`` raises ConfigError and ``config show`` exits 2 with one
  ``error:`` line, a ``hint:``, nothing on stdout, no traceback; a file the error names exists,
  and where Hydra lists a group's available options, expctl names them too.

Every divergence of a case is collected and reported together (not only the first).

Hydra runs with exactly the user's overrides (no ``hydra/job_logging=none``: a tree that selects
a logging plugin must find it) in the test's working directory, so ``${hydra:runtime.cwd}`` is
the same directory for both. Normalised before comparing: a leaf whose text as written contains
``${now:...}`` has every digit replaced by 0 on both sides (the two run a second or more apart);
nothing else is normalised. ``--show-secrets`` is passed so that redaction (tested elsewhere) does
not hide values from the comparison.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from test_config_parity import HYDRA_APP

from expctl.config import ConfigSource, compose_config
from expctl.errors import ConfigError

CORPUS = Path(__file__).resolve().parent / "corpora" / "hydra_trees"

# Environment variables the trees read with ${oc.env:VAR,default}: unset unless a case sets them.
TREE_ENV = ("DATA_DIR", "CHECKPOINT_DIR", "RESULT_DIR")


@dataclass(frozen=True)
class Case:
    tree: str  # config dir, relative to CORPUS
    name: str  # --config-name
    overrides: tuple[str, ...] = ()
    select: str | None = None  # also check `config show --select`
    env: dict[str, str] = field(default_factory=dict)

    def id(self) -> str:
        owner_repo = self.tree.split("/", 1)[0].split("__", 1)[1]
        parts = [owner_repo, Path(self.tree).parent.name or "", self.name, *self.overrides]
        if self.select:
            parts.append(f"select={self.select}")
        parts += [f"{k}={v}" for k, v in self.env.items()]
        return " ".join(p for p in parts if p)


HYDRA = "facebookresearch__hydra/examples"
ISAAC = "isaac-sim__IsaacGymEnvs/isaacgymenvs/cfg"
MDLM = "kuleshov-group__mdlm/configs"
FLASH = "Dao-AILab__flash-attention/training/configs"
SAM2 = "facebookresearch__sam2/sam2"
NEMO_TTS = "NVIDIA__NeMo/examples/tts/conf/hifigan"
NEMO_LM = "NVIDIA__NeMo/examples/nlp/language_modeling/conf"
DP = "real-stanford__diffusion_policy/diffusion_policy/config"

CASES = [
    # --- Hydra's own examples (each its own config dir) ---
    # `optional server_db: ${server}_${db}`: an interpolated, optional defaults entry
    Case(f"{HYDRA}/advanced/defaults_list_interpolation/conf", "config"),
    Case(f"{HYDRA}/advanced/defaults_list_interpolation/conf", "config", ("db=sqlite",)),
    Case(
        f"{HYDRA}/advanced/defaults_list_interpolation/conf",
        "config",
        ("server=nginx", "db=sqlite"),
    ),
    # `optional dataset_model: ${dataset}_${model}` whose option is `# @package _global_`
    Case(f"{HYDRA}/patterns/specializing_config/conf", "config"),
    Case(f"{HYDRA}/patterns/specializing_config/conf", "config", ("dataset=cifar10",)),
    Case(
        f"{HYDRA}/patterns/specializing_config/conf", "config", ("dataset=cifar10", "model=resnet")
    ),
    # a defaults list inside a group file (server/apache -> server/db)
    Case(f"{HYDRA}/advanced/nested_defaults_list/conf", "config"),
    Case(
        f"{HYDRA}/advanced/nested_defaults_list/conf", "config", ("server/db=sqlite", "debug=true")
    ),
    # a multi-select group nested in a group file (server/site: [fb, google])
    Case(f"{HYDRA}/patterns/multi-select/conf", "config"),
    Case(f"{HYDRA}/patterns/multi-select/conf", "config", ("server/site=[google,amazon]",)),
    Case(f"{HYDRA}/patterns/multi-select/conf", "config", ("server/site=[]",)),
    # `db: ???` (a mandatory group) and extension via `base_mysql` / `/db_schema/base_mysql@_here_`
    Case(f"{HYDRA}/patterns/extending_configs/conf", "config"),
    Case(
        f"{HYDRA}/patterns/extending_configs/conf",
        "config",
        ("db=mysql_extending_from_this_group",),
    ),
    Case(
        f"{HYDRA}/patterns/extending_configs/conf",
        "config",
        ("db=mysql_extending_from_another_group",),
    ),
    Case(f"{HYDRA}/patterns/extending_configs/conf", "config", ("db=base_mysql",)),
    # `# @package _global_` experiments with `override /group`
    Case(f"{HYDRA}/patterns/configuring_experiments/conf", "config", ("+experiment=aplite",)),
    Case(
        f"{HYDRA}/patterns/configuring_experiments/conf",
        "config",
        ("+experiment=nglite", "server.port=9090"),
    ),
    Case(f"{HYDRA}/patterns/configuring_experiments/conf", "config", ("experiment=nglite",)),
    # `db@source` / `db@destination`: one group at two packages
    Case(f"{HYDRA}/advanced/package_overrides/conf", "simple"),
    Case(f"{HYDRA}/advanced/package_overrides/conf", "two_packages", ("db@source=postgresql",)),
    Case(
        f"{HYDRA}/advanced/package_overrides/conf",
        "two_packages",
        ("db@destination=postgresql", "source.user=me"),
    ),
    # `override hydra/job_logging: custom`, the option in the app's own hydra/ group
    Case(f"{HYDRA}/configure_hydra/logging/conf", "config"),
    Case(f"{HYDRA}/configure_hydra/logging/conf", "config", ("+level=debug",)),
    # --- IsaacGymEnvs: `train: ${task}PPO` (a defaults entry interpolating another group's
    # choice), task/env nested in the task option, ${resolve_default:} registered by the package,
    # `override hydra/job_logging: disabled`, `${..physics_engine}` relative interpolation
    Case(ISAAC, "config", ("task=Cartpole",), select="train.params.seed"),
    Case(
        ISAAC,
        "config",
        ("task=Ant", "headless=True", "checkpoint=runs/Ant/nn/Ant.pth", "test=True", "num_envs=64"),
        select="task.sim",
    ),
    Case(
        ISAAC,
        "config",
        ("task=HumanoidAMP", "++task.env.motion_file=amp_humanoid_run.npy", "experiment=AMP_run"),
        select="task.physics_engine",
    ),
    Case(ISAAC, "config", ("task=AllegroKukaLSTM", "task/env=throw")),
    Case(ISAAC, "config", ("task=AntSAC", "train=AntSAC"), select="train.params.config"),
    # --- mdlm: absolute `/callbacks: [a, b, c]` multi-select, ${eval:}/${div_up:}/${cwd:} app
    # resolvers, `hydra.run.dir` with ${now:} and `hydra.job.chdir: true`
    Case(MDLM, "config", (), select="wandb"),
    Case(
        MDLM,
        "config",
        (
            "model=small",
            "data=openwebtext-split",
            "wandb.name=mdlm-owt",
            "parameterization=subs",
            "model.length=1024",
            "eval.compute_generative_perplexity=True",
            "sampling.steps=1000",
        ),
        select="wandb",
    ),
    Case(
        MDLM,
        "config",
        (
            "mode=ppl_eval",
            "loader.batch_size=16",
            "loader.eval_batch_size=16",
            "data=openwebtext-split",
            "model=small-ar",
            "parameterization=ar",
            "backbone=ar",
            "model.length=1024",
        ),
        select="wandb.tags",
    ),
    Case(MDLM, "config", ("callbacks=[checkpoint_monitor]", "strategy=fsdp"), select="callbacks"),
    # --- flash-attention training: a `# @package _global_` primary, experiments two levels deep
    # whose defaults chain to `/experiment/owt/base.yaml` and override `/model/gpt2model` and a
    # multi-select `/callbacks`, `${hydra:runtime.cwd}`, `${oc.env:VAR,default}`, `${oc.select:}`,
    # `override hydra/hydra_logging: colorlog` (the hydra-colorlog plugin, not installed here)
    Case(FLASH, "config", ("experiment=owt/gpt2s-flash",)),
    Case(
        FLASH,
        "config",
        ("experiment=owt/gpt2s-flashh", "hydra/hydra_logging=default", "hydra/job_logging=default"),
    ),
    Case(
        FLASH,
        "config",
        ("experiment=owt/gpt2s-flash", "hydra/hydra_logging=default", "hydra/job_logging=default"),
        select="callbacks",
    ),
    Case(
        FLASH,
        "config",
        (
            "experiment=pile/gpt3s-flash",
            "trainer.devices=8",
            "name=pile-gpt3s-flash",
            "resume=True",
            "hydra/hydra_logging=default",
            "hydra/job_logging=default",
        ),
        select="callbacks.model_checkpoint",
    ),
    Case(
        FLASH,
        "config",
        ("experiment=owt/gpt2m", "hydra/hydra_logging=default", "hydra/job_logging=default"),
        select="datamodule.cache_dir",
        env={"DATA_DIR": "/datasets"},
    ),
    # --- sam2: config names with a path and `.yaml`, `# @package _global_`, deep `_target_`
    # trees, `++` overrides (build_sam.py), a scalar root file (`sam2_hiera_l.yaml` holds only a
    # path), a training config with its app's ${times:} resolver
    Case(SAM2, "configs/sam2.1/sam2.1_hiera_l.yaml"),
    Case(
        SAM2,
        "configs/sam2.1/sam2.1_hiera_t.yaml",
        (
            "++model._target_=sam2.sam2_video_predictor.SAM2VideoPredictor",
            "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
            "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
            "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
            "++model.binarize_mask_from_pts_for_mem_enc=true",
            "++model.fill_hole_area=8",
        ),
    ),
    Case(SAM2, "configs/sam2/sam2_hiera_s"),
    Case(SAM2, "sam2_hiera_l"),
    Case(
        SAM2,
        "configs/sam2.1_training/sam2.1_hiera_b+_MOSE_finetune.yaml",
        ("scratch.train_batch_size=2",),
        select="scratch",
    ),
    # --- NeMo: `model/generator: v1` defaults in a primary with no `_self_`, `???` values
    # referenced from group files, the functional-test and fine-tuning docs' command lines
    # (the docs' one has `validation_dataset`, which is no key), `optional
    # tp_overlap@model.ub_tp_comm_overlap_cfg:` (an optional entry with no option),
    # `.@model.encoder: megatron_model_base_config` (the primary's own dir as a group, twice)
    Case(NEMO_TTS, "hifigan", (), select="model.train_ds"),
    Case(
        NEMO_TTS,
        "hifigan",
        (
            "train_dataset=/data/an4_train.json",
            "validation_datasets=/data/an4_val.json",
            "trainer.devices=[0]",
            "+trainer.limit_train_batches=1",
            "+trainer.limit_val_batches=1",
            "+trainer.max_epochs=1",
            "trainer.strategy=auto",
            "model.train_ds.dataloader_params.batch_size=4",
            "model.train_ds.dataloader_params.num_workers=0",
            "model.validation_ds.dataloader_params.batch_size=4",
            "model.validation_ds.dataloader_params.num_workers=0",
            "model.generator.upsample_initial_channel=64",
            "+model.debug=true",
            "~trainer.check_val_every_n_epoch",
        ),
    ),
    Case(
        NEMO_TTS,
        "hifigan",
        (
            "model/train_ds=train_ds_finetune",
            "model/validation_ds=val_ds_finetune",
            "train_dataset=/m/train.json",
            "validation_dataset=/m/val.json",
            "model.optim.lr=0.00001",
            "~model.optim.sched",
            "trainer.devices=-1",
            "trainer.accelerator='gpu'",
            "trainer.max_epochs=50",
            "+init_from_nemo_model=/m/hifigan.nemo",
        ),
    ),
    Case(
        NEMO_TTS,
        "hifigan_44100",
        (
            "model/train_ds=train_ds_finetune",
            "model/validation_ds=val_ds_finetune",
            "train_dataset=/m/train.json",
            "validation_datasets=/m/val.json",
            "model.optim.lr=0.00001",
            "~model.optim.sched",
            "+trainer.max_epochs=50",
            "model/generator=v3",
        ),
    ),
    Case(NEMO_LM, "megatron_gpt_config", (), select="trainer"),
    Case(
        NEMO_LM,
        "megatron_gpt_config",
        (
            "tp_overlap@model.ub_tp_comm_overlap_cfg=ub_cfg_h100_h12288_tp4_mbs1_seqlen2048",
            "model.ub_tp_comm_overlap=True",
            "model.tensor_model_parallel_size=4",
            "trainer.devices=4",
        ),
        select="model.ub_tp_comm_overlap_cfg",
    ),
    Case(
        NEMO_LM,
        "megatron_t5_config",
        ("model.encoder.num_layers=4", "model.decoder.num_layers=4", "trainer.devices=2"),
        select="model.encoder",
    ),
    # --- diffusion_policy: `${now:}` in the job's own config (logging.name, multi_run.*),
    # `hydra.job.override_dirname: ${name}`, the README's lines (a `hydra.run.dir=` override,
    # `--config-name X.yaml`), ${eval:} registered by the app
    Case(
        DP,
        "train_diffusion_unet_real_image_workspace",
        ("task.dataset_path=data/demo_pusht_real",),
        select="logging",
    ),
    Case(
        DP,
        "train_diffusion_unet_hybrid_workspace",
        (
            "training.seed=42",
            "training.device=cuda:0",
            "hydra.run.dir=data/outputs/${now:%Y.%m.%d}/${now:%H.%M.%S}_${name}_${task_name}",
        ),
        select="multi_run",
    ),
    Case(DP, "train_robomimic_image_workspace.yaml", ("task=square_image",), select="shape_meta"),
    Case(
        DP,
        "train_bet_lowdim_workspace",
        ("task=pusht_lowdim", "training.num_epochs=10"),
        select="task.env_runner",
    ),
]

# test_config_parity's app, which prints `@@` + the unresolved config, also printing the
# resolved config (or why it does not resolve), the selected subtree and the runtime values
_PRINT = '    print("@@" + json.dumps(OmegaConf.to_container(cfg, resolve=False)))'
_REPORT = """
def _outcome(tag, compute):
    import json
    try:
        print(tag + json.dumps({"ok": compute()}))
    except Exception as e:
        print(tag + json.dumps({"error": f"{type(e).__name__}: {e}"}))


def _report(cfg):
    import json, os
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    runtime = HydraConfig.get()
    print("@@RUNTIME" + json.dumps({"cwd": runtime.runtime.cwd,
                                    "output_dir": runtime.runtime.output_dir}))
    _outcome("@@RESOLVED", lambda: OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False))
    # what `--cfg job` and `--cfg job --resolve` print
    print("@@YAML" + json.dumps(OmegaConf.to_yaml(cfg)))
    _outcome("@@YAML_RESOLVED", lambda: OmegaConf.to_yaml(cfg, resolve=True))
    key = os.environ.get("CORPUS_SELECT")
    if key:
        def selected():
            node = OmegaConf.select(cfg, key, throw_on_missing=False)
            if OmegaConf.is_config(node):
                return OmegaConf.to_container(node, resolve=True, throw_on_missing=False)
            return node
        _outcome("@@SELECTED", selected)
"""


def _app_text() -> str:
    assert _PRINT in HYDRA_APP, "test_config_parity's app changed: update _PRINT"
    return _REPORT + HYDRA_APP.replace("VERSION_BASE", "None").replace(
        _PRINT, _PRINT + "\n    _report(cfg)"
    )


@dataclass
class HydraRun:
    returncode: int
    stderr: str
    unresolved: Any = None
    resolved: dict | None = None  # {"ok": value} or {"error": message}
    selected: dict | None = None
    runtime: dict | None = None
    yaml: str | None = None  # `--cfg job`
    yaml_resolved: dict | None = None  # `--cfg job --resolve`: {"ok": text} or {"error": ...}


def _hydra_main(case: Case, app: Path) -> HydraRun:
    """Hydra's @hydra.main on the tree with exactly the user's overrides, in this directory."""
    env = dict(os.environ)
    env.pop("CORPUS_SELECT", None)
    if case.select:
        env["CORPUS_SELECT"] = case.select
    proc = subprocess.run(
        [sys.executable, str(app), str(CORPUS / case.tree), case.name, *case.overrides],
        capture_output=True,
        text=True,
        cwd=Path.cwd(),
        env=env,
        check=False,
        timeout=120,
    )
    run = HydraRun(proc.returncode, proc.stderr)
    tags = {"": "unresolved", "RUNTIME": "runtime", "RESOLVED": "resolved"}
    tags |= {"SELECTED": "selected", "YAML": "yaml", "YAML_RESOLVED": "yaml_resolved"}
    for line in proc.stdout.splitlines():
        tag = re.match(r"@@([A-Z_]*)", line)
        if tag:
            setattr(run, tags[tag.group(1)], json.loads(line[tag.end() :]))
    if proc.returncode == 0:
        assert run.resolved is not None, proc.stdout + proc.stderr
    return run


def _normalise(value: Any, written: Any) -> Any:
    """Digits -> 0 in every leaf whose text as written (unresolved) has ``${now:``."""
    if isinstance(value, dict) and isinstance(written, dict):
        return {k: _normalise(v, written.get(k)) for k, v in value.items()}
    if isinstance(value, list) and isinstance(written, list) and len(value) == len(written):
        return [_normalise(v, w) for v, w in zip(value, written, strict=True)]
    if isinstance(value, str) and isinstance(written, str) and "${now:" in written:
        return re.sub(r"\d", "0", value)
    return value


def _subtree(tree: Any, key: str) -> Any:
    for part in key.split("."):
        tree = tree[part] if isinstance(tree, dict) else None
    return tree


def _documented_failure(result: Any, what: str, hydra_stderr: str) -> list[str]:
    """What is wrong with a refusal: it must be exit 2, one `error:` line, a `hint:`, nothing on
    stdout, no traceback; a file it names must exist; when Hydra lists the available options of
    a group, those options are the ones named."""
    if result.exit_code != 2:
        return [f"{what}: exit {result.exit_code}, not 2\n{result.stderr}"]
    problems = []
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    if len(errors) != 1:
        problems.append(f"{what}: {len(errors)} error lines, not 1:\n{result.stderr}")
    if not errors or not any(x.startswith("hint: ") for x in lines[lines.index(errors[0]) :]):
        problems.append(f"{what}: no hint after the error:\n{result.stderr}")
    if "Traceback" in result.stderr:
        problems.append(f"{what}: traceback:\n{result.stderr}")
    if result.stdout:
        problems.append(f"{what}: stdout not empty:\n{result.stdout[:500]}")
    for path in re.findall(r"(?:^|\s)(/[^\s:'\"]+\.ya?ml)", "\n".join(errors)):
        if not Path(path).exists():
            problems.append(f"{what}: the error names {path}, which does not exist:\n{errors[0]}")
    listed = re.search(r"Available options in '([^']+)':\n((?:\t.*\n)+)", hydra_stderr)
    if listed:
        options = [o.strip() for o in listed.group(2).splitlines() if o.strip()]
        absent = [o for o in options if not re.search(rf"\b{re.escape(o)}\b", result.stderr)]
        if absent:
            problems.append(
                f"{what}: Hydra lists options {options} for {listed.group(1)!r}; "
                f"expctl does not name {absent}:\n{result.stderr}"
            )
    return problems


def _shown(result: Any, what: str, problems: list[str]) -> Any:
    """The JSON `config show` printed, or None (and a problem) when it did not exit 0."""
    if result.exit_code != 0 or "Traceback" in result.stderr:
        problems.append(f"{what}: exit {result.exit_code}, not 0\n{result.stderr}")
        return None
    return json.loads(result.stdout)


def _differences(got: Any, expected: Any, path: str = "") -> list[str]:
    """The keys where two plain configs differ (the first 10), for a readable failure."""
    if isinstance(got, dict) and isinstance(expected, dict):
        out = [f"{path}{k}: only in expctl" for k in got if k not in expected]
        out += [f"{path}{k}: only in Hydra" for k in expected if k not in got]
        for k in got:
            if k in expected:
                out += _differences(got[k], expected[k], f"{path}{k}.")
        return out[:10]
    if got != expected:
        return [f"{path.rstrip('.')}: expctl {got!r} != Hydra {expected!r}"]
    return []


def _text_diff(got: str, expected: str) -> str:
    import difflib

    lines = difflib.unified_diff(
        expected.splitlines(),
        got.splitlines(),
        "hydra --cfg job",
        "expctl config show",
        n=1,
        lineterm="",
    )
    return "\n".join(list(lines)[:30])


def _compare(got: Any, expected: Any, what: str, problems: list[str]) -> None:
    if got != expected:
        problems.append(
            f"{what} differs from Hydra's:\n  " + "\n  ".join(_differences(got, expected))
        )


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hydra_app") / "hydra_app.py"
    path.write_text(_app_text())
    return path


@pytest.mark.parametrize("case", CASES, ids=[c.id() for c in CASES])
def test_corpus_tree_matches_hydra_main(
    case: Case, app: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    from omegaconf import OmegaConf

    for var in TREE_ENV:
        monkeypatch.delenv(var, raising=False)
    for var, value in case.env.items():
        monkeypatch.setenv(var, value)
    conf = CORPUS / case.tree
    assert conf.is_dir(), conf
    hydra = _hydra_main(case, app)
    source = ConfigSource(conf, case.name, case.overrides)
    show = ["config", "show", "--config-dir", str(conf), "--config-name", case.name]
    show_json = [*show, "--format", "json", "--show-secrets"]
    problems: list[str] = []  # every divergence of this case, not only the first

    if hydra.returncode != 0:  # Hydra itself refuses this command line
        assert hydra.unresolved is None, hydra.stderr
        try:
            compose_config(source, resolve=False, require_complete=False)
            problems.append("compose_config composed what Hydra refuses:\n" + hydra.stderr)
        except ConfigError:
            pass
        problems += _documented_failure(cli(*show, *case.overrides), "config show", hydra.stderr)
        assert not problems, "\n\n".join(problems)
        return

    # composition, as written
    composed = compose_config(source, resolve=False, require_complete=False)
    written = hydra.unresolved
    _compare(OmegaConf.to_container(composed, resolve=False), written, "compose_config", problems)
    what = "config show --no-resolve"
    shown = _shown(cli(*show_json, "--no-resolve", *case.overrides), what, problems)
    if shown is not None:
        _compare(shown, written, what, problems)
    # the YAML, byte for byte what `--cfg job` prints (README)
    result = cli(*show, "--show-secrets", "--no-resolve", *case.overrides)
    if result.exit_code == 0 and result.stdout != hydra.yaml:
        problems.append(
            f"{what} (YAML) is not `--cfg job`'s text:\n" + _text_diff(result.stdout, hydra.yaml)
        )

    # resolution
    if "ok" in hydra.resolved:
        expected = _normalise(hydra.resolved["ok"], written)
        cfg = compose_config(source, run_dir=hydra.runtime["output_dir"], require_complete=False)
        got = _normalise(OmegaConf.to_container(cfg, resolve=True), written)
        _compare(got, expected, "compose_config (resolved)", problems)
        shown = _shown(cli(*show_json, *case.overrides), "config show", problems)
        if shown is not None:
            _compare(_normalise(shown, written), expected, "config show", problems)
        result = cli(*show, "--show-secrets", *case.overrides)
        timed = "${now:" in json.dumps(written)  # its text changes from second to second
        yaml_resolved = hydra.yaml_resolved.get("ok")
        if result.exit_code == 0 and not timed and result.stdout != yaml_resolved:
            problems.append(
                "config show (YAML) is not `--cfg job --resolve`'s text:\n"
                + _text_diff(result.stdout, yaml_resolved or hydra.yaml_resolved["error"])
            )
    elif "Missing mandatory value" in hydra.resolved["error"]:
        # a `???` the user must fill: Hydra's resolve raises; `config show` prints the config
        # and names every missing value (README, "config show"), `--check` refuses it
        missing = re.search(r"Missing mandatory value: (\S+)", hydra.resolved["error"]).group(1)
        try:
            compose_config(source)
            problems.append(f"compose_config did not refuse the missing value {missing}")
        except ConfigError as e:
            if missing not in str(e):
                problems.append(f"compose_config's refusal does not name {missing}: {e}")
        result = cli(*show, *case.overrides)
        if result.exit_code != 0 or "warning: missing value" not in result.stderr:
            problems.append(f"config show: exit {result.exit_code}, no warning:\n{result.stderr}")
        elif missing not in result.stderr:
            problems.append(f"config show does not name {missing}:\n{result.stderr}")
        checked = cli(*show, "--check", *case.overrides)  # the config is still printed
        if checked.exit_code != 2 or missing not in checked.stderr:
            problems.append(f"config show --check: exit {checked.exit_code}:\n{checked.stderr}")
    else:  # e.g. a resolver only the repository's app registers
        why = hydra.resolved["error"].splitlines()[0]
        try:
            compose_config(source, require_complete=False)
            problems.append(f"compose_config resolved what Hydra cannot ({why})")
        except ConfigError:
            pass
        result = cli(*show, *case.overrides)
        problems += [
            f"{p}\n(Hydra: {why})"
            for p in _documented_failure(result, "config show", hydra.resolved["error"])
        ]

    if case.select:
        what = f"config show --select {case.select}"
        result = cli(*show_json, "--select", case.select, *case.overrides)
        sub = _subtree(written, case.select)
        if "ok" in hydra.selected:
            shown = _shown(result, what, problems)
            if shown is not None:
                expected = _normalise(hydra.selected["ok"], sub)
                _compare(_normalise(shown, sub), expected, what, problems)
        elif "Missing mandatory value" in hydra.selected["error"]:
            if result.exit_code != 0 or "warning: missing value" not in result.stderr:
                problems.append(f"{what}: exit {result.exit_code}, no warning:\n{result.stderr}")
        else:
            problems += _documented_failure(result, what, hydra.selected["error"])

    assert not problems, "\n\n".join(problems)
