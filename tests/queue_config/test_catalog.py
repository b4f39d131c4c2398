"""The model catalog: what a valid file is, what a bad one says, and how jobs choose and are refused."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

from queue_config.catalog import (
    SHIPPED_CATALOGS,
    Catalog,
    CatalogError,
    ModelRefused,
    catalog_of,
    load_catalog,
    shipped_catalog,
    with_remote_routes,
)
from queue_config.jobs import JobKind, JobSpec, Priority
from queue_config.remote import RemoteConfig
from queue_config.settings import Settings
from queue_config.stages import is_batch_queue, model_of_actor, stage_of_actor

#: The smallest valid catalog: one model per model stage. Bad catalogs below are this with one change.
MINIMAL = """\
[defaults]
prompt_enhance = "text"
image = "pic"
frames = "camera"

[models.text]
stage = "prompt_enhance"
backend = { kind = "local", pipeline = "AutoModelForCausalLM", model = "tiny:text" }

[models.pic]
stage = "image"
backend = { kind = "local", pipeline = "AutoPipelineForText2Image", model = "tiny:image" }

[models.camera]
stage = "frames"
backend = { kind = "local", pipeline = "camera" }
capabilities = { input_image = true }
"""


def model_section(model_id: str, stage: str, backend: str, *extra: str) -> str:
    """One more ``[models.ID]`` table for the end of a catalog file."""
    return "\n".join([f'\n[models."{model_id}"]', f'stage = "{stage}"', f"backend = {{ {backend} }}", *extra, ""])


def written(tmp_path: Path, text: str, name: str = "catalog.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def refused(tmp_path: Path, text: str) -> str:
    """The message of the CatalogError that loading ``text`` raises; it must be one line naming the file."""
    path = written(tmp_path, text)
    with pytest.raises(CatalogError) as raised:
        load_catalog(path)
    message = str(raised.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    return message


@pytest.mark.parametrize("profile", ["tiny", "standard"])
def test_each_shipped_catalog_loads_with_a_default_for_every_model_stage(profile: str) -> None:
    catalog = load_catalog(shipped_catalog(profile))

    assert set(catalog.defaults) == {"prompt_enhance", "image", "frames"}
    assert all(catalog.models[model].stage == stage for stage, model in catalog.defaults.items())
    assert {path.stem for path in SHIPPED_CATALOGS.glob("*.toml")} == {"tiny", "standard"}


def test_the_tiny_catalog_has_two_image_models_and_an_img2img_maker_on_the_first() -> None:
    catalog = load_catalog(shipped_catalog("tiny"))

    assert [model.id for model in catalog.of_stage("image")] == ["tiny-sd", "tiny-sd-alt"]
    assert catalog.defaults["image"] == "tiny-sd"
    assert catalog.models["img2img"].backend.base == "tiny-sd"  # type: ignore[union-attr]


def test_the_minimal_catalog_is_valid() -> None:
    catalog = Catalog.model_validate(tomllib.loads(MINIMAL))

    assert catalog.defaults == {"prompt_enhance": "text", "image": "pic", "frames": "camera"}
    assert catalog.models["pic"].id == "pic"  # the id is the key


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (MINIMAL.replace('image = "pic"', 'image = "ghost"'), "defaults.image: no model 'ghost' in the catalog"),
        (MINIMAL.replace('image = "pic"', 'image = "camera"'), "defaults.image: model 'camera' serves 'frames', "
                                                               "not 'image'"),
        (MINIMAL.replace('frames = "camera"\n', ""), "defaults: no default model for stage 'frames'"),
        (MINIMAL.replace('model = "tiny:image" }', 'model = "tiny:image" }\nfallbacks = ["ghost"]'),
         "models.pic.fallbacks: no model 'ghost' in the catalog"),
        (MINIMAL.replace('model = "tiny:image" }', 'model = "tiny:image" }\nfallbacks = ["pic"]'),
         "models.pic.fallbacks: a model cannot fall back to itself"),
        (MINIMAL.replace('model = "tiny:image" }', 'model = "tiny:image" }\nfallbacks = ["camera"]'),
         "models.pic.fallbacks: model 'camera' serves 'frames', not 'image'"),
        (MINIMAL + model_section("morph", "frames", 'kind = "local", pipeline = "img2img"',
                                 "capabilities = { input_image = true }"),
         "models.morph.backend: an img2img maker needs base = an image model"),
        (MINIMAL + model_section("morph", "frames", 'kind = "local", pipeline = "img2img", base = "camera"',
                                 "capabilities = { input_image = true }"),
         "models.morph.backend.base: model 'camera' serves 'frames', not 'image'"),
        (MINIMAL + model_section("far", "frames", 'kind = "remote", provider = "sim", model = "video"',
                                 "capabilities = { input_image = true }"),
         "models.far: no provider makes frames; a frames model is local"),
        (MINIMAL + model_section("still", "frames", 'kind = "local", pipeline = "camera"'),
         "models.still: a frames model grows frames from the key image (capabilities.input_image = true)"),
        (MINIMAL + model_section("flat", "frames", 'kind = "local", pipeline = "AutoPipelineForText2Image", '
                                                   'model = "tiny:image"', "capabilities = { input_image = true }"),
         "models.flat.backend.pipeline: frames runs camera, img2img, StableVideoDiffusionPipeline, "
         "not AutoPipelineForText2Image"),
        (MINIMAL + model_section("talker", "prompt_enhance", 'kind = "local", pipeline = "StableDiffusionPipeline", '
                                                             'model = "tiny:image"'),
         "models.talker.backend.pipeline: prompt_enhance runs AutoModelForCausalLM, not StableDiffusionPipeline"),
        (MINIMAL + model_section("hollow", "image", 'kind = "local", pipeline = "AutoPipelineForText2Image"'),
         "models.hollow.backend: model (a hub id or a directory) is missing"),
    ],
    ids=["unknown-default", "default-of-another-stage", "no-default", "fallback-unknown", "fallback-to-itself",
         "fallback-across-stages", "img2img-without-base", "img2img-base-not-an-image-model", "remote-frames-model",
         "frames-model-without-input-image", "pipeline-frames-cannot-run", "pipeline-prompt-enhance-cannot-run",
         "local-model-without-weights"],
)
def test_a_catalog_whose_references_do_not_hold_is_refused_naming_the_field(
    tmp_path: Path, text: str, named: str
) -> None:
    assert named in refused(tmp_path, text)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("extra = 1\n" + MINIMAL, "extra: Extra inputs are not permitted"),
        (MINIMAL + 'colour = "red"\n', "models.camera.colour: Extra inputs are not permitted"),
        (MINIMAL.replace('kind = "local", pipeline = "camera"', 'kind = "local", pipeline = "camera", gpu = 1'),
         "models.camera.backend.local.gpu: Extra inputs are not permitted"),
        (MINIMAL.replace('stage = "image"', 'stage = "audio"'), "models.pic.stage: Input should be"),
        (MINIMAL.replace('kind = "local", pipeline = "camera"', 'kind = "cloud", pipeline = "camera"'),
         "models.camera.backend: Input tag 'cloud'"),
        (MINIMAL.replace("input_image = true }", "input_image = true, max_side = 4 }"),
         "models.camera.capabilities.max_side: Input should be greater than or equal to 8"),
        (MINIMAL.replace("input_image = true }", 'input_image = true, sizes = ["big"] }'),
         "models.camera.capabilities.sizes.0: String should match pattern"),
        (MINIMAL + "limits = { concurrency = 0 }\n", "models.camera.limits.concurrency: Input should be greater"),
        (MINIMAL + "cost = { per_call = -1 }\n", "models.camera.cost.per_call: Input should be greater"),
        (MINIMAL.replace('model = "tiny:image" }', 'model = "tiny:image", device = "tpu" }'),
         "models.pic.backend.local.device: String should match pattern"),
        (MINIMAL.replace('image = "pic"', 'image = "Pic"'), "defaults.image: String should match pattern"),
    ],
    ids=["unknown-top-level-key", "unknown-model-key", "unknown-backend-key", "unknown-stage", "unknown-backend-kind",
         "side-below-8", "size-not-WxH", "concurrency-0", "negative-cost", "unknown-device", "default-id-upper-case"],
)
def test_a_catalog_with_a_bad_field_is_refused_naming_the_field(tmp_path: Path, text: str, named: str) -> None:
    assert named in refused(tmp_path, text)


@pytest.mark.parametrize(
    "model_id",
    ["Upper", "under_score", "a b", "a/b", "-leading-dash", "ünïcode", "", "x" * 49, "line\\nbreak"],
    ids=["upper-case", "underscore", "space", "slash", "leading-dash", "non-ascii", "empty", "49-chars", "newline"],
)
def test_a_model_id_with_characters_a_queue_name_cannot_end_with_is_refused(tmp_path: Path, model_id: str) -> None:
    text = MINIMAL + model_section(model_id, "image", 'kind = "local", pipeline = "X", model = "m"')

    message = refused(tmp_path, text)

    assert "String should match pattern" in message and "models." in message


def test_a_file_that_is_not_toml_is_one_line_naming_the_file(tmp_path: Path) -> None:
    assert "not TOML" in refused(tmp_path, MINIMAL + "[models.broken\n")


def test_a_missing_file_is_one_line_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"

    with pytest.raises(CatalogError, match=f"^{path}: No such file"):
        load_catalog(path)


def remote_model(provider: str = "sim") -> str:
    return MINIMAL + model_section("far", "image", f'kind = "remote", provider = "{provider}", model = "sim-image"')


def test_a_remote_model_must_name_a_provider_of_the_remote_configuration(tmp_path: Path) -> None:
    catalog = load_catalog(written(tmp_path, remote_model("elsewhere")))
    remote = RemoteConfig.model_validate({"providers": {"sim": {"kind": "openai", "base_url": "http://127.0.0.1:1"}}})

    with pytest.raises(CatalogError, match=r"models\.far: provider 'elsewhere' is not in the remote configuration "
                                           r"\(providers: sim\)"):
        catalog.check_providers(remote)
    catalog.check_providers(RemoteConfig.model_validate(
        {"providers": {"elsewhere": {"kind": "openai", "base_url": "http://127.0.0.1:1"}}}))


def test_the_deployment_catalog_refuses_a_remote_model_when_no_remote_configuration_is_set(tmp_path: Path) -> None:
    settings = Settings(model_catalog=written(tmp_path, remote_model()))

    with pytest.raises(CatalogError, match=r"provider 'sim' is not in the remote configuration .*unset"):
        catalog_of(settings)


def test_a_frames_backend_setting_the_catalog_lacks_is_refused(tmp_path: Path) -> None:
    settings = Settings(model_catalog=written(tmp_path, MINIMAL), frames_backend="img2img")

    with pytest.raises(CatalogError, match="frames_backend 'img2img' is not a model of the catalog"):
        catalog_of(settings)


def test_a_remote_stage_route_becomes_that_stages_default_model_with_its_limits() -> None:
    remote = RemoteConfig.model_validate({
        "providers": {"sim": {"kind": "openai", "base_url": "http://127.0.0.1:1"}},
        "limits": [{"provider": "sim", "model": "Sim_Image", "requests_per_minute": 60}],
        "stages": {"image": {"provider": "sim", "model": "Sim_Image"}},
    })

    catalog = with_remote_routes(load_catalog(shipped_catalog("tiny")), remote)

    assert catalog.defaults["image"] == "sim-sim-image"
    assert catalog.models["sim-sim-image"].limits.requests_per_minute == 60
    assert "tiny-sd" in catalog.models


# Jobs choose their models.

@pytest.fixture(scope="module")
def tiny() -> Catalog:
    return load_catalog(shipped_catalog("tiny"))


def v1(**fields: object) -> JobSpec:
    return JobSpec(schema_version=1, prompt="a heron", **fields)  # type: ignore[arg-type]


def test_a_version_1_job_runs_the_defaults_and_its_frames_backend(tiny: Catalog) -> None:
    video = v1(kind=JobKind.video, frames_backend="img2img")

    assert [tiny.route(video, stage) for stage in ("prompt_enhance", "image", "frames", "video")] == \
        ["tiny-text", "tiny-sd", "img2img", None]
    assert tiny.route(v1(kind=JobKind.video), "frames") == "camera"
    assert tiny.admit(video) == video


def test_a_version_2_job_runs_the_models_it_names_and_a_fallback_wins_over_them(tiny: Catalog) -> None:
    job = JobSpec(prompt="a heron", kind=JobKind.video, models={"image": "tiny-sd-alt", "frames": "tiny-svd"},
                  width=128, height=128)

    assert (tiny.route(job, "prompt_enhance"), tiny.route(job, "image"), tiny.route(job, "frames")) == \
        ("tiny-text", "tiny-sd-alt", "tiny-svd")
    assert tiny.route(job, "image", {"image": "tiny-sd"}) == "tiny-sd"
    assert tiny.refusal(job) is None


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"schema_version": 1, "models": {"image": "tiny-sd-alt"}}, "models needs schema_version 2"),
        ({"kind": "video", "frames_backend": "camera", "models": {"frames": "img2img"}},
         "frames_backend 'camera' and models.frames 'img2img' disagree"),
        ({"models": {"image": "Tiny_SD"}}, "String should match pattern"),
        ({"models": {"video": "x"}}, "models.video.[key]"),
        ({"schema_version": 3}, "schema_version"),
    ],
    ids=["version-1-with-models", "frames-backend-disagrees", "bad-model-id", "stage-without-models", "version-3"],
)
def test_a_job_that_chooses_models_wrongly_is_invalid(fields: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem.replace(".", r"\.").replace("[", r"\[")):
        JobSpec(prompt="a heron", **fields)  # type: ignore[arg-type]


def test_frames_backend_and_models_frames_that_agree_are_accepted(tiny: Catalog) -> None:
    job = JobSpec(prompt="a heron", kind=JobKind.video, frames_backend="img2img", models={"frames": "img2img"})

    assert tiny.route(job, "frames") == "img2img"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"models": {"image": "ghost"}},
         "models.image: no model 'ghost' in the catalog (models of image: tiny-sd, tiny-sd-alt)"),
        ({"models": {"image": "camera"}}, "models.image: model 'camera' serves frames, not image"),
        ({"models": {"frames": "camera"}}, "models.frames: a image job has no frames stage"),
        ({"kind": "video", "width": 512, "height": 256, "models": {"frames": "tiny-svd"}},
         "model 'tiny-svd' (frames) takes sides of 8 to 256 px, not 512x256"),
        ({"kind": "video", "width": 128, "height": 128, "num_frames": 33, "models": {"frames": "tiny-svd"}},
         "model 'tiny-svd' (frames) makes at most 32 frames, not 33"),
    ],
    ids=["unknown-model", "model-of-another-stage", "stage-not-in-plan", "over-max-side", "over-max-frames"],
)
def test_a_job_the_catalog_cannot_serve_is_refused_with_the_reason(
    tiny: Catalog, fields: dict[str, object], reason: str
) -> None:
    job = JobSpec(prompt="a heron", **fields)  # type: ignore[arg-type]

    assert tiny.refusal(job) == reason
    with pytest.raises(ModelRefused) as raised:
        tiny.admit(job)
    assert str(raised.value) == reason


def test_exact_sizes_and_a_step_limit_refuse_what_they_do_not_allow(tmp_path: Path) -> None:
    text = MINIMAL.replace('model = "tiny:image" }', 'model = "tiny:image" }\n'
                                                     'capabilities = { sizes = ["512x512", "768x512"], max_steps = 4 }')
    catalog = load_catalog(written(tmp_path, text))

    assert catalog.refusal(JobSpec(prompt="a heron", width=768, height=512)) is None
    assert catalog.refusal(JobSpec(prompt="a heron", width=512, height=768)) == \
        "model 'pic' (image) makes 512x512, 768x512, not 512x768"
    assert catalog.refusal(JobSpec(prompt="a heron", width=512, height=512, steps=5)) == \
        "model 'pic' (image) runs at most 4 steps, not 5"


# An image model's params fill what a version 2 job leaves out.

WITH_PARAMS = MINIMAL.replace('model = "tiny:image" }', 'model = "tiny:image" }\n'
                                                        'params = { steps = 2, width = 128, height = 96 }') + \
    model_section("plain", "image", 'kind = "local", pipeline = "AutoPipelineForText2Image", model = "tiny:image"')


@pytest.fixture
def with_params(tmp_path: Path) -> Catalog:
    return load_catalog(written(tmp_path, WITH_PARAMS))


def test_a_version_2_job_that_leaves_out_steps_and_size_gets_its_image_models_params(with_params: Catalog) -> None:
    job = with_params.admit(JobSpec(prompt="a heron", seed=4))

    assert (job.steps, job.width, job.height, job.seed) == (2, 128, 96, 4)
    video = with_params.admit(JobSpec(prompt="a heron", kind=JobKind.video, priority=Priority.batch))
    assert (video.steps, video.width, video.height, video.priority) == (2, 128, 96, Priority.batch)


def test_what_a_version_2_job_sets_is_left_alone(with_params: Catalog) -> None:
    job = with_params.with_params(JobSpec(prompt="a heron", steps=6, width=256))

    assert (job.steps, job.width, job.height) == (6, 256, 96)
    explicit_defaults = JobSpec(prompt="a heron", steps=4, width=256, height=256)
    assert with_params.with_params(explicit_defaults) == explicit_defaults


def test_a_version_1_job_and_a_job_naming_a_model_without_params_keep_the_job_defaults(with_params: Catalog) -> None:
    old = v1()
    plain = JobSpec(prompt="a heron", models={"image": "plain"})

    assert with_params.with_params(old) == old and (old.steps, old.width, old.height) == (4, 256, 256)
    assert with_params.with_params(plain) == plain


# Queue names carry the stage and the model.

@pytest.mark.parametrize(
    ("queue", "stage", "model", "batch"),
    [
        ("image", "image", None, False),
        ("image_batch", "image", None, True),
        ("image.tiny-sd-alt", "image", "tiny-sd-alt", False),
        ("image_batch.tiny-sd-alt", "image", "tiny-sd-alt", True),
        ("prompt_enhance.qwen2.5-0.5b", "prompt_enhance", "qwen2.5-0.5b", False),
        ("safety_check_batch", "safety_check", None, True),
    ],
)
def test_a_queue_name_says_its_stage_model_and_priority(queue: str, stage: str, model: str | None,
                                                        batch: bool) -> None:
    assert (stage_of_actor(queue), model_of_actor(queue), is_batch_queue(queue)) == (stage, model, batch)
