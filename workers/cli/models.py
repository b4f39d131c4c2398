"""``framequeue models``: the model catalog as this deployment reads it, each model with its stage,
backend, limits, cost and fallbacks, the default of each stage marked.

Reading the catalog validates it: a bad file is one line and exit 78, as a bad setting is.
"""

from __future__ import annotations

import argparse
from typing import Any

from queue_config.catalog import CatalogModel, LocalBackend, catalog_of
from queue_config.settings import Settings
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


def add_models_command(commands: Any) -> None:
    models = commands.add_parser("models", help="list the model catalog (FRAMEQUEUE_MODEL_CATALOG, or the profile's)")
    models.add_argument("--stage", choices=["prompt_enhance", "image", "frames"], help="only this stage's models")
    models.add_argument("--json", action="store_true", help="print the catalog as JSON")
    models.set_defaults(handler=cmd_models)
