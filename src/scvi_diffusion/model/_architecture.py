"""The model's architecture: the constructor's arguments, checked, with defaults resolved."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from .._constants import (
    AUTOENCODERS,
    DEFAULT_GUIDANCE,
    DEFAULT_N_LATENT,
    DISPERSIONS,
    GENE_LIKELIHOODS,
    GUIDANCE_MODES,
)
from .._validation import check_number, one_of, positive_int
from .._warnings import warn_user
from ..module._networks import default_hidden_dims
from ._from_scvi import check_autoencoder_kwargs
from ._likelihood import choose_gene_likelihood


@dataclass(frozen=True)
class Architecture:
    """:class:`~scvi_diffusion.ScDiffusion`'s arguments, checked; see its docstring."""

    n_latent: int
    n_hidden: int
    n_layers: int
    dropout_rate: float
    denoiser_width: int | None
    guidance_horizon: int
    n_timesteps: int
    beta_start: float
    beta_end: float
    autoencoder: str
    gene_likelihood: str
    dispersion: str
    guidance: str
    condition_dropout: float
    autoencoder_kwargs: dict

    @classmethod
    def checked(cls, **arguments) -> Architecture:
        """The arguments with their defaults resolved; a clear error for any invalid one."""
        autoencoder = one_of("autoencoder", arguments["autoencoder"], AUTOENCODERS)
        if arguments["guidance"] is None:
            arguments["guidance"] = DEFAULT_GUIDANCE[autoencoder]
        for name, valid in (
            ("guidance", GUIDANCE_MODES),
            ("gene_likelihood", GENE_LIKELIHOODS),
            ("dispersion", DISPERSIONS),
        ):
            one_of(name, arguments[name], valid)
        for name, low_open in (
            ("condition_dropout", True),
            ("dropout_rate", False),
            ("beta_start", True),
            ("beta_end", True),
        ):
            arguments[name] = check_number(name, arguments[name], 0.0, 1.0, low_open=low_open)
        for name in ("n_hidden", "n_layers", "guidance_horizon", "n_timesteps"):
            positive_int(name, arguments[name], allow_none=False)
        positive_int("denoiser_width", arguments["denoiser_width"])
        n_latent = positive_int("n_latent", arguments["n_latent"])
        arguments["n_latent"] = n_latent or DEFAULT_N_LATENT[autoencoder]
        arguments["autoencoder_kwargs"] = check_autoencoder_kwargs(arguments["autoencoder_kwargs"])
        if arguments["autoencoder_kwargs"] and autoencoder != "scvi":
            raise ValueError("`autoencoder_kwargs` apply to autoencoder='scvi' only.")
        return cls(**arguments)

    def as_arguments(self) -> dict:
        """The resolved constructor arguments (what a saved model is rebuilt from)."""
        return asdict(self)

    @property
    def denoiser_hidden_dims(self) -> tuple[int, int, int] | None:
        """The denoiser's level widths: the given width, then half and a quarter of it."""
        if self.denoiser_width is None:
            return None
        return default_hidden_dims(self.n_latent, self.denoiser_width)

    def module_kwargs(
        self,
        n_input: int,
        n_batch: int,
        n_classes,
        condition_registry_keys,
        value_registry_keys: Sequence[str] = (),
    ) -> dict:
        """Keyword arguments of :class:`~scvi_diffusion.module._module.ScDiffusionModule`
        (``value_registry_keys`` only where the model has continuous conditions)."""
        kwargs = dict(
            n_input=n_input,
            n_batch=n_batch,
            n_classes=n_classes,
            condition_registry_keys=condition_registry_keys,
            autoencoder=self.autoencoder,
            gene_likelihood=self.gene_likelihood,
            dispersion=self.dispersion,
            n_latent=self.n_latent,
            n_hidden=self.n_hidden,
            n_layers=self.n_layers,
            dropout_rate=self.dropout_rate,
            denoiser_hidden_dims=self.denoiser_hidden_dims,
            guidance_horizon=self.guidance_horizon,
            n_timesteps=self.n_timesteps,
            beta_start=self.beta_start,
            beta_end=self.beta_end,
            guidance=self.guidance,
            condition_dropout=float(self.condition_dropout),
            autoencoder_kwargs=self.autoencoder_kwargs,
        )
        if value_registry_keys:
            kwargs["value_registry_keys"] = list(value_registry_keys)
        return kwargs

    def summary(self, condition_keys, likelihood_from_data: bool = False) -> str:
        """One line for the model's repr."""
        chosen = ", chosen from the data" if likelihood_from_data else ""
        described = {
            "scvi": f"scVI autoencoder ({self.gene_likelihood} likelihood{chosen})",
            "mlp": "MLP autoencoder on log-normalised expression (scDiffusion paper)",
        }[self.autoencoder]
        return (
            f"ScDiffusion: {described}, n_latent={self.n_latent} + latent DDPM "
            f"(T={self.n_timesteps}) + {self.guidance.replace('_', '-')} guidance on "
            f"{condition_keys or 'no conditions'}."
        )


def resolved_architecture(
    arguments: dict,
    counts: Callable[[], object],
    n_batch: int,
    continuous_keys: Sequence[str],
) -> tuple[Architecture, dict | None]:
    """:class:`~scvi_diffusion.ScDiffusion`'s constructor ``arguments``, checked against its
    data: ``gene_likelihood="auto"`` chosen from the ``counts`` (read only then), a warning
    where the ``"mlp"`` autoencoder ignores ``n_batch`` batches, and an error where continuous
    conditions lack classifier-free guidance. Returns the architecture and how the likelihood
    was chosen (None where it was given)."""
    arguments = dict(arguments)
    autoencoder = one_of("autoencoder", arguments["autoencoder"], AUTOENCODERS)
    one_of("gene_likelihood", arguments["gene_likelihood"], ("auto", *GENE_LIKELIHOODS))
    choice = None
    if arguments["gene_likelihood"] == "auto":
        if autoencoder == "scvi":
            choice = choose_gene_likelihood(counts())
            arguments["gene_likelihood"] = choice["gene_likelihood"]
        else:
            arguments["gene_likelihood"] = "poisson"  # unused by the MLP autoencoder
    architecture = Architecture.checked(**arguments)
    if autoencoder == "mlp" and n_batch > 1:
        warn_user(
            "The 'mlp' autoencoder ignores the registered batch key; generated cells still "
            "take the batch label of a training cell."
        )
    if continuous_keys and architecture.guidance != "classifier_free":
        raise ValueError(
            f"Continuous conditions ({list(continuous_keys)}) are learned by the denoiser "
            f"itself, which needs guidance='classifier_free'; got "
            f"guidance={architecture.guidance!r}."
        )
    return architecture, choice
