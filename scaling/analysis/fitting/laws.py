"""Scaling-law forms, by name.

Every law is fitted in *log space*: the optimiser works on a parameter vector ``theta`` (exponents
as they are, scale constants as their logarithms) and the law returns ``log L`` together with its
Jacobian with respect to ``theta``, vectorised over a batch of parameter vectors.  This is what
makes the multi-start fit in :mod:`..fitting.optimize` fast (all starts move in one numpy
call) and numerically safe (log-sum-exp instead of sums of huge powers); the models themselves
are in :mod:`.log_models`.

Registered laws (``LAWS[name]``):

========== ==================================================================== ============
name       equation                                                             inputs
========== ==================================================================== ============
chinchilla ``L(N, D) = E + A / N^alpha + B / D^beta``  (Hoffmann et al. 2022, eq. 2) N, D
kaplan     ``L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D``            N, D
           (Kaplan et al. 2020, eq. 1.5)
kaplan_n   ``L(N) = (N_c/N)^alpha_N``   (Kaplan et al. 2020, eq. 1.1)            N
kaplan_d   ``L(D) = (D_c/D)^alpha_D``   (Kaplan et al. 2020, eq. 1.2)            D
kaplan_c   ``L(C) = (C_c/C)^alpha_C``   (Kaplan et al. 2020, eq. 1.3, frontier)  C
========== ==================================================================== ============

``data_constrained``: ``L(N, D, U_D) = E + A / N^alpha + B / D'^beta`` with the effective data
``D' = U_D + U_D R*_D (1 - exp(-R_D / R*_D))`` (Muennighoff et al. 2023, eq. 5, its data term;
its parameter term is left as N' = N), inputs N, D and the optional ``epochs``.

Each Kaplan form also exists with an irreducible term, ``<name>_e``: ``L = E + (Kaplan form)``
(the "irreducible loss" of Henighan et al. 2020 / Hoffmann et al. 2022).

**Optional inputs.**  A law may read columns beyond N, D, C that have a neutral value
(:attr:`Law.optional_inputs`): ``data_constrained`` reads ``epochs`` (tokens / unique training
tokens, so ``U_D = D / epochs`` and ``R_D = epochs - 1``) as a third design row ``log
max(epochs, 1)``.  Without it (a prediction for a new run, an allocation) the row is 0: one epoch,
no repetition, where the law *is* Chinchilla's.  It stays a law of (N, D) everywhere else.

**What a law is, beyond its equation.**  The rest of the analysis asks the law, never its name:
:attr:`Law.allocation` (how its compute-optimal ``(N, D)`` is found), :attr:`Law.additive` (a sum
of terms whose shares of the loss can be checked, :meth:`Law.term_shares`), :attr:`Law.compared`
(it joins the report's held-out comparison of laws, :func:`compared_laws`),
:attr:`Law.models_repetition` (it has a term for repeated data) and :attr:`Law.frontier` (it is
fitted to the compute-efficient frontier, :func:`frontier_law`).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from scaling.analysis.fitting import log_models as lm
from scaling.analysis.fitting.log_models import LogModel, VjpModel

Array = np.ndarray

# An additive term below this share of the loss at every run is not identified by the runs.
NEGLIGIBLE_TERM = 1e-4


class Allocation(enum.Enum):
    """How :mod:`.allocation` finds a law's compute-optimal ``(N, D)`` at a budget ``C = 6ND``."""

    CHINCHILLA = "chinchilla"  # closed form of Hoffmann et al. 2022, eq. 4 (parameters A, B, ...)
    KAPLAN = "kaplan"  # closed form of the Kaplan joint law: N^(p+1) = p N_c^p C / (6 D_c)
    NUMERIC = "numeric"  # argmin over log N of L(N, C/6N)
    NONE = "none"  # not a law of (N, D): no allocation


@dataclass(frozen=True)
class Law:
    """A scaling law: named parameters, its log-space model and the grid of starting points.

    ``theta_names`` are the optimiser's coordinates; ``to_params``/``from_params`` convert between
    them and the named, natural-scale parameters a user reads (``A = exp(a)`` and so on).
    """

    name: str
    equation: str
    inputs: tuple[str, ...]
    param_names: tuple[str, ...]
    theta_names: tuple[str, ...]
    log_theta: tuple[bool, ...]  # True where param = exp(theta)
    log_model: LogModel
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    grid: tuple[tuple[float, ...], ...]
    irreducible: bool = False
    citation: str = ""
    frontier: bool = False  # fitted to the compute-efficient frontier, not to every run
    vjp_model: VjpModel | None = field(default=None, compare=False)
    # Inputs read when given, else neutral (``epochs``: 1); each adds one design row after inputs.
    optional_inputs: tuple[str, ...] = ()
    allocation: Allocation = Allocation.NONE
    # L = E + A/N^alpha + B/D^beta (parameters named so): its terms' shares can be checked.
    additive: bool = False
    compared: bool = False  # joins the report's held-out comparison of laws of (N, D)

    @property
    def closed_form_allocation(self) -> bool:
        """Whether the allocation is closed form, so works elementwise on samples and budgets."""
        return self.allocation in (Allocation.CHINCHILLA, Allocation.KAPLAN)

    @property
    def models_repetition(self) -> bool:
        """Whether the law has a term for repeated data (it reads ``epochs``)."""
        return "epochs" in self.optional_inputs

    def term_shares(
        self, params: Mapping[str, float], N: Array | float, D: Array | float
    ) -> dict[str, float]:
        """The largest share of the loss each additive term takes over the runs ``(N, D)``
        (``A/N^alpha``, ``B/D^beta``, ``E``); ``{}`` for a law that is not :attr:`additive`.  A
        term below :data:`NEGLIGIBLE_TERM` at every run has parameters the runs do not identify."""
        if not self.additive:
            return {}
        N = np.asarray(N, dtype=float)
        terms = {
            "A/N^alpha": params["A"] * N ** -params["alpha"],
            "B/D^beta": params["B"] * np.asarray(D, dtype=float) ** -params["beta"],
            "E": np.full(np.shape(N), params["E"]),
        }
        total = sum(terms.values())
        return {name: float(np.max(term / total)) for name, term in terms.items()}

    def log_model_vjp(self, theta: Array, X: Array) -> tuple[Array, Callable[[Array], Array]]:
        """``log L`` and its vector-Jacobian product (fast path for the objective's gradient)."""
        if self.vjp_model is not None:
            return self.vjp_model(theta, X)
        f, jac = self.log_model(theta, X)
        return f, lambda v: np.einsum("kn,knp->kp", v, jac)

    @property
    def n_params(self) -> int:
        return len(self.param_names)

    def to_params(self, theta: Sequence[float]) -> dict[str, float]:
        """Named natural-scale parameters from an optimiser vector."""
        return {
            name: float(np.exp(t)) if is_log else float(t)
            for name, t, is_log in zip(self.param_names, theta, self.log_theta, strict=True)
        }

    def to_params_array(self, theta: Array) -> dict[str, Array]:
        """Like :meth:`to_params` for a batch ``theta`` of shape (S, P)."""
        theta = np.atleast_2d(theta)
        return {
            name: np.exp(theta[:, i]) if is_log else theta[:, i]
            for i, (name, is_log) in enumerate(zip(self.param_names, self.log_theta, strict=True))
        }

    def from_params(self, params: Mapping[str, float]) -> Array:
        """Optimiser vector from named natural-scale parameters."""
        try:
            values = [float(params[name]) for name in self.param_names]
        except KeyError as err:
            raise KeyError(f"law {self.name!r} needs parameter {err.args[0]!r}") from None
        return np.array(
            [np.log(v) if is_log else v for v, is_log in zip(values, self.log_theta, strict=True)]
        )

    def from_params_array(self, params: Mapping[str, Array | float]) -> Array:
        """Optimiser vectors (S, P) from named parameters given as S samples each (or floats)."""
        theta = np.stack(
            [np.atleast_1d(np.asarray(params[k], dtype=float)) for k in self.param_names], 1
        )
        return np.where(np.array(self.log_theta)[None, :], np.log(theta), theta)

    def start_grid(self) -> Array:
        """Cartesian product of :attr:`grid`, shape (n_starts, P)."""
        mesh = np.meshgrid(*[np.asarray(g, dtype=float) for g in self.grid], indexing="ij")
        return np.stack([m.ravel() for m in mesh], axis=1)

    def design(
        self,
        N: Array | None = None,
        D: Array | None = None,
        C: Array | None = None,
        epochs: Array | None = None,
    ) -> Array:
        """Stack the log inputs this law needs into X of shape (len(inputs), n), then one row per
        optional input (``log max(epochs, 1)``; 0 where ``epochs`` is None or not finite)."""
        given = {"N": N, "D": D, "C": C}
        rows = []
        for key in self.inputs:
            value = given[key]
            if value is None:
                raise ValueError(f"law {self.name!r} needs input {key}")
            rows.append(np.log(np.atleast_1d(np.asarray(value, dtype=float))))
        if "epochs" in self.optional_inputs:
            rows.append(log_epochs(epochs, rows[0].shape))
        return np.stack(rows)

    def predict(
        self,
        params: Mapping[str, float],
        N: Array | float | None = None,
        D: Array | float | None = None,
        C: Array | float | None = None,
        epochs: Array | float | None = None,
    ) -> Array:
        """Loss predicted by the law (natural units, nats/token); ``epochs`` is read only by laws
        that list it in :attr:`optional_inputs` (absent: one epoch)."""
        theta = self.from_params(params)[None, :]
        arrays = {
            k: None if v is None else np.atleast_1d(v) for k, v in {"N": N, "D": D, "C": C}.items()
        }
        uses_epochs = "epochs" in self.optional_inputs and epochs is not None
        shapes = [np.shape(arrays[k]) for k in self.inputs]
        if uses_epochs:
            shapes.append(np.shape(np.atleast_1d(epochs)))
        shape = np.broadcast_shapes(*shapes)
        X = self.design(
            **{k: np.broadcast_to(arrays[k], shape).ravel() for k in self.inputs},
            epochs=(
                np.broadcast_to(np.atleast_1d(np.asarray(epochs, dtype=float)), shape).ravel()
                if uses_epochs
                else None
            ),
        )
        log_loss, _ = self.log_model(theta, X)
        out = np.exp(log_loss[0]).reshape(shape)
        given = (N, D, C, epochs if uses_epochs else None)
        scalar = all(np.ndim(v) == 0 for v in given if v is not None)
        return out[0] if scalar else out


def log_epochs(epochs: Array | float | None, shape: tuple[int, ...]) -> Array:
    """The design row of ``epochs``: ``log max(epochs, 1)``, 0 where absent or not finite (a run
    that saw each token at most once has no repetition)."""
    if epochs is None:
        return np.zeros(shape)
    e = np.broadcast_to(np.atleast_1d(np.asarray(epochs, dtype=float)), shape)
    e = np.where(np.isfinite(e), e, 1.0)
    return np.log(np.maximum(e, 1.0))


_EXP_GRID = (0.0, 0.5, 1.0, 1.5, 2.0)
_LOG_GRID = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)
_E_GRID = (-1.0, -0.5, 0.0, 0.5, 1.0)
# Kaplan scale constants are large (N_c ~ 1e13): log N_c ~ 30.
_K_EXP_GRID = (0.03, 0.1, 0.3, 1.0)
_K_LOG_GRID = (10.0, 20.0, 30.0, 40.0)
_K_E_GRID = (-1.0, 0.0, 1.0)
_E_BOUNDS = (-12.0, 4.0)  # E in [6e-6, 55] nats


def _kaplan_single(name: str, var: str, eq: str, irreducible: bool) -> Law:
    sym = {"N": "N", "D": "D", "C": "C"}[var]
    param_names = (f"alpha_{sym}", f"{sym}_c") + (("E",) if irreducible else ())
    theta_names = (f"alpha_{sym}", f"log_{sym}_c") + (("e",) if irreducible else ())
    law_name = name + ("_e" if irreducible else "")
    equation = f"L({sym}) = " + ("E + " if irreducible else "") + f"({sym}_c/{sym})^alpha_{sym}"
    return Law(
        name=law_name,
        equation=equation,
        inputs=(var,),
        param_names=param_names,
        theta_names=theta_names,
        log_theta=(False, True) + ((True,) if irreducible else ()),
        log_model=lm.with_irreducible(lm.power) if irreducible else lm.power,
        lower=(0.0, -50.0) + ((_E_BOUNDS[0],) if irreducible else ()),
        upper=(5.0, 200.0) + ((_E_BOUNDS[1],) if irreducible else ()),
        grid=(_K_EXP_GRID, _K_LOG_GRID) + ((_K_E_GRID,) if irreducible else ()),
        irreducible=irreducible,
        citation=f"Kaplan et al. 2020, {eq}",
        frontier=var == "C",
    )


def _kaplan_joint_law(irreducible: bool) -> Law:
    extra = ("E",) if irreducible else ()
    return Law(
        name="kaplan" + ("_e" if irreducible else ""),
        equation="L(N, D) = "
        + ("E + " if irreducible else "")
        + "[(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D",
        inputs=("N", "D"),
        param_names=("alpha_N", "N_c", "alpha_D", "D_c") + extra,
        theta_names=("alpha_N", "log_N_c", "alpha_D", "log_D_c") + (("e",) if irreducible else ()),
        log_theta=(False, True, False, True) + ((True,) if irreducible else ()),
        log_model=lm.with_irreducible(lm.kaplan_joint) if irreducible else lm.kaplan_joint,
        lower=(0.0, -50.0, 1e-3, -50.0) + ((_E_BOUNDS[0],) if irreducible else ()),
        upper=(5.0, 200.0, 5.0, 200.0) + ((_E_BOUNDS[1],) if irreducible else ()),
        grid=(_K_EXP_GRID, _K_LOG_GRID, _K_EXP_GRID, _K_LOG_GRID)
        + ((_K_E_GRID,) if irreducible else ()),
        irreducible=irreducible,
        citation="Kaplan et al. 2020, eq. 1.5",
        allocation=Allocation.NUMERIC if irreducible else Allocation.KAPLAN,
        compared=True,
    )


CHINCHILLA = Law(
    name="chinchilla",
    equation="L(N, D) = E + A/N^alpha + B/D^beta",
    inputs=("N", "D"),
    param_names=("A", "B", "E", "alpha", "beta"),
    theta_names=("a", "b", "e", "alpha", "beta"),
    log_theta=(True, True, True, False, False),
    log_model=lm.chinchilla,
    vjp_model=lm.chinchilla_vjp,
    lower=(-20.0, -20.0, _E_BOUNDS[0], 0.0, 0.0),
    upper=(80.0, 80.0, _E_BOUNDS[1], 5.0, 5.0),
    # The published grid (Hoffmann et al. 2022 App. D.2; Besiroglu et al. 2024): 6*6*5*5*5 = 4500.
    grid=(_LOG_GRID, _LOG_GRID, _E_GRID, _EXP_GRID, _EXP_GRID),
    irreducible=True,
    citation="Hoffmann et al. 2022, eq. 2; fitted as in Besiroglu et al. 2024",
    allocation=Allocation.CHINCHILLA,
    additive=True,
    compared=True,
)


# Muennighoff et al. 2023 fitted R*_D = 15.4: starts either side of it; the Chinchilla axes
# thinned (3 values of E, alpha, beta) so that the grid stays near Chinchilla's 4,500 starts.
_R_GRID = (1.0, 3.0, 5.0)  # log R*_D: R*_D ~ 2.7, 20, 150
DATA_CONSTRAINED = Law(
    name="data_constrained",
    equation="L(N, D, U_D) = E + A/N^alpha + B/D'^beta, "
    "D' = U_D + U_D R_D_star (1 - exp(-R_D/R_D_star)), U_D = D/epochs, R_D = epochs - 1",
    inputs=("N", "D"),
    optional_inputs=("epochs",),
    param_names=("A", "B", "E", "alpha", "beta", "R_D_star"),
    theta_names=("a", "b", "e", "alpha", "beta", "log_R_D_star"),
    log_theta=(True, True, True, False, False, True),
    log_model=lm.data_constrained,
    vjp_model=lm.data_constrained_vjp,
    lower=(-20.0, -20.0, _E_BOUNDS[0], 0.0, 0.0, math.log(1e-2)),
    upper=(80.0, 80.0, _E_BOUNDS[1], 5.0, 5.0, math.log(1e4)),
    grid=(_LOG_GRID, _LOG_GRID, (-1.0, 0.0, 1.0), (0.25, 0.75, 1.5), (0.25, 0.75, 1.5), _R_GRID),
    irreducible=True,
    citation="Muennighoff et al. 2023, eq. 5 (data term; N' = N); fitted as Chinchilla",
    # An allocation plans fresh data (one epoch), where the law is Chinchilla's.
    allocation=Allocation.CHINCHILLA,
    additive=True,
    compared=True,
)


def _build_registry() -> dict[str, Law]:
    laws = [CHINCHILLA, _kaplan_joint_law(False), _kaplan_joint_law(True)]
    for irreducible in (False, True):
        laws.append(_kaplan_single("kaplan_n", "N", "eq. 1.1", irreducible))
        laws.append(_kaplan_single("kaplan_d", "D", "eq. 1.2", irreducible))
        laws.append(_kaplan_single("kaplan_c", "C", "eq. 1.3", irreducible))
    laws.append(DATA_CONSTRAINED)
    return {law.name: law for law in laws}


LAWS: dict[str, Law] = _build_registry()


def get_law(name: str) -> Law:
    """The registered law called ``name``; raises ``KeyError`` listing the known names."""
    try:
        return LAWS[name]
    except KeyError:
        raise KeyError(f"unknown law {name!r}; known laws: {', '.join(LAWS)}") from None


def compared_laws(repeated_data: bool) -> tuple[str, ...]:
    """The laws the report's held-out comparison refits, in registry order; a law with a term for
    repeated data only when some run repeats its data (``repeated_data``)."""
    return tuple(
        name
        for name, law in LAWS.items()
        if law.compared and (repeated_data or not law.models_repetition)
    )


def repetition_laws() -> tuple[str, ...]:
    """The laws with a term for repeated data (:attr:`Law.models_repetition`)."""
    return tuple(name for name, law in LAWS.items() if law.models_repetition)


def frontier_law(irreducible: bool) -> Law:
    """The law of the loss frontier ``L_opt(C)`` through compute-optimal points, with or without
    an irreducible term."""
    return next(
        law
        for law in LAWS.values()
        if law.frontier and law.inputs == ("C",) and law.irreducible == irreducible
    )
