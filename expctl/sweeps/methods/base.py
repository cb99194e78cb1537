"""What a sweep method decides, as one object per method: :class:`Method`.

A method owns its rules; the rest of expctl asks it instead of testing the method's name:

* the sweep file: what it needs of the rest of the file (:meth:`Method.spec_problems`);
* create: its size check before the storage exists, the points queued when the sweep is created
  (a grid queues every point) and the number of runs it plans;
* claiming: its Optuna sampler, whether trials are sampled when an agent asks for one (and then
  bounded by ``run_cap`` as they are claimed) or only the queued points run, the values a
  claimed trial runs with, and whether a suggestion that repeats a point is asked again;
* why the sweep finished when it has nothing left to run.

Hyperband is not a method but the stopping rule (:mod:`expctl.sweeps.methods.hyperband`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from collections.abc import Mapping

    import optuna

    from expctl.errors import Problems
    from expctl.sweeps.spec import Metric, Parameter, SweepSpec


class Method:
    """A sweep method; the defaults are those of a method that samples each trial (random)."""

    #: the ``method:`` value of a sweep file
    name: ClassVar[str]
    #: True: a trial is sampled when an agent asks for one, and ``run_cap`` bounds the trials as
    #: they are claimed; False: only the points queued at create time run (``run_cap`` already
    #: cut them there)
    samples_on_claim: ClassVar[bool] = True
    #: why a sweep of this method finished when nothing is left to run
    exhausted_reason: ClassVar[str] = "run_cap reached"
    #: the sweep finishes as soon as its last trial finishes (no agent has to ask again)
    finishes_when_drained: ClassVar[bool] = False
    #: the ``scheduler.engine`` values this method runs under (W&B: engine wandb runs grid,
    #: bayes and random; expctl's engine optuna runs custom)
    engines: ClassVar[tuple[str, ...]] = ("wandb",)
    #: whether a file may give several objectives (``metrics:``; W&B: only method custom)
    multi_objective: ClassVar[bool] = False

    def __init__(self, spec: SweepSpec):
        self.spec = spec

    # -- the sweep file ---------------------------------------------------------------------

    @classmethod
    def spec_problems(
        cls, parameters: list[Parameter], metric: Metric | None, data: dict, problems: Problems
    ) -> None:
        """Add what this method needs of the rest of the file and does not find."""

    # -- create -----------------------------------------------------------------------------

    def check_size(self) -> None:
        """Refuse (SpecError) a sweep too large to create, before its storage exists."""

    def planned(self) -> int | None:
        """How many runs the sweep plans; None when only ``run_cap`` bounds it."""
        return None

    def size(self) -> int | None:
        """The number of distinct points of the whole space, for methods that enumerate it."""
        return None

    def points_to_enqueue(self) -> list[dict[str, Any]]:
        """The points queued as trials when the sweep is created, in the order they run."""
        return []

    def queued_trial(self, point: dict[str, Any]) -> optuna.trial.FrozenTrial:
        """The WAITING trial that queues ``point``: what ``Study.enqueue_trial({})`` creates,
        the point in the ``params`` user attr."""
        from optuna.trial import TrialState, create_trial

        from expctl.sweeps.studies import PREFIX

        return create_trial(
            state=TrialState.WAITING,
            system_attrs={"fixed_params": {}},
            user_attrs={PREFIX + "params": point},
        )

    def cloud_problem(self) -> str | None:
        """Why W&B's server cannot run this sweep with the installed wandb (``--backend
        wandb``), or None: the file is then handed over unchanged."""
        return None

    @property
    def claims_by_index(self) -> bool:
        """A space too large to queue at create: a claim creates a trial and runs :meth:`point`
        of its index (how many such trials come before it); None past the planned runs."""
        return False

    def point(self, index: int) -> dict[str, Any] | None:
        return None

    # -- claiming ---------------------------------------------------------------------------

    def make_sampler(self, seed: int | None = None) -> optuna.samplers.BaseSampler:
        """random: exact W&B distributions, sampled in their latent space."""
        import optuna

        return optuna.samplers.RandomSampler(seed=seed)

    def trial_values(
        self, trial: optuna.Trial, queued: dict[str, Any] | None, storage: Any
    ) -> dict[str, Any]:
        """The W&B values of a claimed trial (``queued``: the values of a re-run, or of a point
        queued by hand); sampled trials also get their latent Optuna params."""
        from expctl.sweeps.distributions import latent_distribution, to_value
        from expctl.sweeps.studies import PREFIX

        values: dict[str, Any] = {}
        for p in self.spec.parameters:
            dist = latent_distribution(p)
            latent = None if dist is None else suggest(trial, p.name, dist)
            values[p.name] = to_value(p, latent)
        if queued is None:
            storage.set_trial_user_attr(trial._trial_id, PREFIX + "params", values)
        return values

    def optuna_params(self, point: dict[str, Any]) -> dict[str, tuple[float, Any]]:
        """Methods that do not sample (``samples_on_claim`` False): the Optuna params a claimed
        point records, as (internal value, distribution) by name."""
        raise NotImplementedError

    def record_params(
        self, trial_id: int, written: Mapping[str, Any], point: dict[str, Any], storage: Any
    ) -> None:
        """A claimed ``point``'s :meth:`optuna_params` on its trial, but those ``written``
        already (a grid queues its points with them; a sweep of an earlier release did not)."""
        for name, (internal, dist) in self.optuna_params(point).items():
            if name not in written:
                storage.set_trial_param(trial_id, name, internal, dist)

    def repeats_a_point(
        self, trial: optuna.Trial, params: dict[str, Any], study: optuna.Study
    ) -> bool:
        """Whether this suggestion is given up and asked again (a point already being run).
        Random repeats only by chance, as in W&B."""
        return False


def suggest(trial: optuna.Trial, name: str, dist: Any) -> Any:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log, step=dist.step)
    raise TypeError(f"unsupported distribution {dist!r}")
