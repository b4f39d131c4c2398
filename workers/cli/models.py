"""``framequeue models``: the model catalog as this deployment reads it, each model with its stage,
backend, limits, cost and fallbacks, the default of each stage marked. ``framequeue models pull``
fetches the hub weights of local models into the models directory, for workers to load offline.

Reading the catalog validates it: a bad file is one line and exit 78, as a bad setting is. A pull
that fails is one line and exit 1.
"""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Any

from pipelines.model_paths import TINY_PREFIX
from pipelines.model_pull import PullError, PullResult, human_size, is_hub_id, pull_model
from queue_config.catalog import CatalogModel, LocalBackend, catalog_of
from queue_config.settings import Settings
from queue_config.stages import MODEL_STAGES
from workers.cli.errors import EXIT_FAILURE, CliError
from workers.cli.output import print_json, print_table


def backend_text(model: CatalogModel) -> str:
    backend = model.backend
    if isinstance(backend, LocalBackend):
        weights = backend.model or (f"on {backend.base}" if backend.base else "no weights")
        return f"local {backend.pipeline} {weights}" + (f"@{backend.revision}" if backend.revision else "")
    return f"remote {backend.provider}:{backend.model}"


def limits_text(model: CatalogModel) -> str:
    limits = model.limits
    parts = [f"{limits.requests_per_minute:g} req/min" if limits.requests_per_minute else "",
             f"{limits.tokens_per_minute:g} tok/min" if limits.tokens_per_minute else "",
             f"{limits.concurrency} at once" if limits.concurrency else ""]
    return ", ".join(part for part in parts if part) or "-"


def cost_text(model: CatalogModel) -> str:
    cost = model.cost
    parts = [f"{cost.per_call:g}/call" if cost.per_call else "", f"{cost.per_second:g}/s" if cost.per_second else "",
             f"{cost.per_megapixel:g}/MP" if cost.per_megapixel else ""]
    return " + ".join(part for part in parts if part) or "-"


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    catalog = catalog_of(settings)
    models = [model for model in catalog.models.values() if not args.stage or model.stage == args.stage]
    if args.json:
        print_json({"defaults": catalog.defaults,
                    "models": [model.model_dump(mode="json") for model in models]})
        return 0
    print_table(
        ["model", "stage", "default", "backend", "limits", "cost", "fallbacks"],
        ([model.id, model.stage, "yes" if catalog.defaults.get(model.stage) == model.id else "",
          backend_text(model), limits_text(model), cost_text(model), " > ".join(model.fallbacks) or "-"]
         for model in models),
        empty="no model serves that stage",
    )
    return 0


def nothing_to_pull(model: CatalogModel) -> str | None:
    """Why ``model`` has no hub weights to pull, or None when it has."""
    backend = model.backend
    if not isinstance(backend, LocalBackend):
        return f"remote: {backend.provider} runs it"
    if backend.pipeline == "img2img":
        return f"it reuses the weights of {backend.base}"
    if not backend.model:
        return f"{backend.pipeline} is a maker with no weights"
    if backend.model.startswith(TINY_PREFIX):
        return f"{backend.model} is built offline"
    if not is_hub_id(backend.model):
        return f"it loads the directory {backend.model}"
    return None


def outcome_text(result: PullResult) -> str:
    size, commit = human_size(result.size_bytes), result.commit[:12]
    if result.outcome == "pulled":
        return f"pulled {size} at {commit} into {result.path}"
    if result.outcome == "current":
        return f"already pulled at {commit} ({size}) in {result.path}"
    return (f"pulled earlier at {commit} ({size}) in {result.path}; the hub is out of reach, "
            "so not checked for a newer commit")


def say(model_id: str, line: str) -> None:
    print(f"{model_id}: {line}", flush=True)


def cmd_models_pull(args: argparse.Namespace, settings: Settings) -> int:
    catalog = catalog_of(settings)
    if not (args.models or args.all or args.stage):
        raise CliError("name the models to pull, or --all, or --stage STAGE (see framequeue models)")
    missing = sorted(set(args.models) - set(catalog.models))
    if missing:
        raise CliError(f"not in the catalog: {', '.join(missing)} (see framequeue models)")
    chosen = [catalog.models[model] for model in args.models] if args.models else list(catalog.models.values())
    chosen = [model for model in chosen if not args.stage or model.stage == args.stage]
    if sys.stderr.isatty():  # a download of gigabytes deserves its progress bars
        from huggingface_hub.utils import enable_progress_bars

        enable_progress_bars()
    for model in chosen:
        if (reason := nothing_to_pull(model)) is not None:
            say(model.id, f"nothing to pull ({reason})")
            continue
        backend = model.backend
        assert isinstance(backend, LocalBackend)
        say(model.id, backend.model + (f"@{backend.revision}" if backend.revision else ""))
        try:
            result = pull_model(backend.model, settings.pulled_models_dir, backend.revision,
                                progress=functools.partial(say, model.id))
        except PullError as error:
            raise CliError(f"{model.id}: {error}", EXIT_FAILURE) from None
        say(model.id, outcome_text(result))
    return 0


def add_models_command(commands: Any) -> None:
    models = commands.add_parser("models", help="list the model catalog (FRAMEQUEUE_MODEL_CATALOG, or the profile's); "
                                                "pull hub weights")
    models.add_argument("--stage", choices=MODEL_STAGES, help="only this stage's models")
    models.add_argument("--json", action="store_true", help="print the catalog as JSON")
    models.set_defaults(handler=cmd_models)
    actions = models.add_subparsers(dest="models_action", metavar="ACTION")
    pull = actions.add_parser(
        "pull", help="download local models' hub weights into the models directory (needs the hub)",
        description="Download the hub weights of catalog models into FRAMEQUEUE_MODELS_DIR (default "
                    "DATA_DIR/models/pulled), where workers load them without the hub. A model already pulled "
                    "at the catalog's revision is skipped; tiny, remote and directory models have nothing to pull.")
    pull.add_argument("models", nargs="*", metavar="MODEL", help="catalog model ids (see framequeue models)")
    pull.add_argument("--all", action="store_true", help="every model of the catalog")
    pull.add_argument("--stage", choices=MODEL_STAGES, help="only this stage's models")
    pull.set_defaults(handler=cmd_models_pull)
